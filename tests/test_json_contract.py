"""One JSON contract: every command run with --json prints what docs/CLI.md documents
(agentmailbox/cli/shapes.py): one document, or one per line for the streaming commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson
import pytest

from agentmailbox import Mailbox
from agentmailbox.cli import EXIT_EMPTY, EXIT_OK
from agentmailbox.cli.shapes import SHAPES, problems

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py
World = dict[str, str]

RUNS: dict[str, Callable[[World], list[str]]] = {
    "init": lambda w: ["init", w["elsewhere"]],
    "agent add": lambda w: ["agent", "add", "carol", "--role", "tester"],
    "agent show": lambda w: ["agent", "show", "bob"],
    "agent edit": lambda w: ["agent", "edit", "bob", "--description", "codes"],
    "agents": lambda w: ["agents"],
    "whoami": lambda w: ["whoami", "--agent", "bob"],
    "send": lambda w: ["send", "--from", "alice", "--to", "bob", "--body", "x"],
    "inbox": lambda w: ["inbox", "bob", "--all"],
    "read": lambda w: ["read", "bob"],
    "peek": lambda w: ["peek", "bob"],
    "next": lambda w: ["next", "bob", "--timeout", "0"],
    "done": lambda w: ["done", "bob", w["claimed"]],
    "release": lambda w: ["release", "bob", w["claimed"]],
    "reply": lambda w: ["reply", w["claimed"], "--agent", "bob", "--body", "ok", "--done"],
    "status": lambda w: ["status", w["claimed"]],
    "ws put": lambda w: ["ws", "put", "plan.md", "--file", w["file"]],
    "ws get": lambda w: ["ws", "get", "plan.md"],
    "ws ls": lambda w: ["ws", "ls"],
    "ws lock": lambda w: ["ws", "lock", "plan.md", "--", "true"],
    "doctor": lambda w: ["doctor"],
    "watch": lambda w: ["watch", "bob", "--once"],
    "heartbeat": lambda w: ["heartbeat", "bob", "--capacity", "0.5"],
    "tail": lambda w: ["tail", "-n", "5"],
    "supervise": lambda w: ["supervise", "--once"],
    "dead ls": lambda w: ["dead", "ls"],
    "dead show": lambda w: ["dead", "show", w["dead"]],
    "dead retry": lambda w: ["dead", "retry", w["dead"]],
    "dead purge": lambda w: ["dead", "purge", "--yes"],
    "handoff": lambda w: ["handoff", "bob", "--show"],
    "state set": lambda w: ["state", "bob", "set", "step", "3", "--json-value"],
    "state get": lambda w: ["state", "bob", "get"],
    "state unset": lambda w: ["state", "bob", "unset", "step"],
    "remember": lambda w: ["remember", "bob", "chose plan b", "--tag", "plan"],
    "memory": lambda w: ["memory", "bob"],
    "boot": lambda w: ["boot", "bob"],
    "hook session-start": lambda w: ["hook", "session-start", "--agent", "bob"],
    "hook prompt": lambda w: ["hook", "prompt", "--agent", "bob"],
    "hook stop": lambda w: ["hook", "stop", "--agent", "bob"],
    "hook pre-compact": lambda w: ["hook", "pre-compact", "--agent", "bob"],
    "hook session-end": lambda w: ["hook", "session-end", "--agent", "bob"],
    "hook wait": lambda w: ["hook", "wait", "--agent", "alice", "--timeout", "0"],
    "mcp": lambda w: ["mcp", "--tools", "--agent", "bob"],
    "setup claude-code": lambda w: ["setup", "claude-code", "--agent", "bob", "--project",
                                    str(Path(w["file"]).parent), "--dry-run"],
    "setup codex": lambda w: ["setup", "codex", "--agent", "bob", "--project",
                              str(Path(w["file"]).parent)],
    "bridge status": lambda w: ["bridge", "status"],
    "thread done": lambda w: ["thread", "done", w["claimed"], "--as", "bob"],
    "thread show": lambda w: ["thread", "show", w["claimed"]],
}
"""One run of each command, against the world :func:`world` builds."""


def leaf_commands() -> list[str]:
    """Every command below ``mailbox`` that runs (not a group), as "ws lock"."""
    from agentmailbox.cli import cli as top

    def walk(group: click.Group, ctx: click.Context, path: str) -> list[str]:
        found = []
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            assert sub is not None, name
            where = f"{path} {name}".strip()
            found += (walk(sub, click.Context(sub, parent=ctx), where)
                      if isinstance(sub, click.Group) else [where])
        return found

    return walk(top, click.Context(top), "")


def test_every_command_has_a_documented_shape_and_a_run() -> None:
    """A new command cannot ship without its --json shape in docs/CLI.md and a check here."""
    assert (sorted(leaf_commands()), sorted(leaf_commands())) == (sorted(SHAPES), sorted(RUNS))


@pytest.fixture
def world(mb: Mailbox, tmp_path: Path) -> World:
    """A claimed and an unread message for bob, a workspace file, a handoff, state, and a
    dead letter (a second copy of a message, quarantined as a duplicate delivery)."""
    from agentmailbox.handoff import Handoff

    box = mb.inbox("bob")
    claimed = mb.send("alice", "bob", subject="plan", body="first")
    twice = mb.send("alice", "bob", subject="later", body="second")
    assert None not in (box.claim(claimed.id), box.claim(twice.id))
    (box.new / f"{twice.id}.json").write_bytes((box.cur / f"{twice.id}.json").read_bytes())
    box.release(twice.id)
    mb.workspace.put("plan.md", b"\x00\xffplan")
    mb.agent("bob").write_handoff(Handoff(next=("review",)))
    mb.agent("bob").state.set("step", 2)
    (tmp_path / "plan.md").write_bytes(b"plan v2")
    return {"claimed": claimed.id, "dead": mb.dead.list()[0].id,
            "file": str(tmp_path / "plan.md"), "elsewhere": str(tmp_path / "elsewhere")}


@pytest.mark.parametrize("command", sorted(RUNS))
def test_json_output_has_the_documented_shape(command: str, cli: Cli, world: World) -> None:
    """Each command's --json output is one document (or JSON lines for a stream) of the
    shape docs/CLI.md gives."""
    args = RUNS[command](world)
    at = args.index("--") if "--" in args else len(args)
    result = cli(*args[:at], "--json", *args[at:])
    assert result.code in (EXIT_OK, EXIT_EMPTY), result.err
    lines = result.out.splitlines()
    shape = SHAPES[command]
    assert shape.stream or 1 == len(lines), result.out
    for line in lines:
        assert [] == problems(orjson.loads(line), shape.schema)


def test_the_checker_finds_a_missing_key_and_a_wrong_type() -> None:
    """The shape check is not vacuous: it reports what does not fit."""
    schema = SHAPES["send"].schema
    assert ["$: no key 'thread'", "$.to: str where array was expected"] == problems(
        {"id": "x", "to": "bob", "offline": []}, schema)
