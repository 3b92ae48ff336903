#!/usr/bin/env python3
"""Benchmark harness: agentmailbox against a plain-os floor and its peers.

Measures every contestant (the plain-os floor, stdlib Maildir, persist-queue,
dirq, Redis Streams and agentmailbox) on workloads W1-W7 and memory, with contestants
interleaved and repetitions summarised by their median, then the startup rows
(one ``mailbox`` call against ``python -c pass``; ``--startup`` runs only those).
``--mcp`` prints what the MCP server's tool list costs a model's context instead.
Prints markdown tables; a full run (no --quick) also writes docs/bench-results.json.
Usually run through `scripts/bench`, which installs the `bench` extra first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bench_startup
import bench_targets
from bench_contestants import CONTESTANTS, POLICIES, Contestant, RedisStreams
from bench_redis import redis_server
from bench_report import Entry, markdown, record
from bench_workloads import CASES, FULL, QUICK, Case, Sizes, settle

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "docs" / "bench-results.json"
SCRATCH_PARENT = "/tmp"
DEFAULT_REPS = {True: 3, False: 5}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--reps", type=int, help="repetitions (default 3 quick, 5 full)")
    parser.add_argument("--only", help="workloads to run, e.g. W1,W2 (W1-W7, SYS, MEM, IDLE); "
                                       "without it the startup rows run too")
    parser.add_argument("--startup", action="store_true",
                        help="only the startup rows: mailbox --help, inbox, read --peek, "
                             "send against python -c pass")
    parser.add_argument("--mcp", action="store_true",
                        help="only the MCP row: the tool list's size in tokens (characters/4)")
    parser.add_argument("--contestants", help="contestants to run, e.g. floor,dirq")
    parser.add_argument("--fsync", choices=POLICIES, default="never",
                        help="fsync policy for W3-W6 and memory (W1 runs all three, "
                             "W2 always and never)")
    parser.add_argument("--scratch", default=SCRATCH_PARENT,
                        help=f"parent of the scratch folder (default {SCRATCH_PARENT}; "
                             "/dev/shm measures without the disk)")
    parser.add_argument("--out", type=Path,
                        help=f"results JSON (default {DEFAULT_OUT.relative_to(REPO)} "
                             "for full runs, none for --quick)")
    return parser.parse_args(argv)


def pick(names: str | None, known: list[str], what: str) -> set[str]:
    """The comma-separated `names` (all of `known` when None), case-insensitive."""
    if names is None:
        return set(known)
    by_lower = {k.lower(): k for k in known}
    asked = {n.strip().lower() for n in names.split(",") if n.strip()}
    unknown = asked - by_lower.keys()
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    return {by_lower[n] for n in asked}


def plan(args: argparse.Namespace) -> list[Entry]:
    """One entry per (case, contestant) pair to report, in table order."""
    ids = pick(args.only, list(dict.fromkeys(c.id for c in CASES)), "workloads")
    names = pick(args.contestants, [c.name for c in CONTESTANTS], "contestants")
    cases = [c for c in CASES if c.id in ids]
    contestants = [c for c in CONTESTANTS if c.name in names and c.available()]
    return [entry_for(case, cls, args.fsync)
            for case in cases for cls in contestants if cls.enters(case.id)]


def entry_for(case: Case, cls: type[Contestant], default_policy: str) -> Entry:
    """Decide the fsync policy for a pair, or why it is n/a."""
    wanted = case.policy or default_policy
    policy = cls.policy_for(wanted, exact=case.policy is not None)
    skip = cls.skip_reason(case.id)
    if skip is None and policy is None:
        skip = f"has no fsync={wanted} mode"
    return Entry(case, cls, wanted, policy, skip)


@contextmanager
def scratch_dir(parent: str) -> Iterator[Path]:
    """A fresh <parent>/bench-XXXX directory, removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="bench-", dir=parent))
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run(entries: list[Entry], sizes: Sizes, reps: int, top: Path) -> None:
    """Prepare, then measure every runnable entry `reps` times, interleaved."""
    active = [e for e in entries if not e.skip]
    for index, entry in enumerate(active):
        prepare(entry, sizes, top / f"prep-{index}")
    ready = [e for e in active if not e.errors]
    for rep in range(reps):
        for group in by_case(ready):
            label = f"{rep + 1}/{reps}"
            if group[0].case.lockstep:
                measure_lockstep(group, sizes, top, label, rep)
                continue
            for entry in rotated(group, rep):
                if rep == 0 or not entry.case.once:
                    measure(entry, sizes, top, label)


def by_case(entries: list[Entry]) -> list[list[Entry]]:
    """`entries` grouped by case, in order."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.case.title, []).append(entry)
    return list(groups.values())


def rotated(items: list[Entry], shift: int) -> list[Entry]:
    """`items` rotated left by `shift`, so no contestant always runs first."""
    shift %= max(1, len(items))
    return items[shift:] + items[:shift]


def prepare(entry: Entry, sizes: Sizes, root: Path) -> None:
    """Run the case's one-off setup for this contestant, if it has one."""
    if entry.case.prepare is None:
        return
    began = time.perf_counter()
    try:
        entry.state = entry.case.prepare(entry.contestant, root, entry.policy, sizes)
    except Exception as exc:
        entry.errors.append(failure(exc))
    log(f"prepare {entry.case.title} {entry.name} ({time.perf_counter() - began:.1f} s)")


