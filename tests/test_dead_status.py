"""Tracing mail into dead/: status, the dead-letter list and look-up by either id."""

from __future__ import annotations

from typing import Any

import pytest

from agentmailbox import Mailbox, MessageNotFound
from agentmailbox.dead import retry_dead_letter
from agentmailbox.message import Message, encode
from agentmailbox.supervisor import Supervisor


def expire_in_bobs_inbox(mb: Mailbox) -> Message:
    """Plant mail that expired long ago in bob's inbox and let bob's claim bury it."""
    msg = Message(id=mb.root.clock.new_id(), sender="alice", to=("bob",), subject="stale",
                  expires_at="2000-01-01T00:00:00Z")
    mb.inbox("bob").deliver(msg.id, encode(msg, mb.config.max_message_bytes))
    assert mb.inbox("bob").claim() is None
    return msg


def test_status_of_expired_mail_says_where_why_and_since_when(mb: Mailbox) -> None:
    """status answers for mail a reader buried as expired instead of 'not found'."""
    msg = expire_in_bobs_inbox(mb)
    st = mb.status(msg.id, "alice")
    [letter] = mb.dead.list()
    assert (st.sender, st.subject, st.to_dict()["dead"]) == (
        "alice", "stale", [{"dead_id": letter.id, "origin": "agents/bob/inbox/cur",
                            "reason": "expired", "at": letter.at}])


def test_status_of_undeliverable_routed_mail_names_its_dead_letter(mb: Mailbox) -> None:
    """Routed mail the supervisor could not deliver is traced to dead/ by its message id."""
    msg = mb.send("alice", "@tester", subject="run the suite")
    with Supervisor(mb, backoff=(0, 0)) as sup:
        sup.run_once()
    st = mb.status(msg.id)
    assert ([d.msg_id for d in st.dead], st.subject, st.spool) == ([msg.id], "run the suite",
                                                                   None)


def test_status_of_an_id_nowhere_is_not_found(mb: Mailbox) -> None:
    """An id no inbox, spool or dead letter holds is still 'not found'."""
    with pytest.raises(MessageNotFound):
        mb.status(mb.root.clock.new_id())


def test_status_of_dead_mail_from_another_sender_is_not_found(mb: Mailbox) -> None:
    """status --from checks the sender for dead mail too."""
    msg = expire_in_bobs_inbox(mb)
    with pytest.raises(MessageNotFound):
        mb.status(msg.id, "bob")


def test_dead_letter_carries_the_message_id_and_subject(mb: Mailbox) -> None:
    """dead ls can show which message a letter was, beside the dead-letter id."""
    msg = expire_in_bobs_inbox(mb)
    [letter] = mb.dead.list()
    assert (letter.msg_id, letter.subject, letter.sender, letter.id != msg.id) == (
        msg.id, "stale", "alice", True)
    assert (letter.to_dict()["msg_id"], letter.to_dict()["subject"]) == (msg.id, "stale")


def test_a_dead_letter_is_found_by_either_id(mb: Mailbox) -> None:
    """dead show takes the dead-letter id or the message id, and shows the same letter."""
    msg = expire_in_bobs_inbox(mb)
    [letter] = mb.dead.list()
    limit = mb.config.max_message_bytes
    assert (mb.dead.get(msg.id), mb.dead.content(msg.id, limit)) == (
        mb.dead.get(letter.id), mb.dead.content(letter.id, limit))


def test_a_file_that_is_not_mail_has_no_message_id(mb: Mailbox) -> None:
    """A quarantined foreign file is listed with no message id or subject."""
    planted = mb.inbox("bob").new / "notes.txt"
    planted.write_bytes(b"not mail")
    mb.dead.bury(planted, "foreign", agent="bob")
    [letter] = mb.dead.list()
    assert (letter.msg_id, letter.subject) == (None, None)


def test_retry_by_message_id_puts_the_letter_back(mb: Mailbox) -> None:
    """dead retry also takes the message id."""
    msg = mb.send("alice", "bob", subject="lost")
    mb.dead.bury(mb.inbox("bob").new / f"{msg.id}.json", "test quarantine", agent="bob")
    done = retry_dead_letter(mb, msg.id)
    assert (done.stored, mb.dead.list(), mb.inbox("bob").count()) == (True, [], 1)


def test_status_reads_the_content_of_that_messages_dead_letters_only(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status ID` with many dead letters of other mail reads only the reason files of
    those, and the content of the letters of ID (for its sender and subject)."""
    import agentmailbox.dead as dead_module

    for subject in ("other 1", "other 2", "other 3", "this one"):
        msg = mb.send("alice", "bob", subject=subject)
        path = mb.inbox("bob").path_of(msg.id)
        assert path is not None
        mb.dead.bury(path[1], "planted for the test", agent="bob")
    read: list[str] = []
    real = dead_module.DeadLetters._about

    def about(self: Any, dead_id: str) -> Any:
        read.append(dead_id)
        return real(self, dead_id)

    monkeypatch.setattr(dead_module.DeadLetters, "_about", about)
    (letter,) = mb.dead.of_message(msg.id)
    assert (letter.subject, letter.sender, read) == ("this one", "alice", [letter.id])
