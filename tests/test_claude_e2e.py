"""End to end with the real Claude Code CLI: what the hooks put in front of the model.

The CLI (``@anthropic-ai/claude-code``, version ``CLAUDE_CODE_VERSION``) runs headless
(``claude -p``) in a project whose ``.claude/settings.json`` runs the ``mailbox hook``
commands as bob (as docs/INTEGRATIONS.md sets them up), against a fake Messages API on
127.0.0.1 (tests/fake_anthropic.py) that records every request. The tests then read the
requests the model would have received.

The CLI is looked for in ``$MAILBOX_TEST_CLAUDE_DIR``, else ``.cache/claude-code/`` in the
repository, where ``.ci/run`` installs it (``npm install --prefix DIR
@anthropic-ai/claude-code@VERSION``). Without it the test is skipped, never failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fake_anthropic import FakeAnthropic
from npm_cli import cli_dir, cli_or_skip

from agentmailbox import Mailbox

CLAUDE_CODE_VERSION = "2.1.197"
"""The version tested against: the newest whose package declares node >= 18 (later ones
declare >= 22; the machines this runs on have node 20). .ci/run installs this one."""

OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, error reports, updates
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    # Anything that still tried to reach another host would meet a closed local port.
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}

pytestmark = pytest.mark.slow


def claude_dir() -> Path:
    """Where the CLI is installed (``npm install --prefix`` of that folder)."""
    return cli_dir("MAILBOX_TEST_CLAUDE_DIR", "claude-code")


def claude_or_skip() -> Path:
    """The ``claude`` executable of the pinned version, or skip saying what is missing."""
    return cli_or_skip(claude_dir(), "@anthropic-ai/claude-code", "claude", CLAUDE_CODE_VERSION,
                       "Claude Code")


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropic]:
    """A fake Messages API on a free port of 127.0.0.1, stopped after the test."""
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


def mailbox_command() -> str:
    """The venv's ``mailbox``, by absolute path (the CLI runs hooks through a shell)."""
    return str(Path(sys.executable).parent / "mailbox")


def documented_hooks() -> dict[str, Any]:
    """The five hooks for bob, as docs/INTEGRATIONS.md sets them up by hand."""
    mailbox = mailbox_command()

    def run(hook: str) -> list[dict[str, Any]]:
        return [{"type": "command", "command": f"MAILBOX_AGENT=bob {mailbox} hook {hook}"}]

    return {"SessionStart": [{"matcher": "startup|resume|clear|compact",
                              "hooks": run("session-start")}],
            "UserPromptSubmit": [{"hooks": run("prompt")}], "Stop": [{"hooks": run("stop")}],
            "PreCompact": [{"hooks": run("pre-compact")}],
            "SessionEnd": [{"hooks": run("session-end")}]}


def write_settings(project: Path, hooks: dict[str, Any]) -> None:
    """The project's .claude/settings.json holding ``hooks``."""
    (project / ".claude").mkdir(exist_ok=True)
    (project / ".claude" / "settings.json").write_bytes(orjson.dumps({"hooks": hooks}))


def run_claude(exe: Path, project: Path, home: Path, api: FakeAnthropic, *options: str,
               extra_env: dict[str, str] | None = None) -> Any:
    """``claude -p "what is new?" [OPTIONS]`` headless in ``project``; its JSON result."""
    # `mailbox` on the PATH, as setup's commands (hooks, .mcp.json) expect it.
    path = os.pathsep.join([str(Path(mailbox_command()).parent), os.environ.get("PATH", "")])
    env = {"PATH": path, "HOME": str(home), **OFFLINE_ENV,
           "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "sk-ant-test-not-a-key",
           **(extra_env or {})}
    # dontAsk: refuse any tool not allowed in advance instead of asking (and, unlike
    # bypassPermissions, it is allowed to root).
    done = subprocess.run([str(exe), "-p", "what is new?", "--output-format", "json",
                           "--permission-mode", "dontAsk", *options],
                          cwd=project, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    assert 0 == done.returncode, done.stderr
    return orjson.loads(done.stdout)


def text_of(request: Any) -> str:
    """Every text the request's messages carry, in order, one per line."""
    texts = []
    for message in request["messages"]:
        content = message["content"]
        parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content]
        texts.extend(f"{message['role']}: {part}" for part in parts)
    return "\n".join(texts)


