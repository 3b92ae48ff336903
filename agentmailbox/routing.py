"""Routed addresses, their expansion into agents, the spool, and inbox quotas.

Addresses a message can carry in ``to``::

    bob        one agent (delivered directly at send time)
    @coder     a role: every agent whose agent.json "role" is coder
    #build     a topic: every agent whose agent.json "topics" lists build
    +reviewers a group: mailbox.json "groups" {"reviewers": [...]} plus every agent
               whose agent.json "groups" lists reviewers
    *          everyone but the sender

mailbox.json ``"routes": {address: [addresses]}`` adds targets to a routed address
(``{"@oncall": ["bob", "+ops"]}``), expanded recursively. Only ``*`` leaves the
sender out; a sender that has the role, topic or group gets its own copy.

Routed mail waits in the spool until the supervisor routes it::

    spool/tmp/       staging (same atomic publish as inboxes)
    spool/new/       posted, not yet routed                  <id>.json
    spool/cur/       being routed (a file here at start-up is replayed)
    spool/deferred/  some recipient was full, or no agent could be picked: retried
    spool/held/      its sender is over its rate: released as the rate allows
    spool/progress/  per recipient, what the inboxes cannot tell: failed deliveries
                     and recipients given up                  <id>.json

A routed message leaves the spool when every recipient is settled: it holds the
message, or was given up as undeliverable (the sender is told, a copy is buried).
The file is then removed, and its progress file after it. What it became is
recorded in the journal (event ``route``: id, from, recipients, expansion) and in
the inboxes.
"""

from __future__ import annotations

import enum
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import names
from .errors import InvalidInput, MailboxError
from .fs import Foreign, same_file, staging_name
from .inbox import Inbox
from .message import Malformed, Message, decode
from .registry import AgentInfo, Registry
from .root import Config, Root

__all__ = ["Directory", "Expansion", "Failure", "Fill", "Progress", "Quotas", "Spool",
           "Unroutable", "check_address", "is_routed", "split_addresses"]

ROUTED = ("@", "#", "+", "*")
_ADDRESS = re.compile(r"[@#+][a-z0-9][a-z0-9_-]{0,63}|\*")
_KINDS = {"@": "role", "#": "topic", "+": "group"}
_MAX_ROUTE_DEPTH = 8


def is_routed(address: str) -> bool:
    """True for ``@role``, ``#topic``, ``+group`` and ``*``: addresses the supervisor expands."""
    return address[:1] in ROUTED


def check_address(address: str) -> str:
    """Return a routed address if well formed, else raise :class:`InvalidInput`."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise InvalidInput(f"invalid address {str(address)[:80]!r}",
                           hint="use an agent name, @role, #topic, +group or '*'")
    return address


def split_addresses(to: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``to`` into (agent names, routed addresses), validated, duplicates dropped."""
    direct: list[str] = []
    routed: list[str] = []
    for address in to:
        if not isinstance(address, str):
            raise InvalidInput(f"a recipient must be a name, not {type(address).__name__}")
        if is_routed(address):
            if check_address(address) not in routed:
                routed.append(address)
        elif names.check_agent(address) not in direct:
            direct.append(address)
    return direct, routed


