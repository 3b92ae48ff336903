"""Sweeping inboxes: claims past their lease go back to ``new/``, expired mail to ``dead/``.

Every ``sweep_seconds`` the supervisor looks at each registered inbox. A message's
``expires_at`` is read once and remembered for as long as the message stays unread,
so a sweep of a full inbox costs one listing, not one read per message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from .. import layout
from ..errors import DiskFull, MailboxError
from ..fs import Foreign
from ..inbox import Inbox
from ..mailbox import Mailbox
from ..message import Malformed, decode, parse_time
from .outcome import Pass

__all__ = ["Sweeper"]

log = logging.getLogger("agentmailbox.supervisor")


class Sweeper:
    """Requeues expired leases and buries expired unread mail in every inbox of a root."""

    def __init__(self, mb: Mailbox) -> None:
        self._mb = mb
        self._expiry: dict[str, dict[str, str | None]] = {}  # agent -> id -> expires_at

    def sweep(self, report: Pass, stopping: Callable[[], bool]) -> None:
        """Requeue claims past their lease; bury unread mail past its ``expires_at``."""
        for agent in self._mb.registry.list_names():
            if stopping():
                return
            try:
                inbox = self._mb.inbox(agent)
                report.requeued += len(inbox.requeue_expired())
                report.expired += self._expire(inbox)
            except DiskFull:
                raise
            except MailboxError:
                log.exception("could not sweep an inbox", extra={"agent": agent})

    def _expire(self, inbox: Inbox) -> int:
        known = self._expiry.setdefault(inbox.agent, {})
        present = inbox.ids()
        for gone in set(known) - set(present):
            del known[gone]
        expired = 0
        now = time.time_ns()
        for msg_id in present:
            if msg_id not in known:
                known[msg_id] = self._expires_at(inbox.new / layout.message_file(msg_id))
            when = known[msg_id]
            if when is not None and _passed(when, now):
                if self._mb.dead.bury(inbox.new / layout.message_file(msg_id), "expired",
                                      agent=inbox.agent, expires_at=when, by="supervisor"):
                    expired += 1
                del known[msg_id]
        return expired

    def _expires_at(self, path: Path) -> str | None:
        try:
            data, _ = self._mb.root.disk.read(path, self._mb.config.max_message_bytes)
            return decode(data).expires_at
        except (FileNotFoundError, Foreign, Malformed):
            return None  # claim or doctor deals with bad files


def _passed(expires_at: str, now_ns: int) -> bool:
    return now_ns / 1e9 >= parse_time(expires_at, "'expires_at'").timestamp()
