"""Agent commands: agent add, show, edit, the agents table, and whoami."""

from __future__ import annotations

import time
from typing import Any

import click

from .. import render
from ..errors import InvalidInput
from ..inbox import State
from ..mailbox import Mailbox
from ..message import iso, stamp_of
from ..presence import Presence
from ..surfacing import UNSURFACED_AFTER, unsurfaced
from ._base import IDENTITY, Ctx, acting, agent_option, emit, fail, json_option, pass_ctx


@click.group()
def agent() -> None:
    """Register and inspect agents."""


@agent.command("add")
@click.argument("name")
@click.option("--role", default="", help="The agent's role (mail to @ROLE reaches it).")
@click.option("--group", "groups", multiple=True, help="A group it belongs to (repeatable).")
@click.option("--topic", "topics", multiple=True, help="A topic it subscribes to (repeatable).")
@click.option("--description", default="", help="One line about what it does.")
@click.option("--max-unread", type=int, default=0, help="Inbox quota (0: the bus default).")
@json_option
@pass_ctx
def agent_add(c: Ctx, name: str, role: str, groups: tuple[str, ...], topics: tuple[str, ...],
              description: str, max_unread: int, as_json: bool) -> None:
    """Register agent NAME and create its inbox."""
    info = c.mb.add_agent(name, role=role, groups=groups, topics=topics,
                          description=description, max_unread=max_unread)
    emit(info.to_dict(), as_json, f"added {name}")


@agent.command("show")
@click.argument("name")
@json_option
@pass_ctx
def agent_show(c: Ctx, name: str, as_json: bool) -> None:
    """Show the identity of agent NAME."""
    info = c.mb.registry.get(name)
    emit(info.to_dict(), as_json,
         lambda d: "\n".join(f"{k + ':':<13}{render.line(_plain(v))}" for k, v in d.items()))


def _plain(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


@click.command()
@json_option
@pass_ctx
def agents(c: Ctx, as_json: bool) -> None:
    """List agents: role, liveness, last heartbeat, capacity, mode, unread and claimed mail.

    UNSEEN counts unread mail sent over 10 minutes ago that never reached the agent's
    model (no brief, hook, listing or read showed it: see mailbox status ID).
    """
    presence, now = Presence(c.mb.root), time.time_ns()
    rows = [_agent_row(c.mb, info, presence, now) for info in c.mb.agents()]
    head = (f"{'AGENT':<16} {'ROLE':<12} {'LIVENESS':<10} {'BEAT':>6} {'CAP':>5} {'MODE':<11} "
            f"{'UNREAD':>6} {'OLDEST':>6} {'UNSEEN':>6} {'CLAIMED':>7}")
    emit(rows, as_json, lambda rs: "\n".join([head, *(
        f"{r['name']:<16} {render.line(r['role'] or '-', 40):<12} {r['liveness']:<10} "
        f"{_age(r['heartbeat_age_seconds']):>6} "
        f"{'-' if r['capacity'] is None else format(r['capacity'], '.2f'):>5} "
        f"{r['mode'] or '-':<11} {r['unread']:>6} {_age(r['oldest_unread_age_seconds']):>6} "
        f"{r['never_surfaced'] or '-':>6} {r['claimed']:>7}" for r in rs)])
        if rs else "no agents yet: mailbox agent add NAME")


def _agent_row(mb: Mailbox, info: Any, presence: Presence, now: int) -> dict[str, Any]:
    inbox = mb.inbox(info.name)
    unread = inbox.ids()
    beat = presence.last(info.name)
    unseen = unsurfaced(mb, info.name, unread, before=now - UNSURFACED_AFTER)
    return {**info.to_dict(), "liveness": str(presence.liveness(info.name, now)),
            "heartbeat_at": iso(beat.at) if beat else None,
            "heartbeat_age_seconds": (now - beat.at) / 1e9 if beat else None,
            "capacity": beat.capacity if beat else None,
            "mode": str(beat.mode) if beat else None,
            "unread": len(unread),
            "oldest_unread_age_seconds": (now - stamp_of(unread[0])) / 1e9 if unread else None,
            "never_surfaced": len(unseen),
            "oldest_never_surfaced_age_seconds": (now - stamp_of(unseen[0])) / 1e9
            if unseen else None,
            "claimed": inbox.count(State.CLAIMED)}


def _age(seconds: float | None) -> str:
    """A short age: 42s, 7m, 3h, 2d; '-' for none."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


@agent.command("edit")
@click.argument("name")
@click.option("--role", default=None, help="New role.")
@click.option("--topic", "topics", multiple=True, help="Topics (repeatable; replaces the list).")
@click.option("--group", "groups", multiple=True, help="Groups (repeatable; replaces the list).")
@click.option("--description", default=None, help="New description.")
@click.option("--max-unread", type=int, default=None, help="Inbox quota (0: the bus default).")
@json_option
@pass_ctx
def agent_edit(c: Ctx, name: str, role: str | None, topics: tuple[str, ...],
               groups: tuple[str, ...], description: str | None, max_unread: int | None,
               as_json: bool) -> None:
    """Change NAME's identity (the only way agent.json changes)."""
    changes: dict[str, Any] = {k: v for k, v in {
        "role": role, "description": description, "max_unread": max_unread,
        "topics": topics or None, "groups": groups or None}.items() if v is not None}
    if not changes:
        fail(InvalidInput("nothing to change", hint="give --role, --topic, --group, ..."))
    info = c.mb.registry.edit(name, **changes)
    emit(info.to_dict(), as_json, f"edited {name}")


@click.command(epilog=IDENTITY)
@agent_option
@json_option
@pass_ctx
def whoami(c: Ctx, agent: str | None, as_json: bool) -> None:
    """Show the acting agent: name, role, root, epoch.

    Exit 4, with a hint, when no agent is named or the one named is not registered.
    """
    info = c.mb.registry.get(acting(agent))
    emit({"name": info.name, "role": info.role, "root": str(c.mb.path),
          "epoch": c.mb.epoch(info.name)}, as_json,
         lambda d: "\n".join(f"{k + ':':<6}{render.line(str(v) if v is not None else '-')}"
                             for k, v in d.items()))
