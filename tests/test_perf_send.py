"""The send path: what it looks at and draws per message, and what it must never share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentmailbox import Mailbox
from agentmailbox.fs import Disk
from agentmailbox.message import Clock


def test_sends_in_a_row_look_at_each_registration_once_a_second(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer sending many messages checks that both agents are registered, then
    trusts what it saw for a second, as it trusts the folders on the way."""
    mb.send("alice", "bob")
    looked: list[str] = []
    lstat = Disk.lstat

    def counting(disk: Disk, path: str | os.PathLike[str]) -> os.stat_result | None:
        if os.fspath(path).startswith(str(mb.registry.directory)):
            looked.append(os.fspath(path))
        return lstat(disk, path)

    monkeypatch.setattr(Disk, "lstat", counting)
    for _ in range(10):
        mb.send("alice", "bob")
    assert [] == looked


def test_an_agent_never_registered_is_refused_after_sends_to_others(mb: Mailbox,
                                                                     tmp_path: Path) -> None:
    """Trusting a registration seen never makes an unknown name a recipient."""
    from agentmailbox import AgentNotFound

    mb.send("alice", "bob")
    with pytest.raises(AgentNotFound):
        mb.send("alice", "carol")


def test_a_forked_child_never_draws_its_parents_random_bits() -> None:
    """Ids made in a forked child differ from its parent's, even though random bits are
    read ahead in blocks."""
    clock = Clock()
    clock.new_id()  # the parent has bits read ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, clock.new_id().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    theirs = os.read(read, 100).decode()
    os.close(read)
    assert 0 == status
    assert theirs.split("-")[1] != clock.new_id().split("-")[1]
