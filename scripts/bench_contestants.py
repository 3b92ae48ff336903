"""The message stores under test, one class each, behind a common interface.

A contestant is built from `(root, fsync)` in any process, so child processes can
rebuild it from the class and those two values. The parent calls `create()` once;
every process that uses the store calls `open()` first and `close()` at the end.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
from bench_linux import Inotify, fsync_dir, syncfs

from agentmailbox.fs import _rename_noreplace  # the very renameat2 call the library makes

POLICIES = ("always", "batch", "never")
BATCH_SIZE = 100
POLL_S = 0.05
JOURNAL_GROUP_S = 0.010  # as agentmailbox.journal.DELAY
GROUP = ("g1", "g2", "g3")
FILE_MODE = 0o644
MAILDIR_KEY = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)")


def chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Yield consecutive slices of `items` holding at most `size` elements."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def write_file(path: str, data: bytes, *, sync: bool = False) -> None:
    """Exclusively create `path` holding `data`, optionally fsyncing it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: str) -> bytes:
    """Read the whole file at `path` with plain os calls."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class Contestant:
    """A message store under test.

    Subclasses implement `send` and `receive`; everything else has a default.
    `policies` maps each fsync policy the store can honour to a note on how.
    """

    name: ClassVar[str] = "?"
    policies: ClassVar[dict[str, str]] = {}
    native: ClassVar[str] = "never"
    workloads: ClassVar[frozenset[str] | None] = None
    wake: ClassVar[str] = f"poll {POLL_S * 1000:.0f} ms"
    router: ClassVar[str | None] = None
    """How W6 routing is done (None: the store has no routing, W6 is n/a)."""
    module: ClassVar[str | None] = None

    def __init__(self, root: Path, fsync: str) -> None:
        self.root = Path(root)
        self.fsync = fsync

    @classmethod
    def available(cls) -> bool:
        """Whether the store's package can be imported here."""
        return cls.module is None or importlib.util.find_spec(cls.module) is not None

    @classmethod
    def enters(cls, case_id: str) -> bool:
        """Whether workload `case_id` lists this store at all."""
        return cls.workloads is None or case_id in cls.workloads

    @classmethod
    def skip_reason(cls, case_id: str) -> str | None:
        """Why this store cannot do workload `case_id` ("n/a" row), or None."""
        if case_id == "W6" and cls.router is None:
            return "no routing to groups"
        if case_id == "IDLE" and not hasattr(cls, "idle_watch"):
            return "no way to wait on many inboxes"
        if case_id == "W7" and cls.hold is Contestant.hold:
            return "no claim: nothing is ever in flight"
        if case_id == "SYS":
            import bench_syscalls

            return bench_syscalls.strace_missing()
        return None

    @classmethod
    def policy_for(cls, wanted: str, *, exact: bool) -> str | None:
        """The fsync policy to run with: `wanted`, else the native one unless `exact`."""
        if wanted in cls.policies:
            return wanted
        return None if exact else cls.native

    def create(self) -> None:
        """Create an empty store under `root` (once, in the parent)."""
        self.root.mkdir(parents=True, exist_ok=True)

    def open(self) -> None:
        """Open the store for use by the current process."""

    def close(self) -> None:
        """Release what `open` acquired."""

    def send(self, msg: dict[str, Any]) -> None:
        """Deliver one message to the inbox."""
        raise NotImplementedError

    def send_batch(self, msgs: list[dict[str, Any]]) -> None:
        """Deliver a group of messages; stores with group commit override this."""
        for msg in msgs:
            self.send(msg)

    def send_many(self, msgs: list[dict[str, Any]]) -> None:
        """Deliver `msgs` in groups of BATCH_SIZE."""
        for group in chunked(msgs, BATCH_SIZE):
            self.send_batch(group)

    def receive(self) -> dict[str, Any] | None:
        """Claim the oldest message, parse it, mark it done; None when empty."""
        raise NotImplementedError

    def drain(self, n: int) -> list[dict[str, Any]]:
        """Receive up to `n` messages, stopping early when the inbox is empty."""
        got = []
        while len(got) < n and (msg := self.receive()) is not None:
            got.append(msg)
        return got

    def hold(self, n: int) -> None:
        """W7 set-up: claim `n` messages and keep them in flight (never finished)."""
        raise NotImplementedError

    def watch(self) -> None:
        """Prepare to `wait` for new messages (before any are expected)."""

    def wait(self, timeout: float) -> None:
        """Block until a new message may have arrived (at most `timeout` s)."""
        time.sleep(max(0.0, min(POLL_S, timeout)))

    def collect(self, n: int, idle_s: float) -> list[int]:
        """W4: receive `n` messages as they come, waking by `wait`; latencies in ns.

        Stops early after `idle_s` seconds without a message.
        """
        latencies: list[int] = []
        idle_since = time.monotonic()
        while len(latencies) < n and (left := idle_since + idle_s - time.monotonic()) > 0:
            msg = self.receive()
            if msg is None:
                self.wait(left)
            else:
                latencies.append(time.perf_counter_ns() - msg["t"])
                idle_since = time.monotonic()
        return latencies

    def prefill(self, msgs: list[dict[str, Any]]) -> None:
        """Untimed setup: put `msgs` in the inbox as pending messages."""
        self.send_many(msgs)

    def prefill_done(self, msgs: list[dict[str, Any]]) -> None:
        """Untimed setup: leave `msgs` in the store as done messages."""
        self.send_many(msgs)
        self.drain(len(msgs))


