"""What an outside attacker still breaks, each as a test that fails until it is fixed.

Every test here was an attack run against this code through the CLI, the Python API or
files planted on disk, and the promise of docs/RELIABILITY.md it broke: no acknowledged
message lost, none handed out twice, nothing partial, nothing outside the root read,
written or followed, a clear error (never a traceback) for bad input, nothing hangs.
Each is marked ``xfail(strict=True)`` with what breaks; the fix removes the mark.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import ROOT, deadline, python_env

from agentmailbox import InvalidInput, Mailbox, MailboxError, StorageError, doctor
from agentmailbox.fs import faults
from agentmailbox.inbox import Inbox, State
from agentmailbox.supervisor import purge_dead_letters, retry_dead_letter

SECRET = b"OUTSIDE-SECRET-91c4"


def broke(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file beside the root (same filesystem, so it can be hard-linked into it)."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET + b"\n")
    return path


def _journal_day(mb: Mailbox, day: str) -> Path:
    return mb.path / "journal" / f"{day}.jsonl"


def _plant_lines(path: Path, *entries: dict[str, Any]) -> None:
    with open(path, "ab") as f:
        for entry in entries:
            f.write(orjson.dumps(entry) + b"\n")


# -- journal and memory lines planted with the wrong fields --------------------------------------

@pytest.mark.parametrize("line", [
    {"agent": "bob"},
    {"ev": "claim", "agent": "bob", "t": "noon"},
    {"ev": "route", "expansion": {"+team": 5}},
], ids=["no-event", "time-not-a-number", "expansion-not-lists"])
def test_status_passes_over_a_journal_line_with_wrong_fields(
        mb: Mailbox, cli: Callable[..., Any], line: dict[str, Any]) -> None:
    """`mailbox status` answers for a message whatever else a planted journal line says."""
    msg = mb.send("alice", "bob", subject="hi")
    _plant_lines(_journal_day(mb, msg.day), {**line, "id": msg.id})
    mb.inbox("bob").claim(msg.id)
    assert 0 == cli("status", msg.id).code


@pytest.mark.parametrize("line", [{}, {"id": "not-an-id"}], ids=["no-id", "malformed-id"])
def test_thread_show_passes_over_a_send_line_without_a_valid_id(
        mb: Mailbox, cli: Callable[..., Any], line: dict[str, Any]) -> None:
    """`mailbox thread show` lists the thread's mail even beside a planted send line."""
    msg = mb.send("alice", "bob", subject="hi")
    _plant_lines(_journal_day(mb, msg.day), {"ev": "send", "thread": msg.id, **line})
    shown = cli("thread", "show", msg.id)
    assert (0, True) == (shown.code, msg.id in shown.out)


@pytest.mark.parametrize("line", [
    {"t": 1, "text": "planted", "tags": [1]},
    {"t": 1e30, "text": "planted"},
], ids=["tags-not-text", "time-out-of-range"])
def test_memory_passes_over_an_event_line_with_wrong_fields(
        mb: Mailbox, cli: Callable[..., Any], line: dict[str, Any]) -> None:
    """`mailbox memory` shows an agent's events whatever a planted line in a segment holds."""
    mb.agent("bob").remember("a fact")
    _plant_lines(mb.agent("bob").memory.current_file(), line)
    assert (0, 0) == (cli("memory", "bob").code, cli("memory", "bob", "--json").code)


DEEP = b"[" * 300 + b"]" * 300  # orjson reads 1024 levels and writes 254


def _plant_deep(mb: Mailbox, where: str) -> list[str]:
    """Plant JSON nested past the encoder's depth at ``where``; the command that shows it."""
    if where == "state":
        (mb.root.agent_dir("bob") / "state.json").write_bytes(b'{"k": ' + DEEP + b"}")
        return ["state", "bob", "get"]
    if where == "agent":
        path = mb.registry.identity_path("bob")
        path.write_bytes(path.read_bytes().rstrip().rstrip(b"}") + b', "x": ' + DEEP + b"}")
        return ["agents", "--json"]
    if where == "dead-reason":
        dead_id = mb.root.clock.new_id()
        (mb.dead.directory / f"{dead_id}.msg").write_bytes(b"x")
        (mb.dead.directory / f"{dead_id}.reason.json").write_bytes(
            b'{"id": "' + dead_id.encode() + b'", "reason": "r", "x": ' + DEEP + b"}")
        return ["dead", "ls", "--json"]
    msg = mb.send("alice", "bob", subject="hi")
    with open(_journal_day(mb, msg.day), "ab") as f:
        f.write(b'{"t": 1, "ev": "planted", "x": ' + DEEP + b"}\n")
    return ["tail"]


