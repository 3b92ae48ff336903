"""The supervisor loop: one per root, a pass over the spool, then wait for mail or a timer.

A pass recovers what a killed supervisor left in ``spool/cur``, releases held mail
whose turn has come, routes what waits in ``spool/new``, retries deferred mail whose
backoff is over, and every ``sweep_seconds`` sweeps the inboxes. One bad message
never stops a pass: what is not a message is buried, any other failure keeps the
message in the spool, retried until the give-up bound. A full disk ends the pass
and pauses routing (the mail stays in the spool).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backoff import Backoff
from ..errors import DiskFull, MailboxError
from ..fs import Foreign
from ..mailbox import Mailbox
from ..root import Root
from ..routing import Directory
from ..watch import RESCAN_SECONDS, Watcher
from . import lock
from .gate import HeldMail
from .notices import Notices
from .outcome import Pass
from .picker import Picker
from .progress import Ledger
from .router import Router
from .settle import Settler
from .sweep import Sweeper

if TYPE_CHECKING:  # imported by locks.acquire when the lock is taken
    import portalocker

__all__ = ["Supervisor"]

SIGNAL_CHECK_SECONDS = 0.25
"""Longest the loop waits before looking at the flag a signal handler may have set."""
MIN_RETRY_SECONDS = 0.05
"""Shortest delay before deferred mail is retried by the loop."""

# The library logs through stdlib logging (silent until configured); ``mailbox
# supervise`` renders these records, with their ``extra`` fields, as JSON lines.
log = logging.getLogger("agentmailbox.supervisor")


class Supervisor:
    """The routing daemon of one root. ``run()`` until ``stop()``; ``run_once()`` in tests.

    Example::

        sup = Supervisor("/srv/team/.mailbox")
        threading.Thread(target=sup.run).start()
        ...
        sup.stop()            # thread-safe; run() returns after the current pass

    Args:
        root: A :class:`Mailbox`, or the path of a root. The supervisor opens its own
            handle on it (sharing the clock), so it can run in a thread beside yours.
        rescan_seconds: Longest time between two passes when no watcher event comes
            (the safety net for events the watcher lost).
        sweep_seconds: How often inboxes are swept for expired mail and leases.
        backoff: First and longest delay between retries of deferred mail.
        give_up: Failed attempts, and seconds since the first of them, after which a
            recipient whose inbox cannot be written is undeliverable (both must be
            reached); the same bound ends the retries of a message that cannot be
            routed at all.
        clock: Monotonic seconds (tests pass a fake one to drive the rate limit).
    """

    DISK_FULL_PAUSE = 5.0
    """Seconds routing pauses after the disk filled up (the mail stays in the spool)."""

    def __init__(self, root: Mailbox | str | Any, *, rescan_seconds: float = RESCAN_SECONDS,
                 sweep_seconds: float = 5.0, backoff: tuple[float, float] = (0.5, 30.0),
                 give_up: tuple[int, float] = (10, 300.0),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mb = _own_mailbox(root)
        self.spool = self.mb.spool
        self.rescan_seconds = rescan_seconds
        self.sweep_seconds = sweep_seconds
        self.backoff = backoff
        self.give_up = give_up
        self._clock = clock
        self._stop = threading.Event()
        self._watcher: Watcher | None = None
        self._stop_requested = False  # set by signal handlers: a plain flag, nothing else
        self._lock: portalocker.Lock | None = None
        # Deferred file names: 0.5 s, 1 s, 2 s ... up to the longest backoff between tries.
        self._retry = Backoff(*backoff, shortest=MIN_RETRY_SECONDS, clock=clock)
        self._ledger = Ledger(self.mb, give_up)
        notices = Notices(self.mb)
        self._held = HeldMail(self.mb, notices, clock)
        self._settler = Settler(self.mb, notices, self._ledger, self._retry)
        self._router = Router(self.mb, self._held, self._ledger, self._settler,
                              Picker(self.mb))
        self._sweeper = Sweeper(self.mb)
        self._last_sweep = float("-inf")
        self._paused_until = float("-inf")
        self._last_pass = float("-inf")
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current pass (from any thread)."""
        self._stop.set()
        watcher = self._watcher
        if watcher is not None:
            watcher.wake()

    def request_stop(self) -> None:
        """Like :meth:`stop`, safe inside a signal handler (only sets a flag)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested or self._stop.is_set()

    def run(self) -> None:
        """Route until stopped: pass, wait for spool mail (or a timer), pass again.

        Raises:
            LockTimeout: another supervisor holds this root.
        """
        try:
            self._acquire()
        except BaseException:
            self.close()
            raise
        log.info("supervisor started", extra={"root": str(self.mb.path)})
        try:
            with Watcher(self.spool.new, rescan_interval=self.rescan_seconds) as watcher:
                self._watcher = watcher
                self._loop(watcher)
        finally:
            self._watcher = None
            log.info("supervisor stopped")
            self.close()

    def _loop(self, watcher: Watcher) -> None:
        """Pass; wait for spool mail, a timer or the rescan interval; pass again.

        The watch starts before the first pass, so mail posted meanwhile wakes the
        next wait. Waits are cut into :data:`SIGNAL_CHECK_SECONDS` slices because a
        signal handler only sets a flag.
        """
        work = True
        while not self.stopping:
            now = self._clock()
            if now < self._paused_until:
                self._stop.wait(min(self._paused_until - now, SIGNAL_CHECK_SECONDS))
                continue
            if work:
                self._loop_pass()
                self._last_pass = self._clock()
            left = self._next_due() - self._clock()
            woke = watcher.wait(max(0.0, min(left, SIGNAL_CHECK_SECONDS)))
            work = woke or self._clock() >= self._next_due()

    def _loop_pass(self) -> None:
        try:
            self._pass(sweep=self._clock() - self._last_sweep >= self.sweep_seconds,
                       retry_all=False)
        except DiskFull as exc:
            log.error("disk full: routing paused", extra={"error": str(exc),
                                                          "seconds": self.DISK_FULL_PAUSE})
            self._paused_until = self._clock() + self.DISK_FULL_PAUSE

    def run_once(self) -> Pass:
        """One full pass now: route the spool, retry all deferred mail, sweep inboxes.

        Raises:
            LockTimeout: another supervisor holds this root.
        """
        self._acquire()
        return self._pass(sweep=True, retry_all=True)

    def close(self) -> None:
        """Release the root (the lock file stays: lock files are never deleted)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.mb.close()

    def _acquire(self) -> None:
        if self._lock is not None:
            return
        self._lock = lock.acquire(self.mb)
        self.spool.ensure()

    def _next_due(self) -> float:
        """When the loop must pass again without an event: sweep, retry, release, rescan."""
        due = [self._last_sweep + self.sweep_seconds, self._last_pass + self.rescan_seconds]
        due += [at for at in (self._retry.next_at(), self._held.due(self._last_pass))
                if at is not None]
        return min(due)

    # -- one pass ---------------------------------------------------------------------------------

    @property
    def directory(self) -> Directory:
        """Who is registered and the routing rules, read once per pass."""
        return self._router.directory

    def _pass(self, *, sweep: bool, retry_all: bool) -> Pass:
        report = Pass()
        self._router.new_pass()
        if not self._started:
            self._held.recover()
            self._ledger.start()
            self._started = True
        self._bury_foreign(report)
        cur, new = self.spool.cur, self.spool.new
        for name in self.spool.names(cur):
            self._guarded(report, functools.partial(self._router.recover, name, report),
                          cur / name)
        self._held.release(report, functools.partial(self._route_taken, report))
        for name in self.spool.names(new):
            if self.stopping:
                break
            self._guarded(report, functools.partial(self._router.admit, name, report),
                          cur / name, new / name)
        self._retry_deferred(report, retry_all)
        if sweep:
            self._sweeper.sweep(report, lambda: self.stopping)
            self._last_sweep = self._clock()
        return report

    def _route_taken(self, report: Pass, path: Path) -> None:
        """Route a file out of ``spool/held`` or ``spool/deferred``, guarded."""
        self._guarded(report, functools.partial(self._router.route_file, path, report), path)

    def _guarded(self, report: Pass, work: Callable[[], None], *paths: Path) -> None:
        """Do one message's work; if it fails, the pass goes on with the next one.

        A file that is not a message is buried. Any other failure keeps the message
        in the spool, retried with backoff until the give-up bound. A full disk is
        not the message's fault: it ends the pass (the caller pauses).
        """
        try:
            work()
        except DiskFull:
            raise
        except Foreign as exc:
            for path in paths:
                if self.mb.dead.bury(path, exc.reason, by="supervisor"):
                    report.dead += 1
                    return
        except Exception as exc:  # one bad message must not stop all routing
            log.exception("could not route", extra={"file": paths[0].name})
            try:
                self._settler.route_failed(paths, f"{type(exc).__name__}: {exc}", report)
            except DiskFull:
                raise
            except MailboxError:
                log.exception("could not keep the message for a retry",
                              extra={"file": paths[0].name})

    def _bury_foreign(self, report: Pass) -> None:
        for folder in (self.spool.new, self.spool.cur, self.spool.deferred, self.spool.held,
                       self.spool.progress_dir):
            for path in self.spool.foreign(folder):
                if self.mb.dead.bury(path, f"foreign file name in spool/{folder.name}/"):
                    report.dead += 1

    def _retry_deferred(self, report: Pass, retry_all: bool) -> None:
        waiting = self.spool.names(self.spool.deferred)
        self._retry.keep_only(waiting)
        for name in waiting:
            if self.stopping:
                return
            if retry_all or self._retry.ready(name):
                self._route_taken(report, self.spool.deferred / name)


def _own_mailbox(root: Mailbox | str | Any) -> Mailbox:
    if isinstance(root, Mailbox):
        return Mailbox(Root.load(root.path, fsync=root.root.disk.fsync, clock=root.root.clock))
    return Mailbox.open(root)
