"""Shared fixtures: a fresh root per test, a CLI runner, and guards."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from agentmailbox import Mailbox, journal
from agentmailbox.cli import main

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection built (modules, strategies, test items), so the collection
    the guard runs after each test looks only at what tests made: ~1 ms, not ~50."""
    gc.collect()
    gc.freeze()


GRACE_SECONDS = 1.0
"""How long a daemon thread a test started may take to end after the test (one told to
stop may still be on its way out); a non-daemon thread must have been joined, and gets
none."""


@pytest.fixture(autouse=True)
def guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread running or a file unclosed.

    Watchers, daemons and timers must stop by the test's end; a test that keeps one on
    purpose says so with ``@pytest.mark.keeps_thread(reason)``. Warnings are the other
    half of the guard, in pyproject.toml (``filterwarnings``): agentmailbox's own warnings,
    ``ResourceWarning`` and exceptions in threads or ``__del__`` are errors, and a test
    that expects one says so with ``pytest.warns`` or ``@pytest.mark.filterwarnings``.
    """
    before = set(threading.enumerate())
    yield
    gc.collect()  # an unclosed file caught in a reference cycle warns now, in this test
    journal.settle()  # the journal's flusher ends with the burst that started it
    if request.node.get_closest_marker("keeps_thread") is None:
        leaked = _leaked_threads(before)
        assert not leaked, f"threads left running: {leaked}"


def _leaked_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads alive now that were not before, after a short grace for daemon threads."""
    new = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    deadline = time.monotonic() + GRACE_SECONDS
    for t in new:
        if t.daemon:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
    return [t for t in new if t.is_alive()]


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


def mail_state(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file below the root (mtime, content) and every folder, except the records
    surfacing writes: ``journal/`` and each agent's ``run/hooks.json`` (so not the mtime of
    the ``run/`` that holds it)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("journal") or re.fullmatch(r"agents/[^/]+/run/hooks\.json", rel):
            continue
        out[rel] = (path.stat().st_mtime_ns, path.read_bytes()) if path.is_file() else (0, b"/")
    return out
