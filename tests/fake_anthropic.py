"""A fake Anthropic Messages API on 127.0.0.1, for running a real harness against.

It records the body of every request it receives (``FakeAnthropic.requests``) and answers
``POST /v1/messages`` with one short text reply, or, while ``tool_calls`` holds a planned
call of a tool the request offers, with that ``tool_use`` (each planned call is made
once, in order): as server-sent events when the request
asks to stream (message_start, content_block_start, content_block_delta,
content_block_stop, message_delta, message_stop, the flow of the Messages API's
streaming reference), as one JSON message otherwise. ``/v1/messages/count_tokens``
answers a token count; any other path gets an empty JSON object, so a client's side
requests never fail. Nothing here opens a connection anywhere: it only listens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

REPLY = "Nothing else is new."
"""The text every answer of the fake model carries."""


@dataclass
class Recorded:
    """One request the fake API received: its method, path and body (JSON, or None)."""

    method: str
    path: str
    body: Any


@dataclass
class FakeAnthropic:
    """The server, started on a free port by ``start`` and stopped by ``stop``."""

    requests: list[Recorded] = field(default_factory=list)
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Planned ``tool_use`` answers, (tool name, input), made in order."""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give a client (``ANTHROPIC_BASE_URL``)."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAnthropic:
        """Listen on 127.0.0.1, port chosen by the system, in a daemon thread."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0),
                                           _handler_for(self.requests, self.tool_calls))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def message_requests(self) -> list[Any]:
        """The bodies of every ``POST /v1/messages`` (not count_tokens), in order."""
        return [r.body for r in self.requests
                if r.method == "POST" and r.path.split("?")[0] == "/v1/messages"]


def _handler_for(requests: list[Recorded], tool_calls: list[tuple[str, dict[str, Any]]]
                 ) -> type[BaseHTTPRequestHandler]:
    """A request handler class that appends to ``requests`` and makes ``tool_calls``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self._body()
            requests.append(Recorded("POST", self.path, body))
            route = self.path.split("?")[0]
            content = _content(body, tool_calls)
            if route == "/v1/messages" and isinstance(body, dict) and body.get("stream"):
                self._stream(body, content)
            elif route == "/v1/messages":
                self._json(_message(body, content))
            elif route == "/v1/messages/count_tokens":
                self._json({"input_tokens": 100})
            else:
                self._json({})

        def do_GET(self) -> None:
            requests.append(Recorded("GET", self.path, None))
            self._json({"data": [], "has_more": False})

        def do_HEAD(self) -> None:
            requests.append(Recorded("HEAD", self.path, None))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads ``requests``, not a log."""

        def _body(self) -> Any:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                return orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                return raw.decode("utf-8", "replace")

        def _json(self, answer: Any) -> None:
            data = orjson.dumps(answer)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, body: Any, content: dict[str, Any]) -> None:
            data = b"".join(_event(e) for e in _stream_events(body, content))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


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


def _event(payload: dict[str, Any]) -> bytes:
    """One server-sent event: its name (the payload's type) and its JSON data."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
