"""Thread names: send and the DONE markers apply one rule (PROTOCOL.md §6), readers take any."""

from __future__ import annotations

import pytest

from agentmailbox import InvalidInput, Mailbox
from agentmailbox.message import Message, encode


@pytest.mark.parametrize("thread", ["Release 42", "release/42", "-x", "", "x" * 65, "é"])
def test_send_refuses_a_thread_that_is_not_a_name_and_writes_nothing(mb: Mailbox,
                                                                    thread: str) -> None:
    """A thread no marker could be made for is refused by send, naming the field, before
    any inbox or journal changes."""
    before = list(mb.root.journal.events())
    with pytest.raises(InvalidInput) as caught:
        mb.send("alice", "bob", subject="s", thread=thread)
    assert ("'thread'" in str(caught.value), mb.inbox("bob").count(),
            list(mb.root.journal.events())) == (True, 0, before)


def test_a_thread_send_accepts_can_be_closed_and_shown(mb: Mailbox) -> None:
    """Whatever thread name send takes, thread done closes it and thread show finds its mail."""
    sent = mb.send("alice", "bob", subject="s", thread="release-42")
    marker, created = mb.threads.mark_done("release-42", by="bob")
    shown = [e["id"] for e in mb.threads.sent_in("release-42")]
    assert (created, mb.threads.done("release-42"), shown) == (True, marker, [sent.id])


def test_mark_done_refuses_what_send_refuses(mb: Mailbox) -> None:
    """thread done takes exactly the names send takes."""
    with pytest.raises(InvalidInput):
        mb.threads.mark_done("Release 42", by="bob")


def test_a_reply_to_mail_with_a_free_form_thread_joins_the_answered_id(mb: Mailbox) -> None:
    """A message an older writer sent with any string as thread is read, and a reply to it is
    sent (in the thread of the answered id) instead of refused."""
    old = Message(id=mb.root.clock.new_id(), sender="alice", to=("bob",), subject="q",
                  thread="Release 42")
    mb.inbox("bob").deliver(old.id, encode(old, mb.config.max_message_bytes))
    got = mb.inbox("bob").claim()
    answer = mb.send("bob", "alice", subject="a", reply_to=old.id)
    assert (got.thread if got else None, answer.thread) == ("Release 42", old.id)
