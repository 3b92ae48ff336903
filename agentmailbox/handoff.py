"""The handoff: a short typed note from an agent instance to the next one.

Five sections, each a short list: what was **in progress**, what was **decided**
(and why), what comes **next**, what **can wait**, and who we are **waiting on**
(an agent and a message or thread id). It is a message of kind ``handoff``, stored
in ``agents/<name>/handoffs/<id>.json``; the newest supersedes the older ones, which
stay as history. A budget (bytes and items per section) keeps it a handoff, not a
dump: the next instance needs decisions, not data.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import names
from .errors import HandoffTooLarge, InvalidInput
from .fs import Foreign, dump_object, faults
from .message import Malformed, Message, decode, encode, iso, stamp_of
from .root import Root

__all__ = ["SECTIONS", "Handoff", "HandoffStore", "Waiting", "parse_markdown"]

SECTIONS = ("in_progress", "decided", "next", "can_wait", "waiting_on")
TITLES = {"in_progress": "In progress", "decided": "Decided (and why)", "next": "Next",
          "can_wait": "Can wait", "waiting_on": "Waiting on"}
DEFAULT_MAX_BYTES = 4096
DEFAULT_MAX_ITEMS = 7
FLOOR_AHEAD_NS = 366 * 86_400 * 10**9
"""How far past the wall clock a stamp read from a file (a handoff's name, a boot's
``at``) may be and still be a floor for the next one: a clock stepped back between two
instances is covered; a stamp further ahead (planted, or a clock set years wrong) would
push every later stamp past what ids and records can hold, so it is ignored."""


def plausible(stamp: int) -> bool:
    """Whether a stamp read from a file may order what is written next (see above)."""
    return stamp <= time.time_ns() + FLOOR_AHEAD_NS


@dataclass(frozen=True, slots=True)
class Waiting:
    """Something the next instance waits for: from ``agent``, about message or thread ``ref``."""

    agent: str
    ref: str
    note: str = ""

    @classmethod
    def parse(cls, spec: str) -> Waiting:
        """``agent:ID`` or ``agent:ID:note`` (the CLI form)."""
        agent, _, rest = spec.partition(":")
        ref, _, note = rest.partition(":")
        return cls.from_dict({"agent": agent, "ref": ref, "note": note})

    @classmethod
    def from_dict(cls, obj: Any) -> Waiting:
        if not isinstance(obj, dict):
            raise InvalidInput(f"waiting_on entries are objects, not {type(obj).__name__}",
                               hint='use {"agent": "alice", "ref": "<message or thread id>"}')
        agent, ref = obj.get("agent"), obj.get("ref") or obj.get("id") or obj.get("thread")
        agent = names.check_agent(agent if isinstance(agent, str) else "")
        ref = names.check_id(ref if isinstance(ref, str) else "")
        return cls(agent, ref, str(obj.get("note") or ""))

    def to_dict(self) -> dict[str, str]:
        return {"agent": self.agent, "ref": self.ref, "note": self.note}


STORED = ("id", "at", "epoch", "final")
"""What :meth:`Handoff.to_dict` adds to the sections; :meth:`Handoff.from_dict` ignores it."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """The five sections. Empty sections are allowed; an empty handoff is not."""

    in_progress: tuple[str, ...] = ()
    decided: tuple[str, ...] = ()
    next: tuple[str, ...] = ()
    can_wait: tuple[str, ...] = ()
    waiting_on: tuple[Waiting, ...] = ()
    id: str = ""
    at: str = ""
    epoch: int | None = None
    final: bool = True
    """False for a checkpoint written while still working; True for the note at stop."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> Handoff:
        """Build from JSON-like data; raises :class:`InvalidInput` on a schema error."""
        if not isinstance(obj, dict):
            raise InvalidInput("a handoff is a JSON object with the five sections",
                               hint=f"keys: {', '.join(SECTIONS)}")
        # What `handoff --show --json` prints is accepted back: the stored note's own id,
        # time, epoch and final flag are its record, not content, and a new write sets them.
        unknown = set(obj) - set(SECTIONS) - set(STORED)
        if unknown:
            raise InvalidInput(f"unknown handoff sections: {sorted(unknown)}",
                               hint=f"use: {', '.join(SECTIONS)}")
        texts = {s: _texts(obj.get(s), s) for s in SECTIONS[:4]}
        waits = obj.get("waiting_on") or []
        if not isinstance(waits, list):
            raise InvalidInput("waiting_on must be a list")
        return cls(texts["in_progress"], texts["decided"], texts["next"], texts["can_wait"],
                   tuple(Waiting.from_dict(w) for w in waits))

    def sections(self) -> dict[str, Any]:
        return {"in_progress": list(self.in_progress), "decided": list(self.decided),
                "next": list(self.next), "can_wait": list(self.can_wait),
                "waiting_on": [w.to_dict() for w in self.waiting_on]}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "epoch": self.epoch, "final": self.final,
                **self.sections()}

    def is_empty(self) -> bool:
        return not any(self.sections().values())

    def check_budget(self, max_bytes: int, max_items: int) -> None:
        """Refuse an overloaded handoff, saying exactly what to cut."""
        problems = [f"{s}: {len(v)} items, budget {max_items}: keep the {max_items} that matter"
                    for s, v in self.sections().items() if len(v) > max_items]
        size = len(dump_object(self.sections(), "handoff"))
        if size > max_bytes:
            longest = max(SECTIONS, key=lambda s: len(orjson.dumps(self.sections()[s])))
            problems.append(f"{size} bytes, budget {max_bytes}: cut {size - max_bytes} bytes "
                            f"(largest section: {longest})")
        if problems:
            raise HandoffTooLarge(problems)

    def to_markdown(self) -> str:
        lines = []
        for s in SECTIONS:
            items = [f"{w.agent}:{w.ref}" + (f" ({w.note})" if w.note else "")
                     for w in self.waiting_on] if s == "waiting_on" else getattr(self, s)
            if items:
                lines += [f"## {TITLES[s]}", *(f"- {i}" for i in items), ""]
        return "\n".join(lines).rstrip() + "\n"