class Floor(Contestant):
    """Plain os calls doing the Maildir file dance and nothing else.

    send: create tmp/<name>, write, (fsync), rename to new/<name>, (fsync new/).
    receive: rename new/ -> cur/ (the claim), read + parse, rename cur/ -> done/.
    """

    name = "floor"
    policies: ClassVar[dict[str, str]] = {
        "always": "fsync file + new/ on send, done/ on receive",
        "batch": f"{BATCH_SIZE} tmp files, 1 syncfs, renames, 1 dir fsync; drain: "
                 f"{BATCH_SIZE} renames into done/, 1 done/ fsync",
        "never": "no fsync",
    }
    wake = "raw inotify"
    router = "router process: rename out of spool/new, one copy per member, raw inotify"
    dirs = ("tmp", "new", "cur", "done")

    def create(self) -> None:
        """Create tmp/, new/, cur/ and done/; for W6 also spool/ and three member inboxes."""
        for base in (self.root, self.root / "spool", *(self.root / m for m in GROUP)):
            for sub in self.dirs:
                (base / sub).mkdir(parents=True, exist_ok=True)

    def open(self) -> None:
        """Remember the folder paths; start the name counter."""
        self.tmp, self.new, self.cur, self.done = (str(self.root / d) for d in self.dirs)
        self.pending: deque[str] = deque()
        self.counter = itertools.count()
        self.pid = os.getpid()
        self.inotify: Inotify | None = None

    def close(self) -> None:
        """Drop the inotify watch if one was made."""
        if self.inotify is not None:
            self.inotify.close()

    def _new_name(self) -> str:
        return f"{time.time_ns():020d}.{self.pid}.{next(self.counter):08d}"

    def _stage(self, msg: dict[str, Any], sync: bool) -> str:
        name = self._new_name()
        write_file(f"{self.tmp}/{name}", orjson.dumps(msg), sync=sync)
        return name

    def _publish(self, name: str) -> None:
        os.rename(f"{self.tmp}/{name}", f"{self.new}/{name}")

    def send(self, msg: dict[str, Any]) -> None:
        """Stage, (fsync), publish, (fsync new/); batch policy commits a group of one."""
        if self.fsync == "batch":
            self.send_batch([msg])
            return
        always = self.fsync == "always"
        self._publish(self._stage(msg, sync=always))
        if always:
            fsync_dir(self.new)

    def send_batch(self, msgs: list[dict[str, Any]]) -> None:
        """Group commit under the batch policy; one by one otherwise."""
        if self.fsync != "batch":
            super().send_batch(msgs)
            return
        names = [self._stage(msg, sync=False) for msg in msgs]
        syncfs(self.tmp)
        for name in names:
            self._publish(name)
        fsync_dir(self.new)

    def receive(self) -> dict[str, Any] | None:
        """Receive one; under batch a receive alone is a batch of one (fsync done/)."""
        return self._receive(sync=self.fsync != "never")

    def drain(self, n: int) -> list[dict[str, Any]]:
        """Under batch: receive up to `n` without a folder fsync, then one for all."""
        if self.fsync != "batch":
            return super().drain(n)
        got = []
        while len(got) < n and (msg := self._receive(sync=False)) is not None:
            got.append(msg)
        self._end_drain(bool(got))
        return got

    def _end_drain(self, any_done: bool) -> None:
        if any_done:
            fsync_dir(self.done)

    def _receive(self, sync: bool) -> dict[str, Any] | None:
        """Claim by rename into cur/, read and parse, then rename into done/ (fsync it)."""
        name = self._claim()
        if name is None:
            return None
        msg = orjson.loads(read_file(f"{self.cur}/{name}"))
        os.rename(f"{self.cur}/{name}", f"{self.done}/{name}")
        if sync:
            fsync_dir(self.done)
        return msg  # type: ignore[no-any-return]

    def _claim(self) -> str | None:
        while self.pending or self._refill():
            name = self.pending.popleft()
            try:
                os.rename(f"{self.new}/{name}", f"{self.cur}/{name}")
                return name
            except FileNotFoundError:
                continue  # another reader claimed it first
        return None

    def _refill(self) -> bool:
        self.pending.extend(sorted(os.listdir(self.new)))
        return bool(self.pending)

    def hold(self, n: int) -> None:
        """Claim `n` by rename into cur/ and leave them there."""
        for _ in range(n):
            if self._claim() is None:
                raise RuntimeError("nothing to hold")

    def watch(self) -> None:
        """Watch new/ with raw inotify."""
        self.inotify = Inotify(self.new)

    def wait(self, timeout: float) -> None:
        """Block on the inotify descriptor (poll if `watch` was not called)."""
        if self.inotify is None:
            super().wait(timeout)
        else:
            self.inotify.wait(timeout)

    def prefill(self, msgs: list[dict[str, Any]]) -> None:
        """Write straight into new/ (same end state as `send` without fsync)."""
        self._write_all(self.new, msgs)

    def prefill_done(self, msgs: list[dict[str, Any]]) -> None:
        """Write straight into done/."""
        self._write_all(self.done, msgs)

    def _write_all(self, folder: str, msgs: Iterable[dict[str, Any]]) -> None:
        for msg in msgs:
            write_file(f"{folder}/{self._new_name()}", orjson.dumps(msg))

    # -- W6 routed: the same dance through a spool and a router process ------------------

    def _sub(self, name: str) -> Floor:
        store = Floor(self.root / name, self.fsync)
        store.open()
        return store

    def send_routed(self, msg: dict[str, Any]) -> None:
        """Post the message into spool/ like a send."""
        if not hasattr(self, "spool"):
            self.spool = self._sub("spool")
        self.spool.send(msg)

    def group_new_dirs(self) -> list[str]:
        """The new/ folders of the three members."""
        return [str(self.root / m / "new") for m in GROUP]

    def route_forever(self, stop: Any) -> None:
        """Child process: claim each spool file by rename, give every member its own
        copy (stage, (fsync), rename into new/, (fsync new/)), remove the spool file."""
        spool = self._sub("spool")
        members = [self._sub(m) for m in GROUP]
        watch = Inotify(spool.new)
        try:
            while not stop.is_set():
                for name in sorted(os.listdir(spool.new)):
                    self._route_one(spool, members, name)
                watch.wait(POLL_S)
        finally:
            watch.close()

    @staticmethod
    def _route_one(spool: Floor, members: list[Floor], name: str) -> None:
        try:
            os.rename(f"{spool.new}/{name}", f"{spool.cur}/{name}")
        except FileNotFoundError:
            return
        data = read_file(f"{spool.cur}/{name}")
        always = spool.fsync == "always"
        for member in members:
            write_file(f"{member.tmp}/{name}", data, sync=always)
            member._publish(name)
            if always:
                fsync_dir(member.new)
        os.unlink(f"{spool.cur}/{name}")

    def drain_group(self) -> int:
        """Receive everything in the three members' inboxes."""
        count = 0
        for member in GROUP:
            count += len(self._sub(member).drain(1 << 30))
        return count

    # -- memory -------------------------------------------------------------------------

    def idle_watch(self, folders: list[str]) -> Any:
        """One raw inotify descriptor watching every folder."""
        return Inotify(*folders)


