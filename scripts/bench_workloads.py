"""Workloads W1-W7 and memory, with the child-process entry points they start.

Every measure function has the signature
`measure(cls, root, policy, sizes, state) -> dict` where `root` is a path that
does not exist yet, and returns the metrics of one repetition.
"""

from __future__ import annotations

import faulthandler
import math
import multiprocessing as mp
import os
import queue
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_contestants import GROUP, Contestant

PRODUCERS = 4
READERS = 2
LATENCY_INTERVAL_S = 0.002
LISTEN_GRACE_S = 10.0
LISTEN_SETTLE_S = 0.3
LISTEN_REPORT_S = 60.0  # the reader stops 10 s after its last message, then reports
ROUTE_POLL_S = 0.02
CHILD_TIMEOUT_S = 300.0
JOIN_GRACE_S = 5.0
READER_IDLE_S = 0.0005
IDLE_S = 1.0
FILLER = ("lorem ipsum dolor sit amet " * 16)[:380]
BACKLOG_SEQ0 = 10**9
LOCKSTEP_CHUNK = 100

Run = tuple[type[Contestant], Path, str]
"""What a lockstep workload gets per contestant: its class, a fresh root, the policy."""


@dataclass(frozen=True)
class Sizes:
    """Message counts for one run."""

    send: int
    per_producer: int
    latency: int
    cycle: int
    backlog: int
    routed: int
    memory: int
    idle_inboxes: int
    arrivals: int


QUICK = Sizes(send=600, per_producer=300, latency=200, cycle=300, backlog=5_000,
              routed=300, memory=5_000, idle_inboxes=100, arrivals=200)
FULL = Sizes(send=10_000, per_producer=2_500, latency=2_000, cycle=1_000, backlog=100_000,
             routed=10_000, memory=100_000, idle_inboxes=100, arrivals=1_000)


def message(seq: int) -> dict[str, Any]:
    """The ~500-byte JSON payload used everywhere; `t` is stamped at send time."""
    return {
        "id": f"m{seq:012d}", "seq": seq, "t": 0, "from": "alice", "to": ["bob"],
        "subject": f"task {seq}", "body": {"text": FILLER, "n": seq},
    }


