"""Helpers for testing code that uses agentmailbox.

Example (pytest)::

    from agentmailbox.testing import temp_mailbox

    def test_my_agent_replies():
        with temp_mailbox("alice", "bob") as mb:
            mb.send("alice", "bob", subject="ping")
            my_agent_step(mb.agent("bob"))
            assert [m.subject for m in mb.inbox("alice").list()] == ["pong"]
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .inbox import Inbox
from .mailbox import Mailbox
from .message import Message

__all__ = ["drain", "temp_mailbox"]


@contextlib.contextmanager
def temp_mailbox(*agents: str, fsync: str = "never", **settings: Any) -> Iterator[Mailbox]:
    """A throwaway root with ``agents`` registered; removed afterwards.

    fsync defaults to ``never``: tests need speed, not durability.
    """
    folder = Path(tempfile.mkdtemp(prefix="agentmailbox-test-"))
    try:
        with Mailbox.init(folder, fsync=fsync, **settings) as mb:
            for name in agents:
                mb.add_agent(name)
            yield mb
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def drain(inbox: Inbox, *, done: bool = True) -> list[Message]:
    """Claim every unread message, oldest first (and mark each done unless ``done=False``)."""
    out = []
    while (msg := inbox.claim()) is not None:
        if done:
            inbox.done(msg)
        out.append(msg)
    return out
