"""The ``mailbox`` command: parses, calls the library, prints text or ``--json``.

No logic lives here. Exit codes (stable; scripts rely on them):
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click
import orjson

from . import doctor as doctor_mod
from . import render
from .errors import InvalidInput, MailboxError, MessageTooLarge
from .inbox import State
from .mailbox import Mailbox
from .message import Message, iso, stamp_of
from .presence import Presence
from .routing import is_routed
from .supervisor import running_supervisor
from .workspace import MAX_FILE

EXIT_OK = 0            # it worked
EXIT_ERROR = 1         # an error not listed below (StorageError and the like)
EXIT_USAGE = 2         # the command line is wrong (unknown option, missing argument)
EXIT_EMPTY = 3         # nothing to read: the inbox has no unread mail
EXIT_NOT_FOUND = 4     # no such root, agent, message or workspace file
EXIT_INVALID = 5       # invalid name, id, option or message content
EXIT_CONFLICT = 6      # stale version, lock held, already exists
EXIT_TOO_LARGE = 7     # message or handoff over its limit
EXIT_INBOX_FULL = 8    # recipient inbox at its quota (backpressure)
EXIT_DISK_FULL = 9     # no space left; nothing partial was written
EXIT_UNHEALTHY = 10    # doctor found problems it did not repair
EXIT_INTERRUPTED = 130  # Ctrl-C

__doc__ = (__doc__ or "") + "\n".join(
    f"    {name} = {value}" for name, value in sorted(
        ((n, v) for n, v in globals().items() if n.startswith("EXIT_")), key=lambda kv: kv[1]))

EPILOG = """\b
Examples:
  mailbox init
  mailbox agent add alice --role planner
  mailbox agent add bob --role coder
  mailbox send --from alice --to bob --subject "plan v1" --body "..."
  mailbox inbox bob
  mailbox read bob --json
  mailbox done bob ID
  mailbox status ID --from alice
"""


class Ctx:
    """What every command gets: the root option, opened lazily."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        self._mb: Mailbox | None = None

    @property
    def mb(self) -> Mailbox:
        if self._mb is None:
            self._mb = Mailbox.open(self.root)
        return self._mb


pass_ctx = click.make_pass_decorator(Ctx)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit(data: Any, as_json: bool, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``data`` as JSON, or as text via ``text``."""
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        return
    out = text(data) if callable(text) else text
    if out:
        click.echo(out)


def fail(exc: MailboxError) -> NoReturn:
    raise exc


def show_message(msg: Message) -> str:
    """A message as text: one line per header, then the body, each of its lines fenced
    (``| ``), so that no text of the sender's can pass for a header or a next message."""
    body = msg.body if isinstance(msg.body, str) else orjson.dumps(
        msg.body, option=orjson.OPT_INDENT_2).decode()
    head = [("id", msg.id), ("from", msg.sender), ("to", ", ".join(msg.to)), ("date", msg.ts),
            ("subject", msg.subject)]
    if msg.kind != "message":
        head.append(("kind", msg.kind))
    if msg.priority != "normal":
        head.append(("priority", msg.priority))
    if msg.thread != msg.id:
        head.append(("thread", msg.thread))
    if msg.reply_to:
        head.append(("reply-to", msg.reply_to))
    headers = "\n".join(f"{name + ':':<10}{render.line(value)}" for name, value in head)
    return headers + "\n\n" + render.block(body)


def message_line(msg: Message) -> str:
    flag = {"urgent": "!!", "high": "! "}.get(str(msg.priority), "  ")
    return f"{msg.id}  {flag}{render.line(msg.sender):<12} {render.line(msg.subject)}"


def msg_json(msg: Message) -> dict[str, Any]:
    return msg.to_dict()


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="MAILBOX_ROOT", metavar="PATH",
              help="The mailbox root (default: $MAILBOX_ROOT, else the nearest .mailbox/ above).")
