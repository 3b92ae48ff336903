"""`mailbox setup claude-code --mcp`: the MCP server's entry in .mcp.json, approved in the
settings file, merged with what the user has and taken out again by --undo."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentmailbox import Mailbox

Cli = Any  # the ``cli`` fixture of conftest.py


def read(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def setup(cli: Cli, mb: Mailbox, *args: str) -> Any:
    """`mailbox setup claude-code ARGS` in the folder that holds the root."""
    return cli("setup", "claude-code", "--project", str(mb.path.parent), *args)


def test_setup_mcp_writes_the_server_and_approves_it(cli: Cli, mb: Mailbox) -> None:
    """A project set up with --mcp runs `mailbox mcp` as the agent, without a prompt."""
    project = mb.path.parent
    assert 0 == setup(cli, mb, "--agent", "bob", "--mcp").code
    assert {"command": "mailbox", "args": ["mcp"], "env": {"MAILBOX_AGENT": "bob"}} == read(
        project / ".mcp.json")["mcpServers"]["mailbox"]
    assert ["mailbox"] == read(project / ".claude" / "settings.json")["enabledMcpjsonServers"]


def test_setup_mcp_keeps_the_users_servers_and_twice_changes_nothing(cli: Cli,
                                                                     mb: Mailbox) -> None:
    """The user's own servers and approvals stay; a second run writes nothing."""
    project = mb.path.parent
    (project / ".mcp.json").write_bytes(orjson.dumps({"mcpServers": {"db": {"command": "db"}}}))
    (project / ".claude").mkdir()
    (project / ".claude" / "settings.json").write_bytes(
        orjson.dumps({"enabledMcpjsonServers": ["db"]}))
    setup(cli, mb, "--agent", "bob", "--mcp")
    before = [(project / f).read_bytes() for f in (".mcp.json", ".claude/settings.json")]
    again = setup(cli, mb, "--agent", "bob", "--mcp", "--json").json()
    assert (False, False) == (again["written"], again["mcp"]["written"])
    assert before == [(project / f).read_bytes() for f in (".mcp.json", ".claude/settings.json")]
    assert ["db", "mailbox"] == sorted(read(project / ".mcp.json")["mcpServers"])
    assert ["db", "mailbox"] == read(project / ".claude/settings.json")["enabledMcpjsonServers"]


def test_undo_mcp_takes_out_exactly_ours(cli: Cli, mb: Mailbox) -> None:
    """--undo --mcp leaves the user's servers and approvals as they were."""
    project = mb.path.parent
    (project / ".mcp.json").write_bytes(orjson.dumps({"mcpServers": {"db": {"command": "db"}}}))
    setup(cli, mb, "--agent", "bob", "--mcp")
    assert 0 == setup(cli, mb, "--undo", "--mcp").code
    assert {"mcpServers": {"db": {"command": "db"}}} == read(project / ".mcp.json")
    assert "enabledMcpjsonServers" not in read(project / ".claude" / "settings.json")


def test_setup_mcp_for_several_agents_names_the_sessions_own(cli: Cli, mb: Mailbox) -> None:
    """Under --agent-from-env the entry takes ${MAILBOX_AGENT}, which Claude Code expands
    from the environment the session started with."""
    setup(cli, mb, "--agent-from-env", "--mcp")
    entry = read(mb.path.parent / ".mcp.json")["mcpServers"]["mailbox"]
    assert {"MAILBOX_AGENT": "${MAILBOX_AGENT}"} == entry["env"]


def test_setup_mcp_names_the_root_when_the_project_would_not_find_it(
        cli: Cli, mb: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A project outside the root's folder gets MAILBOX_ROOT in the server's env."""
    project = tmp_path_factory.mktemp("elsewhere")
    cli("setup", "claude-code", "--project", str(project), "--agent", "bob", "--mcp")
    env = read(project / ".mcp.json")["mcpServers"]["mailbox"]["env"]
    assert str(mb.path) == env["MAILBOX_ROOT"]


# -- Codex: .codex/config.toml -----------------------------------------------------------------


def codex(cli: Cli, mb: Mailbox, *args: str) -> Any:
    """`mailbox setup codex ARGS` in the folder that holds the root."""
    return cli("setup", "codex", "--project", str(mb.path.parent), *args)


def test_setup_codex_mcp_appends_the_table_and_keeps_every_byte_of_the_users(
        cli: Cli, mb: Mailbox) -> None:
    """Codex's config.toml gains [mcp_servers.mailbox]; the user's comments and layout stay,
    and --undo --mcp gives the file back as it was."""
    config = mb.path.parent / ".codex" / "config.toml"
    config.parent.mkdir()
    mine = (b'# my settings\nmodel = "o3"   # keep this comment\n\n'
            b'[mcp_servers.db]\ncommand = "db"\n')
    config.write_bytes(mine)
    assert 0 == codex(cli, mb, "--agent", "bob", "--mcp").code
    table = tomllib.loads(config.read_text())["mcp_servers"]
    assert {"command": "mailbox", "args": ["mcp"], "env": {"MAILBOX_AGENT": "bob"}} == table[
        "mailbox"]
    assert config.read_bytes().startswith(mine) and "db" in table
    again = codex(cli, mb, "--agent", "bob", "--mcp", "--json").json()
    assert False is again["mcp"]["written"]
    codex(cli, mb, "--undo", "--mcp")
    assert mine == config.read_bytes()


def test_setup_codex_mcp_for_several_agents_forwards_the_sessions_own(cli: Cli,
                                                                     mb: Mailbox) -> None:
    """Under --agent-from-env Codex forwards its own $MAILBOX_AGENT to the server."""
    codex(cli, mb, "--agent-from-env", "--mcp")
    table = tomllib.loads((mb.path.parent / ".codex" / "config.toml").read_text())
    assert ["MAILBOX_AGENT"] == table["mcp_servers"]["mailbox"]["env_vars"]
    assert "env" not in table["mcp_servers"]["mailbox"]


def test_setup_codex_mcp_refuses_a_mailbox_server_of_the_users(cli: Cli, mb: Mailbox) -> None:
    """A [mcp_servers.mailbox] the user wrote is theirs: refused, the file untouched."""
    config = mb.path.parent / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_bytes(b'[mcp_servers.mailbox]\ncommand = "mine"\n')
    assert 6 == codex(cli, mb, "--agent", "bob", "--mcp").code
    assert b'[mcp_servers.mailbox]\ncommand = "mine"\n' == config.read_bytes()
