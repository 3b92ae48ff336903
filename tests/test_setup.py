"""`mailbox setup claude-code|codex`: the hooks merged into a project's .claude/settings.json
(or .codex/hooks.json), the user's own settings kept, idempotent, --dry-run, --undo, and
refusals that leave the file as it was."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox
from agentmailbox.cli import EXIT_CONFLICT, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

Cli = Callable[..., Any]
FIXTURES = Path(__file__).parent / "hooks"
THEIRS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test)"]},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
                                                      "command": "./check.sh"}]}],
    },
}
"""A user's settings: their own Stop and PreToolUse hooks, and other keys."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder below the root's folder (so a hook run in it finds the root)."""
    folder = tmp_path / "app"
    (folder / ".claude").mkdir(parents=True)
    return folder


def settings_file(project: Path) -> Path:
    return project / ".claude" / "settings.json"


def write_theirs(project: Path) -> bytes:
    data = orjson.dumps(THEIRS, option=orjson.OPT_INDENT_2)
    settings_file(project).write_bytes(data)
    return data


def setup(cli: Cli, project: Path, *args: str) -> Any:
    return cli("setup", "claude-code", "--agent", "bob", "--project", str(project), *args)


def commands_of(settings: dict[str, Any], event: str) -> list[str]:
    return [h["command"] for g in settings["hooks"].get(event, []) for h in g["hooks"]]


def test_setup_merges_the_hooks_and_keeps_the_users_own(cli: Cli, project: Path) -> None:
    """The user's own hooks and settings survive; each event gets our hook as bob."""
    write_theirs(project)
    result = setup(cli, project)
    assert EXIT_OK == result.code, result.err
    written = orjson.loads(settings_file(project).read_bytes())
    assert (THEIRS["model"], THEIRS["permissions"]) == (written["model"],
                                                        written["permissions"])
    assert THEIRS["hooks"]["PreToolUse"] == written["hooks"]["PreToolUse"]
    assert ["notify-send done", "mailbox hook stop --agent bob"] == commands_of(
        written, "Stop")
    for event, hook in [("SessionStart", "session-start"), ("UserPromptSubmit", "prompt"),
                        ("PreCompact", "pre-compact"), ("SessionEnd", "session-end")]:
        assert [f"mailbox hook {hook} --agent bob"] == commands_of(written, event)


def test_setup_twice_changes_nothing(cli: Cli, project: Path) -> None:
    """Running setup again leaves the file byte for byte as the first run wrote it."""
    write_theirs(project)
    setup(cli, project)
    first = settings_file(project).read_bytes()
    result = setup(cli, project)
    assert (EXIT_OK, first) == (result.code, settings_file(project).read_bytes())
    assert "unchanged" in result.out


def test_a_second_agent_in_a_file_that_names_another_is_refused(cli: Cli, mb: Mailbox,
                                                                project: Path) -> None:
    """Setting carol up where the hooks act as bob is refused (exit 6), the file left as
    it was, and the message says how several agents share a project."""
    write_theirs(project)
    setup(cli, project)
    before = settings_file(project).read_bytes()
    mb.add_agent("carol", role="tester")
    for extra in ([], ["--dry-run"]):
        result = cli("setup", "claude-code", "--agent", "carol", "--project", str(project),
                     *extra)
        assert (EXIT_CONFLICT, before) == (result.code, settings_file(project).read_bytes())
        assert "runs the mailbox hooks as bob; setting carol up there" in result.err
        assert "--agent-from-env" in result.err and "MAILBOX_AGENT=NAME claude" in result.err


@pytest.mark.parametrize("command", ["MAILBOX_AGENT='carol' mailbox hook stop",
                                     "mailbox hook stop --agent carol",
                                     "cd app && mailbox hook stop --agent=carol"])
def test_hooks_set_up_by_hand_name_their_agent(cli: Cli, project: Path, command: str) -> None:
    """A mailbox hook written by hand, naming carol in any of the ways a command can, is
    read as carol's: setting bob up over it is refused, naming carol."""
    hand = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": command}]}]}}
    settings_file(project).write_bytes(orjson.dumps(hand))
    result = setup(cli, project)
    assert (EXIT_CONFLICT, True) == (result.code, "runs the mailbox hooks as carol" in result.err)