@click.version_option(package_name="agentmailbox")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """A message bus made of directories and files, for agents that restart."""
    ctx.obj = Ctx(root)


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@click.option("--fsync", type=click.Choice(["always", "batch", "never"]), default="always",
              show_default=True, help="When data reaches the disk before a send returns.")
@click.option("--mode", type=click.Choice(["private", "group"]), default="private",
              show_default=True, help="private: 0700/0600; group: setgid dirs, 0660 files.")
@json_option
def init(path: str, fsync: str, mode: str, as_json: bool) -> None:
    """Create a mailbox root (PATH/.mailbox)."""
    mb = Mailbox.init(path, fsync=fsync, mode=mode)
    emit({"root": str(mb.path)}, as_json, f"created {mb.path}")


# -- agents ------------------------------------------------------------------------------------

@cli.group()
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


@cli.command()
@json_option
@pass_ctx
def agents(c: Ctx, as_json: bool) -> None:
    """List agents: role, liveness, last heartbeat, capacity, mode, unread and claimed mail."""
    presence, now = Presence(c.mb.root), time.time_ns()
    rows = [_agent_row(c.mb, info, presence, now) for info in c.mb.agents()]
    head = (f"{'AGENT':<16} {'ROLE':<12} {'LIVENESS':<10} {'BEAT':>6} {'CAP':>5} {'MODE':<11} "
            f"{'UNREAD':>6} {'OLDEST':>6} {'CLAIMED':>7}")
    emit(rows, as_json, lambda rs: "\n".join([head, *(
        f"{r['name']:<16} {render.line(r['role'] or '-', 40):<12} {r['liveness']:<10} "
        f"{_age(r['heartbeat_age_seconds']):>6} "
        f"{'-' if r['capacity'] is None else format(r['capacity'], '.2f'):>5} "
        f"{r['mode'] or '-':<11} {r['unread']:>6} {_age(r['oldest_unread_age_seconds']):>6} "
        f"{r['claimed']:>7}" for r in rs)]) if rs else "no agents yet: mailbox agent add NAME")


def _agent_row(mb: Mailbox, info: Any, presence: Presence, now: int) -> dict[str, Any]:
    inbox = mb.inbox(info.name)
    unread = inbox.ids()
    beat = presence.last(info.name)
    return {**info.to_dict(), "liveness": str(presence.liveness(info.name, now)),
            "heartbeat_at": iso(beat.at) if beat else None,
            "heartbeat_age_seconds": (now - beat.at) / 1e9 if beat else None,
            "capacity": beat.capacity if beat else None,
            "mode": str(beat.mode) if beat else None,
            "unread": len(unread),
            "oldest_unread_age_seconds": (now - stamp_of(unread[0])) / 1e9 if unread else None,
            "claimed": inbox.count(State.CLAIMED)}


