"""Results of a benchmark run: per-pair records, medians, the table and the JSON."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench_contestants import Contestant, Floor
from bench_workloads import Case

WORST_OF = frozenset({"lost", "duplicated"})
HEADER = ("workload", "contestant", "metric", "value", "x floor", "notes")
LEGEND = ("x floor: cost relative to the floor on the same row group (time per message, "
          "latency, slowdown or memory); 1.00 = floor, above 1 = worse; the target ratios "
          "(\"0.9x the floor\") are its inverse. In W1 and W2 it is the median of the "
          "ratios of each repetition. Values are medians over repetitions; "
          "spread is half the min-max range over the median; lost/dup are the worst "
          "repetition. W1 and W2 run every contestant in one process, in turns of 100 "
          "messages, so the disk's slow phases fall on all alike (W5 does the same with its "
          "three stores); the other workloads run the contestants one after another, in an "
          "order rotated every repetition.")


@dataclass
class Entry:
    """One (case, contestant) pair: what to run and what it measured."""

    case: Case
    contestant: type[Contestant]
    wanted: str
    policy: str | None
    skip: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    state: Any = None

    @property
    def name(self) -> str:
        """The contestant's name."""
        return self.contestant.name

    def summary(self) -> dict[str, Any]:
        """Medians of the samples (worst for lost/duplicated, all() for flags)."""
        if not self.samples:
            return {}
        keys = self.samples[0].keys()
        return {key: combine(key, [s[key] for s in self.samples]) for key in keys}


def combine(key: str, values: list[Any]) -> Any:
    """Fold one metric's values across repetitions."""
    if all(isinstance(v, bool) for v in values):
        return all(values)
    if key in WORST_OF:
        return max(values)
    return statistics.median(values)


def fmt(value: float) -> str:
    """Compact number: thousands separators when large, 3 significant digits otherwise."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def floors(entries: list[Entry]) -> dict[str, Entry]:
    """The floor's entry for each case title."""
    return {e.case.title: e for e in entries if e.name == Floor.name and e.samples}


def ratios(entry: Entry, floor: Entry) -> list[float]:
    """Cost relative to the floor, one per shown metric.

    In a lockstep case the i-th samples of all contestants come from the same turns,
    so each repetition gives its own ratio and the median of those is shown (the
    disk's state differs between repetitions far more than within one). Otherwise it
    is the ratio of the medians.
    """
    shown = entry.case.shown
    if entry.case.lockstep and len(entry.samples) == len(floor.samples):
        return [statistics.median(cost(entry.case, s[k], f[k])
                                  for s, f in zip(entry.samples, floor.samples, strict=True))
                for k in shown]
    mine, base = entry.summary(), floor.summary()
    return [cost(entry.case, mine[k], base[k]) for k in shown]


def cost(case: Case, value: float, floor: float) -> float:
    """How many times the floor's cost `value` represents (nan if either is zero)."""
    if not value or not floor:
        return float("nan")
    return floor / value if case.higher_is_better else value / floor


def table_row(entry: Entry, floor: Entry | None, other: Entry | None = None) -> list[str]:
    """One markdown row for `entry` (`other`: the floor of its `versus` case)."""
    head = [entry.case.title, entry.name, entry.case.unit]
    if entry.skip:
        return [*head, "n/a", "", entry.skip]
    if not entry.samples:
        return [*head, "error", "", "; ".join(entry.errors[:1])]
    summary, shown = entry.summary(), entry.case.shown
    value = " / ".join(fmt(summary[k]) for k in shown)
    ratio = " / ".join(f"{r:.2f}" for r in ratios(entry, floor)) if floor else ""
    remarks = notes(entry, summary)
    if other is not None:
        key = shown[0]
        remarks.insert(0, f"{summary[key] / other.summary()[key]:.1f}x the floor of "
                          f"{other.case.title}")
    return [*head, value, ratio, "; ".join(remarks)]


def notes(entry: Entry, summary: dict[str, Any]) -> list[str]:
    """The remarks column: policy used, losses, order, wake-up, failures."""
    parts = _policy_notes(entry) + _metric_notes(entry, summary)
    if len(entry.samples) > 1:
        parts.append(f"spread ±{spread(entry):.0%}")
    if entry.errors:
        parts.append(f"{len(entry.errors)} failed reps: {entry.errors[0]}")
    return parts


def spread(entry: Entry) -> float:
    """Half the range of the first shown metric across repetitions, over its median."""
    values = [s[entry.case.shown[0]] for s in entry.samples]
    middle = statistics.median(values)
    return (max(values) - min(values)) / 2 / middle if middle else 0.0


def _policy_notes(entry: Entry) -> list[str]:
    note = entry.contestant.policies.get(entry.policy or "", "")
    if entry.policy != entry.wanted:
        return [f"ran fsync={entry.policy}: {note}"]
    return [note] if entry.case.policy and note else []


def _metric_notes(entry: Entry, s: dict[str, Any]) -> list[str]:
    parts = []
    if "duplicated" in s:
        parts.append(f"lost {s['lost']}, dup {s['duplicated']}")
    elif s.get("lost"):
        parts.append(f"LOST {s['lost']}")
    if s.get("in_order") is False:
        parts.append("OUT OF ORDER")
    if entry.case.id == "W4":
        parts.append(f"wake: {entry.contestant.wake}")
    if "empty_msgs_per_s" in s:
        parts.append(f"{fmt(s['empty_msgs_per_s'])} → {fmt(s['backlog_msgs_per_s'])} msgs/s")
    if "routed_msgs_per_s" in s:
        parts.append(f"router: {entry.contestant.router}; send {fmt(s['send_msgs_per_s'])}, "
                     f"all 3 hold all {fmt(s['routed_msgs_per_s'])} msgs/s, drain "
                     f"{fmt(s['drain_copies_per_s'])} copies/s")
    if "tenth_rss_mb" in s:
        parts.append(f"RSS {fmt(s['start_rss_mb'])} MB at start, {fmt(s['tenth_rss_mb'])} "
                     f"after 1/10 drained, {fmt(s['end_rss_mb'])} after all")
    if "threads" in s:
        parts.append(f"{s['watched']} folders, {s['threads']} threads, "
                     f"{fmt(s['start_rss_mb'])} MB before watching")
    return parts


def markdown(entries: list[Entry]) -> str:
    """The results table in markdown, followed by its legend."""
    by_floor = floors(entries)
    rows = [table_row(e, by_floor.get(e.case.title),
                      by_floor.get(e.case.versus) if e.case.versus else None)
            for e in entries]
    lines = [HEADER, ["---"] * len(HEADER), *rows]
    return "\n".join("| " + " | ".join(r) + " |" for r in lines) + "\n\n" + LEGEND


def record(entries: list[Entry], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything measured, for the JSON results file."""
    by_floor = floors(entries)
    return {"meta": meta,
            "results": [entry_record(e, by_floor.get(e.case.title)) for e in entries]}


def entry_record(entry: Entry, floor: Entry | None) -> dict[str, Any]:
    """One pair's plan, samples, summary, cost relative to the floor, and errors."""
    x_floor = None
    if floor is not None and entry.samples:
        x_floor = dict(zip(entry.case.shown, ratios(entry, floor), strict=True))
    return {
        "workload": entry.case.id, "case": entry.case.title, "contestant": entry.name,
        "fsync": entry.policy, "skipped": entry.skip, "unit": entry.case.unit,
        "samples": entry.samples, "summary": entry.summary(), "x_floor": x_floor,
        "errors": entry.errors,
    }
