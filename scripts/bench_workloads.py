"""Workloads W1-W5 and memory, with the child-process entry points they start.

Every measure function has the signature
`measure(cls, root, policy, sizes, state) -> dict` where `root` is a path that
does not exist yet, and returns the metrics of one repetition.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_contestants import Contestant

PRODUCERS = 4
READERS = 2
LATENCY_INTERVAL_S = 0.002
LISTEN_GRACE_S = 10.0
CHILD_TIMEOUT_S = 300.0
JOIN_GRACE_S = 5.0
READER_IDLE_S = 0.0005
FILLER = ("lorem ipsum dolor sit amet " * 16)[:380]
BACKLOG_SEQ0 = 10**9


@dataclass(frozen=True)
class Sizes:
    """Message counts for one run."""

    send: int
    per_producer: int
    latency: int
    cycle: int
    backlog: int
    memory: int


QUICK = Sizes(send=2_000, per_producer=500, latency=500, cycle=1_000, backlog=20_000,
              memory=10_000)
FULL = Sizes(send=10_000, per_producer=2_500, latency=2_000, cycle=1_000, backlog=100_000,
             memory=100_000)


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
    proc = ctx.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


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


def check_exits(procs: Sequence[Any], what: str) -> None:
    """Raise if any of `procs` failed."""
    for proc in procs:
        proc.join(timeout=CHILD_TIMEOUT_S)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{what} exited with {failed}")


# W1 ---------------------------------------------------------------------------

def w1_send(cls: type[Contestant], root: Path, policy: str, sizes: Sizes, state: Any) -> dict:
    """One producer sends `sizes.send` messages to one inbox."""
    create(cls, root, policy)
    msgs = messages(sizes.send)
    with opened(cls, root, policy) as store:
        _, elapsed = timed(store.send_many, msgs)
    return {"msgs_per_s": len(msgs) / elapsed}


# W2 ---------------------------------------------------------------------------

def w2_drain(cls: type[Contestant], root: Path, policy: str, sizes: Sizes, state: Any) -> dict:
    """One reader claims, parses and marks done `sizes.send` messages, in order."""
    create(cls, root, policy)
    with opened(cls, root, policy) as store:
        store.prefill(messages(sizes.send))
    with opened(cls, root, policy) as store:
        got, elapsed = timed(store.drain, sizes.send)
    seqs = [m["seq"] for m in got]
    return {"msgs_per_s": len(got) / elapsed, "lost": sizes.send - len(set(seqs)),
            "in_order": seqs == sorted(seqs)}


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
        with opened(cls, root, policy) as store:
            paced_send(store, sizes.latency)
        latencies = results.get(timeout=CHILD_TIMEOUT_S)
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
            _collect_latencies(store, n, latencies)
    finally:
        results.put(latencies)


def _collect_latencies(store: Contestant, n: int, latencies: list[int]) -> None:
    deadline = time.monotonic() + n * LATENCY_INTERVAL_S + LISTEN_GRACE_S
    while len(latencies) < n and (left := deadline - time.monotonic()) > 0:
        msg = store.receive()
        if msg is None:
            store.wait(left)
        else:
            latencies.append(time.perf_counter_ns() - msg["t"])


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
    """Send+drain `sizes.cycle` messages in an empty store and in the backlog store.

    The empty-store cycle runs before and after the backlog one (two fresh
    stores) and the two are averaged, so drift in disk speed cancels out.
    """
    before = cycle(cls, fresh(root / "before", cls, policy), policy, sizes.cycle)
    settle()
    loaded = cycle(cls, state, policy, sizes.cycle)
    settle()
    after = cycle(cls, fresh(root / "after", cls, policy), policy, sizes.cycle)
    empty = (before + after) / 2
    return {"slowdown": loaded / empty, "empty_msgs_per_s": sizes.cycle / empty,
            "backlog_msgs_per_s": sizes.cycle / loaded}


def fresh(root: Path, cls: type[Contestant], policy: str) -> Path:
    """Create an empty store of `cls` at `root`, flush, and return `root`."""
    root.parent.mkdir(parents=True, exist_ok=True)
    create(cls, root, policy)
    settle()
    return root


def cycle(cls: type[Contestant], root: Path, policy: str, n: int) -> float:
    """Seconds to send `n` messages and drain them."""
    msgs = messages(n)
    with opened(cls, root, policy) as store:
        began = time.perf_counter()
        store.send_many(msgs)
        got = store.drain(n)
        elapsed = time.perf_counter() - began
    if len(got) != n:
        raise RuntimeError(f"drained {len(got)} of {n}")
    return elapsed


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
        report = results.get(timeout=CHILD_TIMEOUT_S)
    report["lost"] = sizes.memory - report.pop("received")
    return report


def drain_and_measure(cls: type[Contestant], root: Path, policy: str, n: int,
                      results: Any) -> None:
    """Child: drain `n` messages without keeping them; report RSS in MB."""
    start_mb = proc_status_mb("VmRSS")
    with opened(cls, root, policy) as store:
        received = count_received(store, n)
    results.put({"peak_rss_mb": proc_status_mb("VmHWM"), "start_rss_mb": start_mb,
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


CASES = (
    *(Case("W1", f"W1 send, fsync={p}", w1_send, ("msgs_per_s",), "msgs/s", True, policy=p)
      for p in ("always", "batch", "never")),
    Case("W2", "W2 drain", w2_drain, ("msgs_per_s",), "msgs/s", True),
    Case("W3", f"W3 contention {PRODUCERS}P+{READERS}R", w3_contention, ("msgs_per_s",),
         "msgs/s", True),
    Case("W4", "W4 latency", w4_latency, ("p50_ms", "p99_ms", "max_ms"),
         "ms p50 / p99 / max", False),
    Case("W5", "W5 backlog", w5_backlog, ("slowdown",), "time backlog / empty", False,
         prepare=w5_prepare),
    Case("MEM", "memory drain", memory, ("peak_rss_mb",), "peak RSS MB", False, once=True),
)
