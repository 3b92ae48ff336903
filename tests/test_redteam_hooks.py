"""Hostile input against the harness hooks and surfacing: a planted hook record, a
garbled or endless event on stdin, racing hooks of one agent, argv forms of the entry
point. What a user relies on: a hook never fails or stalls the session, never speaks
without identity, and never loses an announcement of new mail."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentmailbox import Mailbox
from agentmailbox.hooks_state import HookState

Cli = Callable[..., Any]
PROMPT = orjson.dumps({"hook_event_name": "UserPromptSubmit", "prompt": "go"}).decode()
START = orjson.dumps({"hook_event_name": "SessionStart", "source": "startup"}).decode()


@pytest.fixture
def hook(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run `mailbox hook NAME` as bob (identity from $MAILBOX_AGENT) with ``stdin``."""
    monkeypatch.setenv("MAILBOX_AGENT", "bob")

    def run(name: str, stdin: str = PROMPT, *args: str) -> Any:
        return cli("hook", name, *args, stdin=stdin)

    return run


def context(result: Any) -> str:
    """The additionalContext of a hook's answer: exactly one JSON object on stdout."""
    assert 0 == result.code
    text = orjson.loads(result.out)["hookSpecificOutput"]["additionalContext"]
    assert isinstance(text, str)
    return text


def hooks_json(mb: Mailbox) -> Path:
    return mb.root.paths.agent("bob").hooks


# -- a planted hook record ----------------------------------------------------------------------


DEEP = b'{"x": ' + b"[" * 400 + b"]" * 400 + b"}"
"""Valid JSON that orjson reads (under 1024 levels) but cannot write back (over 254)."""


@pytest.mark.parametrize("planted", [
    DEEP, b'{"surfaced": {"epoch": 1, "ids": []}, "surfaced": {"epoch": 1, "ids": []}}',
    b'{"surfaced": "x", "ended": [], "stop_blocked": 7, "waiter": {}}', b"[1, 2]", b"\xff{",
], ids=["deep", "duplicate-keys", "wrong-types", "not-an-object", "not-utf-8"])
def test_a_planted_hook_record_never_costs_the_brief_or_the_prompt_line(
        planted: bytes, hook: Any, mb: Mailbox) -> None:
    """Whatever hooks.json holds, session-start still briefs and prompt still announces."""
    mb.send("alice", "bob", subject="first", body="x")
    hooks_json(mb).write_bytes(planted)
    assert "first" in context(hook("session-start", START))
    hooks_json(mb).write_bytes(planted)  # the brief's record lost: a repeated notice at worst
    mb.send("alice", "bob", subject="second", body="x")
    assert "2 new from alice" in context(hook("prompt"))
    assert (0, "", "") == astuple(hook("prompt"))


def test_a_hook_record_hard_linked_from_elsewhere_is_not_read(hook: Any, mb: Mailbox,
                                                              tmp_path: Path) -> None:
    """A hooks.json that is a second name of a file elsewhere is not taken as the record
    (it could claim any mail as surfaced); the file elsewhere is left as it was."""
    mb.agent("bob").boot()
    msg = mb.send("alice", "bob", subject="hi", body="x")
    elsewhere = tmp_path / "elsewhere.json"
    planted = orjson.dumps({"surfaced": {"epoch": mb.epoch("bob"), "ids": [msg.id]}})
    elsewhere.write_bytes(planted)
    os.link(elsewhere, hooks_json(mb))
    assert "1 new from alice" in context(hook("prompt"))
    assert planted == elsewhere.read_bytes()
    assert 1 == os.stat(hooks_json(mb)).st_nlink


def test_the_record_read_back_is_what_the_hooks_wrote(mb: Mailbox) -> None:
    """The record survives a write and a read as it was written."""
    state = HookState(mb.root, "bob")
    state.set_surfaced(3, {"b", "a"})
    assert {"a", "b"} == state.surfaced(3) and state.surfaced(4) is None


def test_a_hook_record_that_cannot_be_written_never_costs_the_brief_or_the_prompt_line(
        hook: Any, mb: Mailbox) -> None:
    """With a folder planted where hooks.json goes, the brief still comes and new mail is
    still announced (again at each prompt, with a line on stderr saying why)."""
    hooks_json(mb).mkdir()
    mb.send("alice", "bob", subject="first", body="x")
    assert "first" in context(hook("session-start", START))
    for _ in range(2):
        result = hook("prompt")
        assert "1 new from alice — mailbox next" == context(result)
        assert 1 == len(result.err.splitlines()) and "announce it again" in result.err
