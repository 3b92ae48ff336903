"""The core bus through the library: send, list, claim, done, release, status, keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentmailbox import (
    AgentNotFound,
    InvalidInput,
    InvalidName,
    Mailbox,
    MessageNotFound,
    MessageTooLarge,
    State,
)


def test_send_then_claim_returns_the_same_message(mb: Mailbox) -> None:
    """What a sender sends is what the reader claims, field for field."""
    sent = mb.send("alice", ["bob"], subject="plan v1", body={"steps": [1, 2]}, priority="high")
    got = mb.agent("bob").inbox.claim()
    assert got == sent


def test_inbox_lists_in_timestamp_order_and_changes_nothing(mb: Mailbox) -> None:
    """Listing twice gives the same oldest-first list and moves no file."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(5)]
    inbox = mb.agent("bob").inbox
    assert [m.id for m in inbox.list()] == ids
    assert [m.id for m in inbox.list()] == ids
    assert inbox.count(State.CLAIMED) == 0


def test_claim_takes_oldest_first(mb: Mailbox) -> None:
    """Claims come out oldest first."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(3)]
    inbox = mb.agent("bob").inbox
    assert [inbox.claim().id for _ in ids] == ids
    assert inbox.claim() is None


def test_second_claim_of_same_message_returns_none(mb: Mailbox) -> None:
    """Losing a claim race is not an error: the loser gets None."""
    msg = mb.send("alice", "bob")
    first = Mailbox.open(mb.path).inbox("bob")
    second = Mailbox.open(mb.path).inbox("bob")
    assert first.claim(msg.id) is not None
    assert second.claim(msg.id) is None


def test_done_moves_to_done_and_is_idempotent(mb: Mailbox) -> None:
    """done() puts the DONE marker once; a second done says it already was."""
    msg = mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    inbox.claim()
    assert inbox.done(msg) is True
    assert inbox.done(msg.id) is False
    assert inbox.state_of(msg.id) is State.DONE


def test_done_of_unclaimed_message_is_refused(mb: Mailbox) -> None:
    """Marking unread mail done is refused with a clear error (claim it first)."""
    msg = mb.send("alice", "bob")
    with pytest.raises(MessageNotFound, match="claim it first"):
        mb.agent("bob").inbox.done(msg.id)


def test_release_gives_claimed_message_back(mb: Mailbox) -> None:
    """A released message can be claimed again."""
    msg = mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    inbox.claim()
    assert inbox.release(msg) is True
    assert inbox.state_of(msg.id) is State.NEW
    assert inbox.claim().id == msg.id


def test_expired_lease_goes_back_to_new(mb: Mailbox) -> None:
    """A claim older than the lease is put back by requeue_expired."""
    msg = mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    inbox.claim()
    assert inbox.requeue_expired(lease_seconds=3600) == []
    assert inbox.requeue_expired(lease_seconds=0) == [msg.id]
    assert inbox.state_of(msg.id) is State.NEW


def test_processing_context_marks_done_on_success_and_releases_on_error(mb: Mailbox) -> None:
    """The processing() block is done on success and released on an exception."""
    a, b = mb.send("alice", "bob"), mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    with inbox.processing() as msg:
        assert msg.id == a.id
    with pytest.raises(RuntimeError), inbox.processing() as msg:
        raise RuntimeError("handler failed")
    assert inbox.state_of(a.id) is State.DONE
    assert inbox.state_of(b.id) is State.NEW


def test_same_key_twice_stores_one_message_even_after_read(mb: Mailbox) -> None:
    """send(key=K) twice gives one id and one stored message, even once it is done."""
    first = mb.send("alice", "bob", subject="x", key="job-7")
    inbox = mb.agent("bob").inbox
    inbox.done(inbox.claim())
    again = mb.send("alice", "bob", subject="x", key="job-7")
    assert again.id == first.id
    assert inbox.count() == 0 and inbox.claim() is None


def test_redelivering_an_id_stores_nothing_new(mb: Mailbox) -> None:
    """Delivering an id the inbox holds (new, claimed or done) stores nothing."""
    msg = mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    data = (inbox.new / f"{msg.id}.json").read_bytes()
    assert inbox.deliver(msg.id, data) is False
    inbox.claim()
    assert inbox.deliver(msg.id, data) is False
    inbox.done(msg)
    assert inbox.deliver(msg.id, data) is False
    assert inbox.count() == 0


def test_duplicate_that_slipped_into_new_is_never_handed_out(mb: Mailbox) -> None:
    """A second copy of a claimed id waits in new/ untouched, and once the claim is done
    it is quarantined as a duplicate of finished work, never handed out."""
    msg = mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    data = (inbox.new / f"{msg.id}.json").read_bytes()
    inbox.claim()
    (inbox.new / f"{msg.id}.json").write_bytes(data)
    assert inbox.claim() is None
    assert [] == mb.dead.list()
    assert inbox.done(msg.id) is True
    assert inbox.claim() is None
    assert ["duplicate delivery of a message already done"] == [d.reason for d in mb.dead.list()]
    assert [msg.id] == inbox.ids(State.DONE)
    assert [] == inbox.ids(State.NEW) == inbox.ids(State.CLAIMED)


def test_giving_back_a_claim_whose_id_is_unread_again_keeps_one_copy(mb: Mailbox) -> None:
    """Releasing a claim while a second copy of its id waits in new/ leaves that copy as
    the unread one (the claimed copy goes to dead/): the id is claimed once more, once."""
    msg = mb.send("alice", "bob")
    inbox = mb.agent("bob").inbox
    data = (inbox.new / f"{msg.id}.json").read_bytes()
    inbox.claim()
    (inbox.new / f"{msg.id}.json").write_bytes(data)
    assert inbox.release(msg.id) is True
    assert ["duplicate delivery of a message already unread"] == [
        d.reason for d in mb.dead.list()]
    assert msg.id == inbox.claim().id
    assert inbox.claim() is None


def test_message_to_several_recipients_reaches_each(mb: Mailbox) -> None:
    """One send to two agents leaves one copy in each inbox."""
    mb.add_agent("carol")
    msg = mb.send("alice", ["bob", "carol"], subject="all hands")
    assert mb.inbox("bob").claim().id == msg.id
    assert mb.inbox("carol").claim().id == msg.id


def test_unknown_recipient_is_refused_before_anything_is_written(mb: Mailbox) -> None:
    """A send naming one unknown agent writes nothing anywhere (no orphan inbox)."""
    with pytest.raises(AgentNotFound, match="carol"):
        mb.send("alice", ["bob", "carol"])
    assert mb.inbox("bob").count() == 0
    assert not (mb.path / "agents" / "carol").exists()


def test_status_shows_delivered_read_and_done_per_recipient(mb: Mailbox) -> None:
    """The sender sees delivered -> read (with time) -> done per recipient."""
    mb.add_agent("carol")
    msg = mb.send("alice", ["bob", "carol"])
    assert {d.agent: d.state for d in mb.status(msg.id, "alice").recipients} == {
        "bob": State.NEW, "carol": State.NEW}
    bob = mb.inbox("bob")
    bob.claim()
    read = {d.agent: d for d in mb.status(msg.id).recipients}["bob"]
    assert read.state is State.CLAIMED and read.read_at
    bob.done(msg)
    final = {d.agent: d for d in mb.status(msg.id).recipients}
    assert final["bob"].state is State.DONE and final["bob"].done_at
    assert final["carol"].state is State.NEW


def test_status_of_someone_elses_message_is_not_found(mb: Mailbox) -> None:
    """status --from checks the sender."""
    msg = mb.send("alice", "bob")
    with pytest.raises(MessageNotFound):
        mb.status(msg.id, "bob")


def test_receipt_requested_arrives_in_senders_inbox(mb: Mailbox) -> None:
    """With receipt=True the sender gets a receipt message when read and when done."""
    msg = mb.send("alice", "bob", subject="ping", receipt=True)
    bob = mb.inbox("bob")
    bob.done(bob.claim())
    receipts = mb.inbox("alice").list()
    assert [(r.kind, r.body["state"], r.reply_to) for r in receipts] == [
        ("receipt", "read", msg.id), ("receipt", "done", msg.id)]


def test_reading_creates_no_file_per_message_by_default(mb: Mailbox) -> None:
    """Reading without a requested receipt creates no receipt file anywhere."""
    mb.send("alice", "bob")
    before = _count_files(mb.path / "agents")
    mb.inbox("bob").claim()
    assert _count_files(mb.path / "agents") == before


def _count_files(top: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(top))


def test_message_over_limit_is_refused_at_send(tmp_path: Path) -> None:
    """A message over max_message_bytes is refused and nothing is written."""
    mb = Mailbox.init(tmp_path, fsync="never", max_message_bytes=1000)
    mb.add_agent("alice")
    mb.add_agent("bob")
    with pytest.raises(MessageTooLarge):
        mb.send("alice", "bob", body="x" * 2000)
    assert mb.inbox("bob").count() == 0
    assert list((mb.inbox("bob").tmp).iterdir()) == []


def test_reply_joins_the_thread(mb: Mailbox) -> None:
    """A reply to a message carries the original's thread."""
    first = mb.send("alice", "bob", subject="q")
    mb.inbox("bob").claim()
    answer = mb.send("bob", "alice", subject="a", reply_to=first.id)
    assert answer.thread == first.thread == first.id


