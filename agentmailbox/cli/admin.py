"""Admin commands: init, doctor, supervise, and the dead letters (ls, show, retry, purge).

The supervisor, the doctor and logging are imported by the commands that run them, so
``mailbox init`` and ``mailbox dead ls`` do not load the routing daemon.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import orjson

from .. import render
from ..dead import DeadLetter
from ..errors import AlreadyExists, InvalidInput
from ..mailbox import Mailbox
from ._base import EXIT_INTERRUPTED, EXIT_UNHEALTHY, Ctx, emit, json_option, pass_ctx

if TYPE_CHECKING:
    from ..supervisor import Supervisor


@click.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@click.option("--fsync", type=click.Choice(["always", "batch", "never"]), default="always",
              show_default=True, help="When data reaches the disk before a send returns.")
@click.option("--mode", type=click.Choice(["private", "group"]), default="private",
              show_default=True, help="private: 0700/0600; group: setgid dirs, 0660 files.")
@click.option("--exist-ok", is_flag=True,
              help="A root already there is fine: use it as it is (its settings unchanged).")
@json_option
def init(path: str, fsync: str, mode: str, exist_ok: bool, as_json: bool) -> None:
    """Create a mailbox root (PATH/.mailbox)."""
    try:
        mb, created = Mailbox.init(path, fsync=fsync, mode=mode), True
    except AlreadyExists as exc:
        if not exist_ok:
            raise AlreadyExists(str(exc), hint="use it, pick another path, or pass --exist-ok "
                                "to accept a root already there") from exc
        mb, created = Mailbox.init(path, exist_ok=True), False
    emit({"root": str(mb.path), "created": created}, as_json,
         f"{'created' if created else 'already there:'} {mb.path}")


# -- health ------------------------------------------------------------------------------------

@click.command()
@click.option("--repair", is_flag=True, help="Fix what is safe to fix (never deletes mail).")
@click.option("--stale-after", type=float, default=None,
              help="Seconds after which an unpublished tmp file counts as abandoned.")
@json_option
@pass_ctx
def doctor(c: Ctx, repair: bool, stale_after: float | None, as_json: bool) -> None:
    """Check the whole root: stale tmp files, foreign or malformed files, missing dirs."""
    from .. import doctor as doctor_mod

    findings = doctor_mod.check(c.mb, repair=repair, stale_after=stale_after)
    emit({"root": str(c.mb.path), "findings": [f.to_dict() for f in findings],
          "clean": not findings}, as_json, lambda _: "\n".join(
        f"{'fixed' if f.repaired else 'found'}  {f.kind:<14} {render.line(f.path, None)}: "
        f"{render.line(f.detail, None)}"
        for f in findings) or f"{c.mb.path}: clean")
    if any(not f.repaired for f in findings):
        raise SystemExit(EXIT_UNHEALTHY)


# -- routing -------------------------------------------------------------------------------------

_SUPERVISE_EPILOG = """\b
Examples:
  mailbox supervise                      # run until Ctrl-C or SIGTERM; JSON logs on stderr
  mailbox supervise --once --json        # route what waits now, then exit
  mailbox send --from alice --to @coder --pick one --body "fix #12"
