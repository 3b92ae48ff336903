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

A routed message leaves the spool when every recipient holds it (or was given up
as undeliverable): the file is then removed. What it became is recorded in the
journal (event ``route``: id, from, recipients, expansion) and in the inboxes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import names
from .errors import InvalidInput, MailboxError
from .fs import Foreign, same_file, staging_name
from .inbox import Inbox
from .message import Malformed, Message, decode
from .registry import AgentInfo, Registry
from .root import Config, Root

__all__ = ["Directory", "Expansion", "Fill", "Quotas", "Spool", "Unroutable", "check_address",
           "is_routed", "split_addresses"]

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

    def ensure(self) -> None:
        for folder in (self.tmp, *(self.path / f for f in self.FOLDERS)):
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

    def get(self, msg_id: str) -> tuple[str, Message] | None:
        """The spooled message ``msg_id`` and its folder, if it is still waiting."""
        found = self.find(msg_id)
        if found is None:
            return None
        try:
            return found[0], self.read(found[1])[0]
        except (FileNotFoundError, Foreign, Malformed):
            return None


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
    """The expansion (address -> agents) recorded by ``route`` journal events."""
    out: dict[str, list[str]] = {}
    for event in events:
        if event.get("ev") != "route" or not isinstance(event.get("expansion"), dict):
            continue
        for address, agents in event["expansion"].items():
            known = out.setdefault(str(address), [])
            known += [str(a) for a in agents if str(a) not in known]
    return {a: tuple(agents) for a, agents in out.items()}
