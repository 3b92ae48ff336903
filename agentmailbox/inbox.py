"""One agent's inbox: delivery, listing, claim, done, release, and the lease.

::

    inbox/tmp/      staging; never read, never watched
    inbox/new/      delivered, unread            <id>.json
    inbox/cur/      claimed, not done; the newer of mtime and ctime = when the lease began
    inbox/done/<YYYY-MM-DD>/   done, sharded by the message's own date

Which folder a file sits in *is* its state. "Is id X here?" is three ``stat`` calls
(new, cur, done/<day of X>), never a listing.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from . import layout, names
from .dead import DeadLetters
from .errors import Conflict, InvalidInput, LockTimeout, MailboxError, MessageNotFound
from .fs import (
    GONE,
    MOVED,
    OCCUPIED,
    FolderSyncs,
    Foreign,
    Moved,
    faults,
    read_open,
    same_file,
    staging_name,
)
from .memory import agent_lock
from .message import Malformed, Message, day_of, day_span, decode, iso, stamp_of
from .root import Root

if TYPE_CHECKING:
    from .watch import Doorbell

__all__ = ["HOLD_PREFIX", "Inbox", "State", "hold_id", "lease_set_by_rename", "lease_start"]

_UNKNOWN = object()  # done(id) of a claim this handle did not make
_DONE_BEFORE = "duplicate delivery of a message already done"
_CLAIMS_REMEMBERED = 4096
"""How many unfinished claims a handle remembers (see :meth:`Inbox._remember`)."""

_CLOCK_TICK_NS = 10_000_000
"""How far a file time set by the kernel (its coarse clock) may lag ``time.time_ns()``."""

_CLAIM_CTIME_NS = 100_000_000
"""How far from the moment taken just before a claiming rename the claimed file's ctime may
be for that ctime to count as the start of the lease (see :func:`lease_set_by_rename`).

Ten times the coarse clock's tick at ``HZ=100`` (the kernel stamps files from a clock that
lags ``time.time_ns()`` by up to a tick; Linux 6.18 on ext4 and tmpfs measured no lag at
all), and one six-thousandth of the default lease: a claim whose rename started its lease
holds it for at least ``lease_seconds`` less this."""

Notify = Callable[[Message, str, str], None]

LEASE_LOCK_SECONDS = 10.0
"""How long a release waits for another process's release or sweep of the same inbox."""

HOLD_PREFIX = ".hold."
"""``cur/.hold.<id>.<pid>.<6 hex>``: a copy being settled by the one process that moved it there."""


def hold_id(name: str) -> str | None:
    """The message id of a hold name in ``cur/``, or None if ``name`` is not one."""
    if not name.startswith(HOLD_PREFIX):
        return None
    return names.staging_id(name[len(HOLD_PREFIX):])


def lease_start(st: os.stat_result, now: int, lease_ns: int) -> int:
    """When a claim's lease began: the newer of its mtime and ctime, in ns.

    A time more than one lease ahead of ``now`` is not believed (a planted future
    mtime, or the clock stepped back a long way), so no claim is held for longer than
    two leases; 0 if neither time is believable.
    """
    horizon = now + lease_ns
    return max((t for t in (st.st_mtime_ns, st.st_ctime_ns) if t <= horizon), default=0)


def lease_set_by_rename(st: os.stat_result, before: int) -> bool:
    """Whether the claiming rename itself started the lease of the claim ``st`` is of.

    Linux filesystems (ext4, xfs, btrfs, tmpfs) set the ctime on a rename, so a claim's
    ctime is the claim: within :data:`_CLAIM_CTIME_NS` of ``before``, a moment taken
    just before the rename, and no older than its mtime, it is then what
    :func:`lease_start` counts from, as it would after setting the times. POSIX lets a
    rename leave the ctime alone: then it is the delivery's (older), and the claimer sets
    the times (PROTOCOL.md §9.2 step 3).
    """
    ctime = st.st_ctime_ns
    return st.st_mtime_ns <= ctime and -_CLAIM_CTIME_NS <= ctime - before <= _CLAIM_CTIME_NS


class State(enum.StrEnum):
    """Where a message is in one inbox."""

    NEW = "new"          # delivered, unread
    CLAIMED = "cur"      # read (claimed) by an instance, not done
    DONE = "done"        # finished: the DONE marker is the file's place
    ABSENT = "absent"    # not in this inbox


