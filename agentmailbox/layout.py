"""The layout of a root, spelled once: every folder and file of PROTOCOL.md §3.

:data:`TREE` lists each path relative to the root with ``<placeholders>``, its kind
(a folder or a file), and who creates it. ``mailbox doctor`` checks from it that every
folder of the layout is a real folder (never a link, a file or a FIFO), and the
planted-file tests put a link, a FIFO, a folder and a hard link at every path of it.

:class:`Paths` (a root), :class:`AgentPaths` (an agent) and :class:`SpoolPaths` give
the code those paths: no other module spells a folder or file name of the tree, and
tests/test_layout.py checks that what these classes give is exactly :data:`TREE`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IDENTITY", "LETTER_SUFFIX", "LOG_SUFFIX", "MARKER_SUFFIX", "REASON_SUFFIX", "TREE",
           "AgentPaths", "Entry", "Paths", "SpoolPaths", "fill", "fixed_folders", "log_file",
           "made_folders", "message_file", "outbound_file", "version_name"]


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
    _f("agents/<agent>/run/agent.lock", "on demand", "lock of agent.json edits (§20.6)"),
    _f("agents/<agent>/run/lease.lock", "on demand",
       "held by every release of a claim in the inbox (§9.3, §20.6)"),
    _f("agents/<agent>/run/hooks.json", "on demand",
       "what the hooks last surfaced, and how the last session ended (docs/INTEGRATIONS.md)"),
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
    _d("bridge", "bridge", "mail to and from other hosts (§25, docs/BRIDGE.md)"),
    _d("bridge/tmp", "bridge", "staging for the files below"),
    _f("bridge/tmp/<id>.<pid>.<hex>", "on demand", "a remote-bound copy being staged"),
    _d("bridge/out", "bridge", "the outbound spool: copies JetStream has not acknowledged"),
    _f("bridge/out/<name>", "on demand", "one copy for one remote agent: <id>.<agent>@<host>.json"),
    _d("bridge/sent", "bridge", "copies JetStream acknowledged, kept for the grace period"),
    _f("bridge/sent/<name>", "on demand", "an acknowledged copy: <id>.<agent>@<host>.json"),
    _d("bridge/track", "bridge", "remote mail delivered here whose receipts still go back"),
    _f("bridge/track/<name>", "on demand",
       "the last receipt sent: <id>.<agent>@<host>.json (local agent, sender's host)"),
    _d("bridge/receipts", "bridge", "what the remote recipients of mail sent here reported"),
    _f("bridge/receipts/<id>.json", "on demand", "sender, subject, to, and each remote state"),
    _f("bridge/receipts.lock", "on demand", "the lock of every change to a receipts record"),
    _f("bridge/status.json", "on demand", "what the running bridge last saw"),
    _f("bridge/agents.json", "on demand", "the agents of other hosts, as the bucket said (§25.6)"),
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


def made_folders(made_by: str) -> list[str]:
    """The folders ``made_by`` (``init``, ``agent add``...) creates, with placeholders,
    leaving out those that lie above another of them (creating a folder creates its
    parents): what ``init`` and ``agent add`` make, and what doctor finds missing."""
    made = [e.path for e in TREE if e.folder and e.made_by == made_by]
    return [p for p in made if not any(q.startswith(p + "/") for q in made)]


def message_file(msg_id: str) -> str:
    """The file name of a message in any folder that holds messages: ``<id>.json``."""
    return f"{msg_id}.json"


def outbound_file(msg_id: str, agent: str, host: str) -> str:
    """The file name of one remote-bound copy in ``bridge/``: ``<id>.<agent>@<host>.json``."""
    return f"{msg_id}.{agent}@{host}.json"


LOG_SUFFIX = ".jsonl"
"""Ends the name of one period of a log (journal days, event-memory months)."""
MARKER_SUFFIX = ".done.json"
"""Ends the name of a thread marker."""
LETTER_SUFFIX = ".msg"
"""Ends the name of a dead letter (the file as it was met)."""
REASON_SUFFIX = ".reason.json"
"""Ends the name of a dead letter's reason."""