@pytest.mark.parametrize("where", ["state", "agent", "dead-reason", "journal"])
def test_json_nested_past_the_encoder_depth_is_refused_not_a_traceback(
        mb: Mailbox, cli: Callable[..., Any], where: str) -> None:
    """A planted file nested deeper than can be shown gets a clear error, never a traceback."""
    command = _plant_deep(mb, where)
    assert cli(*command).code in (0, 5)


# -- hard links to files outside the root --------------------------------------------------------

def test_ws_get_never_prints_a_version_hard_linked_to_a_file_elsewhere(
        mb: Mailbox, cli: Callable[..., Any], outside: Path) -> None:
    """A workspace version planted as a hard link to a file outside the root is never shown."""
    mb.workspace.put("notes.md", b"v1\n")
    os.link(outside, mb.path / "workspace" / ".versions" / "notes.md" / "0000000002")
    assert SECRET not in cli("ws", "get", "notes.md").out.encode()


@pytest.mark.parametrize("log", ["journal", "events"])
def test_logs_are_never_appended_through_a_hard_link_to_a_file_elsewhere(
        mb: Mailbox, cli: Callable[..., Any], outside: Path, log: str) -> None:
    """A journal day or event segment hard-linked to a file outside the root is not written."""
    if log == "journal":
        target = mb.root.journal.directory / time.strftime("%Y-%m-%d.jsonl", time.gmtime())
        command = ["send", "--from", "alice", "--to", "bob", "--body", "x"]
    else:
        target = mb.agent("bob").memory.current_file()
        command = ["remember", "bob", "a fact"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    os.link(outside, target)
    cli(*command)
    assert SECRET + b"\n" == outside.read_bytes()


def test_dead_show_never_prints_a_quarantined_hard_link_to_a_file_elsewhere(
        mb: Mailbox, cli: Callable[..., Any], outside: Path) -> None:
    """The content of a file outside the root stays unread after its link was quarantined."""
    template = mb.send("alice", "bob", subject="template")
    path = mb.inbox("bob").new / f"{template.id}.json"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    os.link(outside, path)
    assert mb.inbox("bob").claim() is None  # quarantined as a hard link, before the lease
    outside.write_bytes(SECRET + b"\n")
    dead_id = mb.dead.list()[0].id
    assert SECRET not in cli("dead", "show", dead_id).out.encode()


# -- run/supervisor.json -------------------------------------------------------------------------

def test_routed_send_and_supervise_never_block_on_a_fifo_at_the_holder_record(
        mb: Mailbox, cli: Callable[..., Any]) -> None:
    """A FIFO planted at run/supervisor.json blocks neither a routed send nor the supervisor."""
    os.mkfifo(mb.path / "run" / "supervisor.json")
    with deadline(3):
        sent = cli("send", "--from", "alice", "--to", "@coder", "--body", "x").code
    with deadline(3):
        routed = cli("supervise", "--once").code
    assert (0, 0) == (sent, routed)


def test_routed_send_with_an_out_of_range_pid_in_the_holder_record_is_sent(
        mb: Mailbox, cli: Callable[..., Any]) -> None:
    """A hand-edited pid too large for the system does not stop routed mail being sent."""
    (mb.path / "run" / "supervisor.json").write_bytes(b'{"pid": 2147483648}')
    assert 0 == cli("send", "--from", "alice", "--to", "@coder", "--body", "x").code


def test_routed_send_never_reads_a_holder_record_linked_out_of_the_root(
        mb: Mailbox, cli: Callable[..., Any], tmp_path: Path) -> None:
    """A holder record that is a link out of the root is not believed (nor read)."""
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(orjson.dumps({"pid": os.getpid()}))
    (mb.path / "run" / "supervisor.json").symlink_to(elsewhere)
    sent = cli("send", "--from", "alice", "--to", "@coder", "--body", "x")
    assert "no supervisor is running" in sent.err


# -- folders swapped for links -------------------------------------------------------------------

@broke("Disk.guard trusts a folder it found real for TRUST_SECONDS by its path: a folder "
       "swapped for a link out of the root within that second is followed (mail written "
       "outside and acknowledged)")
def test_a_folder_swapped_for_a_link_after_a_send_is_never_followed(
        mb: Mailbox, tmp_path: Path) -> None:
    """An inbox folder replaced by a link right after a send is not written through."""
    first = mb.send("alice", "bob", subject="first")
    elsewhere = tmp_path / "elsewhere"
    new = mb.inbox("bob").new
    os.rename(new, elsewhere)
    new.symlink_to(elsewhere)
    with contextlib.suppress(StorageError):
        mb.send("alice", "bob", subject="second")
    assert [f"{first.id}.json"] == sorted(os.listdir(elsewhere))


# -- the lease -----------------------------------------------------------------------------------

def test_a_lease_sweep_never_releases_a_claim_taken_after_it_looked(tmp_path: Path) -> None:
    """A reader whose claim is a moment old keeps it, whatever a slower sweep decided earlier."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=1.0)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob", subject="once")
    first, sweeper, other, reader = (Mailbox.open(mb.path).inbox("bob") for _ in range(4))
    assert first.claim() is not None
    time.sleep(1.2)  # the first reader's lease runs out
    release_expired = sweeper.release_expired

    def looked_then_released(msg_ids: list[str], lease_ns: int) -> Any:
        assert [msg.id] == msg_ids  # the sweep found the first reader's claim expired...
        assert [msg.id] == other.requeue_expired()  # ...another sweep gives it back...
        assert reader.claim() is not None  # ...and a reader claims it afresh
        return release_expired(msg_ids, lease_ns)

    sweeper.release_expired = looked_then_released  # type: ignore[method-assign]
    assert [] == sweeper.requeue_expired()
    assert (State.CLAIMED, True) == (reader.state_of(msg.id), reader.done(msg.id))


@contextlib.contextmanager
def _lease_lock_held_elsewhere(mb: Mailbox, agent: str) -> Iterator[None]:
    """Another process holds ``agent``'s lease lock (flock) for the block."""
    lock = mb.root.paths.agent(agent).lock("lease")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and "held" == holder.stdout.readline().strip()
        yield
    finally:
        holder.communicate("")


def test_no_claim_leaves_for_new_while_another_process_releases(tmp_path: Path) -> None:
    """While another process holds the inbox's lease lock (it is releasing claims), a sweep
    gives nothing back and the claim stays claimed; once the lock is free, the next sweep
    releases it."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=1.0)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob", subject="once")
    inbox = mb.inbox("bob")
    assert inbox.claim() is not None
    time.sleep(1.2)
    with _lease_lock_held_elsewhere(mb, "bob"):
        assert [] == Mailbox.open(mb.path).inbox("bob").requeue_expired()
        assert State.CLAIMED is inbox.state_of(msg.id)
    assert [msg.id] == Mailbox.open(mb.path).inbox("bob").requeue_expired()
    assert State.NEW is inbox.state_of(msg.id)


def test_a_late_release_never_gives_back_another_readers_fresh_claim(tmp_path: Path) -> None:
    """A reader whose claim is a moment old keeps it, whatever a reader whose lease ran out
    does with the message it held before."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=0.5)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob", subject="once")
    slow, second, third = (Mailbox.open(mb.path).inbox("bob") for _ in range(3))
    with contextlib.suppress(RuntimeError), slow.processing() as mine:
        assert mine is not None and msg.id == mine.id
        time.sleep(0.6)  # the slow reader outlives its lease...
        again = second.claim()  # ...its sweep gives the message back, claimed afresh
        assert again is not None and msg.id == again.id
        raise RuntimeError("the slow reader's work failed: processing() releases")
    assert (State.CLAIMED, None) == (second.state_of(msg.id), third.claim())


