"""``mailbox mcp``: serve the bus to an MCP client over stdio, as one agent.

The server lives in :mod:`agentmailbox.mcpserver` (the ``agentmailbox[mcp]`` extra); this
module loads it only when the command runs. A refusal to start (no ``$MAILBOX_AGENT``,
an agent the root does not know, no root, the extra missing) is one line on stderr and
the error's exit code: an MCP client shows that line to the user as the server's log.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidInput, MailboxError, NotFound
from ..names import AGENT_ENV
from ._base import Ctx, agent_option, emit, json_option, pass_ctx

if TYPE_CHECKING:
    from ..mailbox import Mailbox

EPILOG = """\b
Examples (docs/INTEGRATIONS.md, "MCP"):
  MAILBOX_AGENT=bob mailbox mcp           # what an MCP client runs
  mailbox mcp --tools --agent bob         # the tools, and what they cost in context
  claude mcp add mailbox -e MAILBOX_AGENT=bob -- mailbox mcp
"""


@click.command(epilog=EPILOG)
@click.option("--tools", "show_tools", is_flag=True,
              help="Print the tool list and its estimated cost in tokens instead of serving "
                   "(as $MAILBOX_AGENT, or --agent).")
@agent_option
@json_option
@pass_ctx
def mcp(c: Ctx, show_tools: bool, agent: str | None, as_json: bool) -> None:
    """Serve the mailbox over stdio (MCP), as the agent $MAILBOX_AGENT names.

    Identity comes from $MAILBOX_AGENT only, never from a tool's argument; the root is
    found as every command finds it. Stdout carries the protocol alone; logs go to stderr.
    """
    named = c.agent is not None or (click.get_current_context().get_parameter_source("agent")
                                    is click.core.ParameterSource.COMMANDLINE)
    try:
        mb, name = _open(c, agent if show_tools else None, named)
    except MailboxError as exc:
        click.echo(f"mailbox mcp: {exc}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
        raise SystemExit(exc.exit_code) from exc
    from .. import mcpserver

    server = mcpserver.build(mb, name, notify=not show_tools)
    try:
        if show_tools:
            _print_tools(server, as_json)
        else:
            server.run("stdio")
    finally:
        mb.close()


def _open(c: Ctx, listing_as: str | None, named: bool) -> tuple[Mailbox, str]:
    """The root and the agent, or the error that keeps the server from starting. The
    server's agent comes from the environment only (``named``: --agent was given, before
    or after the command); ``--tools`` may name one."""
    if named and listing_as is None:
        raise InvalidInput("mailbox mcp serves as $MAILBOX_AGENT only, not --agent",
                           hint="set MAILBOX_AGENT=NAME in the client's configuration")
    try:
        from .. import mcpserver
    except ImportError as exc:
        raise NotFound(f"the MCP server needs the mcp package ({exc})",
                       hint="pip install 'agentmailbox[mcp]'") from exc
    mb = c.mb
    try:
        environ = {**os.environ, **({AGENT_ENV: listing_as} if listing_as else {})}
        return mb, mcpserver.identity(environ, mb)
    except MailboxError:
        mb.close()
        raise


def _print_tools(server: Any, as_json: bool) -> None:
    import anyio

    from ..mcpserver import BUDGET, tokens, tool_list

    tools = anyio.run(tool_list, server)
    costs = {t["name"]: tokens([t]) for t in tools}
    data = {"tools": tools, "tokens": tokens(tools), "budget": BUDGET, "per_tool": costs,
            "instructions": server.instructions}
    emit(data, as_json, lambda d: "\n".join(
        [*(f"{name:<10} {cost:>5} tokens" for name, cost in d["per_tool"].items()),
         f"{'all':<10} {d['tokens']:>5} tokens (characters/4; budget {d['budget']})"]))
