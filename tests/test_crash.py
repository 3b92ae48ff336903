"""Crashes at any instant: nothing partial is ever visible and nothing acknowledged is lost.

Senders are forked from this process (no interpreter start per crash) and killed
with SIGKILL after a random delay, or made to die at a named fault point between
two system calls (``$AGENTMAILBOX_FAULT`` / ``agentmailbox.fs.faults``). A sender
appends an id to its acknowledgement file only after ``send`` returned, as a
caller would act on it. Readers are killed at the claim and done fault points.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, python_env

from agentmailbox import Mailbox, State, doctor
from agentmailbox.fs import faults
from agentmailbox.inbox import Inbox
from agentmailbox.message import Malformed, decode

KILLS = 200
MAX_DELAY = 0.030  # seconds a sender runs before SIGKILL
SEND_FAULTS = ("stage.written", "send.staged", "send.published")
FAULT_EVERY = 4  # one iteration in four dies at a fault point instead of by SIGKILL
FAULT_EXIT = 77  # the exit status of a process that died at a fault point
SEED = int(os.environ.get("CRASH_SEED", "20260101"))
# bob is read while senders die; carol is left unread, so all her mail is checked in new/.
RECIPIENTS = ("bob", "carol")
TIMEOUT = 120


@dataclass
class Crashes:
    """What the crash run left behind, gathered once for the tests below."""

    mb: Mailbox
    statuses: list[tuple[str | None, int]] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # id -> sender child
    undecodable_in_new: list[str] = field(default_factory=list)
    seen_in_new: int = 0
    claimed: dict[str, list[str]] = field(default_factory=dict)  # agent -> ids, all readers
    dead_reasons: list[str] = field(default_factory=list)
    stored: dict[str, Counter[str]] = field(default_factory=dict)  # agent -> id -> copies
    stored_by_child: dict[str, dict[str, int]] = field(default_factory=dict)
    repaired: list[doctor.Finding] = field(default_factory=list)
    after_repair: list[doctor.Finding] = field(default_factory=list)


def _child(*args: str, fault: str = "") -> subprocess.Popen[bytes]:
    env = python_env()
    if fault:
        env["AGENTMAILBOX_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "tests.procs", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(proc: subprocess.Popen[bytes], code: int = 0) -> dict[str, object]:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert code == proc.returncode, err.decode()
    return orjson.loads(out) if out else {}


# -- the sender that gets killed ----------------------------------------------------------------

def _sender(root: Path, acks: Path, child: int, fault: str | None, warmup: int) -> None:
    """Runs in a forked child: send forever, acknowledging each id once send returned."""
    code = 1
    try:
        fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with Mailbox.open(root) as mb:
            seq = 0
            while True:
                if fault is not None and seq == warmup:
                    faults.point, faults.action = fault, ""
                msg = mb.send("alice", RECIPIENTS, subject=str(seq),
                              body={"child": child, "seq": seq})
                os.write(fd, f"{child} {msg.id}\n".encode())
                if fault is not None and seq == warmup:
                    code = 3  # the armed fault point was never reached
                    break
                seq += 1
    finally:
        os._exit(code)


def _run_sender(root: Path, acks: Path, child: int, fault: str | None, rng: random.Random
                ) -> int:
    warmup = rng.randrange(0, 5)
    delay = rng.uniform(0, MAX_DELAY)
    pid = os.fork()
    if pid == 0:
        _sender(root, acks, child, fault, warmup)
    if fault is None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def _plan(i: int) -> str | None:
    if i % FAULT_EVERY != FAULT_EVERY - 1:
        return None
    return SEND_FAULTS[(i // FAULT_EVERY) % len(SEND_FAULTS)]


def _read_acks(acks: Path) -> dict[str, int]:
    out = {}
    for line in acks.read_bytes().split(b"\n"):
        parts = line.decode().split(" ")
        if len(parts) == 2 and len(parts[1]) == 37:
            out[parts[1]] = int(parts[0])
    return out


def _scan_new(inbox: Inbox, report: Crashes) -> None:
    """Every file in new/ must decode as a whole message."""
    for path in sorted(inbox.new.iterdir()):
        report.seen_in_new += 1
        try:
            decode(path.read_bytes(), expected_id=path.name[:-5])
        except FileNotFoundError:
            continue
        except Malformed as exc:
            report.undecodable_in_new.append(f"{path.name}: {exc.reason}")


def _claim_all(inbox: Inbox) -> list[str]:
    claimed = []
    while (msg := inbox.claim()) is not None:
        claimed.append(msg.id)
        inbox.done(msg)
    return claimed


def _stored(inbox: Inbox) -> Counter[str]:
    files = [*inbox.new.iterdir(), *inbox.cur.iterdir(), *inbox.done_dir.glob("*/*")]
    return Counter(p.name[:-5] for p in files)


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crashes]:
    """200 senders killed mid-send while bob's reader claims; then a final reader and doctor."""
    base = tmp_path_factory.mktemp("crash")
    mb = Mailbox.init(base, fsync="never")
    for name in ("alice", *RECIPIENTS):
        mb.add_agent(name)
    report = Crashes(mb)
    acks, stop = base / "acks", base / "stop-reader"
    reader = _child("drain", str(mb.path), "bob", str(stop))
    rng = random.Random(SEED)
    try:
        for i in range(KILLS):
            fault = _plan(i)
            report.statuses.append((fault, _run_sender(mb.path, acks, i, fault, rng)))
    finally:
        stop.touch()
        report.claimed["bob"] = list(_result(reader)["ids"])
    report.acked = _read_acks(acks)
    with Mailbox.open(mb.path) as fresh:
        _scan_new(fresh.inbox("carol"), report)
        for name in RECIPIENTS:
            inbox = fresh.inbox(name)
            report.claimed[name] = report.claimed.get(name, []) + _claim_all(inbox)
            report.stored[name] = _stored(inbox)
            report.stored_by_child[name] = {
                m.id: m.body["child"] for m in _done_messages(inbox)}
        report.dead_reasons = [d.reason for d in fresh.dead.list()]
        report.repaired = doctor.check(fresh, repair=True, stale_after=0)
        report.after_repair = doctor.check(fresh)
    yield report
    mb.close()


