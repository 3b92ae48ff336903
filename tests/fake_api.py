"""What the fake model APIs share: an HTTP server on 127.0.0.1 that records every request.

A fake (tests/fake_anthropic.py, tests/fake_openai.py) says what a route answers
(:meth:`FakeAPI.answer`); this module listens on a free port in a daemon thread, records
each request's method, path and body (``FakeAPI.requests``), and answers GET and HEAD
with an empty list, so a client's side requests never fail. Nothing here opens a
connection anywhere: it only listens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

REPLY = "Nothing else is new."
"""The text every answer of a fake model carries."""

JSON = "application/json"
EVENTS = "text/event-stream"


@dataclass
class Recorded:
    """One request a fake API received: its method, path and body (JSON, or None)."""

    method: str
    path: str
    body: Any


class FakeAPI:
    """The server, started on a free port by ``start`` and stopped by ``stop``."""

    url_path = ""
    """What follows host and port in :attr:`url` (the client's base URL)."""
    listing = b'{"data": []}'
    """The answer to every GET."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give a client."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.url_path}"

    def start(self) -> Any:
        """Listen on 127.0.0.1, port chosen by the system, in a daemon thread."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
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

    def posts(self, route: str) -> list[Any]:
        """The bodies of every POST to ``route`` (the query left out), in order."""
        return [r.body for r in self.requests
                if r.method == "POST" and r.path.split("?")[0] == route]

    def answer(self, route: str, body: Any) -> tuple[bytes, str]:
        """What a POST to ``route`` gets: the data and its content type."""
        return b"{}", JSON


def sse(events: list[dict[str, Any]]) -> bytes:
    """Server-sent events, each named by its payload's type, with its JSON data."""
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
                    for e in events)


def _handler_for(fake: FakeAPI) -> type[BaseHTTPRequestHandler]:
    """A request handler class that records into ``fake`` and answers through it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self._body()
            fake.requests.append(Recorded("POST", self.path, body))
            self._send(*fake.answer(self.path.split("?")[0], body))

        def do_GET(self) -> None:
            fake.requests.append(Recorded("GET", self.path, None))
            self._send(fake.listing, JSON)

        def do_HEAD(self) -> None:
            fake.requests.append(Recorded("HEAD", self.path, None))
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

        def _send(self, data: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if content_type == EVENTS:
                self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
