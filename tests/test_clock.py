"""A wall clock that steps back, or runs ahead, through a real inbox.

tests/test_names.py proves the clock's properties on bare stamps; here the stamps
name real mail, and the inbox must hand it out in the order it was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmailbox import Clock, Mailbox
from agentmailbox.message import MAX_FUTURE_NS, stamp_of
from agentmailbox.root import Root

HOUR_NS = 3600 * 10**9
START_NS = 1_795_000_000 * 10**9  # a fixed moment in 2026


class Wall:
    """A wall clock a test can set, step back or leave standing still."""

    def __init__(self, now: int = START_NS) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1000  # a microsecond passes per reading
        return self.now


def _open(path: Path, wall: Wall | None = None) -> Mailbox:
    """A handle on the root at ``path`` whose ids come from ``wall`` (or the real clock)."""
    return Mailbox(Root.load(path, clock=Clock(wall=wall) if wall else Clock()))


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    box = Mailbox.init(tmp_path, fsync="never")
    box.add_agent("alice")
    box.add_agent("bob")
    box.close()
    yield box.path


def _send_across_a_step_back(root: Path, step_ns: int) -> list[str]:
    """alice sends 5 messages, her wall clock steps back by ``step_ns``, she sends 5 more."""
    wall = Wall()
    with _open(root, wall) as alice:
        sent = [alice.send("alice", "bob", subject=f"before {i}").id for i in range(5)]
        wall.now -= step_ns
        sent += [alice.send("alice", "bob", subject=f"after {i}").id for i in range(5)]
    return sent


@pytest.mark.parametrize("step_ns", [5_000, 10**9, HOUR_NS, 24 * HOUR_NS])
def test_mail_sent_after_the_clock_steps_back_sorts_after_earlier_mail(
        root: Path, step_ns: int) -> None:
    """Ids made after the wall clock stepped back still sort after the ones made before."""
    sent = _send_across_a_step_back(root, step_ns)
    assert sent == sorted(sent)


@pytest.mark.parametrize("step_ns", [5_000, HOUR_NS, 24 * HOUR_NS])
def test_inbox_claims_mail_in_send_order_across_a_clock_step(root: Path, step_ns: int) -> None:
    """A reader claims a sender's mail in the order it was sent, though the sender's clock
    stepped back in the middle."""
    sent = _send_across_a_step_back(root, step_ns)
    with _open(root) as reader:
        inbox = reader.inbox("bob")
        claimed = [msg.id for msg in iter(inbox.claim, None)]
    assert sent == claimed


def test_listing_shows_mail_in_send_order_across_a_clock_step(root: Path) -> None:
    """The unread list, like the claims, is in send order across a step back."""
    sent = _send_across_a_step_back(root, HOUR_NS)
    with _open(root) as reader:
        assert sent == [m.id for m in reader.inbox("bob").list()]


def test_reply_from_a_reader_whose_clock_is_behind_sorts_after_the_question(root: Path) -> None:
    """bob's clock is 30 s behind alice's: his reply still sorts after her question, so
    alice claims them in cause-and-effect order."""
    alice_wall, bob_wall = Wall(), Wall(START_NS - 30 * 10**9)
    with _open(root, alice_wall) as alice, _open(root, bob_wall) as bob:
        question = alice.send("alice", "bob", subject="question")
        got = bob.inbox("bob").claim()
        assert got is not None
        reply = bob.send("bob", "alice", subject="answer", reply_to=got.id)
        later = alice.send("alice", "alice", subject="note to self")
        claimed = [m.id for m in iter(alice.inbox("alice").claim, None)]
    assert (True, [reply.id, later.id]) == (question.id < reply.id, claimed)


def test_mail_from_a_clock_far_ahead_is_read_but_does_not_drag_the_reader(root: Path) -> None:
    """A sender whose clock is an hour fast is read normally; the reader's own ids stay
    on its wall clock instead of jumping an hour ahead."""
    ahead = Wall(START_NS + HOUR_NS)
    bob_wall = Wall()
    with _open(root, ahead) as alice, _open(root, bob_wall) as bob:
        sent = alice.send("alice", "bob", subject="from the future")
        got = bob.inbox("bob").claim()
        reply = bob.send("bob", "alice", subject="answer")
    assert (sent.id, True) == (got.id if got else None,
                               stamp_of(reply.id) < START_NS + MAX_FUTURE_NS)
