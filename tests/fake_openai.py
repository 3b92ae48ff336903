"""A fake OpenAI Responses API on 127.0.0.1, for running the Codex CLI against.

It records the body of every request it receives (``FakeOpenAI.requests``) and answers
``POST /v1/responses`` with one short assistant message: as server-sent events when the
request asks to stream (response.created, response.output_item.added,
response.output_text.delta, response.output_item.done, response.completed, the flow of the
Responses API's streaming reference), as one JSON response otherwise; the rest is
tests/fake_api.py.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fake_api import EVENTS, JSON, REPLY, FakeAPI, sse

__all__ = ["REPLY", "FakeOpenAI"]


class FakeOpenAI(FakeAPI):
    """The Responses API (its base URL ends in ``/v1``, as a model provider's ``base_url``)."""

    url_path = "/v1"
    listing = b'{"object": "list", "data": []}'

    def response_requests(self) -> list[Any]:
        """The bodies of every ``POST /v1/responses``, in order."""
        return self.posts("/v1/responses")

    def answer(self, route: str, body: Any) -> tuple[bytes, str]:
        if route != "/v1/responses":
            return b"{}", JSON
        if isinstance(body, dict) and body.get("stream"):
            return sse(_stream_events(body)), EVENTS
        return orjson.dumps(_completed(body)), JSON


MESSAGE = {"id": "msg_fake", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}
"""The one output item of every response."""

USAGE = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
         "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
         "total_tokens": 105}


def _response(body: Any, status: str) -> dict[str, Any]:
    model = body.get("model", "gpt-fake") if isinstance(body, dict) else "gpt-fake"
    return {"id": "resp_fake", "object": "response", "created_at": int(time.time()),
            "status": status, "model": model, "output": []}


def _completed(body: Any) -> dict[str, Any]:
    """The whole response: the message and the usage (the non-streaming answer)."""
    return {**_response(body, "completed"), "output": [MESSAGE], "usage": USAGE}


def _stream_events(body: Any) -> list[dict[str, Any]]:
    """The events of one streamed text reply, in the order the API sends them."""
    return [
        {"type": "response.created", "response": _response(body, "in_progress")},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**MESSAGE, "status": "in_progress", "content": []}},
        {"type": "response.output_text.delta", "item_id": MESSAGE["id"], "output_index": 0,
         "content_index": 0, "delta": REPLY},
        {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE},
        {"type": "response.completed", "response": _completed(body)},
    ]
