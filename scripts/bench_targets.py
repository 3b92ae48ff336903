#!/usr/bin/env python3
"""The per-message cost targets, met or missed, from one benchmark run's results.

Every full or quick run of `scripts/bench` prints this table after its results, from the
same samples; a saved run is judged again with

    python scripts/bench_targets.py docs/bench-results.json

Which targets a run can judge depends on where its stores lived: the CPU targets need a
tmpfs scratch (`--scratch /dev/shm`), the disk ones a disk (the default `/tmp`). A target
whose rows the run did not measure says so instead of passing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench_report import fmt

AGENTMAILBOX, WAIT, FLOOR, DIRQ, REDIS = (
    "agentmailbox", "agentmailbox-wait", "floor", "dirq", "redis-streams")
IN_RAM = frozenset({"tmpfs", "ramfs"})

Results = dict[tuple[str, str], dict[str, Any]]
"""(case title, contestant) -> its record (summary, x_floor, skipped)."""


@dataclass(frozen=True)
class Verdict:
    """One target's line: what it asks, what the run measured, and whether it holds."""

    target: str
    measured: str
    met: bool | None  # None: this run cannot judge it

    @property
    def status(self) -> str:
        """met, missed, or why not judged."""
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def filesystem_of(path: str) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    real, best, kind = os.path.realpath(path), "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def index(results: list[dict[str, Any]]) -> Results:
    """The run's records by (case, contestant), measured ones only."""
    return {(r["case"], r["contestant"]): r for r in results
            if r.get("summary") and not r.get("skipped")}


def throughput_ratio(res: Results, case: str, contestant: str, other: str) -> float | None:
    """contestant's msgs/s over other's on `case` (the median of per-repetition ratios to
    the floor when `other` is the floor, as the results table shows it)."""
    mine, theirs = res.get((case, contestant)), res.get((case, other))
    if mine is None or theirs is None:
        return None
    if other == FLOOR and mine.get("x_floor"):
        cost = mine["x_floor"]["msgs_per_s"]
        return 1 / cost if cost else None
    base = theirs["summary"]["msgs_per_s"]
    return mine["summary"]["msgs_per_s"] / base if base else None


def _at_least(name: str, case: str, other: str, goal: float,
              contestant: str = AGENTMAILBOX) -> Callable[[Results], Verdict]:
    def judge(res: Results) -> Verdict:
        ratio = throughput_ratio(res, case, contestant, other)
        if ratio is None:
            return Verdict(name, f"no {case} rows for {contestant} and {other}", None)
        return Verdict(name, f"{ratio:.2f}x ({case})", ratio >= goal)
    return judge


def _w4(res: Results) -> Verdict:
    name = "W4 p99 <= 2x raw inotify"
    floor = res.get(("W4 latency", FLOOR))
    ours = [(c, res[("W4 latency", c)]) for c in (AGENTMAILBOX, WAIT) if ("W4 latency", c) in res]
    if floor is None or not ours:
        return Verdict(name, "no W4 rows", None)
    base = floor["summary"]["p99_ms"]
    parts = [(c, r["summary"]["p99_ms"] / base) for c, r in ours]
    text = "; ".join(f"{'watch()' if c == AGENTMAILBOX else 'wait()'} "
                     f"{r['summary']['p99_ms']:.2f} vs {base:.2f} ms, {x:.2f}x"
                     for (c, r), (_, x) in zip(ours, parts, strict=True))
    return Verdict(name, text, all(x <= 2 for _, x in parts))


def _w3_exact(res: Results) -> Verdict:
    name = "W3 4 producers x 2 consumers: 0 lost, 0 duplicated"
    ours = res.get(("W3 contention 4P+2R", AGENTMAILBOX))
    if ours is None:
        return Verdict(name, "no W3 row", None)
    s = ours["summary"]
    return Verdict(name, f"lost {s['lost']}, duplicated {s['duplicated']}, "
                         f"{s['msgs_per_s']:,.0f} msgs/s", s["lost"] == 0 and s["duplicated"] == 0)


