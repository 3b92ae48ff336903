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

from . import layout, names
from .errors import InvalidInput, RootNotFound
from .fs import Disk, Foreign, Fsync, parse_object
from .journal import Journal
from .message import Clock

__all__ = ["DIRNAME", "FORMATS", "ROOT_FORMAT", "Config", "Root", "find_root", "nearest_root"]

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
    def from_json(cls, data: bytes, source: str = "mailbox.json") -> Config:
        """The settings in ``data``, every key checked (``source`` names the file in errors).

        Raises:
            InvalidInput: not one JSON object (a repeated key included) of a known
                format, or a key of the wrong type or out of its range; the error names
                the key and what it must be.
        """
        try:
            obj = parse_object(data)  # the rule of every JSON file: one object, no repeated key
        except ValueError as exc:
            raise InvalidInput(f"{source} must hold one JSON object: {exc}", hint=_FIX) from exc
        version = obj.get("format")
        if isinstance(version, bool) or version not in FORMATS:
            raise InvalidInput(f"{source} has format {str(version)[:20]!r}; this version "
                               f"reads formats {', '.join(map(str, FORMATS))}",
                               hint="upgrade agentmailbox")
        return cls._typed(obj, source)

    @classmethod
    def _typed(cls, obj: dict[str, Any], source: str = "mailbox.json") -> Config:
        """Check every known key of ``obj`` (type and range), then build the settings."""
        for key, check in _SCHEMA.items():
            if key in obj:
                try:
                    check(obj[key])
                except ValueError as exc:
                    raise InvalidInput(f"{source}: {key!r} must be {exc}, not "
                                       f"{_shown(obj[key])}", hint=_FIX) from exc
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values = {k: v for k, v in obj.items() if k in known}
        extra = {k: v for k, v in obj.items() if k not in known}
        cfg = cls(**values, extra=extra)
        object.__setattr__(cfg, "fsync", Fsync(cfg.fsync))
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
        return cls(path, config, disk, clock or _PROCESS_CLOCK,
                   Journal(layout.Paths(path).journal, disk))

    @property
    def paths(self) -> layout.Paths:
        """The folders and files of this root (:mod:`agentmailbox.layout`)."""
        return layout.Paths(self.path)

    def agent_dir(self, name: str) -> Path:
        """The directory of an agent; ``name`` must already be validated."""
        return self.paths.agent(name).path


_PROCESS_CLOCK = Clock()

# -- the schema of mailbox.json (PROTOCOL.md §4) ---------------------------------------------------
# Each check raises ValueError("<what the value must be>"). JSON true is not a number here,
# although Python counts a bool as an int.

_FIX = "edit mailbox.json by hand; docs/PROTOCOL.md §4 lists each key, its type and default"
_CENTURY = 100 * 365 * 86400  # seconds: a wait longer than this is a typo (and overflows timers)
_NAME = names.agent_shape
_ADDRESS = names.address_shape


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    kind = {str: "a string", bool: "a boolean", list: "an array", dict: "an object",
            type(None): "null"}.get(type(value), "a number")
    return (text if len(text) <= 40 else text[:40] + "...") + f" ({kind})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _choice(*allowed: str) -> Any:
    def check(value: Any) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(" or ".join(f'"{a}"' for a in allowed))
    return check


def _integer(low: int, high: int | None = None) -> Any:
    def check(value: Any) -> None:
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= low
                and (high is None or value <= high)):
            raise ValueError(f"an integer of at least {low}"
                             + (f" and at most {high}" if high is not None else ""))
    return check


def _number(low: float, high: float, unit: str, *, above: bool = False) -> Any:
    def check(value: Any) -> None:
        if not (_is_number(value) and (value > low if above else value >= low)
                and value <= high):
            raise ValueError(f"a number of {unit} {'above' if above else 'from'} {low:g} "
                             f"{'and at most' if above else 'to'} {high:.0f}")
    return check


