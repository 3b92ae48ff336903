"""Inbox quotas: how much unread mail an inbox may hold before senders are refused.

A direct send to a full inbox raises :class:`~agentmailbox.errors.InboxFull`; routed
mail to one waits in ``spool/deferred`` until there is room. The supervisor's
notices and read receipts bypass quotas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import MailboxError
from .inbox import Inbox
from .registry import Registry
from .root import Config

__all__ = ["Fill", "Quotas"]


@dataclass(frozen=True, slots=True)
class Fill:
    """An inbox at its quota: how many unread, and the limit."""

    agent: str
    unread: int
    quota: int


@dataclass(slots=True)
class _Gauge:
    """What is known of one inbox, and until when (``time.monotonic_ns`` deadlines: a
    send in a burst compares one clock reading with them, and computes nothing)."""

    quota: int = 0
    quota_until: int = 0
    unread: int = 0
    recount_at: int = 0


class Quotas:
    """Per-inbox quotas of unread mail (agent.json max_unread, else mailbox.json max_unread).

    0 means unlimited, and then nothing is counted. Otherwise counting unread costs
    a listing of ``new/``, so the count is cached per inbox and recounted at most
    every :attr:`RECOUNT_SECONDS`, plus always before refusing: a refusal is based on
    a fresh count, while an acceptance may miss what *other* processes delivered in
    the last ``RECOUNT_SECONDS``. The quota is soft by that margin. This process's own
    deliveries are counted exactly. Quotas read from agent.json are cached for
    :attr:`QUOTA_TTL_SECONDS`.
    """

    RECOUNT_SECONDS = 0.1
    QUOTA_TTL_SECONDS = 1.0

    def __init__(self, registry: Registry, config: Config) -> None:
        self._registry = registry
        self._config = config
        self._gauges: dict[str, _Gauge] = {}

    def quota(self, agent: str) -> int:
        """The max unread of ``agent`` (0: unlimited), cached briefly."""
        return self._quota_of(self._gauge(agent), agent, time.monotonic_ns())

    def _quota_of(self, gauge: _Gauge, agent: str, now: int) -> int:
        if now >= gauge.quota_until:
            gauge.quota = self._read_quota(agent)
            gauge.quota_until = now + int(self.QUOTA_TTL_SECONDS * 1e9)
        return gauge.quota

    def _read_quota(self, agent: str) -> int:
        try:
            own = self._registry.get(agent).max_unread
        except MailboxError:
            own = 0
        return max(0, own or self._config.max_unread or 0)

    def full(self, inbox: Inbox) -> Fill | None:
        """The fill of ``inbox`` if it holds its quota of unread mail, else None."""
        gauge = self._gauge(inbox.agent)
        now = time.monotonic_ns()
        quota = self._quota_of(gauge, inbox.agent, now)
        if quota <= 0:
            return None
        if now >= gauge.recount_at or gauge.unread >= quota:
            gauge.unread = inbox.count()
            gauge.recount_at = now + int(self.RECOUNT_SECONDS * 1e9)
        if gauge.unread >= quota:
            return Fill(inbox.agent, gauge.unread, quota)
        return None

    def delivered(self, agent: str) -> None:
        """Count one delivery made by this process into ``agent``'s inbox."""
        gauge = self._gauges.get(agent)
        if gauge is not None:
            gauge.unread += 1

    def _gauge(self, agent: str) -> _Gauge:
        gauge = self._gauges.get(agent)
        if gauge is None:
            gauge = self._gauges[agent] = _Gauge()
        return gauge
