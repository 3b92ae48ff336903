"""The bus journal: one JSON line per transition, appended, never rewritten.

``journal/<YYYY-MM-DD>.jsonl`` under the root. Lines are written with ``O_APPEND``
writes that each hold whole lines, so lines from many processes never interleave. The
journal is a *record* of what happened (who read what, when, as which instance) for
``status`` and ``tail``; the directories remain the state. Losing a line loses detail,
never mail.

A line is written at once when this process wrote none in the last :data:`DELAY`; in a
burst the lines are held and written together, one append per :data:`GROUP_LIMIT` bytes,
at most :data:`DELAY` after the first of them, by a flusher thread that ends itself when
the burst is over. So a crash loses at most that much of one process's record. An orderly
end loses nothing (``close``, ``atexit``), and every read in this process first writes
what the process holds, so it sees every line the process recorded.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from . import layout
from .errors import MailboxError
from .fs import Disk, Foreign, parse_object, pid
from .names import is_id

__all__ = ["DAY_LIMIT", "DELAY", "GROUP_LIMIT", "LINE_LIMIT", "Journal", "settle"]

_DAY_NS = 86_400_000_000_000

LINE_LIMIT = 1 << 20
"""The longest journal line read back (lines name ids and agents, never a body)."""
DAY_LIMIT = 1 << 30
"""How much of one day's journal is read at most; the rest of a larger day is not."""

DELAY = 0.010
"""Seconds a line may wait to be written with the lines after it. A transition costs
30-100 µs, so a burst puts a hundred lines or more in one write (the write's 3-5 µs
spread thin); 10 ms is far below what a person or ``tail -f`` (0.2 s) can see, and
bounds what a crash takes from the record."""
GROUP_LIMIT = 64 << 10
"""The most bytes one write carries, and held at once (a longer line goes alone): it
bounds the memory held and what a crash can take, and keeps a write far under the bounds
readers stream with (:data:`LINE_LIMIT`)."""
IDLE = 1.0
"""Seconds the flusher thread waits for another burst before it ends."""

FLUSHER_NAME = "agentmailbox-journal"
"""The flusher thread's name."""


