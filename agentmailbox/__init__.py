"""agentmailbox: a message bus made of directories and files, for agents that restart.

Start with :class:`Mailbox`::

    from agentmailbox import Mailbox
    mb = Mailbox.open()                       # the nearest .mailbox/ above the cwd
    mb.send("alice", ["bob"], subject="plan v1", body="...")
    msg = mb.agent("bob").inbox.claim()
"""

from .agent import Agent
from .dead import DeadLetter, DeadLetters
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
)
from .fs import Fsync
from .inbox import Inbox, State
from .mailbox import Delivery, Mailbox, Status
from .message import Clock, Message, Priority
from .registry import AgentInfo
from .workspace import Workspace, WsFile

__version__ = "0.1.0"

__all__ = [
    # the bus
    "Agent",
    "AgentInfo",
    "Clock",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "Fsync",
    "Inbox",
    "Mailbox",
    "Message",
    "Priority",
    "State",
    "Status",
    # the shared workspace
    "Workspace",
    "WsFile",
    # errors
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
]
