"""Setting an agent harness up to run the hooks: ``mailbox setup claude-code|codex``.

Claude Code reads a project's hooks from ``.claude/settings.json``, Codex from
``.codex/hooks.json``, both in one format (docs/INTEGRATIONS.md records each harness's
documentation and its source)::

    {"hooks": {"Stop": [{"matcher": "...", "hooks": [{"type": "command", "command": "..."}]}]}}

:func:`plan` computes the file's new content from the old: our entries (each a command hook
whose command runs ``mailbox hook NAME``) are replaced where they stand or added in a group
of their own, every other key, group and handler is kept as it was, so running it twice
changes nothing; :func:`removed` takes out exactly our entries (``--undo``). :func:`apply`
writes through :class:`fs.Disk` (a staged file renamed over the old one, in the same
folder, with the old file's mode). A settings file that is not one JSON object, a
symbolic link, or in a folder (``.claude``) that is not a real one is refused and never
written.

Identity: each command carries ``--agent NAME``, or none at all (``--agent-from-env``:
several agents share the project, each session acting as the agent of its own
``$MAILBOX_AGENT``). Hooks that act as one agent are never silently made to act as another
(:func:`identities` reads who ours act as), and the hooks go in one of a harness's project
files only, since the harness runs those of every file.
"""

from __future__ import annotations

import difflib
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import names
from .errors import AlreadyExists, InvalidInput, MailboxError
from .fs import Disk, Foreign, dump_object, parse_object
from .root import nearest_root

__all__ = ["CLAUDE_CODE", "CODEX", "HARNESSES", "MCP_SERVER", "Harness", "Plan", "apply",
           "codex_mcp_plan", "codex_mcp_table", "diff", "found_from", "hook_commands",
           "identities", "identity", "is_ours", "mcp_approved", "mcp_entry", "mcp_plan",
           "merged", "plan", "removed", "settings_path"]

Events = tuple[tuple[str, str, str | None], ...]
"""(the harness's event, our hook, the matcher; None: no matcher, every source)."""


@dataclass(frozen=True)
class Harness:
    """One agent harness: where its project hooks live and which of our hooks it runs."""

    name: str
    settings: tuple[str, ...]
    """The hooks file, below the project folder."""
    local: tuple[str, ...] | None
    """The file of one checkout (not committed), if the harness has one."""
    events: Events
    program: str
    """The command that starts a session (``MAILBOX_AGENT=NAME PROGRAM``)."""


CLAUDE_CODE = Harness(
    "claude-code", (".claude", "settings.json"), (".claude", "settings.local.json"),
    (("SessionStart", "session-start", "startup|resume|clear|compact"),
     ("UserPromptSubmit", "prompt", None),
     ("Stop", "stop", None),
     ("PreCompact", "pre-compact", None),
     ("SessionEnd", "session-end", None)), "claude")
"""Claude Code (docs/INTEGRATIONS.md). ``hook wait`` is not among its hooks: it needs
``asyncRewake``, which Claude Code's hooks reference does not document."""

CODEX = Harness(
    "codex", (".codex", "hooks.json"), None,
    (("SessionStart", "session-start", None),
     ("UserPromptSubmit", "prompt", None),
     ("Stop", "stop", None),
     ("PreCompact", "pre-compact", None)), "codex")
"""Codex: the project's ``.codex/hooks.json``, the same format as Claude Code's hooks;
Codex documents no SessionEnd event."""

HARNESSES = {h.name: h for h in (CLAUDE_CODE, CODEX)}

SETTINGS_LIMIT = 1 << 20
"""The largest settings file read (a settings file is a few kilobytes)."""

NEW_FILE_MODE = 0o644
"""The mode of a settings file created here (a harness's own files are not secret)."""

_OURS = re.compile(r"(?:^|[\s;&|(])mailbox hook (?:session-start|prompt|stop|pre-compact|"
                   r"session-end|wait)(?=\s|$)")


