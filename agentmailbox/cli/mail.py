"""Mail commands: send, inbox, read, peek, next, done, release, status, reply.

Each command that names the acting agent takes it from its AGENT argument (or ``--from``),
else ``--agent``, else ``$MAILBOX_AGENT`` (:func:`._base.acting`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .. import render
from ..errors import InvalidInput, MessageTooLarge
from ..inbox import Inbox, State
from ..message import Message, iso, reply_subject

if TYPE_CHECKING:
    pass
from ._base import (
    EXIT_EMPTY,
    IDENTITY,
    Ctx,
    acting,
    acting_or_none,
    agent_option,
    emit,
    fail,
    json_option,
    message_line,
    msg_json,
    parse_json,
    pass_ctx,
    show_message,
    split_agent,
)

AGENT_ARG = click.argument("agent_name", metavar="[AGENT]", required=False)
"""The acting agent as an optional first argument (see IDENTITY)."""

BODY_HELP = "The body text; '-' reads it from stdin (without --body or --body-file: empty)."


@click.command(epilog=IDENTITY)
@click.option("--from", "sender", default=None,
              help="The sending agent (the acting agent; default: --agent, $MAILBOX_AGENT).")
@click.option("--to", "to", required=True, multiple=True, help="A recipient (repeatable).")
@click.option("--subject", default="", help="One line.")
@click.option("--body", default=None, help=BODY_HELP)
@click.option("--body-file", type=click.File("rb"), default=None,
              help="Read the body from a file ('-' for stdin).")
@click.option("--json-body", is_flag=True, help="Parse the body as JSON (an object, list...).")
@click.option("--id", "key", default=None, help="Idempotency key: the same key stores one message.")
@click.option("--receipt", is_flag=True, help="Ask for receipt messages when read and done.")
@click.option("--priority", type=click.Choice(["low", "normal", "high", "urgent"]),
              default="normal")
@click.option("--thread", default=None, help="Thread id to join (default: a new thread).")
@click.option("--reply-to", default=None, help="Id of the message this answers.")
@click.option("--kind", default="message", help="Message kind (default: message).")
@click.option("--expires", default=None, help="RFC 3339 time or a duration: 90s, 15m, 2h, 1d.")
@click.option("--pick", type=click.Choice(["one"]), default=None,
              help="Routed addresses reach exactly one live agent (the one with most capacity).")
@agent_option
@json_option
@pass_ctx
def send(c: Ctx, sender: str | None, to: tuple[str, ...], subject: str, body: str | None,
         body_file: Any, json_body: bool, key: str | None, receipt: bool, priority: str,
         thread: str | None, reply_to: str | None, kind: str, expires: str | None,
         pick: str | None, agent: str | None, as_json: bool) -> None:
    """Send a message; prints its id.

    --to takes agent names, or routed addresses that the supervisor expands:
    @ROLE, #TOPIC, +GROUP, or '*' (everyone but the sender). Standard input is read
    only when asked for: --body - or --body-file -.
    """
    me = acting(sender, agent)
    recipients = [a.strip() for item in to for a in item.split(",") if a.strip()]
    text = _body_text(body, body_file, c.mb.config.max_message_bytes)
    value: Any = text
    if json_body:
        value = parse_json(text, "--json-body: the body")
    msg = c.mb.send(me, recipients, subject, value, kind=kind, thread=thread,
                    reply_to=reply_to, priority=priority, expires_at=expires, receipt=receipt,
                    key=key, pick=pick)
    _report_sent(c, msg, as_json, msg.id)


def _report_sent(c: Ctx, msg: Message, as_json: bool, text: str, **fields: Any) -> None:
    """Print a sent message (``fields`` added to its JSON), and tell the sender on stderr
    which of the agents it named went offline (a stale heartbeat: it waits for them) and
    whether routed mail waits for a supervisor."""
    from ..notices import after_send  # only after the message is stored

    notices = after_send(c.mb, msg)
    emit({"id": msg.id, "to": list(msg.to), "thread": msg.thread, **fields,
          "offline": [{"agent": b.agent, "since": iso(b.at)} for b in notices.offline]},
         as_json, text)
    for line in notices.lines():
        click.echo(f"mailbox: {line}", err=True)


def _body_text(body: str | None, body_file: Any, limit: int) -> str:
    """The body: --body's text, else the --body-file's; stdin only for '-', so a command
    run with an open pipe and no body never waits for its end."""
    if body is not None and body != "-":
        return body
    source = sys.stdin.buffer if body == "-" else body_file
    # Never more than the limit and one byte: --body-file /dev/zero must not fill memory.
    raw = b"" if source is None else source.read(limit + 1)
    if len(raw) > limit:
        fail(MessageTooLarge(len(raw), limit))
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        fail(InvalidInput(f"the body is not UTF-8 text: {exc}",
                          hint="send binary content through the workspace (mailbox ws put)"))


@click.command(epilog=IDENTITY)
@AGENT_ARG
@click.option("--claimed", is_flag=True, help="List claimed (read, not done) mail instead.")
@click.option("--all", "all_", is_flag=True, help="List unread and claimed mail.")
@agent_option
@json_option
@pass_ctx
def inbox(c: Ctx, agent_name: str | None, claimed: bool, all_: bool, agent: str | None,
          as_json: bool) -> None:
    """List unread mail of AGENT, oldest first. Changes nothing."""
    box = c.mb.inbox(acting(agent_name, agent))
    states = [State.NEW, State.CLAIMED] if all_ else [State.CLAIMED if claimed else State.NEW]
    rows = [(s, m) for s in states for m in box.list(s)]
    _surfaced(c, box, [m for s, m in rows if s is State.NEW], "inbox", agent)
    problems = box.problems()
    done_threads = {m.thread for _, m in rows if c.mb.threads.done(m.thread)}
    emit([{**msg_json(m), "state": str(s), "thread_done": m.thread in done_threads}
          for s, m in rows], as_json,
         lambda _: "\n".join([*(message_line(m) + ("  [claimed]" if s is State.CLAIMED else "")
                                + ("  [thread done]" if m.thread in done_threads else "")
                                for s, m in rows),
                              *([f"({len(problems)} foreign file(s) in new/: run mailbox doctor)"]
                                if problems else [])]) or "no unread mail")


# -- reading: read, peek, next ----------------------------------------------------------------

READ_EPILOG = """\b
A claimed message is yours until `mailbox done ID` (or `mailbox release ID`
gives it back); one neither done nor renewed returns to the unread mail when
its lease ends (the output says when: "claimed ... until").
""" + IDENTITY


@click.command(epilog=READ_EPILOG)
@AGENT_ARG
@click.option("--all", "all_", is_flag=True, help="Claim and print every unread message.")
@click.option("--id", "msg_id", default=None, help="Claim this message (or show it, with --peek).")
@click.option("--peek", is_flag=True, help="Show without claiming (as mailbox peek).")
@agent_option
@json_option
@pass_ctx
def read(c: Ctx, agent_name: str | None, all_: bool, msg_id: str | None, peek: bool,
         agent: str | None, as_json: bool) -> None:
    """Claim the oldest unread message of AGENT and print it (exit 3 if none)."""
    box = c.mb.inbox(acting(agent_name, agent))
    if peek:
        _print_read(c, box, _peeked(box, msg_id, all_), all_, as_json, claimed=False,
                    identity=agent)
        return
    if all_:
        msgs = list(iter(box.claim, None))
    else:
        one = box.claim(msg_id)
        if one is None and msg_id is not None:
            refused = box.unclaimable(msg_id)
            if refused is not None:
                fail(refused)
        msgs = [one] if one else []
    _print_read(c, box, msgs, all_, as_json, claimed=True, identity=agent)


@click.command(epilog=IDENTITY)
@AGENT_ARG
@click.option("--all", "all_", is_flag=True, help="Show every unread message.")
@click.option("--id", "msg_id", default=None, help="Show this message, in whatever state.")
@agent_option
@json_option
@pass_ctx
def peek(c: Ctx, agent_name: str | None, all_: bool, msg_id: str | None, agent: str | None,
         as_json: bool) -> None:
    """Show the oldest unread message of AGENT without claiming it (read --peek)."""
    box = c.mb.inbox(acting(agent_name, agent))
    _print_read(c, box, _peeked(box, msg_id, all_), all_, as_json, claimed=False,
                identity=agent)


@click.command("next", epilog=READ_EPILOG)
@AGENT_ARG
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS", help="Give up (exit 3) after this long without mail; 0: no wait.")
@agent_option
@json_option
@pass_ctx
def next_(c: Ctx, agent_name: str | None, timeout: float, agent: str | None,
          as_json: bool) -> None:
    """Wait for the oldest unread message of AGENT, claim it and print it (exit 3 at the timeout).

    It sleeps on the inbox watcher (woken by the delivery, not polling) and claims
    the message that is oldest when it wakes.
    """
    box = c.mb.inbox(acting(agent_name, agent))
    msg = box.claim_next(timeout)
    _print_read(c, box, [msg] if msg else [], False, as_json, claimed=True, identity=agent,
                via="next", empty=f"no mail for {box.agent} within {timeout:g}s")


def _peeked(box: Inbox, msg_id: str | None, all_: bool) -> list[Message]:
    return [box.get(msg_id)] if msg_id else box.list()[: None if all_ else 1]


def _print_read(c: Ctx, box: Inbox, msgs: list[Message], all_: bool, as_json: bool, *,
                claimed: bool, identity: str | None, via: str = "", empty: str = "") -> None:
    """The messages read (one, or a list with --all), each claimed one with the end of
    its lease, recorded as surfaced when run as their recipient; exit 3 if there are none."""
    _surfaced(c, box, msgs, via or ("read" if claimed else "peek"), identity)
    leases = {m.id: box.lease_end(m.id) if claimed else None for m in msgs}
    if as_json:
        rows = [{**msg_json(m), "claim": _claim(box, leases[m.id])} for m in msgs]
        emit(rows if all_ else (rows[0] if rows else None), True)
    elif msgs:
        click.echo("\n\n".join(show_message(m, _lease_note(box, m, leases[m.id]))
                                for m in msgs))
    if not msgs:
        if not as_json:
            click.echo(empty or f"no unread mail for {box.agent}", err=True)
        raise SystemExit(EXIT_EMPTY)


def _surfaced(c: Ctx, box: Inbox, msgs: list[Message], via: str, identity: str | None) -> None:
    """Record that ``msgs`` reach ``box``'s agent, when it is the one acting (--agent or
    $MAILBOX_AGENT): another agent's inbox, listed by name, is not shown to its model."""
    if msgs and box.agent == acting_or_none(identity):
        from ..surfacing import record  # only here: `mailbox send` never loads it

        record(c.mb, box.agent, [m.id for m in msgs], via,
               unread=via in ("peek", "inbox"))


