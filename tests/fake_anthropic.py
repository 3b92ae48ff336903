"""A fake Anthropic Messages API on 127.0.0.1, for running a real harness against.

It records the body of every request it receives (``FakeAnthropic.requests``) and answers
``POST /v1/messages`` with one short text reply: as server-sent events when the request
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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self.requests))
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


def _handler_for(requests: list[Recorded]) -> type[BaseHTTPRequestHandler]:
    """A request handler class that appends to ``requests``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self._body()
            requests.append(Recorded("POST", self.path, body))
            route = self.path.split("?")[0]
            if route == "/v1/messages" and isinstance(body, dict) and body.get("stream"):
                self._stream(body)
            elif route == "/v1/messages":
                self._json(_message(body))
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

        def _stream(self, body: Any) -> None:
            data = b"".join(_event(e) for e in _stream_events(body))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _message(body: Any) -> dict[str, Any]:
    """A complete assistant message with the reply text (the non-streaming answer)."""
    return {**_empty_message(body), "content": [{"type": "text", "text": REPLY}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 100, "output_tokens": 5}}


def _empty_message(body: Any) -> dict[str, Any]:
    """The message of ``message_start``: no content yet."""
    model = body.get("model", "claude-fake") if isinstance(body, dict) else "claude-fake"
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 1}}


def _stream_events(body: Any) -> list[dict[str, Any]]:
    """The events of one streamed text reply, in the order the API sends them."""
    return [
        {"type": "message_start", "message": _empty_message(body)},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]


def _event(payload: dict[str, Any]) -> bytes:
    """One server-sent event: its name (the payload's type) and its JSON data."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
