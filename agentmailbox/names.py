"""Validation of every string that becomes part of a path: the security boundary.

Nothing in agentmailbox builds a path from a string that did not pass through here.
"""

from __future__ import annotations

import re

from .errors import InvalidInput, InvalidName

__all__ = [
    "AGENT_ENV",
    "MAX_NAME",
    "ROOT_ENV",
    "address_shape",
    "agent_shape",
    "as_text",
    "check_agent",
    "check_host",
    "check_id",
    "check_key",
    "check_state_key",
    "check_thread",
    "check_workspace_path",
    "id_shape",
    "is_hidden_staging",
    "is_id",
    "is_key_marker",
    "is_message_file",
    "is_thread",
    "is_version_name",
    "outbound_parts",
    "remote_parts",
    "routed_shape",
    "sender_shape",
    "staging_id",
]

MAX_NAME = 64

AGENT_ENV = "MAILBOX_AGENT"
"""The environment variable whose value names the acting agent (of every command that
acts as one, and of the hooks)."""
ROOT_ENV = "MAILBOX_ROOT"
"""The environment variable that names the root (when no --root is given)."""

# Every pattern of a name, an id or an address is declared here and nowhere else
# (tests/test_names.py greps the package for their character classes).

# Lower case only: names must not differ only by case (macOS and Windows fold case).
_AGENT_TEXT = r"[a-z0-9][a-z0-9_-]{0,63}"
# <20-digit nanosecond HLC stamp>-<16 hex random>
_ID_TEXT = r"[0-9]{20}-[0-9a-f]{16}"
# A host of ``agent@host`` (docs/BRIDGE.md): the agent-name form, so that a host is one
# NATS subject token and one part of a file name (no '.', '*', '>', '/', space or '@').
_HOST_TEXT = r"[a-z0-9][a-z0-9_-]{0,63}"
_AGENT = re.compile(_AGENT_TEXT)
_HOST = re.compile(_HOST_TEXT)
_REMOTE = re.compile(rf"({_AGENT_TEXT})@({_HOST_TEXT})")
# The sender of a message: a local agent, or agent@host for mail a bridge brought in.
_SENDER = re.compile(rf"{_AGENT_TEXT}(?:@{_HOST_TEXT})?")
# bridge/out/, bridge/sent/, bridge/track/: <id>.<agent>@<host>.json (PROTOCOL.md §25)
_OUTBOUND = re.compile(rf"({_ID_TEXT})\.({_AGENT_TEXT})@({_HOST_TEXT})\.json")
_ID = re.compile(_ID_TEXT)
_MESSAGE_FILE = re.compile(rf"{_ID_TEXT}\.json")
# An address as a message's "to" holds it (PROTOCOL.md §6): an agent, a routed
# address (@role, #group, +pick), * (everyone), or agent@host (a remote agent).
_ADDRESS = re.compile(rf"[@#+]?{_AGENT_TEXT}|{_AGENT_TEXT}@{_HOST_TEXT}|\*")
_ROUTED = re.compile(rf"[@#+]{_AGENT_TEXT}|\*")
_WS_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,127}")
_STATE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
# keys/<first 40 hex of the key's SHA-256>.json (PROTOCOL.md §9.7)
_KEY_MARKER = re.compile(r"[0-9a-f]{40}\.json")
# What fs.hidden_name gives a file staged beside its target: .<16 hex>.tmp
_HIDDEN_STAGING = re.compile(r"\.[0-9a-f]{16}\.tmp")
# What fs.staging_name gives a message staged in tmp/: <id>.<pid>.<6 hex>
_STAGING = re.compile(rf"({_ID_TEXT})\.[0-9]+\.[0-9a-f]{{6}}")
# A workspace version file: 10 ASCII digits (a strict pattern, not str.isdigit)
_VERSION = re.compile(r"[0-9]{10}")
_RESERVED = frozenset({"all", "everyone"})

# Bound matchers for the hot paths (a reader checks every message it meets). Each
# returns a match or None, and checks the shape only: the reserved names pass.
agent_shape = _AGENT.fullmatch
"""A match if the string has the shape of an agent name."""
id_shape = _ID.fullmatch
"""A match if the string has the shape of a message id."""
address_shape = _ADDRESS.fullmatch
"""A match if the string is an address: an agent name, ``@role``, ``#group``, ``+pick`` or ``*``."""
routed_shape = _ROUTED.fullmatch
"""A match if the string is a routed address: ``@role``, ``#group``, ``+pick`` or ``*``."""
sender_shape = _SENDER.fullmatch
"""A match if the string may be a message's sender: an agent name, or ``agent@host``."""


def _describe(value: str) -> str:
    """A printable rendering of a possibly hostile string."""
    return repr(value[:80]) + ("..." if len(value) > 80 else "")


def check_agent(name: str) -> str:
    """Return ``name`` if it is a valid agent name, else raise :class:`InvalidName`.

    Valid: 1 to 64 characters of ``a-z 0-9 _ -``, starting with a letter or digit.
    A name found valid is remembered (a set look-up instead of a pattern match: mail
    names the same few agents over and over; at most :data:`_KNOWN_LIMIT`, then it
    starts afresh).
    """
    if type(name) is str and name in _KNOWN_AGENTS:
        return name
    if not isinstance(name, str) or not _AGENT.fullmatch(name):
        hint = "use 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
        if isinstance(name, str) and name.lower() != name and _AGENT.fullmatch(name.lower()):
            hint = f"agent names are lower case: use {name.lower()!r}"
        raise InvalidName(f"invalid agent name {_describe(str(name))}", name=str(name), hint=hint)
    if name in _RESERVED:
        raise InvalidName(f"agent name {name!r} is reserved", name=name,
                          hint="'*' addresses everyone; pick another name")
    if type(name) is str:  # a str subclass may compare equal to what it is not
        if len(_KNOWN_AGENTS) >= _KNOWN_LIMIT:
            _KNOWN_AGENTS.clear()
        _KNOWN_AGENTS.add(name)
    return name


