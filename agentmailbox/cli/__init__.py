"""The ``mailbox`` command: parses, calls the library, prints text or ``--json``.

No logic lives here. The top group is defined here; each command family lives in a module
of its own (mail, agents, workspace, continuity, live, admin, hook, integrations, mcp,
bridge) that imports only :mod:`agentmailbox.cli._base`, never this module. The group imports a
command's module only when that command runs (:data:`COMMANDS`), so ``mailbox inbox``
never pays for the supervisor, the continuity modules or watchdog. An error exits with
its class's ``exit_code`` (agentmailbox/errors.py); the codes (stable; scripts rely on
them):
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

import click

from ..errors import MailboxError
from ._base import (
    EXIT_COMMAND_FAILED,
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
    IDENTITY,
    Ctx,
    report,
    report_usage,
    show_warning,
)

__all__ = [
    "COMMANDS",
    "EXIT_COMMAND_FAILED",
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
  mailbox init --exist-ok
  mailbox agent add alice --role planner
  mailbox agent add bob --role coder
  mailbox send --from alice --to bob --subject "plan v1" --body "..."
  export MAILBOX_AGENT=bob
  mailbox whoami
  mailbox next --timeout 30
  mailbox reply ID --body "on it" --done
  mailbox status ID --from alice

\b
Identity: """ + IDENTITY + """
--root, --json and --agent go before or after the command."""


COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:attribute" in this package, the first sentence of its help, which
    # `mailbox --help` shows without importing the module; tests/test_cli.py checks both)
    "send": ("mail:send", "Send a message; prints its id."),
    "inbox": ("mail:inbox", "List unread mail of AGENT, oldest first."),
    "read": ("mail:read",
             "Claim the oldest unread message of AGENT and print it (exit 3 if none)."),
    "peek": ("mail:peek", "Show the oldest unread message of AGENT without claiming it "
             "(read --peek)."),
    "next": ("mail:next_", "Wait for the oldest unread message of AGENT, claim it and print it "
             "(exit 3 at the timeout)."),
    "reply": ("mail:reply", "Reply to message ID: to its sender, in its thread, subject "
              "\"re: ...\"."),
    "whoami": ("agents:whoami", "Show the acting agent: name, role, root, epoch."),
    "done": ("mail:done", "Mark claimed messages of AGENT done (their DONE markers)."),
    "release": ("mail:release", "Give claimed messages of AGENT back to its unread mail."),
    "status": ("mail:status", "Per recipient: delivered, read (when, by which instance) or done."),
    "agent": ("agents:agent", "Register and inspect agents."),
    "agents": ("agents:agents", "List agents: role, liveness, last heartbeat, capacity, mode, "
               "unread and claimed mail."),
    "ws": ("workspace:ws",
           "The shared workspace: versioned files with compare-and-swap and locks."),
    "handoff": ("continuity:handoff",
                "Write the handoff note for AGENT's next instance (or --show it)."),
    "state": ("continuity:state", "AGENT's working state: set, get, unset keys (volatile; "
              "replaced, never appended)."),
    "remember": ("continuity:remember", "Append TEXT to AGENT's event memory (append-only)."),
    "memory": ("continuity:memory", "Print AGENT's event memory, oldest first."),
    "boot": ("continuity:boot",
             "Start a new instance of AGENT and print its boot brief, most important first."),
    "thread": ("continuity:thread",
               "Thread DONE markers: mark a whole conversation finished, and see it."),
    "watch": ("live:watch",
              "Print AGENT's new mail as it arrives, or run a command for each message."),
    "heartbeat": ("live:heartbeat",
                  "Record that AGENT is alive now (run it from the agent's loop or a cron job)."),
    "tail": ("live:tail", "Print the bus journal (send, claim, done, release, dead, ws.put...) "
             "in time order."),
    "hook": ("hook:hook", "Hooks for an agent harness: read the event's JSON on stdin, answer "
             "as the harness expects."),
    "mcp": ("mcp:mcp", "Serve the mailbox over stdio (MCP), as the agent $MAILBOX_AGENT names."),
    "setup": ("integrations:setup", "Set an agent harness up to run the mailbox hooks."),
    "init": ("admin:init", "Create a mailbox root (PATH/.mailbox)."),
    "doctor": ("admin:doctor", "Check the whole root: stale tmp files, foreign or malformed "
               "files, missing dirs."),
    "supervise": ("admin:supervise", "Route spooled mail (@role, #topic, +group, *), enforce "
                  "quotas and rates, expire mail."),
    "dead": ("admin:dead",
             "Dead letters: quarantined or undeliverable mail, each with its reason."),
    "bridge": ("bridge:bridge", "Carry mail between this root and other hosts over NATS "
               "JetStream."),
}


class LazyGroup(click.Group):
    """The top group: lists :data:`COMMANDS` and imports a command's module only when the
    command is looked up (to run it, or for its own ``--help``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, _, attr = COMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name][0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, as click prints it, from the table (no imports)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        with formatter.section("Commands"):
            formatter.write_dl([(name, self._short_help(name, limit)) for name in names])

    def _short_help(self, name: str, limit: int) -> str:
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        return click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)


@click.group(cls=LazyGroup, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="MAILBOX_ROOT", metavar="PATH",
              help="The mailbox root (default: $MAILBOX_ROOT, else the nearest .mailbox/ above).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as after the command).")
@click.option("--agent", metavar="NAME", default=None,
              help="The acting agent (as after the command; default: $MAILBOX_AGENT).")
@click.version_option(package_name="agentmailbox")
@click.pass_context
def cli(ctx: click.Context, root: str | None, as_json: bool, agent: str | None) -> None:
    """A message bus made of directories and files, for agents that restart."""
    ctx.obj = Ctx(root, as_json, agent)


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
        report_usage(exc, args)
        return EXIT_USAGE
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_OK


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
