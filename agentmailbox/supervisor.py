"""The supervisor: routes the spool, enforces quotas and rates, expires mail, requeues leases.

Optional (principle 6): without it direct mail still flows; routed mail waits in
``spool/new`` until a supervisor runs. One per root, held by an flock on
``run/supervisor.lock`` (never deleted; ``run/supervisor.json`` names the holder).

Transitions, each one atomic step (see :mod:`agentmailbox.routing` for the folders)::

    claim   spool/new/X  --link+unlink-->  spool/cur/X
    route   deliver X to every recipient (Inbox.deliver: idempotent by id), journal
            "route" {id, from, recipients, expansion, dead, undeliverable}, then
            unlink spool/cur/X, then spool/progress/X
    defer   spool/cur/X  --rename-->  spool/deferred/X   a recipient is at its quota or
                                                           failed, or no live agent can
                                                           be picked
    hold    spool/cur/X  --rename-->  spool/held/X       the sender is over its rate
    bury    spool/*/X    --rename-->  dead/               expired, malformed, undeliverable

Routing state is per recipient. A recipient whose inbox cannot be written (the
delivery raises a MailboxError other than DiskFull) does not stop the others: its
failed attempts are counted in ``spool/progress/X`` (replaced atomically) and the
message is deferred and retried with backoff; after :attr:`Supervisor.give_up` the
recipient is *undeliverable*: the sender gets a notice naming it, and a copy is
buried for it when the message finishes. An error that is no recipient's (a bug,
an unreadable spool file) is counted the same way for the message as a whole.

A file left in ``spool/cur`` by a killed supervisor is routed again at start-up:
recipients that hold the id get nothing twice, a ``pick: one`` message already held
by any candidate is not picked again, recipients given up stay given up (the
progress file says so), and notices have ids derived from (message, kind,
address, agent), so a sender is told once. The one repeatable effect of a crash
at the very end of routing is a second dead-letter copy for an unroutable address
or an undeliverable recipient.

Notices go to the sender's inbox as messages of kind ``notice`` from
``supervisor``, body ``{"of", "notice", "reason", "address"}`` where ``notice`` is
``undeliverable``, ``deferred`` (a recipient's inbox is full; retried with
backoff), ``waiting`` (pick one found no live agent with room), ``held`` (the
sender's rate tripped the circuit breaker) or ``resumed`` (its held mail is
flowing again). An ``undeliverable`` notice about one recipient also has
``"agent"``. Notices bypass quotas.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import portalocker

from . import locks, names
from .backoff import Backoff
from .errors import (
    AgentNotFound,
    DiskFull,
    InvalidInput,
    MailboxError,
    MessageNotFound,
)
from .fs import Disk, Foreign, Moved, faults, same_file
from .inbox import Inbox, State
from .mailbox import Mailbox
from .message import Malformed, Message, decode, encode, iso, stamp_of
from .presence import Mode, Presence
from .root import Root
from .routing import Directory, Failure, Progress, Spool, Unroutable, is_routed
from .watch import RESCAN_SECONDS, Watcher

__all__ = ["Pass", "Retried", "Supervisor", "purge_dead_letters", "retry_dead_letter",
           "running_supervisor"]

NOTICE_SENDER = "supervisor"
SIGNAL_CHECK_SECONDS = 0.25
"""Longest the loop waits before looking at the flag a signal handler may have set."""
MIN_RETRY_SECONDS = 0.05
"""Shortest delay before deferred mail is retried by the loop."""
_TOLD_MEMORY = 100_000
# The largest pid Linux hands out (PID_MAX_LIMIT, the ceiling of kernel.pid_max):
# a hand-edited holder record past it names no process, and os.kill overflows on it.
_PID_MAX = 4_194_304

# The library logs through stdlib logging (silent until configured); ``mailbox
# supervise`` renders these records, with their ``extra`` fields, as JSON lines.
log = logging.getLogger(__name__)


@dataclass
class Pass:
    """What one pass did (counts), for tests and logs."""

    routed: int = 0
    deferred: int = 0
    held: int = 0
    released: int = 0
    dead: int = 0
    expired: int = 0
    requeued: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


# -- notices -----------------------------------------------------------------------------------

# A notice's stamp is its message's plus this: it sorts right after the mail it is
# about, and "resumed" after "held".
_NOTICE_ORDER = {"deferred": 1, "waiting": 1, "held": 1, "undeliverable": 2, "resumed": 3}


def notice_id(of: str, what: str, address: str, agent: str = "") -> str:
    """A notice's id, derived from what it is about: redelivering it stores nothing."""
    about = f"{of}|{what}|{address}" + (f"|{agent}" if agent else "")
    digest = hashlib.blake2b(about.encode(), digest_size=8).hexdigest()
    return f"{stamp_of(of) + _NOTICE_ORDER.get(what, 1):020d}-{digest}"


