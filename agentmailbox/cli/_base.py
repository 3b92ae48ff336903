"""What every command module of ``mailbox`` shares: the exit codes, the context object, the
``--json`` option, printing, and reporting an error.

The command modules import this module; it imports none of them. It imports no more than
click at import time (orjson and the library come in where they are used), so
``mailbox --help`` costs little more than click itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import render
from ..errors import (
    Conflict,
    DiskFull,
    InboxFull,
    InvalidInput,
    MailboxError,
    MessageTooLarge,
    NotFound,
)
from ..names import AGENT_ENV, is_id

if TYPE_CHECKING:
    from ..mailbox import Mailbox
    from ..message import Message

# The exit codes that are not errors. An error's code is its class's ``exit_code`` (the tree
# in agentmailbox/errors.py): nothing else maps an exception to a code.
EXIT_OK = 0            # it worked
EXIT_USAGE = 2         # the command line is wrong (unknown option, missing argument)
EXIT_EMPTY = 3         # nothing to read: the inbox has no unread mail
EXIT_UNHEALTHY = 10    # doctor found problems it did not repair
EXIT_COMMAND_FAILED = 11  # ws lock: the command run under the lock exited non-zero
EXIT_INTERRUPTED = 130  # Ctrl-C

# The errors' codes under the names scripts import them by: each is its class's code.
EXIT_ERROR = MailboxError.exit_code              # StorageError, and any error without its own
EXIT_NOT_FOUND = NotFound.exit_code              # no such root, agent, message or file
EXIT_INVALID = InvalidInput.exit_code            # invalid name, id, option or content
EXIT_CONFLICT = Conflict.exit_code               # stale version, lock held, already exists
EXIT_TOO_LARGE = MessageTooLarge.exit_code       # message or handoff over its limit
EXIT_INBOX_FULL = InboxFull.exit_code            # recipient inbox at its quota
EXIT_DISK_FULL = DiskFull.exit_code              # no space left; nothing partial was written



IDENTITY = ("The acting agent is, first to last: the AGENT argument (or --from, --as) when "
            "given, else --agent NAME, else $MAILBOX_AGENT.")
"""The precedence, as each such command's help says it."""


class Ctx:
    """What every command gets: the root option, opened lazily, and the top-level --json."""

    def __init__(self, root: str | None, as_json: bool = False, agent: str | None = None
                 ) -> None:
        self.root = root
        self.json = as_json
        self.agent = agent
        self._mb: Mailbox | None = None

    @property
    def mb(self) -> Mailbox:
        if self._mb is None:
            from ..mailbox import Mailbox  # here, not at import: `mailbox --help` never needs it

            self._mb = Mailbox.open(self.root)
        return self._mb


pass_ctx = click.make_pass_decorator(Ctx)


def _json_flag(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """--json after the subcommand, or before it (on the top group)."""
    top = ctx.find_object(Ctx)
    return value or (top is not None and top.json)


def _root_flag(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--root after the subcommand: the same as before it."""
    top = ctx.find_object(Ctx)
    if value is not None and top is not None:
        top.root = value


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--json (and --root) on a command: both are accepted before or after the subcommand."""
    f = click.option("--root", metavar="PATH", expose_value=False, callback=_root_flag,
                     help="The mailbox root (as before the command).")(f)
    return click.option("--json", "as_json", is_flag=True, callback=_json_flag,
                        help="Print JSON (docs/CLI.md, \"JSON output\").")(f)


def _agent_flag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--agent after the subcommand, else before it, else $MAILBOX_AGENT."""
    top = ctx.find_object(Ctx)
    given = ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE
    return value if given or top is None or top.agent is None else top.agent


agent_option = click.option(
    "--agent", "agent", envvar=AGENT_ENV, default=None, metavar="NAME", callback=_agent_flag,
    help="The acting agent (default: $MAILBOX_AGENT).")


def acting(*given: str | None) -> str:
    """The acting agent: the first of ``given`` that is set (explicit argument first, then
    --agent, which already holds $MAILBOX_AGENT when not given).

    Raises:
        NotFound: nothing names the agent.
    """
    name = acting_or_none(*given)
    if name is None:
        raise NotFound("no acting agent: none was named and $MAILBOX_AGENT is not set",
                       hint=f"export {AGENT_ENV}=NAME, or pass --agent NAME")
    return name


def acting_or_none(*given: str | None) -> str | None:
    """The acting agent, or None where naming one is optional."""
    return next((g for g in given if g), None) or os.environ.get(AGENT_ENV) or None


def split_agent(args: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """``[AGENT] ID...`` as (AGENT or None, the ids): a first word shaped like a message id
    is an id, so ``mailbox done ID`` works once $MAILBOX_AGENT is set."""
    if args and not is_id(args[0]):
        return args[0], tuple(args[1:])
    return None, tuple(args)


def emit(data: Any, as_json: bool, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``data`` as JSON, or as text via ``text``."""
    if as_json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        return
    out = text(data) if callable(text) else text
    if out:
        click.echo(out)


def fail(exc: MailboxError) -> NoReturn:
    raise exc


def parse_json(text: str, what: str, hint: str = "") -> Any:
    """JSON a user gave on the command line or in a file (``what`` names where), or exit 5."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        fail(InvalidInput(f"{what} is not valid JSON: {exc}", hint=hint))


def show_message(msg: Message, extra: Sequence[tuple[str, str]] = ()) -> str:
    """A message as text: one line per header (``extra`` last), then the body, each of its
    lines fenced (``| ``), so that no text of the sender's can pass for a header or a next
    message."""
    import orjson

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
    head.extend(extra)
    headers = "\n".join(f"{name + ':':<10}{render.line(value)}" for name, value in head)
    return headers + "\n\n" + render.block(body)


def message_line(msg: Message) -> str:
    flag = {"urgent": "!!", "high": "! "}.get(str(msg.priority), "  ")
    return f"{msg.id}  {flag}{render.line(msg.sender):<12} {render.line(msg.subject)}"


def msg_json(msg: Message) -> dict[str, Any]:
    return msg.to_dict()


def show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    click.echo(f"mailbox: warning: {render.line(str(message), None)}", err=True)


def wants_json(args: Sequence[str]) -> bool:
    """True if ``--json`` is among the options (anywhere before a ``--``)."""
    head = args[: args.index("--")] if "--" in args else args
    return "--json" in head


def report(exc: MailboxError, args: Sequence[str]) -> None:
    """Print an error on stderr: a line and its hint, or one JSON object under ``--json``."""
    report_error(type(exc).__name__, str(exc), exc.hint, exc.exit_code, args)


def report_usage(exc: click.ClickException, args: Sequence[str]) -> None:
    """A usage error as click prints it, or as one JSON object under ``--json``."""
    if not wants_json(args):
        exc.show()
        return
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "mailbox"
    report_error(type(exc).__name__, exc.format_message(), f"see {where} --help",
                 EXIT_USAGE, args)


def report_error(kind: str, message: str, hint: str, code: int, args: Sequence[str]) -> None:
    if wants_json(args):
        import orjson

        err = {"error": kind, "message": message, "hint": hint, "exit_code": code}
        sys.stderr.buffer.write(orjson.dumps(err, option=orjson.OPT_APPEND_NEWLINE))
        sys.stderr.flush()
        return
    click.echo(f"mailbox: {render.line(message, None)}", err=True)
    if hint:
        click.echo(f"  hint: {render.line(hint, None)}", err=True)
