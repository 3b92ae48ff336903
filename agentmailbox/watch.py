"""Wake-ups for directories of mail: watchdog events are hints, scans are the truth.

The consumer loop is always::

    with Watcher(inbox.new) as watcher:      # watching starts before the first scan
        while running:
            scan and handle what is there
            watcher.wait()                     # an event, an overflow, or the rescan timer

An event handler only sets a flag. Events can be lost (inotify overflow, a dead
watchdog thread), so a wait never lasts longer than the rescan interval, an
overflow wakes every watcher at once, and a dead observer is replaced. Nothing here
decides what mail exists: the directories do. (watchdog announces an overflow only
by a WARNING on ``watchdog.observers.inotify_c``; an application that silences that
logger leaves the periodic rescan as the only net.)

Claims rename ``new/X`` to ``cur/X``, out of the watched folder. watchdog holds
every "moved from" event for up to 0.5 s while it looks for the matching "moved to"
(``inotify_move_event_grouper``), and every event queued behind it waits too. So the
watch asks the kernel for arrivals only (``IN_CREATE | IN_MOVED_TO``): no "moved from"
event is ever read, nothing waits, and wake-ups stay in the millisecond range.

One inbox's own loops (``Inbox.wait()``, ``Inbox.watch()``, ``claim_next()``) wait on a
:class:`Doorbell` instead: one inotify descriptor read on the waiting thread, kept by the
inbox between calls, with the same rules (armed before the scan, the rescan interval as
the net) and no thread between a delivery and the reader. :class:`Watcher` serves what
watches many folders (the supervisor, ``tail``, ``watch --exec``).

When the kernel refuses an inotify instance or watch (``max_user_instances`` or
``max_user_watches`` used up), the watcher runs on its periodic rescan alone and says
so once in the log: slower wake-ups, nothing missed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from watchdog.events import (
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
from watchdog.observers.inotify_c import InotifyConstants

from . import names
from .errors import MailboxError, MessageNotFound, from_oserror
from .fs import Disk, libc_function, pid
from .presence import Presence

if TYPE_CHECKING:
    from .inbox import Inbox
    from .message import Message
    from .root import Root

__all__ = ["RESCAN_SECONDS", "Doorbell", "Watcher", "arrivals", "has_mail", "wait_for_mail",
           "watch_inbox"]

RESCAN_SECONDS = 2.0
"""Longest wait between two scans, whatever the events say."""

STOP_CHECK_SECONDS = 0.1
"""How often an idle loop looks at a caller's stop event."""


log = logging.getLogger(__name__)

# watchdog reports a kernel queue overflow only as a log record on this logger
# (gorakhargosh/watchdog#654): no event reaches any handler.
_INOTIFY_LOG = logging.getLogger("watchdog.observers.inotify_c")


