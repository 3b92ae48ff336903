"""What routing came to: the counts of one pass, and the settling of one message.

:class:`Pass` is what :meth:`Supervisor.run_once` returns (and ``mailbox supervise
--once --json`` prints); :class:`Outcome` is gathered while one spooled message is
routed, and decides whether it finishes or waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..routing import Unroutable
from .progress import Failure

__all__ = ["Outcome", "Pass", "attempts"]


@dataclass
class Pass:
    """What one pass did (counts), for tests and logs."""

    routed: int = 0
    deferred: int = 0
    held: int = 0
    released: int = 0
    dead: int = 0
    expired: int = 0
    requeued: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Outcome:
    """Where each address and recipient of one message stands after one routing attempt."""

    expansion: dict[str, list[str]] = field(default_factory=dict)
    holders: list[str] = field(default_factory=list)
    waiting: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (what, address)
    unroutable: list[Unroutable] = field(default_factory=list)
    undeliverable: dict[str, tuple[str, str]] = field(default_factory=dict)  # agent: address, why
    failed: set[str] = field(default_factory=set)  # agents whose delivery failed this time

    def give_up(self, address: str, agent: str, reason: str) -> None:
        self.undeliverable.setdefault(agent, (address, reason))

    def hold(self, address: str, agent: str) -> None:
        got = self.expansion.setdefault(address, [])
        if agent not in got:
            got.append(agent)
        if agent not in self.holders:
            self.holders.append(agent)

    def wait(self, what: str, address: str, reason: str) -> None:
        self.waiting.setdefault((what, address), []).append(reason)


def attempts(failure: Failure) -> str:
    """``1 failed attempt``, ``3 failed attempts``: for reasons and notices."""
    return "1 failed attempt" if failure.attempts == 1 else f"{failure.attempts} failed attempts"
