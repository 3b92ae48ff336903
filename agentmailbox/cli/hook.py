"""The hook commands: ``mailbox hook session-start|prompt|stop|pre-compact|session-end|wait``.

A harness (Claude Code) runs one at each event of a session, with the event's JSON on
stdin; the logic is :mod:`agentmailbox.hooks`, and docs/INTEGRATIONS.md says what each
does and how to set them up. Every one exits 0 whatever goes wrong (one line on stderr),
except the deliberate exit 2 of ``wait`` when new mail arrives.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from ._base import Ctx, agent_option, json_option, pass_ctx

EPILOG = """\b
Identity: $MAILBOX_AGENT (or --agent NAME). Without it a hook prints nothing and one
line on stderr. --json is accepted and changes nothing: what a hook prints on stdout is
the harness's JSON already (docs/INTEGRATIONS.md).
\b
`mailbox setup claude-code --agent bob` (or `setup codex`) writes these into the project's
hook settings; by hand, in .claude/settings.json, each as a command hook:
  SessionStart       mailbox hook session-start --agent bob
  UserPromptSubmit   mailbox hook prompt --agent bob
  Stop               mailbox hook stop --agent bob
  PreCompact         mailbox hook pre-compact --agent bob
  SessionEnd         mailbox hook session-end --agent bob"""


@click.group(epilog=EPILOG)
def hook() -> None:
    """Hooks for an agent harness: read the event's JSON on stdin, answer as the harness
    expects."""


def _answer(c: Ctx, name: str, agent: str | None, **options: Any) -> NoReturn:
    """Run hook ``name`` on stdin, print its answer and exit with its code."""
    from .. import hooks

    answer = hooks.answer(name, agent, lambda: c.mb, root=c.root, **options)
    try:
        if answer.stdout:
            click.echo(answer.stdout)
        if answer.stderr:
            click.echo(answer.stderr, err=True)
    except BrokenPipeError:
        pass  # the reader went away: the exit code still says what the hook did (click: 1)
    raise SystemExit(answer.code)


@hook.command("session-start")
@click.option("--budget", type=int, default=9000, show_default=True,
              help="The brief's cap in characters (at most 10000, the harness's cap).")
@agent_option
@json_option
@pass_ctx
def session_start(c: Ctx, budget: int, agent: str | None, as_json: bool) -> None:
    """SessionStart: start an epoch (not on compact) and add the boot brief to the context."""
    _answer(c, "session-start", agent, budget=budget)


@hook.command("prompt")
@agent_option
@json_option
@pass_ctx
def prompt(c: Ctx, agent: str | None, as_json: bool) -> None:
    """UserPromptSubmit: one line when unread mail is there not surfaced in this epoch."""
    _answer(c, "prompt", agent)


@hook.command("stop")
@agent_option
@json_option
@pass_ctx
def stop(c: Ctx, agent: str | None, as_json: bool) -> None:
    """Stop: block once while claimed mail is not done or no handoff was written."""
    _answer(c, "stop", agent)


@hook.command("pre-compact")
@agent_option
@json_option
@pass_ctx
def pre_compact(c: Ctx, agent: str | None, as_json: bool) -> None:
    """PreCompact: write a checkpoint handoff from working state and claimed mail."""
    _answer(c, "pre-compact", agent)


@hook.command("session-end")
@agent_option
@json_option
@pass_ctx
def session_end(c: Ctx, agent: str | None, as_json: bool) -> None:
    """SessionEnd: record how the session ended (and whether it left a handoff)."""
    _answer(c, "session-end", agent)


@hook.command("wait")
@click.option("--timeout", type=float, default=590.0, show_default=True,
              help="Seconds to wait at most (exit 0 then).")
@agent_option
@json_option
@pass_ctx
def wait(c: Ctx, timeout: float, agent: str | None, as_json: bool) -> None:
    """Wait for new mail: exit 2 with a doorbell on stderr when it arrives, 0 at the timeout."""
    _answer(c, "wait", agent, timeout=timeout)