def _claim(box: Inbox, until: int | None) -> dict[str, str] | None:
    return None if until is None else {"by": box.agent, "until": iso(until)}


def _lease_note(box: Inbox, msg: Message, until: int | None) -> list[tuple[str, str]]:
    """The ``claimed:`` header of a claimed message: until when, and how to finish it."""
    if until is None:
        return []
    return [("claimed", f"by {box.agent} until {iso(until)}, then back to unread unless done"),
            ("finish", f"mailbox done {msg.id}   (give back: mailbox release ID)")]


# -- finishing: done, release ----------------------------------------------------------------


@click.command(epilog=IDENTITY)
@click.argument("args", nargs=-1, required=True, metavar="[AGENT] ID...")
@agent_option
@json_option
@pass_ctx
def done(c: Ctx, args: tuple[str, ...], agent: str | None, as_json: bool) -> None:
    """Mark claimed messages of AGENT done (their DONE markers)."""
    box, ids = _box_and_ids(c, args, agent)
    results = {i: box.done(i) for i in ids}
    emit([{"id": i, "done": True, "already": not r} for i, r in results.items()], as_json,
         lambda _: "\n".join(f"{i} {'done' if r else 'was already done'}"
                             for i, r in results.items()))


@click.command(epilog=IDENTITY)
@click.argument("args", nargs=-1, required=True, metavar="[AGENT] ID...")
@agent_option
@json_option
@pass_ctx
def release(c: Ctx, args: tuple[str, ...], agent: str | None, as_json: bool) -> None:
    """Give claimed messages of AGENT back to its unread mail.

    Each release holds the inbox's lease lock (agents/AGENT/run/lease.lock), as every
    sweep of expired claims does: it waits up to 10 s for another process releasing
    claims of the inbox, then exits 6."""
    box, ids = _box_and_ids(c, args, agent)
    results = {i: box.release(i) for i in ids}
    emit([{"id": i, "released": r} for i, r in results.items()], as_json,
         lambda _: "\n".join(f"{i} {'released' if r else 'was not claimed'}"
                             for i, r in results.items()))