def test_undo_then_setup_replaces_the_agent(cli: Cli, mb: Mailbox, project: Path) -> None:
    """--undo, then setting another agent up, leaves only the new agent's hooks, the
    user's kept."""
    write_theirs(project)
    setup(cli, project)
    mb.add_agent("carol", role="tester")
    cli("setup", "claude-code", "--undo", "--project", str(project))
    assert EXIT_OK == cli("setup", "claude-code", "--agent", "carol", "--project",
                          str(project)).code
    written = orjson.loads(settings_file(project).read_bytes())
    assert ["notify-send done", "mailbox hook stop --agent carol"] == commands_of(
        written, "Stop")


def test_a_hook_the_user_added_after_ours_stays_after_it(cli: Cli, project: Path) -> None:
    """Our entries are replaced where they stand: a group the user put after them keeps
    its place, and a second run changes nothing."""
    setup(cli, project)
    settings = orjson.loads(settings_file(project).read_bytes())
    settings["hooks"]["Stop"].append({"hooks": [{"type": "command", "command": "late"}]})
    settings_file(project).write_bytes(orjson.dumps(settings, option=orjson.OPT_INDENT_2))
    before = settings_file(project).read_bytes()
    setup(cli, project)
    assert before == settings_file(project).read_bytes()
    cli("setup", "claude-code", "--undo", "--project", str(project))
    assert ["late"] == commands_of(orjson.loads(settings_file(project).read_bytes()), "Stop")


def test_our_handler_in_a_users_group_is_moved_out(cli: Cli, project: Path) -> None:
    """A mailbox hook set up by hand inside the user's group is taken out of it (theirs
    kept) and ours goes in a group of its own, so no hook runs twice."""
    mixed = {"hooks": {"Stop": [{"hooks": [
        {"type": "command", "command": "notify-send done"},
        {"type": "command", "command": "mailbox hook stop --agent bob"}]}]}}
    settings_file(project).write_bytes(orjson.dumps(mixed))
    setup(cli, project)
    stop = orjson.loads(settings_file(project).read_bytes())["hooks"]["Stop"]
    assert [["notify-send done"], ["mailbox hook stop --agent bob"]] == [
        [h["command"] for h in g["hooks"]] for g in stop]


def test_dry_run_writes_nothing_and_shows_the_diff(cli: Cli, project: Path) -> None:
    """--dry-run leaves the file untouched and prints a unified diff of the change."""
    before = write_theirs(project)
    result = setup(cli, project, "--dry-run")
    assert (EXIT_OK, before) == (result.code, settings_file(project).read_bytes())
    assert result.out.startswith("--- a/.claude/settings.json\n+++ b/.claude/settings.json\n")
    assert '+            "command": "mailbox hook prompt --agent bob"' in result.out


def test_dry_run_creates_no_file(cli: Cli, project: Path) -> None:
    """--dry-run in a project without settings creates none."""
    assert EXIT_OK == setup(cli, project, "--dry-run").code
    assert not settings_file(project).exists()


def test_undo_takes_out_exactly_our_entries(cli: Cli, project: Path) -> None:
    """--undo gives back the user's settings as they were before setup."""
    write_theirs(project)
    setup(cli, project)
    result = cli("setup", "claude-code", "--undo", "--project", str(project))
    assert EXIT_OK == result.code, result.err
    assert THEIRS == orjson.loads(settings_file(project).read_bytes())


def test_undo_without_a_settings_file_creates_none(cli: Cli, project: Path) -> None:
    """--undo in a project that has no settings file leaves it without one."""
    assert EXIT_OK == cli("setup", "claude-code", "--undo", "--project", str(project)).code
    assert not settings_file(project).exists()


def test_setup_creates_the_settings_file_when_there_is_none(cli: Cli, tmp_path: Path
                                                            ) -> None:
    """A project without .claude/ gets one, with only our hooks."""
    folder = tmp_path / "fresh"
    folder.mkdir()
    assert EXIT_OK == setup(cli, folder).code
    assert {"hooks"} == set(orjson.loads(settings_file(folder).read_bytes()))


def test_local_writes_the_checkouts_own_settings(cli: Cli, project: Path) -> None:
    """--local sets the hooks up in settings.local.json and leaves the shared file alone."""
    shared = write_theirs(project)
    assert EXIT_OK == setup(cli, project, "--local").code
    local = orjson.loads((project / ".claude" / "settings.local.json").read_bytes())
    assert ["mailbox hook stop --agent bob"] == commands_of(local, "Stop")
    assert shared == settings_file(project).read_bytes()