class _QuietShutdown(logging.Filter):
    """Drops watchdog's ERROR about an emitter read racing its own stop.

    Stopping an observer while its emitter is between two reads logs "queue_events()
    called when the thread is inactive" (watchdog 7.1, observers/inotify.py); nothing
    is wrong and nothing is lost, but a loop calling ``Inbox.wait()`` would print it
    to stderr again and again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in str(record.msg)


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietShutdown())


class _Nudge(FileSystemEventHandler):
    """Runs on watchdog's dispatcher thread: note the directory, set the flag, nothing else.

    A handler that raises kills the dispatcher for good (gorakhargosh/watchdog#427),
    so this one does as little as possible.
    """

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = event.dest_path or event.src_path
        self._watcher.mark(os.path.dirname(os.fsdecode(path)))


class _ArrivalsEmitter(InotifyEmitter):
    """An inotify emitter that asks the kernel for arrivals only: no ``IN_MOVED_FROM``.

    watchdog narrows the kernel mask from ``event_filter`` but always adds both move
    halves for created or moved events (``get_event_mask_from_filter``); a "moved from"
    then stalls every later event for the 0.5 s pairing window. An unpaired
    ``IN_MOVED_TO`` is reported as a created file, which is all a watcher needs.
    """

    def get_event_mask_from_filter(self) -> int:  # type: ignore[override]
        return (InotifyConstants.IN_CREATE | InotifyConstants.IN_MOVED_TO
                | InotifyConstants.IN_DELETE_SELF)


class _ArrivalsObserver(InotifyObserver):
    """watchdog's inotify observer with :class:`_ArrivalsEmitter` for each watch."""

    def __init__(self) -> None:
        super().__init__()
        self._emitter_class = _ArrivalsEmitter


# errno of an inotify limit: instances (EMFILE) or watches (ENOSPC) used up.
_INOTIFY_LIMITS = (errno.EMFILE, errno.ENOSPC, errno.ENFILE)


class _OverflowAlarm(logging.Handler):
    """Turns watchdog's "Inotify queue overflowed" warning into a full rescan."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(logging.WARNING)
        self._watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in str(record.msg).lower():
            self._watcher.overflowed()


class Watcher:
    """Wakes a consumer when files may have appeared in some directories.

    Watches each directory (non-recursively; give ``new/``, never ``tmp/``) for
    created and moved-in files. Use as a context manager; ``wait`` is the only
    blocking call. One instance can watch several directories; ``due`` says which
    ones to scan.

    Args:
        *directories: The directories to watch; they must exist.
        rescan_interval: The longest ``wait()`` without an argument blocks.
    """

    def __init__(self, *directories: Path | str, rescan_interval: float = RESCAN_SECONDS) -> None:
        self.directories = tuple(Path(d) for d in directories)
        self.rescan_interval = rescan_interval
        self.restarts = 0
        """How many times a dead observer was replaced."""
        self.overflows = 0
        """How many inotify overflows woke this watcher."""
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._everything = False
        self._alarm = _OverflowAlarm(self)
        self._observer: BaseObserver | None = None
        self._started = False
        self.polling = False
        """True when the kernel gave no inotify watch: scans on the timer only."""

    def __repr__(self) -> str:
        return f"<Watcher {', '.join(map(str, self.directories))}>"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Watcher:
        """Start watching; scan only after this returns, so nothing slips between."""
        if not self._started:
            self._started = True
            if _INOTIFY_LOG.level == logging.NOTSET:
                # The overflow alarm must hear watchdog's WARNING even when the
                # application logs at ERROR (its handlers still decide what is shown).
                _INOTIFY_LOG.setLevel(logging.WARNING)
            _INOTIFY_LOG.addHandler(self._alarm)
            try:
                self._observer = self._start_observer()
            except BaseException:
                _INOTIFY_LOG.removeHandler(self._alarm)
                raise
        return self

    def stop(self) -> None:
        """Stop watching and join watchdog's threads."""
        _INOTIFY_LOG.removeHandler(self._alarm)
        self._started = False
        observer, self._observer = self._observer, None
        if observer is not None:
            _halt(observer)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def observer(self) -> BaseObserver | None:
        """The current watchdog observer (it is replaced if it dies)."""
        return self._observer

    def _start_observer(self) -> BaseObserver | None:
        """A running observer, or None when the kernel's inotify limits are used up
        (the watcher then wakes on its rescan timer alone)."""
        try:
            observer = _ArrivalsObserver()
        except OSError as exc:
            self._no_inotify(exc)
            return None
        nudge = _Nudge(self)
        try:
            for directory in self.directories:
                observer.schedule(nudge, str(directory), recursive=False,
                                  event_filter=[FileCreatedEvent, FileMovedEvent])
            observer.start()
        except OSError as exc:
            _halt(observer)  # a failed start can leave watchdog's inotify reader running
            if exc.errno in _INOTIFY_LIMITS:
                self._no_inotify(exc)
                return None
            raise from_oserror(exc, "watch", str(exc.filename or self.directories[0])) from exc
        return observer

    def _no_inotify(self, exc: OSError) -> None:
        if exc.errno not in _INOTIFY_LIMITS:
            raise from_oserror(exc, "watch", str(self.directories[0])) from exc
        self.polling = True
        log.warning("inotify unavailable (%s); %s wakes every %.1f s on its rescan alone",
                    os.strerror(exc.errno or 0), self, self.rescan_interval)
        return None

    # -- wake-ups -----------------------------------------------------------------------------

    def mark(self, directory: str) -> None:
        """Something appeared in ``directory``: wake the consumer (thread-safe)."""
        with self._lock:
            self._dirty.add(directory)
        self._flag.set()

    def wake(self) -> None:
        """Wake the consumer for a full rescan (thread-safe; e.g. a child process ended)."""
        with self._lock:
            self._everything = True
        self._flag.set()

    def overflowed(self) -> None:
        """The kernel dropped events: every directory must be scanned again."""
        self.overflows += 1
        log.warning("inotify queue overflowed; rescanning %s", self)
        self.wake()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until something may have arrived, or ``timeout`` seconds pass.

        Replaces a dead observer first (that counts as a wake-up: events were lost).

        Args:
            timeout: Seconds; None means the rescan interval.

        Returns:
            True if woken (an event, an overflow, a replaced observer), False on timeout.
            Scan after either.
        """
        self._ensure_alive()
        woke = self._flag.wait(self.rescan_interval if timeout is None else max(timeout, 0.0))
        self._flag.clear()
        if not woke:
            with self._lock:
                self._everything = True
        return woke

    def due(self) -> tuple[Path, ...]:
        """The directories to scan now (all of them after a timeout or an overflow); clears."""
        with self._lock:
            dirty, everything = self._dirty, self._everything
            self._dirty, self._everything = set(), False
        if everything:
            return self.directories
        return tuple(d for d in self.directories if str(d) in dirty)

    def _ensure_alive(self) -> None:
        observer = self._observer
        if observer is None or _healthy(observer):
            return  # None: no inotify (polling), or not started
        log.warning("watch thread died; replacing the observer of %s", self)
        _halt(observer)
        self._observer = self._start_observer()
        self.restarts += 1
        self.wake()


def _healthy(observer: BaseObserver) -> bool:
    return observer.is_alive() and all(e.is_alive() for e in list(observer.emitters))


def _halt(observer: BaseObserver) -> None:
    observer.stop()
    if observer.ident is not None:
        observer.join()


# -- waiting for and consuming one inbox ---------------------------------------------------------

def has_mail(directory: Path, disk: Disk | None = None) -> bool:
    """True if ``directory`` holds at least one message file (stops at the first)."""
    return any(names.is_message_file(e.name) for e in (disk or Disk()).scan(directory))


def wait_for_mail(directory: Path, timeout: float | None,
                  rescan_interval: float = RESCAN_SECONDS, disk: Disk | None = None,
                  bell: Doorbell | None = None) -> bool:
    """Block until ``directory`` holds a message file; see :meth:`Inbox.wait`.

    One wait needs no watchdog observer: its threads cost milliseconds to start and to
    stop, paid on every call after the wake-up. A :class:`Doorbell` (one inotify
    descriptor, read on this thread) keeps the same rules: the watch is on before the
    scan, and every wake-up (or rescan interval) scans again. Give the caller's own
    ``bell`` to keep it between waits (closing an inotify descriptor waits for the
    kernel's grace period, ~10 ms here); without one, a bell is made for this call.
    """
    if bell is not None and bell.take():
        try:
            # A bell kept open since an earlier wait is armed already: the scan after
            # its clear() is the only one needed (the first wait scans before opening).
            if not bell.is_open() and has_mail(directory, disk):
                return True
            if timeout is not None and timeout <= 0:
                return has_mail(directory, disk)
            return _wait_with(bell, directory, timeout, rescan_interval, disk)
        finally:
            bell.give_back()
    if has_mail(directory, disk):
        return True
    if timeout is not None and timeout <= 0:
        return False
    with Doorbell(directory, rescan_interval) as own:
        return _wait_with(own, directory, timeout, rescan_interval, disk)


def _wait_with(bell: Doorbell, directory: Path, timeout: float | None,
               rescan_interval: float, disk: Disk | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    bell.open()
    bell.clear()  # what rang before the next scan is seen by that scan
    while not has_mail(directory, disk):
        left = _left(deadline)
        if left is not None and left <= 0:
            return False
        bell.wait(soonest(left, rescan_interval))
    return True


class Doorbell:
    """Rings when files are created in or moved into one directory: an inotify descriptor
    of its own, read on the waiting thread (no watchdog thread to start or join).

    Asks for arrivals only (``IN_CREATE | IN_MOVED_TO``) and never follows a link; when
    the kernel refuses an instance or a watch, it waits out the rescan interval instead,
    as :class:`Watcher` does. An overflow is readable like any event: it rings too. One
    thread waits on it at a time (:meth:`take`); the descriptor is closed by
    :meth:`close`, or when the bell is collected.
    """

    # <sys/inotify.h>, spelled here so that a wait never imports watchdog's inotify module
    _IN_MOVED_TO, _IN_CREATE, _IN_ONLYDIR, _IN_DONT_FOLLOW = 0x80, 0x100, 0x01000000, 0x02000000
    _MASK = _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR | _IN_DONT_FOLLOW
    _FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # IN_NONBLOCK, IN_CLOEXEC
    _READ_SIZE = 65536
    _EVENT_MAX = 16 + 255 + 1  # struct inotify_event, NAME_MAX, the name's NUL

    def __init__(self, directory: Path, rescan_interval: float = RESCAN_SECONDS) -> None:
        self.directory = directory
        self.rescan_interval = rescan_interval
        self.fd = -1
        self._pid = 0
        self._refused = False
        self._closer: weakref.finalize[[int], Doorbell] | None = None
        self._poller: select.poll | None = None
        self._busy = threading.Lock()

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self) -> bool:
        """Claim the bell for one wait; False if another thread is waiting on it."""
        return self._busy.acquire(blocking=False)

    def give_back(self) -> None:
        self._busy.release()

    def is_open(self) -> bool:
        """Whether this process watches already (a forked child must open its own)."""
        return self._pid == pid() and self.fd >= 0

    def open(self) -> None:
        """Watch from now on (again after a fork: a child must not read its parent's)."""
        if self.is_open():
            return
        self.close()
        self._pid = pid()
        init, add = libc_function("inotify_init1"), libc_function("inotify_add_watch")
        fd = -1 if init is None else init(self._FLAGS)
        if fd >= 0 and add(fd, os.fsencode(self.directory), self._MASK) < 0:
            os.close(fd)
            fd = -1
        if fd < 0:
            self._refuse()
            return
        self.fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        self._poller = select.poll()  # not select(): a descriptor past 1023 is out of its range
        self._poller.register(fd, select.POLLIN)

    def _refuse(self) -> None:
        import ctypes  # loaded already, by libc_function

        code = ctypes.get_errno() or errno.ENOSYS
        exc = OSError(code, os.strerror(code), str(self.directory))
        if code not in (*_INOTIFY_LIMITS, errno.ENOSYS):
            raise from_oserror(exc, "watch", str(self.directory)) from exc
        if self._refused:
            return  # said once
        self._refused = True
        log.warning("inotify unavailable (%s); waiting on %s wakes every %.1f s on its "
                    "rescan alone", os.strerror(code), self.directory, self.rescan_interval)

    def clear(self) -> None:
        """Forget what rang so far (without waiting).

        A read returns every queued event that fits: one that leaves room for another
        event emptied the queue, so a wake-up costs one read, not a second that fails.
        """
        if self.fd >= 0:
            with contextlib.suppress(BlockingIOError):
                while len(os.read(self.fd, self._READ_SIZE)) > self._READ_SIZE - self._EVENT_MAX:
                    pass

    def wait(self, timeout: float | None) -> None:
        """Until the bell rings or ``timeout`` passes (None: the rescan interval)."""
        timeout = self.rescan_interval if timeout is None else max(timeout, 0.0)
        if self._poller is None or self.fd < 0:
            time.sleep(timeout)
            return
        if self._poller.poll(math.ceil(timeout * 1000)):
            self.clear()

    def close(self) -> None:
        """Close the descriptor (the next wait opens another)."""
        closer, self._closer, self.fd, self._pid = self._closer, None, -1, 0
        self._poller = None
        if closer is not None:
            closer()


def watch_inbox(inbox: Inbox, root: Root, *, stop: threading.Event | None = None,
                timeout: float | None = None, heartbeat: bool = True,
                rescan_interval: float = RESCAN_SECONDS,
                bell: Doorbell | None = None) -> Iterator[Message]:
    """Claim and yield messages as they arrive; see :meth:`Inbox.watch`.

    Waits on a :class:`Doorbell` read on this thread (``bell`` if it is free, the
    inbox's own kept between calls, else one of this loop's): a delivery wakes the loop
    with no watchdog thread in between. The bell is armed before every scan, so an
    arrival after a scan rings the next wait; a claim that finds nothing is the truth.
    """
    if bell is not None and bell.take():
        try:
            yield from _watch_with(bell, inbox, root, stop, timeout, heartbeat, rescan_interval)
        finally:
            bell.give_back()
        return
    with Doorbell(inbox.new, rescan_interval) as own:
        yield from _watch_with(own, inbox, root, stop, timeout, heartbeat, rescan_interval)


def _watch_with(bell: Doorbell, inbox: Inbox, root: Root, stop: threading.Event | None,
                timeout: float | None, heartbeat: bool, rescan_interval: float
                ) -> Iterator[Message]:
    pulse = Pulse(root, inbox.agent) if heartbeat else None
    bell.open()
    idle_since = time.monotonic()
    while not (stop is not None and stop.is_set()):
        if pulse is not None:
            pulse.beat_if_due()
        msg = inbox.claim()
        if msg is not None:
            yield msg
            idle_since = time.monotonic()
            continue
        left = None if timeout is None else idle_since + timeout - time.monotonic()
        if left is not None and left <= 0:
            return
        bell.wait(soonest(left, rescan_interval, pulse.due_in() if pulse else None,
                          STOP_CHECK_SECONDS if stop is not None else None))


def arrivals(inbox: Inbox, *, once: bool = False, timeout: float | None = None,
             stop: threading.Event | None = None,
             rescan_interval: float = RESCAN_SECONDS) -> Iterator[Message]:
    """Yield each unread message once as it arrives, *without* claiming it.

    A tail of ``new/`` for people and scripts that only look. It remembers the ids it
    showed that are still unread, so a released message is shown again.

    Args:
        inbox: The inbox to look at.
        once: Yield what is unread now, then stop.
        timeout: Stop after this many seconds without a new message.
        stop: Stop once set.
    """
    shown: set[str] = set()
    with Watcher(inbox.new, rescan_interval=rescan_interval) as watcher:
        idle_since = time.monotonic()
        while not (stop is not None and stop.is_set()):
            ids = inbox.ids()
            fresh = [i for i in ids if i not in shown]
            for msg_id in fresh:
                msg = _peek(inbox, msg_id)
                if msg is not None:
                    yield msg
            shown = set(ids)
            if fresh:
                idle_since = time.monotonic()
            left = None if timeout is None else idle_since + timeout - time.monotonic()
            if once or (left is not None and left <= 0):
                return
            watcher.wait(soonest(left, rescan_interval,
                                   STOP_CHECK_SECONDS if stop is not None else None))


def _peek(inbox: Inbox, msg_id: str) -> Message | None:
    try:
        return inbox.get(msg_id)
    except MessageNotFound:
        return None


class Pulse:
    """Heartbeats from a consumer loop: three per ``heartbeat_seconds`` (``beat_if_due``)."""

    def __init__(self, root: Root, agent: str) -> None:
        self._presence = Presence(root)
        self._agent = agent
        self._period = root.config.heartbeat_seconds / 3
        self._next = 0.0

    def due_in(self) -> float:
        return max(self._next - time.monotonic(), 0.0)

    def beat_if_due(self, capacity: float | None = None) -> None:
        """Beat if one is due; a failed beat (full disk...) is logged, never fatal to the loop."""
        if time.monotonic() >= self._next:
            try:
                self._presence.beat(self._agent, capacity=capacity)
            except MailboxError as exc:
                log.warning("heartbeat failed", extra={"agent": self._agent, "error": str(exc)})
            self._next = time.monotonic() + self._period


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def soonest(*timeouts: float | None) -> float | None:
    """The shortest of the given waits (None: no limit), never negative."""
    given = [t for t in timeouts if t is not None]
    return max(min(given), 0.0) if given else None
