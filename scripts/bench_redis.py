"""A redis-server for one benchmark run: loopback, a free port, in RAM, stopped by its pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench_contestants import REDIS_ENV

START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(wanted: bool) -> Iterator[str | None]:
    """Start redis-server if `wanted` and installed; yields host:port (None: not started).

    Sets $AGENTMAILBOX_BENCH_REDIS for this process and the children it starts; the
    server is stopped by its pid at the end.
    """
    binary = shutil.which("redis-server")
    if not wanted or binary is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--protected-mode", "yes", "--daemonize", "no", "--dir", "/tmp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        _wait_until_listening(port, proc)
        os.environ[REDIS_ENV] = address
        yield address
    finally:
        os.environ.pop(REDIS_ENV, None)
        proc.terminate()
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("redis-server did not start listening")
