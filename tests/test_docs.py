"""The documents match the code: docs/CLI.md is generated from the command, and every
``mailbox`` command line quoted in README.md names a real command with real options."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest

from agentmailbox import errors
from agentmailbox.cli import cli
from agentmailbox.errors import MailboxError

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _generator():  # type: ignore[no-untyped-def]
    path = REPO / "scripts" / "gen_cli_docs.py"
    spec = importlib.util.spec_from_file_location("gen_cli_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_generated_from_the_command() -> None:
    """docs/CLI.md is what scripts/gen_cli_docs.py writes now (run it after changing a command)."""
    assert _generator().render() == (REPO / "docs" / "CLI.md").read_text(), (
        "docs/CLI.md is out of date: run python scripts/gen_cli_docs.py")


def test_cli_md_lists_every_exit_code() -> None:
    """The exit-code table of docs/CLI.md has every EXIT_* constant of agentmailbox.cli."""
    from agentmailbox import cli as cli_mod

    codes = {v for k, v in vars(cli_mod).items() if k.startswith("EXIT_")}
    assert codes == {code for code, _, _ in _generator().exit_codes()}


def error_classes() -> list[type[MailboxError]]:
    """MailboxError and every class below it."""
    found, todo = [], [MailboxError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def documented_tree_codes() -> dict[str, int]:
    """Each class of the tree drawn in errors.py's docstring, with its code there: its own
    ``(exit N)``, else its parent's."""
    codes: dict[str, int] = {}
    parents: list[tuple[int, int]] = []  # (column of the name, its code), root first
    for match in re.finditer(r"^([ │├└─]*)([A-Z]\w+)  .*?(?:\(exit (\d+)\))?$",
                             errors.__doc__ or "", re.MULTILINE):
        column = len(match[1])
        while parents and parents[-1][0] >= column:
            parents.pop()
        code = int(match[3]) if match[3] else parents[-1][1]
        parents.append((column, code))
        codes[match[2]] = code
    return codes


def test_every_error_class_has_the_code_its_tree_and_cli_md_document() -> None:
    """A script can rely on the documented exit code of each error: the class's code is the
    one errors.py's tree shows, and docs/CLI.md's table lists the class with that code."""
    tree = documented_tree_codes()
    page = (REPO / "docs" / "CLI.md").read_text()
    assert {cls.__name__ for cls in error_classes()} == set(tree)
    for cls in error_classes():
        assert tree[cls.__name__] == cls.exit_code, cls.__name__
        assert f"| {cls.exit_code} | `{cls.__name__}` |" in page, cls.__name__


def test_the_command_exits_with_the_code_of_the_error_class() -> None:
    """main() turns an error into its class's exit code, subclasses included."""
    from agentmailbox.cli import main

    for cls in error_classes():
        error = cls.__new__(cls)
        MailboxError.__init__(error, f"a {cls.__name__}")

        def boom(error: MailboxError = error) -> None:
            raise error

        command = click.Command("boom", callback=boom)
        cli.add_command(command)
        try:
            assert cls.exit_code == main(["boom"]), cls.__name__
        finally:
            del cli.commands["boom"]


def command_lines(path: Path) -> list[str]:
    """Every ``mailbox ...`` line in the code blocks of a Markdown file (continuations joined)."""
    lines = []
    for block in BLOCK.findall(path.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("mailbox "):
                lines.append(line)
    return lines


def resolve(line: str) -> tuple[click.Command, list[str]]:
    """The command a documented line runs, and the option names it uses."""
    words = [w.strip("[]") for w in shlex.split(line, comments=True)[1:]]
    if "--" in words:
        words = words[: words.index("--")]
    cmd: click.Command = cli
    used: list[str] = []
    for word in words:
        sub = cmd.get_command(click.Context(cmd), word) if isinstance(cmd, click.Group) else None
        if word.startswith("-") and len(word) > 1:
            used.append(word.split("=")[0])
        elif sub is not None:
            used = [u for u in used if u != "--root"]
            cmd = sub
    return cmd, used


README_LINES = command_lines(REPO / "README.md") + command_lines(REPO / "docs" / "AGENTS.md")


def test_the_readme_shows_commands() -> None:
    assert len(README_LINES) > 30


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_exists_with_those_options(line: str) -> None:
    """Each command line of README.md and docs/AGENTS.md names a command (not a group) and
    only its options."""
    cmd, used = resolve(line)
    assert not isinstance(cmd, click.Group), f"{line!r} names no command of {cmd.name}"
    known = {opt for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}
    known |= {"-h", "--help"}
    unknown = [u for u in used if u not in known]
    assert not unknown, f"{line!r}: mailbox {cmd.name} has no option {unknown}"


def test_the_agents_guide_stays_short() -> None:
    """docs/AGENTS.md is read by agents whose context is precious: under 120 lines."""
    assert len((REPO / "docs" / "AGENTS.md").read_text().splitlines()) < 120


# -- docs/ARCHITECTURE.md and the import-linter layers ----------------------------------------

def _package_units() -> set[str]:
    """The package's modules and subpackages, as the layers name them (``cli``, ``fs``...)."""
    package = REPO / "agentmailbox"
    units = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return units | {p.parent.name for p in package.glob("*/__init__.py")}


def _contract_layers() -> list[str]:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in re.split(r"[|:]", layer)]


def test_every_module_has_a_layer_in_the_import_contract() -> None:
    """A new module must be placed in the layers lint-imports checks, so no import can point
    up unseen; the contract names no module that is gone."""
    assert sorted(_package_units()) == sorted(_contract_layers())


def test_architecture_picture_names_every_module() -> None:
    """docs/ARCHITECTURE.md's picture shows every module and subpackage, so a newcomer finds
    any behaviour from the tree."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    picture = BLOCK.search(text)
    assert picture is not None
    words = set(re.findall(r"[a-z_]+", picture.group(1)))
    assert [] == sorted(_package_units() - words)
