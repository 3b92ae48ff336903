"""The ``mailbox`` command's contract: arguments, output, ``--json`` and exit codes."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson
import pytest

from agentmailbox import Mailbox, State
from agentmailbox.cli import (
    EXIT_COMMAND_FAILED,
    EXIT_CONFLICT,
    EXIT_EMPTY,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TOO_LARGE,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
)

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py
PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def python_env() -> dict[str, str]:
    """Environment for a child process that imports agentmailbox from this checkout."""
    return {**os.environ, "PYTHONPATH": PACKAGE_PARENT + os.pathsep + os.environ.get(
        "PYTHONPATH", "")}


def send(cli: Cli, *extra: str, body: str = "hello") -> str:
    """Send alice -> bob through the command; returns the printed id."""
    result = cli("send", "--from", "alice", "--to", "bob", "--subject", "plan", "--body", body,
                 *extra)
    assert EXIT_OK == result.code, result.err
    return result.out.strip()


# -- the command itself --------------------------------------------------------------------------


def test_help_runs_as_a_python_module() -> None:
    """`python -m agentmailbox --help` works and shows copy-pasteable examples."""
    done = subprocess.run([sys.executable, "-m", "agentmailbox", "--help"], env=python_env(),
                          capture_output=True, text=True, timeout=60)
    assert EXIT_OK == done.returncode
    assert "mailbox send --from alice --to bob" in done.stdout


def test_unknown_option_is_a_usage_error(cli: Cli) -> None:
    """A wrong command line exits 2, distinct from every mailbox error."""
    assert EXIT_USAGE == cli("send", "--no-such-option").code


def test_missing_root_exits_4_with_a_hint(cli: Cli, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a root the command says so and how to create one."""
    monkeypatch.setenv("MAILBOX_ROOT", str(tmp_path / "nowhere"))
    result = cli("agents")
    assert EXIT_NOT_FOUND == result.code
    assert "mailbox: no mailbox root at" in result.err
    assert "hint: create one: mailbox init" in result.err


# -- init and agents ------------------------------------------------------------------------------