class Inbox:
    """The inbox of one agent. Cheap to create; safe to use from many processes."""

    def __init__(self, root: Root, agent: str, dead: DeadLetters, *,
                 epoch: Callable[[], int | None] = lambda: None, notify: Notify | None = None,
                 syncs: FolderSyncs | None = None) -> None:
        self.agent = names.check_agent(agent)
        self._root = root
        self._disk = root.disk
        self._syncs = syncs or FolderSyncs(root.disk)  # a batch defers the done/ fsyncs
        self._dead = dead
        self._epoch = epoch
        self._notify = notify
        paths = root.paths.agent(agent)
        self.path = paths.inbox
        self.tmp, self.new, self.cur = paths.inbox_tmp, paths.inbox_new, paths.inbox_cur
        self.done_dir = paths.inbox_done
        # Plain strings on the hot paths: pathlib joins cost more than the syscalls.
        self._tmp_s, self._new_s, self._cur_s, self._done_s = (
            f"{d}/" for d in (self.tmp, self.new, self.cur, self.done_dir))
        self._queue: list[str] = []  # names from the last scan, newest first (pop() = oldest)
        self._seen: set[str] = set()  # every message name the last scan met
        self._days: set[str] = set()  # the day folders of done/ this handle made sure of
        # The ids of the day folder of done/ last built, from first to end, and its path:
        # mail comes in id order, so most ids fall in the same day as the one before.
        self._span = ("", "", "")
        # What this handle claimed and has not finished: the message if it asks for a
        # receipt, else None (so done(id) needs no read to know), its path in done/ and
        # that path's folder (built once, by the claim's done check), and the ctime the
        # claim's file had when this handle last set it (by the claim, or a renewal).
        self._claims: dict[str, tuple[Message | None, str, str, int]] = {}
        self._bell: Doorbell | None = None  # what wait() waits on, kept between calls
        # The last lease sweep of this handle (wall clock, ns) and the earliest time a claim
        # in cur/ can have run out since (see _sweep_if_due).
        self._swept_at = 0
        self._sweep_due = 0

    def __repr__(self) -> str:
        return f"<Inbox {self.agent} at {self.path}>"

    # -- where is it ----------------------------------------------------------------------

    def _done_path(self, msg_id: str) -> str:
        return f"{self._done_folder(msg_id)}/{msg_id}.json"

    def _done_folder(self, msg_id: str) -> str:
        """The day folder of ``done/`` a checked ``msg_id`` goes to (two string comparisons
        while the ids stay in one day)."""
        first, end, folder = self._span
        if first <= msg_id < end:
            return folder
        day, first, end = day_span(msg_id)
        folder = f"{self._done_s}{day}"
        self._span = (first, end, folder)
        return folder

    def _places(self, msg_id: str) -> tuple[tuple[State, str], ...]:
        name = f"{names.check_id(msg_id)}.json"
        return ((State.NEW, self._new_s + name), (State.CLAIMED, self._cur_s + name),
                (State.DONE, self._done_path(msg_id)))

    def state_of(self, msg_id: str) -> State:
        """Where ``msg_id`` is in this inbox: three ``stat`` calls at most."""
        found = self.path_of(msg_id)
        return found[0] if found else State.ABSENT

    def is_done(self, msg_id: str) -> bool:
        """True if ``done/`` holds ``msg_id`` (one ``stat``)."""
        return self._disk.lstat(self._done_path(names.check_id(msg_id))) is not None

    def path_of(self, msg_id: str) -> tuple[State, Path] | None:
        for state, path in self._places(msg_id):
            if self._disk.lstat(path) is not None:
                return state, Path(path)
        return None

    # -- delivery ----------------------------------------------------------------------------

    def deliver(self, msg_id: str, data: bytes, *, fresh: bool = False) -> bool:
        """Store one encoded message; False if this inbox already holds ``msg_id``.

        Exclusive create in ``tmp/``, write, fsync (policy), then one rename that never
        replaces into ``new/`` (EEXIST = already delivered: the staged file is removed),
        fsync ``new/`` (policy). PROTOCOL.md §9.1.

        Args:
            fresh: The id was minted by this send and never used before, so no inbox
                can hold it yet: the look into ``cur/`` and ``done/`` is skipped.
        """
        if not fresh and self._held_beyond_new(msg_id):
            return False
        staged = self._disk.stage(self._tmp_s, data, staging_name(msg_id))
        faults.hit("send.staged")
        published = self._disk.place(staged, f"{self._new_s}{msg_id}.json")
        if published:
            faults.hit("send.published")
            self._disk.fsync_dir(self.new)
        return published

    def publish_staged(self, staged: str, msg_id: str) -> bool:
        """Second half of a batched delivery: move an already-synced staged file into
        ``new/`` (False, the staged file removed, if ``new/`` holds ``msg_id`` already)."""
        return self._disk.place(staged, f"{self._new_s}{msg_id}.json")

    def stage(self, msg_id: str, data: bytes, *, fresh: bool = False) -> str | None:
        """First half of a batched delivery: stage without fsync; None if already held."""
        if not fresh and self._held_beyond_new(msg_id):
            return None
        return self._disk.stage(self._tmp_s, data, staging_name(msg_id), sync=False)

    def _held_beyond_new(self, msg_id: str) -> bool:
        # cur/ before done/: a message only moves cur -> done, so checking in this
        # order cannot miss one that moves between the two stats. A copy that still
        # slips into new/ is caught by claim (see _take).
        return (self._disk.exists(f"{self._cur_s}{msg_id}.json")
                or self._disk.exists(self._done_path(msg_id)))

    # -- listing (never mutates) -------------------------------------------------------------

    def ids(self, state: State = State.NEW) -> builtins.list[str]:
        """Message ids in one state, oldest first. Foreign names are skipped.

        ``State.DONE`` lists every day shard of ``done/``: a full listing, for tools
        and checks, never for the send or claim path.
        """
        if state is State.DONE:
            return sorted(e.name[:-5] for day in self._disk.scan(self.done_dir)
                          if day.is_dir(follow_symlinks=False)
                          for e in self._disk.scan(day.path) if names.is_message_file(e.name))
        return sorted(e.name[:-5] for e in self._disk.scan(self._folder(state))
                      if names.is_message_file(e.name))

    def _folder(self, state: State) -> Path:
        folders = {State.NEW: self.new, State.CLAIMED: self.cur}
        if state not in folders:
            raise InvalidInput(f"no folder for state {state}")
        return folders[state]

    def list(self, state: State = State.NEW) -> builtins.list[Message]:
        """Messages in one state (default unread), oldest first.

        Changes nothing; skips bad files."""
        out = []
        for msg_id in self.ids(state):
            folder = (self.done_dir / day_of(msg_id) if state is State.DONE
                      else self._folder(state))
            msg = self._peek(folder, msg_id)
            if msg is not None:
                out.append(msg)
        return out

    def count(self, state: State = State.NEW) -> int:
        """How many messages are in one state (a listing of that folder)."""
        if state is State.DONE:
            return len(self.ids(state))
        return sum(1 for e in self._disk.scan(self._folder(state)) if names.is_message_file(e.name))

    def problems(self) -> builtins.list[str]:
        """Names in ``new/`` that are not messages (claim or ``doctor`` quarantines them)."""
        return sorted(e.name for e in self._disk.scan(self.new)
                      if not names.is_message_file(e.name))

    def get(self, msg_id: str) -> Message:
        """Read ``msg_id`` in whatever state it is, without changing anything."""
        found = self.path_of(msg_id)
        msg = self._peek(found[1].parent, msg_id) if found else None
        if msg is None:
            raise MessageNotFound(msg_id, f"the inbox of {self.agent}")
        return msg

    def _peek(self, folder: Path, msg_id: str) -> Message | None:
        """The message at ``folder``, or None for what a claim would refuse (listing
        shows only what a reader can be handed: a hard link from elsewhere is skipped)."""
        path = folder / layout.message_file(msg_id)
        try:
            data, st = self._disk.read(path, self._root.config.max_message_bytes)
        except (FileNotFoundError, Foreign):
            return None
        return self._readable(msg_id, data, st, path)

    def _readable(self, msg_id: str, data: bytes, st: os.stat_result, path: Path | str
                  ) -> Message | None:
        """The message ``data`` read at ``path`` holds, or None for a hard link from
        elsewhere or a file that is not ``msg_id``'s message."""
        if st.st_nlink > 1 and not self._is_own_staging(msg_id, st, path):
            return None
        try:
            return decode(data, expected_id=msg_id)
        except Malformed:
            return None

    # -- claim ---------------------------------------------------------------------------------

    def claim(self, msg_id: str | None = None) -> Message | None:
        """Claim the oldest unread message (or ``msg_id``); None if there is none.

        Among competing readers exactly one wins each message; the others move on.
        Bad files met on the way are quarantined with a reason.
        """
        if msg_id is not None:
            return self._take(f"{names.check_id(msg_id)}.json")
        if self._queue:  # the usual case: the first step of the loop below, without the loop
            msg = self._take(self._queue.pop())
            if msg is not None:
                return msg
        for _ in range(2):
            if not self._queue and not self._refill():
                return None  # new/ is empty: scanning it again at once finds nothing more
            while self._queue:
                msg = self._take(self._queue.pop())
                if msg is not None:
                    return msg
        return None

    def _refill(self) -> bool:
        """Queue the names in ``new/`` that are safe to take in id order; False if the last
        scan found ``new/`` empty.

        A directory listing is not a snapshot: a file linked while the scan runs can
        be missed while a later one from the same sender is met. So a name is taken
        only once two scans in a row met it, and only if it sorts before every name
        the second scan met first; then each older message of its sender was already
        in ``new/`` for the whole second scan, and is queued ahead of it.
        """
        self._sweep_if_due()
        for _ in range(2):
            current = self._scan_new()
            fresh, self._seen = current - self._seen, current
            limit = min(fresh, default="~")  # "~" sorts after every id
            # Every fresh name is >= limit, so "below the limit" also means "met twice"
            # (and no set difference copies a backlog of 100,000 names once more).
            self._queue = sorted((n for n in current if n < limit), reverse=True)
            if self._queue or not fresh:
                break
        return bool(current)

    def _scan_new(self) -> set[str]:
        seen = self._seen  # names the last scan found well formed already
        is_message = names.is_message_file
        listed = self._disk.names(self.new)
        found = {name for name in listed if name in seen or is_message(name)}
        if len(found) < len(listed):  # a listing names each file once
            for name in listed:
                if name not in found:
                    self._dead.bury(Path(self._new_s + name), "foreign file name in new/ "
                                    "(not <id>.json)", agent=self.agent)
        return found

    def _take(self, name: str) -> Message | None:
        """Claim ``new/<name>``: one ``rename`` that never replaces; exactly one reader wins.

        ``OCCUPIED`` means ``cur/`` already holds another copy of this id (a retried
        send that raced a claim): this copy is left in ``new/`` untouched, and is settled
        when that claim is done (then it is a duplicate of finished work) or given back
        (then it is the unread copy). Nothing here ever acts on a file it did not move.
        """
        src, dest = self._new_s + name, self._cur_s + name
        before = time.time_ns()
        if self._disk.move(src, dest) is not MOVED:
            return None
        faults.hit("claim.moved")
        msg_id = name[:-5]
        folder = self._done_folder(msg_id)
        done = f"{folder}/{name}"
        if self._disk.lstat(done) is not None:
            self._settle(msg_id, done, _DONE_BEFORE)
            return None
        loaded = self._load_claimed(dest, msg_id, before)
        if loaded is None:
            return None
        msg, changed = loaded
        self._root.clock.observe(stamp_of(msg_id))
        self._root.journal.record_fields("claim", {"agent": self.agent, "id": msg_id,
                                                   "epoch": self._epoch()})
        self._remember(msg, done, folder, changed)
        if msg.receipt and self._notify:
            self._tell(msg, "read")
        return msg

    def _settle(self, msg_id: str, dest: str, duplicate: str, new_folder: bool = False
                ) -> Moved:
        """Move the claim ``cur/<msg_id>.json`` to ``dest`` (``done/`` or ``new/``).

        If ``dest`` is held by another copy of the id, ours is the redundant one: it is
        first moved to a hold name only this process uses, moved to ``dest`` once more
        (the other copy may have moved on meanwhile), and quarantined as ``duplicate``
        only if ``dest`` is still held. Every decision rests on the atomic outcome of a
        rename by the process that owns the file, never on a look at a name another
        process may change (see PROTOCOL.md §9.3: settling a claim).

        Returns ``MOVED`` (ours is at ``dest``), ``GONE`` (no longer ours: another reader
        released, finished or settled it; with ``new_folder``, or the folder of ``dest``
        does not exist) or ``OCCUPIED`` (ours was quarantined).
        """
        cur = f"{self._cur_s}{msg_id}.json"
        moved = self._disk.move(cur, dest, new_folder)
        if moved is not OCCUPIED:
            return moved
        hold = f"{self._cur_s}{HOLD_PREFIX}{staging_name(msg_id)}"
        if self._disk.move(cur, hold) is not MOVED:
            return GONE
        faults.hit("settle.held")
        return self.settle_hold(hold, dest, duplicate)

    def settle_hold(self, hold: str, dest: str, duplicate: str) -> Moved:
        """Second half of :meth:`_settle`, for a copy under a hold name (``doctor`` finishes
        the holds of a process that died with :meth:`recover_hold`)."""
        moved = self._disk.move(hold, dest)
        if moved is OCCUPIED:
            self._dead.bury(hold, duplicate, recorded_name=os.path.basename(dest),
                            agent=self.agent)
        return moved

    def recover_hold(self, name: str) -> Moved:
        """Give a hold left by a process that died back to ``new/`` (or quarantine it as a
        duplicate if ``new/`` holds the id): first taken to a hold name of our own, so
        two recoveries never act on one file."""
        msg_id = hold_id(name)
        if msg_id is None:
            raise InvalidInput(f"not a hold name: {names.as_text(name)}")
        ours = f"{self._cur_s}{HOLD_PREFIX}{staging_name(msg_id)}"
        if self._disk.move(self._cur_s + name, ours) is not MOVED:
            return GONE
        return self.settle_hold(ours, f"{self._new_s}{msg_id}.json",
                                "duplicate delivery of a message already unread")

    def _load_claimed(self, path: str, msg_id: str, before: int) -> tuple[Message, int] | None:
        """Start the lease of the claim at ``path``, then read and check the message; with
        it, the claimed file's ctime once the lease is started.

        One open file serves every step: its ``fstat`` shows a second link (a file
        planted from elsewhere, quarantined *before* the lease is set, since setting
        it would change the modification time of that other file too) and whether the
        claiming rename (made just after ``before``) already started the lease; if not,
        the lease is set on it; and it is read.
        """
        limit = self._root.config.max_message_bytes
        try:
            fd, st = self._disk.open_regular(path, limit)
        except FileNotFoundError:
            return None
        except Foreign as exc:
            self._dead.bury(path, exc.reason, agent=self.agent)
            return None
        try:
            if st.st_nlink > 1 and not self._is_own_staging(msg_id, st, path):
                now = self._disk.lstat(path)
                # Still the file we opened, not moved since (a release and a new claim
                # would have changed its ctime): only then is the name ours to quarantine.
                if now is not None and same_file(now, st) and now.st_ctime_ns == st.st_ctime_ns:
                    self._dead.bury(path, "hard link to a file elsewhere (not written "
                                    "through tmp/)", agent=self.agent)
                return None
            changed = st.st_ctime_ns
            if not lease_set_by_rename(st, before):
                self._disk.touch_open(fd, path)  # the lease starts now
                changed = os.fstat(fd).st_ctime_ns
            faults.hit("claim.taken")
            data = read_open(fd, st, limit)
        except Foreign as exc:
            self._dead.bury(path, exc.reason, agent=self.agent)
            return None
        finally:
            os.close(fd)
        try:
            msg = decode(data, expected_id=msg_id)
        except Malformed as exc:
            self._dead.bury(path, exc.reason, agent=self.agent)
            return None
        if msg.expired():
            self._dead.bury(path, "expired", agent=self.agent, expires_at=msg.expires_at)
            return None
        return msg, changed

    def _is_own_staging(self, msg_id: str, st: os.stat_result, path: str | Path | None = None
                        ) -> bool:
        """A second link is legitimate only while the sender's tmp name still exists.

        The sender unlinks that name right after publishing, maybe while we look for
        it: if ``path`` is down to one link once we looked, the other was the tmp name.
        A sender's file has exactly two names then (the tmp name and ours); a third
        means a name elsewhere, whatever ``tmp/`` holds.
        """
        if st.st_nlink != 2:
            return False
        for entry in self._disk.scan(self.tmp):
            if entry.name.startswith(msg_id):
                other = self._disk.lstat(Path(entry.path))
                if other is not None and same_file(other, st):
                    return True
        now = self._disk.lstat(path) if path is not None else None
        return now is not None and now.st_nlink == 1

    # -- done / release / lease ---------------------------------------------------------------

    def done(self, msg: Message | str) -> bool:
        """Mark a claimed message done (its DONE marker). False if it already was.

        The day folder of ``done/`` is created only for a claim there to move into it: a
        done of an id that is not claimed (unread, done already, or not here) creates none.
        """
        given = msg.id if isinstance(msg, Message) else msg
        # Every id this handle remembers was checked when it was claimed.
        known = self._claims.pop(given, None) if type(given) is str else None
        if known is None:
            msg_id = _id_of(msg)
            claimed, folder = _UNKNOWN, self._done_folder(msg_id)
            dest = f"{folder}/{msg_id}.json"
        else:
            msg_id, (claimed, dest, folder, _) = given, known
        if folder in self._days:
            moved = self._settle(msg_id, dest, _DONE_BEFORE)
        else:
            moved = self._settle(msg_id, dest, _DONE_BEFORE, True)
            if moved is GONE and self._day_folder_for(folder, msg_id):
                moved = self._settle(msg_id, dest, _DONE_BEFORE)
            if moved is not GONE:
                self._days.add(folder)
        if moved is GONE:
            return self._expect(msg_id, State.DONE)
        if moved is OCCUPIED:
            return False  # another copy was done already; ours went to dead/
        faults.hit("done.moved")
        self._syncs.fsync_dir(folder)
        self._root.journal.record_fields("done", {"agent": self.agent, "id": msg_id,
                                                  "epoch": self._epoch()})
        if self._notify:
            # Done by id (the CLI does this) must still honour a requested receipt.
            finished = (msg if isinstance(msg, Message) else claimed
                        if claimed is not _UNKNOWN else self._asks_receipt(folder, msg_id))
            if isinstance(finished, Message) and finished.receipt:
                self._tell(finished, "done")
        return True

    def _day_folder_for(self, folder: str, msg_id: str) -> bool:
        """After a done found nothing to move into a day folder of ``done/`` this handle has
        not seen: make sure ``folder`` exists for the claim ``cur/<msg_id>.json``, creating
        it only while that claim is there (a done of an id not claimed leaves no trace).

        False if the folder is missing and there is no claim to move into it; True when
        moving again may succeed (the folder exists, or it was missing when the move
        failed and someone made it since).
        """
        if self._disk.lstat(folder) is None:
            if self._disk.lstat(f"{self._cur_s}{msg_id}.json") is None:
                return False
            self._disk.ensure_dir(Path(folder))
        return True

    def finish(self, msg_id: str) -> None:
        """Mark ``msg_id`` done, claiming it first if it is still unread (done already is fine)."""
        if self.state_of(msg_id) is State.NEW:
            self.claim(msg_id)
        self.done(msg_id)

    def unclaimable(self, msg_id: str) -> MailboxError | None:
        """Why a claim of ``msg_id`` by id found nothing to claim: claimed, done, or not
        here (None when it is unread after all)."""
        state = self.state_of(msg_id)
        if state is State.CLAIMED:
            until = self.lease_end(msg_id)
            return Conflict(f"{msg_id} is claimed already, by an instance of {self.agent}"
                            + (f", until {iso(until)}" if until else ""),
                            hint=f"finish it: mailbox done {msg_id}; or give it back: "
                                 f"mailbox release {msg_id}")
        if state is State.DONE:
            return Conflict(f"{msg_id} is done already", hint=f"see mailbox status {msg_id}")
        if state is State.ABSENT:
            return MessageNotFound(msg_id, f"the inbox of {self.agent}")
        return None

    def _remember(self, msg: Message, done: str, folder: str, changed: int) -> None:
        """Note a claim of this handle, its path in ``done/`` and that path's folder
        (bounded: a claim someone else finished is forgotten in time), so that ``done(id)``
        knows without a read whether a receipt is asked."""
        claims = self._claims
        if len(claims) >= _CLAIMS_REMEMBERED:
            del claims[next(iter(claims))]
        claims[msg.id] = (msg if msg.receipt else None, done, folder, changed)

    def _asks_receipt(self, folder: str, msg_id: str) -> Message | None:
        """The finished message at ``folder`` if it asks for a receipt (a claim this handle
        did not make).

        The text is decoded only if it may ask for one. Without a backslash every ``"``
        in JSON text delimits a string as written, so a text with no backslash and one
        ``"receipt"``, followed by ``:false`` (how every writer of ours spells no
        receipt), has no other field of that name at any depth: it asks for none.
        """
        path = f"{folder}/{msg_id}.json"
        try:
            data, st = self._disk.read(path, self._root.config.max_message_bytes)
        except (FileNotFoundError, Foreign):
            return None
        if b"\\" not in data and (data.count(b'"receipt"') == 0 or (
                data.count(b'"receipt"') == 1 and b'"receipt":false' in data)):
            return None
        msg = self._readable(msg_id, data, st, path)
        return msg if msg is not None and msg.receipt else None

    def release(self, msg: Message | str, reason: str = "released") -> bool:
        """Give a claimed message back to ``new/``. False if it was not claimed.

        If ``new/`` already holds another copy of the id, that copy is the unread one
        and this claim's copy is quarantined as a duplicate: either way the id is unread.
        Made with the inbox's lease lock held (``run/lease.lock``), as every release is,
        so a sweep that found a claim expired releases it before anyone can claim it
        again; a release of an id that is not claimed changes nothing. A claim this
        handle made whose lease ran out and that another reader has claimed again since
        is that reader's: it is left claimed, and this returns False.
        """
        msg_id = _id_of(msg)
        if self._disk.lstat(f"{self._cur_s}{msg_id}.json") is None:  # no lock file made
            self._claims.pop(msg_id, None)
            return self._expect(msg_id, State.NEW)
        with agent_lock(self._root, self.agent, "lease", timeout=LEASE_LOCK_SECONDS):
            mine = self._claims.get(msg_id)
            if mine is not None and self._claimed_again(msg_id, mine[3]):
                del self._claims[msg_id]
                return False
            return self._release(msg_id, reason)

    def _claimed_again(self, msg_id: str, changed: int) -> bool:
        """Whether ``cur/<msg_id>.json``, which this handle claimed (or renewed) leaving
        ctime ``changed``, has changed since its lease ran out: then a sweep gave it back
        and another reader claimed it again, and that claim is not this handle's. (A
        change within the lease is the sender's staging name going, never a new claim.)"""
        st = self._disk.lstat(f"{self._cur_s}{msg_id}.json")
        lease_ns = int(self._root.config.lease_seconds * 1e9)
        return (st is not None and st.st_ctime_ns != changed
                and st.st_ctime_ns - changed >= lease_ns - _CLOCK_TICK_NS)

    def _release(self, msg_id: str, reason: str) -> bool:
        """:meth:`release`, with the lease lock held."""
        self._claims.pop(msg_id, None)
        moved = self._settle(msg_id, f"{self._new_s}{msg_id}.json",
                             "duplicate delivery of a message already unread")
        if moved is GONE:
            return self._expect(msg_id, State.NEW)
        faults.hit("release.moved")
        self._root.journal.record("release", agent=self.agent, id=msg_id, reason=reason)
        return True

    def release_expired(self, msg_ids: builtins.list[str], lease_ns: int
                        ) -> tuple[builtins.list[str], int] | None:
        """Release those of ``msg_ids`` whose claims have run out (a lease of ``lease_ns``),
        each judged by a look at ``cur/<id>.json`` taken with the lease lock held:
        (the ids released, one past the earliest end of a lease still running), or None
        if another process holds the lock (it is releasing claims of this inbox now).

        With the lock held no claim leaves ``cur/`` for ``new/`` but by this call, so the
        claim found expired is the one released: a reader that claimed the message again
        after an earlier look (another sweep released it meanwhile) keeps its claim.
        """
        try:
            with agent_lock(self._root, self.agent, "lease", timeout=0):
                return self._release_looked_again(msg_ids, lease_ns)
        except LockTimeout:
            return None

    def _release_looked_again(self, msg_ids: builtins.list[str], lease_ns: int
                              ) -> tuple[builtins.list[str], int]:
        """:meth:`release_expired` with the lease lock held."""
        now = time.time_ns()
        due = now + lease_ns
        released = []
        for msg_id in msg_ids:
            st = self._disk.lstat(f"{self._cur_s}{msg_id}.json")
            # A claim with a second link is no claim of ours: a version 1 half-claim (or a
            # planted link), settled by doctor; releasing it would give it a name in dead/.
            if st is None or st.st_nlink != 1:
                continue
            ends = lease_start(st, now, lease_ns) + lease_ns
            if ends >= now:
                due = min(due, ends + 1)
                continue
            try:
                if self._release(msg_id, "lease expired"):
                    released.append(msg_id)
            except MessageNotFound:
                pass  # gone from every folder since the look (doctor quarantined it)
        return released, due

    def renew(self, msg: Message | str) -> bool:
        """Extend the lease of a claimed message (start it again now). False if it is no
        longer claimed."""
        msg_id = _id_of(msg)
        path = f"{self._cur_s}{msg_id}.json"
        if not self._disk.touch(path):
            return False
        mine = self._claims.get(msg_id)
        st = None if mine is None else self._disk.lstat(path)
        if mine is not None and st is not None:
            self._claims[msg_id] = (*mine[:3], st.st_ctime_ns)
        return True

    def lease_end(self, msg_id: str) -> int | None:
        """When the claim of ``msg_id`` returns to unread mail unless done, renewed or
        released (ns since the epoch); None if it is not claimed."""
        st = self._disk.lstat(f"{self._cur_s}{names.check_id(msg_id)}.json")
        if st is None:
            return None
        lease_ns = int(self._root.config.lease_seconds * 1e9)
        return lease_start(st, time.time_ns(), lease_ns) + lease_ns

    def _expect(self, msg_id: str, wanted: State) -> bool:
        state = self.state_of(msg_id)
        if state is State.ABSENT:
            raise MessageNotFound(msg_id, f"the inbox of {self.agent}")
        if state is State.NEW and wanted is State.DONE:
            raise MessageNotFound(msg_id, f"the claimed mail of {self.agent} (claim it first)")
        return False

    def _tell(self, msg: Message, state: str) -> None:
        """Send the receipt a sender asked for; best effort (the transition already happened)."""
        if self._notify is None:
            return
        try:
            self._notify(msg, state, self.agent)
        except MailboxError as exc:
            import logging  # here: ~5 ms of every command's startup, for this one rare line

            logging.getLogger(__name__).warning(
                "receipt not sent", extra={"id": msg.id, "state": state, "error": str(exc)})

    def requeue_expired(self, lease_seconds: float | None = None) -> builtins.list[str]:
        """Release every claim older than the lease; returns their ids.

        A claim's age counts from :func:`lease_start`: the newer of its mtime (set when
        the lease starts or is renewed) and its ctime (changed by the claiming rename
        itself), so a claim taken a moment ago is never mistaken for an old one whose
        lease was not set yet, and a time in the far future does not hold it for ever.
        """
        root_lease = self._root.config.lease_seconds
        lease = root_lease if lease_seconds is None else lease_seconds
        lease_ns = int(lease * 1e9)
        now = time.time_ns()
        # No claim made from now on can run out before this (its rename sets its ctime
        # to now, give or take one tick of the kernel's coarse clock).
        due = now + lease_ns - _CLOCK_TICK_NS
        candidates = []
        for entry in self._disk.scan(self.cur):
            if not names.is_message_file(entry.name):
                continue
            st = self._disk.lstat(self._cur_s + entry.name)
            if st is None:
                continue
            ends = lease_start(st, now, lease_ns) + lease_ns
            if ends >= now:
                due = min(due, ends + 1)
            elif st.st_nlink == 1:  # the rest: see release_expired
                candidates.append(entry.name[:-5])
        expired: builtins.list[str] = []
        if candidates:
            outcome = self.release_expired(candidates, lease_ns)
            if outcome is None:
                return []  # another process releases claims now; the next refill looks again
            expired, running = outcome
            due = min(due, running)
        if lease == root_lease:
            self._swept_at, self._sweep_due = now, due
        return expired

    def _sweep_if_due(self) -> None:
        """Release expired claims before a refill, if one may have run out since the last
        sweep: O(1) in the number of claims in flight until then.

        The last sweep saw every claim in ``cur/`` and when each one's lease ends; a
        claim made after it ends at least one lease after it, and a renewal only moves an
        end later. So no claim can have run out before the earliest of those ends, and
        until then a refill skips the sweep. A wall clock that stepped back (now before
        the last sweep) sweeps at once, as every refill did before.
        """
        now = time.time_ns()
        if not self._swept_at <= now < self._sweep_due:
            self.requeue_expired()

    @contextlib.contextmanager
    def processing(self, msg_id: str | None = None) -> Iterator[Message | None]:
        """Claim a message for a block: done if the block succeeds, released if it raises."""
        msg = self.claim(msg_id)
        try:
            yield msg
        except BaseException:
            if msg is not None:
                self.release(msg, reason="processing failed")
            raise
        if msg is not None:
            self.done(msg)

    # -- waiting (watchdog wake-ups; see watch.py) ----------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until unread mail is present; returns at once if some already is.

        When it has to wait, it waits on an inotify descriptor this handle keeps
        between calls (no thread; :meth:`close`, or ``Mailbox.close()``, closes it), so
        a loop of ``wait()`` and ``claim()`` wakes as fast as :meth:`watch`.

        Args:
            timeout: Seconds to wait at most; None waits for ever.

        Returns:
            True when unread mail is present, False if ``timeout`` passed first.
        """
        from .watch import wait_for_mail

        return wait_for_mail(self.new, timeout, disk=self._disk, bell=self._kept_bell())

    def close(self) -> None:
        """Close what :meth:`wait` keeps between calls (one inotify descriptor)."""
        if self._bell is not None:
            self._bell.close()

    def claim_next(self, timeout: float | None = None,
                   stop: threading.Event | None = None) -> Message | None:
        """Claim the oldest unread message, waiting for one to arrive if there is none.

        Mail already there is claimed without starting a watch; otherwise it waits on
        the handle's doorbell (as :meth:`watch` does: woken by the arrival, never polling).

        Args:
            timeout: Seconds to wait at most; None waits for ever, 0 not at all.
            stop: Ends the wait once set.

        Returns:
            The claimed message (the caller marks it done or releases it), or None if
            ``timeout`` passed (or ``stop`` was set) first.
        """
        msg = self.claim()
        if msg is not None or (timeout is not None and timeout <= 0):
            return msg
        # watch() is a generator: closing it gives the doorbell back at once.
        waiting = cast(Generator[Message, None, None],
                       self.watch(stop=stop, timeout=timeout, heartbeat=False))
        try:
            return next(waiting, None)
        finally:
            waiting.close()

    def watch(self, stop: threading.Event | None = None, timeout: float | None = None,
              heartbeat: bool = True) -> Iterator[Message]:
        """Claim and yield each message as it arrives, oldest first::

            for msg in inbox.watch(stop=stop_event):
                handle(msg)
                inbox.done(msg)        # or inbox.release(msg) to give it back

        Every yielded message is already *claimed*: the caller marks it done or
        releases it (an unfinished claim returns to ``new/`` when its lease expires).
        Watching starts before the first scan, and the directory is scanned again
        every few seconds whatever the events say, so no delivery is missed.

        Args:
            stop: Ends the loop once set (checked between messages and while idle).
            timeout: Ends the loop after this many seconds without a message.
            heartbeat: Record this agent's presence every ``heartbeat_seconds / 3``.

        It waits on the inotify descriptor :meth:`wait` keeps (no thread), so a loop of
        :meth:`claim_next` opens one for all its calls; :meth:`close` closes it.
        """
        from .watch import watch_inbox

        return watch_inbox(self, self._root, stop=stop, timeout=timeout, heartbeat=heartbeat,
                           bell=self._kept_bell())

    def _kept_bell(self) -> Doorbell:
        """The doorbell this handle keeps between waits (made on first use)."""
        from .watch import Doorbell

        if self._bell is None:
            self._bell = Doorbell(self.new)
        return self._bell


def _id_of(msg: Message | str) -> str:
    """The id of ``msg`` (a message or an id), checked: anything else is InvalidInput."""
    return names.check_id(msg.id if isinstance(msg, Message) else msg)