def test_setup_keeps_the_files_mode(cli: Cli, project: Path) -> None:
    """The settings file is replaced with the mode it had."""
    write_theirs(project)
    settings_file(project).chmod(0o640)
    setup(cli, project)
    assert 0o640 == settings_file(project).stat().st_mode & 0o777


@pytest.mark.parametrize("content", [b"[1, 2]", b"{not json", b'"text"', b""])
def test_a_settings_file_that_is_not_an_object_is_refused(cli: Cli, project: Path,
                                                          content: bytes) -> None:
    """A file that is not one JSON object is refused (exit 5) and never overwritten."""
    settings_file(project).write_bytes(content)
    result = setup(cli, project)
    assert (EXIT_INVALID, content) == (result.code, settings_file(project).read_bytes())
    assert "not a JSON object" in result.err


def test_hooks_of_the_wrong_type_are_refused(cli: Cli, project: Path) -> None:
    """A "hooks" that is not an object is refused, the file left as it is."""
    settings_file(project).write_bytes(b'{"hooks": []}')
    assert EXIT_INVALID == setup(cli, project).code
    assert b'{"hooks": []}' == settings_file(project).read_bytes()


def test_a_symlinked_settings_file_is_refused(cli: Cli, project: Path, tmp_path: Path
                                              ) -> None:
    """A settings.json that is a symbolic link is never followed out of the project."""
    outside = tmp_path / "outside.json"
    outside.write_bytes(b"{}")
    settings_file(project).symlink_to(outside)
    result = setup(cli, project)
    assert (EXIT_INVALID, b"{}") == (result.code, outside.read_bytes())
    assert settings_file(project).is_symlink()


def test_a_symlinked_claude_folder_is_refused(cli: Cli, tmp_path: Path) -> None:
    """A .claude that is a link to a folder elsewhere is not written through."""
    folder, elsewhere = tmp_path / "linked", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / ".claude").symlink_to(elsewhere)
    assert EXIT_INVALID == setup(cli, folder).code
    assert [] == list(elsewhere.iterdir())


@pytest.mark.parametrize("name", ["../bob", "Bob", "bob;rm -rf x", ""])
def test_an_invalid_agent_name_is_refused(cli: Cli, project: Path, name: str) -> None:
    """An agent name that is not valid is refused before anything is written."""
    result = cli("setup", "claude-code", "--agent", name, "--project", str(project))
    assert result.code in (EXIT_INVALID, EXIT_NOT_FOUND)
    assert not settings_file(project).exists()


def test_an_unregistered_agent_is_refused_with_a_hint(cli: Cli, project: Path) -> None:
    """Setting up an agent the root does not know says so and how to register it."""
    result = cli("setup", "claude-code", "--agent", "zed", "--project", str(project))
    assert EXIT_NOT_FOUND == result.code
    assert "mailbox agent add zed" in result.err
    assert not settings_file(project).exists()


