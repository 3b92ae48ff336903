"""Workspace commands: ws put, get, ls, lock."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import click

from ..errors import InvalidInput
from ..workspace import MAX_FILE
from ._base import Ctx, emit, fail, json_option, pass_ctx


@click.group()
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