def log_file(period: str) -> str:
    """The file name of one period of a log: ``<YYYY-MM-DD>.jsonl`` (the journal) or
    ``<YYYY-MM>.jsonl`` (event memory)."""
    return period + LOG_SUFFIX


IDENTITY = "agent.json"
"""The file name of an agent's identity in its folder (it exists = registered)."""


# -- the paths of a root, for the code ----------------------------------------------------------
# Names given to these are already validated (names.check_*): nothing here checks them.


AGENT_LOCKS = ("state", "epoch", "agent", "lease")
"""The lock files of an agent's ``run/`` folder (PROTOCOL.md §20.6)."""


class AgentPaths:
    """The folders and files of one agent: ``agents/<agent>/``."""

    # A plain class, not a dataclass: building a dataclass costs every command's startup
    # about 2 ms, and these need no generated methods.
    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def identity(self) -> Path:
        return self.path / IDENTITY

    @property
    def inbox(self) -> Path:
        return self.path / "inbox"

    @property
    def inbox_tmp(self) -> Path:
        return self.path / "inbox" / "tmp"

    @property
    def inbox_new(self) -> Path:
        return self.path / "inbox" / "new"

    @property
    def inbox_cur(self) -> Path:
        return self.path / "inbox" / "cur"

    @property
    def inbox_done(self) -> Path:
        return self.path / "inbox" / "done"

    def done_day(self, day: str) -> Path:
        """``inbox/done/<day>/``: the messages done whose id is of that UTC day."""
        return self.inbox_done / day

    @property
    def keys(self) -> Path:
        return self.path / "keys"

    def key_marker(self, key: str) -> Path:
        """``keys/<key>.json``, ``key`` being the 40 hex digits a marker is named by."""
        return self.keys / f"{key}.json"

    @property
    def handoffs(self) -> Path:
        return self.path / "handoffs"

    def handoff(self, msg_id: str) -> Path:
        return self.handoffs / message_file(msg_id)

    @property
    def events(self) -> Path:
        return self.path / "events"

    def events_month(self, month: str) -> Path:
        """``events/<YYYY-MM>.jsonl``: one month of event memory."""
        return self.events / log_file(month)

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def run(self) -> Path:
        return self.path / "run"

    @property
    def epoch(self) -> Path:
        return self.run / "epoch"

    def lock(self, name: str) -> Path:
        """``run/<name>.lock``: ``state``, ``epoch``, ``agent`` or ``lease``."""
        return self.run / f"{name}.lock"

    @property
    def hooks(self) -> Path:
        """``run/hooks.json``: the record the harness hooks keep (agentmailbox.hooks_state)."""
        return self.run / "hooks.json"

    @property
    def staging_folders(self) -> tuple[Path, ...]:
        """Where files are staged under a hidden name beside their target (doctor
        removes the abandoned ones): agent.json, state.json, the epoch, handoffs."""
        return self.path, self.run, self.handoffs