def _box_and_ids(c: Ctx, args: tuple[str, ...], agent: str | None) -> tuple[Inbox, tuple[str, ...]]:
    """``[AGENT] ID...``: the acting agent's inbox and the ids."""
    named, ids = split_agent(args)
    if not ids:
        raise click.UsageError("no message ID given")
    return c.mb.inbox(acting(named, agent)), ids


@click.command()
@click.argument("msg_id", metavar="ID")
@click.option("--from", "sender", default=None, help="The sender (checks it is theirs).")
@json_option
@pass_ctx
def status(c: Ctx, msg_id: str, sender: str | None, as_json: bool) -> None:
    """Per recipient: delivered, read (when, by which instance) or done."""
    st = c.mb.status(msg_id, sender)
    line = render.line
    emit(st.to_dict(), as_json, lambda d: "\n".join(
        [f"{d['id']}  from {line(d['from'])}: {line(d['subject'])}",
         *(f"  {line(r['agent']):<16} {r['state']:<10}"
           + (f" surfaced {line(r['surfaced_at'])} via {line(r['surfaced_via'])}"
              if r['surfaced_at'] else "")
           + (f" read {line(r['read_at'])}" if r['read_at'] else "")
           + (f" (epoch {r['read_epoch']})" if r['read_epoch'] is not None else "")
           + (f" done {line(r['done_at'])}" if r['done_at'] else "") for r in d["recipients"]),
         *(f"  {line(address)} reached {line(', '.join(agents)) or 'nobody yet'}"
           for address, agents in (d.get("routed") or {}).items()),
         *([f"  waiting in spool/{d['spool']} for the supervisor"] if d.get("spool") else []),
         *(f"  dead since {line(x['at'])} in dead/ as {line(x['dead_id'])} (from "
           f"{line(x['origin'])}): {line(x['reason'])}" for x in d.get("dead") or [])]))