def test_reply_sorts_after_what_it_answers_even_from_a_clock_ahead(mb: Mailbox) -> None:
    """Reading a stamp moves the reader's clock past it, so its reply sorts after."""
    import time

    q = mb.send("alice", "bob", subject="q")
    ahead = f"{time.time_ns() + 5 * 10**9:020d}-{'0' * 16}"
    original = (mb.inbox("bob").new / f"{q.id}.json").read_bytes()
    data = original.replace(q.id.encode(), ahead.encode())
    mb.inbox("bob").deliver(ahead, data)
    assert mb.inbox("bob").claim(ahead) is not None
    answer = mb.send("bob", "alice", reply_to=ahead)
    assert answer.id > ahead


def test_invalid_agent_names_are_refused(mb: Mailbox) -> None:
    """Names with /, .., NUL, a leading dot, upper case or over 64 chars are refused."""
    for bad in ["../x", "a/b", "a\x00b", ".hidden", "Bob", "x" * 65, "", "a b", "é"]:
        with pytest.raises(InvalidName):
            mb.add_agent(bad)


def test_malformed_routed_address_is_a_clear_error(mb: Mailbox) -> None:
    """A routed address that is not @role, #topic, +group or * is refused."""
    with pytest.raises(InvalidInput):
        mb.send("alice", "@Coder!")


