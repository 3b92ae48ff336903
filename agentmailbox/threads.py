"""Thread DONE markers: an explicit, shared "this conversation is finished".

``threads/<thread>.done.json`` (``<thread>`` a thread name: names.check_thread) is
created exclusively, once, by whoever closes the thread. Mail that arrives in a done
thread is flagged, never hidden, and sending into one warns: the defence against
completion blindness (redoing finished work).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import names
from .errors import InvalidInput
from .fs import Disk, dump_object
from .message import day_of, iso
from .root import Root

__all__ = ["ThreadDone", "Threads"]


@dataclass(frozen=True, slots=True)
class ThreadDone:
    """Who closed a thread, when, and why."""

    thread: str
    by: str | None
    at: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"thread": self.thread, "by": self.by, "at": self.at, "note": self.note}


class Threads:
    """The thread markers of one root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._paths = root.paths
        self.directory = self._paths.threads
        self._cache: dict[str, ThreadDone | None] = {}

    def mark_done(self, thread: str, by: str | None = None, note: str = ""
                  ) -> tuple[ThreadDone, bool]:
        """Close ``thread``; returns the marker and whether this call created it.

        Raises:
            InvalidInput: ``thread`` is not a thread name (the rule ``send`` applies).
        """
        names.check_thread(thread)
        if by is not None:
            names.check_agent(by)
        marker = ThreadDone(thread, by, iso(time.time_ns()), note)
        data = dump_object(marker.to_dict(), "thread marker")
        try:
            _check_marker(marker.to_dict(), thread, len(data))
        except ValueError as exc:
            raise InvalidInput(f"thread marker of {thread} not written: {exc}",
                               hint="give a note of text, under 64 KiB") from exc
        disk = self._root.disk
        disk.ensure_dir(self.directory)
        staged = disk.stage(self.directory, data)
        created = disk.place(staged, str(self.marker_path(thread)))
        if created:
            disk.fsync_dir(self.directory)
            self._root.journal.record("thread.done", thread=thread, agent=by, note=note[:200])
            return marker, True
        existing = self.done(thread)
        return existing or marker, False

    def done(self, thread: str) -> ThreadDone | None:
        """The marker of ``thread`` if it is done (one ``stat`` when it is not).

        Raises:
            InvalidInput: the marker exists but is not a readable marker (doctor rebuilds it).
        """
        if not names.is_thread(thread):
            return None  # a thread an older writer named freely ("Release 42"): no marker can exist
        if thread in self._cache:
            return self._cache[thread]
        path = self.marker_path(thread)
        try:
            found = load_marker(path, thread, self._root.disk)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise InvalidInput(f"thread marker {path} is unreadable: {exc}",
                               hint="run: mailbox doctor --repair (it keeps the thread done)",
                               path=str(path)) from exc
        self._cache[thread] = found  # a done marker never goes away
        return found

    def marker_path(self, thread: str) -> Path:
        return self._paths.thread_marker(names.check_thread(thread))

    def sent_in(self, thread: str) -> list[dict[str, Any]]:
        """The send events of ``thread``, oldest first, from the journal (from the day of its
        first message when the thread is named by an id, else all of it)."""
        since = day_of(thread) if names.is_id(names.check_thread(thread)) else ""
        return [e for e in self._root.journal.events(since_day=since)
                if e.get("ev") == "send" and (e.get("thread") == thread or e.get("id") == thread)]


_MARKER_LIMIT = 1 << 16


def load_marker(path: Path, thread: str, disk: Disk | None = None) -> ThreadDone:
    """Read the marker of ``thread`` at ``path`` (never following a link).

    Raises:
        FileNotFoundError: there is none (the thread is not done).
        ValueError: the file is not a marker of ``thread``; says why.
    """
    return _check_marker((disk or Disk()).read_object(path, _MARKER_LIMIT), thread)


def _check_marker(obj: dict[str, Any], thread: str, size: int = 0) -> ThreadDone:
    """The marker ``obj`` holds, as the reader takes it: one check for the reader and for
    the writer, which passes the ``size`` it would write (the reader's read is bounded).

    Raises:
        ValueError: it is not a marker of ``thread``; says why.
    """
    if size > _MARKER_LIMIT:
        raise ValueError(f"{size} bytes, over the {_MARKER_LIMIT}-byte limit")
    if obj.get("thread", thread) != thread:
        raise ValueError(f"names another thread ({str(obj['thread'])[:40]!r})")
    by, at, note = obj.get("by"), obj.get("at"), obj.get("note", "")
    if by is not None:
        try:
            names.check_agent(by)
        except InvalidInput as exc:
            raise ValueError(f"'by' is neither an agent name nor null: {exc}") from exc
    if not isinstance(at, str):
        raise ValueError("'at' is not a time")
    if not isinstance(note, str):
        raise ValueError("'note' is not text")
    return ThreadDone(thread, by, at, note)