def _done_messages(inbox: Inbox) -> list:
    return [decode(p.read_bytes()) for p in inbox.done_dir.glob("*/*.json")]


@pytest.mark.slow
def test_senders_died_where_planned(crashes: Crashes) -> None:
    """Killed senders died by SIGKILL; fault-armed senders died at their fault point."""
    wrong = [(fault, status) for fault, status in crashes.statuses
             if (fault is None and not (os.WIFSIGNALED(status)
                                        and os.WTERMSIG(status) == signal.SIGKILL))
             or (fault is not None and not (os.WIFEXITED(status)
                                            and os.WEXITSTATUS(status) == FAULT_EXIT))]
    assert [] == wrong


@pytest.mark.slow
def test_no_partial_message_is_ever_visible_in_new(crashes: Crashes) -> None:
    """Every file a reader can see in new/ is a whole, valid message."""
    assert [] == crashes.undecodable_in_new


@pytest.mark.slow
def test_readers_meet_no_malformed_mail(crashes: Crashes) -> None:
    """Neither the concurrent nor the final reader quarantined anything: dead/ is empty."""
    assert [] == crashes.dead_reasons


@pytest.mark.slow
def test_the_run_had_work_to_check(crashes: Crashes) -> None:
    """Senders got sends acknowledged, bob's reader claimed while they died, and carol's
    new/ held all of her mail at the end."""
    assert (True, True, True) == (len(crashes.acked) > KILLS, len(crashes.claimed["bob"]) > 0,
                                  crashes.seen_in_new >= len(crashes.acked))


@pytest.mark.slow
@pytest.mark.parametrize("agent", RECIPIENTS)
def test_every_acknowledged_send_is_stored_exactly_once(crashes: Crashes, agent: str) -> None:
    """An id whose send returned is in each recipient's inbox, once, whatever happened after."""
    counts = {msg_id: crashes.stored[agent][msg_id] for msg_id in crashes.acked}
    assert [] == [(i, n) for i, n in counts.items() if n != 1]


@pytest.mark.slow
@pytest.mark.parametrize("agent", RECIPIENTS)
def test_no_message_is_stored_twice(crashes: Crashes, agent: str) -> None:
    """No id appears in more than one place or twice in one place."""
    assert [] == [(i, n) for i, n in crashes.stored[agent].items() if n != 1]


@pytest.mark.slow
@pytest.mark.parametrize("agent", RECIPIENTS)
def test_each_stored_message_was_claimed_once(crashes: Crashes, agent: str) -> None:
    """The readers claimed every stored message, and never the same id twice."""
    claimed = Counter(crashes.claimed[agent])
    assert ([], set(crashes.stored[agent])) == (
        [i for i, n in claimed.items() if n != 1], set(claimed))


