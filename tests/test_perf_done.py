"""done(id) costs what done(msg) costs, and still honours every receipt request."""

from __future__ import annotations

import os

import pytest

from agentmailbox import Mailbox
from agentmailbox.fs import Disk


def test_done_by_id_of_an_own_claim_reads_nothing_back(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finishing by id a message this handle claimed opens no file: it knows from the
    claim whether a receipt was asked for."""
    plain, asking = mb.send("alice", "bob"), mb.send("alice", "bob", receipt=True)
    inbox = mb.inbox("bob")
    assert inbox.claim() is not None and inbox.claim() is not None
    opened: list[str] = []
    open_regular = Disk.open_regular

    def counting(disk: Disk, path: str | os.PathLike[str], limit: int) -> tuple[int, object]:
        opened.append(os.fspath(path))
        return open_regular(disk, path, limit)  # type: ignore[return-value]

    monkeypatch.setattr(Disk, "open_regular", counting)
    assert inbox.done(plain.id) and inbox.done(asking.id)
    monkeypatch.undo()
    assert [] == [p for p in opened if "/done/" in p]
    receipts = [(r.body["state"], r.reply_to) for r in mb.inbox("alice").list()]
    assert [("read", asking.id), ("done", asking.id)] == receipts


@pytest.mark.parametrize("body", [None, {"receipt": True},
                                  {"text": "a\\path\nand \"receipt\": true"}])
def test_done_by_id_from_another_process_sends_the_receipt_asked_for(
        mb: Mailbox, body: object) -> None:
    """A message claimed by one process and finished by id in another (``mailbox done``)
    still brings the sender its done receipt, whatever its body holds."""
    asking = mb.send("alice", "bob", receipt=True, body=body)
    plain = mb.send("alice", "bob", body=body)
    assert mb.inbox("bob").claim() is not None and mb.inbox("bob").claim() is not None
    other = Mailbox.open(mb.path)
    assert other.inbox("bob").done(plain.id) and other.inbox("bob").done(asking.id)
    receipts = [(r.body["state"], r.reply_to) for r in mb.inbox("alice").list()]
    assert [("read", asking.id), ("done", asking.id)] == receipts
    other.close()