def test_doctor_never_reports_a_lease_expired_claim_fixed_that_it_left_claimed(
        tmp_path: Path) -> None:
    """doctor --repair says fixed only for a claim it gave back: one left claimed because
    another process held the lease lock is still reported, unrepaired."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=0.5)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob", subject="once")
    assert mb.inbox("bob").claim() is not None
    time.sleep(0.6)
    with _lease_lock_held_elsewhere(mb, "bob"):
        found = doctor.check(Mailbox.open(mb.path), repair=True)
        state = mb.inbox("bob").state_of(msg.id)
    assert (State.CLAIMED, [("lease-expired", False)]) == (
        state, [(f.kind, f.repaired) for f in found])


def test_a_sweep_racing_doctor_never_fails_a_claim(tmp_path: Path) -> None:
    """A reader's claim returns the unread message even when doctor quarantines a bad file
    in cur/ between its sweep's look and its release of that file."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=0.5)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob", subject="unread")
    planted = mb.path / "agents" / "bob" / "inbox" / "cur" / f"{'0' * 20}-{'0' * 16}.json"
    planted.write_bytes(b"not a message")
    os.utime(planted, (1, 1))
    time.sleep(0.6)  # its ctime is past the lease too: the sweep finds it expired
    reader = Mailbox.open(mb.path).inbox("bob")
    settle = reader._settle

    def doctor_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = doctor.check(Mailbox.open(mb.path), repair=True)
        assert ["malformed"] == [f.kind for f in found]  # quarantined under the sweep
        return settle(*args, **kwargs)

    reader._settle = doctor_meanwhile  # type: ignore[method-assign]
    got = reader.claim()
    assert got is not None and msg.id == got.id