def _texts(value: Any, section: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"{section} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


_HEADING = re.compile(r"^#+\s*(.+?)\s*:?\s*$")


def parse_markdown(text: str) -> Handoff:
    """Read the Markdown form: ``## In progress`` headings with ``- item`` bullets."""
    keyed = {_section_key(t): s for s, t in TITLES.items() for t in (t, s, s.replace("_", " "))}
    obj: dict[str, list[Any]] = {}
    current = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = keyed.get(_section_key(heading.group(1)))
            if current is None:
                raise InvalidInput(f"unknown handoff heading {heading.group(1)!r}",
                                   hint=f"use: {', '.join(TITLES.values())}")
        elif line.strip().startswith(("- ", "* ")) and current:
            item = line.strip()[2:].strip()
            obj.setdefault(current, []).append(
                Waiting.parse(item.split()[0]).to_dict() | {"note": " ".join(item.split()[1:])}
                if current == "waiting_on" else item)
    return Handoff.from_dict(obj)


def _section_key(title: str) -> str:
    return re.sub(r"[^a-z]", "", title.lower().split("(")[0])


class HandoffStore:
    """The handoffs of one agent: write one, read the newest, list the history."""

    def __init__(self, root: Root, agent: str) -> None:
        self._root = root
        self.agent = names.check_agent(agent)
        self._paths = root.paths.agent(agent)
        self.directory = self._paths.handoffs

    def write(self, handoff: Handoff, *, epoch: int | None = None, after: int = 0) -> Handoff:
        """Store ``handoff`` durably (fsync file and folder whatever the policy), or raise.

        ``handoff.final`` tells the next boot whether this was the note written at a
        clean stop (True) or a checkpoint written while still working (False).

        Its id sorts after every handoff already here and after the stamp ``after``
        (the writer's boot), whatever the wall clock says: the newest id is the
        current handoff, so a clock stepped back since the last one must not make
        the new note look older than the one it supersedes.
        """
        if handoff.is_empty():
            raise InvalidInput("empty handoff: say at least what is in progress or next")
        cfg = self._root.config.extra.get("handoff") or {}  # checked when the root opened
        handoff.check_budget(cfg.get("max_bytes") or DEFAULT_MAX_BYTES,
                             cfg.get("max_items") or DEFAULT_MAX_ITEMS)
        msg_id = self._root.clock.new_id(after=max(after, self.newest_stamp()))
        msg = Message(id=msg_id, sender=self.agent, to=(self.agent,),
                      subject="handoff" if handoff.final else "checkpoint",
                      body=handoff.sections(), kind="handoff", ts=iso(time.time_ns()),
                      epoch=epoch, headers={"final": "true" if handoff.final else "false"})
        data = encode(msg, self._limit())
        disk = self._root.disk
        staged = disk.stage(self.directory, data, sync=True)
        try:
            faults.hit("handoff.staged")
        except BaseException:
            disk.unlink(staged)
            raise
        disk.place(staged, str(self._paths.handoff(msg_id)))
        disk.sync_dir(self.directory)
        self._root.journal.record("handoff", agent=self.agent, id=msg_id, epoch=epoch)
        return self._from_message(msg)

    def ids(self) -> list[str]:
        """The handoffs here, oldest first; those stamped far in the future are not
        (:meth:`future_ids`: doctor reports and quarantines them)."""
        return [i for i in self._all_ids() if plausible(stamp_of(i))]

    def future_ids(self) -> list[str]:
        """Handoff files stamped further ahead of the clock than :data:`FLOOR_AHEAD_NS`."""
        return [i for i in self._all_ids() if not plausible(stamp_of(i))]

    def _all_ids(self) -> list[str]:
        return sorted(e.name[:-5] for e in self._root.disk.scan(self.directory)
                      if names.is_message_file(e.name))

    def newest_stamp(self) -> int:
        """The stamp of the newest handoff file here (readable or not); 0 if none."""
        found = self.ids()
        if self.future_ids():
            warnings.warn(f"{self.agent}: handoff file(s) stamped far in the future are "
                          "ignored; run: mailbox doctor --repair", stacklevel=2)
        return stamp_of(found[-1]) if found else 0

    def latest(self) -> Handoff | None:
        """The newest readable handoff, or None."""
        for msg_id in reversed(self.ids()):
            found = self._load(msg_id)
            if found is not None:
                return found
        return None

    def history(self) -> list[Handoff]:
        """Every handoff, oldest first."""
        return [h for h in map(self._load, self.ids()) if h is not None]

    def _load(self, msg_id: str) -> Handoff | None:
        try:
            data, _ = self._root.disk.read(self._paths.handoff(msg_id), self._limit())
            msg = decode(data, expected_id=msg_id)
            return self._from_message(msg)
        except (FileNotFoundError, Foreign, Malformed, InvalidInput):
            return None

    def _limit(self) -> int:
        """The largest handoff file, for the writer and the reader alike (a message's)."""
        return self._root.config.max_message_bytes

    @staticmethod
    def _from_message(msg: Message) -> Handoff:
        h = Handoff.from_dict(msg.body)
        return Handoff(h.in_progress, h.decided, h.next, h.can_wait, h.waiting_on,
                       id=msg.id, at=msg.ts, epoch=msg.epoch,
                       final=msg.headers.get("final", "true") != "false")