def test_the_root_goes_into_the_command_when_not_found_from_the_project(
        cli: Cli, mb: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A project outside the root's tree gets --root in each command, shell-quoted, and the
    commands the hook shows the model carry it too (the model's shell would not find the
    root either)."""
    folder = tmp_path_factory.mktemp("other place")
    setup(cli, folder)
    written = orjson.loads(settings_file(folder).read_bytes())
    root = shlex.quote(str(mb.path))
    assert [f"mailbox hook prompt --agent bob --root {root}"] == commands_of(
        written, "UserPromptSubmit")
    mb.send("alice", "bob", subject="plan v1", body="x")
    done = run_written(folder, "UserPromptSubmit", {})
    line = orjson.loads(done.stdout)["hookSpecificOutput"]["additionalContext"]
    assert line.endswith(f"— mailbox next --agent bob --root {root}")


def test_the_written_session_start_command_runs(cli: Cli, mb: Mailbox,
                                                tmp_path_factory: pytest.TempPathFactory
                                                ) -> None:
    """The command setup writes, run by a shell with the documented SessionStart input in
    the project, prints the boot brief as additionalContext."""
    folder = tmp_path_factory.mktemp("elsewhere")
    setup(cli, folder)
    mb.send("alice", "bob", subject="plan v1", body="x")
    done = run_written(folder, "SessionStart", {})
    assert (0, b"") == (done.returncode, done.stderr)
    answer = orjson.loads(done.stdout)["hookSpecificOutput"]
    assert "SessionStart" == answer["hookEventName"]
    assert "plan v1" in answer["additionalContext"]


@pytest.mark.parametrize(("env", "shown"), [({}, "mailbox next --agent bob"),
                                             ({"MAILBOX_AGENT": "bob"}, "mailbox next")])
def test_commands_shown_by_a_written_hook_work_in_the_models_shell(
        env: dict[str, str], shown: str, cli: Cli, mb: Mailbox,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The model's shell inherits the harness's environment, not the hook's command line:
    a hook set up for bob names bob in what it shows, unless the harness itself runs as
    bob (then `mailbox next` works as it is)."""
    folder = tmp_path_factory.mktemp("elsewhere")
    setup(cli, folder)
    mb.send("alice", "bob", subject="plan v1", body="x")
    done = run_written(folder, "UserPromptSubmit", env)
    assert (0, b"") == (done.returncode, done.stderr)
    line = orjson.loads(done.stdout)["hookSpecificOutput"]["additionalContext"]
    assert line.endswith(f"— {shown} --root {shlex.quote(str(mb.path))}")  # a project elsewhere


# -- several agents in one project -----------------------------------------------------------


def from_env(cli: Cli, project: Path, *args: str) -> Any:
    return cli("setup", "claude-code", "--agent-from-env", "--project", str(project), *args)


def test_agent_from_env_writes_hooks_that_name_no_agent(cli: Cli, project: Path) -> None:
    """--agent-from-env writes each hook without an identity, keeps the user's hooks, and
    says how to start a session as an agent."""
    write_theirs(project)
    result = from_env(cli, project)
    assert EXIT_OK == result.code, result.err
    written = orjson.loads(settings_file(project).read_bytes())
    assert ["notify-send done", "mailbox hook stop"] == commands_of(written, "Stop")
    assert ["mailbox hook session-start"] == commands_of(written, "SessionStart")
    assert "start each agent's session as: MAILBOX_AGENT=NAME claude" in result.out


def test_agent_from_env_is_idempotent_dry_run_writes_nothing_and_undo_restores(
        cli: Cli, project: Path) -> None:
    """A second --agent-from-env changes nothing, --dry-run writes nothing, --undo gives
    the user's settings back."""
    before = write_theirs(project)
    assert EXIT_OK == from_env(cli, project, "--dry-run").code
    assert before == settings_file(project).read_bytes()
    from_env(cli, project)
    first = settings_file(project).read_bytes()
    assert "unchanged" in from_env(cli, project).out
    assert first == settings_file(project).read_bytes()
    cli("setup", "claude-code", "--undo", "--project", str(project))
    assert THEIRS == orjson.loads(settings_file(project).read_bytes())


def test_agent_from_env_takes_over_one_agents_hooks(cli: Cli, project: Path) -> None:
    """A project set up for bob becomes one for several agents with --agent-from-env;
    setting one agent up over that is refused (exit 6): it would make every session bob."""
    setup(cli, project)
    assert EXIT_OK == from_env(cli, project).code
    written = settings_file(project).read_bytes()
    assert ["mailbox hook prompt"] == commands_of(orjson.loads(written), "UserPromptSubmit")
    result = setup(cli, project)
    assert (EXIT_CONFLICT, written) == (result.code, settings_file(project).read_bytes())
    assert "as the agent of each session's $MAILBOX_AGENT" in result.err


def test_agent_from_env_with_an_agent_is_a_usage_error(cli: Cli, project: Path) -> None:
    """--agent-from-env and --agent together are refused before anything is written."""
    result = setup(cli, project, "--agent-from-env")
    assert (EXIT_USAGE, False) == (result.code, settings_file(project).exists())


@pytest.mark.parametrize(("first", "second", "undo"), [([], ["--local"], "--undo`"),
                                                       (["--local"], [], "--undo --local`")])
def test_the_hooks_are_refused_in_a_second_file(cli: Cli, project: Path, first: list[str],
                                                second: list[str], undo: str) -> None:
    """With the hooks in settings.json, setting them up in settings.local.json (or the
    reverse) is refused (exit 6): Claude Code would run every hook twice."""
    assert EXIT_OK == from_env(cli, project, *first).code
    result = setup(cli, project, *second)
    assert EXIT_CONFLICT == result.code
    assert "runs the mailbox hooks too" in result.err and undo in result.err
    names = {p.name for p in (project / ".claude").iterdir()}
    assert {"settings.local.json" if first else "settings.json"} == names


@pytest.mark.parametrize(("agent", "subject"), [("alice", "plan v2"), ("bob", "plan v1")])
def test_each_session_acts_as_the_agent_of_its_environment(
        cli: Cli, mb: Mailbox, tmp_path_factory: pytest.TempPathFactory, agent: str,
        subject: str) -> None:
    """The session-start command --agent-from-env writes, run by a shell in a harness
    started as MAILBOX_AGENT=NAME, briefs that agent on its own mail."""
    folder = tmp_path_factory.mktemp("shared")
    from_env(cli, folder)
    mb.send("alice", "bob", subject="plan v1", body="x")
    mb.send("bob", "alice", subject="plan v2", body="x")
    done = run_written(folder, "SessionStart", {"MAILBOX_AGENT": agent})
    assert (0, b"") == (done.returncode, done.stderr)
    brief = orjson.loads(done.stdout)["hookSpecificOutput"]["additionalContext"]
    assert f"# boot brief: {agent} (epoch 1)" in brief and subject in brief


def test_a_session_started_without_an_agent_surfaces_nothing(
        cli: Cli, mb: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without $MAILBOX_AGENT the hooks --agent-from-env writes guess no identity: nothing
    on stdout, one line on stderr, exit 0, and no agent's epoch starts."""
    folder = tmp_path_factory.mktemp("shared")
    from_env(cli, folder)
    done = run_written(folder, "SessionStart", {})
    assert (0, b"") == (done.returncode, done.stdout)
    assert (1, True) == (len(done.stderr.splitlines()), b"no agent" in done.stderr)
    assert (None, None) == (mb.epoch("alice"), mb.epoch("bob"))


# -- codex ---------------------------------------------------------------------------------


def codex_file(project: Path) -> Path:
    return project / ".codex" / "hooks.json"


def test_codex_setup_merges_into_hooks_json_and_undo_restores_it(cli: Cli, project: Path
                                                                 ) -> None:
    """setup codex keeps the user's Codex hooks, adds ours (Codex has no SessionEnd), is
    idempotent, and --undo gives the file back as it was."""
    codex_file(project).parent.mkdir()
    theirs = {"hooks": THEIRS["hooks"]}
    codex_file(project).write_bytes(orjson.dumps(theirs))
    assert EXIT_OK == cli("setup", "codex", "--agent", "bob", "--project", str(project)).code
    first = codex_file(project).read_bytes()
    written = orjson.loads(first)
    assert ["notify-send done", "mailbox hook stop --agent bob"] == commands_of(
        written, "Stop")
    assert ["mailbox hook session-start --agent bob"] == commands_of(
        written, "SessionStart")
    assert "SessionEnd" not in written["hooks"]
    cli("setup", "codex", "--agent", "bob", "--project", str(project))
    assert first == codex_file(project).read_bytes()
    assert EXIT_OK == cli("setup", "codex", "--undo", "--project", str(project)).code
    assert theirs == orjson.loads(codex_file(project).read_bytes())


def test_setting_codex_up_leaves_the_claude_settings_alone(cli: Cli, project: Path) -> None:
    """The Claude Code settings are not touched by setting Codex up."""
    before = write_theirs(project)
    cli("setup", "codex", "--agent", "bob", "--project", str(project))
    assert before == settings_file(project).read_bytes()


def run_written(project: Path, event: str, env: dict[str, str]
                ) -> subprocess.CompletedProcess[bytes]:
    """The command setup wrote for ``event``, run by a shell in ``project`` as the harness
    runs it (with ``env`` and no other MAILBOX_ variable), fed the documented sample."""
    (command,) = commands_of(orjson.loads(settings_file(project).read_bytes()), event)
    sample = orjson.loads((FIXTURES / SAMPLES[event]).read_bytes())
    child = {k: v for k, v in python_env().items() if not k.startswith("MAILBOX_")}
    child["PATH"] = os.pathsep.join([str(_bin_folder()), child.get("PATH", "")])
    return subprocess.run(["sh", "-c", command], cwd=project, env={**child, **env},
                          capture_output=True, input=orjson.dumps({**sample, "cwd": str(project)}),
                          timeout=60, check=False)


SAMPLES = {"SessionStart": "session-start.json", "UserPromptSubmit": "user-prompt-submit.json"}
"""The documented sample input of each event (tests/hooks/)."""


def _bin_folder() -> Path:
    """The folder of the ``mailbox`` script of this interpreter's environment."""
    found = shutil.which("mailbox", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("no mailbox script beside the interpreter (package not installed)")
    return Path(found).parent