class FloorPoll(Floor):
    """The floor with a reader that polls new/ every POLL_S instead of inotify."""

    name = "floor-poll"
    wake = Contestant.wake
    workloads = frozenset({"W4"})
    watch = Contestant.watch


class ProtocolFloor(Floor):
    """agentmailbox's system calls, in its order, with no library code around them.

    The gap between this and `floor` is what the protocol's extra steps cost; the gap
    between this and `agentmailbox` is the library's own Python. Per send: a journal
    line, exclusive create of a staging name, write, (fsync), rename-no-replace into
    new/ (renameat2), (fsync new/); registration is checked once per name, as the
    library's cache does, so no stat per send. Per receive: the two-scan refill, a
    rename-no-replace claim (renameat2), lstat of done/<day>/X, open, fstat (the
    claiming rename set the ctime, which starts the lease: no futimens), read, parse +
    re-encode check, a journal line, rename-no-replace into done/<day>/, (fsync the day
    folder), a journal line. Journal lines are held and written in one append once
    JOURNAL_GROUP_S has passed since the first, or at a chunk's end (the library writes
    a burst's lines DELAY after its first: journal.py).
    """

    name = "floor-protocol"
    policies: ClassVar[dict[str, str]] = {
        "always": "as agentmailbox: fsync file + new/ on send, done/<day>/ on done",
        "batch": f"as agentmailbox: {BATCH_SIZE} staged, 1 syncfs, renames, 1 new/ fsync; "
                 f"drain: {BATCH_SIZE} done, 1 day-folder fsync, 1 journal write",
        "never": "no fsync",
    }
    workloads = frozenset({"W1", "W2"})
    agents = ("alice", "bob")

    def create(self) -> None:
        """The floor's folders plus agents/<name>/agent.json and journal/."""
        super().create()
        (self.root / "done" / "day").mkdir(exist_ok=True)
        (self.root / "journal").mkdir(exist_ok=True)
        for agent in self.agents:
            (self.root / "agents" / agent).mkdir(parents=True, exist_ok=True)
            (self.root / "agents" / agent / "agent.json").touch()

    def open(self) -> None:
        """Open the journal for appending, as the library keeps it open."""
        super().open()
        self.day = f"{self.done}/day"
        self.registered = [f"{self.root}/agents/{a}{leaf}" for a in self.agents
                           for leaf in ("", "/agent.json")]
        for path in self.registered:  # once, as the library's registry cache does
            os.lstat(path)
        self.journal = os.open(f"{self.root}/journal/day.jsonl",
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.seen: frozenset[str] = frozenset()
        self.held: list[bytes] = []
        self.held_since = 0.0

    def close(self) -> None:
        """Write the held journal lines; close the journal."""
        self._write_held()
        os.close(self.journal)
        super().close()

    def _note(self, event: str, name: str) -> None:
        line = orjson.dumps({"t": time.time_ns(), "ev": event, "id": name},
                            option=orjson.OPT_APPEND_NEWLINE)
        now = time.monotonic()
        if not self.held:
            self.held_since = now
        self.held.append(line)
        if self.fsync != "batch" and now - self.held_since >= JOURNAL_GROUP_S:
            self._write_held()

    def _write_held(self) -> None:
        held, self.held = self.held, []
        if held:
            os.write(self.journal, b"".join(held))

    def send_many(self, msgs: list[dict[str, Any]]) -> None:
        """Send, then write the lines still held (a chunk's end)."""
        super().send_many(msgs)
        self._write_held()

    def send_batch(self, msgs: list[dict[str, Any]]) -> None:
        """Under batch, as `mb.batch()`: the journal lines go out in one write at the end."""
        super().send_batch(msgs)
        if self.fsync == "batch":
            self._write_held()

    def drain(self, n: int) -> list[dict[str, Any]]:
        """Receive, then write the lines still held (a chunk's end; under batch, as
        `mb.batch()`, the only write)."""
        got = super().drain(n)
        self._write_held()
        return got

    def _end_drain(self, any_done: bool) -> None:
        if any_done:
            fsync_dir(self.day)

    def _stage(self, msg: dict[str, Any], sync: bool) -> str:
        name = self._new_name()
        self._note("send", name)
        write_file(f"{self.tmp}/{name}", orjson.dumps(msg), sync=sync)
        return name

    def _publish(self, name: str) -> None:
        if _rename_noreplace(f"{self.tmp}/{name}".encode(), f"{self.new}/{name}".encode()):
            raise OSError(f"{name}: could not publish into new/")

    def _receive(self, sync: bool) -> dict[str, Any] | None:
        """Claim by rename-no-replace, check, lease, read, journal, settle into done/<day>/."""
        name = self._claim()
        if name is None:
            return None
        try:
            os.lstat(f"{self.day}/{name}")
        except FileNotFoundError:
            pass
        fd = os.open(f"{self.cur}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)
        finally:
            os.close(fd)
        msg = orjson.loads(data)
        if orjson.dumps(msg) != data:
            raise ValueError(f"{name}: not canonical")
        self._note("claim", name)
        if _rename_noreplace(f"{self.cur}/{name}".encode(), f"{self.day}/{name}".encode()):
            raise OSError(f"{name}: could not settle into done/")
        if sync:
            fsync_dir(self.day)
        self._note("done", name)
        return msg  # type: ignore[no-any-return]

    def _claim(self) -> str | None:
        while self.pending or self._refill():
            name = self.pending.popleft()
            if _rename_noreplace(f"{self.new}/{name}".encode(), f"{self.cur}/{name}".encode()):
                continue  # another reader claimed it first
            return name
        return None

    def _refill(self) -> bool:
        for _ in range(2):
            current = frozenset(os.listdir(self.new))
            fresh, self.seen = current - self.seen, current
            limit = min(fresh, default="~")
            self.pending.extend(sorted(n for n in current - fresh if n < limit))
            if self.pending or not fresh:
                break
        return bool(self.pending)


class StdlibMaildir(Contestant):
    """`mailbox.Maildir` from the standard library, used as a user would.

    send: `inbox.add(json_bytes)`. receive: snapshot `iterkeys()` ordered by the
    key's time and counter, `get_bytes`, then mark done with `inbox.remove`.
    (Moving into a done folder instead means `done.add`, a second fsynced
    copy of every message.) There is no claim step, so two competing readers
    can both process one message.
    """

    name = "stdlib-maildir"
    policies: ClassVar[dict[str, str]] = {
        "always": "Maildir.add always fsyncs the file; never the dir",
    }
    native = "always"

    @classmethod
    def skip_reason(cls, case_id: str) -> str | None:
        """W5 needs a store that keeps done messages."""
        if case_id == "W5":
            return "done = remove: keeps no done history"
        return super().skip_reason(case_id)

    def create(self) -> None:
        """Create the Maildir."""
        import mailbox

        mailbox.Maildir(str(self.root), create=True)

    def open(self) -> None:
        """Open the Maildir."""
        import mailbox

        self.box = mailbox.Maildir(str(self.root), create=False)
        self.pending: deque[str] = deque()

    def send(self, msg: dict[str, Any]) -> None:
        """`Maildir.add` the JSON bytes."""
        self.box.add(orjson.dumps(msg))

    def receive(self) -> dict[str, Any] | None:
        """Read the next message, then remove it."""
        while self.pending or self._refill():
            key = self.pending.popleft()
            try:
                data = self.box.get_bytes(key)
            except (KeyError, FileNotFoundError):
                continue  # another reader removed it
            self._remove(key)
            return orjson.loads(data)
        return None

    def _remove(self, key: str) -> None:
        try:
            self.box.remove(key)
        except (KeyError, FileNotFoundError):
            pass  # another reader processed it too

    def _refill(self) -> bool:
        self.pending.extend(sorted(self.box.iterkeys(), key=maildir_order))
        return bool(self.pending)

    def prefill(self, msgs: list[dict[str, Any]]) -> None:
        """Write Maildir-named files straight into new/ (skips add's fsync)."""
        now, pid = int(time.time()), os.getpid()
        for i, msg in enumerate(msgs):
            write_file(f"{self.root}/new/{now}.M{i}P{pid}Q{i}.bench", orjson.dumps(msg))


def maildir_order(key: str) -> tuple[int, ...]:
    """Sort key for Maildir keys `<sec>.M<usec>P<pid>Q<n>.<host>`: oldest first."""
    match = MAILDIR_KEY.match(key)
    if match is None:
        return (0,)
    sec, usec, pid, count = (int(g) for g in match.groups())
    return (sec, usec, count, pid)


class PersistQueue(Contestant):
    """persist-queue `SQLiteAckQueue`: put; get + ack.

    Its knobs do not reach durability: `auto_commit=False` is refused by the ack
    queue (it warns and forces True) and `multithreading` only adds a second
    connection. Every put/get/ack is its own committed transaction in WAL mode.
    The default `synchronous=FULL` fsyncs the WAL on each commit (policy
    always); policy never sets `PRAGMA synchronous=OFF` on its connections.
    There is no group commit, so policy batch is n/a. Acked rows stay in the
    table and `get` scans past them, so, as its users must, the reader calls
    `clear_acked_data()` (defaults: keep the latest 1000) every `clear_every` acks.
    `get` selects the next row, then marks it, under a thread lock only: two
    reader processes can get the same row.
    """

    name = "persist-queue"
    policies: ClassVar[dict[str, str]] = {
        "always": "WAL, synchronous=FULL (default): fsync per put/get/ack",
        "never": "PRAGMA synchronous=OFF on its connections (no public knob)",
    }
    module = "persistqueue"
    table = "ack_queue_default"
    inited, acked = 0, 5
    clear_every = 1000

    @classmethod
    def skip_reason(cls, case_id: str) -> str | None:
        """W7 needs claims that stay in flight while another reader opens the queue."""
        if case_id == "W7":
            return ("opening the queue puts unacknowledged rows back (auto_resume): none "
                    "stay in flight for another reader")
        return super().skip_reason(case_id)

    def create(self) -> None:
        """Create the SQLite database and table."""
        self.open()
        self.close()

    def open(self) -> None:
        """Open the queue and apply the fsync policy."""
        from persistqueue import SQLiteAckQueue

        self.q = SQLiteAckQueue(str(self.root), auto_commit=True, multithreading=False)
        self.acks = 0
        if self.fsync == "never":
            for conn in {self.q._putter, self.q._getter}:
                conn.execute("PRAGMA synchronous=OFF")

    def close(self) -> None:
        """Close the SQLite connections."""
        self.q.close()

    def send(self, msg: dict[str, Any]) -> None:
        """`put` the JSON bytes."""
        self.q.put(orjson.dumps(msg))

    def receive(self) -> dict[str, Any] | None:
        """`get` without blocking, parse, `ack`."""
        from persistqueue import Empty

        try:
            item = self.q.get(block=False, raw=True)
        except Empty:
            return None
        msg = orjson.loads(item["data"])
        self.q.ack(id=item["pqid"])
        self.acks += 1
        if self.acks % self.clear_every == 0:
            self.q.clear_acked_data()
        return msg

    def prefill(self, msgs: list[dict[str, Any]]) -> None:
        """Insert rows as `put` leaves them, in one transaction."""
        self._insert(msgs, self.inited)

    def prefill_done(self, msgs: list[dict[str, Any]]) -> None:
        """Insert rows already acked, as `put` + `get` + `ack` would leave them."""
        self._insert(msgs, self.acked)

    def _insert(self, msgs: list[dict[str, Any]], status: int) -> None:
        from persistqueue.serializers import pickle as serializer

        rows = [(serializer.dumps(orjson.dumps(m)), time.time(), status) for m in msgs]
        sql = f"INSERT INTO {self.table} (data, timestamp, status) VALUES (?, ?, ?)"
        with self.q._putter as conn:
            conn.executemany(sql, rows)


class Dirq(Contestant):
    """dirq `QueueSimple`: add; iterate, lock, get, remove.

    dirq never fsyncs (policy never only) and removes an element once it is
    processed, so it keeps no done history (W5 n/a).
    """

    name = "dirq"
    policies: ClassVar[dict[str, str]] = {"never": "dirq never fsyncs"}
    module = "dirq"

    @classmethod
    def skip_reason(cls, case_id: str) -> str | None:
        """W5 needs a store that keeps done messages."""
        if case_id == "W5":
            return "removes processed messages: keeps no done history"
        return super().skip_reason(case_id)

    def open(self) -> None:
        """Open the queue directory."""
        from dirq.QueueSimple import QueueSimple

        self.q = QueueSimple(str(self.root / "q"))
        self.pending: deque[str] = deque()

    def send(self, msg: dict[str, Any]) -> None:
        """`add` the JSON bytes."""
        self.q.add(orjson.dumps(msg))

    def receive(self) -> dict[str, Any] | None:
        """Lock the next element, read it, remove it."""
        while self.pending or self._refill():
            name = self.pending.popleft()
            if self.q.lock(name):
                data = self.q.get(name)
                self.q.remove(name)
                return orjson.loads(data)
        return None

    def _refill(self) -> bool:
        self.pending.extend(self.q)
        return bool(self.pending)

    def hold(self, n: int) -> None:
        """`lock` `n` elements and never remove them."""
        held = 0
        for name in self.q:
            if held == n:
                return
            held += bool(self.q.lock(name))
        if held < n:
            raise RuntimeError("nothing to hold")


class AgentMailbox(Contestant):
    """agentmailbox, used through its public API, with the protocol's full checks.

    send: `mb.send("alice", ["bob"], subject, body=payload)`: both agents' registration
    checked, a `send` journal line, exclusive create in tmp/, (fsync), rename-no-replace
    into new/ (renameat2), (fsync new/). The payload travels as the message body
    inside the library's envelope (about 750 bytes on disk instead of 500).
    receive: `inbox.claim()` (two-scan refill, rename-no-replace claim, done check, lease,
    read with schema check, `claim` journal line), then `inbox.done()` (rename into
    done/<day>/, (fsync the day folder), `done` journal line).
    W4 consumes `inbox.watch()`, the library's watcher loop; W6 runs a `Supervisor`
    in its own process and addresses the group `+team`.
    """

    name = "agentmailbox"
    policies: ClassVar[dict[str, str]] = {
        "always": "fsync file + new/ on send, done/<day>/ on done",
        "batch": f"mb.batch() per {BATCH_SIZE}: 1 syncfs, renames, 1 new/ fsync; drain: "
                 f"claim + done, 1 day-folder fsync, 1 journal write",
        "never": "no fsync",
    }
    wake = "inbox.watch() (one inotify descriptor read on the reader's thread)"
    router = "Supervisor process"
    sender, reader = "alice", "bob"

    @classmethod
    def available(cls) -> bool:
        """True when the package in this repository imports."""
        return importlib.util.find_spec("agentmailbox") is not None

    def create(self) -> None:
        """Make a mailbox with a sender, a reader and a group of three for W6."""
        from agentmailbox import Mailbox

        with Mailbox.init(self.root, fsync=self.fsync) as mb:
            mb.add_agent(self.sender)
            mb.add_agent(self.reader)
            for member in GROUP:
                mb.add_agent(member, groups=["team"])

    def open(self) -> None:
        """Open the mailbox and the reader's inbox."""
        from agentmailbox import Mailbox

        self.mb = Mailbox.open(self.root, fsync=self.fsync)
        self.inbox = self.mb.inbox(self.reader)

    def close(self) -> None:
        """Close the mailbox (its journal descriptor)."""
        self.mb.close()

    def send(self, msg: dict[str, Any]) -> None:
        """alice -> bob with the payload as body."""
        self.mb.send(self.sender, [self.reader], subject=msg["subject"], body=msg)

    def send_batch(self, msgs: list[dict[str, Any]]) -> None:
        """One `mb.batch()` per group under the batch policy."""
        if self.fsync != "batch":
            super().send_batch(msgs)
            return
        with self.mb.batch():
            for msg in msgs:
                self.send(msg)

    def drain(self, n: int) -> list[dict[str, Any]]:
        """Under batch, one `mb.batch()` per drain (the done folder fsynced once)."""
        if self.fsync != "batch":
            return super().drain(n)
        with self.mb.batch():
            return super().drain(n)

    def receive(self) -> dict[str, Any] | None:
        """claim, read the body, done."""
        m = self.inbox.claim()
        if m is None:
            return None
        self.inbox.done(m)
        return m.body  # type: ignore[no-any-return]

    def hold(self, n: int) -> None:
        """`inbox.claim()` `n` messages, never done (their 600 s leases hold them)."""
        for _ in range(n):
            if self.inbox.claim() is None:
                raise RuntimeError("nothing to hold")

    def collect(self, n: int, idle_s: float) -> list[int]:
        """W4: consume `inbox.watch()` until `n` messages came; latency after done, in ns."""
        latencies: list[int] = []
        for m in self.inbox.watch(timeout=idle_s):
            self.inbox.done(m)
            latencies.append(time.perf_counter_ns() - m.body["t"])
            if len(latencies) == n:
                break
        return latencies

    # -- W6 routed --------------------------------------------------------------------

    def send_routed(self, msg: dict[str, Any]) -> None:
        """alice -> +team: posted once to spool/ for the supervisor."""
        self.mb.send(self.sender, ["+team"], subject=msg["subject"], body=msg)

    def group_new_dirs(self) -> list[str]:
        """The new/ folders of the three group members."""
        return [str(self.mb.inbox(m).new) for m in GROUP]

    def route_forever(self, stop: Any) -> None:
        """Child process: run a Supervisor until `stop` (an mp.Event) is set."""
        import threading

        from agentmailbox.supervisor import Supervisor

        sup = Supervisor(self.mb)
        threading.Thread(target=lambda: (stop.wait(), sup.stop()), daemon=True).start()
        sup.run()

    def drain_group(self) -> int:
        """Claim and mark done everything in the three members' inboxes."""
        count = 0
        for member in GROUP:
            inbox = self.mb.inbox(member)
            while (m := inbox.claim()) is not None:
                inbox.done(m)
                count += 1
        return count

    # -- memory -----------------------------------------------------------------------

    def idle_watch(self, folders: list[str]) -> Any:
        """One library `Watcher` on `folders` (the way to wait on many inboxes)."""
        from agentmailbox.watch import Watcher

        return Watcher(*folders).start()

    # -- fast set-up -------------------------------------------------------------------

    def prefill(self, msgs: list[dict[str, Any]]) -> None:
        """Write delivered messages straight into new/<id>.json, encoded by the library."""
        for msg_id, data in self._encoded(msgs):
            write_file(f"{self.inbox.new}/{msg_id}.json", data)

    def prefill_done(self, msgs: list[dict[str, Any]]) -> None:
        """Write finished messages straight into done/<day>/<id>.json (the protocol's
        layout, as claim + done would leave them; the journal is not back-filled)."""
        from agentmailbox.message import day_of

        made: set[str] = set()
        for msg_id, data in self._encoded(msgs):
            folder = f"{self.inbox.done_dir}/{day_of(msg_id)}"
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            write_file(f"{folder}/{msg_id}.json", data)

    def _encoded(self, msgs: list[dict[str, Any]]) -> Iterator[tuple[str, bytes]]:
        from agentmailbox.message import Message, encode, iso

        clock, limit = self.mb.root.clock, self.mb.config.max_message_bytes
        for payload in msgs:
            msg_id = clock.new_id()
            msg = Message(id=msg_id, sender=self.sender, to=(self.reader,),
                          subject=payload["subject"], body=payload, ts=iso(time.time_ns()))
            yield msg_id, encode(msg, limit)



REDIS_ENV = "AGENTMAILBOX_BENCH_REDIS"
"""host:port of the redis-server the harness started for this run (bench_redis.py)."""


class RedisStreams(Contestant):
    """Redis Streams on loopback, no persistence: XADD; XREADGROUP + XACK.

    One stream per store and one consumer group; competing readers are consumers of the
    group, so each entry goes to one of them. The server runs in RAM (`save ""`,
    `appendonly no`): nothing reaches the disk, so only policy never. W4 waits with
    `XREADGROUP BLOCK`. Acknowledged entries stay in the stream (W5: its done history).
    """

    name = "redis-streams"
    policies: ClassVar[dict[str, str]] = {
        "never": "in RAM, no persistence (save off, appendonly no), loopback TCP",
    }
    module = "redis"
    wake = "XREADGROUP BLOCK"
    group = "readers"

    @classmethod
    def available(cls) -> bool:
        """Always listed: without a server or client the rows say so (skip_reason)."""
        return True

    @classmethod
    def skip_reason(cls, case_id: str) -> str | None:
        """Why Redis cannot run here (no server, no client, no server started)."""
        if importlib.util.find_spec("redis") is None:
            return "the redis Python client is not installed (bench extra)"
        if not os.environ.get(REDIS_ENV):
            return "no redis-server here (Debian package redis-server; scripts/bench " \
                   "installs it when run as root)"
        return super().skip_reason(case_id)

    def _connect(self) -> Any:
        import redis

        host, port = os.environ[REDIS_ENV].rsplit(":", 1)
        self.r = redis.Redis(host=host, port=int(port))
        self.stream = f"bench:{self.root}"
        self.consumer = f"c{os.getpid()}-{id(self)}"
        return self.r

    def create(self) -> None:
        """An empty stream with its consumer group."""
        r = self._connect()
        r.delete(self.stream)
        r.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        r.close()

    def open(self) -> None:
        """Connect."""
        self._connect()

    def close(self) -> None:
        """Disconnect."""
        self.r.close()

    def send(self, msg: dict[str, Any]) -> None:
        """XADD the JSON bytes."""
        self.r.xadd(self.stream, {"d": orjson.dumps(msg)})

    def receive(self) -> dict[str, Any] | None:
        """XREADGROUP one new entry, parse it, XACK it."""
        got = self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=1)
        return self._ack(got)

    def _ack(self, got: Any) -> dict[str, Any] | None:
        if not got or not got[0][1]:
            return None
        entry_id, fields = got[0][1][0]
        msg = orjson.loads(fields[b"d"])
        self.r.xack(self.stream, self.group, entry_id)
        return msg  # type: ignore[no-any-return]

    def collect(self, n: int, idle_s: float) -> list[int]:
        """W4: block in XREADGROUP for each entry; latency after the XACK, in ns."""
        latencies: list[int] = []
        while len(latencies) < n:
            got = self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=1,
                                    block=int(idle_s * 1000))
            msg = self._ack(got)
            if msg is None:
                break
            latencies.append(time.perf_counter_ns() - msg["t"])
        return latencies

    def hold(self, n: int) -> None:
        """XREADGROUP `n` entries and never XACK them (they stay pending)."""
        if n == 0:
            return
        got = self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=n)
        if not got or len(got[0][1]) != n:
            raise RuntimeError("nothing to hold")

    def prefill(self, msgs: list[dict[str, Any]]) -> None:
        """XADD in pipelines of 1,000 (untimed set-up)."""
        for group in chunked(msgs, 1000):
            with self.r.pipeline(transaction=False) as pipe:
                for msg in group:
                    pipe.xadd(self.stream, {"d": orjson.dumps(msg)})
                pipe.execute()


class AgentMailboxWait(AgentMailbox):
    """agentmailbox with a reader that loops over `inbox.wait()` and claims what is there
    (W4 only), instead of consuming `inbox.watch()`."""

    name = "agentmailbox-wait"
    wake = "inbox.wait() + claim (one inotify descriptor the handle keeps)"
    workloads = frozenset({"W4"})

    def collect(self, n: int, idle_s: float) -> list[int]:
        """W4: wait, then claim and finish everything there; latency after done, in ns."""
        latencies: list[int] = []
        while len(latencies) < n and self.inbox.wait(timeout=idle_s):
            while (m := self.inbox.claim()) is not None:
                self.inbox.done(m)
                latencies.append(time.perf_counter_ns() - m.body["t"])
        return latencies


CONTESTANTS: tuple[type[Contestant], ...] = (
    Floor, FloorPoll, ProtocolFloor, StdlibMaildir, PersistQueue, Dirq, RedisStreams,
    AgentMailbox, AgentMailboxWait,
)
