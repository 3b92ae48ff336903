"""A fake Anthropic Messages API on 127.0.0.1, for running a real harness against.

It records the body of every request it receives (``FakeAnthropic.requests``) and answers
``POST /v1/messages`` with one short text reply, or, while ``tool_calls`` holds a planned
call of a tool the request offers, with that ``tool_use`` (each planned call is made
once, in order): as server-sent events when the request
asks to stream (message_start, content_block_start, content_block_delta,
content_block_stop, message_delta, message_stop, the flow of the Messages API's
streaming reference), as one JSON message otherwise. ``/v1/messages/count_tokens``
answers a token count; the rest is tests/fake_api.py.
"""

from __future__ import annotations

from typing import Any

import orjson
from fake_api import EVENTS, JSON, REPLY, FakeAPI, sse

__all__ = ["REPLY", "FakeAnthropic"]


class FakeAnthropic(FakeAPI):
    """The Messages API; ``tool_calls`` holds the planned ``tool_use`` answers, (tool name,
    input), made in order."""

    listing = b'{"data": [], "has_more": false}'

    def __init__(self) -> None:
        super().__init__()
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []

    def message_requests(self) -> list[Any]:
        """The bodies of every ``POST /v1/messages`` (not count_tokens), in order."""
        return self.posts("/v1/messages")

    def answer(self, route: str, body: Any) -> tuple[bytes, str]:
        if route == "/v1/messages/count_tokens":
            return orjson.dumps({"input_tokens": 100}), JSON
        if route != "/v1/messages":
            return b"{}", JSON
        content = _content(body, self.tool_calls)
        if isinstance(body, dict) and body.get("stream"):
            return sse(_stream_events(body, content)), EVENTS
        return orjson.dumps(_message(body, content)), JSON


def _content(body: Any, tool_calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The answer's one content block: the next planned tool call when the request offers
    that tool, else the reply text."""
    offered = {t.get("name") for t in body.get("tools") or ()} if isinstance(body, dict) else ()
    if tool_calls and tool_calls[0][0] in offered:
        name, arguments = tool_calls.pop(0)
        return {"type": "tool_use", "id": f"toolu_fake_{len(tool_calls)}", "name": name,
                "input": arguments}
    return {"type": "text", "text": REPLY}


def _stop_reason(content: dict[str, Any]) -> str:
    return "tool_use" if content["type"] == "tool_use" else "end_turn"


def _message(body: Any, content: dict[str, Any]) -> dict[str, Any]:
    """A complete assistant message with ``content`` (the non-streaming answer)."""
    return {**_empty_message(body), "content": [content], "stop_reason": _stop_reason(content),
            "usage": {"input_tokens": 100, "output_tokens": 5}}


def _empty_message(body: Any) -> dict[str, Any]:
    """The message of ``message_start``: no content yet."""
    model = body.get("model", "claude-fake") if isinstance(body, dict) else "claude-fake"
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 1}}


def _stream_events(body: Any, content: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of one streamed reply (text, or a tool_use whose input comes as one
    input_json_delta), in the order the API sends them."""
    if content["type"] == "tool_use":
        start = {**content, "input": {}}
        delta = {"type": "input_json_delta",
                 "partial_json": orjson.dumps(content["input"]).decode()}
    else:
        start = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": content["text"]}
    return [
        {"type": "message_start", "message": _empty_message(body)},
        {"type": "content_block_start", "index": 0, "content_block": start},
        {"type": "content_block_delta", "index": 0, "delta": delta},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": _stop_reason(content),
                                            "stop_sequence": None},
         "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]
