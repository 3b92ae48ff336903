"""SIGKILL the supervisor at seeded points while it routes: every copy arrives exactly once,
and every recipient is settled once.

The points come from a seed: ``$MAILBOX_TEST_SEED``, else a fixed default. Each kill
comes once ``spool/new`` has gone down to a count the seed chose, so how many kills
happen, and roughly where, does not depend on the speed of the machine; a failure
names the seed, and the same seed kills at the same counts again.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Hung, deadline, python_env

from agentmailbox import Mailbox

MESSAGES = 5000
RECIPIENTS = ("r1", "r2", "r3")
KILLS = 15
SEED_VARIABLE = "MAILBOX_TEST_SEED"
DEFAULT_SEED = 20261201
KILL_WAIT_SECONDS = 60

Start = Callable[[Path], subprocess.Popen[bytes]]


def _seed() -> int:
    """The seed of the kill points: $MAILBOX_TEST_SEED, else the fixed default."""
    seed = int(os.environ.get(SEED_VARIABLE) or DEFAULT_SEED)
    print(f"kill points from seed {seed} (rerun with {SEED_VARIABLE}={seed})")
    return seed


def _supervise(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agentmailbox", "--root", str(root),
                             "supervise", "--log-level", "warning", *args], env=python_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _waiting(mb: Mailbox) -> int:
    return len(os.listdir(mb.spool.new))


def _kill_points(seed: int, messages: int, kills: int) -> list[int]:
    """How many messages may be left in spool/new at each kill, highest first.

    Never below a tenth of the run, so the last kill still finds plenty to route.
    """
    return sorted(random.Random(seed).sample(range(messages // 10, messages), kills),
                  reverse=True)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: the spool/new count it waited for, and the count it left."""

    point: int
    left: int


def _kill_at(mb: Mailbox, point: int, start: Start, seed: int) -> Kill:
    """Start a supervisor and SIGKILL it once spool/new holds at most ``point`` messages."""
    proc = start(mb.path)
    try:
        with deadline(KILL_WAIT_SECONDS):
            while _waiting(mb) > point:
                time.sleep(0.002)
    except Hung:
        pytest.fail(f"seed {seed}: spool/new did not go down to {point} within "
                    f"{KILL_WAIT_SECONDS} s (it holds {_waiting(mb)})", pytrace=False)
    finally:
        proc.kill()
        proc.wait()
    return Kill(point, _waiting(mb))


def _kill_while_routing(mb: Mailbox, seed: int, messages: int, kills: int,
                        start: Start = _supervise) -> list[Kill]:
    """SIGKILL ``kills`` supervisors in turn, each at its seeded point."""
    done = [_kill_at(mb, point, start, seed) for point in _kill_points(seed, messages, kills)]
    print("killed at (spool/new count waited for, count left):",
          [(kill.point, kill.left) for kill in done])
    return done


def _finished_early(kills: list[Kill]) -> list[Kill]:
    """Kills that found the spool drained: the supervisor was not killed mid-routing."""
    return [kill for kill in kills if kill.left == 0]


@pytest.mark.slow
def test_killed_supervisor_routes_every_group_message_exactly_once(tmp_path: Path) -> None:
    """5,000 messages to a group of 3, 15 SIGKILLs mid-routing at seeded points: each inbox
    holds each id once."""
    mb = Mailbox.init(tmp_path, fsync="never", groups={"team": list(RECIPIENTS)})
    for name in ("alice", *RECIPIENTS):
        mb.add_agent(name)
    sent = {mb.send("alice", "+team", subject=str(i)).id for i in range(MESSAGES)}
    seed = _seed()
    kills = _kill_while_routing(mb, seed, MESSAGES, KILLS)
    final = _supervise(mb.path, "--once")
    assert final.wait(timeout=120) == 0, f"seed {seed}: the last supervisor failed"
    assert [] == _finished_early(kills), f"seed {seed}: killed after routing was done"
    for name in RECIPIENTS:
        ids = [n[:-5] for n in os.listdir(mb.inbox(name).new)]
        assert (len(ids), set(ids)) == (MESSAGES, sent), f"seed {seed}: inbox of {name}"
    leftovers = {f: os.listdir(mb.spool.path / f) for f in ("new", "cur", "deferred", "held")}
    assert leftovers == {"new": [], "cur": [], "deferred": [], "held": []}, f"seed {seed}"
    assert (mb.dead.list(), mb.inbox("alice").ids()) == ([], []), f"seed {seed}"


BROKEN_GROUP = 500
BROKEN_KILLS = 8
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
    mid-routing at seeded points: the others hold each id once, the sender hears once per
    message that r2 is undeliverable, dead/ holds r2's copies only, and the spool ends
    empty."""
    mb = Mailbox.init(tmp_path, fsync="never", groups={"team": list(RECIPIENTS)})
    for name in ("alice", *RECIPIENTS):
        mb.add_agent(name)
    broken = mb.inbox("r2").new
    broken.rmdir()
    broken.write_text("not a folder")
    sent = {mb.send("alice", "+team", subject=str(i)).id for i in range(BROKEN_GROUP)}
    seed = _seed()
    kills = _kill_while_routing(mb, seed, BROKEN_GROUP, BROKEN_KILLS, _supervise_with_bound)
    assert _supervise_with_bound(mb.path, "--once").wait(timeout=120) == 0, f"seed {seed}"
    assert [] == _finished_early(kills), f"seed {seed}: killed after routing was done"
    for name in ("r1", "r3"):
        ids = [n[:-5] for n in os.listdir(mb.inbox(name).new)]
        assert (len(ids), set(ids)) == (BROKEN_GROUP, sent), f"seed {seed}: inbox of {name}"
    told = [m.body for m in mb.inbox("alice").list() if m.body["notice"] == "undeliverable"]
    assert (len(told), {n["of"] for n in told}, {n["agent"] for n in told}) == (
        BROKEN_GROUP, sent, {"r2"}), f"seed {seed}"
    letters = mb.dead.list()
    assert ({d.extra["msg_id"] for d in letters}, {d.extra["agent"] for d in letters}) == (
        sent, {"r2"}), f"seed {seed}"
    leftovers = {f: os.listdir(mb.spool.path / f)
                 for f in ("new", "cur", "deferred", "held", "progress")}
    assert leftovers == {"new": [], "cur": [], "deferred": [], "held": [], "progress": []}, (
        f"seed {seed}")
