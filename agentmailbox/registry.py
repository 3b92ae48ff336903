"""The agents of a root: ``agents/<name>/agent.json`` (identity/config, slow-changing)."""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from . import layout, names
from .errors import AgentNotFound, AlreadyExists, InvalidInput
from .fs import TRUST_SECONDS, Disk, dump_object
from .memory import agent_lock
from .message import iso
from .root import Root

__all__ = ["AgentInfo", "Registry"]


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An agent's identity: who it is and what mail it wants."""

    name: str
    role: str = ""
    groups: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    description: str = ""
    max_unread: int = 0
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "groups": list(self.groups),
                "topics": list(self.topics), "description": self.description,
                "max_unread": self.max_unread, "created": self.created, **self.extra}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> AgentInfo:
        """Build from agent.json's object, checked by the schema ``add`` and ``edit`` apply.

        Raises:
            InvalidInput: a missing name or a field of the wrong type or form (named).
        """
        if "name" not in obj:
            raise InvalidInput("agent.json has no 'name'")
        fields = check_fields({k: v for k, v in obj.items() if k in _FIELDS and v is not None})
        return cls(name=names.check_agent(obj["name"]), **fields,
                   extra={k: v for k, v in obj.items() if k not in _FIELDS and k != "name"})


def check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The identity fields an agent may be given (PROTOCOL.md §5), checked and normalised:
    one schema for ``agent add``, ``agent edit`` and every reader of agent.json.

    Raises:
        InvalidInput: an unknown field, or a value of the wrong type or form (named).
    """
    out = {}
    for key, value in fields.items():
        check = _FIELDS.get(key)
        if check is None:
            raise InvalidInput(f"unknown agent field {key!r}",
                               hint=f"agent fields: {', '.join(sorted(_FIELDS))}")
        out[key] = check(key, value)
    return out


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"agent field {key!r} must be a string, not {type(value).__name__}")
    return value


def _role(key: str, value: Any) -> str:
    return _text(key, value) and names.check_agent(value)


def _name_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"agent field {key!r} must be a list of names, not "
                           f"{type(value).__name__}")
    return tuple(names.check_agent(v) for v in value)


def _count(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"agent field {key!r} must be a whole number of at least 0, "
                           f"not {str(value)[:20]!r}", hint="0 means the bus default")
    return value


def _editable(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` checked, if they are all ones a caller may set (not name or created)."""
    fixed = set(fields) - _EDITABLE
    if fixed:
        raise InvalidInput(f"agent field(s) {', '.join(sorted(map(str, fixed)))} cannot be set",
                           hint=f"settable: {', '.join(sorted(_EDITABLE))}")
    return check_fields(fields)


_FIELDS = {"role": _role, "groups": _name_list, "topics": _name_list, "description": _text,
           "max_unread": _count, "created": _text}
_EDITABLE = frozenset(_FIELDS) - {"created"}