def test_init_creates_a_root_that_later_commands_find(cli: Cli, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`mailbox init PATH` creates PATH/.mailbox; `--root PATH` then opens it."""
    project = tmp_path / "project"
    result = cli("init", str(project), "--json")
    assert {"root": str(project / ".mailbox"), "created": True} == result.json()
    monkeypatch.delenv("MAILBOX_ROOT")
    assert EXIT_OK == cli("--root", str(project), "agent", "add", "carol").code
    assert ["carol"] == [a["name"] for a in cli("--root", str(project), "agents", "--json").json()]


def test_init_over_an_existing_root_is_a_conflict(cli: Cli, mb: Mailbox) -> None:
    """A second init of the same place exits 6, changes nothing, and names --exist-ok."""
    result = cli("init", str(mb.path.parent))
    assert EXIT_CONFLICT == result.code and "--exist-ok" in result.err


def test_init_exist_ok_over_an_existing_root_succeeds(cli: Cli, mb: Mailbox) -> None:
    """init --exist-ok of an existing root exits 0 and leaves its agents in place."""
    assert {"root": str(mb.path), "created": False} == cli(
        "init", str(mb.path.parent), "--exist-ok", "--json").json()
    assert ["alice", "bob"] == mb.registry.list_names()


def test_agent_add_registers_with_role_and_agents_lists_counts(cli: Cli, mb: Mailbox) -> None:
    """agent add stores the role; agents shows unread and claimed counts."""
    assert "added carol" == cli("agent", "add", "carol", "--role", "tester").out.strip()
    send(cli)
    rows = {r["name"]: r for r in cli("agents", "--json").json()}
    assert ("tester", 0) == (rows["carol"]["role"], rows["carol"]["unread"])
    assert (1, 0) == (rows["bob"]["unread"], rows["bob"]["claimed"])


def test_agent_show_prints_the_identity(cli: Cli) -> None:
    """agent show --json is the agent.json record."""
    assert ("bob", "coder") == tuple(cli("agent", "show", "bob", "--json").json()[k]
                                     for k in ("name", "role"))


# -- send -----------------------------------------------------------------------------------------


def test_send_prints_the_id_of_the_stored_message(cli: Cli, mb: Mailbox) -> None:
    """The printed id names the message in the recipient's inbox, body as given."""
    msg_id = send(cli, body="step 1\nstep 2")
    msg = mb.inbox("bob").get(msg_id)
    assert ("alice", ("bob",), "plan", "step 1\nstep 2") == (msg.sender, msg.to, msg.subject,
                                                             msg.body)


def test_send_reads_the_body_from_a_file(cli: Cli, mb: Mailbox, tmp_path: Path) -> None:
    """--body-file sends the file's text."""
    source = tmp_path / "plan.md"
    source.write_text("# plan\n")
    result = cli("send", "--from", "alice", "--to", "bob", "--body-file", str(source))
    assert "# plan\n" == mb.inbox("bob").get(result.out.strip()).body


def test_send_reads_the_body_from_stdin_when_asked_with_a_dash(cli: Cli, mb: Mailbox) -> None:
    """--body - reads the body from stdin."""
    result = cli("send", "--from", "alice", "--to", "bob", "--body", "-", stdin="from a pipe\n")
    assert "from a pipe\n" == mb.inbox("bob").get(result.out.strip()).body


def test_send_without_a_body_sends_an_empty_one_and_leaves_stdin_unread(cli: Cli,
                                                                        mb: Mailbox) -> None:
    """Without --body or --body-file the body is empty: an open pipe is never waited on."""
    result = cli("send", "--from", "alice", "--to", "bob", stdin="not for the body\n")
    assert "" == mb.inbox("bob").get(result.out.strip()).body


def test_send_json_body_stores_a_structured_value(cli: Cli, mb: Mailbox) -> None:
    """--json-body parses the body, so readers get an object, not a string."""
    msg_id = send(cli, "--json-body", body='{"steps": [1, 2]}')
    assert {"steps": [1, 2]} == mb.inbox("bob").get(msg_id).body


def test_send_json_body_that_is_not_json_exits_5(cli: Cli, mb: Mailbox) -> None:
    """An unparsable --json-body is refused before anything is stored."""
    result = cli("send", "--from", "alice", "--to", "bob", "--json-body", "--body", "{nope")
    assert EXIT_INVALID == result.code
    assert "mailbox: --json-body: the body is not valid JSON" in result.err
    assert 0 == mb.inbox("bob").count()


def test_send_json_prints_id_recipients_and_thread(cli: Cli) -> None:
    """send --json gives the id, the recipients, the thread (a new one: the id) and the
    recipients found offline (none here)."""
    out = cli("send", "--from", "alice", "--to", "bob", "--body", "x", "--json").json()
    assert {"id": out["id"], "to": ["bob"], "thread": out["id"], "offline": []} == out


def test_send_with_the_same_id_key_twice_stores_one_message(cli: Cli, mb: Mailbox) -> None:
    """--id KEY makes a retried send print the same id and store nothing new."""
    first = send(cli, "--id", "job-7")
    second = send(cli, "--id", "job-7")
    assert first == second
    assert 1 == mb.inbox("bob").count()


def test_send_receipt_brings_read_and_done_receipts(cli: Cli, mb: Mailbox) -> None:
    """--receipt: the sender gets a receipt message when read and another when done."""
    msg_id = send(cli, "--receipt")
    cli("read", "bob")
    cli("done", "bob", msg_id)
    receipts = mb.inbox("alice").list()
    assert [("receipt", {"of": msg_id, "state": state, "by": "bob", "epoch": None})
            for state in ("read", "done")] == [(r.kind, r.body) for r in receipts]


# -- inbox and read -------------------------------------------------------------------------------


def test_inbox_lists_unread_oldest_first_and_changes_nothing(cli: Cli, mb: Mailbox) -> None:
    """inbox prints one line per unread message, oldest first, and moves no file."""
    ids = [send(cli, body=str(i)) for i in range(3)]
    lines = cli("inbox", "bob").out.splitlines()
    assert ids == [line.split()[0] for line in lines]
    assert 3 == mb.inbox("bob").count()


def test_inbox_all_includes_claimed_mail_with_its_state(cli: Cli, mb: Mailbox) -> None:
    """inbox --all --json lists unread and claimed mail, each with its state."""
    first, second = send(cli), send(cli)
    mb.inbox("bob").claim(first)
    rows = cli("inbox", "bob", "--all", "--json").json()
    assert [(second, "new"), (first, "cur")] == [(r["id"], r["state"]) for r in rows]


def test_read_claims_the_oldest_and_prints_it(cli: Cli, mb: Mailbox) -> None:
    """read prints the oldest unread message and leaves it claimed."""
    first, second = send(cli, body="first body"), send(cli)
    out = cli("read", "bob").out
    assert f"id:       {first}" in out and "first body" in out
    assert (State.CLAIMED, State.NEW) == (mb.inbox("bob").state_of(first),
                                          mb.inbox("bob").state_of(second))


def test_read_json_prints_the_message_object(cli: Cli) -> None:
    """read --json prints the message as stored (the on-disk fields)."""
    msg_id = send(cli, "--priority", "high")
    out = cli("read", "bob", "--json").json()
    assert (msg_id, "alice", ["bob"], "high", "hello") == (
        out["id"], out["from"], out["to"], out["priority"], out["body"])


def test_read_all_claims_every_unread_message(cli: Cli, mb: Mailbox) -> None:
    """read --all --json claims and prints every unread message, oldest first."""
    ids = [send(cli) for _ in range(3)]
    assert ids == [m["id"] for m in cli("read", "bob", "--all", "--json").json()]
    assert 3 == mb.inbox("bob").count(State.CLAIMED)


def test_read_id_claims_that_message(cli: Cli, mb: Mailbox) -> None:
    """read --id ID claims that message, not the oldest."""
    first, second = send(cli), send(cli)
    assert second == cli("read", "bob", "--id", second, "--json").json()["id"]
    assert State.NEW == mb.inbox("bob").state_of(first)


def test_read_peek_shows_without_claiming(cli: Cli, mb: Mailbox) -> None:
    """read --peek prints the oldest unread message and leaves it unread."""
    msg_id = send(cli)
    assert msg_id == cli("read", "bob", "--peek", "--json").json()["id"]
    assert State.NEW == mb.inbox("bob").state_of(msg_id)


def test_read_of_an_empty_inbox_exits_3(cli: Cli) -> None:
    """No unread mail is exit 3 (not an error), with a note on stderr."""
    result = cli("read", "bob")
    assert (EXIT_EMPTY, "") == (result.code, result.out)
    assert "no unread mail for bob" in result.err


def test_read_json_of_an_empty_inbox_prints_null_and_exits_3(cli: Cli) -> None:
    """read --json of an empty inbox still prints parseable JSON (null)."""
    result = cli("read", "bob", "--json")
    assert (EXIT_EMPTY, None) == (result.code, result.json())


# -- done, release, status ------------------------------------------------------------------------


def test_done_marks_a_claimed_message_done_once(cli: Cli, mb: Mailbox) -> None:
    """done moves a claimed message to done; a second done says it already was."""
    msg_id = send(cli)
    cli("read", "bob")
    assert [{"id": msg_id, "done": True, "already": False}] == cli(
        "done", "bob", msg_id, "--json").json()
    assert f"{msg_id} was already done" == cli("done", "bob", msg_id).out.strip()
    assert State.DONE == mb.inbox("bob").state_of(msg_id)


def test_done_of_an_unread_message_exits_4_and_says_claim_it_first(cli: Cli) -> None:
    """Only claimed mail can be marked done."""
    msg_id = send(cli)
    result = cli("done", "bob", msg_id)
    assert EXIT_NOT_FOUND == result.code
    assert "claim it first" in result.err


def test_release_gives_a_claimed_message_back(cli: Cli, mb: Mailbox) -> None:
    """release puts a claimed message back in unread mail."""
    msg_id = send(cli)
    cli("read", "bob")
    assert [{"id": msg_id, "released": True}] == cli("release", "bob", msg_id, "--json").json()
    assert State.NEW == mb.inbox("bob").state_of(msg_id)


def test_status_shows_each_recipient_state(cli: Cli, mb: Mailbox) -> None:
    """status --from shows delivered / read (with its time) / done per recipient."""
    mb.add_agent("carol")
    msg_id = cli("send", "--from", "alice", "--to", "bob,carol", "--body", "x").out.strip()
    cli("read", "bob")
    got = {r["agent"]: r for r in cli("status", msg_id, "--from", "alice", "--json").json()[
        "recipients"]}
    assert ("read", "delivered") == (got["bob"]["state"], got["carol"]["state"])
    assert got["bob"]["read_at"] is not None


def test_status_from_another_sender_exits_4(cli: Cli) -> None:
    """status --from checks the message is that sender's."""
    msg_id = send(cli)
    assert EXIT_NOT_FOUND == cli("status", msg_id, "--from", "bob").code


# -- workspace ------------------------------------------------------------------------------------


def test_ws_put_then_get_returns_the_content(cli: Cli) -> None:
    """ws put prints the new version; ws get prints the content back."""
    assert "1" == cli("ws", "put", "plan.md", stdin="v1 text\n").out.strip()
    assert "v1 text\n" == cli("ws", "get", "plan.md").out


def test_ws_put_with_a_stale_version_exits_6_and_says_what_to_do(cli: Cli) -> None:
    """A compare-and-swap that lost names both versions and the command to recover."""
    cli("ws", "put", "plan.md", "--if-version", "0", stdin="mine")
    result = cli("ws", "put", "plan.md", "--if-version", "0", stdin="theirs")
    assert EXIT_CONFLICT == result.code
    assert "mailbox: plan.md: you based your change on version 0, but version 1 is current" \
        in result.err
    assert "hint: read it again (mailbox ws get plan.md), merge, and put with --if-version 1" \
        in result.err
    assert "mine" == cli("ws", "get", "plan.md").out


def test_ws_put_with_the_current_version_writes_the_next(cli: Cli, tmp_path: Path) -> None:
    """--if-version N succeeds while N is current; --file reads the content."""
    cli("ws", "put", "plan.md", stdin="v1")
    source = tmp_path / "v2.md"
    source.write_text("v2")
    assert {"name": "plan.md", "version": 2} == cli(
        "ws", "put", "plan.md", "--if-version", "1", "--file", str(source), "--json").json()


def test_ws_get_version_prints_an_older_version(cli: Cli) -> None:
    """Every version stays readable."""
    cli("ws", "put", "plan.md", stdin="v1")
    cli("ws", "put", "plan.md", stdin="v2")
    assert "v1" == cli("ws", "get", "plan.md", "--version", "1").out


def test_ws_ls_lists_files_with_versions(cli: Cli) -> None:
    """ws ls --json lists each file with its current version and size."""
    cli("ws", "put", "notes/a.md", stdin="aa")
    cli("ws", "put", "plan.md", stdin="p")
    cli("ws", "put", "plan.md", stdin="pp")
    assert [{"name": "notes/a.md", "version": 1, "size": 2},
            {"name": "plan.md", "version": 2, "size": 2}] == cli("ws", "ls", "--json").json()


def test_ws_lock_holds_the_lock_while_the_command_runs(cli: Cli, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside `ws lock NAME -- CMD` a second lock of NAME fails at once (exit 6)."""
    monkeypatch.setenv("PYTHONPATH", python_env()["PYTHONPATH"])
    probe = tmp_path / "probe"
    inner = (f"{shlex.quote(sys.executable)} -m agentmailbox ws lock plan.md --timeout 0 -- true;"
             f" echo $? > {shlex.quote(str(probe))}")
    assert EXIT_OK == cli("ws", "lock", "plan.md", "--", "sh", "-c", inner).code
    assert str(EXIT_CONFLICT) == probe.read_text().strip()


def test_ws_lock_is_free_again_after_the_command(cli: Cli) -> None:
    """The lock is released when the command ends."""
    cli("ws", "lock", "plan.md", "--", "true")
    assert EXIT_OK == cli("ws", "lock", "plan.md", "--timeout", "0", "--", "true").code


def test_ws_lock_of_a_failing_command_exits_11_whatever_its_status(cli: Cli) -> None:
    """A command that fails under the lock is exit 11, never one of mailbox's own codes."""
    result = cli("ws", "lock", "plan.md", "--", "sh", "-c", "exit 6")
    assert EXIT_COMMAND_FAILED == result.code and "status 6" in result.err


def test_ws_lock_pass_status_exits_with_the_commands_exit_code(cli: Cli) -> None:
    """With --pass-status the command's own exit code comes back, so scripts can chain on it."""
    assert 42 == cli("ws", "lock", "plan.md", "--pass-status", "--", "sh", "-c", "exit 42").code


def test_ws_lock_json_reports_the_commands_exit_status(cli: Cli) -> None:
    """ws lock --json prints the command's exit status as one JSON object."""
    result = cli("ws", "lock", "plan.md", "--json", "--", "sh", "-c", "exit 3")
    assert (EXIT_COMMAND_FAILED, 3) == (result.code, result.json()["exit_status"])


def test_ws_get_json_round_trips_binary_content(cli: Cli, mb: Mailbox) -> None:
    """ws get --json gives the exact bytes in base64, and text only when it is UTF-8."""
    import base64

    data = bytes(range(256))
    mb.workspace.put("blob.bin", data)
    mb.workspace.put("plan.md", "café\n".encode())
    got = cli("ws", "get", "blob.bin", "--json").json()
    assert (data, None) == (base64.b64decode(got["base64"]), got["text"])
    assert "café\n" == cli("ws", "get", "plan.md", "--json").json()["text"]


# -- doctor -------------------------------------------------------------------------------------


def test_doctor_on_a_fresh_root_is_clean(cli: Cli, mb: Mailbox) -> None:
    """A root used only through the library has nothing to report."""
    send(cli)
    result = cli("doctor", "--json")
    assert (EXIT_OK, {"root": str(mb.path), "findings": [], "clean": True}) == (
        result.code, result.json())


def test_doctor_reports_a_foreign_file_and_exits_10(cli: Cli, mb: Mailbox) -> None:
    """Without --repair a problem is reported, left in place, and the exit is 10."""
    planted = mb.inbox("bob").new / "notes.txt"
    planted.write_text("not mail")
    result = cli("doctor", "--json")
    assert EXIT_UNHEALTHY == result.code
    assert [("foreign", "agents/bob/inbox/new/notes.txt", False)] == [
        (f["kind"], f["path"], f["repaired"]) for f in result.json()["findings"]]
    assert planted.exists()


def test_doctor_repair_quarantines_a_foreign_file_then_is_clean(cli: Cli, mb: Mailbox) -> None:
    """--repair moves a planted file to dead/ with a reason; a second doctor is clean."""
    (mb.inbox("bob").new / "notes.txt").write_text("not mail")
    repaired = cli("doctor", "--repair", "--json")
    assert EXIT_OK == repaired.code
    assert [True] == [f["repaired"] for f in repaired.json()["findings"]]
    assert ["notes.txt"] == [d.name for d in mb.dead.list()]
    assert (EXIT_OK, True) == (cli("doctor").code, cli("doctor", "--json").json()["clean"])


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_agent_exits_4_with_a_hint(cli: Cli) -> None:
    """Sending to an unregistered agent says who and how to register it."""
    result = cli("send", "--from", "alice", "--to", "carol", "--body", "x")
    assert EXIT_NOT_FOUND == result.code
    assert ["mailbox: no agent named 'carol'", "  hint: register it first: mailbox agent add carol"
            ] == result.err.splitlines()


def test_invalid_name_exits_5_with_a_hint(cli: Cli) -> None:
    """An invalid agent name is refused with the rule (here: lower case)."""
    result = cli("agent", "add", "Bob")
    assert EXIT_INVALID == result.code
    assert ["mailbox: invalid agent name 'Bob'", "  hint: agent names are lower case: use 'bob'"
            ] == result.err.splitlines()


def test_too_large_message_exits_7_with_a_hint(cli: Cli, mb: Mailbox) -> None:
    """A body over max_message_bytes is refused, and the hint points to the workspace."""
    result = cli("send", "--from", "alice", "--to", "bob", "--body", "-", stdin="x" * (1 << 20))
    assert EXIT_TOO_LARGE == result.code
    assert result.err.startswith("mailbox: message is ")
    assert "hint: put large content in the shared workspace" in result.err
    assert 0 == mb.inbox("bob").count()


def test_error_with_json_is_a_json_object_on_stderr(cli: Cli) -> None:
    """With --json an error is machine-readable: type, message, hint and exit code."""
    result = cli("send", "--from", "alice", "--to", "carol", "--body", "x", "--json")
    assert (EXIT_NOT_FOUND, "") == (result.code, result.out)
    assert {"error": "AgentNotFound", "message": "no agent named 'carol'",
            "hint": "register it first: mailbox agent add carol",
            "exit_code": EXIT_NOT_FOUND} == orjson.loads(result.err)


# -- every printing command speaks JSON ---------------------------------------------------------

PRINTING = {
    "init": lambda s: ["init", str(s["tmp"] / "elsewhere")],
    "agent add": lambda s: ["agent", "add", "carol"],
    "agent show": lambda s: ["agent", "show", "bob"],
    "agents": lambda s: ["agents"],
    "send": lambda s: ["send", "--from", "alice", "--to", "bob", "--body", "x"],
    "inbox": lambda s: ["inbox", "bob", "--all"],
    "read": lambda s: ["read", "bob"],
    "read --peek": lambda s: ["read", "bob", "--peek", "--all"],
    "done": lambda s: ["done", "bob", s["claimed"]],
    "release": lambda s: ["release", "bob", s["claimed"]],
    "status": lambda s: ["status", s["claimed"], "--from", "alice"],
    "ws put": lambda s: ["ws", "put", "plan.md", "--file", str(s["file"])],
    "ws get": lambda s: ["ws", "get", "plan.md"],
    "ws ls": lambda s: ["ws", "ls"],
    "doctor": lambda s: ["doctor"],
}


@pytest.mark.parametrize("command", sorted(PRINTING))
def test_every_printing_command_accepts_json(command: str, cli: Cli, mb: Mailbox,
                                             tmp_path: Path) -> None:
    """Each command that prints takes --json and prints one parseable JSON value."""
    claimed, _ = send(cli), send(cli)
    mb.inbox("bob").claim(claimed)
    content = tmp_path / "plan.md"
    content.write_text("plan")
    mb.workspace.put("plan.md", b"plan")
    args = PRINTING[command]({"tmp": tmp_path, "claimed": claimed, "file": content})
    result = cli(*args, "--json")
    assert EXIT_OK == result.code, result.err
    assert 1 == len(result.out.splitlines())
    assert result.json() is not None


def test_every_command_but_ws_lock_declares_json() -> None:
    """New commands keep the contract: every command prints JSON on request."""
    without = [path for path, cmd in every_command()
               if not isinstance(cmd, click.Group) and not any(
                   p.name == "as_json" for p in cmd.params)]
    assert [] == without


def every_command() -> list[tuple[str, click.Command]]:
    """Every command and group below ``mailbox``, as ("ws lock", command), loading each."""
    from agentmailbox.cli import cli as group

    def walk(cmd: click.Group, ctx: click.Context, path: str) -> list[tuple[str, click.Command]]:
        found = []
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            found.append((f"{path} {name}".strip(), sub))
            if isinstance(sub, click.Group):
                found += walk(sub, click.Context(sub, parent=ctx), f"{path} {name}")
        return found

    return walk(group, click.Context(group), "")


def test_the_command_table_names_each_command_and_its_help() -> None:
    """`mailbox --help` lists each command with the first sentence of its own help."""
    from agentmailbox.cli import COMMANDS, cli

    ctx = click.Context(cli)
    for name, (_, text) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and name == command.name
        assert command.get_short_help_str(10_000) == text, name


def loaded_modules(*argv: str, root: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``mailbox ARGV`` on ``root``."""
    code = ("import sys; from agentmailbox.cli import main; "
            f"code = main({list(argv)!r}); print(*sys.modules, file=sys.stderr); "
            "sys.stdout.flush()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**python_env(), "MAILBOX_ROOT": str(root)}, timeout=60,
                          stdin=subprocess.DEVNULL)
    return set(done.stderr.split())


HEAVY = {"watchdog", "structlog", "portalocker", "asyncio", "ctypes", "logging",
         "agentmailbox.supervisor", "agentmailbox.handoff", "agentmailbox.boot",
         "agentmailbox.agent", "agentmailbox.watch", "agentmailbox.routing", "mcp",
         "agentmailbox.mcpserver", "agentmailbox.mcptools"}
"""What the quick commands must not load: each costs a good part of the 2x-the-interpreter
budget (docs/PERFORMANCE.md, "Startup"), and none is needed to list, read or send mail."""


@pytest.mark.parametrize("argv", [
    ("--help",), ("inbox", "bob"), ("read", "bob", "--peek"),
    ("send", "--from", "alice", "--to", "bob", "--body", "hi"), ("heartbeat", "bob"),
    ("dead", "ls"), ("peek", "bob"), ("whoami", "--agent", "bob"),
    ("hook", "prompt", "--agent", "bob"),
], ids=" ".join)
def test_the_quick_commands_import_no_daemon_or_continuity_module(argv: tuple[str, ...],
                                                                  mb: Mailbox) -> None:
    """An agent's every-prompt commands start fast: they never load the supervisor, the
    watcher, logging, the lock library, ctypes or the continuity modules."""
    mb.send("alice", "bob", subject="waiting", body="x")
    assert set() == loaded_modules(*argv, root=mb.path) & HEAVY


def test_the_prompt_hook_with_no_news_imports_no_daemon_or_continuity_module(
        mb: Mailbox) -> None:
    """The hook run on every prompt starts fast when there is nothing new to say."""
    mb.send("alice", "bob", subject="waiting", body="x")
    loaded_modules("hook", "prompt", "--agent", "bob", root=mb.path)  # surfaces it
    assert set() == loaded_modules("hook", "prompt", "--agent", "bob", root=mb.path) & HEAVY


def test_help_imports_no_command_module(mb: Mailbox) -> None:
    """`mailbox --help` lists every command without importing any of them."""
    loaded = loaded_modules("--help", root=mb.path)
    assert {"agentmailbox.cli"} <= loaded
    assert "orjson" not in loaded
    assert set() == {m for m in loaded if m.startswith("agentmailbox.")} - {
        "agentmailbox.cli", "agentmailbox.cli._base", "agentmailbox.errors",
        "agentmailbox.render", "agentmailbox.names"}