def messages(n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` payloads numbered from `start`."""
    return [message(seq) for seq in range(start, start + n)]


def create(cls: type[Contestant], root: Path, policy: str) -> None:
    """Create an empty store of `cls` at `root`."""
    cls(root, policy).create()


@contextmanager
def opened(cls: type[Contestant], root: Path, policy: str) -> Iterator[Contestant]:
    """An open store of `cls` at `root`, closed on exit."""
    store = cls(root, policy)
    store.open()
    try:
        yield store
    finally:
        store.close()


def settle() -> None:
    """Flush dirty pages so earlier writes are not billed to the next measurement."""
    os.sync()


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """Call `fn(*args)`; return its result and the seconds it took."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def mp_context() -> Any:
    """Child processes forked from a fork server that has this module loaded.

    Children start in milliseconds with no copy of the parent's memory.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def spawn(ctx: Any, target: Callable[..., None], args: tuple[Any, ...]) -> Any:
    """Start `target(*args)` in a child process."""
    proc = ctx.Process(target=_traced, args=(target, *args), daemon=True)
    proc.start()
    return proc


def _traced(target: Callable[..., None], *args: Any) -> None:
    """Child: run `target`; if it is still running near the parent's patience, print
    every thread's stack to stderr, so a stuck child shows where it is stuck."""
    faulthandler.dump_traceback_later(LISTEN_REPORT_S * 0.9, exit=False)
    try:
        target(*args)
    finally:
        faulthandler.cancel_dump_traceback_later()


@contextmanager
def children(procs: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """Make sure `procs` are gone on exit, killing stragglers."""
    try:
        yield procs
    finally:
        for proc in procs:
            proc.join(timeout=JOIN_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()


def result_of(results: Any, proc: Any, timeout: float = CHILD_TIMEOUT_S) -> Any:
    """The next item `proc` puts on `results`; raise at once if `proc` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return results.get(timeout=0.2)
        except queue.Empty:
            if not proc.is_alive():
                try:
                    return results.get(timeout=0.5)
                except queue.Empty:
                    raise RuntimeError(f"child exited with {proc.exitcode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError("child did not report") from None


def check_exits(procs: Sequence[Any], what: str) -> None:
    """Raise if any of `procs` failed."""
    for proc in procs:
        proc.join(timeout=CHILD_TIMEOUT_S)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{what} exited with {failed}")


# W1, W2: every contestant in lockstep -------------------------------------------

def lockstep_order(n: int, step: int) -> list[int]:
    """Indices 0..n-1 rotated by `step`, so no store always goes first."""
    return [(i + step) % n for i in range(n)]


@contextmanager
def stores_of(runs: Sequence[Run]) -> Iterator[list[Contestant]]:
    """One open store per (class, root, policy), closed on exit."""
    stores: list[Contestant] = []
    try:
        for cls, root, policy in runs:
            store = cls(root, policy)
            store.open()
            stores.append(store)
        yield stores
    finally:
        for store in stores:
            store.close()


def w1_send(runs: Sequence[Run], sizes: Sizes, rep: int) -> list[dict]:
    """One producer per store sends `sizes.send` messages to one inbox.

    The stores take turns, LOCKSTEP_CHUNK messages each, so the disk's slow and fast
    phases (its journal commits) fall on every store alike.
    """
    for cls, root, policy in runs:
        create(cls, root, policy)
    msgs = messages(sizes.send)
    spent = [0.0] * len(runs)
    with stores_of(runs) as stores:
        for step, start in enumerate(range(0, len(msgs), LOCKSTEP_CHUNK)):
            chunk = msgs[start:start + LOCKSTEP_CHUNK]
            for i in lockstep_order(len(stores), rep + step):
                began = time.perf_counter()
                stores[i].send_many(chunk)
                spent[i] += time.perf_counter() - began
    return [{"msgs_per_s": len(msgs) / t} for t in spent]


def w2_drain(runs: Sequence[Run], sizes: Sizes, rep: int) -> list[dict]:
    """One reader per store claims, parses and marks done `sizes.send` messages, in
    order; the stores take turns as in W1."""
    for cls, root, policy in runs:
        create(cls, root, policy)
        with opened(cls, root, policy) as store:
            store.prefill(messages(sizes.send))
    settle()
    spent = [0.0] * len(runs)
    got: list[list[int]] = [[] for _ in runs]
    with stores_of(runs) as stores:
        for step in range(math.ceil(sizes.send / LOCKSTEP_CHUNK)):
            for i in lockstep_order(len(stores), rep + step):
                began = time.perf_counter()
                batch = stores[i].drain(LOCKSTEP_CHUNK)
                spent[i] += time.perf_counter() - began
                got[i].extend(m["seq"] for m in batch)
    return [{"msgs_per_s": len(seqs) / t, "lost": sizes.send - len(set(seqs)),
             "in_order": seqs == sorted(seqs)} for seqs, t in zip(got, spent, strict=True)]


# W3 ---------------------------------------------------------------------------

def w3_contention(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
                  state: Any) -> dict:
    """PRODUCERS senders and READERS competing readers at the same time."""
    create(cls, root, policy)
    ctx = mp_context()
    start, sent_all, results = ctx.Barrier(PRODUCERS + READERS + 1), ctx.Event(), ctx.Queue()
    per = sizes.per_producer
    producers = [spawn(ctx, produce, (cls, root, policy, range(i * per, (i + 1) * per), start))
                 for i in range(PRODUCERS)]
    readers = [spawn(ctx, consume, (cls, root, policy, start, sent_all, results))
               for _ in range(READERS)]
    with children(producers + readers):
        received, elapsed = _run_contention(producers, start, sent_all, results)
        check_exits(producers + readers, "W3 children")
    return tally(PRODUCERS * per, received, elapsed)


def _run_contention(producers: list[Any], start: Any, sent_all: Any,
                    results: Any) -> tuple[list[list[int]], float]:
    start.wait(timeout=CHILD_TIMEOUT_S)
    began = time.perf_counter()
    check_exits(producers, "W3 producers")
    sent_all.set()
    received = [results.get(timeout=CHILD_TIMEOUT_S) for _ in range(READERS)]
    return received, time.perf_counter() - began


def tally(expected: int, received: list[list[int]], elapsed: float) -> dict:
    """Throughput and lost/duplicated counts from the readers' sequence numbers."""
    seen = [seq for seqs in received for seq in seqs]
    unique = set(seen)
    return {"msgs_per_s": len(unique) / elapsed,
            "lost": len(set(range(expected)) - unique),
            "duplicated": len(seen) - len(unique)}


def produce(cls: type[Contestant], root: Path, policy: str, seqs: range, start: Any) -> None:
    """Child: send one message per sequence number after the start barrier."""
    with opened(cls, root, policy) as store:
        start.wait(timeout=CHILD_TIMEOUT_S)
        for seq in seqs:
            store.send(message(seq))


def consume(cls: type[Contestant], root: Path, policy: str, start: Any, sent_all: Any,
            results: Any) -> None:
    """Child: receive until the producers are finished and the inbox is empty."""
    seqs: list[int] = []
    try:
        with opened(cls, root, policy) as store:
            start.wait(timeout=CHILD_TIMEOUT_S)
            _receive_until_finished(store, sent_all, seqs)
    finally:
        results.put(seqs)


def _receive_until_finished(store: Contestant, sent_all: Any, seqs: list[int]) -> None:
    while True:
        finished = sent_all.is_set()
        msg = store.receive()
        if msg is not None:
            seqs.append(msg["seq"])
        elif finished:
            return
        else:
            time.sleep(READER_IDLE_S)


# W4 ---------------------------------------------------------------------------

def w4_latency(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
               state: Any) -> dict:
    """A paced sender here, a reader waiting for wake-ups in another process."""
    create(cls, root, policy)
    ctx = mp_context()
    ready, results = ctx.Event(), ctx.Queue()
    listener = spawn(ctx, listen, (cls, root, policy, sizes.latency, ready, results))
    with children([listener]):
        if not ready.wait(CHILD_TIMEOUT_S):
            raise TimeoutError("W4 reader did not start")
        time.sleep(LISTEN_SETTLE_S)  # let the reader reach its first wait
        with opened(cls, root, policy) as store:
            paced_send(store, sizes.latency)
        latencies = result_of(results, listener, LISTEN_REPORT_S)
    return latency_summary(latencies, sizes.latency)


def paced_send(store: Contestant, n: int) -> None:
    """Send `n` messages, one every LATENCY_INTERVAL_S, stamped just before sending."""
    began = time.perf_counter()
    for seq in range(n):
        pause = began + seq * LATENCY_INTERVAL_S - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        msg = message(seq)
        msg["t"] = time.perf_counter_ns()
        store.send(msg)


def listen(cls: type[Contestant], root: Path, policy: str, n: int, ready: Any,
           results: Any) -> None:
    """Child: receive `n` messages, recording send-to-receive latency in ns."""
    latencies: list[int] = []
    try:
        with opened(cls, root, policy) as store:
            store.watch()
            ready.set()
            latencies = store.collect(n, LISTEN_GRACE_S)
    finally:
        results.put(latencies)


def latency_summary(latencies_ns: list[int], expected: int) -> dict:
    """p50/p99/max in milliseconds, and how many messages never arrived."""
    if not latencies_ns:
        raise RuntimeError("no message arrived")
    ms = sorted(ns / 1e6 for ns in latencies_ns)
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": ms[-1],
            "lost": expected - len(ms)}


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# W5 ---------------------------------------------------------------------------

def w5_prepare(cls: type[Contestant], root: Path, policy: str, sizes: Sizes) -> Path:
    """Build, once, a store holding `sizes.backlog` done messages; return its root."""
    create(cls, root, policy)
    with opened(cls, root, policy) as store:
        store.prefill_done(messages(sizes.backlog, start=BACKLOG_SEQ0))
    return root


def w5_backlog(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
               state: Path) -> dict:
    """Send+drain `sizes.cycle` messages in the backlog store and in two empty ones.

    The three stores take turns, LOCKSTEP_CHUNK messages each (send them, drain
    them), so the backlog store and the empty ones meet the same disk phases; the
    two empty stores are averaged.
    """
    roots = [fresh(root / "before", cls, policy), state, fresh(root / "after", cls, policy)]
    spent = [0.0] * len(roots)
    msgs = messages(sizes.cycle)
    with stores_of([(cls, r, policy) for r in roots]) as stores:
        for step, start in enumerate(range(0, len(msgs), LOCKSTEP_CHUNK)):
            chunk = msgs[start:start + LOCKSTEP_CHUNK]
            for i in lockstep_order(len(stores), step):
                began = time.perf_counter()
                stores[i].send_many(chunk)
                got = stores[i].drain(len(chunk))
                spent[i] += time.perf_counter() - began
                if len(got) != len(chunk):
                    raise RuntimeError(f"drained {len(got)} of {len(chunk)}")
    empty = (spent[0] + spent[2]) / 2
    loaded = spent[1]
    return {"slowdown": loaded / empty, "empty_msgs_per_s": sizes.cycle / empty,
            "backlog_msgs_per_s": sizes.cycle / loaded}


def fresh(root: Path, cls: type[Contestant], policy: str) -> Path:
    """Create an empty store of `cls` at `root`, flush, and return `root`."""
    root.parent.mkdir(parents=True, exist_ok=True)
    create(cls, root, policy)
    settle()
    return root


# W6 ---------------------------------------------------------------------------

def w6_routed(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
              state: Any) -> dict:
    """Send `sizes.routed` messages to a group of three through a router process;
    time until every member holds every message, then drain all three inboxes."""
    create(cls, root, policy)
    ctx = mp_context()
    ready, stop = ctx.Event(), ctx.Event()
    router = spawn(ctx, route, (cls, root, policy, ready, stop))
    n = sizes.routed
    with children([router]):
        if not ready.wait(CHILD_TIMEOUT_S):
            raise TimeoutError("W6 router did not start")
        time.sleep(LISTEN_SETTLE_S)
        with opened(cls, root, policy) as store:
            msgs = messages(n)
            began = time.perf_counter()
            for msg in msgs:
                store.send_routed(msg)
            sent = time.perf_counter()
            wait_for_copies(store.group_new_dirs(), n, router)
            routed = time.perf_counter()
            stop.set()
            drained = store.drain_group()
            finished = time.perf_counter()
    return {"msgs_per_s": n / (finished - began), "send_msgs_per_s": n / (sent - began),
            "routed_msgs_per_s": n / (routed - began),
            "drain_copies_per_s": drained / (finished - routed),
            "lost": len(GROUP) * n - drained}


def route(cls: type[Contestant], root: Path, policy: str, ready: Any, stop: Any) -> None:
    """Child: the contestant's router, until `stop` is set."""
    with opened(cls, root, policy) as store:
        ready.set()
        store.route_forever(stop)


def wait_for_copies(folders: list[str], n: int, router: Any) -> None:
    """Block until each folder holds `n` entries (the last member is filled last)."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    pending = list(reversed(folders))
    while pending:
        if len(os.listdir(pending[0])) >= n:
            pending.pop(0)
            continue
        if not router.is_alive():
            raise RuntimeError(f"W6 router exited with {router.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"W6: {pending[0]} holds {len(os.listdir(pending[0]))} of {n}")
        time.sleep(ROUTE_POLL_S)


# W7 ---------------------------------------------------------------------------

IN_FLIGHT = (0, 100, 1_000)


def w7_in_flight(held: int) -> Callable[..., dict]:
    """W7 with `held` messages claimed by another reader and not finished."""

    def measure(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
                state: Any) -> dict:
        """Mail arrives one message at a time and is claimed and finished at once, while
        `held` claims stay in flight: every receive starts from an empty claim queue."""
        create(cls, root, policy)
        with opened(cls, root, policy) as holder:
            holder.prefill(messages(held, start=BACKLOG_SEQ0))
            holder.hold(held)
        spent = []
        with opened(cls, root, policy) as store:
            store.send(message(BACKLOG_SEQ0 - 1))  # warm up: a reader that runs for a while
            if store.receive() is None:
                raise RuntimeError("W7: the warm-up message did not arrive")
            for msg in messages(sizes.arrivals):
                store.send(msg)
                began = time.perf_counter()
                got = store.receive()
                spent.append(time.perf_counter() - began)
                if got is None or got["seq"] != msg["seq"]:
                    raise RuntimeError(f"W7: sent {msg['seq']}, received {got and got['seq']}")
        ordered = sorted(s * 1e6 for s in spent)
        return {"claim_us": percentile(ordered, 50), "p99_us": percentile(ordered, 99),
                "mean_us": sum(ordered) / len(ordered)}

    return measure


# SYS ----------------------------------------------------------------------------

def syscalls(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
             state: Any) -> dict:
    """System calls per message sent and received (strace -f -c in child processes)."""
    import bench_syscalls

    return bench_syscalls.per_message(cls, root, policy, sizes.arrivals)


# Memory -----------------------------------------------------------------------

def memory(cls: type[Contestant], root: Path, policy: str, sizes: Sizes, state: Any) -> dict:
    """Peak RSS of a fresh process draining `sizes.memory` messages."""
    create(cls, root, policy)
    with opened(cls, root, policy) as store:
        store.prefill(messages(sizes.memory))
    ctx = mp_context()
    results = ctx.Queue()
    reader = spawn(ctx, drain_and_measure, (cls, root, policy, sizes.memory, results))
    with children([reader]):
        report = result_of(results, reader)
    report["lost"] = sizes.memory - report.pop("received")
    return report


def drain_and_measure(cls: type[Contestant], root: Path, policy: str, n: int,
                      results: Any) -> None:
    """Child: drain `n` messages without keeping them; report RSS in MB.

    RSS is read after a tenth of the messages and at the end: a reader whose memory
    is flat in the number of messages drained shows the same value twice.
    """
    start_mb = proc_status_mb("VmRSS")
    with opened(cls, root, policy) as store:
        first = count_received(store, n // 10)
        tenth_mb = proc_status_mb("VmRSS")
        received = first + count_received(store, n - first)
        end_mb = proc_status_mb("VmRSS")
    results.put({"peak_rss_mb": proc_status_mb("VmHWM"), "start_rss_mb": start_mb,
                 "tenth_rss_mb": tenth_mb, "end_rss_mb": end_mb,
                 "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "received": received})


def count_received(store: Contestant, n: int) -> int:
    """Receive up to `n` messages, keeping none of them; return how many came."""
    count = 0
    while count < n and store.receive() is not None:
        count += 1
    return count


def proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS now, VmHWM peak), in MB.

    The peak is VmHWM, not getrusage's ru_maxrss: ru_maxrss survives fork and
    exec, so a child reports at least the RSS of whatever process forked it.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def idle_watch(cls: type[Contestant], root: Path, policy: str, sizes: Sizes,
               state: Any) -> dict:
    """RSS of a fresh process watching `sizes.idle_inboxes` inboxes, idle."""
    folders = [root / f"inbox{i:03d}" for i in range(sizes.idle_inboxes)]
    for folder in folders:
        folder.mkdir(parents=True)
    ctx = mp_context()
    results = ctx.Queue()
    watcher = spawn(ctx, watch_idle, (cls, root, policy, [str(f) for f in folders], results))
    with children([watcher]):
        return result_of(results, watcher)  # type: ignore[no-any-return]


def watch_idle(cls: type[Contestant], root: Path, policy: str, folders: list[str],
               results: Any) -> None:
    """Child: start one watch over `folders`, stay idle, report RSS and threads."""
    start_mb = proc_status_mb("VmRSS")
    store = cls(root, policy)
    watch = store.idle_watch(folders)
    try:
        time.sleep(IDLE_S)
        results.put({"peak_rss_mb": proc_status_mb("VmHWM"), "rss_mb": proc_status_mb("VmRSS"),
                     "start_rss_mb": start_mb, "threads": threading.active_count(),
                     "watched": len(folders)})
    finally:
        watch.stop()


# Cases ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One row group of the table: a workload, possibly at a fixed fsync policy."""

    id: str
    title: str
    measure: Callable[..., dict]
    shown: tuple[str, ...]
    unit: str
    higher_is_better: bool
    policy: str | None = None
    prepare: Callable[..., Any] | None = None
    once: bool = False
    lockstep: bool = False
    """`measure(runs, sizes, rep) -> samples` runs every contestant at once, in turns."""
    versus: str | None = None
    """Another case whose floor each value is also compared with (in the notes)."""


CASES = (
    *(Case("W1", f"W1 send, fsync={p}", w1_send, ("msgs_per_s",), "msgs/s", True, policy=p,
           lockstep=True, versus="W1 send, fsync=always" if p == "batch" else None)
      for p in ("always", "batch", "never")),
    *(Case("W2", f"W2 drain, fsync={p}", w2_drain, ("msgs_per_s",), "msgs/s", True, policy=p,
           lockstep=True) for p in ("always", "batch", "never")),
    Case("W3", f"W3 contention {PRODUCERS}P+{READERS}R", w3_contention, ("msgs_per_s",),
         "msgs/s", True),
    Case("W4", "W4 latency", w4_latency, ("p50_ms", "p99_ms", "max_ms"),
         "ms p50 / p99 / max", False),
    Case("W5", "W5 backlog", w5_backlog, ("slowdown",), "time backlog / empty", False,
         prepare=w5_prepare),
    Case("W6", f"W6 routed to {len(GROUP)}", w6_routed, ("msgs_per_s",), "msgs/s", True),
    *(Case("W7", f"W7 claim, {n:,} in flight", w7_in_flight(n), ("claim_us", "p99_us"),
           "µs per claim + done, p50 / p99", False) for n in IN_FLIGHT),
    *(Case("SYS", f"system calls, fsync={p}", syscalls, ("send_calls", "drain_calls"),
           "per message sent / received", False, policy=p, once=True)
      for p in ("always", "never")),
    Case("MEM", "memory drain", memory, ("peak_rss_mb",), "peak RSS MB", False, once=True),
    Case("IDLE", "memory idle watch", idle_watch, ("peak_rss_mb",), "peak RSS MB", False,
         once=True),
)
