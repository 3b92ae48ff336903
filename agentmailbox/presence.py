"""Presence: who is alive, how much spare capacity it has, and in which mode.

``run/heartbeats/<agent>.json`` is replaced atomically by each heartbeat::

    {"agent": "bob", "at": <ns>, "pid": 4242, "capacity": 0.3, "mode": "normal", "epoch": 7}

An agent whose last heartbeat is older than ``heartbeat_seconds`` (mailbox.json) is
*stale*; one that never sent any is *never seen*. Capacity is the agent's own
estimate of spare capacity, 0.0 (full) to 1.0 (idle): self-imposed rate limiting
that senders and the supervisor can respect.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from . import names
from .errors import InvalidInput
from .fs import Foreign
from .message import iso
from .root import Root

__all__ = ["Heartbeat", "Liveness", "Mode", "Presence"]


class Mode(enum.StrEnum):
    """What kind of work an agent is taking now."""

    NORMAL = "normal"
    MAINTENANCE = "maintenance"  # alive, but takes no new distributed work


class Liveness(enum.StrEnum):
    ALIVE = "alive"
    STALE = "stale"
    NEVER = "never seen"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last sign of life of one agent."""

    agent: str
    at: int
    pid: int
    capacity: float | None = None
    mode: Mode = Mode.NORMAL
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "at": self.at, "at_iso": iso(self.at), "pid": self.pid,
                "capacity": self.capacity, "mode": str(self.mode), "epoch": self.epoch}


class Presence:
    """Reads and writes heartbeats of one root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self.directory = root.path / "run" / "heartbeats"

    def beat(self, agent: str, *, capacity: float | None = None, mode: Mode | str = Mode.NORMAL,
             epoch: int | None = None) -> Heartbeat:
        """Record that ``agent`` is alive now (with optional capacity and mode)."""
        names.check_agent(agent)
        if capacity is not None and not 0.0 <= capacity <= 1.0:
            raise InvalidInput(f"capacity {capacity} is outside 0.0-1.0",
                               hint="0.0 means full, 1.0 means idle")
        beat = Heartbeat(agent, time.time_ns(), os.getpid(), capacity, Mode(mode), epoch)
        self._root.disk.ensure_dir(self.directory)
        data = orjson.dumps({k: v for k, v in beat.to_dict().items() if k != "at_iso"})
        self._root.disk.replace(self.directory / f"{agent}.json", data)
        return beat

    def last(self, agent: str) -> Heartbeat | None:
        """The last heartbeat of ``agent``; None if it never sent one (or it is unreadable)."""
        path = self.directory / f"{names.check_agent(agent)}.json"
        try:
            obj = orjson.loads(self._root.disk.read(path, 1 << 16)[0])
            epoch = obj.get("epoch")
            return Heartbeat(agent, int(obj["at"]), int(obj["pid"]), _capacity(obj.get("capacity")),
                             Mode(obj.get("mode") or "normal"),
                             epoch if isinstance(epoch, int) and not isinstance(epoch, bool)
                             else None)
        except (FileNotFoundError, Foreign, orjson.JSONDecodeError, KeyError, TypeError,
                ValueError):
            return None

    def liveness(self, agent: str, now_ns: int | None = None) -> Liveness:
        beat = self.last(agent)
        if beat is None:
            return Liveness.NEVER
        age = ((now_ns or time.time_ns()) - beat.at) / 1e9
        return Liveness.ALIVE if age <= self._root.config.heartbeat_seconds else Liveness.STALE


def _capacity(value: object) -> float | None:
    """A capacity read from disk, if it is a number from 0 to 1 (anything else: unknown)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None