def measure(entry: Entry, sizes: Sizes, top: Path, label: str) -> None:
    """One repetition of one pair in a fresh directory; failures are recorded.

    Scratch directories are removed only at the end of the run: deleting
    thousands of files between measurements slows down the next one.
    """
    root = Path(tempfile.mkdtemp(dir=top)) / "store"
    settle()
    began = time.perf_counter()
    try:
        sample = entry.case.measure(entry.contestant, root, entry.policy, sizes, entry.state)
    except Exception as exc:
        entry.errors.append(failure(exc))
        outcome = f"FAILED {entry.errors[-1]}"
    else:
        entry.samples.append(sample)
        outcome = brief(entry.case, sample)
    took = time.perf_counter() - began
    log(f"[{label}] {entry.case.title:<22} {entry.name:<15} {outcome} ({took:.1f} s)")


def measure_lockstep(entries: list[Entry], sizes: Sizes, top: Path, label: str,
                     rep: int) -> None:
    """One repetition of a case whose contestants take turns in one process."""
    runs = [(e.contestant, Path(tempfile.mkdtemp(dir=top)) / "store", e.policy or "")
            for e in entries]
    settle()
    began = time.perf_counter()
    try:
        samples = entries[0].case.measure(runs, sizes, rep)
    except Exception as exc:
        reason = failure(exc)
        for entry in entries:
            entry.errors.append(reason)
        log(f"[{label}] {entries[0].case.title:<22} FAILED {reason}")
        return
    took = time.perf_counter() - began
    for entry, sample in zip(entries, samples, strict=True):
        entry.samples.append(sample)
        log(f"[{label}] {entry.case.title:<22} {entry.name:<15} {brief(entry.case, sample)}")
    log(f"[{label}] {entries[0].case.title:<22} ({took:.1f} s, in turns)")


def failure(exc: Exception) -> str:
    """A one-line description of `exc`, with the full traceback logged."""
    log(traceback.format_exc().rstrip())
    return f"{type(exc).__name__}: {exc}"


def brief(case: Case, sample: dict) -> str:
    """The shown metrics of one sample, for the progress log."""
    return " / ".join(f"{sample[k]:.4g}" for k in case.shown) + f" {case.unit}"


def log(text: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(text, file=sys.stderr, flush=True)


def meta(args: argparse.Namespace, sizes: Sizes, reps: int, seconds: float,
         load_before: list[float]) -> dict:
    """Where and how the numbers were taken."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "reps": reps,
        "fsync_w3_w6": args.fsync, "sizes": vars(sizes), "seconds": round(seconds, 1),
        "scratch": args.scratch, "scratch_fs": bench_targets.filesystem_of(args.scratch),
        "load_before": load_before,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)), "commit": git_commit(),
    }


def git_commit() -> str | None:
    """The repository's HEAD commit, if there is one."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def write_json(path: Path, data: dict) -> None:
    """Write `data` as indented JSON, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    log(f"wrote {path}")


def mcp_table() -> str:
    """The tokens each MCP tool costs (characters/4 of its tools/list JSON), and the whole
    list's against the budget, on a throwaway root."""
    import anyio

    from agentmailbox import Mailbox
    from agentmailbox.mcpserver import BUDGET, build, tokens, tool_list

    with tempfile.TemporaryDirectory() as where, Mailbox.init(where, fsync="never") as mb:
        mb.add_agent("bob")
        tools = anyio.run(tool_list, build(mb, "bob", notify=False))
    size = {t["name"]: len(json.dumps(t, separators=(",", ":"))) for t in tools}
    rows = [f"| {t['name']} | {size[t['name']]} | {tokens([t])} |" for t in tools]
    total = f"| all {len(tools)} | {sum(size.values())} | {tokens(tools)} (budget {BUDGET}) |"
    return "\n".join(["| MCP tool | characters | tokens |", "|---|---:|---:|", *rows, total])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    if args.startup:
        print(bench_startup.markdown(bench_startup.measure()))
        return 0
    if args.mcp:
        print(mcp_table())
        return 0
    sizes, reps = (QUICK if args.quick else FULL), args.reps or DEFAULT_REPS[args.quick]
    load_before = [round(x, 2) for x in os.getloadavg()]
    began = time.perf_counter()
    wanted = pick(args.contestants, [c.name for c in CONTESTANTS], "contestants")
    with redis_server(RedisStreams.name in wanted), scratch_dir(args.scratch) as top:
        entries = plan(args)
        run(entries, sizes, reps, top)
    startup = bench_startup.measure() if args.only is None else []
    seconds = time.perf_counter() - began
    print(markdown(entries))
    results = record(entries, meta(args, sizes, reps, seconds, load_before))
    fs_type = results["meta"]["scratch_fs"]
    verdicts = bench_targets.judge(results["results"], fs_type)
    print("\n" + bench_targets.markdown(verdicts, fs_type))
    if startup:
        print("\n" + bench_startup.markdown(startup))
    print(f"\n{'quick' if args.quick else 'full'} run, {reps} reps, {seconds:.0f} s, "
          f"scratch in {args.scratch}, {len(os.sched_getaffinity(0))} CPUs, load average "
          f"{load_before[0]} before / {os.getloadavg()[0]:.2f} after")
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        write_json(out, {**results, "targets": [vars(v) for v in verdicts],
                         "startup": startup})
    return 1 if any(e.errors for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