_RUN_WHILE_LOCKED = """
import sys
from agentmailbox import Mailbox, inbox
from agentmailbox.runner import CommandRunner
inbox.LEASE_LOCK_SECONDS = 0.3  # the 10 s wait, shortened
mb = Mailbox.open(sys.argv[1])
command = 'if grep -q fails "$MAILBOX_PATH"; then exit 1; fi; sleep 1; exit 0'
runner = CommandRunner(mb.inbox("bob"), mb.root, command, max_inflight=2, heartbeat=False)
outcomes = runner.run(once=True, idle_timeout=5)
print(outcomes.done, outcomes.released)
"""


def test_a_command_runner_outlives_a_lease_lock_held_elsewhere(tmp_path: Path) -> None:
    """A runner whose failed command's claim cannot be given back at once (the lease lock
    is held elsewhere) keeps running the other commands to their end."""
    mb = Mailbox.init(tmp_path, fsync="never")
    mb.add_agent("alice")
    mb.add_agent("bob")
    mb.send("alice", "bob", subject="fails")
    works = mb.send("alice", "bob", subject="works")
    with _lease_lock_held_elsewhere(mb, "bob"):
        ran = subprocess.run([sys.executable, "-c", _RUN_WHILE_LOCKED, str(mb.path)],
                             cwd=ROOT, env=python_env(), capture_output=True, text=True,
                             timeout=60)
    assert (0, State.DONE) == (ran.returncode, mb.inbox("bob").state_of(works.id)), ran.stderr


# -- writers that accept what their readers refuse -----------------------------------------------

@pytest.mark.parametrize("note", [5, "x" * 70_000], ids=["note-not-text", "note-over-64-KiB"])
def test_thread_done_never_writes_a_marker_its_readers_refuse(
        mb: Mailbox, cli: Callable[..., Any], note: Any) -> None:
    """Marking a thread done never leaves the inbox of its mail unreadable."""
    msg = mb.send("alice", "bob", subject="hi")
    with contextlib.suppress(InvalidInput):
        mb.threads.mark_done(msg.id, "alice", note)
    assert 0 == cli("inbox", "bob").code


def test_a_keyed_retry_to_many_recipients_reuses_the_first_id(mb: Mailbox) -> None:
    """The same key stores one message, however many addresses the message names."""
    to = [f"+g{i:04d}{'x' * 58}" for i in range(1100)]
    first = mb.send("alice", to, subject="broadcast", key="once")
    assert first.id == mb.send("alice", to, subject="broadcast", key="once").id


def test_the_next_boot_reads_a_handoff_over_one_mib(tmp_path: Path) -> None:
    """The handoff just written is the one the next instance reads, whatever its size."""
    mb = Mailbox.init(tmp_path, fsync="never", max_message_bytes=4 << 20,
                      handoff={"max_bytes": 4 << 20, "max_items": 7})
    mb.add_agent("bob")
    mb.agent("bob").handoff(next=["old plan"])
    written = mb.agent("bob").handoff(next=["new plan " + "x" * 1_200_000])
    latest = Mailbox.open(mb.path).agent("bob").handoffs.latest()
    assert latest is not None and written.id == latest.id


