"""The agents of a root: ``agents/<name>/agent.json`` (identity/config, slow-changing)."""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from . import names
from .errors import AgentNotFound, AlreadyExists, InvalidInput
from .fs import Foreign
from .message import iso
from .root import Root

__all__ = ["AgentInfo", "Registry"]

_SUBDIRS = ("inbox/tmp", "inbox/new", "inbox/cur", "inbox/done", "keys", "events", "handoffs",
            "run")


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
        known = {"name", "role", "groups", "topics", "description", "max_unread", "created"}
        try:
            return cls(name=names.check_agent(obj["name"]), role=str(obj.get("role") or ""),
                       groups=tuple(map(str, obj.get("groups") or ())),
                       topics=tuple(map(str, obj.get("topics") or ())),
                       description=str(obj.get("description") or ""),
                       max_unread=int(obj.get("max_unread") or 0),
                       created=str(obj.get("created") or ""),
                       extra={k: v for k, v in obj.items() if k not in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"agent.json is malformed: {exc}") from exc


class Registry:
    """Adds, reads and edits agents of one root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self.directory = root.path / "agents"
        self._prefix = f"{self.directory}/"  # plain strings: every send checks its agents

    def add(self, name: str, **fields: Any) -> AgentInfo:
        """Register ``name`` and create its folders; AlreadyExists if it is there."""
        names.check_agent(name)
        for role_like in ("role",):
            if fields.get(role_like):
                names.check_agent(fields[role_like])
        for seq in ("groups", "topics"):
            fields[seq] = tuple(names.check_agent(v) for v in fields.get(seq, ()))
        info = AgentInfo(name=name, created=iso(time.time_ns()), **fields)
        base = self._root.agent_dir(name)
        if self._root.disk.exists(base) and not self._is_folder(base):
            raise InvalidInput(f"{base} exists and is not a folder (a link or a file)",
                               hint="remove it by hand; agent folders are never links")
        for sub in _SUBDIRS:
            self._root.disk.ensure_dir(base / sub)
        data = orjson.dumps(info.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        staged = self._root.disk.stage(base, data)
        try:
            if not self._root.disk.publish(staged, base / "agent.json"):
                raise AlreadyExists(f"agent {name!r} already exists",
                                    hint=f"see it with: mailbox agent show {name}")
        finally:
            self._root.disk.unlink(staged)
        self._root.disk.fsync_dir(base)
        return info

    def exists(self, name: str) -> bool:
        """Registered: ``agents/<name>`` is a folder (never a link out of the root) with an
        ``agent.json``."""
        base = self._prefix + names.check_agent(name)
        st = self._root.disk.lstat(base)
        return (st is not None and stat.S_ISDIR(st.st_mode)
                and self._root.disk.lstat(f"{base}/agent.json") is not None)

    def _is_folder(self, path: Path) -> bool:
        st = self._root.disk.lstat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def require(self, name: str) -> str:
        if not self.exists(name):
            raise AgentNotFound(name)
        return name

    def get(self, name: str) -> AgentInfo:
        path = self._root.agent_dir(names.check_agent(name)) / "agent.json"
        try:
            data, _ = self._root.disk.read(path, 1 << 20)
            obj = orjson.loads(data)
        except FileNotFoundError as exc:
            raise AgentNotFound(name) from exc
        except (Foreign, orjson.JSONDecodeError) as exc:
            raise InvalidInput(f"{path} is not a valid agent.json: {exc}",
                               hint="run: mailbox doctor") from exc
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path} must hold a JSON object")
        return AgentInfo.from_dict(obj)

    def edit(self, name: str, **changes: Any) -> AgentInfo:
        """Change identity fields (the only writer of agent.json after ``add``)."""
        info = replace(self.get(name), **changes)
        data = orjson.dumps(info.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        self._root.disk.replace(self._root.agent_dir(name) / "agent.json", data)
        return info

    def list_names(self) -> list[str]:
        """Registered agent names, sorted; folders that are not agents are skipped."""
        out = []
        for entry in self._root.disk.scan(self.directory):
            try:
                names.check_agent(entry.name)
            except InvalidInput:
                continue
            if entry.is_dir(follow_symlinks=False) and (Path(entry.path) / "agent.json").exists():
                out.append(entry.name)
        return sorted(out)

    def all(self) -> list[AgentInfo]:
        return [self.get(n) for n in self.list_names()]
