"""``mailbox bridge status``: what the running bridge last wrote, and the spool as it is now.

The daemon writes ``bridge/status.json`` every few seconds (:func:`write_status`):
connection, server version, reconnects, last acknowledgement, the consumer's pending and
redelivered counts, and what it moved. :func:`bridge_status` adds what the disk says at
this moment (outbound spool depth and the age of its oldest copy, copies kept in
``sent/``, remote mail whose receipts are still to go back), so the command works with
no bridge running and never connects to NATS itself; ``remote_agents`` counts the agents
of other hosts in ``bridge/agents.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from .. import names
from ..errors import MailboxError
from ..root import Root
from .outbox import Outbox
from .peers import load_peers
from .receipts import Tracker

__all__ = ["STALE_SECONDS", "bridge_status", "write_status"]

T = TypeVar("T")

STALE_SECONDS = 30.0
"""A status older than this, or written by a process that is gone, is not a running bridge."""


def write_status(root: Root, snapshot: dict[str, Any]) -> None:
    """Replace ``bridge/status.json`` (the daemon's view) atomically."""
    root.disk.replace(root.paths.bridge_status, orjson.dumps(snapshot))


def _last(root: Root) -> dict[str, Any]:
    try:
        return root.disk.read_object(root.paths.bridge_status, 1 << 20)
    except (FileNotFoundError, ValueError):
        return {}


def _alive(last: dict[str, Any]) -> bool:
    """The status was written lately, by a process that still exists, which said it runs."""
    pid, updated = last.get("pid"), last.get("updated_ns")
    if last.get("running") is not True or type(pid) is not int or type(updated) is not int:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return (time.time_ns() - updated) / 1e9 < STALE_SECONDS


def bridge_status(root: Root) -> dict[str, Any]:
    """The document ``mailbox bridge status --json`` prints (docs/BRIDGE.md).

    A folder of ``bridge/`` that cannot be read (a file or a link where it belongs) counts
    nothing and is named in ``problems``, so the command still answers.
    """
    problems: list[str] = []
    empty: tuple[int, float | None] = (0, None)
    depth, oldest = _counted(problems, lambda: Outbox(root).depth(), empty)
    sent = _counted(problems, lambda: sum(1 for e in root.disk.scan(root.paths.bridge_sent)
                                          if names.outbound_parts(e.name) is not None), 0)
    tracked = _counted(problems, lambda: len(Tracker(root).tracked()), 0)
    last = _last(root)
    consumer = last.get("consumer")
    return {
        "host": last.get("host") if isinstance(last.get("host"), str) else None,
        "running": _alive(last),
        "pid": last.get("pid") if type(last.get("pid")) is int else None,
        "updated_at": _text(last.get("updated_at")),
        "spool_depth": depth, "spool_oldest_age_seconds": oldest,
        "sent_kept": sent, "tracked": tracked, "remote_agents": len(load_peers(root)),
        "connected": last.get("connected") is True and _alive(last),
        "server_version": _text(last.get("server_version")),
        "reconnects": last.get("reconnects") if type(last.get("reconnects")) is int else 0,
        "last_ack_at": _text(last.get("last_ack_at")),
        "last_error": _text(last.get("last_error")),
        "consumer": consumer if isinstance(consumer, dict) else None,
        "counts": last.get("counts") if isinstance(last.get("counts"), dict) else {},
        "problems": problems,
    }


def _counted(problems: list[str], count: Callable[[], T], otherwise: T) -> T:
    try:
        return count()
    except MailboxError as exc:
        problems.append(str(exc))
        return otherwise


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
