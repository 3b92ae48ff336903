"""The ``mailbox`` command: parses, calls the library, prints text or ``--json``.

No logic lives here. The top group is defined here; each command family lives in a module
of its own (mail, agents, workspace, continuity, live, admin) that imports only
:mod:`agentmailbox.cli._base`, never this module. Exit codes (stable; scripts rely on them):
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

import click

from ..errors import MailboxError
from . import admin, agents, continuity, live, mail, workspace
from ._base import (
    EXIT_CONFLICT,
    EXIT_DISK_FULL,
    EXIT_EMPTY,
    EXIT_ERROR,
    EXIT_INBOX_FULL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TOO_LARGE,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    Ctx,
    report,
    show_warning,
)

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_DISK_FULL",
    "EXIT_EMPTY",
    "EXIT_ERROR",
    "EXIT_INBOX_FULL",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TOO_LARGE",
    "EXIT_UNHEALTHY",
    "EXIT_USAGE",
    "cli",
    "main",
    "run",
]

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


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="MAILBOX_ROOT", metavar="PATH",
              help="The mailbox root (default: $MAILBOX_ROOT, else the nearest .mailbox/ above).")
@click.version_option(package_name="agentmailbox")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """A message bus made of directories and files, for agents that restart."""
    ctx.obj = Ctx(root)


for _command in (
    admin.init, agents.agent, agents.agents, mail.send, mail.inbox, mail.read, mail.done,
    mail.release, mail.status, workspace.ws, admin.doctor, continuity.handoff, continuity.state,
    continuity.remember, continuity.memory, continuity.boot, continuity.thread, live.watch,
    live.heartbeat, live.tail, admin.supervise, admin.dead,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = show_warning
    try:
        cli.main(args=args, prog_name="mailbox", standalone_mode=False)
    except MailboxError as exc:
        report(exc, args)
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


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
