"""SIGKILL the supervisor at random points while it routes: every copy arrives exactly once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import python_env

from agentmailbox import Mailbox

MESSAGES = 5000
RECIPIENTS = ("r1", "r2", "r3")
KILLS = 15


def _supervise(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agentmailbox", "--root", str(root),
                             "supervise", "--log-level", "warning", *args], env=python_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _waiting(mb: Mailbox) -> int:
    return len(os.listdir(mb.spool.new))


def _kill_while_routing(mb: Mailbox, rng: random.Random) -> bool:
    """Start a supervisor, let it route for a random moment, SIGKILL it. False if it finished."""
    before = _waiting(mb)
    proc = _supervise(mb.path)
    try:
        deadline = time.monotonic() + 60
        while _waiting(mb) == before and before and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.08))
    finally:
        proc.kill()
        proc.wait()
    return _waiting(mb) > 0


@pytest.mark.slow
def test_killed_supervisor_routes_every_group_message_exactly_once(tmp_path: Path) -> None:
    """5,000 messages to a group of 3, 15 SIGKILLs mid-routing: each inbox holds each id once."""
    mb = Mailbox.init(tmp_path, fsync="never", groups={"team": list(RECIPIENTS)})
    for name in ("alice", *RECIPIENTS):
        mb.add_agent(name)
    sent = {mb.send("alice", "+team", subject=str(i)).id for i in range(MESSAGES)}
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    kills = 0
    while kills < KILLS and _kill_while_routing(mb, rng):
        kills += 1
    final = _supervise(mb.path, "--once")
    assert final.wait(timeout=120) == 0
    assert kills >= 10, "the supervisor finished before it could be killed often enough"
    for name in RECIPIENTS:
        ids = [n[:-5] for n in os.listdir(mb.inbox(name).new)]
        assert (len(ids), set(ids)) == (MESSAGES, sent), name
    leftovers = {f: os.listdir(mb.spool.path / f) for f in ("new", "cur", "deferred", "held")}
    assert leftovers == {"new": [], "cur": [], "deferred": [], "held": []}
    assert (mb.dead.list(), mb.inbox("alice").ids()) == ([], [])