class SpoolPaths:
    """The folders of routed mail: ``spool/``."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    @property
    def new(self) -> Path:
        return self.path / "new"

    @property
    def cur(self) -> Path:
        return self.path / "cur"

    @property
    def deferred(self) -> Path:
        return self.path / "deferred"

    @property
    def held(self) -> Path:
        return self.path / "held"

    @property
    def progress(self) -> Path:
        return self.path / "progress"


class Paths:
    """The folders and files of one root (its ``.mailbox/`` folder)."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def config(self) -> Path:
        return self.path / "mailbox.json"

    @property
    def agents(self) -> Path:
        return self.path / "agents"

    def agent(self, agent: str) -> AgentPaths:
        return AgentPaths(self.path / "agents" / agent)

    @property
    def spool(self) -> SpoolPaths:
        return SpoolPaths(self.path / "spool")

    @property
    def workspace(self) -> Path:
        return self.path / "workspace"

    def view(self, name: str) -> Path:
        """``workspace/<name>``: the view of a shared file (``name`` may hold ``/``)."""
        return self.workspace / name

    @property
    def versions(self) -> Path:
        return self.workspace / ".versions"

    def versions_of(self, name: str) -> Path:
        return self.versions / name

    def version(self, name: str, number: int) -> Path:
        """``workspace/.versions/<name>/<10 digits>``: one version of a shared file."""
        return self.versions / name / version_name(number)

    @property
    def locks(self) -> Path:
        return self.workspace / ".locks"

    def lock(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    @property
    def dead(self) -> Path:
        return self.path / "dead"

    def dead_letter(self, dead_id: str) -> Path:
        return self.dead / (dead_id + LETTER_SUFFIX)

    def dead_reason(self, dead_id: str) -> Path:
        return self.dead / (dead_id + REASON_SUFFIX)

    @property
    def journal(self) -> Path:
        return self.path / "journal"

    def journal_day(self, day: str) -> Path:
        """``journal/<YYYY-MM-DD>.jsonl``: one UTC day of the journal."""
        return self.journal / log_file(day)

    @property
    def run(self) -> Path:
        return self.path / "run"

    @property
    def supervisor_lock(self) -> Path:
        return self.run / "supervisor.lock"

    @property
    def supervisor_record(self) -> Path:
        return self.run / "supervisor.json"

    @property
    def heartbeats(self) -> Path:
        return self.run / "heartbeats"

    def heartbeat(self, agent: str) -> Path:
        return self.heartbeats / f"{agent}.json"

    @property
    def threads(self) -> Path:
        return self.path / "threads"

    def thread_marker(self, thread: str) -> Path:
        return self.threads / (thread + MARKER_SUFFIX)

    @property
    def bridge(self) -> Path:
        return self.path / "bridge"

    @property
    def bridge_tmp(self) -> Path:
        return self.path / "bridge" / "tmp"

    @property
    def bridge_out(self) -> Path:
        """``bridge/out/``: the outbound spool (remote-bound copies not yet acknowledged)."""
        return self.path / "bridge" / "out"

    @property
    def bridge_sent(self) -> Path:
        return self.path / "bridge" / "sent"

    @property
    def bridge_track(self) -> Path:
        return self.path / "bridge" / "track"

    @property
    def bridge_receipts(self) -> Path:
        return self.path / "bridge" / "receipts"

    @property
    def receipts_lock(self) -> Path:
        """``bridge/receipts.lock``: held while a receipts record is read and replaced."""
        return self.path / "bridge" / "receipts.lock"

    def outbound(self, name: str) -> Path:
        """``bridge/out/<id>.<agent>@<host>.json`` (a name names.outbound_parts accepts)."""
        return self.bridge_out / name

    def sent(self, name: str) -> Path:
        return self.bridge_sent / name

    def tracked(self, name: str) -> Path:
        return self.bridge_track / name

    def receipt(self, msg_id: str) -> Path:
        """``bridge/receipts/<id>.json``: the remote recipients' states of one message."""
        return self.bridge_receipts / message_file(msg_id)

    @property
    def bridge_status(self) -> Path:
        return self.path / "bridge" / "status.json"

    @property
    def bridge_agents(self) -> Path:
        """``bridge/agents.json``: the agents of other hosts (PROTOCOL.md §25.6)."""
        return self.path / "bridge" / "agents.json"

    @property
    def staging_folders(self) -> tuple[Path, ...]:
        """Where files are staged under a hidden name beside their target (doctor
        removes the abandoned ones): mailbox.json, the supervisor's record, heartbeats,
        thread markers. The workspace stages in every folder of its own."""
        return self.path, self.run, self.heartbeats, self.threads


def version_name(number: int) -> str:
    """The file name of workspace version ``number``: 10 digits (names.is_version_name)."""
    return f"{number:010d}"