LOWER_IS_BETTER = {"W4 latency": "p99_ms", "W5 backlog": "slowdown"}


def _ahead_of_dirq(res: Results) -> Verdict:
    name = "ahead of dirq on every workload"
    rows, behind = [], []
    for (case, contestant), ours in sorted(res.items()):
        if contestant != AGENTMAILBOX or (case, DIRQ) not in res or not case.startswith("W"):
            continue
        theirs = res[(case, DIRQ)]["summary"]
        key = LOWER_IS_BETTER.get(case) or ("claim_us" if case.startswith("W7") else "msgs_per_s")
        mine, other = ours["summary"].get(key), theirs.get(key)
        if mine is None or other is None:
            continue
        ahead = mine < other if key != "msgs_per_s" else mine > other
        rows.append(case)
        if not ahead:
            behind.append(f"{case}: {fmt(mine)} vs {fmt(other)}")
    if not rows:
        return Verdict(name, "no rows with both", None)
    text = f"ahead on {len(rows) - len(behind)} of {len(rows)}"
    return Verdict(name, text + (f"; behind on {'; '.join(behind)}" if behind else ""), not behind)


def _w7_flat(res: Results) -> Verdict:
    name = "claim cost flat in the claims in flight (W7, 1,000 vs 0)"
    none, many = res.get(("W7 claim, 0 in flight", AGENTMAILBOX)), res.get(
        ("W7 claim, 1,000 in flight", AGENTMAILBOX))
    if none is None or many is None:
        return Verdict(name, "no W7 rows", None)
    a, b = none["summary"]["claim_us"], many["summary"]["claim_us"]
    return Verdict(name, f"{a:.0f} → {b:.0f} µs per claim + done ({b / a:.2f}x)", b <= 2 * a)


def targets(in_ram: bool) -> list[Callable[[Results], Verdict]]:
    """The per-message cost targets, for a run on tmpfs (CPU) or on a disk."""
    common = [_ahead_of_dirq, _w4, _w3_exact, _w7_flat]
    if in_ram:
        return [_at_least("send, fsync=never >= 0.5x the floor", "W1 send, fsync=never", FLOOR,
                          0.5),
                _at_least("drain, fsync=never >= 0.5x the floor", "W2 drain, fsync=never", FLOOR,
                          0.5),
                _at_least("send >= 1.5x Redis Streams", "W1 send, fsync=never", REDIS, 1.5),
                _at_least("drain >= 1.5x Redis Streams", "W2 drain, fsync=never", REDIS, 1.5),
                *common]
    return [_at_least("drain, fsync=never >= 0.7x the floor", "W2 drain, fsync=never", FLOOR, 0.7),
            _at_least("durable send >= 0.95x the fsync floor", "W1 send, fsync=always", FLOOR,
                      0.95),
            *common]


def judge(results: list[dict[str, Any]], fs_type: str) -> list[Verdict]:
    """Every target this run's filesystem makes sense for."""
    res = index(results)
    return [target(res) for target in targets(fs_type in IN_RAM)]


def markdown(verdicts: list[Verdict], fs_type: str) -> str:
    """The targets table."""
    lines = [f"Targets (per-message cost) for a run on {fs_type}:", "",
             "| target | measured | status |", "| --- | --- | --- |"]
    lines += [f"| {v.target} | {v.measured} | {v.status} |" for v in verdicts]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Judge a saved results file."""
    if len(argv) != 1:
        print("usage: bench_targets.py RESULTS.json", file=sys.stderr)
        return 2
    data = json.loads(Path(argv[0]).read_text())
    meta = data.get("meta", {})
    fs_type = meta.get("scratch_fs") or filesystem_of(meta.get("scratch", "/tmp"))
    print(markdown(judge(data["results"], fs_type), fs_type))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