def _lists_of(key_ok: Any, value_ok: Any, what: str) -> Any:
    def check(value: Any) -> None:
        if not (isinstance(value, dict) and all(
                isinstance(k, str) and key_ok(k) and isinstance(v, list)
                and all(isinstance(a, str) and value_ok(a) for a in v)
                for k, v in value.items())):
            raise ValueError(what)
    return check


def _object(fields: dict[str, Any], what: str) -> Any:
    def check(value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise ValueError(what)
        for key, field_check in fields.items():
            if value.get(key) is not None:
                try:
                    field_check(value[key])
                except ValueError as exc:
                    raise ValueError(f"{what} whose {key!r} is {exc}") from exc
    return check


def _format(value: Any) -> None:
    if isinstance(value, bool) or value not in FORMATS:
        raise ValueError(f"one of {', '.join(map(str, FORMATS))} (the protocol versions "
                         "this program reads)")


_SCHEMA: dict[str, Any] = {
    "format": _format,
    "fsync": _choice(*(str(f) for f in Fsync)),
    "mode": _choice(*MODES),
    "max_message_bytes": _integer(1),
    "lease_seconds": _number(0, _CENTURY, "seconds"),
    "key_window_days": _number(0, _CENTURY / 86400, "days"),
    "stale_tmp_seconds": _number(0, _CENTURY, "seconds"),
    "max_unread": _integer(0),
    "heartbeat_seconds": _number(0, _CENTURY, "seconds", above=True),
    "groups": _lists_of(_NAME, _NAME, "an object of group name -> list of agent names"),
    "routes": _lists_of(_ADDRESS, _ADDRESS, "an object of address -> list of addresses"),
    "rate": _object({"per_second": _number(0, 1e9, "messages"),
                     "burst": _number(0, 1e9, "messages")},
                    'an object {"per_second": N, "burst": M}'),
    "handoff": _object({"max_bytes": _integer(1), "max_items": _integer(1)},
                       'an object {"max_bytes": N, "max_items": M}'),
}


def _read_config(path: Path) -> Config:
    source = layout.Paths(path).config
    try:
        data, _ = Disk().read(source, _CONFIG_LIMIT)
    except FileNotFoundError as exc:
        raise RootNotFound(f"{path} is not a mailbox root (no mailbox.json)",
                           hint="create one with: mailbox init") from exc
    except Foreign as exc:
        raise InvalidInput(f"{source}: {exc.reason}", hint=_FIX) from exc
    return Config.from_json(data, str(source))


def find_root(start: Path | str | None = None) -> Path:
    """Locate the root: an explicit path, ``$MAILBOX_ROOT``, or upward from the cwd.

    Raises:
        RootNotFound: there is none, or this user may not look into one there.
    """
    given = start or os.environ.get("MAILBOX_ROOT")
    if given:
        path = Path(given)
        if _holds_config(path / DIRNAME):
            return path / DIRNAME
        if _holds_config(path):
            return path
        raise RootNotFound(f"no mailbox root at {path}", hint=f"create one: mailbox init {path}")
    here = Path.cwd()
    found = nearest_root(here)
    if found is None:
        raise RootNotFound(f"no {DIRNAME}/ in {here} or any parent",
                           hint="create one with 'mailbox init', or pass --root / set MAILBOX_ROOT")
    return found


def nearest_root(here: Path) -> Path | None:
    """The nearest ``.mailbox/`` holding a ``mailbox.json`` in ``here`` or above it, or None.

    Raises:
        RootNotFound: this user may not look into one on the way.
    """
    for folder in (here, *here.parents):
        if _holds_config(folder / DIRNAME):
            return folder / DIRNAME
    return None


def _holds_config(folder: Path) -> bool:
    """Whether ``folder`` holds a ``mailbox.json`` (``Path.exists`` raises on EACCES)."""
    try:
        return layout.Paths(folder).config.exists()
    except PermissionError as exc:
        raise RootNotFound(f"you may not read the mailbox root at {folder} (permission denied)",
                           hint="a root is private to its owner unless made with 'mailbox init "
                                "--mode group'; ask its owner, or use a root of your own") from exc
