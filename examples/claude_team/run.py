"""A planner and a coder sharing one project and one root, through the hooks `mailbox setup`
writes: what each hook answers at each event of a scripted pair of sessions.

No Claude Code is needed: this script plays the harness. It sets a temporary project up as
a user would (``mailbox init``, ``mailbox agent add``, ``mailbox setup claude-code
--agent-from-env``), then, for each event, runs the very command written in
``.claude/settings.json`` through ``sh -c`` in the project, with ``MAILBOX_AGENT`` naming the
session's agent and the event's JSON on stdin (the fields of Claude Code's hooks reference;
tests/hooks/ holds its samples verbatim), and prints the hook's exit code, stdout and
stderr. What the model would do in between (send, claim, mark done, hand off) is run as the
shell commands it would type.

    python examples/claude_team/run.py [--keep]

``mailbox`` must be on PATH or beside this interpreter (``pip install -e .`` puts it there).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

COMMON = {"session_id": "abc123",
          "transcript_path": "/home/user/.claude/projects/demo/abc123.jsonl"}
"""The fields every event carries (``cwd`` and ``hook_event_name`` are added per event)."""

EVENTS: dict[str, dict[str, Any]] = {
    "SessionStart": {"source": "startup", "model": "claude-sonnet-4-6"},
    "UserPromptSubmit": {"permission_mode": "default", "prompt": "what is next?"},
    "Stop": {"permission_mode": "default", "stop_hook_active": False,
             "last_assistant_message": "Done for now."},
    "PreCompact": {"trigger": "manual", "custom_instructions": ""},
    "SessionEnd": {"reason": "prompt_input_exit"},
}
"""The fields of each event (Claude Code's hooks reference), before a step changes one."""

WIDTH = 96


class Team:
    """The temporary project (also the root's folder) and the commands setup wrote."""

    def __init__(self, project: Path, mailbox: str) -> None:
        self.project = project
        self.mailbox = mailbox
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOX_")}
        self.env["PATH"] = os.pathsep.join([str(Path(mailbox).parent),
                                            self.env.get("PATH", "")])
        self.commands: dict[str, str] = {}

    def shell(self, agent: str, *args: str, quiet: bool = False) -> str:
        """Run ``mailbox ARGS`` as ``agent`` would in its session's shell; print it."""
        done = subprocess.run([self.mailbox, *args], cwd=self.project, text=True,
                              env={**self.env, "MAILBOX_AGENT": agent}, capture_output=True,
                              timeout=60, check=False)
        if not quiet:
            print(f"  {agent}$ mailbox {shlex.join(args)}   (exit {done.returncode})")
            for text in (done.stdout, done.stderr):
                if text.strip():
                    print(textwrap.indent(text.rstrip(), "      "))
        if done.returncode != 0:
            raise SystemExit(f"mailbox {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def hook(self, agent: str | None, event: str, note: str = "", **fields: Any) -> None:
        """Feed ``event`` to the command setup wrote for it, in a session of ``agent``
        (None: a session started without $MAILBOX_AGENT), and print its answer."""
        data = {**COMMON, "cwd": str(self.project), "hook_event_name": event,
                **EVENTS[event], **fields}
        env = dict(self.env) if agent is None else {**self.env, "MAILBOX_AGENT": agent}
        done = subprocess.run(["sh", "-c", self.commands[event]], cwd=self.project, env=env,
                              input=json.dumps(data), text=True, capture_output=True,
                              timeout=60, check=False)
        varied = ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())
        print(f"  hook {event}" + (f" ({varied})" if varied else "") + (f", {note}" if note
                                                                        else ""))
        print(f"    command: {self.commands[event]}")
        print(f"    exit:    {done.returncode}")
        print("    stdout:  " + _readable(done.stdout).replace("\n", "\n             ").rstrip())
        print(f"    stderr:  {done.stderr.strip() or '(empty)'}")


def _readable(stdout: str) -> str:
    """A hook's stdout: the context it adds, the stop it blocks, or nothing."""
    if not stdout.strip():
        return "(empty: nothing reaches the model)"
    answer = json.loads(stdout)
    context = answer.get("hookSpecificOutput", {}).get("additionalContext")
    if context is not None:
        return "additionalContext:\n" + textwrap.indent(context.rstrip(), "| ")
    if answer.get("decision") == "block":
        return "decision: block, reason:\n" + "\n".join(
            "| " + line for line in textwrap.wrap(answer["reason"], WIDTH - 16))
    return stdout.rstrip()


def step(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, WIDTH - len(title) - 4))


def set_up(team: Team) -> None:
    step("set-up: one project, one root, two agents, one set of hooks")
    team.shell("planner", "init", "--fsync", "never")
    team.shell("planner", "agent", "add", "planner", "--role", "planner")
    team.shell("planner", "agent", "add", "coder", "--role", "coder")
    team.shell("planner", "setup", "claude-code", "--agent-from-env", "--project",
               str(team.project))
    settings = json.loads((team.project / ".claude" / "settings.json").read_text())
    team.commands = {event: groups[0]["hooks"][0]["command"]
                     for event, groups in settings["hooks"].items()}


def scenario(team: Team) -> None:
    """The scripted sequence; each step prints what the hooks answer."""
    step("1. planner starts (MAILBOX_AGENT=planner claude) and sends a task")
    team.hook("planner", "SessionStart")
    task = team.shell("planner", "send", "--to", "coder", "--subject", "add --json to export",
                      "--body", "the export command prints text only")

    step("2. coder starts (MAILBOX_AGENT=coder claude): the brief shows the task")
    team.hook("coder", "SessionStart")

    step("3. a session started without MAILBOX_AGENT: the hooks guess no identity")
    team.hook(None, "SessionStart")

    step("4. more mail; coder's prompt hook speaks once, then is silent")
    team.shell("planner", "send", "--to", "coder", "--subject", "and document it",
               "--body", "one line in docs/CLI.md", "--priority", "high")
    team.hook("coder", "UserPromptSubmit")
    team.hook("coder", "UserPromptSubmit", "nothing new since", prompt="go on")

    step("5. coder claims the task; the stop hook blocks until done and handoff")
    team.shell("coder", "next", "--timeout", "0")
    team.hook("coder", "Stop")
    team.shell("coder", "done", task)
    team.shell("coder", "handoff", "--in-progress", "export --json written, tests pass",
               "--next", "the docs line, the second message")
    team.hook("coder", "Stop", "Claude Code's stop after a block", stop_hook_active=True)
    team.hook("coder", "Stop", "a later turn's stop: nothing is left unfinished")

    step("6. coder's session ends")
    team.hook("coder", "SessionEnd")

    step("7. a new coder session: the brief shows the handoff (epoch 2)")
    team.hook("coder", "SessionStart")

    step("8. compaction keeps the epoch: the checkpoint, then the brief again (epoch 2)")
    team.shell("coder", "next", "--timeout", "0")
    team.hook("coder", "PreCompact")
    team.hook("coder", "SessionStart", source="compact")
    team.shell("coder", "whoami")


def find_mailbox() -> str:
    """The ``mailbox`` command: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "mailbox"
    found = str(beside) if beside.exists() else shutil.which("mailbox")
    if found is None:
        raise SystemExit("no `mailbox` command: install the package (pip install -e .)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="claude-team-"))
    team = Team(folder / "project", find_mailbox())
    team.project.mkdir()
    try:
        set_up(team)
        scenario(team)
    finally:
        if args.keep:
            print(f"\nkept: {folder}")
        else:
            shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
