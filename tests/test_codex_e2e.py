"""End to end with the real Codex CLI: what the hooks `mailbox setup codex` writes put in
front of the model.

The CLI (``@openai/codex``, version ``CODEX_VERSION``) runs headless (``codex exec``) in a
project whose ``.codex/hooks.json`` was written by ``mailbox setup codex``, against a fake
Responses API on 127.0.0.1 (tests/fake_openai.py) that records every request; the tests
then read the request the model would have received. ``CODEX_HOME`` is a temporary folder
whose ``config.toml`` names the fake as the model provider and trusts the project (Codex
reads a project's hooks only in a trusted project); ``--dangerously-bypass-hook-trust``
stands in for the review of each hook that Codex otherwise asks for once.

The CLI is looked for in ``$MAILBOX_TEST_CODEX_DIR``, else ``.cache/codex/`` in the
repository, where ``.ci/run`` installs it (``npm install --prefix DIR
@openai/codex@VERSION``). Without it the tests are skipped, never failed.
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
from fake_openai import REPLY, FakeOpenAI
from npm_cli import cli_dir, cli_or_skip

from agentmailbox import Mailbox

CODEX_VERSION = "0.171.0"
"""The version tested against (its package declares node >= 16). .ci/run installs this one."""

API_KEY_ENV = "MAILBOX_TEST_FAKE_OPENAI_KEY"
"""The variable the fake provider's key is read from (Codex's ``env_key``)."""

OFFLINE_ENV = {
    # Anything that tried to reach another host would meet a closed local port.
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}

pytestmark = pytest.mark.slow


def codex_dir() -> Path:
    """Where the CLI is installed (``npm install --prefix`` of that folder)."""
    return cli_dir("MAILBOX_TEST_CODEX_DIR", "codex")


def codex_or_skip() -> Path:
    """The ``codex`` executable of the pinned version, or skip saying what is missing."""
    return cli_or_skip(codex_dir(), "@openai/codex", "codex", CODEX_VERSION, "Codex")


@pytest.fixture
def fake_api() -> Iterator[FakeOpenAI]:
    """A fake Responses API on a free port of 127.0.0.1, stopped after the test."""
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def bin_folder() -> Path:
    """The folder of this environment's ``mailbox`` (first on the PATH Codex starts with, so
    the commands setup writes, ``mailbox hook NAME``, find it)."""
    return Path(sys.executable).parent


def codex_home(home: Path, project: Path, api: FakeOpenAI) -> Path:
    """``CODEX_HOME``: the fake as the model provider, and ``project`` trusted."""
    folder = home / ".codex"
    folder.mkdir(parents=True)
    # TOML basic strings take JSON's escapes for the characters a path may hold.
    (folder / "config.toml").write_text(f"""\
model = "gpt-fake"
model_provider = "fake"

[model_providers.fake]
name = "fake"
base_url = {orjson.dumps(api.url).decode()}
env_key = "{API_KEY_ENV}"
wire_api = "responses"

[projects.{orjson.dumps(str(project)).decode()}]
trust_level = "trusted"
""")
    return folder


def run_codex(exe: Path, project: Path, home: Path, api: FakeOpenAI, agent: str | None
              ) -> str:
    """``codex exec "what is new?"`` in ``project`` (as ``agent`` when given: the
    harness's $MAILBOX_AGENT); returns what it printed."""
    env = {"PATH": os.pathsep.join([str(bin_folder()), os.environ.get("PATH", "")]),
           "HOME": str(home), "CODEX_HOME": str(codex_home(home, project, api)),
           API_KEY_ENV: "sk-test-not-a-key", **OFFLINE_ENV}
    if agent is not None:
        env["MAILBOX_AGENT"] = agent
    done = subprocess.run([str(exe), "exec", "--skip-git-repo-check",
                           "--dangerously-bypass-hook-trust", "what is new?"],
                          cwd=project, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, check=False)
    assert 0 == done.returncode, done.stderr[-3000:]
    return done.stdout


def set_up(project: Path, *args: str) -> None:
    """``mailbox setup codex ARGS --project PROJECT``, as a user runs it."""
    done = subprocess.run([str(bin_folder() / "mailbox"), "setup", "codex", *args,
                           "--project", str(project)],
                          cwd=project, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("MAILBOX_")},
                          capture_output=True, text=True, timeout=60, check=False)
    assert 0 == done.returncode, done.stderr


def developer_texts(request: Any) -> list[str]:
    """The texts of the request's developer messages (where Codex puts hook context)."""
    return [part.get("text", "") for item in request["input"]
            if item.get("type") == "message" and item.get("role") == "developer"
            for part in item["content"]]


def _project(tmp_path: Path, *agents: str) -> tuple[Path, Path]:
    """A project that is its root's folder, where alice sent each of ``agents`` an urgent
    message, and an empty HOME: (project, home)."""
    project, home = tmp_path / "project", tmp_path / "home"
    home.mkdir()
    with Mailbox.init(project, fsync="never") as mb:
        for name in ("alice", *agents):
            mb.add_agent(name)
        for name in agents:
            mb.send("alice", name, subject=f"deploy is blocked, {name}", body="x",
                    priority="urgent")
    return project, home


def test_codex_puts_the_brief_and_the_news_in_front_of_the_model(
        tmp_path: Path, fake_api: FakeOpenAI) -> None:
    """A Codex session set up for bob starts bob's epoch; the model reads the brief and the
    prompt hook's line."""
    exe = codex_or_skip()
    project, home = _project(tmp_path, "bob")
    set_up(project, "--agent", "bob")
    # Mail that arrives between the session's start and its first prompt, delivered by the
    # prompt hook's own command just before it runs (hooks of one event run concurrently).
    hooks_file = project / ".codex" / "hooks.json"
    late = "mailbox send --from alice --to bob --subject 'tests are red' >/dev/null && "
    prompt = '"mailbox hook prompt --agent bob"'
    hooks_file.write_text(hooks_file.read_text().replace(prompt, f'"{late}{prompt[1:]}'))

    printed = run_codex(exe, project, home, fake_api, agent=None)

    assert REPLY in printed
    [request] = fake_api.response_requests()
    brief, news = developer_texts(request)[-2:]
    assert brief.startswith("# boot brief: bob (epoch 1)")
    assert "deploy is blocked, bob [urgent]" in brief
    # Codex itself runs without MAILBOX_AGENT: the command shown names the agent.
    assert "1 new from alice — mailbox next --agent bob" == news
    with Mailbox.open(project) as mb:
        assert 1 == mb.epoch("bob")


def test_codex_sessions_of_a_shared_project_act_as_their_own_agent(
        tmp_path: Path, fake_api: FakeOpenAI) -> None:
    """With --agent-from-env, a session started as MAILBOX_AGENT=coder gets coder's brief,
    and the planner's epoch does not start."""
    exe = codex_or_skip()
    project, home = _project(tmp_path, "planner", "coder")
    set_up(project, "--agent-from-env")

    run_codex(exe, project, home, fake_api, agent="coder")

    [request] = fake_api.response_requests()
    [brief] = [t for t in developer_texts(request) if t.startswith("# boot brief:")]
    assert brief.startswith("# boot brief: coder (epoch 1)")
    assert "deploy is blocked, coder [urgent]" in brief and "planner" not in brief
    with Mailbox.open(project) as mb:
        assert (1, None) == (mb.epoch("coder"), mb.epoch("planner"))
