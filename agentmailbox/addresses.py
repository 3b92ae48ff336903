"""Addresses: what a message's ``to`` may name (checked at send time), and what it reached.

::

    bob        one agent (delivered directly at send time)
    @coder     a role: every agent whose agent.json "role" is coder
    #build     a topic: every agent whose agent.json "topics" lists build
    +reviewers a group: mailbox.json "groups" {"reviewers": [...]} plus every agent
               whose agent.json "groups" lists reviewers
    *          everyone but the sender

Agent names are delivered by the sender; the other four are *routed*: posted once
to the spool (:mod:`agentmailbox.spool`) and expanded by the supervisor
(:mod:`agentmailbox.routing`), which records what each address reached in the
journal (:func:`expansion_of` reads it back for a message's status). This module is
on the send path: it imports no routing or supervisor code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import names
from .errors import InvalidInput

__all__ = ["ROUTED", "check_address", "expansion_of", "is_routed", "split_addresses"]

ROUTED = ("@", "#", "+", "*")


def is_routed(address: str) -> bool:
    """True for ``@role``, ``#topic``, ``+group`` and ``*``: addresses the supervisor expands."""
    return address[:1] in ROUTED


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