_KNOWN_AGENTS: set[str] = set()
_KNOWN_LIMIT = 4096


def check_host(host: str) -> str:
    """Return ``host`` if it is a valid host name (of ``agent@host``), else raise
    :class:`InvalidName`. Valid: the agent-name form, 1 to 64 of ``a-z 0-9 _ -``."""
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise InvalidName(f"invalid host name {_describe(str(host))}", name=str(host),
                          hint="use 1-64 characters of a-z, 0-9, '_' and '-', starting with a "
                               "letter or digit (no dots: gpu1, not gpu1.lan)")
    return host


def remote_parts(address: str) -> tuple[str, str] | None:
    """(agent, host) of an ``agent@host`` address of valid shape, else None."""
    match = _REMOTE.fullmatch(address) if isinstance(address, str) else None
    return (match[1], match[2]) if match else None


def outbound_parts(name: str) -> tuple[str, str, str] | None:
    """(id, agent, host) of a bridge file name ``<id>.<agent>@<host>.json``, else None."""
    match = _OUTBOUND.fullmatch(name)
    return (match[1], match[2], match[3]) if match else None


def check_id(msg_id: str) -> str:
    """Return ``msg_id`` if it has the message-id shape, else raise :class:`InvalidInput`."""
    if not isinstance(msg_id, str) or not _ID.fullmatch(msg_id):
        raise InvalidInput(f"invalid message id {_describe(str(msg_id))}",
                           hint="ids look like 01796000000000000000-0123456789abcdef")
    return msg_id


def check_thread(thread: str) -> str:
    """Return ``thread`` if it is a thread name, else raise :class:`InvalidInput`.

    A thread name has the agent-name form (reserved words included), which every
    message id has too: any thread a writer may send into can be marked done.
    """
    if not isinstance(thread, str) or not _AGENT.fullmatch(thread):
        raise InvalidInput(f"'thread' {_describe(str(thread))} is not a thread name",
                           hint="use 1-64 characters of a-z, 0-9, '_' and '-', starting with a "
                                "letter or digit (a message id is one too)")
    return thread


def is_thread(value: str) -> bool:
    """True if ``value`` is a thread name (the agent-name form; every id is one)."""
    return isinstance(value, str) and _AGENT.fullmatch(value) is not None


def is_id(value: str) -> bool:
    """True if ``value`` has the message-id shape."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_message_file(name: str) -> bool:
    """True if ``name`` is a well-formed message file name (``<id>.json``)."""
    return _MESSAGE_FILE.fullmatch(name) is not None


def is_key_marker(name: str) -> bool:
    """True if ``name`` is an idempotency-key marker's file name (``<40 hex>.json``)."""
    return _KEY_MARKER.fullmatch(name) is not None


def is_hidden_staging(name: str) -> bool:
    """True if ``name`` is a file staged beside its target (``.<16 hex>.tmp``)."""
    return _HIDDEN_STAGING.fullmatch(name) is not None


def staging_id(name: str) -> str | None:
    """The message id of a staging name (``<id>.<pid>.<6 hex>``), or None if it is not one."""
    match = _STAGING.fullmatch(name)
    return match[1] if match else None


def is_version_name(name: str) -> bool:
    """True if ``name`` names a workspace version (10 ASCII digits)."""
    return _VERSION.fullmatch(name) is not None


def as_text(name: str) -> str:
    """A file name met on disk as valid UTF-8 text, for records and output.

    A name that is not UTF-8 comes back from ``os.scandir`` with surrogate escapes,
    which no JSON encoder accepts; they are written as ``\\udcNN`` instead.
    """
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def check_key(key: str) -> str:
    """Return an idempotency key if printable and at most 200 characters."""
    if not isinstance(key, str) or not key or len(key) > 200 or not key.isprintable():
        raise InvalidInput(f"invalid idempotency key {_describe(str(key))}",
                           hint="use 1-200 printable characters")
    return key


def check_state_key(key: str) -> str:
    """Return a working-state key if it has the documented shape, else raise :class:`InvalidInput`.

    Valid: 1 to 128 characters of letters, digits and ``_ . : -``, not starting with
    ``.``, ``:`` or ``-``.
    """
    if not isinstance(key, str) or not _STATE_KEY.fullmatch(key):
        raise InvalidInput(f"invalid state key {str(key)[:80]!r}",
                           hint="use letters, digits and _ . : - (up to 128)")
    return key


def check_workspace_path(path: str) -> tuple[str, ...]:
    """Split a workspace name like ``plans/v1.md`` into validated parts.

    Each part: letters, digits and ``_ . @ + = -``, not starting with a dot; no
    ``..``, empty parts, leading ``/`` or more than 8 levels.
    """
    parts = tuple(path.split("/")) if isinstance(path, str) else ()
    if not parts or len(parts) > 8 or not all(_WS_PART.fullmatch(p) for p in parts):
        raise InvalidName(
            f"invalid workspace name {_describe(str(path))}", name=str(path),
            hint="use relative names like notes/plan.md: parts of letters, digits, _.@+=- "
                 "not starting with '.'")
    return parts
