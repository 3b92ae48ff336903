"""Addresses: what a message's ``to`` may name (checked at send time), and what it reached.

::

    bob        one agent (delivered directly at send time)
    @coder     a role: every agent whose agent.json "role" is coder
    #build     a topic: every agent whose agent.json "topics" lists build
    +reviewers a group: mailbox.json "groups" {"reviewers": [...]} plus every agent
               whose agent.json "groups" lists reviewers
    *          everyone but the sender
    bob@gpu1   an agent of another host: written to the outbound spool, carried by
               the bridge (docs/BRIDGE.md)

Agent names are delivered by the sender; the other four are *routed*: posted once
to the spool (:mod:`agentmailbox.spool`) and expanded by the supervisor
(:mod:`agentmailbox.routing`), which records what each address reached in the
journal (:func:`expansion_of` reads it back for a message's status). Remote addresses
(``agent@host``) are split off first (:func:`split_remote`): both parts are checked
here, before any path or subject is built from them. This module is on the send path:
it imports no routing, supervisor or bridge code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from . import names
from .errors import InvalidInput

__all__ = ["ROUTED", "Remote", "check_address", "expansion_of", "is_remote", "is_routed",
           "localize", "parse_remote", "split_addresses", "split_recipients", "split_remote"]

ROUTED = ("@", "#", "+", "*")


def is_routed(address: str) -> bool:
    """True for ``@role``, ``#topic``, ``+group`` and ``*``: addresses the supervisor expands."""
    return address[:1] in ROUTED


class Remote(NamedTuple):
    """An agent of another host: ``agent@host``, both parts valid names."""

    agent: str
    host: str

    def __str__(self) -> str:
        return f"{self.agent}@{self.host}"


def is_remote(address: str) -> bool:
    """True for an address naming another host (``bob@gpu1``); it may still be malformed."""
    return isinstance(address, str) and not is_routed(address) and "@" in address


def parse_remote(address: str) -> Remote:
    """The (agent, host) of ``agent@host``; raises :class:`InvalidName` naming the bad part."""
    agent, at, host = address.partition("@")
    if not at:
        raise InvalidInput(f"{address[:80]!r} names no host", hint="write agent@host: bob@gpu1")
    return Remote(names.check_agent(agent), names.check_host(host))


def split_remote(to: Iterable[str]) -> tuple[list[str], list[Remote]]:
    """Split ``to`` into (local addresses, remote agents), each remote one validated."""
    local: list[str] = []
    remote: list[Remote] = []
    for address in to:
        if not is_remote(address):
            local.append(address)
        elif (found := parse_remote(address)) not in remote:
            remote.append(found)
    return local, remote


def localize(to: Iterable[str], origin: str, here: str) -> tuple[str, ...]:
    """``to`` of mail written on host ``origin`` as host ``here`` reads it: a local name of
    the origin becomes ``name@origin``, ``name@here`` becomes ``name``; routed and other
    remote addresses stay as written."""
    out: list[str] = []
    for address in to:
        remote = names.remote_parts(address)
        if remote is not None:
            address = remote[0] if remote[1] == here else address
        elif not is_routed(address):
            address = f"{address}@{origin}"
        if address not in out:
            out.append(address)
    return tuple(out)


def check_address(address: str) -> str:
    """Return a routed address if well formed, else raise :class:`InvalidInput`."""
    if not isinstance(address, str) or not names.routed_shape(address):
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


def split_recipients(to: list[str]) -> tuple[list[str], list[str], list[Remote]]:
    """Split ``to`` into (agent names, routed addresses, remote agents), each validated,
    duplicates dropped: :func:`split_remote`, then :func:`split_addresses` of the rest.

    The common case, agent names only, checks each name once; anything else takes both
    passes, which raise the same errors in the same order.
    """
    direct: list[str] = []
    for address in to:
        if type(address) is not str or address[:1] in ROUTED or "@" in address:
            return _split_all(to)
        try:
            names.check_agent(address)
        except InvalidInput:
            return _split_all(to)  # says what is wrong with the first bad address
        if address not in direct:
            direct.append(address)
    return direct, [], []


def _split_all(to: list[str]) -> tuple[list[str], list[str], list[Remote]]:
    local, remote = split_remote(to)
    direct, routed = split_addresses(local)
    return direct, routed, remote


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
