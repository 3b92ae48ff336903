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

POLICIES = ("always", "batch", "never")
BATCH_SIZE = 100
POLL_S = 0.05
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

    def watch(self) -> None:
        """Prepare to `wait` for new messages (before any are expected)."""

    def wait(self, timeout: float) -> None:
        """Block until a new message may have arrived (at most `timeout` s)."""
        time.sleep(max(0.0, min(POLL_S, timeout)))

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
        "batch": f"{BATCH_SIZE} tmp files, 1 syncfs, renames, 1 dir fsync",
        "never": "no fsync",
    }
    wake = "raw inotify"
    dirs = ("tmp", "new", "cur", "done")

    def create(self) -> None:
        """Create tmp/, new/, cur/ and done/."""
        for sub in self.dirs:
            (self.root / sub).mkdir(parents=True, exist_ok=True)

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
        """Claim by rename into cur/, read and parse, then rename into done/."""
        name = self._claim()
        if name is None:
            return None
        msg = orjson.loads(read_file(f"{self.cur}/{name}"))
        os.rename(f"{self.cur}/{name}", f"{self.done}/{name}")
        if self.fsync == "always":
            fsync_dir(self.done)
        return msg

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


class FloorPoll(Floor):
    """The floor with a reader that polls new/ every POLL_S instead of inotify."""

    name = "floor-poll"
    wake = Contestant.wake
    workloads = frozenset({"W4"})
    watch = Contestant.watch


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
        return None

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
    acked = 5
    clear_every = 1000

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

    def prefill_done(self, msgs: list[dict[str, Any]]) -> None:
        """Insert rows already acked, as `put` + `get` + `ack` would leave them."""
        from persistqueue.serializers import pickle as serializer

        rows = [(serializer.dumps(orjson.dumps(m)), time.time(), self.acked) for m in msgs]
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
        return None

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


class AgentMailbox(Contestant):
    """Our library.

    TODO(#5): untested until `agentmailbox` exposes `Mailbox`; skipped while
    `from agentmailbox import Mailbox` fails. Confirm the names marked below
    once the API lands, and replace polling in `wait` with the library's
    wake-up.
    """

    name = "agentmailbox"
    policies: ClassVar[dict[str, str]] = {
        "always": "fsync=always", "batch": "mb.batch() per group", "never": "fsync=never",
    }

    @classmethod
    def available(cls) -> bool:
        """True once `from agentmailbox import Mailbox` works."""
        try:
            from agentmailbox import Mailbox  # noqa: F401
        except ImportError:
            return False
        return True

    def create(self) -> None:
        """Make a mailbox with a sender and a receiver."""
        from agentmailbox import Mailbox

        mb = Mailbox.init(self.root, fsync=self.fsync)
        mb.add_agent("alice")
        mb.add_agent("bob")

    def open(self) -> None:
        """Open the mailbox and bob's inbox."""
        from agentmailbox import Mailbox

        self.mb = Mailbox.open(self.root, fsync=self.fsync)  # TODO(#5): confirm open()
        self.inbox = self.mb.agent("bob").inbox

    def send(self, msg: dict[str, Any]) -> None:
        """alice -> bob with the payload as body."""
        self.mb.send("alice", ["bob"], subject=msg["subject"], body=msg)

    def send_batch(self, msgs: list[dict[str, Any]]) -> None:
        """One `mb.batch()` per group under the batch policy."""
        if self.fsync != "batch":
            super().send_batch(msgs)
            return
        with self.mb.batch():
            for msg in msgs:
                self.send(msg)

    def receive(self) -> dict[str, Any] | None:
        """claim, read the body, done."""
        m = self.inbox.claim()
        if m is None:
            return None
        self.inbox.done(m)
        return m.body  # TODO(#5): confirm the body is the parsed dict


CONTESTANTS: tuple[type[Contestant], ...] = (
    Floor, FloorPoll, StdlibMaildir, PersistQueue, Dirq, AgentMailbox,
)