@pytest.mark.slow
@pytest.mark.parametrize("agent", RECIPIENTS)
def test_at_most_the_send_in_flight_is_stored_unacknowledged(crashes: Crashes, agent: str
                                                             ) -> None:
    """A killed sender leaves at most one stored message it never acknowledged."""
    unacked = Counter(child for msg_id, child in crashes.stored_by_child[agent].items()
                      if msg_id not in crashes.acked)
    assert [] == [(child, n) for child, n in unacked.items() if n > 1]


@pytest.mark.slow
def test_doctor_repairs_only_staging_leftovers(crashes: Crashes) -> None:
    """After the crashes doctor finds only tmp/ leftovers, and repairs each of them."""
    assert ({"stale-tmp"}, True) == ({f.kind for f in crashes.repaired},
                                     all(f.repaired for f in crashes.repaired))


@pytest.mark.slow
def test_doctor_reports_clean_after_repair(crashes: Crashes) -> None:
    """A second doctor run after the repair finds nothing."""
    assert [] == crashes.after_repair


# -- readers killed at the claim and done steps ----------------------------------------------------

READER_FAULTS = {"claim.moved": "", "claim.taken": "", "done.moved": "done"}


def _killed_reader(mb: Mailbox, point: str) -> None:
    proc = _child("claim", str(mb.path), "bob", READER_FAULTS.get(point, ""), fault=point)
    _result(proc, code=FAULT_EXIT)


def _places(mb: Mailbox, ids: list[str]) -> dict[str, list[State]]:
    inbox = mb.inbox("bob")
    out: dict[str, list[State]] = {}
    for msg_id in ids:
        name = f"{msg_id}.json"
        out[msg_id] = [s for s, p in ((State.NEW, inbox.new / name), (State.CLAIMED,
                       inbox.cur / name), (State.DONE, inbox.done_dir / _day(msg_id) / name))
                       if p.exists()]
    return out


def _day(msg_id: str) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(int(msg_id[:20]) // 10**9))


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(READER_FAULTS))
def test_reader_killed_mid_claim_loses_nothing_and_hands_out_nothing_twice(
        mb: Mailbox, point: str) -> None:
    """After a reader dies at any claim step, the next reader plus lease expiry hand out
    every message exactly once."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(5)]
    _killed_reader(mb, point)
    inbox = Mailbox.open(mb.path).inbox("bob")
    claimed = _claim_all(inbox)
    assert [] == [i for i, places in _places(mb, ids).items() if len(places) != 1]
    inbox.requeue_expired(lease_seconds=0)
    claimed += _claim_all(inbox)
    finished_by_the_dead = [ids[0]] if point == "done.moved" else []
    assert (sorted(ids), []) == (sorted(claimed + finished_by_the_dead), mb.dead.list())


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(READER_FAULTS))
def test_doctor_repair_after_a_killed_reader_leaves_each_message_in_one_place(
        mb: Mailbox, point: str) -> None:
    """doctor --repair straight after a reader died mid-claim keeps every message, once,
    and quarantines nothing."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(3)]
    _killed_reader(mb, point)
    doctor.check(mb, repair=True)
    places = _places(mb, ids)
    assert ([], []) == ([i for i, p in places.items() if len(p) != 1],
                        [d.reason for d in mb.dead.list()])
    assert [] == doctor.check(mb)


@pytest.mark.slow
def test_reader_killed_while_quarantining_is_finished_by_doctor(mb: Mailbox) -> None:
    """A reader dying between the reason and the move leaves no mail without a reason;
    doctor --repair finishes the quarantine."""
    bad = f"{mb.root.clock.new_id()}.json"
    (mb.inbox("bob").new / bad).write_bytes(b"")
    good = mb.send("alice", "bob").id
    _killed_reader(mb, "quarantine.reason_written")
    assert "orphan-reason" not in {f.kind for f in doctor.check(mb)}  # could be in progress
    found = doctor.check(mb, repair=True, stale_after=0)
    assert {"orphan-reason", "malformed"} <= {f.kind for f in found}
    assert [bad] == [d.name for d in mb.dead.list()]
    assert good == mb.inbox("bob").claim().id
    assert [] == doctor.check(mb)