def test_batch_publishes_on_commit_only(tmp_path: Path) -> None:
    """Inside batch() nothing is visible; at the end every message is."""
    mb = Mailbox.init(tmp_path, fsync="batch")
    mb.add_agent("alice")
    mb.add_agent("bob")
    with mb.batch():
        for i in range(10):
            mb.send("alice", "bob", subject=str(i))
        assert mb.inbox("bob").count() == 0
    assert mb.inbox("bob").count() == 10
    assert list(mb.inbox("bob").tmp.iterdir()) == []


def test_open_finds_root_upward(mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mailbox.open() with no path finds .mailbox/ in a parent directory."""
    deep = mb.path.parent / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    monkeypatch.delenv("MAILBOX_ROOT", raising=False)
    assert Mailbox.open().path == mb.path


def test_same_key_to_other_recipients_is_a_conflict(mb: Mailbox) -> None:
    """Reusing a key for mail to someone else is refused, not silently delivered twice."""
    from agentmailbox import Conflict

    mb.add_agent("carol")
    mb.send("alice", "bob", subject="task 7", key="count:7")
    with pytest.raises(Conflict, match="first used for mail to bob"):
        mb.send("alice", "carol", subject="task 7", key="count:7")
    assert mb.inbox("carol").count() == 0


def test_same_key_for_other_words_is_a_conflict_and_a_true_retry_is_not(mb: Mailbox) -> None:
    """Reusing a key for another subject or body is refused (it is not a retry); the same
    words again, even from a later instance of the sender, are the retry and store one."""
    from agentmailbox import Conflict

    first = mb.send("alice", "bob", subject="task 7", body={"n": 7}, key="count:7", epoch=1)
    with pytest.raises(Conflict, match="first used for other mail"):
        mb.send("alice", "bob", subject="task 7", body={"n": 8}, key="count:7")
    with pytest.raises(Conflict, match="first used for other mail"):
        mb.send("alice", "bob", subject="task 8", body={"n": 7}, key="count:7")
    again = mb.send("alice", "bob", subject="task 7", body={"n": 7}, key="count:7", epoch=2)
    assert (again.id, mb.inbox("bob").ids()) == (first.id, [first.id])


def test_a_key_marker_without_a_digest_still_compares_the_recipients(mb: Mailbox) -> None:
    """A marker an older writer (or a shell) made records no digest: a retry under its key
    is judged by its recipients alone, as before."""
    import orjson

    first = mb.send("alice", "bob", subject="task 7", key="count:7")
    marker = mb.key_marker("alice", "count:7")
    record = orjson.loads(marker.read_bytes())
    del record["digest"]
    marker.write_bytes(orjson.dumps(record))
    assert first.id == mb.send("alice", "bob", subject="other words", key="count:7").id


def test_done_mail_can_be_listed(mb: Mailbox) -> None:
    """ids/list/count with State.DONE read done/, not the claimed folder."""
    first, second = mb.send("alice", "bob"), mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    inbox.done(inbox.claim())
    inbox.claim()
    assert inbox.ids(State.DONE) == [first.id]
    assert [m.id for m in inbox.list(State.DONE)] == [first.id]
    assert (inbox.count(State.DONE), inbox.count(State.CLAIMED)) == (1, 1)
    assert second.id in inbox.ids(State.CLAIMED)


def test_receipt_into_a_full_inbox_does_not_fail_claim_or_done(mb: Mailbox) -> None:
    """Receipts skip quotas: a sender's full inbox never breaks the reader's claim."""
    mb.registry.edit("alice", max_unread=1)
    mb.add_agent("carol")
    msg = mb.send("alice", "bob", receipt=True)
    mb.send("carol", "alice")
    inbox = mb.inbox("bob")
    got = inbox.claim()
    assert got.id == msg.id
    assert inbox.done(got) is True
    assert [r.kind for r in mb.inbox("alice").list()].count("receipt") == 2


def test_refused_keyed_send_leaves_no_key_behind(mb: Mailbox) -> None:
    """A send refused by a full inbox writes nothing, not even its idempotency key."""
    from agentmailbox import InboxFull

    mb.registry.edit("bob", max_unread=1)
    mb.send("alice", "bob")
    with pytest.raises(InboxFull):
        mb.send("alice", "bob", key="job-1")
    mb.add_agent("carol")
    assert mb.send("alice", "carol", key="job-1").id


def test_a_claim_in_progress_is_not_taken_for_an_expired_lease(mb: Mailbox) -> None:
    """A message that waited long in new/ is not requeued the moment it is linked to cur/."""
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    old = (inbox.new / f"{msg.id}.json")
    os.utime(old, ns=(1, 1))  # delivered long ago
    os.link(old, inbox.cur / old.name)  # a claimer has linked, and not yet set the lease
    os.unlink(old)
    assert inbox.requeue_expired(lease_seconds=60) == []


def test_symlinked_folder_in_the_root_is_refused_not_followed(mb: Mailbox, tmp_path: Path
                                                              ) -> None:
    """A link planted where a done/ day folder belongs is refused; nothing lands outside."""
    from agentmailbox import StorageError
    from agentmailbox.message import day_of

    outside = tmp_path / "outside"
    outside.mkdir()
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    inbox.claim()
    os.symlink(outside, inbox.done_dir / day_of(msg.id))
    with pytest.raises(StorageError, match="is a symbolic link where a folder of the root"):
        inbox.done(msg)
    assert list(outside.iterdir()) == []
    assert inbox.state_of(msg.id) is State.CLAIMED
