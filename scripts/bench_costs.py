#!/usr/bin/env python3
"""What each of agentmailbox's extra steps costs, next to the floor (W1 send, W2 drain).

Runs, in turns of 100 messages (as `scripts/bench` does for W1 and W2): the floor, the
protocol floor (agentmailbox's system calls without the library), agentmailbox, and
agentmailbox with one step switched off at a time. A step is switched off by patching
this process's copy of the library around that store's turn only; nothing on disk
changes, and the patched runs are measurements, not a way to run the library.

    PYTHONPATH=. python scripts/bench_costs.py [--fsync never] [--count 5000] [--reps 5]

Prints per-message time (medians over the repetitions) and what each step costs,
for sending and for draining (claim, read, done).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from bench_contestants import AgentMailbox, Contestant, Floor, ProtocolFloor
from bench_workloads import LOCKSTEP_CHUNK, lockstep_order, messages, settle

import agentmailbox.fs as fs
import agentmailbox.inbox as inbox
import agentmailbox.journal as journal
import agentmailbox.registry as registry
from agentmailbox.message import Message

Patch = tuple[Any, str, Any]


def _no_journal() -> list[Patch]:
    return [(journal.Journal, "record", lambda self, *a, **k: None)]


def _no_registry_check() -> list[Patch]:
    return [(registry.Registry, "exists", lambda self, name: True)]


def _no_lease() -> list[Patch]:
    return [(fs.Disk, "touch_open", staticmethod(lambda fd, path: None))]


def _no_done_check() -> list[Patch]:
    lstat = fs.Disk.lstat

    def not_done(self: fs.Disk, path: fs.StrPath) -> os.stat_result | None:
        return None if "/done/" in os.fspath(path) else lstat(self, path)
    return [(fs.Disk, "lstat", not_done)]


def _no_schema_check() -> list[Patch]:
    def plain(data: bytes, *, expected_id: str | None = None) -> Message:
        obj = orjson.loads(data)
        return Message(id=obj["id"], sender=obj["from"], to=tuple(obj["to"]),
                       subject=obj["subject"], body=obj["body"], thread=obj["thread"])
    return [(inbox, "decode", plain)]


def _one_scan() -> list[Patch]:
    def refill(self: inbox.Inbox) -> bool:
        self._sweep_if_due()
        self._queue = sorted(self._scan_new(), reverse=True)
        return bool(self._queue)
    return [(inbox.Inbox, "_refill", refill)]


def _plain_rename_moves() -> list[Patch]:
    def move(self: fs.Disk, src: str, dest: str) -> fs.Moved:
        try:
            os.rename(src, dest)  # replaces: a measurement only, never the protocol
        except FileNotFoundError:
            return fs.Moved.GONE
        return fs.Moved.MOVED
    return [(fs.Disk, "move", move)]


def _no_folder_guard() -> list[Patch]:
    return [(fs.Disk, "guard", lambda self, path: None)]


def _plain_rename_publish() -> list[Patch]:
    def place(self: fs.Disk, staged: str, dest: str) -> bool:
        os.rename(staged, dest)  # replaces: a measurement only, never the protocol
        return True
    return [(fs.Disk, "place", place)]


STEPS: dict[str, Callable[[], list[Patch]]] = {
    "journal line per transition": _no_journal,
    "registry check of both agents (4 lstat)": _no_registry_check,
    "lease (futimens on claim)": _no_lease,
    "done check (lstat done/<day>/X)": _no_done_check,
    "schema check (canonical form, fields)": _no_schema_check,
    "second scan per refill": _one_scan,
    "renameat2 (ctypes) instead of os.rename for claim/done": _plain_rename_moves,
    "folder guard (lstat each folder, trusted 1 s)": _no_folder_guard,
    "renameat2 (ctypes) instead of os.rename for publish": _plain_rename_publish,
}


@contextlib.contextmanager
def patched(patches: list[Patch]) -> Iterator[None]:
    """Apply (object, attribute, value) patches; undo them on exit."""
    saved = [(obj, attr, obj.__dict__[attr]) for obj, attr, _ in patches]
    for obj, attr, value in patches:
        setattr(obj, attr, value)
    try:
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def one_rep(top: Path, policy: str, count: int, rep: int) -> dict[str, tuple[float, float]]:
    """Seconds per message (send, drain) for every variant, in turns."""
    variants: list[tuple[str, type[Contestant], list[Patch]]] = [
        ("floor", Floor, []), ("floor-protocol", ProtocolFloor, []),
        ("agentmailbox", AgentMailbox, []),
        *((f"without {step}", AgentMailbox, make()) for step, make in STEPS.items()),
    ]
    stores = []
    for i, (_, cls, _) in enumerate(variants):
        store = cls(top / f"r{rep}-{i}", policy)
        store.create()
        store.open()
        stores.append(store)
    msgs = messages(count)
    send = [0.0] * len(stores)
    drain = [0.0] * len(stores)
    settle()
    for step, start in enumerate(range(0, count, LOCKSTEP_CHUNK)):
        for i in lockstep_order(len(stores), rep + step):
            with patched(variants[i][2]):
                began = time.perf_counter()
                stores[i].send_many(msgs[start:start + LOCKSTEP_CHUNK])
                send[i] += time.perf_counter() - began
    settle()
    for store in stores:  # a fresh reader, as in W2
        store.close()
        store.open()
    for step in range(0, count, LOCKSTEP_CHUNK):
        for i in lockstep_order(len(stores), rep + step):
            with patched(variants[i][2]):
                began = time.perf_counter()
                got = stores[i].drain(LOCKSTEP_CHUNK)
                drain[i] += time.perf_counter() - began
            if len(got) != LOCKSTEP_CHUNK:
                raise RuntimeError(f"{variants[i][0]}: drained {len(got)}")
    for store in stores:
        store.close()
    return {name: (send[i] / count, drain[i] / count) for i, (name, _, _) in enumerate(variants)}


def table(results: list[dict[str, tuple[float, float]]]) -> str:
    """Markdown: µs per message, and what each step costs against full agentmailbox."""
    med = {name: tuple(statistics.median(r[name][k] for r in results) * 1e6 for k in (0, 1))
           for name in results[0]}
    full_send, full_drain = med["agentmailbox"]
    lines = ["| variant | send µs/msg | step costs | drain µs/msg | step costs |",
             "| --- | --- | --- | --- | --- |"]
    for name, (send, drain) in med.items():
        if name.startswith("without "):
            cost = f"{full_send - send:+.1f}", f"{full_drain - drain:+.1f}"
        else:
            cost = "", ""
        lines.append(f"| {name} | {send:.1f} | {cost[0]} | {drain:.1f} | {cost[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsync", choices=["always", "never"], default="never")
    parser.add_argument("--count", type=int, default=5000, help="messages per repetition")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scratch", default="/tmp", help="parent of the scratch folder")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-costs-", dir=args.scratch) as top:
        for rep in range(args.reps):
            results.append(one_rep(Path(top), args.fsync, args.count, rep))
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    print(table(results))
    print(f"\nfsync={args.fsync}, {args.count} messages, median of {args.reps} reps; step "
          "costs are agentmailbox minus agentmailbox without that step (noise: a few µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
