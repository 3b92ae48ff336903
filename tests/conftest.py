"""Shared fixtures: a fresh root per test, a CLI runner, and guards."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from agentmailbox import Mailbox
from agentmailbox.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (watchers and daemons must stop)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:
        t.join(timeout=2)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


class Hung(BaseException):
    """Raised by ``no_hang`` in a blocked test; not an ``OSError`` (as ``TimeoutError`` is),
    so no ``except OSError`` in the code under test can swallow it."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Hung` in a call still blocked after ``seconds`` (SIGALRM)."""
    import signal

    def expire(signum: int, frame: object) -> None:
        raise Hung(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def no_hang() -> Iterator[None]:
    """A blocked system call (a FIFO opened for reading, say) fails the test instead of
    hanging the run."""
    with deadline(20):
        yield


@pytest.fixture
def mb(tmp_path: Path) -> Iterator[Mailbox]:
    """A root with agents alice and bob; fsync off (tests run on a throwaway dir)."""
    box = Mailbox.init(tmp_path, fsync="never")
    box.add_agent("alice", role="planner")
    box.add_agent("bob", role="coder")
    yield box
    box.close()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return orjson.loads(self.out)


@pytest.fixture
def cli(mb: Mailbox, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``mailbox ARGS`` in-process against the ``mb`` root."""
    monkeypatch.setenv("MAILBOX_ROOT", str(mb.path))

    def run(*args: str, stdin: str | None = None) -> Result:
        monkeypatch.setattr(sys, "stdin", Stdin((stdin or "").encode()))
        capfd.readouterr()
        code = main(list(args))
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return run


class Stdin:
    """A standard input that is not a terminal and holds ``data`` (no file to close)."""

    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


def python_env() -> dict[str, str]:
    """Environment for child processes that import agentmailbox from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def files_containing(top: Path, needle: bytes) -> list[str]:
    """Regular files (links not followed) under ``top`` whose bytes contain ``needle``."""
    hits = []
    for folder, _, files in os.walk(top):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink() and path.is_file() and needle in path.read_bytes():
                hits.append(str(path.relative_to(top)))
    return hits