class Notices:
    """Tells senders what became of their routed mail (at most once per kind and address).

    Best effort, like the journal: a sender whose inbox cannot be written is not told,
    and the routing of its mail goes on.
    """

    def __init__(self, mb: Mailbox) -> None:
        self._mb = mb
        self._told: set[str] = set()

    def tell(self, msg: Message, what: str, address: str, reason: str, agent: str = "") -> None:
        """Tell the sender of ``msg``; ``agent`` names the one recipient it is about, if any."""
        nid = notice_id(msg.id, what, address, agent)
        if nid in self._told or not self._mb.registry.exists(msg.sender):
            return
        body = {"of": msg.id, "notice": what, "reason": reason, "address": address}
        if agent:
            body["agent"] = agent
        notice = Message(id=nid, sender=NOTICE_SENDER, to=(msg.sender,),
                         subject=f"{what}: {msg.subject}"[:200], kind="notice",
                         thread=msg.thread, reply_to=msg.id, ts=iso(time.time_ns()),
                         body=body)
        data = encode(notice, self._mb.config.max_message_bytes)
        try:
            self._mb.inbox(msg.sender).deliver(nid, data)
        except DiskFull:
            raise
        except MailboxError:  # the sender's own inbox is broken: routing goes on without it
            log.warning("could not tell the sender", exc_info=True,
                        extra={"id": msg.id, "sender": msg.sender, "notice": what})
            return
        if len(self._told) >= _TOLD_MEMORY:
            self._told.clear()  # only a shortcut: the inbox refuses a second copy anyway
        self._told.add(nid)


# -- rate limit (circuit breaker) --------------------------------------------------------------

@dataclass
class _Bucket:
    tokens: float
    at: float
    queue: deque[str] = field(default_factory=deque)  # held file names, oldest first
    opened_by: str | None = None  # the first held id of the current opening


class RateGate:
    """Per-sender token buckets (mailbox.json ``"rate": {"per_second": N, "burst": M}``).

    A sender with no token left, or with mail already held, has its routed mail held
    (never dropped); held mail is released oldest first as tokens come back, so the
    breaker closes once the sender's rate falls below ``per_second``.
    """

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = max(1.0, burst)
        self.buckets: dict[str, _Bucket] = {}

    @classmethod
    def from_config(cls, extra: dict[str, Any]) -> RateGate | None:
        rate = extra.get("rate")
        if not isinstance(rate, dict) or not rate.get("per_second"):
            return None
        per_second = float(rate["per_second"])
        return cls(per_second, float(rate.get("burst") or per_second)) if per_second > 0 else None

    def _bucket(self, sender: str, now: float) -> _Bucket:
        bucket = self.buckets.get(sender)
        if bucket is None:
            bucket = self.buckets[sender] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        return bucket

    def admit(self, sender: str, now: float) -> bool:
        """Take a token for new mail of ``sender``; False if it must be held."""
        bucket = self._bucket(sender, now)
        if bucket.queue or bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def hold(self, sender: str, name: str) -> bool:
        """Queue a held file; True if this opened the breaker."""
        bucket = self.buckets.setdefault(sender, _Bucket(0.0, 0.0))
        bucket.queue.append(name)
        opened = bucket.opened_by is None
        if opened:
            bucket.opened_by = name[:-5]
        return opened

    def releasable(self, now: float) -> Iterable[tuple[str, str]]:
        """(sender, name) of held mail whose turn has come, taking a token each."""
        for sender, bucket in list(self.buckets.items()):
            self._bucket(sender, now)
            while bucket.queue and bucket.tokens >= 1:
                bucket.tokens -= 1
                yield sender, bucket.queue.popleft()

    def closed(self) -> list[tuple[str, str]]:
        """(sender, first held id) of breakers that just drained; resets them."""
        out = []
        for sender, bucket in self.buckets.items():
            if not bucket.queue and bucket.opened_by is not None:
                out.append((sender, bucket.opened_by))
                bucket.opened_by = None
        return out


# -- pick one ------------------------------------------------------------------------------------

