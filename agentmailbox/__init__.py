"""agentmailbox: a message bus made of directories and files, for agents that restart.

Start with :class:`Mailbox`::

    from agentmailbox import Mailbox
    mb = Mailbox.open()                       # the nearest .mailbox/ above the cwd
    mb.send("alice", ["bob"], subject="plan v1", body="...")
    msg = mb.agent("bob").inbox.claim()

Every public name is imported on first use (PEP 562), from the module :data:`_MODULES`
names: ``import agentmailbox`` costs almost nothing, and pulls in neither watchdog,
structlog, portalocker nor the supervisor until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import Agent
    from .boot import Brief
    from .dead import DeadLetter, DeadLetters
    from .doctor import Finding
    from .errors import (
        AgentNotFound,
        AlreadyExists,
        Conflict,
        DiskFull,
        HandoffTooLarge,
        InboxFull,
        InvalidInput,
        InvalidName,
        LockTimeout,
        MailboxError,
        MessageNotFound,
        MessageTooLarge,
        NotFound,
        RootNotFound,
        StaleVersion,
        StorageError,
        ThreadDoneWarning,
    )
    from .fs import Fsync
    from .handoff import Handoff, Waiting
    from .inbox import Inbox, State
    from .mailbox import Delivery, Mailbox, Status
    from .memory import Memory, MemoryEvent, WorkingState
    from .message import Clock, Message, Priority
    from .presence import Heartbeat, Liveness, Mode, Presence
    from .registry import AgentInfo
    from .supervisor import Supervisor
    from .threads import ThreadDone
    from .workspace import Workspace, WsFile

__version__ = "0.1.0"

__all__ = [
    # the bus
    "Agent",
    "AgentInfo",
    "Clock",
    "Delivery",
    "Fsync",
    "Inbox",
    "Mailbox",
    "Message",
    "Priority",
    "State",
    "Status",
    # routing, presence and dead letters
    "DeadLetter",
    "DeadLetters",
    "Heartbeat",
    "Liveness",
    "Mode",
    "Presence",
    "Supervisor",
    # continuity: what a restarting agent keeps
    "Brief",
    "Handoff",
    "Memory",
    "MemoryEvent",
    "ThreadDone",
    "Waiting",
    "WorkingState",
    # the shared workspace
    "Workspace",
    "WsFile",
    # health
    "Finding",
    # errors and warnings
    "AgentNotFound",
    "AlreadyExists",
    "Conflict",
    "DiskFull",
    "HandoffTooLarge",
    "InboxFull",
    "InvalidInput",
    "InvalidName",
    "LockTimeout",
    "MailboxError",
    "MessageNotFound",
    "MessageTooLarge",
    "NotFound",
    "RootNotFound",
    "StaleVersion",
    "StorageError",
    "ThreadDoneWarning",
]

_ERRORS = ("AgentNotFound", "AlreadyExists", "Conflict", "DiskFull", "HandoffTooLarge",
           "InboxFull", "InvalidInput", "InvalidName", "LockTimeout", "MailboxError",
           "MessageNotFound", "MessageTooLarge", "NotFound", "RootNotFound", "StaleVersion",
           "StorageError", "ThreadDoneWarning")

_MODULES: dict[str, str] = {
    # public name: the module of this package that defines it
    "Agent": "agent",
    "AgentInfo": "registry",
    "Clock": "message",
    "Delivery": "mailbox",
    "Fsync": "fs",
    "Inbox": "inbox",
    "Mailbox": "mailbox",
    "Message": "message",
    "Priority": "message",
    "State": "inbox",
    "Status": "mailbox",
    "DeadLetter": "dead",
    "DeadLetters": "dead",
    "Heartbeat": "presence",
    "Liveness": "presence",
    "Mode": "presence",
    "Presence": "presence",
    "Supervisor": "supervisor",
    "Brief": "boot",
    "Handoff": "handoff",
    "Memory": "memory",
    "MemoryEvent": "memory",
    "ThreadDone": "threads",
    "Waiting": "handoff",
    "WorkingState": "memory",
    "Workspace": "workspace",
    "WsFile": "workspace",
    "Finding": "doctor",
    **dict.fromkeys(_ERRORS, "errors"),
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, then keep it here."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
