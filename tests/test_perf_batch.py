"""Batches group the costly steps of many messages: folder fsyncs and journal writes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmailbox import Mailbox
from agentmailbox.fs import Disk
from agentmailbox.inbox import State


def _root(tmp_path: Path, fsync: str) -> Mailbox:
    mb = Mailbox.init(tmp_path, fsync=fsync)
    mb.add_agent("alice")
    mb.add_agent("bob")
    return mb


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The folders fsynced from now on, in order."""
    folders: list[str] = []
    sync_dir = Disk.sync_dir

    def counting(disk: Disk, path: str | os.PathLike[str]) -> None:
        folders.append(os.fspath(path))
        sync_dir(disk, path)

    monkeypatch.setattr(Disk, "sync_dir", counting)
    yield folders


def _done_folders(folders: list[str], mb: Mailbox) -> list[str]:
    return [f for f in folders if f.startswith(str(mb.inbox("bob").done_dir))]


def test_dones_in_a_batch_fsync_their_day_folder_once_at_its_end(
        tmp_path: Path, synced: list[str]) -> None:
    """Under fsync=batch a consumer that finishes many messages in one batch pays one
    fsync of the done folder for all of them, when the batch ends."""
    mb = _root(tmp_path, "batch")
    ids = [mb.send("alice", "bob").id for _ in range(5)]
    inbox = mb.inbox("bob")
    synced.clear()
    with mb.batch():
        for _ in ids:
            msg = inbox.claim()
            assert msg is not None and inbox.done(msg)
        assert [] == _done_folders(synced, mb)
        assert all(inbox.state_of(i) is State.DONE for i in ids)  # done at once, visibly
    assert 1 == len(_done_folders(synced, mb))
    mb.close()


def test_dones_under_always_fsync_at_once_inside_a_batch_too(
        tmp_path: Path, synced: list[str]) -> None:
    """Under fsync=always a done is durable when done() returns, in a batch or not."""
    mb = _root(tmp_path, "always")
    ids = [mb.send("alice", "bob").id for _ in range(3)]
    inbox = mb.inbox("bob")
    synced.clear()
    with mb.batch():
        for _ in ids:
            msg = inbox.claim()
            assert msg is not None and inbox.done(msg)
        assert 3 == len(_done_folders(synced, mb))
    assert 3 == len(_done_folders(synced, mb))
    mb.close()


def test_a_batch_appends_its_journal_lines_with_one_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal lines of a batch of sends, claims and dones reach the journal in one
    append at its end, each line whole and in order."""
    mb = _root(tmp_path, "never")
    first = mb.send("alice", "bob")
    writes: list[bytes] = []
    write = os.write

    def counting(fd: int, data: bytes) -> int:
        if fd == mb.root.journal._fd:
            writes.append(bytes(data))
        return write(fd, data)

    monkeypatch.setattr(os, "write", counting)
    inbox = mb.inbox("bob")
    with mb.batch():
        second = mb.send("alice", "bob")
        msg = inbox.claim()
        assert msg is not None and inbox.done(msg)
    monkeypatch.undo()
    assert 1 == len(writes)
    events = [(e["ev"], e["id"]) for e in mb.root.journal.events()]
    assert [("send", first.id), ("send", second.id), ("claim", first.id),
            ("done", first.id)] == events
    mb.close()
