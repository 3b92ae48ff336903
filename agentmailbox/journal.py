"""The bus journal: one JSON line per transition, appended, never rewritten.

``journal/<YYYY-MM-DD>.jsonl`` under the root. Each line is written with a single
``O_APPEND`` write, so lines from many processes never interleave. The journal is a
*record* of what happened (who read what, when, as which instance) for ``status``
and ``tail``; the directories remain the state. Losing a line loses detail, never mail.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from . import layout
from .errors import MailboxError
from .fs import Disk, Foreign, parse_object, pid
from .names import is_id

__all__ = ["DAY_LIMIT", "LINE_LIMIT", "Journal"]

_DAY_NS = 86_400_000_000_000

LINE_LIMIT = 1 << 20
"""The longest journal line read back (lines name ids and agents, never a body)."""
DAY_LIMIT = 1 << 30
"""How much of one day's journal is read at most; the rest of a larger day is not."""


class Journal:
    """Appends events to, and reads them back from, one root's journal."""

    def __init__(self, directory: Path, disk: Disk) -> None:
        self.directory = directory
        self._disk = disk
        self._fd: int | None = None
        self._day = ""
        self._day_ends = 0
        self._lock = threading.Lock()
        self._held: list[bytes] | None = None

    def record(self, event: str, **fields: Any) -> None:
        """Append one event; best effort (a full disk must not fail the transition itself).

        Between :meth:`hold` and :meth:`flush` (a batch) the line is kept in memory."""
        now = time.time_ns()
        entry = {"t": now, "ev": event, "pid": pid(), **fields}
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        held = self._held
        if held is not None:
            held.append(line)
            return
        self._write(now, line)

    def hold(self) -> None:
        """Keep the lines recorded from now on until :meth:`flush` (``Mailbox.batch()``):
        one write for the batch; a crash inside it loses them (detail, never mail)."""
        if self._held is None:
            self._held = []

    def flush(self) -> None:
        """Write the lines held since :meth:`hold` with one append, and stop holding."""
        held, self._held = self._held, None
        if held:
            self._write(time.time_ns(), b"".join(held))

    def _write(self, now: int, lines: bytes) -> None:
        try:
            with self._lock:
                os.write(self._open(now), lines)
        except (OSError, MailboxError):
            pass

    def _open(self, now: int) -> int:
        if self._fd is not None and now < self._day_ends:
            return self._fd
        day = time.strftime("%Y-%m-%d", time.gmtime(now // 1_000_000_000))
        self._day_ends = (now // _DAY_NS + 1) * _DAY_NS
        if day != self._day or self._fd is None:
            self._close()
            self._fd = self._disk.open_append(self.directory / layout.log_file(day))
            self._day = day
        return self._fd

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        with_fd, self._fd = self._fd, None
        if with_fd is not None:
            os.close(with_fd)

    def days(self) -> list[str]:
        """Journal days present, oldest first."""
        suffix = layout.LOG_SUFFIX
        return sorted(e.name.removesuffix(suffix) for e in self._disk.scan(self.directory)
                      if e.name.endswith(suffix) and e.is_file(follow_symlinks=False))

    def events(self, since_day: str = "") -> Iterator[dict[str, Any]]:
        """Every event from ``since_day`` on, in append order; torn lines are skipped."""
        for day in self.days():
            if day >= since_day:
                yield from (entry for _, entry in self.read(day) if entry is not None)

    def read(self, day: str, start: int = 0) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """The events of one day from byte ``start``, each with the offset just after it.

        None stands for a line that is not an event of the documented shape (torn,
        over-long, planted): a JSON object with an int ``t`` and a text ``ev``, whose
        fields hold what their names say (a send names a valid ``id`` and a ``to`` list).
        A line still being written is not returned yet. Reading is bounded (see
        :data:`LINE_LIMIT`, :data:`DAY_LIMIT`); a missing day, or one that is not a
        regular file (a link, a FIFO...), is empty.
        """
        path = self.directory / layout.log_file(day)
        try:
            for end, line in self._disk.read_lines(path, line_limit=LINE_LIMIT,
                                                   limit=DAY_LIMIT, start=start):
                yield end, _entry(line)
        except (FileNotFoundError, MailboxError, Foreign):
            return


def _entry(line: bytes) -> dict[str, Any] | None:
    """The line as an event if it has the shape every reader relies on, else None."""
    try:
        entry = parse_object(line)
    except ValueError:
        return None
    event = entry.get("ev")
    if not isinstance(event, str):
        return None
    checks = _EVENT_FIELDS.get(event, _FIELDS)
    if all(field in entry for field in ("t", *_REQUIRED.get(event, ()))) and all(
            check(entry[field]) for field, check in checks.items() if field in entry):
        return entry
    return None


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _id(value: Any) -> bool:
    return isinstance(value, str) and is_id(value)


def _ids(value: Any) -> bool:
    return isinstance(value, list) and all(map(_id, value))


_FIELDS: dict[str, Callable[[Any], bool]] = {
    "t": lambda t: type(t) is int and t >= 0,  # nanoseconds; a bool is no time
    "ev": _text,
    "id": _id,
    "ids": _ids,
    "agent": _text_or_none,
    "from": _text,
    "epoch": lambda e: e is None or type(e) is int,
    "thread": _text_or_none,
    "reply_to": _text_or_none,
    "subject": _text,
    "kind": _text,
    "via": _text,
    "recipients": _texts,
    "expansion": lambda x: isinstance(x, dict) and all(map(_texts, x.values())),
}
"""What a field holds whenever a line has it (what ``status``, ``thread show``, boot's
waiting-on check and ``tail`` index without checking)."""

_EVENT_FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "send": {**_FIELDS, "to": _texts},  # a retry's "to" names the one place it went
}
"""What a field holds in the lines of one event, where that differs from :data:`_FIELDS`."""

_REQUIRED: dict[str, tuple[str, ...]] = {"send": ("id",), "surface": ("agent", "ids", "via")}
"""The fields the lines of one event must have, beyond ``t`` and ``ev`` that all have."""
