"""Modes: private roots are 0700/0600; group roots use setgid folders and 0660 files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentmailbox import Mailbox


@pytest.fixture(autouse=True)
def loose_umask():
    """A typical umask that would otherwise hand out 0755/0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(mb: Mailbox) -> tuple[int, int, int]:
    msg = mb.send("alice", "bob", subject="x")
    inbox = mb.inbox("bob")
    file_mode = stat.S_IMODE(os.stat(inbox.new / f"{msg.id}.json").st_mode)
    return stat.S_IMODE(os.stat(mb.path).st_mode), stat.S_IMODE(os.stat(inbox.new).st_mode), \
        file_mode


def test_private_root_is_0700_and_files_0600(tmp_path: Path) -> None:
    """By default only the owner can read or enter anything in the root."""
    mb = Mailbox.init(tmp_path, fsync="never")
    mb.add_agent("alice")
    mb.add_agent("bob")
    assert _modes(mb) == (0o700, 0o700, 0o600)


def test_group_mode_uses_setgid_dirs_and_0660_files(tmp_path: Path) -> None:
    """In group mode, agents running as different users of one group share the root."""
    mb = Mailbox.init(tmp_path, fsync="never", mode="group")
    mb.add_agent("alice")
    mb.add_agent("bob")
    root_mode, new_mode, file_mode = _modes(mb)
    assert root_mode == new_mode == 0o2770
    assert file_mode == 0o660
    state = mb.agent("bob").state
    state["k"] = 1
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o660


def test_group_mode_lock_files_are_group_writable(tmp_path: Path) -> None:
    """Lock files (workspace, state, supervisor) get the root's file mode, umask aside."""
    mb = Mailbox.init(tmp_path, fsync="never", mode="group")
    mb.add_agent("bob")
    with mb.workspace.lock("plan.md"):
        pass
    mb.agent("bob").state["k"] = 1
    for lock in (mb.path / "workspace" / ".locks" / "plan.md.lock",
                 mb.path / "agents" / "bob" / "run" / "state.lock"):
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o660
