"""Journal lines of a burst are written in groups: at once when alone, never lost by an
orderly end, seen at once by readers in the same process, and a crash takes at most the
lines held, never mail and never a torn line (PROTOCOL.md §12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, Result, python_env

from agentmailbox import Mailbox, journal

FROZEN = 1000.0
"""A monotonic time that never moves: with it every line after the first is held until
something writes it (a read, close, exit, a full group), never the flusher."""


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's clock stands still, so holding does not depend on the machine's speed."""
    monkeypatch.setattr(journal._PENDING, "clock", lambda: FROZEN)


@pytest.fixture
def writes(mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The bytes of each write to a journal day file of ``mb``'s root."""
    seen: list[bytes] = []
    write = os.write
    folder = str(mb.root.journal.directory)

    def counting(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(folder):
            seen.append(bytes(data))
        return write(fd, data)

    monkeypatch.setattr(os, "write", counting)
    yield seen
    monkeypatch.undo()


def _day_lines(root: Path) -> list[bytes]:
    """Every line of every journal day file, read as another process would (no flush)."""
    lines: list[bytes] = []
    for day in sorted((root / "journal").glob("*.jsonl")):
        lines += day.read_bytes().splitlines(keepends=True)
    return lines


def _events(root: Path, event: str) -> list[dict[str, object]]:
    return [e for e in map(orjson.loads, _day_lines(root)) if e["ev"] == event]


def test_a_lone_transition_is_written_at_once(mb: Mailbox) -> None:
    """A process that sends one message has its send line on disk when send returns."""
    time.sleep(2 * journal.DELAY)  # nothing written by this process for DELAY
    msg = mb.send("alice", "bob", "hello")
    assert [msg.id] == [e["id"] for e in _events(mb.path, "send")]


def test_a_burst_goes_out_in_one_write(mb: Mailbox, frozen: None,
                                       writes: list[bytes]) -> None:
    """The lines of a burst after the first reach the day file in one append, in order."""
    sent = [mb.send("alice", "bob", f"n{i}").id for i in range(20)]
    assert 1 == len(writes)  # the first, alone
    mb.close()
    assert 2 == len(writes)
    assert sent == [e["id"] for e in _events(mb.path, "send")]


def test_a_reader_in_the_same_process_sees_every_line_it_recorded(
        mb: Mailbox, frozen: None) -> None:
    """status, tail and the event list see a claim and done made a moment before."""
    msg = mb.send("alice", "bob", "hello")
    inbox = mb.inbox("bob")
    claimed = inbox.claim()
    assert claimed is not None and inbox.done(claimed)
    assert ["send"] == [e["ev"] for e in map(orjson.loads, _day_lines(mb.path))]
    delivery = mb.status(msg.id).recipients[0]
    assert (True, True) == (delivery.read_at is not None, delivery.done_at is not None)
    assert ["send", "claim", "done"] == [e["ev"] for e in mb.root.journal.events()]


def test_the_command_line_in_the_same_process_sees_held_lines(
        mb: Mailbox, frozen: None, cli: Callable[..., Result]) -> None:
    """A `mailbox tail` run in-process after a burst lists every event of the burst."""
    sent = [mb.send("alice", "bob", f"n{i}").id for i in range(3)]
    tailed = [orjson.loads(line) for line in cli("tail", "--json").out.splitlines()]
    assert sent == [e["id"] for e in tailed if e["ev"] == "send"]


def test_two_mailboxes_of_one_root_keep_the_order_of_their_lines(
        mb: Mailbox, frozen: None) -> None:
    """Lines recorded through two open mailboxes of one root are appended in record order."""
    other = Mailbox.open(mb.path)
    ids = [box.send("alice", "bob", "x").id for box in (mb, other, mb, other)]
    other.close()
    assert ids == [e["id"] for e in _events(mb.path, "send")]


def test_a_group_is_at_most_group_limit_bytes(mb: Mailbox, frozen: None,
                                              writes: list[bytes]) -> None:
    """A long burst is written in several appends, each of whole lines and at most
    GROUP_LIMIT bytes."""
    note = "x" * 1000
    count = 3 * journal.GROUP_LIMIT // 1000
    for _ in range(count):
        mb.root.journal.record("note", note=note)
    mb.close()
    assert all(len(w) <= journal.GROUP_LIMIT and w.endswith(b"\n") for w in writes)
    assert 3 < len(writes)
    assert count == len(_events(mb.path, "note"))


def test_a_batch_still_writes_its_lines_at_its_end(mb: Mailbox, frozen: None) -> None:
    """The lines of a batch wait for its end, then follow what the process held before."""
    first = mb.send("alice", "bob")
    second = mb.send("alice", "bob")
    with mb.batch():
        third = mb.send("alice", "bob")
        assert [first.id] == [e["id"] for e in _events(mb.path, "send")]
    assert [first.id, second.id, third.id] == [e["id"] for e in _events(mb.path, "send")]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_never_writes_its_parents_held_lines(mb: Mailbox, frozen: None) -> None:
    """After a fork each held line is written once, by the parent; the child writes its own."""
    sent = [mb.send("alice", "bob", "parent").id for _ in range(3)]
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            mb.send("alice", "bob", "child")
            mb.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert 0 == status
    mb.close()
    lines = _events(mb.path, "send")
    assert sorted(sent) == sorted(e["id"] for e in lines if e["subject"] == "parent")
    assert 1 == len([e for e in lines if e["subject"] == "child"])


_BURST = """
import sys, time
from agentmailbox import Mailbox, journal
journal._PENDING.clock = lambda: 1000.0  # hold every line after the first
mb = Mailbox.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    mb.send("alice", "bob", f"n{i}")
if sys.argv[3] == "close":
    mb.close()
    print("closed", flush=True)
    sys.stdin.read()  # stay alive until the test has looked
"""


def test_a_burst_reaches_the_day_file_when_the_mailbox_closes(mb: Mailbox) -> None:
    """Another process sees every line of a burst once the sending process closed its
    mailbox, while it still runs."""
    proc = subprocess.Popen([sys.executable, "-c", _BURST, str(mb.path), "50", "close"],
                            cwd=ROOT, env=python_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    assert "closed\n" == proc.stdout.readline()
    assert 50 == len(_events(mb.path, "send"))
    proc.stdin.close()
    proc.stdout.close()
    assert 0 == proc.wait(timeout=60)


def test_a_burst_reaches_the_day_file_when_the_process_exits(mb: Mailbox) -> None:
    """A process that sends a burst and exits without closing its mailbox loses no line."""
    done = subprocess.run([sys.executable, "-c", _BURST, str(mb.path), "50", "exit"],
                          cwd=ROOT, env=python_env(), timeout=60)
    assert 0 == done.returncode
    assert 50 == len(_events(mb.path, "send"))


_LOOP = """
import sys
from agentmailbox import Mailbox
mb = Mailbox.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    print(mb.send(sys.argv[3], "bob", f"n{i}").id, flush=True)
mb.close()
print("closed", flush=True)
sys.stdin.read()
"""


def _sender(root: Path, sender: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _LOOP, str(root), str(count), sender],
                            cwd=ROOT, env=python_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_a_killed_sender_loses_only_its_last_journal_lines(mb: Mailbox) -> None:
    """SIGKILL of a process sending in a loop: every message it reported sent is in the
    inbox, every journal line is whole, what it lost is the end of its own record, and a
    live process's lines are all there."""
    live = _sender(mb.path, "alice", 200)
    victim = _sender(mb.path, "bob", 100_000)
    assert live.stdout is not None and victim.stdout is not None
    reported = [victim.stdout.readline().strip() for _ in range(500)]
    victim.kill()
    reported += victim.stdout.read().split()
    victim.wait(timeout=60)
    live_ids = [live.stdout.readline().strip() for _ in range(200)]
    assert "closed" == live.stdout.readline().strip()
    text = b"".join(_day_lines(mb.path))
    assert text.endswith(b"\n")
    sends = _events(mb.path, "send")  # every line parses: none is torn
    new = {p.stem for p in (mb.path / "agents" / "bob" / "inbox" / "new").iterdir()}
    assert set(reported) <= new  # no mail lost
    assert live_ids == [e["id"] for e in sends if e["from"] == "alice"]
    journalled = [e["id"] for e in sends if e["from"] == "bob"]
    assert reported[:len(journalled)] == journalled[:len(reported)]  # a prefix
    assert len(journalled) <= len(reported) + 1  # at most the line of one unreported send
    for proc in (live, victim):
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    live.wait(timeout=60)
    assert signal.SIGKILL == -victim.returncode


def test_the_flusher_ends_itself_once_the_burst_is_over(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that sent a burst and went quiet keeps no journal thread, and lost no line."""
    monkeypatch.setattr(journal, "IDLE", 0.05)
    sent = [mb.send("alice", "bob", f"n{i}").id for i in range(50)]
    flusher = journal._PENDING.flusher
    if flusher is not None:  # the burst was slower than DELAY per line: nothing held
        flusher.join(timeout=30)
        assert not flusher.is_alive()
    assert journal._PENDING.flusher is None
    assert sent == [e["id"] for e in _events(mb.path, "send")]
