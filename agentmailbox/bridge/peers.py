"""The agents of other hosts, as this root knows them: ``bridge/agents.json`` (PROTOCOL.md §25.6).

Each bridge puts its root's agents into the JetStream KV bucket ``mailbox-agents``, one
key ``<host>.<agent>`` each, valued ``{"role", "groups", "topics"}`` (:mod:`.announce`),
and writes what the bucket holds for the *other* hosts into ``bridge/agents.json``::

    {"v": 1, "host": "build1", "updated_ns": 1795443442123456789,
     "agents": {"bob@gpu1": {"role": "coder", "groups": ["ml"], "topics": ["train"]}}}

The supervisor reads that file once per pass (:func:`load_peers`) and expands routed
addresses over these agents too (:mod:`agentmailbox.routing`). Every key and value is
checked as a local agent.json is (:func:`parse_entry`), by the bridge before it writes
the file and again by the reader: a hostile name from the bucket, or a file planted in
``bridge/``, reaches nobody. An entry of this root's own host is never a peer, so a
remote entry cannot stand for a local agent. This module does not import ``nats``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .. import names
from ..errors import InvalidInput, MailboxError
from ..fs import parse_object
from ..registry import AgentInfo
from ..root import Root

__all__ = ["BUCKET", "VERSION", "entry_value", "load_peers", "parse_entry", "write_peers"]

BUCKET = "mailbox-agents"
"""The JetStream KV bucket of every host's agents (keys ``<host>.<agent>``)."""
VERSION = 1
"""The format of ``bridge/agents.json``; a reader takes no peers from any other."""

_LIMIT = 8 << 20
_VALUE_LIMIT = 16 << 10
_FIELDS = ("role", "groups", "topics")


def entry_value(info: AgentInfo) -> dict[str, Any]:
    """What the bucket and the cache hold for one agent: its routing fields only."""
    return {"role": info.role, "groups": list(info.groups), "topics": list(info.topics)}


def parse_entry(key: str, value: Any, here: str) -> tuple[str, AgentInfo]:
    """(``agent@host``, its routing fields) of one bucket entry, checked as a local agent.

    Args:
        key: ``<host>.<agent>`` (the bucket's key).
        value: the decoded value, or its bytes.
        here: this root's host; its own entries are refused (they are local agents).

    Raises:
        InvalidInput: the key or the value is not one (names the part), or ``key`` is
            an agent of ``here``.
    """
    host, dot, agent = key.partition(".") if isinstance(key, str) else ("", "", "")
    if not dot:
        raise InvalidInput(f"key {str(key)[:80]!r} is not <host>.<agent>")
    names.check_host(host)
    names.check_agent(agent)
    if host == here:
        raise InvalidInput(f"key {key!r} names this host's own agent {agent!r}")
    if isinstance(value, bytes | bytearray):
        if len(value) > _VALUE_LIMIT:
            raise InvalidInput(f"the value of {key!r} is over {_VALUE_LIMIT} bytes")
        try:
            value = parse_object(bytes(value))
        except ValueError as exc:
            raise InvalidInput(f"the value of {key!r} is {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"the value of {key!r} is not an object")
    fields = {k: value[k] for k in _FIELDS if value.get(k) is not None}
    return f"{agent}@{host}", AgentInfo.from_dict({"name": agent, **fields})


def write_peers(root: Root, here: str, agents: dict[str, AgentInfo]) -> None:
    """Replace ``bridge/agents.json`` with ``agents`` (``agent@host`` -> fields)."""
    document = {"v": VERSION, "host": here, "updated_ns": time.time_ns(),
                "agents": {a: entry_value(agents[a]) for a in sorted(agents)}}
    root.disk.replace(root.paths.bridge_agents, orjson.dumps(document))


def load_peers(root: Root) -> dict[str, AgentInfo]:
    """The agents of other hosts in ``bridge/agents.json``, in name order; none without it.

    A file of another ``v``, or that is not a regular file of one JSON object, gives no
    peers; an entry that fails :func:`parse_entry` (a hostile name, this root's own
    host) is left out and the others are kept.
    """
    try:
        document = root.disk.read_object(root.paths.bridge_agents, _LIMIT)
    except (FileNotFoundError, ValueError, MailboxError):  # MailboxError: bridge/ is no folder
        return {}
    here, agents = document.get("host"), document.get("agents")
    if document.get("v") != VERSION or not isinstance(here, str) or not isinstance(agents,
                                                                                   dict):
        return {}
    out: dict[str, AgentInfo] = {}
    for address in sorted(agents):
        agent, at, host = address.partition("@")
        try:
            name, info = parse_entry(f"{host}.{agent}" if at else address, agents[address],
                                     here)
        except InvalidInput:
            continue
        out[name] = info
    return out