class Picker:
    """Chooses one agent for ``pick: one``: alive, not in maintenance, below its quota,
    highest spare capacity first (no capacity reported counts as 0.5).

    Between two heartbeats an agent's capacity is divided by one plus the number of
    messages picked for it since that heartbeat, so a burst spreads across agents.
    """

    def __init__(self, mb: Mailbox) -> None:
        self._mb = mb
        self._presence = Presence(mb.root)
        self._picks: dict[str, tuple[int, int]] = {}  # agent -> (heartbeat at, picks since)

    def choose(self, agents: Iterable[str]) -> str | None:
        best: tuple[float, str] | None = None
        for agent in agents:
            score = self._score(agent)
            if score is not None and (best is None or score > best[0]):
                best = (score, agent)
        if best is None:
            return None
        self._count(best[1])
        return best[1]

    def _score(self, agent: str) -> float | None:
        beat = self._presence.last(agent)
        limit = self._mb.config.heartbeat_seconds * 1e9
        if beat is None or time.time_ns() - beat.at > limit or beat.mode is Mode.MAINTENANCE:
            return None
        try:
            if self._mb.quotas.full(self._mb.inbox(agent)) is not None:
                return None
        except DiskFull:
            raise
        except MailboxError:
            return None  # its inbox cannot even be counted: no candidate
        at, picks = self._picks.get(agent, (beat.at, 0))
        picks = picks if at == beat.at else 0
        self._picks[agent] = (beat.at, picks)
        capacity = 0.5 if beat.capacity is None else float(beat.capacity)
        return capacity / (1 + picks)

    def _count(self, agent: str) -> None:
        at, picks = self._picks[agent]
        self._picks[agent] = (at, picks + 1)


# -- one routing decision ------------------------------------------------------------------------

@dataclass
class _Outcome:
    expansion: dict[str, list[str]] = field(default_factory=dict)
    holders: list[str] = field(default_factory=list)
    waiting: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (what, address)
    unroutable: list[Unroutable] = field(default_factory=list)
    undeliverable: dict[str, tuple[str, str]] = field(default_factory=dict)  # agent: address, why
    failed: set[str] = field(default_factory=set)  # agents whose delivery failed this time

    def give_up(self, address: str, agent: str, reason: str) -> None:
        self.undeliverable.setdefault(agent, (address, reason))

    def hold(self, address: str, agent: str) -> None:
        got = self.expansion.setdefault(address, [])
        if agent not in got:
            got.append(agent)
        if agent not in self.holders:
            self.holders.append(agent)

    def wait(self, what: str, address: str, reason: str) -> None:
        self.waiting.setdefault((what, address), []).append(reason)