def _project(tmp_path: Path, *, booted: bool) -> tuple[Path, Path]:
    """A project with a root where alice sent bob an urgent message (bob booted once before,
    if ``booted``), and an empty HOME for the CLI: (project, home)."""
    project, home = tmp_path / "project", tmp_path / "home"
    home.mkdir()
    with Mailbox.init(project, fsync="never") as mb:
        mb.add_agent("alice")
        mb.add_agent("bob")
        if booted:
            mb.agent("bob").boot()
        mb.send("alice", "bob", subject="deploy is blocked", body="x", priority="urgent")
    return project, home


def test_hooks_put_the_brief_and_the_news_in_front_of_the_model(
        tmp_path: Path, fake_api: FakeAnthropic) -> None:
    """A Claude Code session starts bob's epoch; its model reads the brief and the prompt line."""
    exe = claude_or_skip()
    project, home = _project(tmp_path, booted=True)
    # Mail that arrives between the session's start and its first prompt: delivered by the
    # same command, just before the prompt hook runs (hooks of one event run in parallel).
    late = f"{mailbox_command()} send --from alice --to bob --subject 'tests are red' >/dev/null"
    prompt = f"{late} && MAILBOX_AGENT=bob {mailbox_command()} hook prompt"
    write_settings(project, {**documented_hooks(),
                             "UserPromptSubmit": [{"hooks": [{"type": "command",
                                                              "command": prompt}]}]})

    result = run_claude(exe, project, home, fake_api)

    assert "success" == result["subtype"]
    [request] = fake_api.message_requests()
    seen = text_of(request)
    assert "SessionStart hook additional context: # boot brief: bob (epoch 2)" in seen
    assert "deploy is blocked [urgent]" in seen
    assert "UserPromptSubmit hook additional context: 1 new from alice — mailbox next" in seen
    with Mailbox.open(project) as mb:
        assert 2 == mb.epoch("bob")


def test_the_next_session_hears_that_the_last_ended_without_a_handoff(
        tmp_path: Path, fake_api: FakeAnthropic) -> None:
    """A session without a handoff is named in the next brief; the prompt hook repeats nothing."""
    exe = claude_or_skip()
    project, home = _project(tmp_path, booted=False)
    write_settings(project, documented_hooks())

    run_claude(exe, project, home, fake_api)
    run_claude(exe, project, home, fake_api)

    first, second = (text_of(r) for r in fake_api.message_requests())
    assert "# boot brief: bob (epoch 1)" in first
    assert "UserPromptSubmit hook additional context" not in first
    assert "# boot brief: bob (epoch 2)" in second
    assert "the last session ended without a handoff" in second


# -- the MCP server ----------------------------------------------------------------------------


def setup(project: Path, *args: str) -> None:
    """`mailbox setup claude-code ARGS --project PROJECT`, as a user runs it there."""
    subprocess.run([mailbox_command(), "setup", "claude-code", "--project", str(project),
                    *args], cwd=project, check=True, capture_output=True, timeout=60)


def test_a_tool_call_through_the_mcp_server_reaches_the_other_agents_model(
        tmp_path: Path, fake_api: FakeAnthropic) -> None:
    """alice's model calls mcp__mailbox__send through the server `setup --mcp` configured;
    bob's next session is shown the message by his hooks. Both projects sit below one root,
    found from each project as usual."""
    exe = claude_or_skip()
    work, home = tmp_path / "work", tmp_path / "home"
    alice, bob = work / "alice", work / "bob"
    for folder in (home, alice, bob):
        folder.mkdir(parents=True)
    with Mailbox.init(work, fsync="never") as mb:
        mb.add_agent("alice")
        mb.add_agent("bob")
    setup(alice, "--agent", "alice", "--mcp")
    setup(bob, "--agent", "bob")
    fake_api.tool_calls.append(("mcp__mailbox__send", {"to": ["bob"], "subject": "tests are red",
                                                       "body": "see CI"}))

    # In -p mode Claude Code connects MCP servers in the background by default: a server
    # slower to start than the first request (mcp's import takes seconds on a loaded
    # machine) is missing from it. MCP_CONNECTION_NONBLOCKING=0 makes the session wait.
    run_claude(exe, alice, home, fake_api, "--allowedTools", "mcp__mailbox__send",
               extra_env={"MCP_CONNECTION_NONBLOCKING": "0"})
    run_claude(exe, bob, home, fake_api)

    first, answered, stopped, bobs = fake_api.message_requests()
    assert "mcp__mailbox__send" in {t["name"] for t in first["tools"]}
    result = answered["messages"][-1]["content"][0]
    assert "tool_result" == result["type"] and '"duplicate":false' in str(result["content"])
    # alice's stop hook saw the send as work, and held the session once for a handoff.
    assert "did work and wrote no handoff" in text_of(stopped)
    assert "tests are red" in text_of(bobs) and "from alice" in text_of(bobs)
