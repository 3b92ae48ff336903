"""The record the harness hooks keep for one agent: ``agents/<agent>/run/hooks.json``.

Three things, each small, in one JSON object (docs/INTEGRATIONS.md):

- ``surfaced``: the epoch and the ids of the unread, unclaimed mail already put in front
  of the model in that epoch (by the boot brief of ``hook session-start``, the line of
  ``hook prompt`` or ``hook wait``, a listing run as the agent, the MCP server:
  :mod:`agentmailbox.surfacing`), so the prompt hook speaks only of mail not in it.
- ``ended``: how the last session ended (``hook session-end``): its epoch, when, and
  whether it wrote a final handoff; the next boot brief says so when it did not.
- ``stop_blocked``: the epoch in which ``hook stop`` blocked last, so it never blocks
  twice in a row.

The file is replaced whole and atomically (:meth:`agentmailbox.fs.Disk.replace`), each
read-modify-write under :meth:`HookState.locked`: hooks of one agent do run at once (the
hooks of one event run in parallel, ``hook wait`` in the background), and none may lose
another's update or announce what another has just announced. A missing, foreign or
malformed file is the empty record: it only ever costs a repeated notice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .errors import MailboxError

if TYPE_CHECKING:
    from .root import Root

__all__ = ["LIMIT", "LOCK_WAIT", "Ended", "HookState"]

LIMIT = 1 << 24
"""The largest record read back: a surfaced set of 400,000 ids (40 bytes each) fits in it.
The set holds every unread id of the epoch's inbox, and a record written too large to be
read back would make the prompt hook announce all of them again at every prompt."""
LOCK_WAIT = 1.0
"""How long, in seconds, a hook waits for another's read-modify-write of the record (a few
milliseconds) before it goes on without the lock (a holder stopped for good)."""
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Ended:
    """How a session ended: recorded by ``hook session-end``."""

    epoch: int | None
    at: int
    """An HLC stamp (ns): a handoff whose id is stamped later was written after it."""
    handoff: bool
    """Whether a final handoff was written during that session's epoch."""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "at": self.at, "handoff": self.handoff,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, obj: Any) -> Ended | None:
        """The record, or None for anything not of its shape (a hand-edited file)."""
        if not isinstance(obj, dict):
            return None
        epoch, at = obj.get("epoch"), obj.get("at")
        if not (epoch is None or _is_int(epoch)) or not isinstance(at, int) or not _is_int(at):
            return None
        return cls(epoch, at, obj.get("handoff") is True, str(obj.get("reason") or ""))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class HookState:
    """Read and replace one agent's hook record."""

    def __init__(self, root: Root, agent: str) -> None:
        self._root = root
        self.path = root.paths.agent(agent).hooks
        self._held = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the agent's hook lock for a read-modify-write of the record (re-entrant).

        An flock on the agent's ``run/`` folder itself, so the lock adds no file to the
        layout. It is waited for at most :data:`LOCK_WAIT`, then done without (as when the
        folder cannot be opened): a hook never stalls, and a lost update costs a repeated
        notice at worst.
        """
        fd = None if self._held else self._lock()
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if fd is not None:
                os.close(fd)  # which releases the lock

    def _lock(self) -> int | None:
        try:
            self._root.disk.guard(self.path)
            fd = os.open(self.path.parent, _FOLDER_FLAGS)
        except (OSError, MailboxError):
            return None
        end = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() < end:
                    time.sleep(0.002)
                    continue
            except OSError:
                pass
            os.close(fd)
            return None

    def load(self) -> dict[str, Any]:
        """The record, or the empty one when the file is missing or not one we wrote: not
        a regular file with one name (a link, a FIFO, a folder, a second name of a file
        elsewhere), over :data:`LIMIT`, or not an object that can be written back (not
        JSON, a repeated key, nested deeper than orjson writes)."""
        try:
            return self._root.disk.read_object(self.path, LIMIT, one_name=True)
        except (FileNotFoundError, ValueError, MailboxError):
            return {}

    def update(self, **fields: Any) -> None:
        """Replace the record with its fields updated (None removes a field)."""
        with self.locked():
            record = {**self.load(), **fields}
            record = {k: v for k, v in record.items() if v is not None}
            self._root.disk.replace(self.path, orjson.dumps(record) + b"\n")

    def surfaced(self, epoch: int | None) -> set[str] | None:
        """The ids last surfaced in ``epoch``, or None if nothing was surfaced in it."""
        got = self.load().get("surfaced")
        if not isinstance(got, dict) or got.get("epoch") != epoch:
            return None
        ids = got.get("ids")
        return {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else None

    def set_surfaced(self, epoch: int | None, ids: set[str]) -> None:
        """Make ``ids`` the set surfaced in ``epoch``, unless the record holds the set of a
        later epoch (a hook of the session before, still running, must not undo what the
        new session's brief recorded)."""
        with self.locked():
            got = self.load().get("surfaced")
            later = got.get("epoch") if isinstance(got, dict) else None
            if isinstance(later, int) and isinstance(epoch, int) and later > epoch:
                return
            self.update(surfaced={"epoch": epoch, "ids": sorted(ids)})

    def add_surfaced(self, epoch: int | None, ids: list[str]) -> None:
        """Add ``ids`` to the set surfaced in ``epoch`` (a set of another epoch is dropped)."""
        with self.locked():
            before = self.surfaced(epoch) or set()
            if not before.issuperset(ids):
                self.set_surfaced(epoch, before.union(ids))

    def ended(self) -> Ended | None:
        return Ended.from_dict(self.load().get("ended"))

    def set_ended(self, ended: Ended) -> None:
        self.update(ended=ended.to_dict())

    def stop_blocked(self, epoch: int | None) -> bool:
        """Whether the last ``hook stop`` of ``epoch`` blocked."""
        got = self.load().get("stop_blocked")
        return isinstance(got, dict) and got.get("epoch") == epoch

    def set_stop_blocked(self, epoch: int | None, blocked: bool) -> None:
        self.update(stop_blocked={"epoch": epoch} if blocked else None)