def test_agent_edit_never_writes_an_identity_its_readers_refuse(
        mb: Mailbox, cli: Callable[..., Any]) -> None:
    """After any edit that was accepted, the agent's identity reads back."""
    with contextlib.suppress(InvalidInput):
        mb.registry.edit("bob", description="x" * 1_100_000)
    assert 0 == cli("agents").code


# -- clock values past the id range ---------------------------------------------------------------

@pytest.mark.parametrize("plant", ["handoff", "epoch"])
@pytest.mark.filterwarnings("default:.*stamped far in the future:UserWarning")
def test_boot_survives_a_stamp_past_the_clock_range(
        mb: Mailbox, cli: Callable[..., Any], plant: str) -> None:
    """A planted handoff or epoch record far in the future never stops an agent booting."""
    agent = mb.root.agent_dir("bob")
    if plant == "handoff":
        written = mb.agent("bob").handoff(next=["go on"])
        src = agent / "handoffs" / f"{written.id}.json"
        obj = orjson.loads(src.read_bytes())
        obj["id"] = "18446744073709551615-0123456789abcdef"
        (src.parent / f"{obj['id']}.json").write_bytes(orjson.dumps(obj))
    else:
        (agent / "run" / "epoch").write_bytes(b'{"epoch": 1, "at": 18446744073709551615}\n')
    assert cli("boot", "bob").code in (0, 5)
    cli("doctor", "--repair")
    assert (0, 0) == (cli("boot", "bob").code, cli("handoff", "bob", "--next", "x").code)


# -- bounded reads, text that is not UTF-8, wrong types ------------------------------------------

