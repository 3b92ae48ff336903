"""Claims, give-backs, lease expiry, done, retried sends and doctor --repair, all at once.

Every actor is its own process (``tests/procs.py``); they share only the directory tree.
Afterwards every message is counted where it lies: each id must be in exactly one of
``new/``, ``cur/`` or ``done/``, and ``dead/`` may hold only the redundant copies that
retried sends made. Seeds are printed, so a failing run can be repeated with
``RACE_SEED=<seed>``; ``RACE_SECONDS`` makes the run longer (``scripts/soak`` style).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, deadline, python_env

from agentmailbox import Mailbox, State, doctor

SECONDS = float(os.environ.get("RACE_SECONDS", "6"))
TIMEOUT = 120 + SECONDS


def _child(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.procs", *args], cwd=ROOT,
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(procs: list[subprocess.Popen[bytes]]) -> list[dict[str, int]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, stderr.decode()
        out.append(orjson.loads(stdout))
    return out


def _places(mb: Mailbox, ids: list[str]) -> Counter[str]:
    """How many copies of each id the inbox holds in new/, cur/ and done/ together."""
    inbox = mb.inbox("bob")
    held: Counter[str] = Counter()
    for state in (State.NEW, State.CLAIMED, State.DONE):
        held.update(i for i in inbox.ids(state) if i in ids)
    return held


def _seed() -> int:
    seed = int(os.environ.get("RACE_SEED", random.randrange(1 << 30)))
    print(f"RACE_SEED={seed}")
    return seed


def _run(tmp: Path, *, mix: str, keys: int, resend: bool, lease: float, doctors: int
         ) -> tuple[Mailbox, list[str], list[dict[str, int]]]:
    seed = _seed()
    mb = Mailbox.init(tmp, fsync="never", lease_seconds=lease, test_keys=keys)
    mb.add_agent("alice")
    mb.add_agent("bob")
    ids = [mb.send("alice", "bob", subject=str(n), key=f"key-{n}").id for n in range(keys)]
    stop = tmp / "stop"
    procs = [_child("churn", str(mb.path), "bob", str(stop), str(seed + n), mix)
             for n in range(4)]
    procs += [_child("doctor", str(mb.path), str(stop)) for _ in range(doctors)]
    if resend:
        procs.append(_child("resend", str(mb.path), "alice", "bob", str(stop), str(seed)))
    try:
        _wait_for_claims(mb, 2 * keys)  # contention, however slow the machine is today
        time.sleep(SECONDS)
    finally:
        stop.touch()
    return mb, ids, _finish(procs)


def _wait_for_claims(mb: Mailbox, count: int) -> None:
    """Wait until the journal shows ``count`` claims: the actors are all running."""
    with deadline(TIMEOUT):
        while sum(e.get("ev") == "claim" for e in mb.root.journal.events()) < count:
            time.sleep(0.05)


def _settle_everything(mb: Mailbox) -> list[str]:
    """What a restarted system does: repair, release every claim, drain the inbox."""
    doctor.check(mb, repair=True, stale_after=0)
    inbox = mb.inbox("bob")
    inbox.requeue_expired(lease_seconds=0)
    handled = []
    while (msg := inbox.claim()) is not None:
        handled.append(msg.id)
        inbox.done(msg)
    return handled


@pytest.mark.slow
def test_claimers_giving_mail_back_beside_doctor_lose_nothing(tmp_path: Path) -> None:
    """Four processes of one agent that claim and give back 20 messages, with doctor
    --repair looping beside them and leases running out, keep all 20 in the inbox."""
    mb, ids, counts = _run(tmp_path, mix="release", keys=20, resend=False, lease=0.05,
                           doctors=1)
    assert sum(c.get("claimed", 0) for c in counts) > 20  # they did contend
    assert {i: 1 for i in ids} == dict(_places(mb, ids))
    assert [] == mb.dead.list()
    assert sorted(ids) == sorted(_settle_everything(mb))


@pytest.mark.slow
def test_every_transition_at_once_keeps_each_message_once(tmp_path: Path) -> None:
    """Claims, give-backs, lease expiry, done, retried sends racing claims, and two
    doctors at once: each id ends in exactly one place, done exactly once, and dead/
    holds nothing but redundant copies of ids that are still held."""
    mb, ids, counts = _run(tmp_path, mix="any", keys=40, resend=True, lease=0.05, doctors=2)
    held = _places(mb, ids)
    assert {i: 1 for i in ids} == dict(held)
    reasons = Counter(d.reason for d in mb.dead.list())
    assert set(reasons) <= {"duplicate delivery of a message already done",
                            "duplicate delivery of a message already unread"}
    inbox = mb.inbox("bob")
    done_before = set(inbox.ids(State.DONE))
    handled = _settle_everything(mb)
    assert [] == sorted(set(handled) & done_before)  # nothing finished is handed out again
    assert sorted(ids) == sorted(inbox.ids(State.DONE))
    assert [] == inbox.ids(State.NEW) == inbox.ids(State.CLAIMED)
    assert sum(c.get("done", 0) for c in counts) > 0
