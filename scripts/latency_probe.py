#!/usr/bin/env python3
"""Send-to-claim latency of a watching reader (workload W4, for agentmailbox alone).

A sender here sends one message every 2 ms (2,000 in all), stamped with
``perf_counter_ns`` (CLOCK_MONOTONIC: one clock for every process on the machine)
just before ``send``. A reader in another process waits for mail with
``inbox.wait()`` and claims it (or consumes ``inbox.watch()`` with ``--mode watch``)
and records, per message, the time from the stamp to the return of the claim.
Prints p50 / p99 / max in milliseconds.

    PYTHONPATH=. python scripts/latency_probe.py [--mode wait|watch|both] [--fsync never]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentmailbox import Mailbox

CHILD_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="messages to send")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="pause between sends")
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="never")
    parser.add_argument("--mode", choices=["wait", "watch", "both"], default="both",
                        help="reader loop: inbox.wait() + claim, or inbox.watch()")
    return parser.parse_args(argv)


def read_with_wait(root: Path, n: int, ready: Any, results: Any) -> None:
    """Child: ``inbox.wait()`` then claim everything there, until ``n`` are claimed."""
    latencies: list[int] = []
    try:
        inbox = Mailbox.open(root).inbox("bob")
        ready.set()
        while len(latencies) < n and inbox.wait(timeout=CHILD_TIMEOUT_S):
            while (msg := inbox.claim()) is not None:
                latencies.append(time.perf_counter_ns() - msg.body["t"])
                inbox.done(msg)
    finally:
        results.put(latencies)


def read_with_watch(root: Path, n: int, ready: Any, results: Any) -> None:
    """Child: consume ``inbox.watch()`` until ``n`` are claimed."""
    latencies: list[int] = []
    try:
        inbox = Mailbox.open(root).inbox("bob")
        ready.set()
        for msg in inbox.watch(timeout=CHILD_TIMEOUT_S, heartbeat=False):
            latencies.append(time.perf_counter_ns() - msg.body["t"])
            inbox.done(msg)
            if len(latencies) == n:
                break
    finally:
        results.put(latencies)


READERS = {"wait": read_with_wait, "watch": read_with_watch}


def paced_send(mb: Mailbox, n: int, interval_s: float) -> None:
    began = time.perf_counter()
    for seq in range(n):
        pause = began + seq * interval_s - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        mb.send("alice", "bob", subject="probe", body={"seq": seq, "t": time.perf_counter_ns()})


def probe(mode: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="latency-probe-", dir="/tmp") as scratch:
        mb = Mailbox.init(scratch, fsync=args.fsync)
        mb.add_agent("alice")
        mb.add_agent("bob")
        ctx = mp.get_context("spawn")
        ready, results = ctx.Event(), ctx.Queue()
        reader = ctx.Process(target=READERS[mode], args=(mb.path, args.count, ready, results))
        reader.start()
        try:
            if not ready.wait(CHILD_TIMEOUT_S):
                raise TimeoutError("the reader did not start")
            time.sleep(0.2)  # let it reach its first wait
            paced_send(mb, args.count, args.interval_ms / 1000)
            latencies = results.get(timeout=CHILD_TIMEOUT_S)
        finally:
            reader.join(CHILD_TIMEOUT_S)
            if reader.is_alive():
                reader.kill()
        return summary(latencies, args.count)


def summary(latencies_ns: list[int], sent: int) -> dict[str, float]:
    ms = sorted(x / 1e6 for x in latencies_ns)
    if not ms:
        return {"received": 0, "sent": sent}
    return {"sent": sent, "received": len(ms), "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "max_ms": ms[-1]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = ["wait", "watch"] if args.mode == "both" else [args.mode]
    print(f"{'reader':<8} {'fsync':<7} {'received':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    worst = 0
    for mode in modes:
        r = probe(mode, args)
        print(f"{mode:<8} {args.fsync:<7} {r['received']:>5}/{r['sent']:<3} "
              f"{r.get('p50_ms', float('nan')):>8.2f} {r.get('p99_ms', float('nan')):>8.2f} "
              f"{r.get('max_ms', float('nan')):>8.2f}")
        worst = max(worst, int(r["received"] != r["sent"]))
    return worst


if __name__ == "__main__":
    sys.exit(main())
