"""Two of the three persistence layers of an agent: working state and event memory.

- **Working state** (``state.json``): volatile; the current task, flags. Keys are
  set and unset, the whole file atomically replaced under a lock, so two processes
  setting keys at once never lose an update. There is no append: history belongs
  in memory.
- **Event memory** (``events/<YYYY-MM>.jsonl``): append-only; what happened and
  what was learned. One line per event, one ``write`` each, never rewritten;
  ``tail -f`` works on the current month's file. There is no update or delete.

The third layer, identity, is ``agent.json`` (:mod:`agentmailbox.registry`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import layout, locks, names
from .errors import InvalidInput
from .fs import Foreign, dump_object, faults, parse_object
from .message import iso, parse_time
from .root import Root

__all__ = ["Memory", "MemoryEvent", "WorkingState"]

_STATE_LIMIT = 1 << 20
_ENTRY_LIMIT = 1 << 16  # the longest event line remember() writes, and reads back
_SEGMENT_LIMIT = 1 << 30  # how much of one month's segment is read at most


@contextlib.contextmanager
def agent_lock(root: Root, agent: str, name: str, timeout: float = 10.0) -> Iterator[None]:
    """An exclusive cross-process lock on ``agents/<agent>/run/<name>.lock``."""
    path = root.paths.agent(agent).lock(name)
    with locks.held(path, root.disk, timeout=timeout,
                    message=f"{agent}: {name} is locked by another process",
                    hint="retry; if it persists, find the process holding it"):
        yield


class WorkingState(Mapping[str, Any]):
    """The working state of one agent, a JSON object of keys to values.

    Reads see the file as it is now; ``set``/``unset`` are atomic read-modify-write.
    """

    def __init__(self, root: Root, agent: str) -> None:
        self._root = root
        self.agent = names.check_agent(agent)
        self.path = root.paths.agent(agent).state

    def _load(self) -> dict[str, Any]:
        try:
            return self._root.disk.read_object(self.path, _STATE_LIMIT, one_name=True)
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise InvalidInput(f"{self.path} is not a working state: {exc}",
                               hint="run: mailbox doctor --repair (it quarantines the file)",
                               path=str(self.path)) from exc

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def snapshot(self) -> dict[str, Any]:
        """All keys and values, read once."""
        return self._load()

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (any JSON value), replacing what was there."""
        self.update({names.check_state_key(key): value})

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def unset(self, key: str) -> bool:
        """Remove ``key``; False if it was not set."""
        with agent_lock(self._root, self.agent, "state"):
            current = self._load()
            if key not in current:
                return False
            del current[key]
            self._write(current)
        return True

    def __delitem__(self, key: str) -> None:
        if not self.unset(key):
            raise KeyError(key)

    def update(self, values: Mapping[str, Any]) -> None:
        """Set several keys in one atomic replace."""
        for key in values:
            names.check_state_key(key)
        with agent_lock(self._root, self.agent, "state"):
            current = self._load()
            current.update(values)
            self._write(current)

    def _write(self, obj: dict[str, Any]) -> None:
        faults.hit("state.locked")  # callers hold the state lock and have read the file
        data = dump_object(obj, "working state", orjson.OPT_INDENT_2
                           | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SORT_KEYS)
        if len(data) > _STATE_LIMIT:
            raise InvalidInput(f"working state would be {len(data)} bytes, over {_STATE_LIMIT}",
                               hint="working state is for the current task; put history in "
                                    "memory (remember) and files in the workspace")
        self._root.disk.replace(self.path, data)


@dataclass(frozen=True, slots=True)
class MemoryEvent:
    """One remembered event."""

    t: int
    text: str
    tags: tuple[str, ...] = ()
    kind: str = "note"
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "at": iso(self.t), "kind": self.kind, "text": self.text,
                "tags": list(self.tags), "epoch": self.epoch}


class Memory:
    """The append-only event memory of one agent."""

    def __init__(self, root: Root, agent: str) -> None:
        self._root = root
        self.agent = names.check_agent(agent)
        self._paths = root.paths.agent(agent)
        self.directory = self._paths.events

    def current_file(self, now_ns: int | None = None) -> Path:
        """The segment being appended to now (``tail -f`` this one)."""
        now = now_ns or time.time_ns()
        return self._paths.events_month(time.strftime("%Y-%m", time.gmtime(now // 1_000_000_000)))

    def remember(self, text: str, *, tags: tuple[str, ...] | list[str] = (), kind: str = "note",
                 epoch: int | None = None) -> MemoryEvent:
        """Append one event (durably: fsync unless the root's policy is ``never``)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("nothing to remember: the text is empty")
        event = MemoryEvent(time.time_ns(), text, tuple(names.check_agent(t) for t in tags),
                            kind, epoch)
        line = dump_object(event.to_dict(), "memory entry", orjson.OPT_APPEND_NEWLINE)
        if len(line) > _ENTRY_LIMIT:
            raise InvalidInput(f"memory entry is {len(line)} bytes; keep entries under 64 KiB",
                               hint="store large content in the workspace and remember its name")
        self._root.disk.ensure_dir(self.directory)
        self._root.disk.append(self.current_file(event.t), line,
                               sync=self._root.disk.fsync != "never")
        return event

    def events(self, *, tag: str | None = None, since: str | None = None,
               grep: str | None = None, kind: str | None = None) -> list[MemoryEvent]:
        """Remembered events, oldest first, filtered by tag, date (``since``), word or kind."""
        since_ns = _since_ns(since)
        segments = sorted(e.name for e in self._root.disk.scan(self.directory)
                          if e.name.endswith(layout.LOG_SUFFIX))
        first = time.strftime("%Y-%m", time.gmtime(since_ns // 10**9)) if since_ns else ""
        out: list[MemoryEvent] = []
        for name in segments:
            if name[:7] >= first:
                out.extend(e for e in self._read(self.directory / name)
                           if _matches(e, tag, since_ns, grep, kind))
        return out

    def _read(self, path: Path) -> Iterator[MemoryEvent]:
        try:
            for _, line in self._root.disk.read_lines(path, line_limit=_ENTRY_LIMIT,
                                                      limit=_SEGMENT_LIMIT):
                event = _event(line)
                if event is not None:
                    yield event
        except (FileNotFoundError, Foreign):
            return


def _event(line: bytes) -> MemoryEvent | None:
    """The line as an event if it has the shape remember() writes, else None (a torn line
    from a crash, or a planted one: skipped, never rewritten)."""
    try:
        obj = parse_object(line)
    except ValueError:
        return None
    t, text, tags = obj.get("t"), obj.get("text"), obj.get("tags") or []
    kind, epoch = obj.get("kind") or "note", obj.get("epoch")
    if not (type(t) is int and t >= 0 and isinstance(text, str) and isinstance(kind, str)
            and isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
            and (epoch is None or type(epoch) is int)):
        return None  # a bool is no time and no epoch; orjson reads no int past 2**64
    return MemoryEvent(t, text, tuple(tags), kind, epoch)


def _matches(e: MemoryEvent, tag: str | None, since_ns: int, grep: str | None,
             kind: str | None) -> bool:
    return ((tag is None or tag in e.tags) and e.t >= since_ns
            and (grep is None or grep.lower() in e.text.lower())
            and (kind is None or e.kind == kind))


def _since_ns(since: str | None) -> int:
    if not since:
        return 0
    moment = parse_time(since, "--since", hint="use YYYY-MM-DD or an RFC 3339 time",
                        assume_utc=True)
    return int(moment.timestamp() * 1e9)
