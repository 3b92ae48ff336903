"""The rate gate: a circuit breaker per sender, and the mail it holds.

mailbox.json ``"rate": {"per_second": N, "burst": M}`` gives each sender a token
bucket. A sender with no token left, or with mail already held, has its routed
mail held in ``spool/held`` (never dropped); held mail is released oldest first as
tokens come back, so the breaker closes once the sender's rate falls below
``per_second``. The sender is told when it opens (``held``) and when it closes
(``resumed``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fs import Foreign
from ..mailbox import Mailbox
from ..message import Malformed, Message
from .notices import Notices
from .outcome import Pass

__all__ = ["HeldMail", "RateGate"]

log = logging.getLogger("agentmailbox.supervisor")


@dataclass
class _Bucket:
    tokens: float
    at: float
    queue: deque[str] = field(default_factory=deque)  # held file names, oldest first
    opened_by: str | None = None  # the first held id of the current opening


class RateGate:
    """Per-sender token buckets (mailbox.json ``"rate": {"per_second": N, "burst": M}``).

    A sender with no token left, or with mail already held, has its routed mail held
    (never dropped); held mail is released oldest first as tokens come back, so the
    breaker closes once the sender's rate falls below ``per_second``.
    """

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = max(1.0, burst)
        self.buckets: dict[str, _Bucket] = {}

    @classmethod
    def from_config(cls, extra: dict[str, Any]) -> RateGate | None:
        rate = extra.get("rate")
        if not isinstance(rate, dict) or not rate.get("per_second"):
            return None
        per_second = float(rate["per_second"])
        return cls(per_second, float(rate.get("burst") or per_second)) if per_second > 0 else None

    def _bucket(self, sender: str, now: float) -> _Bucket:
        bucket = self.buckets.get(sender)
        if bucket is None:
            bucket = self.buckets[sender] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        return bucket

    def admit(self, sender: str, now: float) -> bool:
        """Take a token for new mail of ``sender``; False if it must be held."""
        bucket = self._bucket(sender, now)
        if bucket.queue or bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def hold(self, sender: str, name: str) -> bool:
        """Queue a held file; True if this opened the breaker."""
        bucket = self.buckets.setdefault(sender, _Bucket(0.0, 0.0))
        bucket.queue.append(name)
        opened = bucket.opened_by is None
        if opened:
            bucket.opened_by = name[:-5]
        return opened

    def releasable(self, now: float) -> Iterable[tuple[str, str]]:
        """(sender, name) of held mail whose turn has come, taking a token each."""
        for sender, bucket in list(self.buckets.items()):
            self._bucket(sender, now)
            while bucket.queue and bucket.tokens >= 1:
                bucket.tokens -= 1
                yield sender, bucket.queue.popleft()

    def closed(self) -> list[tuple[str, str]]:
        """(sender, first held id) of breakers that just drained; resets them."""
        out = []
        for sender, bucket in self.buckets.items():
            if not bucket.queue and bucket.opened_by is not None:
                out.append((sender, bucket.opened_by))
                bucket.opened_by = None
        return out


class HeldMail:
    """``spool/held``: what the gate holds, put back in its queue after a restart.

    Without a ``rate`` in mailbox.json there is no gate: everything is admitted, and
    mail an earlier supervisor held goes back to ``spool/new``.
    """

    def __init__(self, mb: Mailbox, notices: Notices, clock: Callable[[], float]) -> None:
        self._mb = mb
        self._spool = mb.spool
        self._notices = notices
        self._clock = clock
        self.gate = RateGate.from_config(mb.config.extra)

    def admit(self, path: Path, msg: Message, report: Pass) -> bool:
        """Whether a claimed file may be routed now (it takes a token); if not, it is held."""
        if self.gate is None or self.gate.admit(msg.sender, self._clock()):
            return True
        self._hold(self.gate, path, msg, report)
        return False

    def _hold(self, gate: RateGate, path: Path, msg: Message, report: Pass) -> None:
        """Move a claimed file to ``spool/held``; tell the sender if the breaker opened."""
        self._mb.root.disk.overwrite(path, self._spool.held / path.name)
        report.held += 1
        if gate.hold(msg.sender, path.name):
            rate = f"{gate.per_second:g}/s, burst {gate.burst:g}"
            self._notices.tell(msg, "held", "", f"you are sending routed mail faster than "
                               f"{rate}; it is held (not dropped) and released at that rate")
            log.warning("sender held", extra={"sender": msg.sender, "rate": rate})

    def recover(self) -> None:
        """After a restart, queue what ``spool/held`` holds, per sender, oldest first."""
        for name in self._spool.names(self._spool.held):
            try:
                msg, _ = self._spool.read(self._spool.held / name)
            except (FileNotFoundError, Foreign, Malformed):
                continue  # routed (and buried if bad) once the gate lets it through
            if self.gate is None:
                self._mb.root.disk.overwrite(self._spool.held / name, self._spool.new / name)
            else:
                self.gate.hold(msg.sender, name)

    def release(self, report: Pass, route: Callable[[Path], None]) -> None:
        """Route (with ``route``) the held mail whose turn has come; tell who resumed."""
        if self.gate is None:
            return
        for sender, name in self.gate.releasable(self._clock()):
            report.released += 1
            try:
                route(self._spool.held / name)
            except BaseException:
                self.gate.buckets[sender].queue.appendleft(name)  # still held: keep its turn
                raise
        for sender, first in self.gate.closed():
            about = Message(id=first, sender=sender, to=(sender,))
            self._notices.tell(about, "resumed", "", "your routed mail is flowing again")
            log.info("sender resumed", extra={"sender": sender})

    def due(self, last_pass: float) -> float | None:
        """When the next held mail may be released (None: nothing is held)."""
        if self.gate is not None and any(b.queue for b in self.gate.buckets.values()):
            return last_pass + 1.0 / self.gate.per_second
        return None