# -- the daemon ----------------------------------------------------------------------------------

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
        self._notices = Notices(self.mb)
        self._picker = Picker(self.mb)
        self._gate = RateGate.from_config(self.mb.config.extra)
        # Deferred file names: 0.5 s, 1 s, 2 s ... up to the longest backoff between tries.
        self._retry = Backoff(*backoff, shortest=MIN_RETRY_SECONDS, clock=clock)
        self._expiry: dict[str, dict[str, str | None]] = {}  # agent -> name -> expires_at
        self._directory: Directory | None = None
        # Ids with a spool/progress file: listed at start-up, then kept by this process,
        # the only writer (it holds the lock), so a message without failures costs no I/O.
        self._with_progress: set[str] = set()
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
        run = self.mb.path / "run"
        self.mb.root.disk.ensure_dir(run)
        lock = locks.acquire(run / "supervisor.lock", self.mb.root.disk, timeout=0,
                             message=f"a supervisor is already running for {self.mb.path}"
                                     f"{_holder(run, self.mb.root.disk)}",
                             hint="one per root: stop that one first, or leave it running")
        self._lock = lock
        self.mb.root.disk.replace(run / "supervisor.json", _holder_record())
        self.spool.ensure()

    def _next_due(self) -> float:
        """When the loop must pass again without an event: sweep, retry, release, rescan."""
        due = [self._last_sweep + self.sweep_seconds, self._last_pass + self.rescan_seconds]
        retry = self._retry.next_at()
        due += [] if retry is None else [retry]
        if self._gate is not None and any(b.queue for b in self._gate.buckets.values()):
            due.append(self._last_pass + 1.0 / self._gate.per_second)
        return min(due)

    # -- one pass ---------------------------------------------------------------------------------

    def _pass(self, *, sweep: bool, retry_all: bool) -> Pass:
        report = Pass()
        self._directory = None
        if not self._started:
            self._recover_held()
            self._drop_stale_progress()
            self._started = True
        self._bury_foreign(report)
        cur, new = self.spool.cur, self.spool.new
        for name in self.spool.names(cur):
            self._guarded(report, functools.partial(self._recover, name, report), cur / name)
        self._release_held(report)
        for name in self.spool.names(new):
            if self.stopping:
                break
            self._guarded(report, functools.partial(self._admit, name, report),
                          cur / name, new / name)
        self._retry_deferred(report, retry_all)
        if sweep:
            self._sweep(report)
            self._last_sweep = self._clock()
        return report

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
                self._route_failed(paths, f"{type(exc).__name__}: {exc}", report)
            except DiskFull:
                raise
            except MailboxError:
                log.exception("could not keep the message for a retry",
                              extra={"file": paths[0].name})

    def _route_failed(self, paths: tuple[Path, ...], reason: str, report: Pass) -> None:
        """Count a failure of routing the message as a whole; retry it, or bury it at the bound.

        Left in ``spool/new`` (the claim itself failed) it is tried at the next pass;
        from ``spool/cur`` or ``spool/held`` it moves to ``spool/deferred``.
        """
        path = next((p for p in paths if self.mb.root.disk.exists(p)), None)
        if path is None or path.parent == self.spool.new:
            return
        progress = self._progress(path.name[:-5])
        failure = self._failed(progress, None, reason)
        if failure.given_up:
            if self.mb.dead.bury(path, f"could not route: {reason}", by="supervisor"):
                report.dead += 1
            self._drop_progress(progress.msg_id)
            return
        self._save_progress(progress)
        if path.parent != self.spool.deferred:
            self.mb.root.disk.overwrite(path, self.spool.deferred / path.name)
        self._retry.failed(path.name)

    def _progress(self, msg_id: str) -> Progress:
        """The routing progress of a message; a bad progress file is buried (start afresh)."""
        if msg_id not in self._with_progress:
            return Progress(msg_id)
        try:
            return self.spool.progress(msg_id)
        except (Foreign, Malformed) as exc:
            self.mb.dead.bury(self.spool.progress_path(msg_id), exc.reason, by="supervisor")
            self._with_progress.discard(msg_id)
            return Progress(msg_id)

    def _save_progress(self, progress: Progress) -> None:
        self.spool.save_progress(progress)
        if progress.empty():
            self._with_progress.discard(progress.msg_id)
        else:
            self._with_progress.add(progress.msg_id)

    def _drop_progress(self, msg_id: str) -> None:
        if msg_id in self._with_progress:
            self.spool.drop_progress(msg_id)
            self._with_progress.discard(msg_id)

    def _failed(self, progress: Progress, agent: str | None, reason: str) -> Failure:
        """Count one failed attempt (for ``agent``, or the whole message); give up at the bound."""
        now = time.time_ns()
        failure = progress.fail(agent, reason, now)
        attempts, seconds = self.give_up
        if failure.attempts >= attempts and now - failure.first_at >= seconds * 1e9:
            progress.give_up(failure)
        log.warning("delivery failed" if agent else "routing failed", extra={
            "id": progress.msg_id, "agent": agent, "attempts": failure.attempts,
            "error": reason, "given_up": failure.given_up})
        return failure

    def _drop_stale_progress(self) -> None:
        """At start-up: note the progress files of messages still in ``spool/cur`` or
        ``spool/deferred``, and remove the others (a supervisor died between removing a
        message and removing its progress)."""
        waiting = (self.spool.cur, self.spool.deferred)
        for msg_id in self.spool.progress_ids():
            if any(self.mb.root.disk.exists(f / f"{msg_id}.json") for f in waiting):
                self._with_progress.add(msg_id)
            else:
                self.spool.drop_progress(msg_id)

    @property
    def directory(self) -> Directory:
        """Who is registered and the routing rules, read once per pass."""
        if self._directory is None:
            self._directory = Directory.load(self.mb.registry, self.mb.config)
        return self._directory

    def _bury_foreign(self, report: Pass) -> None:
        for folder in (self.spool.new, self.spool.cur, self.spool.deferred, self.spool.held,
                       self.spool.progress_dir):
            for path in self.spool.foreign(folder):
                if self.mb.dead.bury(path, f"foreign file name in spool/{folder.name}/"):
                    report.dead += 1

    def _recover(self, name: str, report: Pass) -> None:
        """A file in spool/cur was being routed by a supervisor that died: route it again."""
        cur, new = self.spool.cur / name, self.spool.new / name
        a, b = self.mb.root.disk.lstat(cur), self.mb.root.disk.lstat(new)
        if a is not None and b is not None and same_file(a, b):
            # A v1 claim that died between link and unlink. Only the supervisor (one per
            # root, under its lock) acts on the spool, so removing this second name of
            # the file cannot race anyone.
            self.mb.root.disk.unlink(new)
        self._route_file(cur, report)

    def _admit(self, name: str, report: Pass) -> None:
        new, cur = self.spool.new / name, self.spool.cur / name
        taken = self.mb.root.disk.move(new, cur)
        if taken is Moved.GONE:
            return
        if taken is Moved.OCCUPIED:
            self._recover(name, report)
            return
        faults.hit("route.claimed")
        loaded = self._load(cur, report)
        if loaded is None:
            return
        msg, data = loaded
        if self._gate is not None and not self._gate.admit(msg.sender, self._clock()):
            self._hold(self._gate, cur, msg, report)
            return
        self._route(cur, msg, data, report)

    def _load(self, path: Path, report: Pass) -> tuple[Message, bytes] | None:
        try:
            return self.spool.read(path)
        except FileNotFoundError:
            return None
        except (Foreign, Malformed) as exc:
            if self.mb.dead.bury(path, exc.reason, by="supervisor"):
                report.dead += 1
            return None

    def _route_file(self, path: Path, report: Pass) -> None:
        loaded = self._load(path, report)
        if loaded is not None:
            self._route(path, *loaded, report)

    # -- routing one message ------------------------------------------------------------------

    def _route(self, path: Path, msg: Message, data: bytes, report: Pass) -> None:
        if msg.expired():
            if self.mb.dead.bury(path, "expired", expires_at=msg.expires_at, by="supervisor"):
                report.expired += 1
            self._drop_progress(msg.id)
            return
        progress = self._progress(msg.id)
        outcome = _Outcome()
        self._count_direct(msg, outcome)
        pick = msg.headers.get("pick") == "one"
        for address in msg.to:
            expansion = self.directory.expand(address, msg.sender)
            outcome.unroutable += expansion.unroutable
            if pick and is_routed(address) and expansion.agents:
                self._pick(address, expansion.agents, msg, data, outcome, progress)
                continue
            for agent in expansion.agents:
                if not self._offer(agent, address, msg, data, outcome, progress):
                    self._unsettled(agent, address, outcome, progress)
        if progress.changed:
            self._save_progress(progress)
        if outcome.waiting:
            self._defer(path, msg, outcome, report)
        else:
            self._finish(path, msg, data, outcome, report)

    def _count_direct(self, msg: Message, outcome: _Outcome) -> None:
        """Agents named in ``to`` got their copy from the sender before it posted the
        spool copy: they hold it already and are not offered it again. (An offer checks
        ``cur/`` and ``done/`` and then links into ``new/``; a reader that claims the
        sender's copy in between would find a second copy there.)"""
        for address in msg.to:
            if not is_routed(address) and address in self.directory.agents:
                outcome.hold(address, address)

    def _offer(self, agent: str, address: str, msg: Message, data: bytes, outcome: _Outcome,
               progress: Progress) -> bool:
        """Deliver to one agent unless it holds the id already, its inbox is full, or it
        was given up. True if it holds the message now.

        A failure is this recipient's alone: it is counted in ``progress`` and the
        other recipients are offered the message all the same.
        """
        if agent in outcome.holders:
            outcome.hold(address, agent)
            return True
        if agent in outcome.failed or progress.given_up(agent) is not None:
            return False
        try:
            held = self._deliver(agent, address, msg, data, outcome)
        except DiskFull:
            raise  # the whole disk, not this inbox: the pass ends and routing pauses
        except MailboxError as exc:
            outcome.failed.add(agent)
            self._failed(progress, agent, str(exc))
            return False
        if held:
            progress.delivered(agent)
        return held

    def _deliver(self, agent: str, address: str, msg: Message, data: bytes,
                 outcome: _Outcome) -> bool:
        try:
            inbox = self.mb.inbox(agent)
        except AgentNotFound:
            outcome.unroutable.append(Unroutable(address, f"no agent named {agent!r}"))
            return False
        fill = self.mb.quotas.full(inbox)
        if fill is not None and inbox.state_of(msg.id) is State.ABSENT:
            outcome.wait("deferred", address, f"inbox of {agent} is full "
                         f"({fill.unread} unread, quota {fill.quota})")
            return False
        if fill is None and inbox.deliver(msg.id, data):  # deliver is idempotent by id
            self.mb.quotas.delivered(agent)
        faults.hit("route.delivered")
        outcome.hold(address, agent)
        return True

    def _unsettled(self, agent: str, address: str, outcome: _Outcome,
                   progress: Progress) -> None:
        """A recipient that did not get it: if its delivery failed, it waits or is given up."""
        failure = progress.recipients.get(agent)
        if failure is None or not (failure.given_up or agent in outcome.failed):
            return  # waiting for room, or unroutable: noted by the offer
        if failure.given_up:
            outcome.give_up(address, agent, f"could not deliver to {agent}: gave up after "
                            f"{_attempts(failure)}; the last: {failure.reason}")
        else:
            outcome.wait("deferred", address, f"could not deliver to {agent} "
                         f"({_attempts(failure)}, retried later): {failure.reason}")

    def _pick(self, address: str, agents: tuple[str, ...], msg: Message, data: bytes,
              outcome: _Outcome, progress: Progress) -> None:
        """Deliver to exactly one agent of ``agents`` (unless one already holds it).

        A candidate whose delivery fails is passed over for the next best; one given
        up for this message is no candidate. If every agent was given up, the address
        is unroutable.
        """
        for agent in agents:
            if self._holds(agent, msg.id):
                outcome.hold(address, agent)
                return
        left = [a for a in agents if progress.given_up(a) is None]
        while left and (chosen := self._picker.choose(left)) is not None:
            if self._offer(chosen, address, msg, data, outcome, progress):
                return
            if chosen not in outcome.failed:
                return  # filled up since it was scored: the offer noted the wait
            left.remove(chosen)
        failures = {a: progress.recipients[a] for a in agents if a in progress.recipients}
        tried = "; ".join(f"{a}: {f.reason} ({_attempts(f)})" for a, f in failures.items())
        if all(f.given_up for f in failures.values()) and len(failures) == len(agents):
            outcome.unroutable.append(Unroutable(address, f"no agent of {address} could take "
                                                          f"it: {tried}"))
            return
        outcome.wait("waiting", address, f"no live agent of {address} has room now "
                     f"({len(agents)} known)" + (f"; delivery failed to {tried}" if tried else ""))

    def _holds(self, agent: str, msg_id: str) -> bool:
        try:
            return self.mb.inbox(agent).state_of(msg_id) is not State.ABSENT
        except DiskFull:
            raise
        except MailboxError:
            return False  # unknown, or its inbox cannot be looked at: an offer finds out

    def _tell_unroutable(self, msg: Message, outcome: _Outcome) -> dict[str, str]:
        """Tell the sender about each unroutable address and each recipient given up (now,
        even if the rest waits); returns the reasons per unroutable address."""
        reasons: dict[str, str] = {}
        for problem in outcome.unroutable:
            known = reasons.get(problem.address)
            reasons[problem.address] = f"{known}; {problem.reason}" if known else problem.reason
        for address, reason in reasons.items():
            self._notices.tell(msg, "undeliverable", address, reason)
        for agent, (address, reason) in outcome.undeliverable.items():
            self._notices.tell(msg, "undeliverable", address, reason, agent=agent)
        return reasons

    def _finish(self, path: Path, msg: Message, data: bytes, outcome: _Outcome,
                report: Pass) -> None:
        """Every recipient holds it, or was given up: bury what was unroutable, remove it."""
        reasons = self._tell_unroutable(msg, outcome)
        self.mb.root.journal.record(
            "route", id=msg.id, **{"from": msg.sender}, recipients=outcome.holders,
            expansion=outcome.expansion, dead=list(reasons),
            undeliverable={agent: why for agent, (_, why) in outcome.undeliverable.items()})
        faults.hit("route.recorded")
        if reasons or outcome.undeliverable:
            report.dead += self._bury_unroutable(path, msg, data, outcome, reasons)
        self.mb.root.disk.unlink(path)  # gone already if the whole message was buried
        self._drop_progress(msg.id)
        self._retry.forget(path.name)
        report.routed += 1
        log.debug("routed", extra={"id": msg.id, "sender": msg.sender,
                                   "recipients": outcome.holders})

    def _bury_unroutable(self, path: Path, msg: Message, data: bytes, outcome: _Outcome,
                         reasons: dict[str, str]) -> int:
        """Nobody got it: bury the file. Some did: bury a copy per unroutable address and
        per recipient given up."""
        gaps: list[tuple[str, dict[str, str]]] = [
            (reason, {"address": address}) for address, reason in reasons.items()]
        gaps += [(reason, {"address": address, "agent": agent})
                 for agent, (address, reason) in outcome.undeliverable.items()]
        log.info("undeliverable", extra={"id": msg.id, "sender": msg.sender,
                                         "reasons": [reason for reason, _ in gaps]})
        if not outcome.holders:
            text = "; ".join(reason for reason, _ in gaps)
            agents = list(outcome.undeliverable)
            about: dict[str, Any] = {"agents": agents} if agents else {}
            return int(self.mb.dead.bury(
                path, f"undeliverable: {text}", msg_id=msg.id,
                addresses=list(dict.fromkeys(where["address"] for _, where in gaps)),
                **about, by="supervisor") is not None)
        buried = 0
        for reason, where in gaps:
            copy = self.spool.stage(msg.id, data)
            if self.mb.dead.bury(copy, f"undeliverable: {reason}", msg_id=msg.id, **where,
                                 by="supervisor") is not None:
                buried += 1
        return buried

    def _defer(self, path: Path, msg: Message, outcome: _Outcome, report: Pass) -> None:
        """Some recipient must wait: keep it in spool/deferred, tell the sender, retry later.

        Unroutable addresses and recipients given up are told now, and buried when the
        message finishes.
        """
        self._tell_unroutable(msg, outcome)
        for (what, address), reasons in outcome.waiting.items():
            self._notices.tell(msg, what, address, "; ".join(reasons))
        target = self.spool.deferred / path.name
        if path != target:
            self.mb.root.disk.overwrite(path, target)
            self.mb.root.journal.record("defer", id=msg.id, **{"from": msg.sender},
                                        recipients=outcome.holders,
                                        waiting=sorted({a for _, a in outcome.waiting}))
            log.info("deferred", extra={"id": msg.id, "sender": msg.sender, "waiting": {
                a: r for (_, a), r in outcome.waiting.items()}})
            report.deferred += 1
        self._retry.failed(path.name)

    def _retry_deferred(self, report: Pass, retry_all: bool) -> None:
        waiting = self.spool.names(self.spool.deferred)
        self._retry.keep_only(waiting)
        for name in waiting:
            if self.stopping:
                return
            if retry_all or self._retry.ready(name):
                path = self.spool.deferred / name
                self._guarded(report, functools.partial(self._route_file, path, report), path)

    # -- the circuit breaker ------------------------------------------------------------------

    def _hold(self, gate: RateGate, path: Path, msg: Message, report: Pass) -> None:
        self.mb.root.disk.overwrite(path, self.spool.held / path.name)
        report.held += 1
        if gate.hold(msg.sender, path.name):
            rate = f"{gate.per_second:g}/s, burst {gate.burst:g}"
            self._notices.tell(msg, "held", "", f"you are sending routed mail faster than "
                               f"{rate}; it is held (not dropped) and released at that rate")
            log.warning("sender held", extra={"sender": msg.sender, "rate": rate})

    def _recover_held(self) -> None:
        """After a restart, queue what ``spool/held`` holds, per sender, oldest first."""
        for name in self.spool.names(self.spool.held):
            try:
                msg, _ = self.spool.read(self.spool.held / name)
            except (FileNotFoundError, Foreign, Malformed):
                continue  # routed (and buried if bad) once the gate lets it through
            if self._gate is None:
                self.mb.root.disk.overwrite(self.spool.held / name, self.spool.new / name)
            else:
                self._gate.hold(msg.sender, name)

    def _release_held(self, report: Pass) -> None:
        if self._gate is None:
            return
        for sender, name in self._gate.releasable(self._clock()):
            report.released += 1
            path = self.spool.held / name
            try:
                self._guarded(report, functools.partial(self._route_file, path, report), path)
            except BaseException:
                self._gate.buckets[sender].queue.appendleft(name)  # still held: keep its turn
                raise
        for sender, first in self._gate.closed():
            about = Message(id=first, sender=sender, to=(sender,))
            self._notices.tell(about, "resumed", "", "your routed mail is flowing again")
            log.info("sender resumed", extra={"sender": sender})

    # -- sweeping inboxes ----------------------------------------------------------------------

    def _sweep(self, report: Pass) -> None:
        """Requeue claims past their lease; bury unread mail past its ``expires_at``."""
        for agent in self.mb.registry.list_names():
            if self.stopping:
                return
            try:
                inbox = self.mb.inbox(agent)
                report.requeued += len(inbox.requeue_expired())
                report.expired += self._expire(inbox)
            except DiskFull:
                raise
            except MailboxError:
                log.exception("could not sweep an inbox", extra={"agent": agent})

    def _expire(self, inbox: Inbox) -> int:
        known = self._expiry.setdefault(inbox.agent, {})
        present = inbox.ids()
        for gone in set(known) - set(present):
            del known[gone]
        expired = 0
        now = time.time_ns()
        for msg_id in present:
            if msg_id not in known:
                known[msg_id] = self._expires_at(inbox.new / f"{msg_id}.json")
            when = known[msg_id]
            if when is not None and _passed(when, now):
                if self.mb.dead.bury(inbox.new / f"{msg_id}.json", "expired",
                                     agent=inbox.agent, expires_at=when, by="supervisor"):
                    expired += 1
                del known[msg_id]
        return expired

    def _expires_at(self, path: Path) -> str | None:
        try:
            data, _ = self.mb.root.disk.read(path, self.mb.config.max_message_bytes)
            return decode(data).expires_at
        except (FileNotFoundError, Foreign, Malformed):
            return None  # claim or doctor deals with bad files


