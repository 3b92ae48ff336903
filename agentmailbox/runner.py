"""One shell command per message: ``mailbox watch AGENT --exec CMD``.

Each message is claimed only when a command can start for it; the command gets
the message JSON on stdin. Exit 0 marks the message done, anything else releases
it (the journal and the log say which). A released message is tried again after
a pause that doubles on each failure, so one bad message cannot spin the loop.
If the runner is killed, its claims stay in ``cur/`` and come back to ``new/``
when their lease expires: nothing is lost, at worst a command runs twice. Out of
file descriptors (a tight ``ulimit -n``), it releases the claim it could not start,
logs it and claims nothing for a pause that doubles while it lasts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import layout
from .backoff import Backoff
from .errors import LockTimeout, MailboxError, MessageNotFound
from .watch import RESCAN_SECONDS, STOP_CHECK_SECONDS, Pulse, Watcher, soonest

if TYPE_CHECKING:
    from .inbox import Inbox
    from .message import Message
    from .root import Root

__all__ = ["CommandRunner", "Outcomes"]

TERMINATE_GRACE_SECONDS = 5.0
"""How long a running command may take to exit after SIGTERM, before SIGKILL."""

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0

log = logging.getLogger(__name__)


@dataclass
class Outcomes:
    """What a :class:`CommandRunner` did."""

    done: int = 0
    released: int = 0


@dataclass
class _Running:
    msg: Message
    proc: subprocess.Popen[bytes]
    waiter: threading.Thread


def _message_backoff(once: bool) -> Backoff:
    """Released messages wait before the next try: 1 s, 2 s, 4 s... at most 60 s.

    With ``once``, a message that failed is not tried again in this run.
    """
    if once:
        return Backoff(math.inf, math.inf)
    return Backoff(RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS)


# Out of file descriptors (EMFILE, ENFILE): claim nothing for 1 s, 2 s, 4 s... 60 s.
# Commands that run finish and give theirs back; a claim made meanwhile is released.
_DESCRIPTORS = "file descriptors"


def _out_of_descriptors(exc: BaseException) -> bool:
    """Whether ``exc`` (an ``OSError``, or ours translated from one) is EMFILE or ENFILE."""
    return getattr(exc, "errno", None) in (errno.EMFILE, errno.ENFILE)


class CommandRunner:
    """Claims messages and runs a shell command for each: done on exit 0, released otherwise.

    The command gets the message JSON on stdin and ``MAILBOX_ID``, ``MAILBOX_PATH``
    (the claimed file), ``MAILBOX_AGENT`` and ``MAILBOX_ROOT`` in its environment.
    At most ``max_inflight`` commands run at once, and a message is claimed only
    when a command can start for it. The lease of every running message is renewed
    (four times per lease), so a long command keeps its claim.

    Args:
        inbox: The inbox to consume.
        root: Its root (lease, heartbeats, ``MAILBOX_ROOT``).
        command: A shell command line.
        max_inflight: How many commands may run at once.
        heartbeat: Send heartbeats; capacity is the share of free slots.
    """

    def __init__(self, inbox: Inbox, root: Root, command: str, *, max_inflight: int = 1,
                 heartbeat: bool = True, rescan_interval: float = RESCAN_SECONDS) -> None:
        self.inbox = inbox
        self.command = command
        self.max_inflight = max(1, max_inflight)
        self.outcomes = Outcomes()
        self._root = root
        self._pulse = Pulse(root, inbox.agent) if heartbeat else None
        self._renew_every = root.config.lease_seconds / 4
        self._next_renew = 0.0
        self._rescan = rescan_interval
        self._running: dict[str, _Running] = {}
        self._queue: list[str] = []  # ids from the last scan, newest first (pop() = oldest)
        self._backoff = _message_backoff(once=False)
        self._starved = Backoff(RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS)
        self._watcher = Watcher(inbox.new, rescan_interval=rescan_interval)

    def run(self, *, once: bool = False, idle_timeout: float | None = None,
            stop: threading.Event | None = None) -> Outcomes:
        """Consume until ``stop`` is set, ``idle_timeout`` passes idle, or (``once``) all is done.

        Out of file descriptors with nothing running, the runner is idle: it ends
        after ``idle_timeout``; ``once`` without one waits for descriptors to come back.
        On the way out (Ctrl-C included) commands still running get SIGTERM and are
        settled by their exit code, like any other.
        """
        self._backoff = _message_backoff(once)
        with self._watcher:
            try:
                self._loop(once, idle_timeout, stop)
            finally:
                self._abandon()
        return self.outcomes

    def _loop(self, once: bool, idle_timeout: float | None, stop: threading.Event | None) -> None:
        idle_since = time.monotonic()
        while not (stop is not None and stop.is_set()):
            self._reap()
            self._tend()
            # A starved runner is not busy: it counts towards --timeout like an idle
            # one, and --once waits out the shortage only as long as that allows.
            if self._fill() or self._running:
                idle_since = time.monotonic()
            elif once and not self._starved.waiting(_DESCRIPTORS):
                return
            left = None if idle_timeout is None else idle_since + idle_timeout - time.monotonic()
            if left is not None and left <= 0:
                return
            self._watcher.wait(soonest(
                left, self._rescan, self._backoff.next_in(), self._starved.next_in(),
                self._pulse.due_in() if self._pulse else None,
                max(self._next_renew - time.monotonic(), 0.0) if self._running else None,
                STOP_CHECK_SECONDS if stop is not None else None))

    # -- claiming ---------------------------------------------------------------------------------

    def _fill(self) -> int:
        started = 0
        if self._starved.next_in():
            return 0
        while len(self._running) < self.max_inflight:
            try:
                msg = self._claim_next()
                if msg is None:
                    break
                self._start(msg)
            except (OSError, MailboxError) as exc:
                if not _out_of_descriptors(exc):
                    raise
                self._starve(exc)
                break
            self._starved.forget(_DESCRIPTORS)
            started += 1
        return started

    def _starve(self, exc: OSError | MailboxError) -> None:
        pause = self._starved.failed(_DESCRIPTORS)
        log.warning("out of file descriptors", extra={
            "agent": self.inbox.agent, "error": str(exc), "running": len(self._running),
            "retry_in": pause})

    def _claim_next(self) -> Message | None:
        scanned = False
        while True:
            while self._queue:
                msg_id = self._queue.pop()
                if msg_id not in self._running and self._backoff.ready(msg_id):
                    msg = self.inbox.claim(msg_id)
                    if msg is not None:
                        return msg
            if scanned:
                return None
            self._scan()
            scanned = True

    def _scan(self) -> None:
        self.inbox.requeue_expired()
        ids = self.inbox.ids()
        self._backoff.keep_only(ids)
        self._queue = ids[::-1]

    # -- running -----------------------------------------------------------------------------------

    def _start(self, msg: Message) -> None:
        path = self.inbox.cur / layout.message_file(msg.id)
        env = {**os.environ, "MAILBOX_ID": msg.id, "MAILBOX_PATH": str(path),
               "MAILBOX_AGENT": self.inbox.agent, "MAILBOX_ROOT": str(self._root.path)}
        try:
            # The claimed file *is* the message JSON: it becomes stdin (no pipe to fill).
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                # Its own process group: stopping the command stops what it started too.
                proc = subprocess.Popen(self.command, shell=True, env=env, stdin=fd,
                                        process_group=0)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(LockTimeout):  # held elsewhere: its lease gives it back
                self.inbox.release(msg, reason="command did not start")
            raise
        waiter = threading.Thread(target=self._await_exit, args=(proc,),
                                  name=f"mailbox-exec-{proc.pid}", daemon=True)
        self._running[msg.id] = _Running(msg, proc, waiter)
        waiter.start()
        log.info("started", extra={"agent": self.inbox.agent, "id": msg.id, "pid": proc.pid})

    def _await_exit(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._watcher.wake()

    def _reap(self) -> None:
        for msg_id, run in list(self._running.items()):
            code = run.proc.poll()
            if code is not None:
                run.waiter.join()
                del self._running[msg_id]
                self._settle(run.msg, code)

    def _settle(self, msg: Message, code: int) -> None:
        fields = {"agent": self.inbox.agent, "id": msg.id, "exit": code}
        try:
            self._record(msg, code, fields)
        except MessageNotFound:
            log.warning("lost", extra={**fields, "why": "the claimed file is gone"})
        except LockTimeout as exc:  # another process releasing claims for that long
            self._backoff.failed(msg.id)
            log.warning("not released", extra={**fields, "why": str(exc),
                                               "then": "its lease gives it back"})

    def _record(self, msg: Message, code: int, fields: dict[str, object]) -> None:
        if code == 0:
            self.inbox.done(msg)
            self.outcomes.done += 1
            log.info("done", extra=fields)
        else:
            self.inbox.release(msg, reason=f"command exited {code}")
            self._backoff.failed(msg.id)
            self.outcomes.released += 1
            log.warning("released", extra=fields)

    def _tend(self) -> None:
        """Heartbeat and lease renewal, each when due."""
        if self._pulse is not None:
            self._pulse.beat_if_due(capacity=1 - len(self._running) / self.max_inflight)
        if self._running and time.monotonic() >= self._next_renew:
            for msg_id in self._running:
                self.inbox.renew(msg_id)
            self._next_renew = time.monotonic() + self._renew_every

    def _abandon(self) -> None:
        """On the way out: terminate what still runs, then settle each by its exit code."""
        self._reap()
        for run in self._running.values():
            if run.proc.poll() is None:
                _signal_group(run.proc, signal.SIGTERM)
        for run in self._running.values():
            try:
                run.proc.wait(timeout=TERMINATE_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(run.proc, signal.SIGKILL)
                run.proc.wait()
        self._reap()


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass  # it ended meanwhile
