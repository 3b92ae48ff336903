"""Workspace commands: ws put, get, ls, lock."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import click

from .. import render
from ..errors import InvalidInput
from ..workspace import MAX_FILE
from ._base import (
    EXIT_COMMAND_FAILED,
    Ctx,
    acting_or_none,
    agent_option,
    emit,
    fail,
    json_option,
    pass_ctx,
)


@click.group()
def ws() -> None:
    """The shared workspace: versioned files with compare-and-swap and locks."""


@ws.command("put")
@click.argument("name")
@click.option("--file", "source", type=click.File("rb"), default="-",
              help="Read the content from this file (default: stdin).")
@click.option("--if-version", type=int, default=None,
              help="Write only if this is still the current version (0: must not exist).")
@click.option("--as", "author", default=None,
              help="The writing agent, for the journal (default: --agent, $MAILBOX_AGENT).")
@agent_option
@json_option
@pass_ctx
def ws_put(c: Ctx, name: str, source: Any, if_version: int | None, author: str | None,
           agent: str | None, as_json: bool) -> None:
    """Write a new version of NAME; prints the version number."""
    data = source.read(MAX_FILE + 1)  # at most one byte over: put refuses it, /dev/zero too
    version = c.mb.workspace.put(name, data, if_version=if_version,
                                 author=acting_or_none(author, agent))
    emit({"name": name, "version": version}, as_json, str(version))


@ws.command("get")
@click.argument("name")
@click.option("--version", type=int, default=None, help="An older version.")
@json_option
@pass_ctx
def ws_get(c: Ctx, name: str, version: int | None, as_json: bool) -> None:
    """Print the content of NAME (current version unless --version).

    --json carries the bytes exactly in "base64", and the same content as "text" when it
    is valid UTF-8 (else "text" is null): decode "base64" to get the file back.
    """
    f = c.mb.workspace.get(name, version)
    if as_json:
        import base64

        try:
            text: str | None = f.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        emit({**f.to_dict(), "base64": base64.b64encode(f.data).decode("ascii"), "text": text},
             True)
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


LOCK_EPILOG = """\b
Exit status: 0 when COMMAND exits 0; 11 when it exits with any other status or
is killed by a signal (its status is on stderr, and in the JSON as
"exit_status", negative for a signal), so it is never taken for one of
mailbox's own codes (6: the lock is held). --pass-status exits with COMMAND's
own status instead. --json prints one JSON object after COMMAND has run
(COMMAND's own output comes first, unchanged).
"""


@ws.command("lock", epilog=LOCK_EPILOG, context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--pass-status", is_flag=True, help="Exit with COMMAND's own exit status.")
@json_option
@pass_ctx
def ws_lock(c: Ctx, name: str, command: tuple[str, ...], timeout: float, pass_status: bool,
            as_json: bool) -> None:
    """Run COMMAND while holding the lock of NAME: mailbox ws lock plan.md -- CMD ARGS."""
    with c.mb.workspace.lock(name, timeout=timeout):
        env = {**os.environ, "MAILBOX_ROOT": str(c.mb.path), "MAILBOX_LOCKED": name}
        try:
            status = subprocess.call(list(command), env=env)
        except OSError as exc:
            fail(InvalidInput(f"cannot run {command[0]!r}: {exc.strerror or exc}",
                              hint="check the command after --"))
    if as_json:
        emit({"name": name, "command": list(command), "exit_status": status}, True)
    elif status != 0:
        click.echo(f"mailbox: {render.line(command[0])} exited with status {status}", err=True)
    if pass_status:
        raise SystemExit(status if status >= 0 else 128 - status)
    if status != 0:
        raise SystemExit(EXIT_COMMAND_FAILED)
