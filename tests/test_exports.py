"""The public API is pinned: removing or renaming a name is a deliberate act."""

from __future__ import annotations

import subprocess
import sys

from conftest import python_env

import agentmailbox
from agentmailbox.testing import drain, temp_mailbox

PUBLIC = [
    # the bus
    "Agent", "AgentInfo", "Clock", "Delivery", "Fsync", "Inbox", "Mailbox", "Message",
    "Priority", "State", "Status",
    # routing, presence and dead letters
    "DeadLetter", "DeadLetters", "Heartbeat", "Liveness", "Mode", "Presence", "Supervisor",
    # continuity: what a restarting agent keeps
    "Brief", "Handoff", "Memory", "MemoryEvent", "ThreadDone", "Waiting", "WorkingState",
    # the shared workspace
    "Workspace", "WsFile",
    # health
    "Finding",
    # errors and warnings
    "AgentNotFound", "AlreadyExists", "Conflict", "DiskFull", "HandoffTooLarge", "InboxFull",
    "InvalidInput", "InvalidName", "LockTimeout", "MailboxError", "MessageNotFound",
    "MessageTooLarge", "NotFound", "RootNotFound", "StaleVersion", "StorageError",
    "ThreadDoneWarning",
]


def test_all_is_pinned() -> None:
    """__all__ is exactly the public API, in its groups (a change here is a deliberate act)."""
    assert PUBLIC == agentmailbox.__all__


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    """`from agentmailbox import X` gives the very class the module defines, and dir() lists it."""
    for name in agentmailbox.__all__:
        value = getattr(agentmailbox, name)
        assert name == value.__name__
        assert value is getattr(sys.modules[value.__module__], name)
    assert set(agentmailbox.__all__) <= set(dir(agentmailbox))


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A misspelt import fails as usual, with the name in the message."""
    try:
        agentmailbox.Mailboxx  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "Mailboxx" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_loads_no_daemon_dependency() -> None:
    """`import agentmailbox` is cheap: no watchdog, structlog, portalocker or supervisor."""
    code = "import sys, agentmailbox; print(*sys.modules)"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=python_env(), check=True).stdout.split())
    heavy = {"watchdog", "structlog", "portalocker", "agentmailbox.supervisor"}
    assert {"agentmailbox"} <= loaded
    assert set() == loaded & heavy


def test_every_error_derives_from_the_root_and_says_when_it_is_raised() -> None:
    """Each exported error class is a MailboxError with a positive exit code."""
    errors = [getattr(agentmailbox, n) for n in agentmailbox.__all__
              if isinstance(getattr(agentmailbox, n), type)
              and issubclass(getattr(agentmailbox, n), Exception)
              and not issubclass(getattr(agentmailbox, n), Warning)]
    assert errors
    for cls in errors:
        assert issubclass(cls, agentmailbox.MailboxError)
        assert isinstance(cls.exit_code, int) and cls.exit_code > 0
        assert cls.__doc__ and cls.__doc__.startswith("Raised when")


def test_testing_helpers_give_a_working_throwaway_root() -> None:
    """temp_mailbox + drain let users test their agents in a few lines."""
    with temp_mailbox("alice", "bob") as mb:
        mb.send("alice", "bob", subject="ping")
        assert [m.subject for m in drain(mb.inbox("bob"))] == ["ping"]
        path = mb.path
    assert not path.exists()