# -- expansion ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Unroutable:
    """An address (or a member it names) that reaches nobody, and why."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class Expansion:
    """What one address expands to: agents in order, and what could not be routed."""

    address: str
    agents: tuple[str, ...]
    unroutable: tuple[Unroutable, ...] = ()


@dataclass(frozen=True)
class Directory:
    """A snapshot of who is registered and the routing rules; expands addresses.

    Built once per routing pass (:meth:`load`), so a burst of routed mail costs one
    read of each agent.json, not one per message.
    """

    agents: dict[str, AgentInfo]
    groups: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, registry: Registry, config: Config) -> Directory:
        agents = {}
        for name in registry.list_names():
            try:
                agents[name] = registry.get(name)
            except MailboxError:
                agents[name] = AgentInfo(name)  # unreadable agent.json: reachable by name only
        return cls(agents, dict(config.groups or {}), dict(config.routes or {}))

    def expand(self, address: str, sender: str) -> Expansion:
        """Expand ``address`` (routed or an agent name) into registered agents."""
        found: list[str] = []
        problems: list[Unroutable] = []
        self._expand(address, sender, found, problems, depth=0)
        if not found and not problems:
            problems.append(Unroutable(address, self._nobody(address)))
        return Expansion(address, tuple(found), tuple(problems))

    def _expand(self, address: str, sender: str, found: list[str], problems: list[Unroutable],
                depth: int) -> None:
        if depth > _MAX_ROUTE_DEPTH:
            problems.append(Unroutable(address, "routes nest too deeply (a cycle?)"))
            return
        for agent in self._members(address, sender, problems):
            if agent not in found:
                found.append(agent)
        for target in self.routes.get(address, ()):
            if isinstance(target, str) and target != address:
                self._expand(target, sender, found, problems, depth + 1)

    def _members(self, address: str, sender: str, problems: list[Unroutable]) -> list[str]:
        kind, name = address[:1], address[1:]
        if address == "*":
            return [a for a in self.agents if a != sender]
        if kind == "@":
            return [a for a, info in self.agents.items() if info.role == name]
        if kind == "#":
            return [a for a, info in self.agents.items() if name in info.topics]
        if kind == "+":
            return self._group(name, problems)
        if address in self.agents:
            return [address]
        problems.append(Unroutable(address, f"no agent named {address!r}"))
        return []

    def _group(self, name: str, problems: list[Unroutable]) -> list[str]:
        members = []
        for member in self.groups.get(name, ()):
            if member in self.agents:
                members.append(member)
            else:
                problems.append(Unroutable(f"+{name}",
                                           f"unknown agent {member!r} in group +{name}"))
        members += [a for a, info in self.agents.items() if name in info.groups]
        return members

    def _nobody(self, address: str) -> str:
        if address == "*":
            return "no other agent is registered"
        kind = _KINDS.get(address[:1])
        if kind == "role":
            return f"no agent has role {address[1:]!r}"
        if kind == "topic":
            return f"no agent subscribes to topic {address[1:]!r}"
        if kind == "group":
            return f"group {address} has no members"
        return f"no agent named {address!r}"


# -- the spool ---------------------------------------------------------------------------------

class Spool:
    """The ``spool/`` folders of one root: where routed mail waits for the supervisor."""

    FOLDERS = ("new", "cur", "deferred", "held")

    def __init__(self, root: Root) -> None:
        self._root = root
        self._disk = root.disk
        self.path = root.path / "spool"
        self.tmp = self.path / "tmp"
        self.new = self.path / "new"
        self.cur = self.path / "cur"
        self.deferred = self.path / "deferred"
        self.held = self.path / "held"
        self.progress_dir = self.path / "progress"

    def ensure(self) -> None:
        for folder in (self.tmp, *(self.path / f for f in self.FOLDERS), self.progress_dir):
            self._disk.ensure_dir(folder)

    def deliver(self, msg_id: str, data: bytes) -> bool:
        """Post an encoded message into ``spool/new``; False if that id is already there."""
        staged = self.stage(msg_id, data, sync=None)
        published = self.publish_staged(staged, msg_id)
        if published:
            self._disk.fsync_dir(self.new)
        return published

    def stage(self, msg_id: str, data: bytes, *, sync: bool | None = False) -> str:
        """First half of a post (used by batches): exclusive create in ``spool/tmp``."""
        return self._disk.stage(self.tmp, data, staging_name(names.check_id(msg_id)), sync=sync)

    def publish_staged(self, staged: str, msg_id: str) -> bool:
        """Second half: link the staged file into ``spool/new`` (EEXIST = already posted)."""
        try:
            return self._disk.publish(staged, self.new / f"{msg_id}.json")
        finally:
            self._disk.unlink(staged)

    def names(self, folder: Path) -> list[str]:
        """Message file names in one spool folder, oldest first."""
        return sorted(e.name for e in self._disk.scan(folder) if names.is_message_file(e.name))

    def foreign(self, folder: Path) -> list[Path]:
        """Entries of a spool folder that are not message files."""
        return [Path(e.path) for e in self._disk.scan(folder) if not names.is_message_file(e.name)]

    def find(self, msg_id: str) -> tuple[str, Path] | None:
        """Which spool folder holds ``msg_id`` (``new``, ``cur``, ``deferred``, ``held``)."""
        name = f"{names.check_id(msg_id)}.json"
        for folder in self.FOLDERS:
            path = self.path / folder / name
            if self._disk.exists(path):
                return folder, path
        return None

    def read(self, path: Path) -> tuple[Message, bytes]:
        """Read and decode one spooled message; raises Malformed/Foreign/FileNotFoundError."""
        data, st = self._disk.read(path, self._root.config.max_message_bytes)
        msg = decode(data, expected_id=path.name[:-5])
        if st.st_nlink > 1 and not self._own_link(path, st):
            raise Foreign("hard link to a file elsewhere (not written through spool/tmp/)")
        return msg, data

    def _own_link(self, path: Path, st: os.stat_result) -> bool:
        """A second link is ours while a post or a claim is between its link and unlink:
        the poster's staging name in ``spool/tmp``, or the same name in ``new/`` and
        ``cur/``. A link gone by the time we look was one of those."""
        msg_id = path.name[:-5]
        others = [self.new / path.name, self.cur / path.name]
        others += [Path(e.path) for e in self._disk.scan(self.tmp) if e.name.startswith(msg_id)]
        for other in others:
            found = self._disk.lstat(other) if other != path else None
            if found is not None and same_file(found, st):
                return True
        now = self._disk.lstat(path)
        return now is not None and now.st_nlink == 1

    # -- per-recipient progress ---------------------------------------------------------------

    def progress_path(self, msg_id: str) -> Path:
        return self.progress_dir / f"{names.check_id(msg_id)}.json"

    def progress(self, msg_id: str) -> Progress:
        """The routing progress of ``msg_id`` (empty if it has none).

        Raises:
            Malformed: the file is not a progress file of format 1 for this id.
            Foreign: a link, folder or device, or a file over the size limit.
        """
        try:
            data, _ = self._disk.read(self.progress_path(msg_id), _PROGRESS_LIMIT)
        except FileNotFoundError:
            return Progress(msg_id)
        return Progress.decode(data, msg_id)

    def save_progress(self, progress: Progress) -> None:
        """Replace the progress file atomically (stage in ``spool/tmp``, rename); none if empty."""
        if progress.empty():
            self.drop_progress(progress.msg_id)
            return
        path = self.progress_path(progress.msg_id)
        staged = self._disk.stage(self.tmp, progress.encode(), staging_name(progress.msg_id))
        try:
            self._disk.overwrite(staged, path)
        except BaseException:
            self._disk.unlink(staged)
            raise
        self._disk.fsync_dir(self.progress_dir)
        progress.changed = False

    def drop_progress(self, msg_id: str) -> None:
        self._disk.unlink(self.progress_path(msg_id))

    def progress_ids(self) -> list[str]:
        """Ids that have a progress file."""
        return [name[:-5] for name in self.names(self.progress_dir)]

    def get(self, msg_id: str) -> tuple[str, Message] | None:
        """The spooled message ``msg_id`` and its folder, if it is still waiting."""
        found = self.find(msg_id)
        if found is None:
            return None
        try:
            return found[0], self.read(found[1])[0]
        except (FileNotFoundError, Foreign, Malformed):
            return None


# -- routing progress ---------------------------------------------------------------------------

PROGRESS_FORMAT = 1
"""The ``v`` of ``spool/progress/<id>.json``; a reader refuses any other value."""
_PROGRESS_LIMIT = 1 << 22


class Attempts(enum.StrEnum):
    """Where the failed deliveries to one recipient stand."""

    RETRYING = "retrying"            # retried with the message, with backoff
    UNDELIVERABLE = "undeliverable"  # given up after the bound: the sender is told


@dataclass(slots=True)
class Failure:
    """Failed attempts to deliver a routed message to one recipient (or to route it at all)."""

    attempts: int
    first_at: int  # nanoseconds since 1970 (wall clock): when the first attempt failed
    last_at: int
    reason: str    # what the last attempt met
    state: Attempts = Attempts.RETRYING

    @property
    def given_up(self) -> bool:
        return self.state is Attempts.UNDELIVERABLE

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "first_at": self.first_at, "last_at": self.last_at,
                "reason": self.reason, "state": str(self.state)}

    @classmethod
    def from_dict(cls, obj: Any) -> Failure:
        if not isinstance(obj, dict):
            raise Malformed("routing progress: an entry is not an object")
        counts = [n for n in (obj.get(k) for k in ("attempts", "first_at", "last_at"))
                  if type(n) is int and n >= 0]
        if len(counts) != 3:
            raise Malformed("routing progress: attempts, first_at and last_at must be "
                            "non-negative integers")
        if not isinstance(obj.get("reason"), str) or obj.get("state") not in set(Attempts):
            raise Malformed("routing progress: reason must be text and state "
                            "'retrying' or 'undeliverable'")
        attempts, first, last = counts
        return cls(attempts, first, last, obj["reason"], Attempts(obj["state"]))


@dataclass
class Progress:
    """What the inboxes cannot tell about one routed message: whose delivery failed.

    Recipients that hold the message are not listed (their inbox says so); only
    recipients with failed attempts are, and ``route`` counts failures of routing the
    message as a whole (an error that is no recipient's). Kept in
    ``spool/progress/<id>.json`` while the message is in the spool.
    """

    msg_id: str
    recipients: dict[str, Failure] = field(default_factory=dict)
    route: Failure | None = None
    changed: bool = False

    def fail(self, agent: str | None, reason: str, now_ns: int) -> Failure:
        """Count one more failed attempt for ``agent`` (None: routing the message at all)."""
        failure = self.route if agent is None else self.recipients.get(agent)
        if failure is None:
            failure = Failure(0, now_ns, now_ns, reason)
            if agent is None:
                self.route = failure
            else:
                self.recipients[agent] = failure
        failure.attempts += 1
        failure.last_at, failure.reason = now_ns, reason
        self.changed = True
        return failure

    def give_up(self, failure: Failure) -> None:
        failure.state = Attempts.UNDELIVERABLE
        self.changed = True

    def delivered(self, agent: str) -> None:
        """``agent`` holds the message now: its failures no longer matter."""
        if self.recipients.pop(agent, None) is not None:
            self.changed = True

    def given_up(self, agent: str) -> Failure | None:
        failure = self.recipients.get(agent)
        return failure if failure is not None and failure.given_up else None

    def empty(self) -> bool:
        return not self.recipients and self.route is None

    def encode(self) -> bytes:
        return orjson.dumps({
            "v": PROGRESS_FORMAT, "id": self.msg_id,
            "route": None if self.route is None else self.route.to_dict(),
            "recipients": {a: f.to_dict() for a, f in self.recipients.items()}},
            option=orjson.OPT_APPEND_NEWLINE)

    @classmethod
    def decode(cls, data: bytes, msg_id: str) -> Progress:
        """Parse a progress file; raises :class:`Malformed` for anything but format 1."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"routing progress: invalid JSON ({exc})") from exc
        if not isinstance(obj, dict) or type(obj.get("v")) is not int:
            raise Malformed("routing progress: not an object with a format version 'v'")
        if obj["v"] != PROGRESS_FORMAT or obj.get("id") != msg_id:
            raise Malformed(f"routing progress: format {obj['v']} of id {str(obj.get('id'))[:40]!r}"
                            f"; expected format {PROGRESS_FORMAT} of {msg_id}")
        recipients = obj.get("recipients")
        if not isinstance(recipients, dict) or not all(
                _is_agent(a) for a in recipients):
            raise Malformed("routing progress: recipients must map agent names to entries")
        route = obj.get("route")
        return cls(msg_id, {a: Failure.from_dict(f) for a, f in recipients.items()},
                   None if route is None else Failure.from_dict(route))


def _is_agent(name: object) -> bool:
    try:
        names.check_agent(name)  # type: ignore[arg-type]
    except InvalidInput:
        return False
    return True


# -- quotas ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Fill:
    """An inbox at its quota: how many unread, and the limit."""

    agent: str
    unread: int
    quota: int


@dataclass(slots=True)
class _Gauge:
    quota: int = 0
    quota_at: int = 0
    unread: int = 0
    counted_at: int = 0


class Quotas:
    """Per-inbox quotas of unread mail (agent.json max_unread, else mailbox.json max_unread).

    0 means unlimited, and then nothing is counted. Otherwise counting unread costs
    a listing of ``new/``, so the count is cached per inbox and recounted at most
    every :attr:`RECOUNT_SECONDS`, plus always before refusing: a refusal is based on
    a fresh count, while an acceptance may miss what *other* processes delivered in
    the last ``RECOUNT_SECONDS``. The quota is soft by that margin. This process's own
    deliveries are counted exactly. Quotas read from agent.json are cached for
    :attr:`QUOTA_TTL_SECONDS`.
    """

    RECOUNT_SECONDS = 0.1
    QUOTA_TTL_SECONDS = 1.0

    def __init__(self, registry: Registry, config: Config) -> None:
        self._registry = registry
        self._config = config
        self._gauges: dict[str, _Gauge] = {}

    def quota(self, agent: str) -> int:
        """The max unread of ``agent`` (0: unlimited), cached briefly."""
        gauge = self._gauge(agent)
        now = time.monotonic_ns()
        if not gauge.quota_at or now - gauge.quota_at > self.QUOTA_TTL_SECONDS * 1e9:
            gauge.quota, gauge.quota_at = self._read_quota(agent), now
        return gauge.quota

    def _read_quota(self, agent: str) -> int:
        try:
            own = self._registry.get(agent).max_unread
        except MailboxError:
            own = 0
        return max(0, own or self._config.max_unread or 0)

    def full(self, inbox: Inbox) -> Fill | None:
        """The fill of ``inbox`` if it holds its quota of unread mail, else None."""
        quota = self.quota(inbox.agent)
        if quota <= 0:
            return None
        gauge = self._gauge(inbox.agent)
        now = time.monotonic_ns()
        if now - gauge.counted_at > self.RECOUNT_SECONDS * 1e9 or gauge.unread >= quota:
            gauge.unread, gauge.counted_at = inbox.count(), now
        if gauge.unread >= quota:
            return Fill(inbox.agent, gauge.unread, quota)
        return None

    def delivered(self, agent: str) -> None:
        """Count one delivery made by this process into ``agent``'s inbox."""
        gauge = self._gauges.get(agent)
        if gauge is not None:
            gauge.unread += 1

    def _gauge(self, agent: str) -> _Gauge:
        gauge = self._gauges.get(agent)
        if gauge is None:
            gauge = self._gauges[agent] = _Gauge()
        return gauge


def expansion_of(events: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """The expansion (address -> agents) recorded by ``route`` journal events.

    The journal yields only lines of the documented shape: an ``expansion`` maps text to
    lists of text.
    """
    out: dict[str, list[str]] = {}
    for event in events:
        if event["ev"] != "route" or "expansion" not in event:
            continue
        for address, agents in event["expansion"].items():
            known = out.setdefault(address, [])
            known += [a for a in agents if a not in known]
    return {a: tuple(agents) for a, agents in out.items()}