def _attempts(failure: Failure) -> str:
    return "1 failed attempt" if failure.attempts == 1 else f"{failure.attempts} failed attempts"


def _passed(expires_at: str, now_ns: int) -> bool:
    return now_ns / 1e9 >= datetime.fromisoformat(expires_at).timestamp()


def _own_mailbox(root: Mailbox | str | Any) -> Mailbox:
    if isinstance(root, Mailbox):
        return Mailbox(Root.load(root.path, fsync=root.root.disk.fsync, clock=root.root.clock))
    return Mailbox.open(root)


def _holder_record() -> bytes:
    return orjson.dumps({"pid": os.getpid(), "started": iso(time.time_ns())})


def _holder(run: Path, disk: Disk) -> str:
    pid = _recorded_pid(run, disk)
    return f" (pid {pid})" if pid is not None else ""


def _recorded_pid(run: Path, disk: Disk) -> int | None:
    try:
        data, _ = disk.read(run / "supervisor.json", 1 << 12)
        pid = orjson.loads(data).get("pid")
    except (OSError, MailboxError, Foreign, ValueError, AttributeError):
        return None
    ok = isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= _PID_MAX
    return pid if ok else None


def running_supervisor(mb: Mailbox) -> int | None:
    """The pid of the supervisor last started on this root, if that process is alive.

    A hint for senders of routed mail (it waits in the spool until one runs), read
    from ``run/supervisor.json`` without touching the lock, so it can never get in
    the way of a supervisor starting. A recycled pid can make it say yes wrongly.
    """
    pid = _recorded_pid(mb.path / "run", mb.root.disk)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by another user
    return pid


