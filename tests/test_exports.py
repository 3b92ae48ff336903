"""The public API is pinned: removing or renaming a name is a deliberate act."""

from __future__ import annotations

import agentmailbox
from agentmailbox.testing import drain, temp_mailbox


def test_public_names_are_exported() -> None:
    """Everything in __all__ exists, and the core names users import are there."""
    for name in agentmailbox.__all__:
        assert hasattr(agentmailbox, name), name
    assert {"Mailbox", "Message", "Inbox", "Workspace", "MailboxError", "InboxFull",
            "DiskFull", "StaleVersion"} <= set(agentmailbox.__all__)


def test_every_error_has_an_exit_code_and_derives_from_the_root() -> None:
    """Each error class is a MailboxError with a documented exit code."""
    errors = [getattr(agentmailbox, n) for n in agentmailbox.__all__
              if isinstance(getattr(agentmailbox, n), type)
              and issubclass(getattr(agentmailbox, n), Exception)]
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
