"""The `mailbox` entry point: a plain `mailbox hook NAME` is answered without loading click,
exactly as the full command answers it; anything else goes to the full command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox
from agentmailbox.entry import hook_call

EVENT = orjson.dumps({"hook_event_name": "UserPromptSubmit", "prompt": "go"})


@pytest.mark.parametrize(("argv", "call"), [
    (["hook", "prompt"], ("prompt", {})),
    (["hook", "prompt", "--json"], ("prompt", {})),
    (["--root", "/r", "--agent", "bob", "hook", "stop"], ("stop", {"root": "/r", "agent": "bob"})),
    (["--agent", "ann", "hook", "stop", "--agent", "bob"], ("stop", {"agent": "bob"})),
    (["hook", "session-start", "--budget", "5000"], ("session-start", {"budget": 5000})),
    (["hook", "session-start", "--budget=5000", "--root=/r"],
     ("session-start", {"budget": 5000, "root": "/r"})),
    (["hook", "wait", "--timeout", "1.5"], ("wait", {"timeout": 1.5})),
    (["--agent", "hook", "hook", "prompt"], ("prompt", {"agent": "hook"})),
])
def test_a_plain_hook_call_is_answered_directly(argv: list[str],
                                                call: tuple[str, dict[str, object]]) -> None:
    """The forms `mailbox setup` writes, and those a person types, take the short way."""
    assert call == hook_call(argv)


@pytest.mark.parametrize("argv", [
    ["hook", "prompt", "--help"], ["hook", "--help"], ["hook"], ["hook", "nope"],
    ["hook", "prompt", "extra"], ["hook", "prompt", "--bogus"], ["hook", "prompt", "--agent"],
    ["hook", "prompt", "--timeout", "5"], ["hook", "wait", "--timeout", "soon"],
    ["hook", "session-start", "--budget", "5.5"], ["--budget", "9000", "hook", "session-start"],
    ["-h"], ["inbox"], ["send", "--to", "bob", "hook"], [],
])
def test_anything_else_goes_to_the_full_command(argv: list[str]) -> None:
    """Help, unknown options, bad values and other commands get the full parser (and its
    usage errors)."""
    assert hook_call(argv) is None


def _mailbox(root: Path, *argv: str, via: str) -> subprocess.CompletedProcess[bytes]:
    """Run the command through the entry point (``via="entry"``) or the full command line
    (``via="cli"``), printing the modules loaded on stderr's last line."""
    code = (f"import sys; from agentmailbox.{via} import main; code = main({list(argv)!r}); "
            "sys.stdout.flush(); sys.stderr.write('\\n' + ' '.join(sys.modules)); "
            "sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code], input=EVENT, capture_output=True,
                          env={**python_env(), "MAILBOX_ROOT": str(root),
                               "MAILBOX_AGENT": "bob"}, timeout=60)


def test_the_prompt_hook_answers_as_the_full_command_without_click(mb: Mailbox) -> None:
    """Through the entry point the prompt hook prints the same line, exit 0, and loads no
    click; then, with nothing new, both ways are silent."""
    mb.agent("bob").boot()
    mb.send("alice", "bob", subject="plan", body="x")
    short = _mailbox(mb.path, "hook", "prompt", via="entry")
    assert not {"click"} & set(short.stderr.split(b"\n")[-1].decode().split())
    mb.send("alice", "bob", subject="more", body="y")
    full = _mailbox(mb.path, "hook", "prompt", via="cli")
    assert (0, 0) == (short.returncode, full.returncode)
    assert b"1 new from alice" in short.stdout and short.stdout == full.stdout
    for via in ("entry", "cli"):
        quiet = _mailbox(mb.path, "hook", "prompt", via=via)
        assert (0, b"") == (quiet.returncode, quiet.stdout)


def test_a_hook_without_identity_says_so_the_same_way(mb: Mailbox) -> None:
    """No agent: nothing on stdout, the same one line on stderr, exit 0, both ways."""
    env = {**python_env(), "MAILBOX_ROOT": str(mb.path)}
    got = [subprocess.run([sys.executable, "-c", f"import sys; from agentmailbox.{via} import "
                           "main; sys.exit(main(['hook', 'prompt']))"], input=EVENT,
                          capture_output=True, env=env, timeout=60) for via in ("entry", "cli")]
    assert got[0].stderr.startswith(b"mailbox hook prompt: no agent")
    assert [(0, b"", got[0].stderr)] * 2 == [(g.returncode, g.stdout, g.stderr) for g in got]


def test_python_dash_m_and_help_go_through_the_entry_point(mb: Mailbox) -> None:
    """`python -m agentmailbox hook prompt --help` is the full command's help, exit 0."""
    done = subprocess.run([sys.executable, "-m", "agentmailbox", "hook", "prompt", "--help"],
                          capture_output=True, env=python_env(), timeout=60)
    assert 0 == done.returncode and b"Usage: " in done.stdout
