"""A handle on one agent: its identity and its inbox."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .inbox import Inbox
from .message import Message
from .registry import AgentInfo

if TYPE_CHECKING:
    from .mailbox import Mailbox

__all__ = ["Agent"]


class Agent:
    """One registered agent of a mailbox: ``mb.agent("bob")``."""

    def __init__(self, mailbox: Mailbox, name: str) -> None:
        self.mailbox = mailbox
        self.name = name

    def __repr__(self) -> str:
        return f"<Agent {self.name}>"

    @property
    def inbox(self) -> Inbox:
        return self.mailbox.inbox(self.name)

    @property
    def info(self) -> AgentInfo:
        return self.mailbox.registry.get(self.name)

    def send(self, to: str | Iterable[str], subject: str = "", body: Any = None,
             **options: Any) -> Message:
        """Send as this agent (see :meth:`Mailbox.send`)."""
        return self.mailbox.send(self.name, to, subject, body, **options)