def _age(seconds: float | None) -> str:
    """A short age: 42s, 7m, 3h, 2d; '-' for none."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


# -- mail --------------------------------------------------------------------------------------

@cli.command()
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
    if any(map(is_routed, msg.to)) and running_supervisor(c.mb) is None:
        click.echo("mailbox: no supervisor is running: routed mail waits in the spool until "
                   "one does (mailbox supervise)", err=True)


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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


# -- workspace ---------------------------------------------------------------------------------

@cli.group()
def ws() -> None:
    """The shared workspace: versioned files with compare-and-swap and locks."""


@ws.command("put")
@click.argument("name")
@click.option("--file", "source", type=click.File("rb"), default="-",
              help="Read the content from this file (default: stdin).")
@click.option("--if-version", type=int, default=None,
              help="Write only if this is still the current version (0: must not exist).")
@click.option("--as", "author", default=None, help="The writing agent, for the journal.")
@json_option
@pass_ctx
def ws_put(c: Ctx, name: str, source: Any, if_version: int | None, author: str | None,
           as_json: bool) -> None:
    """Write a new version of NAME; prints the version number."""
    data = source.read(MAX_FILE + 1)  # at most one byte over: put refuses it, /dev/zero too
    version = c.mb.workspace.put(name, data, if_version=if_version, author=author)
    emit({"name": name, "version": version}, as_json, str(version))


@ws.command("get")
@click.argument("name")
@click.option("--version", type=int, default=None, help="An older version.")
@json_option
@pass_ctx
def ws_get(c: Ctx, name: str, version: int | None, as_json: bool) -> None:
    """Print the content of NAME (current version unless --version)."""
    f = c.mb.workspace.get(name, version)
    if as_json:
        emit(f.to_dict(with_data=True), True)
    else:
        sys.stdout.buffer.write(f.data)
        sys.stdout.flush()


@ws.command("ls")
@json_option
@pass_ctx
def ws_ls(c: Ctx, as_json: bool) -> None:
    """List workspace files with their versions."""
    files = c.mb.workspace.ls()
    emit([f.to_dict() for f in files], as_json, lambda _: "\n".join(
        f"{f.name:<40} v{f.version:<6} {f.size} bytes" for f in files) or "workspace is empty")


@ws.command("lock", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=30.0, show_default=True)
@pass_ctx
def ws_lock(c: Ctx, name: str, command: tuple[str, ...], timeout: float) -> None:
    """Run COMMAND while holding the lock of NAME: mailbox ws lock plan.md -- CMD ARGS."""
    with c.mb.workspace.lock(name, timeout=timeout):
        env = {**os.environ, "MAILBOX_ROOT": str(c.mb.path), "MAILBOX_LOCKED": name}
        try:
            code = subprocess.call(list(command), env=env)
        except OSError as exc:
            fail(InvalidInput(f"cannot run {command[0]!r}: {exc.strerror or exc}",
                              hint="check the command after --"))
    raise SystemExit(code)


# -- health ------------------------------------------------------------------------------------

@cli.command()
@click.option("--repair", is_flag=True, help="Fix what is safe to fix (never deletes mail).")
@click.option("--stale-after", type=float, default=None,
              help="Seconds after which an unpublished tmp file counts as abandoned.")
@json_option
@pass_ctx
def doctor(c: Ctx, repair: bool, stale_after: float | None, as_json: bool) -> None:
    """Check the whole root: stale tmp files, foreign or malformed files, missing dirs."""
    findings = doctor_mod.check(c.mb, repair=repair, stale_after=stale_after)
    emit({"root": str(c.mb.path), "findings": [f.to_dict() for f in findings],
          "clean": not findings}, as_json, lambda _: "\n".join(
        f"{'fixed' if f.repaired else 'found'}  {f.kind:<14} {render.line(f.path, None)}: "
        f"{render.line(f.detail, None)}"
        for f in findings) or f"{c.mb.path}: clean")
    if any(not f.repaired for f in findings):
        raise SystemExit(EXIT_UNHEALTHY)


# -- entry points ------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    try:
        cli.main(args=args, prog_name="mailbox", standalone_mode=False)
    except MailboxError as exc:
        _report(exc, args)
        return exc.exit_code
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_OK


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    click.echo(f"mailbox: warning: {render.line(str(message), None)}", err=True)


def _report(exc: MailboxError, args: Sequence[str]) -> None:
    if "--json" in args:
        err = {"error": type(exc).__name__, "message": str(exc), "hint": exc.hint,
               "exit_code": exc.exit_code}
        sys.stderr.buffer.write(orjson.dumps(err, option=orjson.OPT_APPEND_NEWLINE))
        sys.stderr.flush()
        return
    click.echo(f"mailbox: {render.line(str(exc), None)}", err=True)
    if exc.hint:
        click.echo(f"  hint: {render.line(exc.hint, None)}", err=True)


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())


# The command modules register their commands on `cli`, defined above.
from . import (  # noqa: E402
    cli_agent,  # noqa: F401  registers handoff, state, memory, boot, thread
    cli_live,  # noqa: F401  registers watch, heartbeat, tail
    cli_supervisor,  # noqa: F401  registers supervise, dead
)