class Journal:
    """Appends events to, and reads them back from, one root's journal."""

    def __init__(self, directory: Path, disk: Disk) -> None:
        self.directory = directory
        self._disk = disk
        self._fd: int | None = None
        self._day = -1
        self._held: _Lines | None = None
        _JOURNALS.add(self)

    def record(self, event: str, **fields: Any) -> None:
        """Append one event; best effort (a full disk must not fail the transition itself).

        Written at once, or with the lines after it within :data:`DELAY` (module
        docstring); between :meth:`hold` and :meth:`flush` (a batch) kept until the
        flush."""
        self.record_fields(event, fields)

    def record_fields(self, event: str, fields: dict[str, Any]) -> None:
        """:meth:`record` of fields in a dict (one the caller built: no keyword
        arguments to pack, as on the send path, which records every message)."""
        now = time.time_ns()
        entry = {"t": now, "ev": event, "pid": pid(), **fields}
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        held = self._held
        if held is not None:
            held.add(self, now // _DAY_NS, line)
            return
        _PENDING.add(self, now // _DAY_NS, line)

    def hold(self) -> None:
        """Keep the lines recorded from now on until :meth:`flush` (``Mailbox.batch()``):
        written together at the batch's end; a crash inside it loses them (detail, never
        mail)."""
        if self._held is None:
            self._held = _Lines()

    def flush(self) -> None:
        """Write the lines held since :meth:`hold` now (after what this process held
        before them), and stop holding."""
        held, self._held = self._held, None
        if held is not None and held.size:
            _PENDING.write_now(held)

    def append(self, day: int, lines: bytes | bytearray) -> None:
        """Write whole lines to the file of ``day`` (days since the epoch) with one
        append; best effort. Called with the process's journal lock held."""
        try:
            os.write(self._open(day), lines)
        except (OSError, MailboxError):
            pass

    def _open(self, day: int) -> int:
        if self._fd is not None and day == self._day:
            return self._fd
        self._close()
        name = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        self._fd = self._disk.open_append(self.directory / layout.log_file(name))
        self._day = day
        return self._fd

    def close(self) -> None:
        """Write every line this process holds, then close the day file."""
        with _PENDING.lock:
            _PENDING.write_all()
            self._close()

    def _close(self) -> None:
        with_fd, self._fd = self._fd, None
        if with_fd is not None:
            os.close(with_fd)

    def forget_held(self) -> None:
        """Drop the lines of a batch a parent process began (after a fork)."""
        if self._held is not None:
            self._held = _Lines()

    def days(self) -> list[str]:
        """Journal days present, oldest first."""
        _PENDING.flush()
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

        Every line this process recorded is written first. None stands for a line that
        is not an event of the documented shape (torn, over-long, planted): a JSON
        object with an int ``t`` and a text ``ev``, whose fields hold what their names
        say (a send names a valid ``id`` and a ``to`` list). A line still being written
        is not returned yet. Reading is bounded (see :data:`LINE_LIMIT`,
        :data:`DAY_LIMIT`); a missing day, or one that is not a regular file (a link, a
        FIFO...), is empty.
        """
        _PENDING.flush()
        path = self.directory / layout.log_file(day)
        try:
            for end, line in self._disk.read_lines(path, line_limit=LINE_LIMIT,
                                                   limit=DAY_LIMIT, start=start):
                yield end, _entry(line)
        except (FileNotFoundError, MailboxError, Foreign):
            return


class _Pending:
    """The lines this process recorded and has not written, across all its journals, in
    record order; and the flusher thread that writes them :data:`DELAY` after the first.

    One lock guards the lines and every journal write of the process, so the
    lines of one root leave in the order they were recorded, whichever object wrote them.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)  # ``with self.lock``: no Python frames
        self.lines = _Lines()
        self.due = 0.0
        self.last_write = -DELAY
        self.flusher: threading.Thread | None = None
        self.clock: Callable[[], float] = time.monotonic

    def add(self, journal: Journal, day: int, line: bytes) -> None:
        """Write ``line`` at once if nothing was written for :data:`DELAY`, else hold it."""
        with self.lock:
            lines = self.lines
            if lines.size:  # a burst: the flusher knows (and needs no clock reading)
                lines.add(journal, day, line)
                if lines.size >= GROUP_LIMIT:
                    self.write_all()
                return
            tick = self.clock()
            if tick - self.last_write >= DELAY:
                self.last_write = tick
                journal.append(day, line)
            else:
                lines.add(journal, day, line)
                self.due = tick + DELAY
                self._wake()

    def write_now(self, held: _Lines) -> None:
        """Write what is held, then ``held`` (a batch's lines), without waiting."""
        with self.lock:
            for journal, day, run in held.runs:
                self.lines.add(journal, day, run)
            self.write_all()

    def flush(self) -> None:
        """Write every held line now (before a read; at exit)."""
        with self.lock:
            self.write_all()

    def write_all(self) -> None:
        """Write every held line (the lock is held)."""
        if not self.lines.size:
            return
        lines, self.lines = self.lines, _Lines()
        self.last_write = self.clock()
        for journal, day, run in lines.runs:
            journal.append(day, run)

    def _wake(self) -> None:
        if self.flusher is not None:
            self.cond.notify()
            return
        self.flusher = threading.Thread(target=self._run, name=FLUSHER_NAME, daemon=True)
        try:
            self.flusher.start()
        except RuntimeError:  # no new thread at interpreter shutdown: write at once
            self.flusher = None
            self.write_all()

    def _run(self) -> None:
        """Write each burst :data:`DELAY` after its first line; end after :data:`IDLE`
        without one, or when :meth:`stop` says so."""
        me = threading.current_thread()
        with self.lock:
            while self.flusher is me:
                if not self.lines.size:
                    if not self.cond.wait(IDLE) and not self.lines.size:
                        self.flusher = None
                    continue
                left = self.due - self.clock()
                if left > 0:
                    self.cond.wait(left)
                else:
                    self.write_all()

    def stop(self) -> None:
        """Write every held line and end the flusher thread (it starts again when needed);
        the next line is written at once, as in a process that just started."""
        with self.lock:
            self.write_all()
            self.last_write = -DELAY
            thread, self.flusher = self.flusher, None
            self.cond.notify_all()
        if thread is not None:
            thread.join()

    def forget(self) -> None:
        """In a forked child: the parent writes what it held; a new lock, no flusher."""
        self._reset()
        for journal in list(_JOURNALS):
            journal.forget_held()


class _Lines:
    """Whole lines in record order, joined into runs bound for one day file of one
    folder, each at most :data:`GROUP_LIMIT` bytes (a longer line alone): one write each.

    Lines are copied into the run (a ``bytearray``): keeping ``orjson``'s own ``bytes``
    alive makes each later ``dumps`` several times slower."""

    __slots__ = ("runs", "size")

    def __init__(self) -> None:
        self.runs: list[tuple[Journal, int, bytearray]] = []
        self.size = 0

    def add(self, journal: Journal, day: int, lines: bytes | bytearray) -> None:
        self.size += len(lines)
        if self.runs:
            last, last_day, run = self.runs[-1]
            if (last_day == day and len(run) + len(lines) <= GROUP_LIMIT
                    and (last is journal or last.directory == journal.directory)):
                run += lines
                return
        self.runs.append((journal, day, bytearray(lines)))


def settle() -> None:
    """Write every line this process holds and end the flusher thread, if one runs (for
    a test's end: the next line is written at once, the next burst starts a new one)."""
    _PENDING.stop()


_JOURNALS: weakref.WeakSet[Journal] = weakref.WeakSet()
_PENDING = _Pending()
atexit.register(_PENDING.flush)
os.register_at_fork(after_in_child=_PENDING.forget)


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
