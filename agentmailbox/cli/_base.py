"""What every command module of ``mailbox`` shares: the exit codes, the context object, the
``--json`` option, printing, and reporting an error.

The command modules import this module; it imports none of them. It imports no more than
click at import time (orjson and the library come in where they are used), so
``mailbox --help`` costs little more than click itself.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    from ..mailbox import Mailbox
    from ..message import Message

# The exit codes that are not errors. An error's code is its class's ``exit_code`` (the tree
# in agentmailbox/errors.py): nothing else maps an exception to a code.
EXIT_OK = 0            # it worked
EXIT_USAGE = 2         # the command line is wrong (unknown option, missing argument)
EXIT_EMPTY = 3         # nothing to read: the inbox has no unread mail
EXIT_UNHEALTHY = 10    # doctor found problems it did not repair
EXIT_INTERRUPTED = 130  # Ctrl-C

# The errors' codes under the names scripts import them by: each is its class's code.
EXIT_ERROR = MailboxError.exit_code              # StorageError, and any error without its own
EXIT_NOT_FOUND = NotFound.exit_code              # no such root, agent, message or file
EXIT_INVALID = InvalidInput.exit_code            # invalid name, id, option or content
EXIT_CONFLICT = Conflict.exit_code               # stale version, lock held, already exists
EXIT_TOO_LARGE = MessageTooLarge.exit_code       # message or handoff over its limit
EXIT_INBOX_FULL = InboxFull.exit_code            # recipient inbox at its quota
EXIT_DISK_FULL = DiskFull.exit_code              # no space left; nothing partial was written


class Ctx:
    """What every command gets: the root option, opened lazily."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        self._mb: Mailbox | None = None

    @property
    def mb(self) -> Mailbox:
        if self._mb is None:
            from ..mailbox import Mailbox  # here, not at import: `mailbox --help` never needs it

            self._mb = Mailbox.open(self.root)
        return self._mb


pass_ctx = click.make_pass_decorator(Ctx)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


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


def show_message(msg: Message) -> str:
    """A message as text: one line per header, then the body, each of its lines fenced
    (``| ``), so that no text of the sender's can pass for a header or a next message."""
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
    headers = "\n".join(f"{name + ':':<10}{render.line(value)}" for name, value in head)
    return headers + "\n\n" + render.block(body)


def message_line(msg: Message) -> str:
    flag = {"urgent": "!!", "high": "! "}.get(str(msg.priority), "  ")
    return f"{msg.id}  {flag}{render.line(msg.sender):<12} {render.line(msg.subject)}"


def msg_json(msg: Message) -> dict[str, Any]:
    return msg.to_dict()


def show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    click.echo(f"mailbox: warning: {render.line(str(message), None)}", err=True)


def report(exc: MailboxError, args: Sequence[str]) -> None:
    """Print an error on stderr: a line and its hint, or one JSON object under ``--json``."""
    if "--json" in args:
        import orjson

        err = {"error": type(exc).__name__, "message": str(exc), "hint": exc.hint,
               "exit_code": exc.exit_code}
        sys.stderr.buffer.write(orjson.dumps(err, option=orjson.OPT_APPEND_NEWLINE))
        sys.stderr.flush()
        return
    click.echo(f"mailbox: {render.line(str(exc), None)}", err=True)
    if exc.hint:
        click.echo(f"  hint: {render.line(exc.hint, None)}", err=True)
