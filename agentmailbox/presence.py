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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import names
from .errors import InvalidInput
from .fs import Disk
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
        self._paths = root.paths
        self.directory = self._paths.heartbeats

    def beat(self, agent: str, *, capacity: float | None = None, mode: Mode | str = Mode.NORMAL,
             epoch: int | None = None) -> Heartbeat:
        """Record that ``agent`` is alive now (with optional capacity and mode).

        Raises:
            InvalidInput: a value the heartbeat schema refuses (readers would ignore it).
        """
        names.check_agent(agent)
        record = {"agent": agent, "at": time.time_ns(), "pid": os.getpid(),
                  "capacity": capacity, "mode": mode, "epoch": epoch}
        try:
            beat = _parse(agent, record)
        except ValueError as exc:
            raise InvalidInput(f"heartbeat of {agent}: {exc}",
                               hint="capacity: 0.0 (full) to 1.0 (idle); mode: normal or "
                                    "maintenance; epoch: an integer") from exc
        self._root.disk.ensure_dir(self.directory)
        data = orjson.dumps({k: v for k, v in beat.to_dict().items() if k != "at_iso"})
        self._root.disk.replace(self.path(agent), data)
        return beat

    def path(self, agent: str) -> Path:
        return self._paths.heartbeat(names.check_agent(agent))

    def last(self, agent: str) -> Heartbeat | None:
        """The last heartbeat of ``agent``; None if it never sent one or the file is not a
        heartbeat (then it counts as never seen; ``mailbox doctor`` reports it)."""
        try:
            return self.read(agent)
        except InvalidInput:
            return None

    def read(self, agent: str) -> Heartbeat | None:
        """The last heartbeat of ``agent``; None if there is none.

        Raises:
            InvalidInput: the file is not a heartbeat (says why).
        """
        path = self.path(agent)
        try:
            return load_heartbeat(path, agent, self._root.disk)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise InvalidInput(f"heartbeat {path} is malformed: {exc}",
                               hint="run: mailbox doctor --repair (the next beat writes a "
                                    "new one)", path=str(path)) from exc

    def liveness(self, agent: str, now_ns: int | None = None) -> Liveness:
        beat = self.last(agent)
        if beat is None:
            return Liveness.NEVER
        return Liveness.STALE if self._stale(beat, now_ns) else Liveness.ALIVE

    def offline(self, agents: Iterable[str], now_ns: int | None = None) -> list[Heartbeat]:
        """The last heartbeats of those of ``agents`` that sent one and went stale since:
        whom a direct send reaches only when they come back ("queued: bob offline since
        ..."). An agent that never sent a heartbeat is not counted (many never do)."""
        beats = (self.last(a) for a in dict.fromkeys(agents))
        return [b for b in beats if b is not None and self._stale(b, now_ns)]

    def _stale(self, beat: Heartbeat, now_ns: int | None) -> bool:
        return ((now_ns or time.time_ns()) - beat.at) / 1e9 > self._root.config.heartbeat_seconds


_BEAT_LIMIT = 1 << 16


def load_heartbeat(path: Path, agent: str, disk: Disk | None = None) -> Heartbeat:
    """Read the heartbeat of ``agent`` at ``path`` (never following a link).

    Raises:
        FileNotFoundError: there is none (never seen).
        ValueError: the file is not a heartbeat of ``agent``; says why.
    """
    return _parse(agent, (disk or Disk()).read_object(path, _BEAT_LIMIT))


def _parse(agent: str, obj: Any) -> Heartbeat:
    """The heartbeat schema (PROTOCOL.md §18), for the writer and every reader alike."""
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object but {type(obj).__name__}")
    if obj.get("agent", agent) != agent:
        raise ValueError(f"written for another agent ({str(obj['agent'])[:40]!r})")
    at, pid, epoch = _integer(obj, "at"), _integer(obj, "pid"), obj.get("epoch")
    if epoch is not None and not _is_int(epoch):
        raise ValueError(f"'epoch' must be an integer or null, not {type(epoch).__name__}")
    capacity = obj.get("capacity")
    if capacity is not None and not (isinstance(capacity, int | float)
                                     and not isinstance(capacity, bool) and 0 <= capacity <= 1):
        raise ValueError(f"'capacity' must be a number from 0.0 to 1.0 or null, not "
                         f"{str(capacity)[:20]}")
    mode = obj.get("mode")
    mode = Mode.NORMAL if mode is None else mode
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"'mode' must be normal or maintenance, not {str(mode)[:20]!r}")
    return Heartbeat(agent, at, pid, None if capacity is None else float(capacity),
                     _MODES[mode], epoch)


_MODES = {str(m): m for m in Mode}


def _integer(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key!r} must be an integer, not {type(value).__name__}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
