"""Pick one: which agent of a routed address gets a ``pick: one`` message.

Only live agents are candidates (a heartbeat within ``heartbeat_seconds``, not in
maintenance, below their quota); the one with the most spare capacity wins. An
agent that reports no capacity counts as half free.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..errors import DiskFull, MailboxError
from ..mailbox import Mailbox
from ..presence import Mode, Presence

__all__ = ["Picker"]


class Picker:
    """Chooses one agent for ``pick: one``: alive, not in maintenance, below its quota,
    highest spare capacity first (no capacity reported counts as 0.5).

    Between two heartbeats an agent's capacity is divided by one plus the number of
    messages picked for it since that heartbeat, so a burst spreads across agents.
    """

    def __init__(self, mb: Mailbox) -> None:
        self._mb = mb
        self._presence = Presence(mb.root)
        self._picks: dict[str, tuple[int, int]] = {}  # agent -> (heartbeat at, picks since)

    def choose(self, agents: Iterable[str]) -> str | None:
        best: tuple[float, str] | None = None
        for agent in agents:
            score = self._score(agent)
            if score is not None and (best is None or score > best[0]):
                best = (score, agent)
        if best is None:
            return None
        self._count(best[1])
        return best[1]

    def _score(self, agent: str) -> float | None:
        beat = self._presence.last(agent)
        limit = self._mb.config.heartbeat_seconds * 1e9
        if beat is None or time.time_ns() - beat.at > limit or beat.mode is Mode.MAINTENANCE:
            return None
        try:
            if self._mb.quotas.full(self._mb.inbox(agent)) is not None:
                return None
        except DiskFull:
            raise
        except MailboxError:
            return None  # its inbox cannot even be counted: no candidate
        at, picks = self._picks.get(agent, (beat.at, 0))
        picks = picks if at == beat.at else 0
        self._picks[agent] = (beat.at, picks)
        capacity = 0.5 if beat.capacity is None else float(beat.capacity)
        return capacity / (1 + picks)

    def _count(self, agent: str) -> None:
        at, picks = self._picks[agent]
        self._picks[agent] = (at, picks + 1)