class Registry:
    """Adds, reads and edits agents of one root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self.directory = root.paths.agents
        self._prefix = f"{self.directory}/"  # plain strings: every send checks its agents
        self._seen: dict[str, float] = {}  # agent -> until when its registration is trusted

    def add(self, name: str, /, **fields: Any) -> AgentInfo:
        """Register ``name`` and create its folders; AlreadyExists if it is there."""
        names.check_agent(name)
        info = AgentInfo(name=name, created=iso(time.time_ns()), **_editable(fields))
        data = _encode(info)  # refused before any folder is made
        base = self._root.agent_dir(name)
        if self._root.disk.exists(base) and not self._is_folder(base):
            raise InvalidInput(f"{base} exists and is not a folder (a link or a file)",
                               hint="remove it by hand; agent folders are never links")
        for folder in layout.made_folders("agent add"):
            self._root.disk.ensure_dir(self._root.path / layout.fill(folder, agent=name))
        if not self._publish(name, data):
            raise AlreadyExists(f"agent {name!r} already exists",
                                hint=f"see it with: mailbox agent show {name}")
        return info

    def exists(self, name: str) -> bool:
        """Registered: ``agents/<name>`` is a folder (never a link out of the root) with an
        ``agent.json``.

        A registration seen is trusted for :data:`~agentmailbox.fs.TRUST_SECONDS`, as the
        folder guard trusts a folder it found real (every send checks both agents: two
        ``lstat`` each, otherwise). Nothing unregisters an agent but a hand in the root.
        """
        if type(name) is str and self._seen.get(name, 0.0) > time.monotonic():
            return True  # only a name names.check_agent passed is ever remembered
        name = names.check_agent(name)
        base = self._prefix + name
        st = self._root.disk.lstat(base)
        registered = (st is not None and stat.S_ISDIR(st.st_mode)
                      and self._root.disk.lstat(f"{base}/{layout.IDENTITY}") is not None)
        if registered:
            self._seen[name] = time.monotonic() + TRUST_SECONDS
        return registered

    def _is_folder(self, path: Path) -> bool:
        st = self._root.disk.lstat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def require(self, name: str) -> str:
        if not self.exists(name):
            raise AgentNotFound(name)
        return name

    def get(self, name: str) -> AgentInfo:
        """The identity of ``name``.

        Raises:
            AgentNotFound: it is not registered.
            InvalidInput: its agent.json is not one (``mailbox doctor --repair`` rebuilds it).
        """
        path = self.identity_path(name)
        try:
            return load_identity(path, name, self._root.disk)
        except FileNotFoundError as exc:
            raise AgentNotFound(name) from exc
        except ValueError as exc:
            raise InvalidInput(f"{path} is not a valid agent.json: {exc}",
                               hint="run: mailbox doctor --repair (it quarantines the file and "
                                    "keeps the agent registered)", path=str(path)) from exc

    def identity_path(self, name: str) -> Path:
        return self._root.paths.agent(names.check_agent(name)).identity

    def edit(self, name: str, /, **changes: Any) -> AgentInfo:
        """Change identity fields (the only writer of agent.json after ``add``).

        The read-modify-write holds the agent's ``run/agent.lock``, so two processes
        editing different fields both keep their change.

        Raises:
            InvalidInput: a field ``add`` would refuse, or one that cannot change
                (``name``, ``created``).
        """
        checked = _editable(changes)
        with agent_lock(self._root, self.require(name), "agent"):
            info = replace(self.get(name), **checked)
            self._root.disk.replace(self.identity_path(name), _encode(info))
        return info

    def restore(self, name: str) -> bool:
        """Give a registered folder whose agent.json was quarantined a default identity
        (its name only), exclusively: False if an agent.json is there again."""
        info = AgentInfo(name=names.check_agent(name), created=iso(time.time_ns()))
        return self._publish(name, _encode(info))

    def _publish(self, name: str, data: bytes) -> bool:
        agent = self._root.paths.agent(name)
        base = agent.path
        staged = self._root.disk.stage(base, data)
        created = self._root.disk.place(staged, str(agent.identity))
        if created:
            self._root.disk.fsync_dir(base)
        return created

    def list_names(self) -> list[str]:
        """Registered agent names, sorted; folders that are not agents are skipped."""
        out = []
        for entry in self._root.disk.scan(self.directory):
            try:
                names.check_agent(entry.name)
            except InvalidInput:
                continue
            if (entry.is_dir(follow_symlinks=False)
                    and self._root.disk.lstat(f"{entry.path}/{layout.IDENTITY}") is not None):
                out.append(entry.name)
        return sorted(out)

    def all(self) -> list[AgentInfo]:
        return [self.get(n) for n in self.list_names()]


_IDENTITY_LIMIT = 1 << 20


def _encode(info: AgentInfo) -> bytes:
    """agent.json as written; refused if its readers would refuse it (over their bound).

    Raises:
        InvalidInput: the identity is larger than :data:`_IDENTITY_LIMIT`.
    """
    data = dump_object(info.to_dict(), "agent", orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if len(data) > _IDENTITY_LIMIT:
        raise InvalidInput(f"agent {info.name!r}: identity would be {len(data)} bytes, over "
                           f"{_IDENTITY_LIMIT}", hint="keep the description short; put detail "
                           "in the shared workspace (mailbox ws put)")
    return data


def load_identity(path: Path, name: str, disk: Disk | None = None) -> AgentInfo:
    """Read agent ``name``'s agent.json at ``path`` (never following a link).

    Raises:
        FileNotFoundError: there is none (not registered).
        ValueError: the file is not the identity of ``name``; says why.
    """
    obj = (disk or Disk()).read_object(path, _IDENTITY_LIMIT)
    try:
        info = AgentInfo.from_dict(obj)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from exc
    if info.name != name:
        raise ValueError(f"it names another agent ({info.name!r})")
    return info