@dataclass(frozen=True)
class Plan:
    """What setting up (or undoing) would do to one settings file."""

    path: Path
    before: bytes | None
    """The file's content now; None when there is none."""
    after: bytes
    """The content to write; ``before`` (or nothing) when the settings do not change."""
    settings: dict[str, Any]
    """The settings ``after`` holds."""
    mode: int
    changed: bool
    """Whether the settings change (a file written otherwise is not rewritten for its
    layout alone)."""


def hook_commands(events: Events, agent: str | None, root: Path | None = None
                  ) -> dict[str, str]:
    """The command line of each hook (by the harness's event) for ``agent`` (None: whichever
    agent ``$MAILBOX_AGENT`` names in the harness's environment, so the command carries no
    identity and a session started without one surfaces nothing); ``root`` goes in as
    ``--root PATH`` when the hook would not find it from the project by itself.

    The agent is given as ``--agent NAME``, not as ``MAILBOX_AGENT=NAME`` before the
    command: the model's own shell does not inherit what one hook's command line sets, so
    the hook must know the variable is not there, and show the model commands that carry
    ``--agent NAME`` (a hook whose ``$MAILBOX_AGENT`` names its agent shows them without);
    the root likewise, as ``--root PATH``."""
    who = "" if agent is None else f" --agent {shlex.quote(names.check_agent(agent))}"
    who += "" if root is None else f" --root {shlex.quote(str(root))}"
    return {event: f"mailbox hook {hook}{who}" for event, hook, _ in events}


def found_from(project: Path) -> Path | None:
    """The root a hook run in ``project`` finds by itself: the nearest ``.mailbox/`` above
    (as :func:`root.find_root` looks from the working directory)."""
    return nearest_root(project)


def _given_root(project: Path, root: Path | None) -> Path | None:
    """``root``, when a command run in ``project`` would not find it by itself; else None."""
    return None if root is None or _same(found_from(project), root) else root


def is_ours(handler: Any) -> bool:
    """Whether a hook handler is one this module writes (any agent, any root)."""
    return (isinstance(handler, dict) and handler.get("type") == "command"
            and isinstance(handler.get("command"), str)
            and _OURS.search(handler["command"]) is not None)


def merged(settings: dict[str, Any], events: Events, commands: dict[str, str]
           ) -> dict[str, Any]:
    """``settings`` with our hooks: each replaces our earlier one where it stands, or goes
    last in a group of its own; everything else is kept, in its order.

    Raises:
        InvalidInput: ``hooks`` or one of its events is not what the format says.
    """
    hooks = dict(_hooks(settings))
    for event, _, matcher in events:
        group: dict[str, Any] = {} if matcher is None else {"matcher": matcher}
        group["hooks"] = [{"type": "command", "command": commands[event]}]
        hooks[event] = _with_group(_groups(hooks, event), group)
    return {**settings, "hooks": hooks}