def test_handoff_file_dev_zero_is_refused_without_reading_it_whole(mb: Mailbox) -> None:
    """`handoff --file /dev/zero` is refused with a clear error, not read until memory runs out."""
    done = subprocess.run(
        ["bash", "-c", 'ulimit -v 1500000; exec "$0" -m agentmailbox --root "$1" handoff bob '
         "--file /dev/zero", sys.executable, str(mb.path)],
        env=python_env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (False, True) == ("Traceback" in done.stderr, done.returncode in (5, 7))


@pytest.mark.parametrize("args", [
    ["remember", "bob", "t\udcffx"],
    ["handoff", "bob", "--next", "n\udcffx"],
    ["agent", "add", "dave", "--description", "d\udcffx"],
    ["agent", "edit", "bob", "--description", "d\udcffx"],
], ids=["remember", "handoff", "agent-add", "agent-edit"])
def test_text_that_is_not_utf8_is_a_clear_error(
        cli: Callable[..., Any], args: list[str]) -> None:
    """A command-line text in another encoding is refused (exit 5), never a traceback."""
    assert 5 == cli(*args).code


def _wrong_types(mb: Mailbox) -> dict[str, Callable[[], object]]:
    inbox = mb.inbox("bob")
    return {
        "send-to-a-number": lambda: mb.send("alice", [5]),  # type: ignore[list-item]
        "send-to-none": lambda: mb.send("alice", None),  # type: ignore[arg-type]
        "done-a-number": lambda: inbox.done(5),  # type: ignore[arg-type]
        "release-none": lambda: inbox.release(None),  # type: ignore[arg-type]
        "renew-a-number": lambda: inbox.renew(5),  # type: ignore[arg-type]
        "ws-put-text": lambda: mb.workspace.put("a", "text"),  # type: ignore[arg-type]
        "ws-get-version-text": lambda: mb.workspace.get("a", "1"),  # type: ignore[arg-type]
        "open-a-number": lambda: Mailbox.open(5),  # type: ignore[arg-type]
        "memory-since-a-number": lambda: mb.agent("bob").memory.events(since=5),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("call", [
    "send-to-a-number", "send-to-none", "done-a-number", "release-none", "renew-a-number",
    "ws-put-text", "ws-get-version-text", "open-a-number", "memory-since-a-number"])
def test_api_calls_with_wrong_types_raise_a_mailbox_error(mb: Mailbox, call: str) -> None:
    """A Python caller passing a wrong type gets a MailboxError saying what is wrong."""
    mb.workspace.put("a", b"x")
    with pytest.raises(MailboxError):
        _wrong_types(mb)[call]()


# -- dead letters ---------------------------------------------------------------------------------

def test_a_dead_letter_put_back_by_retry_is_never_reported_purged(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Of a retry and a purge racing on one letter, only one reports having had it."""
    msg = mb.send("alice", "bob", subject="again")
    dead_id = mb.dead.bury(mb.inbox("bob").new / f"{msg.id}.json", "planted for the test")
    assert dead_id is not None
    purger = Mailbox.open(mb.path)
    purged: list[str] = []
    deliver = Inbox.deliver

    def delivered_then_purged(self: Inbox, *args: Any, **kwargs: Any) -> bool:
        stored = deliver(self, *args, **kwargs)
        purged.extend(purge_dead_letters(purger))
        return stored

    monkeypatch.setattr(Inbox, "deliver", delivered_then_purged)
    retried = retry_dead_letter(mb, dead_id)
    assert not (retried.stored and dead_id in purged)


def test_a_quarantined_folder_is_purged_and_doctor_still_repairs(
        mb: Mailbox, cli: Callable[..., Any]) -> None:
    """A folder quarantined from a staging folder can be purged like any dead letter."""
    planted = mb.inbox("bob").tmp / "a-folder"
    planted.mkdir()
    (planted / "inner").write_bytes(b"x")
    doctor.check(mb, repair=True)
    assert 1 == len(mb.dead.list())
    purge = cli("dead", "purge", "--yes")
    repair = cli("doctor", "--repair", "--stale-after", "0")
    assert (0, 0, []) == (purge.code, repair.code, os.listdir(mb.dead.directory))


# -- the workspace --------------------------------------------------------------------------------

def test_ws_ls_and_doctor_pass_over_a_versions_folder_with_a_bad_name(
        mb: Mailbox, cli: Callable[..., Any]) -> None:
    """A folder under workspace/.versions that names no workspace file is reported, not fatal."""
    mb.workspace.put("notes.md", b"v1\n")
    planted = mb.path / "workspace" / ".versions" / "bad name"
    planted.mkdir()
    (planted / "0000000001").write_bytes(b"x")
    assert (0, 10) == (cli("ws", "ls").code, cli("doctor").code)


# -- atomic replace -------------------------------------------------------------------------------

def test_state_set_is_never_acknowledged_unless_it_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state change that returned is in state.json, even with doctor repairing beside it."""
    mb = Mailbox.init(tmp_path, fsync="never", stale_tmp_seconds=0)
    mb.add_agent("bob")
    repairer = Mailbox.open(mb.path)
    hit = faults.hit
    met: list[str] = []

    def doctor_runs_at(point: str) -> None:
        if point == "replace.staged" and not met:
            met.append(point)
            doctor.check(repairer, repair=True)
        hit(point)

    monkeypatch.setattr(faults, "hit", doctor_runs_at)
    try:
        mb.agent("bob").state.set("k", 1)
    except MailboxError:
        return  # refused: the caller knows
    assert 1 == mb.agent("bob").state.snapshot().get("k")


# -- processes ------------------------------------------------------------------------------------

def test_watch_exec_once_returns_when_out_of_descriptors(mb: Mailbox) -> None:
    """`watch --exec --once` ends even when it can never get the descriptors to run a command."""
    mb.send("alice", "bob", subject="work")
    try:
        done = subprocess.run(
            ["bash", "-c", 'ulimit -n 8; exec "$0" -m agentmailbox --root "$1" watch bob '
             "--exec true --once --timeout 1", sys.executable, str(mb.path)],
            env=python_env(), cwd=ROOT, capture_output=True, text=True, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("watch --exec --once was still running after 8 s")
    assert "Traceback" not in done.stderr


as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                             reason="needs root and setpriv to run a process as another user")
NOBODY = 65534


@as_root
def test_a_root_the_user_may_not_read_is_a_clear_error() -> None:
    """Opening another user's private root says so in one line, without a traceback."""
    top = Path(tempfile.mkdtemp(prefix="agentmailbox-redteam-", dir="/tmp"))
    try:
        top.chmod(0o755)
        mb = Mailbox.init(top, fsync="never")
        mb.add_agent("bob")
        done = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-m", "agentmailbox", "--root", str(mb.path), "inbox", "bob"],
            env=python_env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert ("mailbox:", False) == (done.stderr[:8], "Traceback" in done.stderr)
