"""Routing: what a routed address expands to, given who is registered and the rules.

The supervisor expands each address of a routed message (see
:mod:`agentmailbox.addresses` for the forms) against a :class:`Directory`: a
snapshot of the registered agents and the routing rules of mailbox.json.
``"routes": {address: [addresses]}`` adds targets to a routed address
(``{"@oncall": ["bob", "+ops"]}``), expanded recursively. Only ``*`` leaves the
sender out; a sender that has the role, topic or group gets its own copy.

Agents of other hosts (``remote``: ``agent@host`` -> role, groups, topics, as the
bridge learned them, :mod:`agentmailbox.bridge.peers`) are reached by ``@role``,
``#topic``, ``+group`` (their own ``groups``), ``*`` and their ``agent@host``, after
the local agents. Their keys always name a host, so none stands for a local agent.

Layers, lowest first (a module imports only from those before it)::

    addresses   what ``to`` may name (checked at send time), what it reached (status)
    spool       spool/ folders; the sender posts there
    quotas      unread limits per inbox; checked at send time and by the router
    mailbox     the bus; imports the three above
    routing     expansion (this module); only the supervisor uses it
    supervisor  the daemon (a package); imports all of the above
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .errors import MailboxError
from .registry import AgentInfo, Registry
from .root import Config

__all__ = ["Directory", "Expansion", "Unroutable"]

_KINDS = {"@": "role", "#": "topic", "+": "group"}
_MAX_ROUTE_DEPTH = 8


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
    remote: dict[str, AgentInfo] = field(default_factory=dict)

    @classmethod
    def load(cls, registry: Registry, config: Config,
             remote: dict[str, AgentInfo] | None = None) -> Directory:
        agents = {}
        for name in registry.list_names():
            try:
                agents[name] = registry.get(name)
            except MailboxError:
                agents[name] = AgentInfo(name)  # unreadable agent.json: reachable by name only
        return cls(agents, dict(config.groups or {}), dict(config.routes or {}),
                   {a: info for a, info in (remote or {}).items() if "@" in a})

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

    @cached_property
    def everyone(self) -> dict[str, AgentInfo]:
        """The agents of this root, then those of other hosts (whose keys name a host)."""
        return {**self.agents, **self.remote}

    def _members(self, address: str, sender: str, problems: list[Unroutable]) -> list[str]:
        kind, name = address[:1], address[1:]
        everyone = self.everyone
        if address == "*":
            return [a for a in everyone if a != sender]
        if kind == "@":
            return [a for a, info in everyone.items() if info.role == name]
        if kind == "#":
            return [a for a, info in everyone.items() if name in info.topics]
        if kind == "+":
            return self._group(name, problems)
        if address in everyone:
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
        return members + [a for a, info in self.everyone.items() if name in info.groups]

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