def removed(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without our hooks; a group, event or ``hooks`` left empty by taking
    them out goes too, so undoing restores the file as it was before setting up.

    Raises:
        InvalidInput: ``hooks`` or one of its events is not what the format says.
    """
    if "hooks" not in settings:
        return settings
    hooks: dict[str, Any] = {}
    for event, groups in _hooks(settings).items():
        kept = _without_ours(_groups(settings["hooks"], event))
        if kept or not groups:
            hooks[event] = kept
    rest = {k: v for k, v in settings.items() if k != "hooks"}
    return rest if not hooks and settings["hooks"] else {**rest, "hooks": hooks}


def _hooks(settings: dict[str, Any]) -> dict[str, Any]:
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict):
        raise InvalidInput(f"\"hooks\" in the settings is {type(hooks).__name__}, not an "
                           "object", hint="fix the settings file by hand, then run it again")
    return hooks


def _groups(hooks: dict[str, Any], event: str) -> list[Any]:
    groups = hooks.get(event, [])
    if not isinstance(groups, list):
        raise InvalidInput(f"\"hooks\".{event!r} in the settings is {type(groups).__name__}, "
                           "not a list", hint="fix the settings file by hand, then run it again")
    return groups


def _with_group(groups: list[Any], ours: dict[str, Any]) -> list[Any]:
    """``groups`` with our handlers out and ``ours`` in the place of the first group that
    held only ours (else last)."""
    out, at = _split(groups)
    return [*out, ours] if at is None else [*out[:at], ours, *out[at:]]


def _without_ours(groups: list[Any]) -> list[Any]:
    return _split(groups)[0]


def _split(groups: list[Any]) -> tuple[list[Any], int | None]:
    """``groups`` without our handlers (a group left with none goes), and where the first
    group that held only ours stood in what is left (None if none did)."""
    out: list[Any] = []
    at = None
    for group in groups:
        handlers = _handlers(group)
        theirs = [h for h in handlers if not is_ours(h)]
        if len(theirs) == len(handlers):
            out.append(group)
        elif theirs:
            out.append({**group, "hooks": theirs})
        elif at is None:
            at = len(out)
    return out, at


def identities(settings: dict[str, Any]) -> set[str | None]:
    """The agents our hooks in ``settings`` act as; None for hooks that name none (each
    session's ``$MAILBOX_AGENT``, ``--agent-from-env``).

    Raises:
        InvalidInput: ``hooks`` or one of its events is not what the format says.
    """
    return {identity(h["command"]) for h in _ours(settings)}


def identity(command: str) -> str | None:
    """The agent a hook command of ours names (``MAILBOX_AGENT=NAME`` before it or
    ``--agent NAME`` after it), None when it names none."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for word, after in zip(words, [*words[1:], ""], strict=True):
        for prefix in ("MAILBOX_AGENT=", "--agent="):
            if word.startswith(prefix):
                return word[len(prefix):] or None
        if word == "--agent" and after:
            return after
    return None


def _ours(settings: dict[str, Any]) -> list[dict[str, Any]]:
    hooks = _hooks(settings)
    return [h for event in hooks for group in _groups(hooks, event) for h in _handlers(group)
            if is_ours(h)]


def _handlers(group: Any) -> list[Any]:
    """A group's handlers (none for something that is not a group: kept as it is)."""
    if isinstance(group, dict) and isinstance(group.get("hooks"), list):
        return list(group["hooks"])
    return []


# -- the settings file --------------------------------------------------------------------


def settings_path(harness: Harness, project: Path, local: bool = False) -> Path:
    """The hooks file of ``harness`` in ``project`` (``local``: the checkout's own).

    Raises:
        InvalidInput: ``local`` for a harness that has no such file.
    """
    if local and harness.local is None:
        raise InvalidInput(f"{harness.name} has no settings file of one checkout",
                           hint="leave out --local")
    return project.joinpath(*(harness.local if local and harness.local else harness.settings))


def plan(harness: Harness, project: Path, agent: str | None, root: Path | None, *,
         undo: bool = False, local: bool = False, from_env: bool = False) -> Plan:
    """What setting ``agent`` up in ``project`` (or undoing it) does to the hooks file of
    ``harness``.

    ``root`` is the root the hooks must use; it goes into the commands only when a hook
    run in ``project`` would not find it by itself. ``local``: the checkout's own settings
    file (``settings.local.json``) rather than the shared one. ``from_env``: no agent in
    the commands; each session acts as the agent ``$MAILBOX_AGENT`` names in the
    harness's environment (several agents sharing the project, ``agent`` ignored).

    Raises:
        InvalidName: ``agent`` is not a valid name (checked before any path is built).
        InvalidInput: the settings file is not one JSON object, is a symbolic link or
            not a regular file, or ``.claude`` is not a real folder.
    """
    if not undo and not from_env:
        names.check_agent(agent or "")
    project = project.absolute()
    path = settings_path(harness, project, local)
    before, mode = _read(path)
    settings = parse_settings(before, path) if before is not None else {}
    who = None if from_env else agent or ""
    if undo:
        new = removed(settings)
    else:
        _refuse_takeover(harness, path, settings, who)
        _refuse_second_file(harness, project, path)
        given = _given_root(project, root)
        new = merged(settings, harness.events, hook_commands(harness.events, who, given))
    if new == settings:
        return Plan(path, before, before or b"", new, mode, changed=False)
    after = dump_object(new, str(path), orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    return Plan(path, before, after, new, mode, changed=True)


def _refuse_takeover(harness: Harness, path: Path, settings: dict[str, Any],
                     agent: str | None) -> None:
    """Refuse to make hooks that act as another agent act as ``agent``: that agent's
    sessions would silently speak as this one. Hooks that name no agent (``agent`` None)
    may replace any of ours: no session gets another's identity, each names its own.

    Raises:
        AlreadyExists: the file's hooks act as another agent, or as each session's own.
    """
    others = identities(settings) - {agent}
    if agent is None or not others:
        return
    raise AlreadyExists(
        f"{path} runs the mailbox hooks as {_who(others)}; setting {agent} up there would "
        "take them over", path=str(path), hint=_share_hint(harness))


def _refuse_second_file(harness: Harness, project: Path, path: Path) -> None:
    """Refuse to set the hooks up in one of the harness's two project files when the other
    already runs them: the harness runs the hooks of both, so each event would run twice,
    perhaps as two agents.

    Raises:
        AlreadyExists: the other file runs our hooks.
    """
    for local in (False, True) if harness.local is not None else (False,):
        other = settings_path(harness, project, local)
        found = _ours_in(other) if other != path else set()
        if found:
            raise AlreadyExists(
                f"{other} runs the mailbox hooks too (as {_who(found)}); {harness.name} runs "
                "the hooks of both files, so every event would run twice",
                path=str(other), hint=f"keep them in one file: `mailbox setup {harness.name} "
                                      f"--undo{' --local' if local else ''}` first")


def _ours_in(path: Path) -> set[str | None]:
    """The identities of our hooks in another settings file; none when it cannot be read
    (it is not the file being written: its refusals are its own set-up's)."""
    try:
        data, _ = _read(path)
        return identities(parse_settings(data, path)) if data is not None else set()
    except MailboxError:
        return set()


def _who(agents: set[str | None]) -> str:
    shown = sorted("the agent of each session's $MAILBOX_AGENT" if a is None else a
                   for a in agents)
    return " and ".join(shown)


def _share_hint(harness: Harness) -> str:
    return (f"for several agents in one project: `mailbox setup {harness.name} "
            f"--agent-from-env`, then start each agent's session as `MAILBOX_AGENT=NAME "
            f"{harness.program}`; to replace the agent: `mailbox setup {harness.name} --undo` "
            "first (docs/INTEGRATIONS.md, multi-agent set-ups)")


def parse_settings(data: bytes, path: Path) -> dict[str, Any]:
    """The settings in ``data``.

    Raises:
        InvalidInput: not one JSON object; the file is left as it is.
    """
    try:
        return parse_object(data)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not a JSON object ({exc}); left as it is",
                           hint="fix it by hand (or move it away), then run setup again",
                           path=str(path)) from exc


def _same(a: Path | None, b: Path) -> bool:
    return a is not None and a.resolve() == b.resolve()


def _read(path: Path) -> tuple[bytes | None, int]:
    """The settings file's content and mode (None and the new file's mode when absent)."""
    disk = _disk(path, NEW_FILE_MODE)
    folder = disk.lstat(path.parent)
    if folder is not None and not stat.S_ISDIR(folder.st_mode):
        raise InvalidInput(f"{path.parent} is not a real folder (a symbolic link?); never "
                           "followed out of the project", path=str(path.parent),
                           hint="make it a folder of the project, or set the hooks up by hand")
    try:
        data, st = disk.read(path, SETTINGS_LIMIT)
    except FileNotFoundError:
        return None, NEW_FILE_MODE
    except Foreign as exc:
        raise InvalidInput(f"{path} is refused ({exc.reason}); left as it is",
                           hint="make it a regular file of the project, or set the hooks "
                                "up by hand", path=str(path)) from exc
    return data, stat.S_IMODE(st.st_mode)


def _disk(path: Path, mode: int) -> Disk:
    """The file operations below the project (never following a link in it)."""
    return Disk(file_mode=mode, dir_mode=0o755, base=str(path.parent.parent))


def apply(p: Plan) -> bool:
    """Write ``p`` (nothing when it changes nothing); True if the file was written."""
    if not p.changed:
        return False
    disk = _disk(p.path, p.mode)
    disk.ensure_dir(p.path.parent)
    disk.replace(p.path, p.after)
    return True


def diff(p: Plan) -> str:
    """What ``p`` changes, as a unified diff ("" when nothing)."""
    old = (p.before or b"").decode(errors="replace").splitlines(keepends=True)
    new = p.after.decode().splitlines(keepends=True)
    name = "/".join(p.path.parts[-2:])
    return "".join(difflib.unified_diff(old, new, f"a/{name}", f"b/{name}"))


# -- the MCP server: setup --mcp -----------------------------------------------------------------

MCP_SERVER = "mailbox"
"""The server's name in a client's configuration: Claude Code shows its tools to the model
as ``mcp__mailbox__send`` (agentmailbox.mcpserver)."""
MCP_JSON = (".mcp.json",)
"""Claude Code's project file of MCP servers, below the project folder."""


def mcp_entry(agent: str | None, root: Path | None) -> dict[str, Any]:
    """The ``mcpServers`` entry that runs ``mailbox mcp`` as ``agent`` (None: the agent of
    the session's ``$MAILBOX_AGENT``, which Claude Code expands in ``.mcp.json``); ``root``
    as ``$MAILBOX_ROOT`` when the server would not find it from the project by itself."""
    env = {"MAILBOX_AGENT": "${MAILBOX_AGENT}" if agent is None else names.check_agent(agent)}
    if root is not None:
        env["MAILBOX_ROOT"] = str(root)
    return {"command": "mailbox", "args": ["mcp"], "env": env}


def mcp_plan(project: Path, agent: str | None, root: Path | None, *, undo: bool = False
             ) -> Plan:
    """What ``setup claude-code --mcp`` does to ``PROJECT/.mcp.json``: our server entry set
    (or, with ``undo``, taken out), every other server and key kept.

    Raises:
        InvalidInput: the file is not one JSON object, or its ``mcpServers`` not an object.
    """
    project = project.absolute()
    path = project.joinpath(*MCP_JSON)
    before, mode = _read(path)
    settings = parse_settings(before, path) if before is not None else {}
    servers = settings.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise InvalidInput(f"{path}: mcpServers is not an object; left as it is",
                           hint="fix it by hand, then run setup again", path=str(path))
    rest = {k: v for k, v in servers.items() if k != MCP_SERVER}
    if undo:
        new = {k: v for k, v in settings.items() if k != "mcpServers"}
        new |= {"mcpServers": rest} if rest else {}
    else:
        given = _given_root(project, root)
        new = {**settings, "mcpServers": {**servers, MCP_SERVER: mcp_entry(agent, given)}}
    return _replanned(Plan(path, before, before or b"", settings, mode, changed=False), new)


def mcp_approved(p: Plan, *, undo: bool = False) -> Plan:
    """``p`` (a Claude Code settings file's plan) with our server in (or, with ``undo``,
    out of) ``enabledMcpjsonServers``: Claude Code asks before it loads a project's
    ``.mcp.json`` server in an interactive session until the server is listed there."""
    listed = p.settings.get("enabledMcpjsonServers", [])
    if not isinstance(listed, list):
        raise InvalidInput(f"{p.path}: enabledMcpjsonServers is not a list; left as it is",
                           hint="fix it by hand, then run setup again", path=str(p.path))
    kept = [s for s in listed if s != MCP_SERVER]
    new = {k: v for k, v in p.settings.items() if k != "enabledMcpjsonServers"}
    if not undo:
        new["enabledMcpjsonServers"] = [*listed] if MCP_SERVER in listed else [*kept,
                                                                               MCP_SERVER]
    elif kept:
        new["enabledMcpjsonServers"] = kept
    return _replanned(p, new)


def _replanned(p: Plan, new: dict[str, Any]) -> Plan:
    """``p`` with ``new`` as the settings to write (changed only when they differ from
    what the file holds now)."""
    now = parse_settings(p.before, p.path) if p.before is not None else {}
    if new == now:
        return Plan(p.path, p.before, p.before or b"", new, p.mode, changed=False)
    after = dump_object(new, str(p.path), orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    return Plan(p.path, p.before, after, new, p.mode, changed=True)


CODEX_CONFIG = (".codex", "config.toml")
"""Codex's project configuration, where its MCP servers live (read in a trusted project)."""
_BEGIN = "# mailbox mcp: written by `mailbox setup codex --mcp`; `--undo --mcp` takes it out"
_END = "# end of mailbox mcp"
_BLOCK = re.compile(r"(?:^|\n)" + re.escape(_BEGIN) + r"\n.*?\n" + re.escape(_END) + r"\n?",
                    re.DOTALL)


def codex_mcp_table(agent: str | None, root: Path | None) -> str:
    """The ``[mcp_servers.mailbox]`` table that runs ``mailbox mcp`` as ``agent`` (None: the
    agent of Codex's own ``$MAILBOX_AGENT``, forwarded by ``env_vars``), between our
    marker comments."""
    env = {} if agent is None else {"MAILBOX_AGENT": names.check_agent(agent)}
    if root is not None:
        env["MAILBOX_ROOT"] = str(root)
    lines = [_BEGIN, f"[mcp_servers.{MCP_SERVER}]", 'command = "mailbox"', 'args = ["mcp"]']
    if env:
        pairs = ", ".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in env.items())
        lines.append(f"env = {{ {pairs} }}")
    if agent is None:
        lines.append('env_vars = ["MAILBOX_AGENT"]')
    return "\n".join([*lines, _END]) + "\n"


def codex_mcp_plan(project: Path, agent: str | None, root: Path | None, *,
                   undo: bool = False) -> Plan:
    """What ``setup codex --mcp`` does to ``PROJECT/.codex/config.toml``: our table appended
    (or, with ``undo``, taken out) between marker comments; no other byte of the file is
    rewritten, so its comments and layout stay.

    Raises:
        InvalidInput: the file is not UTF-8 TOML.
        AlreadyExists: it defines an ``mcp_servers.mailbox`` of the user's own.
    """
    project = project.absolute()
    path = project.joinpath(*CODEX_CONFIG)
    before, mode = _read(path)
    text = _toml_text(before, path)
    rest = _BLOCK.sub("\n", text).strip("\n")
    rest = rest + "\n" if rest else ""
    if undo:
        new = rest if _BLOCK.search(text) else text
    else:
        if MCP_SERVER in (_toml(rest, path).get("mcp_servers") or {}):
            raise AlreadyExists(f"{path} defines an mcp_servers.{MCP_SERVER} of its own",
                                path=str(path), hint="remove it, or keep it and set the "
                                                     "agent in its env by hand")
        given = _given_root(project, root)
        new = (rest + "\n" if rest else "") + codex_mcp_table(agent, given)
    changed = new != text and not (before is None and not new)
    return Plan(path, before, new.encode() if changed else before or b"", _toml(new, path),
                mode, changed=changed)


def _toml_text(data: bytes | None, path: Path) -> str:
    try:
        text = (data or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text; left as it is", path=str(path),
                           hint="fix it by hand, then run setup again") from exc
    _toml(text, path)
    return text


def _toml(text: str, path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML ({exc}); left as it is",
                           path=str(path), hint="fix it by hand, then run setup again") from exc
