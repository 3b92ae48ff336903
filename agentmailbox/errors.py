"""Every error agentmailbox raises on purpose, and the exit code of ``mailbox`` for each.

The whole tree; a class without a code of its own has its parent's (``exit_code``, the one
place the command takes an error's code from)::

    MailboxError                  anything agentmailbox raises on purpose (exit 1)
    ├── InvalidInput              a name, id, option or message is malformed (exit 5)
    │   ├── InvalidName           an agent, workspace or key name fails validation
    │   ├── MessageTooLarge       an encoded message exceeds max_message_bytes (exit 7)
    │   └── HandoffTooLarge       a handoff exceeds its budget; says what to cut (exit 7)
    ├── NotFound                  something named does not exist (exit 4)
    │   ├── RootNotFound          no .mailbox/ here or above, and none given
    │   ├── AgentNotFound         an agent (sender or recipient) is not registered
    │   └── MessageNotFound       an id is in none of the places it could be
    ├── Conflict                  the world changed under the caller (exit 6)
    │   ├── AlreadyExists         init or agent add over an existing one
    │   ├── StaleVersion          a compare-and-swap lost: someone wrote a newer version
    │   └── LockTimeout           a lock stayed held past the timeout
    ├── InboxFull                 an inbox holds its quota of unread mail (exit 8)
    ├── DiskFull                  the filesystem has no room; nothing partial was left (exit 9)
    └── StorageError              any other OS failure, with the path and the call

Expected outcomes are not errors: losing a claim race returns ``None``. The command's
exit codes that are not errors (0 ok, 2 usage, 3 empty, 10 unhealthy, 130 interrupted) are
defined once, in :mod:`agentmailbox.cli._base`.
"""

from __future__ import annotations

import errno
from typing import ClassVar

__all__ = [
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
    "from_oserror",
]


class MailboxError(Exception):
    """Raised when agentmailbox refuses or fails an operation on purpose.

    ``hint`` says what to do about it; the CLI prints it under the message.
    """

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str = "", path: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.path = path


class InvalidInput(MailboxError):
    """Raised when a name, id, option or message is malformed."""

    exit_code = 5


class InvalidName(InvalidInput):
    """Raised when an agent, workspace or key name fails validation (before any path is built)."""

    def __init__(self, message: str, *, name: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.name = name


class MessageTooLarge(InvalidInput):
    """Raised when an encoded message is larger than ``max_message_bytes``."""

    exit_code = 7

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message is {size} bytes, over the limit of {limit} bytes",
            hint="put large content in the shared workspace (mailbox ws put) and send its name",
        )
        self.size = size
        self.limit = limit


class HandoffTooLarge(InvalidInput):
    """Raised when a handoff note exceeds its budget; ``problems`` lists what to cut."""

    exit_code = 7

    def __init__(self, problems: list[str]) -> None:
        super().__init__("handoff over budget: " + "; ".join(problems),
                         hint="keep the critical path, move detail to memory (mailbox remember)")
        self.problems = problems


class NotFound(MailboxError):
    """Raised when something named does not exist."""

    exit_code = 4


class RootNotFound(NotFound):
    """Raised when no mailbox root is found here, above, or where given."""


class AgentNotFound(NotFound):
    """Raised when an agent is not registered in this root."""

    def __init__(self, agent: str) -> None:
        super().__init__(f"no agent named {agent!r}",
                         hint=f"register it first: mailbox agent add {agent}")
        self.agent = agent


class MessageNotFound(NotFound):
    """Raised when a message id is in none of the places it could be."""

    def __init__(self, msg_id: str, where: str) -> None:
        super().__init__(f"message {msg_id} not found in {where}",
                         hint="list what is there: mailbox inbox AGENT --all")
        self.msg_id = msg_id


class Conflict(MailboxError):
    """Raised when the state changed under the caller."""

    exit_code = 6


class AlreadyExists(Conflict):
    """Raised when creating something that already exists."""


class StaleVersion(Conflict):
    """Raised when a compare-and-swap write names a version that is no longer current."""

    def __init__(self, name: str, expected: int, current: int) -> None:
        super().__init__(
            f"{name}: you based your change on version {expected}, "
            f"but version {current} is current",
            hint=f"read it again (mailbox ws get {name}), merge, "
                 f"and put with --if-version {current}",
        )
        self.name = name
        self.expected = expected
        self.current = current


class LockTimeout(Conflict):
    """Raised when a lock is still held by someone else when the timeout ends."""


class InboxFull(MailboxError):
    """Raised when a direct send meets an inbox holding its quota of unread mail."""

    exit_code = 8

    def __init__(self, agent: str, unread: int, quota: int) -> None:
        super().__init__(f"inbox of {agent!r} is full: {unread} unread, quota {quota}",
                         hint="retry later, or send through the supervisor (it defers and retries)")
        self.agent = agent
        self.unread = unread
        self.quota = quota


class DiskFull(MailboxError):
    """Raised when the filesystem has no room left; nothing partial is visible."""

    exit_code = 9


class StorageError(MailboxError):
    """Raised when an OS call fails in a way that is not an expected outcome; carries the errno."""

    def __init__(self, message: str, *, path: str | None = None, errno_: int | None = None) -> None:
        super().__init__(message, path=path, hint="check permissions and the filesystem; "
                         "mailbox doctor reports what is wrong")
        self.errno = errno_


class ThreadDoneWarning(UserWarning):
    """Warned when mail is sent into a thread someone already marked done."""


def from_oserror(exc: OSError, action: str, path: str | None = None) -> MailboxError:
    """Translate an unexpected ``OSError`` into our tree (the one place this happens)."""
    where = path or exc.filename or "?"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left while trying to {action} ({where})",
                        hint="free some space; nothing partial was left behind", path=str(where))
    return StorageError(f"could not {action}: {exc.strerror or exc} ({where})",
                        path=str(where), errno_=exc.errno)
