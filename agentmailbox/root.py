"""Finding a root, its configuration (``mailbox.json``), and what every layer shares.

A root is a ``.mailbox/`` directory, found like git finds ``.git``: ``--root`` or
``$MAILBOX_ROOT`` if given, else the nearest ``.mailbox/`` in the current directory
or one of its parents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import InvalidInput, RootNotFound
from .fs import Disk, Foreign, Fsync
from .journal import Journal
from .message import Clock

__all__ = ["DIRNAME", "FORMATS", "ROOT_FORMAT", "Config", "Root", "find_root"]

ROOT_FORMAT = 2
"""The protocol version ``init`` writes into ``mailbox.json`` (docs/PROTOCOL.md)."""
FORMATS = (1, ROOT_FORMAT)
"""The versions this library opens: a version 1 root is read as it is (PROTOCOL.md §23.1)."""

DIRNAME = ".mailbox"
_CONFIG_LIMIT = 1 << 20
MODES = {"private": (0o600, 0o700), "group": (0o660, 0o2770)}


@dataclass(frozen=True)
class Config:
    """Bus-wide settings from ``mailbox.json`` (the identity/config layer of the bus)."""

    format: int = ROOT_FORMAT
    fsync: Fsync = Fsync.ALWAYS
    mode: str = "private"
    max_message_bytes: int = 1 << 20
    lease_seconds: float = 600.0
    key_window_days: float = 7.0
    stale_tmp_seconds: float = 600.0
    max_unread: int = 0
    heartbeat_seconds: float = 60.0
    groups: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> Config:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"mailbox.json is not valid JSON: {exc}",
                               hint="fix it by hand, or compare with docs/PROTOCOL.md") from exc
        if not isinstance(obj, dict):
            raise InvalidInput("mailbox.json must hold a JSON object")
        version = obj.get("format")
        if isinstance(version, bool) or version not in FORMATS:
            raise InvalidInput(f"mailbox.json has format {version!r}; this version "
                               f"reads formats {', '.join(map(str, FORMATS))}",
                               hint="upgrade agentmailbox")
        return cls._typed(obj)

    @classmethod
    def _typed(cls, obj: dict[str, Any]) -> Config:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values = {k: v for k, v in obj.items() if k in known}
        extra = {k: v for k, v in obj.items() if k not in known}
        try:
            cfg = cls(**values, extra=extra)
            object.__setattr__(cfg, "fsync", Fsync(cfg.fsync))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"mailbox.json: {exc}") from exc
        if cfg.mode not in MODES:
            raise InvalidInput(f"mailbox.json: mode must be one of {sorted(MODES)}")
        return cfg

    def to_json(self) -> bytes:
        obj = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "extra"}
        obj["fsync"] = str(self.fsync)
        obj.update(self.extra)
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


@dataclass
class Root:
    """One opened root: its path, config, disk policy, clock and journal."""

    path: Path
    config: Config
    disk: Disk
    clock: Clock
    journal: Journal

    @classmethod
    def load(cls, path: Path, *, fsync: Fsync | str | None = None, clock: Clock | None = None
             ) -> Root:
        config = _read_config(path)
        file_mode, dir_mode = MODES[config.mode]
        disk = Disk(Fsync(fsync) if fsync else config.fsync, file_mode, dir_mode, base=str(path))
        return cls(path, config, disk, clock or _PROCESS_CLOCK, Journal(path / "journal", disk))

    def agent_dir(self, name: str) -> Path:
        """The directory of an agent; ``name`` must already be validated."""
        return self.path / "agents" / name


_PROCESS_CLOCK = Clock()


def _read_config(path: Path) -> Config:
    try:
        data, _ = Disk().read(path / "mailbox.json", _CONFIG_LIMIT)
    except FileNotFoundError as exc:
        raise RootNotFound(f"{path} is not a mailbox root (no mailbox.json)",
                           hint="create one with: mailbox init") from exc
    except Foreign as exc:
        raise InvalidInput(f"{path / 'mailbox.json'}: {exc.reason}") from exc
    return Config.from_json(data)


def find_root(start: Path | str | None = None) -> Path:
    """Locate the root: an explicit path, ``$MAILBOX_ROOT``, or upward from the cwd."""
    given = start or os.environ.get("MAILBOX_ROOT")
    if given:
        path = Path(given)
        if (path / DIRNAME / "mailbox.json").exists():
            return path / DIRNAME
        if (path / "mailbox.json").exists():
            return path
        raise RootNotFound(f"no mailbox root at {path}", hint=f"create one: mailbox init {path}")
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / DIRNAME / "mailbox.json").exists():
            return folder / DIRNAME
    raise RootNotFound(f"no {DIRNAME}/ in {here} or any parent",
                       hint="create one with 'mailbox init', or pass --root / set MAILBOX_ROOT")
