"""Special files planted where the library appends, locks or reads its logs, or where the
workspace keeps its files: FIFOs, devices, folders and links out of the root.

Nothing may block on them, follow them or read them without bound: each operation either
goes on (the journal is best effort) or fails at once with a clear error naming the path
and what is there. A sentinel folder beside the root (the ``outside`` fixture, autouse)
must stay unchanged.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentmailbox import Mailbox, StorageError
from agentmailbox.supervisor import Supervisor


@pytest.fixture(autouse=True)
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder beside the root that a planted link points into; nothing in it may change."""
    top = tmp_path / "outside"
    (top / "folder").mkdir(parents=True)
    (top / "secret.txt").write_bytes(b"TOP-SECRET-7f3a\n")
    before = _fingerprint(top)
    yield top
    assert before == _fingerprint(top), "something outside the root changed"


def _fingerprint(top: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            st = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            out[str(path.relative_to(top))] = (digest, st.st_size, st.st_mtime_ns)
    return out


# -- what can be planted, and how the error names it ----------------------------------------------

def _device(path: Path, out: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero


SPECIAL: dict[str, tuple[Callable[[Path, Path], object], str]] = {
    "fifo": (lambda path, out: os.mkfifo(path), "a FIFO"),
    "device": (_device, "a device"),
    "directory": (lambda path, out: path.mkdir(), "a directory"),
    "symlink-outside": (lambda path, out: path.symlink_to(out / "secret.txt"), "a symbolic link"),
}


def _plant(path: Path, out: Path, kind: str) -> str:
    """Put a ``kind`` file at ``path`` (replacing what is there); returns how errors name it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        path.unlink()
    create, words = SPECIAL[kind]
    create(path, out)
    return words


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _month() -> str:
    return time.strftime("%Y-%m", time.gmtime())


# -- appending: the journal and event memory -----------------------------------------------------

@pytest.mark.parametrize("kind", SPECIAL)
def test_send_delivers_when_the_journal_day_is_a_special_file(
        mb: Mailbox, outside: Path, no_hang: None, kind: str) -> None:
    """A FIFO, device, folder or link at today's journal file never stops mail being sent."""
    _plant(mb.path / "journal" / f"{_today()}.jsonl", outside, kind)
    with Mailbox.open(mb.path) as fresh:
        msg = fresh.send("alice", "bob", "hello", "body")
    assert [msg.id] == [m.id for m in mb.inbox("bob").list()]


@pytest.mark.parametrize("kind", SPECIAL)
def test_remember_refuses_an_event_segment_that_is_a_special_file(
        mb: Mailbox, outside: Path, no_hang: None, kind: str) -> None:
    """A special file at this month's event memory gives a clear error naming it, at once."""
    path = mb.path / "agents" / "bob" / "events" / f"{_month()}.jsonl"
    words = _plant(path, outside, kind)
    with pytest.raises(StorageError, match=f"{path}.* is {words}.*mailbox doctor"):
        mb.agent("bob").remember("learned something")


@pytest.mark.parametrize("kind", ["fifo", "symlink-outside"])
def test_boot_and_handoff_fail_cleanly_when_the_event_segment_is_a_special_file(
        mb: Mailbox, outside: Path, no_hang: None, kind: str) -> None:
    """Boot and handoff, which record in event memory, fail with the error instead of blocking."""
    words = _plant(mb.path / "agents" / "bob" / "events" / f"{_month()}.jsonl", outside, kind)
    agent = mb.agent("bob")
    with pytest.raises(StorageError, match=words):
        agent.boot()
    with pytest.raises(StorageError, match=words):
        agent.handoff(in_progress=["the parser"])


# -- locking ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", SPECIAL)
def test_state_set_refuses_a_state_lock_that_is_a_special_file(
        mb: Mailbox, outside: Path, no_hang: None, kind: str) -> None:
    """A special file at the state lock gives a clear error naming it; the state is unchanged."""
    path = mb.path / "agents" / "bob" / "run" / "state.lock"
    words = _plant(path, outside, kind)
    with pytest.raises(StorageError, match=f"{path}.* is {words}"):
        mb.agent("bob").state.set("task", "parse")
    assert {} == mb.agent("bob").state.snapshot()


@pytest.mark.parametrize("kind", SPECIAL)
def test_ws_lock_refuses_a_lock_file_that_is_a_special_file(
        mb: Mailbox, outside: Path, no_hang: None, kind: str) -> None:
    """A special file at a workspace lock gives a clear error naming it, never a wait."""
    path = mb.path / "workspace" / ".locks" / "plan.md.lock"
    words = _plant(path, outside, kind)
    with pytest.raises(StorageError, match=f"{path}.* is {words}"), mb.workspace.lock("plan.md"):
        pass


@pytest.mark.parametrize("kind", SPECIAL)
def test_supervisor_refuses_a_supervisor_lock_that_is_a_special_file(
        mb: Mailbox, outside: Path, no_hang: None, kind: str) -> None:
    """A special file at run/supervisor.lock stops the supervisor at once with a clear error."""
    path = mb.path / "run" / "supervisor.lock"
    words = _plant(path, outside, kind)
    with pytest.raises(StorageError, match=f"{path}.* is {words}"), Supervisor(mb) as sup:
        sup.run_once()


def test_lock_files_still_exclude_a_second_holder(mb: Mailbox) -> None:
    """The workspace lock still keeps a second holder out while the first holds it."""
    from agentmailbox import LockTimeout

    with mb.workspace.lock("plan.md"), pytest.raises(LockTimeout), \
            mb.workspace.lock("plan.md", timeout=0):
        pass
