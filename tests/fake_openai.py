"""A fake OpenAI Responses API on 127.0.0.1, for running the Codex CLI against.

It records the body of every request it receives (``FakeOpenAI.requests``) and answers
``POST /v1/responses`` with one short assistant message: as server-sent events when the
request asks to stream (response.created, response.output_item.added,
response.output_text.delta, response.output_item.done, response.completed, the flow of the
Responses API's streaming reference), as one JSON response otherwise. Any other path gets
an empty JSON object, so a client's side requests never fail. Nothing here opens a
connection anywhere: it only listens.
"""

from __future__ import annotations

import threading
import time
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
class FakeOpenAI:
    """The server, started on a free port by ``start`` and stopped by ``stop``."""

    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give a client (a model provider's ``base_url``)."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAI:
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

    def response_requests(self) -> list[Any]:
        """The bodies of every ``POST /v1/responses``, in order."""
        return [r.body for r in self.requests
                if r.method == "POST" and r.path.split("?")[0] == "/v1/responses"]


def _handler_for(requests: list[Recorded]) -> type[BaseHTTPRequestHandler]:
    """A request handler class that appends to ``requests``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self._body()
            requests.append(Recorded("POST", self.path, body))
            route = self.path.split("?")[0]
            if route == "/v1/responses" and isinstance(body, dict) and body.get("stream"):
                self._send(b"".join(_event(e) for e in _stream_events(body)),
                           "text/event-stream")
            elif route == "/v1/responses":
                self._send(orjson.dumps(_completed(body)), "application/json")
            else:
                self._send(b"{}", "application/json")

        def do_GET(self) -> None:
            requests.append(Recorded("GET", self.path, None))
            self._send(b'{"object": "list", "data": []}', "application/json")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads ``requests``, not a log."""

        def _body(self) -> Any:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                return orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                return raw.decode("utf-8", "replace")

        def _send(self, data: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


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


def _event(payload: dict[str, Any]) -> bytes:
    """One server-sent event: its name (the payload's type) and its JSON data."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
