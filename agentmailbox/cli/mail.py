"""Mail commands: send, inbox, read, done, release, status."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from .. import render
from ..addresses import is_routed
from ..errors import InvalidInput, MessageTooLarge
from ..inbox import State
from ._base import (
    EXIT_EMPTY,
    Ctx,
    emit,
    fail,
    json_option,
    message_line,
    msg_json,
    pass_ctx,
    show_message,
)


@click.command()
@click.option("--from", "sender", required=True, help="The sending agent.")
@click.option("--to", "to", required=True, multiple=True, help="A recipient (repeatable).")
@click.option("--subject", default="", help="One line.")
@click.option("--body", default=None, help="The body text (else --body-file, else stdin).")
@click.option("--body-file", type=click.File("rb"), default=None, help="Read the body from a file.")
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
@json_option
@pass_ctx
def send(c: Ctx, sender: str, to: tuple[str, ...], subject: str, body: str | None,
         body_file: Any, json_body: bool, key: str | None, receipt: bool, priority: str,
         thread: str | None, reply_to: str | None, kind: str, expires: str | None,
         pick: str | None, as_json: bool) -> None:
    """Send a message; prints its id.

    --to takes agent names, or routed addresses that the supervisor expands:
    @ROLE, #TOPIC, +GROUP, or '*' (everyone but the sender).
    """
    recipients = [a.strip() for item in to for a in item.split(",") if a.strip()]
    text = _body_text(body, body_file, c.mb.config.max_message_bytes)
    value: Any = text
    if json_body:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            fail(InvalidInput(f"--json-body: the body is not valid JSON: {exc}"))
    msg = c.mb.send(sender, recipients, subject, value, kind=kind, thread=thread,
                    reply_to=reply_to, priority=priority, expires_at=expires, receipt=receipt,
                    key=key, pick=pick)
    emit({"id": msg.id, "to": list(msg.to), "thread": msg.thread}, as_json, msg.id)
    if any(map(is_routed, msg.to)) and _no_supervisor(c):
        click.echo("mailbox: no supervisor is running: routed mail waits in the spool until "
                   "one does (mailbox supervise)", err=True)


def _no_supervisor(c: Ctx) -> bool:
    from ..supervisor import running_supervisor  # only routed mail asks; a direct send never

    return running_supervisor(c.mb) is None


def _body_text(body: str | None, body_file: Any, limit: int) -> str:
    if body is not None:
        return body
    source = body_file if body_file is not None else (
        None if sys.stdin.isatty() else sys.stdin.buffer)
    # Never more than the limit and one byte: --body-file /dev/zero must not fill memory.
    raw = b"" if source is None else source.read(limit + 1)
    if len(raw) > limit:
        fail(MessageTooLarge(len(raw), limit))
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        fail(InvalidInput(f"the body is not UTF-8 text: {exc}",
                          hint="send binary content through the workspace (mailbox ws put)"))


@click.command()
@click.argument("agent_name", metavar="AGENT")
@click.option("--claimed", is_flag=True, help="List claimed (read, not done) mail instead.")
@click.option("--all", "all_", is_flag=True, help="List unread and claimed mail.")
@json_option
@pass_ctx
def inbox(c: Ctx, agent_name: str, claimed: bool, all_: bool, as_json: bool) -> None:
    """List unread mail of AGENT, oldest first. Changes nothing."""
    box = c.mb.inbox(agent_name)
    states = [State.NEW, State.CLAIMED] if all_ else [State.CLAIMED if claimed else State.NEW]
    rows = [(s, m) for s in states for m in box.list(s)]
    problems = box.problems()
    done_threads = {m.thread for _, m in rows if c.mb.threads.done(m.thread)}
    emit([{**msg_json(m), "state": str(s), "thread_done": m.thread in done_threads}
          for s, m in rows], as_json,
         lambda _: "\n".join([*(message_line(m) + ("  [claimed]" if s is State.CLAIMED else "")
                                + ("  [thread done]" if m.thread in done_threads else "")
                                for s, m in rows),
                              *([f"({len(problems)} foreign file(s) in new/: run mailbox doctor)"]
                                if problems else [])]) or "no unread mail")


@click.command()
@click.argument("agent_name", metavar="AGENT")
@click.option("--all", "all_", is_flag=True, help="Claim and print every unread message.")
@click.option("--id", "msg_id", default=None, help="Claim this message (or show it, with --peek).")
@click.option("--peek", is_flag=True, help="Show without claiming.")
@json_option
@pass_ctx
def read(c: Ctx, agent_name: str, all_: bool, msg_id: str | None, peek: bool,
         as_json: bool) -> None:
    """Claim the oldest unread message of AGENT and print it (exit 3 if none)."""
    box = c.mb.inbox(agent_name)
    if peek:
        msgs = [box.get(msg_id)] if msg_id else box.list()[: None if all_ else 1]
    elif all_:
        msgs = list(iter(box.claim, None))
    else:
        one = box.claim(msg_id)
        msgs = [one] if one else []
    if as_json:
        emit([msg_json(m) for m in msgs] if all_ else (msg_json(msgs[0]) if msgs else None), True)
    else:
        click.echo("\n\n".join(show_message(m) for m in msgs)) if msgs else None
    if not msgs:
        if not as_json:
            click.echo(f"no unread mail for {agent_name}", err=True)
        raise SystemExit(EXIT_EMPTY)


@click.command()
@click.argument("agent_name", metavar="AGENT")
@click.argument("ids", nargs=-1, required=True)
@json_option
@pass_ctx
def done(c: Ctx, agent_name: str, ids: tuple[str, ...], as_json: bool) -> None:
    """Mark claimed messages of AGENT done (their DONE markers)."""
    box = c.mb.inbox(agent_name)
    results = {i: box.done(i) for i in ids}
    emit([{"id": i, "done": True, "already": not r} for i, r in results.items()], as_json,
         lambda _: "\n".join(f"{i} {'done' if r else 'was already done'}"
                             for i, r in results.items()))


@click.command()
@click.argument("agent_name", metavar="AGENT")
@click.argument("ids", nargs=-1, required=True)
@json_option
@pass_ctx
def release(c: Ctx, agent_name: str, ids: tuple[str, ...], as_json: bool) -> None:
    """Give claimed messages of AGENT back to its unread mail."""
    box = c.mb.inbox(agent_name)
    results = {i: box.release(i) for i in ids}
    emit([{"id": i, "released": r} for i, r in results.items()], as_json,
         lambda _: "\n".join(f"{i} {'released' if r else 'was not claimed'}"
                             for i, r in results.items()))


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
           + (f" read {line(r['read_at'])}" if r['read_at'] else "")
           + (f" (epoch {r['read_epoch']})" if r['read_epoch'] is not None else "")
           + (f" done {line(r['done_at'])}" if r['done_at'] else "") for r in d["recipients"]),
         *(f"  {line(address)} reached {line(', '.join(agents)) or 'nobody yet'}"
           for address, agents in (d.get("routed") or {}).items()),
         *([f"  waiting in spool/{d['spool']} for the supervisor"] if d.get("spool") else [])]))
