"""The benchmark's targets table judges a run by its own numbers (scripts/bench_targets.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_targets


def _row(case: str, contestant: str, **summary: Any) -> dict[str, Any]:
    x_floor = None
    if "cost" in summary:
        x_floor = {"msgs_per_s": summary.pop("cost")}
    return {"case": case, "contestant": contestant, "summary": summary, "x_floor": x_floor,
            "skipped": None}


def _run(send_cost: float, dirq_send: float) -> list[dict[str, Any]]:
    send, drain = "W1 send, fsync=never", "W2 drain, fsync=never"
    return [
        _row(send, "floor", msgs_per_s=40_000.0, cost=1.0),
        _row(send, "agentmailbox", msgs_per_s=40_000.0 / send_cost, cost=send_cost),
        _row(send, "dirq", msgs_per_s=dirq_send, cost=40_000.0 / dirq_send),
        _row(send, "redis-streams", msgs_per_s=5_000.0, cost=8.0),
        _row(drain, "floor", msgs_per_s=30_000.0, cost=1.0),
        _row(drain, "agentmailbox", msgs_per_s=20_000.0, cost=1.5),
        _row(drain, "dirq", msgs_per_s=10_000.0, cost=3.0),
        _row(drain, "redis-streams", msgs_per_s=2_000.0, cost=15.0),
        _row("W4 latency", "floor", p50_ms=0.2, p99_ms=0.5, max_ms=1.0),
        _row("W4 latency", "agentmailbox", p50_ms=0.3, p99_ms=0.9, max_ms=2.0),
    ]


def _by_target(verdicts: list[bench_targets.Verdict]) -> dict[str, bench_targets.Verdict]:
    return {v.target: v for v in verdicts}


def test_a_tmpfs_run_is_judged_on_the_cpu_targets_with_its_numbers() -> None:
    """Each target states the measured ratio and whether it holds."""
    got = _by_target(bench_targets.judge(_run(send_cost=2.5, dirq_send=20_000.0), "tmpfs"))
    send = got["send, fsync=never >= 0.5x the floor"]
    assert (send.met, send.measured) == (False, "0.40x (W1 send, fsync=never)")
    assert got["drain, fsync=never >= 0.5x the floor"].met is True
    assert got["send >= 1.5x Redis Streams"].met is True
    assert got["W4 p99 <= 2x raw inotify"].met is True
    dirq = got["ahead of dirq on every workload"]
    assert dirq.met is False and "W1 send, fsync=never: 16,000 vs 20,000" in dirq.measured


def test_targets_a_run_did_not_measure_are_not_called_met() -> None:
    """A disk run without W3 or W7 rows says so instead of passing those targets."""
    got = _by_target(bench_targets.judge(_run(send_cost=1.5, dirq_send=10_000.0), "ext4"))
    assert "send, fsync=never >= 0.5x the floor" not in got  # a CPU target: tmpfs runs only
    assert got["ahead of dirq on every workload"].met is True
    assert got["W3 4 producers x 2 consumers: 0 lost, 0 duplicated"].met is None
    assert got["W3 4 producers x 2 consumers: 0 lost, 0 duplicated"].status == "not measured"
    assert got["durable send >= 0.95x the fsync floor"].met is None


def test_the_filesystem_of_a_path_is_its_longest_mount_point() -> None:
    """/dev/shm is judged as tmpfs where it is mounted so, the root filesystem otherwise."""
    mounts = Path("/proc/mounts").read_text()
    if " /dev/shm tmpfs " in mounts:
        assert bench_targets.filesystem_of("/dev/shm") == "tmpfs"
    root = next(line.split()[2] for line in mounts.splitlines() if line.split()[1] == "/")
    assert bench_targets.filesystem_of("/") == root
