"""The spool: where routed mail waits until the supervisor routes it.

::

    spool/tmp/       staging (same atomic publish as inboxes)
    spool/new/       posted, not yet routed                  <id>.json
    spool/cur/       being routed (a file here at start-up is replayed)
    spool/deferred/  some recipient was full, or no agent could be picked: retried
    spool/held/      its sender is over its rate: released as the rate allows
    spool/progress/  per recipient, what the inboxes cannot tell: failed deliveries
                     and recipients given up                  <id>.json

A sender posts into ``spool/new`` (:meth:`Spool.deliver`, or :meth:`Spool.stage`
then :meth:`Spool.publish_staged` in a batch); only the supervisor moves files
between the other folders, and only it reads and writes ``spool/progress``
(:mod:`agentmailbox.supervisor.progress`). A routed message leaves the spool when
every recipient is settled: it holds the message, or was given up as undeliverable
(the sender is told, a copy is buried). The file is then removed, and its progress
file after it. What it became is recorded in the journal (event ``route``: id,
from, recipients, expansion) and in the inboxes.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import layout, names
from .fs import Foreign, same_file, staging_name
from .message import Malformed, Message, decode
from .root import Root

__all__ = ["Spool"]


class Spool:
    """The ``spool/`` folders of one root: where routed mail waits for the supervisor."""

    FOLDERS = ("new", "cur", "deferred", "held")

    def __init__(self, root: Root) -> None:
        self._root = root
        self._disk = root.disk
        paths = root.paths.spool
        self.path = paths.path
        self.tmp = paths.tmp
        self.new = paths.new
        self.cur = paths.cur
        self.deferred = paths.deferred
        self.held = paths.held
        self.progress_dir = paths.progress

    def ensure(self) -> None:
        for folder in (self.tmp, *(self.path / f for f in self.FOLDERS), self.progress_dir):
            self._disk.ensure_dir(folder)

    def deliver(self, msg_id: str, data: bytes) -> bool:
        """Post an encoded message into ``spool/new``; False if that id is already there."""
        staged = self.stage(msg_id, data, sync=None)
        published = self.publish_staged(staged, msg_id)
        if published:
            self._disk.fsync_dir(self.new)
        return published

    def stage(self, msg_id: str, data: bytes, *, sync: bool | None = False) -> str:
        """First half of a post (used by batches): exclusive create in ``spool/tmp``."""
        return self._disk.stage(self.tmp, data, staging_name(names.check_id(msg_id)), sync=sync)

    def publish_staged(self, staged: str, msg_id: str) -> bool:
        """Second half: move the staged file into ``spool/new`` without replacing (False,
        the staged file removed, if it is already posted)."""
        return self._disk.place(staged, f"{self.new}/{layout.message_file(msg_id)}")

    def names(self, folder: Path) -> list[str]:
        """Message file names in one spool folder, oldest first."""
        return sorted(e.name for e in self._disk.scan(folder) if names.is_message_file(e.name))

    def foreign(self, folder: Path) -> list[Path]:
        """Entries of a spool folder that are not message files."""
        return [Path(e.path) for e in self._disk.scan(folder) if not names.is_message_file(e.name)]

    def find(self, msg_id: str) -> tuple[str, Path] | None:
        """Which spool folder holds ``msg_id`` (``new``, ``cur``, ``deferred``, ``held``)."""
        name = f"{names.check_id(msg_id)}.json"
        for folder in self.FOLDERS:
            path = self.path / folder / name
            if self._disk.exists(path):
                return folder, path
        return None

    def read(self, path: Path) -> tuple[Message, bytes]:
        """Read and decode one spooled message; raises Malformed/Foreign/FileNotFoundError."""
        data, st = self._disk.read(path, self._root.config.max_message_bytes)
        msg = decode(data, expected_id=path.name[:-5])
        if st.st_nlink > 1 and not self._own_link(path, st):
            raise Foreign("hard link to a file elsewhere (not written through spool/tmp/)")
        return msg, data

    def _own_link(self, path: Path, st: os.stat_result) -> bool:
        """A second link is ours while a post or a claim is between its link and unlink:
        the poster's staging name in ``spool/tmp``, or the same name in ``new/`` and
        ``cur/``. A link gone by the time we look was one of those."""
        msg_id = path.name[:-5]
        others = [self.new / path.name, self.cur / path.name]
        others += [Path(e.path) for e in self._disk.scan(self.tmp) if e.name.startswith(msg_id)]
        for other in others:
            found = self._disk.lstat(other) if other != path else None
            if found is not None and same_file(found, st):
                return True
        now = self._disk.lstat(path)
        return now is not None and now.st_nlink == 1

    def get(self, msg_id: str) -> tuple[str, Message] | None:
        """The spooled message ``msg_id`` and its folder, if it is still waiting."""
        found = self.find(msg_id)
        if found is None:
            return None
        try:
            return found[0], self.read(found[1])[0]
        except (FileNotFoundError, Foreign, Malformed):
            return None