# -- dead letters ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Retried:
    """A dead letter put back: its message id, where to, and whether it was stored."""

    dead_id: str
    msg_id: str
    to: str
    stored: bool

    def to_dict(self) -> dict[str, Any]:
        return {"dead_id": self.dead_id, "id": self.msg_id, "to": self.to, "stored": self.stored}


def retry_dead_letter(mb: Mailbox, dead_id: str) -> Retried:
    """Put a dead letter back where it came from, with the same id.

    Mail from an inbox goes back to that inbox's ``new/``; routed mail goes back to
    ``spool/new`` (the supervisor routes it again; recipients that hold it get
    nothing twice). The letter is taken first (so a purge racing this call cannot
    have it too), then delivered: removed once the mail is stored, put back if the
    destination already holds the id or delivery fails.

    Raises:
        MessageNotFound: no dead letter ``dead_id``.
        InvalidInput: its content is not a valid message (or has expired), or it did
            not come from an inbox or the spool.
        AgentNotFound: its inbox's agent is no longer registered.
    """
    letter = mb.dead.get(dead_id)
    target, where = _origin(mb, letter.origin)
    held = mb.dead.take(dead_id, retry=True)
    if held is None:
        raise MessageNotFound(dead_id, "dead/")  # purged or retried meanwhile
    stored = False
    try:
        msg, data = _dead_message(mb, dead_id, held)
        stored = target.deliver(msg.id, data)
    finally:
        if stored:
            mb.dead.finish(dead_id, held)
        else:
            mb.dead.put_back(dead_id, held)
    mb.root.journal.record("retry", dead_id=dead_id, id=msg.id, to=where, stored=stored)
    return Retried(dead_id, msg.id, where, stored)