"""


@contextmanager
def _stop_on_signals(sup: Supervisor) -> Iterator[list[int]]:
    """SIGTERM and SIGINT ask the supervisor to stop; yields the signals received.

    The handlers only record the signal and set a flag; the loop notices it.
    """
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        sup.request_stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@click.command(epilog=_SUPERVISE_EPILOG)
@click.option("--once", is_flag=True, help="Do one pass (route, retry, sweep), then exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Lowest level logged to stderr.")
@json_option
@pass_ctx
def supervise(c: Ctx, once: bool, log_level: str, as_json: bool) -> None:
    """Route spooled mail (@role, #topic, +group, *), enforce quotas and rates, expire mail.

    One per root: a second one exits at once with code 6. SIGTERM stops it (exit 0),
    Ctrl-C too (exit 130), after the message in hand.
    """
    import logging

    from ..logs import daemon_logging
    from ..supervisor import Supervisor

    sup = Supervisor(c.mb)
    with daemon_logging(getattr(logging, log_level.upper())):
        if once:
            with sup:
                report = sup.run_once()
            emit(report.to_dict(), as_json,
                 lambda d: " ".join(f"{k} {v}" for k, v in d.items()))
            return
        with _stop_on_signals(sup) as received:
            sup.run()
    if signal.SIGINT in received:
        raise SystemExit(EXIT_INTERRUPTED)  # stopped cleanly, by Ctrl-C


# -- dead letters ----------------------------------------------------------------------------------

@click.group()
def dead() -> None:
    """Dead letters: quarantined or undeliverable mail, each with its reason."""


def _letter_line(d: DeadLetter) -> str:
    """A dead letter on two lines: its id, when, where from and why; then which message
    it was (id, sender, subject), so `mailbox status MSG_ID` and `dead show` can follow."""
    mail = (f"message {render.line(d.msg_id, 60)} from {render.line(d.sender or '?', 64)}: "
            f"{render.line(d.subject or '', 120)}" if d.msg_id else "not a message file")
    return (f"{render.line(d.id, 60)}  {render.line(d.at[:19])}  {render.line(d.origin, 80):<28} "
            f"{render.line(d.reason, None)}\n    {mail}")


@dead.command("ls")
@json_option
@pass_ctx
def dead_ls(c: Ctx, as_json: bool) -> None:
    """List dead letters, oldest first."""
    letters = c.mb.dead.list()
    emit([d.to_dict() for d in letters], as_json,
         lambda _: "\n".join(map(_letter_line, letters)) or "no dead letters")


@dead.command("show")
@click.argument("dead_id", metavar="ID")
@json_option
@pass_ctx
def dead_show(c: Ctx, dead_id: str, as_json: bool) -> None:
    """Show why ID is dead, and its content (a link is named, never followed).

    ID is the dead-letter id or the id of the message it was (its latest letter)."""
    letter = c.mb.dead.get(dead_id)
    content = c.mb.dead.content(dead_id, c.mb.config.max_message_bytes)
    text = content.decode("utf-8", "replace")
    emit({**letter.to_dict(), "content": text}, as_json,
         lambda d: "\n".join(f"{render.line(k, 40) + ':':<10}{render.line(_field(v), None)}"
                             for k, v in d.items() if k != "content")
         + "\n\n" + render.block(text))


def _field(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@dead.command("retry")
@click.argument("dead_id", metavar="ID")
@json_option
@pass_ctx
def dead_retry(c: Ctx, dead_id: str, as_json: bool) -> None:
    """Put ID back where it came from (its inbox, or the spool), with the same id."""
    from ..supervisor import retry_dead_letter

    done = retry_dead_letter(c.mb, dead_id)
    emit(done.to_dict(), as_json,
         f"{done.msg_id} back in {done.to}" if done.stored
         else f"{done.msg_id} is already in {done.to}; the dead letter stays")


@dead.command("purge")
@click.option("--older-than", "days", type=float, default=None, metavar="DAYS",
              help="Only dead letters buried more than DAYS days ago.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_ctx
def dead_purge(c: Ctx, days: float | None, yes: bool, as_json: bool) -> None:
    """Delete dead letters for good (the only command that deletes mail)."""
    if not yes:
        what = f"older than {days:g} days" if days is not None else "all"
        if not sys.stdin.isatty():
            raise InvalidInput(f"purge deletes dead letters ({what}) for good",
                               hint="confirm with --yes")
        click.confirm(f"Delete dead letters ({what}) for good?", abort=True)
    from ..supervisor import purge_dead_letters

    removed = purge_dead_letters(c.mb, days)
    emit({"purged": removed}, as_json, f"purged {len(removed)} dead letter(s)")
