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
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, python_env

from agentmailbox import Mailbox, StorageError
from agentmailbox.fs import Disk
from agentmailbox.journal import Journal
from agentmailbox.supervisor import Supervisor


@pytest.fixture(autouse=True)
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder beside the root that a planted link points into; nothing in it may change."""
    top = tmp_path / "outside"
    (top / "folder").mkdir(parents=True)
    (top / "secret.txt").write_bytes(b"TOP-SECRET-7f3a\n")
    (top / "journal.jsonl").write_bytes(orjson.dumps(
        {"t": 1, "ev": "send", "id": "x", "subject": "TOP-SECRET-7f3a"}) + b"\n")
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


# -- reading logs: the journal and event memory -------------------------------------------------

@pytest.mark.parametrize("day", ["2026-01-01", "today"])
@pytest.mark.parametrize("kind", ["fifo", "symlink-outside"])
def test_tail_never_opens_a_journal_day_that_is_a_link_or_a_fifo(
        mb: Mailbox, cli, outside: Path, no_hang: None, kind: str, day: str) -> None:
    """tail prints the journal without following a planted link out of it or blocking."""
    mb.send("alice", "bob", "hello")
    path = mb.path / "journal" / f"{_today() if day == 'today' else day}.jsonl"
    if path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(outside / "journal.jsonl")
    for args in (["tail"], ["tail", "--json"]):
        out = cli(*args)
        assert (0, False) == (out.code, "TOP-SECRET" in out.out)


def test_journal_reader_skips_an_overlong_line_and_reads_on(tmp_path: Path) -> None:
    """A journal line over the length cap is skipped without being held; later lines still count."""
    from agentmailbox import journal

    (tmp_path / "2026-01-01.jsonl").write_bytes(
        b'{"t": 1}\n' + b"x" * (journal.LINE_LIMIT + 10) + b'\n{"t": 2}\n{"t": 3')
    assert [1, 2] == [e["t"] for e in Journal(tmp_path, Disk()).events()]


def test_journal_reader_gives_each_event_with_where_to_go_on(tmp_path: Path) -> None:
    """Reading a day from an offset gives the events after it, never a line still being written."""
    first, second = b'{"t": 1}\n', b'{"t": 2}\n'
    (tmp_path / "2026-01-01.jsonl").write_bytes(first + second + b'{"t": 3')
    read = list(Journal(tmp_path, Disk()).read("2026-01-01", len(first)))
    assert [(len(first + second), {"t": 2})] == read


# Reading must not grow with the file: these run the CLI under an address-space limit far
# below the size of the planted file (which is sparse: it takes no disk).
_ADDRESS_SPACE = 512 << 20
_HUGE = 8 << 30


def _limited_cli(mb: Mailbox, *args: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))

    env = {**python_env(), "MAILBOX_ROOT": str(mb.path)}
    return subprocess.run([sys.executable, "-m", "agentmailbox", *args], cwd=ROOT, env=env,
                          preexec_fn=limit, capture_output=True, text=True, timeout=120)


def _grow(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)  # zeros up to ``size``: one endless line without a newline


def test_send_refuses_an_endless_body_file_without_reading_it_whole(mb: Mailbox) -> None:
    """--body-file /dev/zero is refused as too large (exit 7), never read until memory runs out."""
    done = _limited_cli(mb, "send", "--from", "alice", "--to", "bob", "--body-file", "/dev/zero")
    assert (7, False) == (done.returncode, "Traceback" in done.stderr), done.stderr
    assert "over the limit" in done.stderr


def test_status_thread_and_tail_read_a_huge_journal_day_with_bounded_memory(mb: Mailbox) -> None:
    """status, thread show and tail work when a journal day is far larger than memory."""
    msg = mb.send("alice", "bob", "hello")
    _grow(mb.path / "journal" / f"{_today()}.jsonl", _HUGE)
    for args in (["status", msg.id, "--json"], ["thread", "show", msg.thread, "--json"],
                 ["tail", "--json"]):
        done = _limited_cli(mb, *args)
        assert (0, False, True) == (done.returncode, "Traceback" in done.stderr,
                                    msg.id in done.stdout), (args, done.stderr)


def test_memory_reads_a_huge_event_segment_with_bounded_memory(mb: Mailbox) -> None:
    """memory lists the events of a segment far larger than memory."""
    agent = mb.agent("bob")
    agent.remember("the parser is done")
    _grow(agent.memory.current_file(), _HUGE)
    done = _limited_cli(mb, "memory", "bob", "--json")
    assert (0, True) == (done.returncode, "the parser is done" in done.stdout), done.stderr
