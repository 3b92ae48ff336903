"""SIGKILL the supervisor at random points while it routes: every copy arrives exactly once,
and every recipient is settled once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
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


def _kill_while_routing(mb: Mailbox, rng: random.Random,
                        start: Callable[[Path], subprocess.Popen[bytes]] | None = None) -> bool:
    """Start a supervisor, let it route for a random moment, SIGKILL it. False if it finished."""
    before = _waiting(mb)
    proc = (start or _supervise)(mb.path)
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


BROKEN_GROUP = 500
_SUPERVISE_WITH_BOUND = (
    "import sys\n"
    "from agentmailbox.supervisor import Supervisor\n"
    "sup = Supervisor(sys.argv[1], backoff=(0, 0), give_up=(2, 0))\n"
    "sup.run_once() if sys.argv[2:] == ['--once'] else sup.run()\n")


def _supervise_with_bound(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _SUPERVISE_WITH_BOUND, str(root), *args],
                            env=python_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_killed_supervisor_settles_each_recipient_once_beside_a_broken_inbox(
        tmp_path: Path) -> None:
    """500 messages to a group whose middle member's inbox cannot be written, SIGKILLed
    mid-routing: the others hold each id once, the sender hears once per message that r2
    is undeliverable, dead/ holds r2's copies only, and the spool ends empty."""
    mb = Mailbox.init(tmp_path, fsync="never", groups={"team": list(RECIPIENTS)})
    for name in ("alice", *RECIPIENTS):
        mb.add_agent(name)
    broken = mb.inbox("r2").new
    broken.rmdir()
    broken.write_text("not a folder")
    sent = {mb.send("alice", "+team", subject=str(i)).id for i in range(BROKEN_GROUP)}
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    kills = 0
    while kills < 8 and _kill_while_routing(mb, rng, _supervise_with_bound):
        kills += 1
    assert _supervise_with_bound(mb.path, "--once").wait(timeout=120) == 0
    assert kills >= 4, "the supervisor finished before it could be killed often enough"
    for name in ("r1", "r3"):
        ids = [n[:-5] for n in os.listdir(mb.inbox(name).new)]
        assert (len(ids), set(ids)) == (BROKEN_GROUP, sent), name
    told = [m.body for m in mb.inbox("alice").list() if m.body["notice"] == "undeliverable"]
    assert (len(told), {n["of"] for n in told}, {n["agent"] for n in told}) == (
        BROKEN_GROUP, sent, {"r2"})
    letters = mb.dead.list()
    assert ({d.extra["msg_id"] for d in letters}, {d.extra["agent"] for d in letters}) == (
        sent, {"r2"})
    leftovers = {f: os.listdir(mb.spool.path / f)
                 for f in ("new", "cur", "deferred", "held", "progress")}
    assert leftovers == {"new": [], "cur": [], "deferred": [], "held": [], "progress": []}