def _dead_message(mb: Mailbox, dead_id: str, held: Path) -> tuple[Message, bytes]:
    try:
        data, _ = mb.root.disk.read(held, mb.config.max_message_bytes, one_name=True)
        msg = decode(data)
    except FileNotFoundError as exc:
        raise MessageNotFound(dead_id, "dead/") from exc
    except (Foreign, Malformed) as exc:
        raise InvalidInput(f"dead letter {dead_id} is not a valid message ({exc.reason}); "
                           "it cannot be retried",
                           hint=f"inspect it: mailbox dead show {dead_id}") from exc
    if msg.expired():
        raise InvalidInput(f"dead letter {dead_id} expired at {msg.expires_at}; retrying would "
                           "bury it again", hint="send it again with a later --expires")
    return msg, data


def _origin(mb: Mailbox, origin: str) -> tuple[Inbox | Spool, str]:
    parts = origin.split("/")
    if parts[0] == "spool":
        return mb.spool, "spool"
    if len(parts) == 4 and parts[0] == "agents" and parts[2] == "inbox":
        return mb.inbox(names.check_agent(parts[1])), f"agents/{parts[1]}/inbox"
    raise InvalidInput(f"this dead letter came from {origin!r}; only mail from an inbox or "
                       "the spool can be retried")


def purge_dead_letters(mb: Mailbox, older_than_days: float | None = None,
                       now_ns: int | None = None) -> list[str]:
    """Delete dead letters for good (all, or those buried more than N days ago).

    The only deleting of mail agentmailbox does; returns the dead ids removed.
    """
    cutoff = (now_ns or time.time_ns()) - int((older_than_days or 0) * 86400e9)
    removed = []
    for letter in mb.dead.list():
        if (older_than_days is None or stamp_of(letter.id) < cutoff) \
                and mb.dead.remove(letter.id):  # False: a retry or a purge beat us to it
            removed.append(letter.id)
    if removed:
        mb.root.journal.record("purge", count=len(removed))
    return removed
