"""The set-up commands: ``mailbox setup claude-code`` merges the hooks into a project's
``.claude/settings.json``, ``mailbox setup codex`` into its ``.codex/hooks.json`` (and
``--undo`` takes them out); the logic is :mod:`agentmailbox.integrations`,
docs/INTEGRATIONS.md says what they write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._base import Ctx, acting, emit, json_option, pass_ctx

if TYPE_CHECKING:
    from ..integrations import Harness, Plan

NOTE = """\b
Each hook's command carries --agent NAME (none under --agent-from-env), and --root PATH
when a hook run in the project would not find the root by itself. The
user's own hooks and settings are kept; running it twice changes nothing. Setting an agent
up where the hooks act as another is refused (exit 6) (docs/INTEGRATIONS.md)."""

EPILOG = """\b
Examples:
  mailbox setup claude-code --agent bob --dry-run     # show the diff, write nothing
  mailbox setup claude-code --agent bob               # merge into ./.claude/settings.json
  mailbox setup claude-code --agent bob --project ../app
  mailbox setup claude-code --agent bob --local       # ./.claude/settings.local.json
  mailbox setup claude-code --agent-from-env          # several agents in one project:
  MAILBOX_AGENT=coder claude                          #   each session names its own
  mailbox setup claude-code --undo                    # take our hooks out again
  mailbox setup claude-code --agent bob --mcp         # and mailbox mcp in ./.mcp.json
  mailbox setup codex --agent bob                     # merge into ./.codex/hooks.json
""" + NOTE

CODEX_EPILOG = """\b
Examples:
  mailbox setup codex --agent bob --dry-run           # show the diff, write nothing
  mailbox setup codex --agent bob                     # merge into ./.codex/hooks.json
  mailbox setup codex --agent-from-env                # several agents: MAILBOX_AGENT=NAME codex
  mailbox setup codex --undo                          # take our hooks out again
  mailbox setup codex --agent bob --mcp               # and mailbox mcp in .codex/config.toml
""" + NOTE


@click.group(epilog=EPILOG)
def setup() -> None:
    """Set an agent harness up to run the mailbox hooks."""


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every harness's set-up takes."""
    for option in reversed([
        click.option("--agent", "agent", envvar="MAILBOX_AGENT", default=None, metavar="NAME",
                     help="The agent the hooks act as (default: $MAILBOX_AGENT)."),
        click.option("--project", type=click.Path(exists=True, file_okay=False,
                                                  path_type=Path),
                     default=".", show_default=True, help="The project folder."),
        click.option("--dry-run", is_flag=True,
                     help="Write nothing; print the diff of what would change."),
        click.option("--undo", "--remove", "undo", is_flag=True,
                     help="Take out exactly the hooks setup wrote."),
        click.option("--agent-from-env", "from_env", is_flag=True,
                     help="Name no agent in the hooks: each session acts as the agent "
                          "$MAILBOX_AGENT names where the harness starts (several agents "
                          "in one project)."),
    ]):
        f = option(f)
    return json_option(f)


@setup.command("claude-code", epilog=EPILOG)
@_common
@click.option("--local", is_flag=True, help="Edit .claude/settings.local.json (this "
              "checkout's, not committed) instead.")
@click.option("--mcp", is_flag=True, help="Also run `mailbox mcp` as the agent: its entry in "
              "PROJECT/.mcp.json, approved in the settings file (with --undo: take it out).")
@pass_ctx
def claude_code(c: Ctx, agent: str | None, project: Path, local: bool, mcp: bool,
                dry_run: bool, undo: bool, from_env: bool, as_json: bool) -> None:
    """Merge the mailbox hooks into PROJECT/.claude/settings.json (Claude Code)."""
    _set_up(c, "claude-code", agent, project, dry_run=dry_run, undo=undo, local=local,
            from_env=from_env, as_json=as_json, mcp=mcp)


@setup.command("codex", epilog=CODEX_EPILOG)
@_common
@click.option("--mcp", is_flag=True, help="Also run `mailbox mcp` as the agent: its table in "
              "PROJECT/.codex/config.toml, appended (with --undo: taken out).")
@pass_ctx
def codex(c: Ctx, agent: str | None, project: Path, mcp: bool, dry_run: bool, undo: bool,
          from_env: bool, as_json: bool) -> None:
    """Merge the mailbox hooks into PROJECT/.codex/hooks.json (Codex)."""
    _set_up(c, "codex", agent, project, dry_run=dry_run, undo=undo, local=False,
            from_env=from_env, as_json=as_json, mcp=mcp)


def _no_agent_with_from_env(from_env: bool) -> None:
    """--agent-from-env names no agent: refuse an --agent given with it.

    Raises:
        click.UsageError: both given.
    """
    source = click.get_current_context().get_parameter_source("agent")
    if from_env and source is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--agent-from-env names no agent: leave out --agent")


def _set_up(c: Ctx, harness: str, agent: str | None, project: Path, *, dry_run: bool,
            undo: bool, local: bool, from_env: bool, as_json: bool, mcp: bool = False) -> None:
    from .. import integrations

    _no_agent_with_from_env(from_env)
    from_env = from_env and not undo
    name = None if undo or from_env else c.mb.registry.require(acting(agent, c.agent))
    root = None if undo else c.mb.path
    h = integrations.HARNESSES[harness]
    p = integrations.plan(h, project, name, root, undo=undo, local=local, from_env=from_env)
    servers = None
    if mcp:
        p, servers = _with_mcp(h, p, project, name, root, undo=undo)
    written = False if dry_run else integrations.apply(p)
    start = f"MAILBOX_AGENT=NAME {h.program}" if from_env else None
    shape = _shape(p, name, dry_run, undo, written)
    if servers is not None:
        shape["mcp"] = _shape(servers, name, dry_run, undo,
                              False if dry_run else integrations.apply(servers))
    emit(shape, as_json, lambda d: "\n".join(
        filter(None, [_diff(p).rstrip("\n") if dry_run else _summary(p, written, start),
                      *([_diff(servers).rstrip("\n") if dry_run
                         else _summary(servers, d["mcp"]["written"], None)]
                        if servers is not None else [])])))


def _with_mcp(h: Harness, p: Plan, project: Path, agent: str | None, root: Path | None, *,
              undo: bool) -> tuple[Plan, Plan]:
    """The hooks' plan (for Claude Code, with our MCP server approved in it), and the plan
    of the file that declares the server (``.mcp.json``, Codex's ``config.toml``)."""
    from ..integrations import CODEX, codex_mcp_plan, mcp_approved, mcp_plan

    if h is CODEX:
        return p, codex_mcp_plan(project, agent, root, undo=undo)
    return mcp_approved(p, undo=undo), mcp_plan(project, agent, root, undo=undo)


def _shape(p: Plan, agent: str | None, dry_run: bool, undo: bool, written: bool
           ) -> dict[str, Any]:
    return {"path": str(p.path), "agent": agent, "undo": undo, "dry_run": dry_run,
            "changed": p.changed, "written": written, "settings": p.settings,
            "diff": _diff(p) if dry_run else ""}


def _diff(p: Plan) -> str:
    from ..integrations import diff

    return diff(p)


def _summary(p: Plan, written: bool, start: str | None) -> str:
    """What was done; under --agent-from-env, how a session gets its identity."""
    done = f"{'wrote' if written else 'unchanged:'} {p.path}"
    return done if start is None else f"{done}\nstart each agent's session as: {start}"
