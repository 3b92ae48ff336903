"""Handoffs and boots stay in the order they were written when the wall clock steps back.

Each instance of an agent is a new process with a new clock, so nothing in memory
carries the order from one instance to the next: the files on disk must. The wall
clocks here are set by the test (as in tests/test_clock.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmailbox import Clock, Mailbox
from agentmailbox.root import Root

HOUR_NS = 3600 * 10**9
START_NS = 1_795_000_000 * 10**9  # a fixed moment in 2026


class Wall:
    """A wall clock a test can set or step back."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def _instance(root: Path, now_ns: int) -> Mailbox:
    """A new process of the agent, whose wall clock reads ``now_ns``."""
    return Mailbox(Root.load(root, clock=Clock(wall=Wall(now_ns))))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    box = Mailbox.init(tmp_path, fsync="never")
    box.add_agent("bob")
    box.close()
    return box.path


@pytest.mark.parametrize("step_ns", [10**9, HOUR_NS, 24 * HOUR_NS])
def test_restarting_agent_gets_the_newest_handoff_after_a_clock_step_back(
        root: Path, step_ns: int) -> None:
    """Instance 3 is briefed with instance 2's handoff, though instance 2's wall clock read
    earlier than instance 1's."""
    with _instance(root, START_NS) as first:
        first.agent("bob").boot()
        first.agent("bob").handoff(next=["from instance 1"])
    with _instance(root, START_NS - step_ns) as second:
        second.agent("bob").boot()
        second.agent("bob").handoff(next=["from instance 2"])
    with _instance(root, START_NS - step_ns + 10**9) as third:
        brief = third.agent("bob").boot().to_dict()
        latest = third.agent("bob").handoffs.latest()
    assert (["from instance 2"], True) == (
        list(latest.next) if latest else None,
        "from instance 2" in str(brief["handoff"]["items"]))


def test_boot_after_a_clock_step_back_without_a_handoff_says_none_was_written(
        root: Path) -> None:
    """An instance that wrote no handoff is reported as such at the next boot, though the
    handoff of the instance before carries a later wall-clock time."""
    with _instance(root, START_NS) as first:
        first.agent("bob").boot()
        first.agent("bob").handoff(next=["from instance 1"])
    with _instance(root, START_NS - HOUR_NS) as second:
        second.agent("bob").boot()  # dies without a handoff
    with _instance(root, START_NS - HOUR_NS + 10**9) as third:
        summary = third.agent("bob").boot().to_dict()["recovery"]["summary"]
    assert "no handoff was written after the previous boot" in summary


def test_a_checkpoint_after_a_clock_step_back_supersedes_the_final_note(root: Path) -> None:
    """A checkpoint written after a final handoff is the current note, whatever the clock:
    the next boot knows the instance did not stop cleanly."""
    with _instance(root, START_NS) as first:
        first.agent("bob").boot()
        first.agent("bob").handoff(next=["stopped cleanly"])
    with _instance(root, START_NS - HOUR_NS) as second:
        second.agent("bob").boot()
        second.agent("bob").handoff(in_progress=["half way"], final=False)
    with _instance(root, START_NS - HOUR_NS + 10**9) as third:
        latest = third.agent("bob").handoffs.latest()
    assert (("half way",), False) == ((latest.in_progress, latest.final) if latest else None)


def test_handoff_ids_sort_in_writing_order_across_instances(root: Path) -> None:
    """The history lists handoffs in the order they were written, across clock steps."""
    walls = [START_NS, START_NS - HOUR_NS, START_NS + HOUR_NS, START_NS - 2 * HOUR_NS]
    for n, now in enumerate(walls):
        with _instance(root, now) as mb:
            mb.agent("bob").boot()
            mb.agent("bob").handoff(next=[f"note {n}"])
    with _instance(root, START_NS) as mb:
        history = [h.next[0] for h in mb.agent("bob").handoffs.history()]
    assert [f"note {n}" for n in range(len(walls))] == history
