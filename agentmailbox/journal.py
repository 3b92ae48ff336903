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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .errors import MailboxError
from .fs import Disk, Foreign, parse_object, pid

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

    def record(self, event: str, **fields: Any) -> None:
        """Append one event; best effort (a full disk must not fail the transition itself)."""
        now = time.time_ns()
        entry = {"t": now, "ev": event, "pid": pid(), **fields}
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        try:
            with self._lock:
                os.write(self._open(now), line)
        except (OSError, MailboxError):
            pass

    def _open(self, now: int) -> int:
        if self._fd is not None and now < self._day_ends:
            return self._fd
        day = time.strftime("%Y-%m-%d", time.gmtime(now // 1_000_000_000))
        self._day_ends = (now // _DAY_NS + 1) * _DAY_NS
        if day != self._day or self._fd is None:
            self._close()
            self._fd = self._disk.open_append(self.directory / f"{day}.jsonl")
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
        return sorted(e.name[:-6] for e in self._disk.scan(self.directory)
                      if e.name.endswith(".jsonl") and e.is_file(follow_symlinks=False))

    def events(self, since_day: str = "") -> Iterator[dict[str, Any]]:
        """Every event from ``since_day`` on, in append order; torn lines are skipped."""
        for day in self.days():
            if day >= since_day:
                yield from (entry for _, entry in self.read(day) if entry is not None)

    def read(self, day: str, start: int = 0) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """The events of one day from byte ``start``, each with the offset just after it.

        None stands for a line that is not a JSON object (torn, over-long, planted).
        A line still being written is not returned yet. Reading is bounded (see
        :data:`LINE_LIMIT`, :data:`DAY_LIMIT`); a missing day, or one that is not a
        regular file (a link, a FIFO...), is empty.
        """
        path = self.directory / f"{day}.jsonl"
        try:
            for end, line in self._disk.read_lines(path, line_limit=LINE_LIMIT,
                                                   limit=DAY_LIMIT, start=start):
                yield end, _entry(line)
        except (FileNotFoundError, MailboxError, Foreign):
            return


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        return parse_object(line)
    except ValueError:
        return None
