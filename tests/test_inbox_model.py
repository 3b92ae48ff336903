"""One inbox against a model: Hypothesis drives sends, resends, claims, done, release,
lease expiry and crashes in any order, and the folders must always match the model.

Three readers claim through separate ``Mailbox.open`` handles, so each has its own
scan cache, as separate processes would. The model is three sets of ids (new,
claimed, done) plus the ids that were ever given back (released or requeued):
those may be claimed again after newer mail, everything else comes out oldest first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agentmailbox import Mailbox, doctor
from agentmailbox.inbox import Inbox
from agentmailbox.message import decode, encode

READERS = 3
KEYS = ("k1", "k2", "k3")
DEAD_READER = -1  # the claimant of a claim left behind by a crashed reader


class InboxModel(RuleBasedStateMachine):
    """bob's inbox, written by alice and read by three competing readers."""

    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="inbox-model-"))
        self.mb = Mailbox.init(self.base, fsync="never")
        self.mb.add_agent("alice")
        self.mb.add_agent("bob")
        self.readers = [Mailbox.open(self.mb.path) for _ in range(READERS)]
        self.new: set[str] = set()
        self.claimed: dict[str, int] = {}  # id -> reader index (DEAD_READER: crashed)
        self.done: set[str] = set()
        self.given_back: set[str] = set()
        self.encoded: dict[str, bytes] = {}
        self.keyed: dict[str, str] = {}

    def teardown(self) -> None:
        for handle in (*self.readers, self.mb):
            handle.close()
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def inbox(self) -> Inbox:
        return self.mb.inbox("bob")

    def reader(self, index: int) -> Inbox:
        return self.readers[index].inbox("bob")

    def known(self) -> list[str]:
        return sorted(self.new | set(self.claimed) | self.done)

    def held_by_live_readers(self) -> list[str]:
        return sorted(i for i, r in self.claimed.items() if r != DEAD_READER)

    # -- sending --------------------------------------------------------------------------

    @rule()
    def send(self) -> None:
        msg = self.mb.send("alice", "bob", subject=f"m{len(self.encoded)}")
        self.encoded[msg.id] = encode(msg, self.mb.config.max_message_bytes)
        self.new.add(msg.id)

    @precondition(lambda self: self.encoded)
    @rule(data=st.data())
    def resend_same_id(self, data: st.DataObject) -> None:
        """Delivering an id the inbox holds, in any state, stores nothing."""
        msg_id = data.draw(st.sampled_from(sorted(self.encoded)))
        assert not self.inbox.deliver(msg_id, self.encoded[msg_id])

    @rule(key=st.sampled_from(KEYS))
    def send_with_key(self, key: str) -> None:
        msg = self.mb.send("alice", "bob", subject=key, key=key)
        if key in self.keyed:
            assert self.keyed[key] == msg.id
            return
        self.keyed[key] = msg.id
        self.encoded[msg.id] = encode(msg, self.mb.config.max_message_bytes)
        self.new.add(msg.id)

    # -- reading ---------------------------------------------------------------------------

    @rule(index=st.integers(0, READERS - 1))
    def claim(self, index: int) -> None:
        msg = self.reader(index).claim()
        if not self.new:
            assert msg is None
            return
        assert msg is not None and msg.id in self.new
        never_given_back = self.new - self.given_back
        assert not never_given_back or msg.id <= min(never_given_back), (
            "claimed past older unread mail that was never given back")
        self.new.remove(msg.id)
        self.claimed[msg.id] = index

    @precondition(lambda self: self.held_by_live_readers())
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        msg_id = data.draw(st.sampled_from(self.held_by_live_readers()))
        assert self.reader(self.claimed.pop(msg_id)).done(msg_id)
        self.done.add(msg_id)

    @precondition(lambda self: self.done)
    @rule(data=st.data(), index=st.integers(0, READERS - 1))
    def finish_again(self, data: st.DataObject, index: int) -> None:
        """Marking a done message done again changes nothing."""
        assert not self.reader(index).done(data.draw(st.sampled_from(sorted(self.done))))

    @precondition(lambda self: self.held_by_live_readers())
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        msg_id = data.draw(st.sampled_from(self.held_by_live_readers()))
        assert self.reader(self.claimed.pop(msg_id)).release(msg_id)
        self.new.add(msg_id)
        self.given_back.add(msg_id)

    @rule(index=st.integers(0, READERS - 1))
    def lease_expires(self, index: int) -> None:
        """Every claim's lease runs out: each goes back to new/, once."""
        assert sorted(self.claimed) == sorted(self.reader(index).requeue_expired(0))
        self.new |= set(self.claimed)
        self.given_back |= set(self.claimed)
        self.claimed.clear()

    # -- crashing ---------------------------------------------------------------------------

    @rule(data=st.data())
    def crash_and_recover(self, data: st.DataObject) -> None:
        """A sender died while staging and a reader died right after its claim's rename;
        doctor removes the staging file, and the message stays claimed by the dead reader
        until its lease runs out."""
        partial = self.mb.root.clock.new_id()
        (self.inbox.tmp / f"{partial}.{os.getpid()}.0badc0").write_bytes(b'{"v":1,"id":')
        kinds = {"stale-tmp"}
        if self.new:
            victim = data.draw(st.sampled_from(sorted(self.new)))
            os.rename(self.inbox.new / f"{victim}.json", self.inbox.cur / f"{victim}.json")
            self.new.remove(victim)
            self.claimed[victim] = DEAD_READER
        found = doctor.check(self.mb, repair=True, stale_after=0)
        assert (kinds, True) == ({f.kind for f in found}, all(f.repaired for f in found))

    # -- what must always hold ----------------------------------------------------------------

    def on_disk(self) -> dict[str, Counter[str]]:
        inbox = self.inbox
        return {"new": Counter(p.name[:-5] for p in inbox.new.iterdir()),
                "cur": Counter(p.name[:-5] for p in inbox.cur.iterdir()),
                "done": Counter(p.name[:-5] for p in inbox.done_dir.glob("*/*"))}

    @invariant()
    def folders_match_the_model(self) -> None:
        disk = self.on_disk()
        assert (self.new, set(self.claimed), self.done) == (
            set(disk["new"]), set(disk["cur"]), set(disk["done"]))

    @invariant()
    def each_id_is_in_exactly_one_place(self) -> None:
        everywhere = sum(self.on_disk().values(), Counter())
        assert [] == [(i, n) for i, n in everywhere.items() if n != 1]

    @invariant()
    def listing_is_in_id_order(self) -> None:
        assert sorted(self.new) == [m.id for m in self.inbox.list()]

    @invariant()
    def every_file_is_a_whole_message(self) -> None:
        inbox = self.inbox
        for path in (*inbox.new.iterdir(), *inbox.cur.iterdir(), *inbox.done_dir.glob("*/*")):
            assert path.name[:-5] == decode(path.read_bytes(), expected_id=path.name[:-5]).id

    @invariant()
    def nothing_is_quarantined(self) -> None:
        assert [] == self.mb.dead.list()


InboxModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_inbox_behaves_like_its_model = InboxModel.TestCase
test_inbox_behaves_like_its_model.__doc__ = (
    "Any sequence of sends, resends, claims, done, release, lease expiry and crashes keeps "
    "every id in exactly the state the model says, and claims oldest first.")