# -- reply -----------------------------------------------------------------------------------


@click.command(epilog=IDENTITY)
@click.argument("msg_id", metavar="ID")
@click.option("--body", default=None, help=BODY_HELP)
@click.option("--body-file", type=click.File("rb"), default=None,
              help="Read the body from a file ('-' for stdin).")
@click.option("--subject", default=None, help="One line (default: \"re: \" and ID's subject).")
@click.option("--done", "finish", is_flag=True, help="Also mark ID done (claiming it if unread).")
@agent_option
@json_option
@pass_ctx
def reply(c: Ctx, msg_id: str, body: str | None, body_file: Any, subject: str | None,
          finish: bool, agent: str | None, as_json: bool) -> None:
    """Reply to message ID: to its sender, in its thread, subject "re: ...".

    ID is a message in the acting agent's inbox (unread, claimed or done); the reply
    sets reply_to to ID. With --done, ID is then marked done.
    """
    box = c.mb.inbox(acting(agent))
    original = box.get(msg_id)
    text = _body_text(body, body_file, c.mb.config.max_message_bytes)
    msg = c.mb.send(box.agent, [original.sender],
                    reply_subject(original.subject) if subject is None else subject, text,
                    thread=original.thread, reply_to=original.id)
    if finish:
        box.finish(original.id)
    _report_sent(c, msg, as_json, msg.id + (f"\n{original.id} done" if finish else ""),
                 reply_to=original.id, done=finish)
