"""Continuity commands: handoff, state, remember, memory, boot, thread."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
import orjson

from .. import render
from ..boot import MIN_BUDGET, epoch_text
from ..errors import InvalidInput, MessageNotFound, MessageTooLarge, NotFound
from ..handoff import SECTIONS, Handoff, Waiting, parse_markdown
from ._base import (
    IDENTITY,
    Ctx,
    acting,
    acting_or_none,
    agent_option,
    emit,
    fail,
    json_option,
    parse_json,
    pass_ctx,
)

AGENT_ARG = click.argument("agent_name", metavar="[AGENT]", required=False)
"""The acting agent as an optional first argument (see IDENTITY)."""

# -- handoff -----------------------------------------------------------------------------------


@click.command(epilog=IDENTITY)
@AGENT_ARG
@click.option("--in-progress", multiple=True, help="What was in progress (repeatable).")
@click.option("--decided", multiple=True, help="What was decided, and why (repeatable).")
@click.option("--next", "next_", multiple=True, help="What needs attention next (repeatable).")
@click.option("--can-wait", multiple=True, help="What can safely wait (repeatable).")
@click.option("--waiting-on", multiple=True, metavar="AGENT:ID[:NOTE]",
              help="Who we wait on, about which message or thread id (repeatable).")
@click.option("--file", "source", type=click.File("rb"), default=None,
              help="Read the handoff from a JSON or Markdown file ('-' for stdin).")
@click.option("--checkpoint", is_flag=True,
              help="A checkpoint while still working, not the final note at stop.")
@click.option("--show", is_flag=True, help="Show the latest handoff instead of writing one.")
@click.option("--history", is_flag=True, help="With --show: every handoff, oldest first.")
@agent_option
@json_option
@pass_ctx
def handoff(c: Ctx, agent_name: str | None, in_progress: tuple[str, ...],
            decided: tuple[str, ...], next_: tuple[str, ...], can_wait: tuple[str, ...],
            waiting_on: tuple[str, ...], source: Any, checkpoint: bool, show: bool,
            history: bool, agent: str | None, as_json: bool) -> None:
    """Write the handoff note for AGENT's next instance (or --show it).

    What `handoff --show --json` prints, `handoff --file` takes back (its id, time,
    epoch and final flag are the stored note's own, and ignored).
    """
    who = c.mb.agent(acting(agent_name, agent))
    if show:
        notes = who.handoffs.history() if history else [h for h in [who.handoffs.latest()] if h]
        emit([h.to_dict() for h in notes] if history else (notes[0].to_dict() if notes else None),
             as_json, lambda _: "\n".join(map(_show_handoff, notes)) or "no handoff yet")
        return
    note = _read_note(source, c.mb.config.max_message_bytes) if source is not None else Handoff(
        in_progress, decided, next_, can_wait, tuple(Waiting.parse(w) for w in waiting_on))
    written = who.write_handoff(dataclasses.replace(note, final=not checkpoint))
    emit(written.to_dict(), as_json, written.id)


def _show_handoff(note: Handoff) -> str:
    """A stored handoff as Markdown, each text rendered as one line: a note cannot add a
    heading or an item of its own."""
    def texts(items: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(render.line(t, None) for t in items)

    shown = dataclasses.replace(
        note, in_progress=texts(note.in_progress), decided=texts(note.decided),
        next=texts(note.next), can_wait=texts(note.can_wait),
        waiting_on=tuple(dataclasses.replace(w, note=render.line(w.note, None))
                         for w in note.waiting_on))
    return (f"# handoff {render.line(note.id)} ({render.line(note.at)}, "
            f"{epoch_text(note.epoch)})\n"
            + shown.to_markdown())


def _read_note(source: Any, limit: int) -> Handoff:
    """The note in ``source``, read up to one byte past the largest handoff a file may hold
    (``--file /dev/zero`` must not fill memory)."""
    raw = source.read(limit + 1)
    if len(raw) > limit:
        fail(MessageTooLarge(len(raw), limit))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(InvalidInput(f"the handoff file is not UTF-8 text: {exc}",
                          hint="save it as UTF-8 (JSON or Markdown)"))
    if text.lstrip().startswith("{"):
        hint = f"a JSON object with keys {', '.join(SECTIONS)}, or Markdown"
        return Handoff.from_dict(parse_json(text, "the handoff file", hint))
    return parse_markdown(text)


# -- working state -----------------------------------------------------------------------------


class _AgentFirstGroup(click.Group):
    """A group whose first argument, AGENT, may be left out: a first word that names one
    of its commands is the command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            args = ["", *args]  # AGENT left out: the acting agent comes from --agent or env
        return super().parse_args(ctx, args)


@click.group(cls=_AgentFirstGroup, epilog=IDENTITY)
@AGENT_ARG
@agent_option
@click.pass_context
def state(ctx: click.Context, agent_name: str | None, agent: str | None) -> None:
    """AGENT's working state: set, get, unset keys (volatile; replaced, never appended)."""
    ctx.meta["agent_name"] = acting(agent_name, agent)


def _state_of(ctx: click.Context) -> Any:
    return ctx.ensure_object(Ctx).mb.agent(ctx.meta["agent_name"]).state


@state.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--json-value", is_flag=True, help="Parse VALUE as JSON (number, list, object).")
@json_option
@click.pass_context
def state_set(ctx: click.Context, key: str, value: str, json_value: bool, as_json: bool) -> None:
    """Set KEY to VALUE."""
    parsed: Any = value
    if json_value:
        parsed = parse_json(value, "--json-value")
    _state_of(ctx).set(key, parsed)
    emit({"key": key, "value": parsed}, as_json, None)


@state.command("get")
@click.argument("key", required=False)
@json_option
@click.pass_context
def state_get(ctx: click.Context, key: str | None, as_json: bool) -> None:
    """Print KEY's value, or every key."""
    snapshot = _state_of(ctx).snapshot()
    if key is not None:
        if key not in snapshot:
            fail(NotFound(f"no state key {key!r}", hint="list keys: mailbox state AGENT get"))
        value = snapshot[key]
        emit(value, as_json, lambda v: render.line(
            v if isinstance(v, str) else orjson.dumps(v).decode(), None))
        return
    emit(snapshot, as_json, lambda d: "\n".join(
        f"{k} = {render.line(orjson.dumps(v).decode(), None)}"
        for k, v in sorted(d.items())) or "(empty)")


@state.command("unset")
@click.argument("key")
@json_option
@click.pass_context
def state_unset(ctx: click.Context, key: str, as_json: bool) -> None:
    """Remove KEY."""
    removed = _state_of(ctx).unset(key)
    emit({"key": key, "removed": removed}, as_json, None if removed else f"{key} was not set")


# -- event memory ------------------------------------------------------------------------------


@click.command(epilog=IDENTITY)
@click.argument("words", nargs=-1, required=True, metavar="[AGENT] TEXT")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@agent_option
@json_option
@pass_ctx
def remember(c: Ctx, words: tuple[str, ...], tags: tuple[str, ...], agent: str | None,
             as_json: bool) -> None:
    """Append TEXT to AGENT's event memory (append-only)."""
    if len(words) > 2:
        raise click.UsageError("give one TEXT (quote it), after the AGENT if any")
    named, text = (None, words[0]) if len(words) == 1 else words
    event = c.mb.agent(acting(named, agent)).remember(text, tags=tags)
    emit(event.to_dict(), as_json, None)


@click.command(epilog=IDENTITY)
@AGENT_ARG
@click.option("--tag", default=None, help="Only events with this tag.")
@click.option("--since", default=None, help="Only events on or after this date (YYYY-MM-DD).")
@click.option("--grep", default=None, help="Only events containing this word.")
@click.option("--kind", default=None, help="Only events of this kind (note, boot, handoff).")
@agent_option
@json_option
@pass_ctx
def memory(c: Ctx, agent_name: str | None, tag: str | None, since: str | None,
           grep: str | None, kind: str | None, agent: str | None, as_json: bool) -> None:
    """Print AGENT's event memory, oldest first."""
    who = c.mb.agent(acting(agent_name, agent))
    events = who.memory.events(tag=tag, since=since, grep=grep, kind=kind)
    emit([e.to_dict() for e in events], as_json, lambda rows: "\n".join(
        f"{render.line(r['at'])}  {render.line(r['kind'], 40):<8} {render.line(r['text'], None)}"
        + (f"  #{render.line(' #'.join(r['tags']))}" if r['tags'] else "")
        for r in rows) or "(nothing)")


# -- boot --------------------------------------------------------------------------------------


@click.command(epilog=IDENTITY)
@AGENT_ARG
@click.option("--budget", type=click.IntRange(MIN_BUDGET), default=4000, show_default=True,
              help=f"Characters of printed brief at most (from {MIN_BUDGET}): it stops early and "
                   "says what it left out. --json lists the same items, not capped.")
@click.option("--dry-run", is_flag=True, help="Do not start a new instance epoch.")
@agent_option
@json_option
@pass_ctx
def boot(c: Ctx, agent_name: str | None, budget: int, dry_run: bool, agent: str | None,
         as_json: bool) -> None:
    """Start a new instance of AGENT and print its boot brief, most important first."""
    name = acting(agent_name, agent)
    brief = c.mb.agent(name).boot(budget=budget, start_epoch=not dry_run)
    if name == acting_or_none(agent):  # shown to the agent itself, not looked at by name
        from ..surfacing import record

        record(c.mb, name, brief.shown_mail(), "brief", unread=True)
    if as_json:
        emit(brief.to_dict(), True)
    else:
        click.echo(brief.to_text(), nl=False)


# -- threads -----------------------------------------------------------------------------------


@click.group()
def thread() -> None:
    """Thread DONE markers: mark a whole conversation finished, and see it."""


@thread.command("done")
@click.argument("thread_id", metavar="THREAD")
@click.option("--as", "by", default=None,
              help="The agent closing it (default: --agent, $MAILBOX_AGENT; else nobody).")
@click.option("--note", default="", help="Why it is done.")
@agent_option
@json_option
@pass_ctx
def thread_done(c: Ctx, thread_id: str, by: str | None, note: str, agent: str | None,
                as_json: bool) -> None:
    """Mark THREAD done (idempotent: the first marker stays)."""
    marker, created = c.mb.threads.mark_done(thread_id, acting_or_none(by, agent), note)
    emit({**marker.to_dict(), "created": created}, as_json,
         f"thread {render.line(thread_id)} done" if created else
         f"thread {render.line(thread_id)} was already done "
         f"(by {render.line(marker.by or '?')} at {render.line(marker.at)})")


@thread.command("show")
@click.argument("thread_id", metavar="THREAD")
@json_option
@pass_ctx
def thread_show(c: Ctx, thread_id: str, as_json: bool) -> None:
    """Show THREAD: its messages, where each is per recipient, and its DONE marker."""
    marker = c.mb.threads.done(thread_id)
    rows = []
    for event in c.mb.threads.sent_in(thread_id):
        try:
            where = {d.agent: d.to_dict()["state"] for d in c.mb.status(event["id"]).recipients}
        except MessageNotFound:  # no inbox holds it any more (dead, or purged)
            where = {}
        rows.append({"id": event["id"], "from": event.get("from"),
                     "subject": event.get("subject", ""), "recipients": where})
    data = {"thread": thread_id, "done": marker.to_dict() if marker else None, "messages": rows}
    line = render.line
    emit(data, as_json, lambda d: "\n".join(
        [f"thread {line(thread_id)}: " + (f"DONE by {line(marker.by or '?')} at {line(marker.at)}"
                                    + (f" ({line(marker.note)})" if marker.note else "")
                                    if marker else "open"),
         *(f"  {line(r['id'], 60)} from {line(r['from'])}: {line(r['subject'])}  "
           + ", ".join(f"{a}={s}" for a, s in r["recipients"].items()) for r in rows)]))
