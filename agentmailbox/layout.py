"""The layout of a root, spelled once: every folder and file of PROTOCOL.md §3.

Each entry is a path relative to the root with ``<placeholders>``, its kind (a
folder or a file), and who creates it. ``mailbox doctor`` checks from it that every
folder of the layout is a real folder (never a link, a file or a FIFO), and the
planted-file tests put a link, a FIFO, a folder and a hard link at every path of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TREE", "Entry", "fixed_folders", "fill"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of the layout."""

    path: str
    """Relative to the root; ``<agent>``, ``<id>``, ``<day>``... stand for names."""
    folder: bool
    """A folder (True) or a file."""
    made_by: str
    """``init``, ``agent add``, ``supervisor`` or ``on demand``."""
    what: str


def _d(path: str, made_by: str, what: str) -> Entry:
    return Entry(path, True, made_by, what)


def _f(path: str, made_by: str, what: str) -> Entry:
    return Entry(path, False, made_by, what)


TREE: tuple[Entry, ...] = (
    _f("mailbox.json", "init", "format version and bus settings (§4)"),
    _d("agents", "init", "one folder per registered agent"),
    _d("agents/<agent>", "agent add", "an agent"),
    _f("agents/<agent>/agent.json", "agent add", "identity: exists = registered (§5)"),
    _d("agents/<agent>/inbox", "agent add", "the agent's inbox"),
    _d("agents/<agent>/inbox/tmp", "agent add", "staging; never read, never watched"),
    _f("agents/<agent>/inbox/tmp/<id>.<pid>.<hex>", "on demand", "a message being staged"),
    _d("agents/<agent>/inbox/new", "agent add", "delivered, unread"),
    _f("agents/<agent>/inbox/new/<id>.json", "on demand", "an unread message"),
    _d("agents/<agent>/inbox/cur", "agent add", "claimed, not done"),
    _f("agents/<agent>/inbox/cur/<id>.json", "on demand", "a claimed message"),
    _f("agents/<agent>/inbox/cur/.hold.<id>.<pid>.<hex>", "on demand",
       "a copy being settled by the process that moved it (§9.3)"),
    _d("agents/<agent>/inbox/done", "agent add", "done, by the day of the id"),
    _d("agents/<agent>/inbox/done/<day>", "on demand", "one UTC day of ids"),
    _f("agents/<agent>/inbox/done/<day>/<id>.json", "on demand", "a message done"),
    _d("agents/<agent>/keys", "agent add", "idempotency-key markers (§9.7)"),
    _f("agents/<agent>/keys/<key>.json", "on demand", "one key marker"),
    _d("agents/<agent>/handoffs", "agent add", "notes to the next instance (§20.1)"),
    _f("agents/<agent>/handoffs/<id>.json", "on demand", "one handoff"),
    _d("agents/<agent>/events", "agent add", "event memory (§20.2)"),
    _f("agents/<agent>/events/<month>.jsonl", "on demand", "a month of events"),
    _f("agents/<agent>/state.json", "on demand", "working state (§20.3)"),
    _d("agents/<agent>/run", "agent add", "the agent's epoch and locks"),
    _f("agents/<agent>/run/epoch", "on demand", "the instance epoch (§20.4)"),
    _f("agents/<agent>/run/state.lock", "on demand", "lock of state.json (§20.6)"),
    _f("agents/<agent>/run/epoch.lock", "on demand", "lock of the epoch (§20.6)"),
    _d("spool", "init", "routed mail (§16)"),
    _d("spool/tmp", "init", "staging for routed mail"),
    _f("spool/tmp/<id>.<pid>.<hex>", "on demand", "routed mail being staged"),
    _d("spool/new", "init", "posted, not yet routed"),
    _f("spool/new/<id>.json", "on demand", "routed mail waiting"),
    _d("spool/cur", "init", "being routed"),
    _f("spool/cur/<id>.json", "on demand", "routed mail being routed"),
    _d("spool/deferred", "supervisor", "a recipient was full, or nobody could be picked"),
    _f("spool/deferred/<id>.json", "on demand", "deferred routed mail"),
    _d("spool/held", "supervisor", "its sender is over the rate limit"),
    _f("spool/held/<id>.json", "on demand", "held routed mail"),
    _d("spool/progress", "supervisor", "per-recipient routing failures (§16.4)"),
    _f("spool/progress/<id>.json", "on demand", "the failed recipients of one message"),
    _d("workspace", "init", "shared files (§11)"),
    _f("workspace/<name>", "on demand", "the view of a shared file"),
    _d("workspace/.versions", "on demand", "every version (the truth)"),
    _d("workspace/.versions/<name>", "on demand", "the versions of one file"),
    _f("workspace/.versions/<name>/<version>", "on demand", "one version"),
    _d("workspace/.locks", "on demand", "advisory lock files"),
    _f("workspace/.locks/<name>.lock", "on demand", "the lock of one file"),
    _d("dead", "init", "quarantined mail (§9.6)"),
    _f("dead/<dead-id>.msg", "on demand", "a quarantined file, as it was met"),
    _f("dead/<dead-id>.reason.json", "on demand", "why it was quarantined"),
    _d("journal", "init", "the record of transitions (§12)"),
    _f("journal/<day>.jsonl", "on demand", "one day of the journal"),
    _d("run", "init", "the supervisor's lock and presence"),
    _f("run/supervisor.lock", "on demand", "the supervisor's lock (§19)"),
    _f("run/supervisor.json", "on demand", "who took that lock last (§19)"),
    _d("run/heartbeats", "on demand", "presence (§18)"),
    _f("run/heartbeats/<agent>.json", "on demand", "an agent's last sign of life"),
    _d("threads", "on demand", "thread DONE markers (§20.5)"),
    _f("threads/<thread>.done.json", "on demand", "one thread marked done"),
)

_PLACEHOLDER = re.compile(r"<([a-z-]+)>")


def fill(path: str, **values: str) -> str:
    """``path`` with each ``<placeholder>`` replaced (``dead-id`` is given as ``dead_id``)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1).replace("-", "_")], path)


def fixed_folders(agents: list[str]) -> list[str]:
    """Every folder of the layout that has no name but an agent's, top-down, for ``agents``.

    These are the folders ``init``, ``agent add`` and the supervisor make (and those made
    on demand under fixed names): a link or a file in place of one is never followed.
    """
    out = []
    for entry in TREE:
        if not entry.folder:
            continue
        rest = _PLACEHOLDER.findall(entry.path)
        if not rest:
            out.append(entry.path)
        elif rest == ["agent"]:
            out.extend(fill(entry.path, agent=a) for a in agents)
    return sorted(out, key=lambda p: (p.count("/"), p))
