"""The outbound spool: one file per (message, remote recipient), until JetStream has it.

::

    bridge/tmp/                      staging (the same atomic publish as inboxes)
    bridge/out/<id>.<agent>@<host>.json    written by the sender, not yet acknowledged
    bridge/sent/<id>.<agent>@<host>.json   acknowledged by JetStream, kept for the grace period

A send to ``bob@gpu1`` posts its encoded message here (:meth:`Outbox.post`), which is all
the sender waits for: while NATS is unreachable, sends succeed and the spool grows. The
bridge publishes ``out/`` in name order (id order), and moves a file to ``sent/`` only
after the server's acknowledgement (:meth:`Outbox.mark_sent`). ``sent/`` is kept for a
grace period because JetStream may acknowledge before its own fsync (docs/BRIDGE.md):
after a crash of the NATS host, :meth:`Outbox.republish` moves the recent ones back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from .. import layout, names
from ..addresses import Remote
from ..fs import Foreign, Moved, same_file, staging_name
from ..root import Root

__all__ = ["Outbox"]


class Outbox:
    """The ``bridge/out`` and ``bridge/sent`` folders of one root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._disk = root.disk
        self._paths = root.paths

    def ensure(self) -> None:
        for folder in layout.made_folders("bridge"):
            self._disk.ensure_dir(self._root.path / folder)

    def post(self, msg_id: str, data: bytes, remotes: Iterable[Remote]) -> int:
        """Write one copy of an encoded message per remote recipient; how many were new.

        A copy already waiting (a retried send) stays as it is: one id names one content.
        """
        tmp, out = f"{self._paths.bridge_tmp}/", f"{self._paths.bridge_out}/"  # hot path: strings
        if self._disk.lstat(tmp) is None or self._disk.lstat(out) is None:
            self.ensure()
        posted = 0
        for remote in remotes:
            name = layout.outbound_file(names.check_id(msg_id), remote.agent, remote.host)
            staged = self._disk.stage(tmp, data, staging_name(msg_id))
            posted += self._disk.place(staged, out + name)
        if posted:
            self._disk.fsync_dir(self._paths.bridge_out)
        return posted

    def pending(self) -> list[str]:
        """The names waiting in ``out/``, oldest id first (foreign names are left alone)."""
        return sorted(e.name for e in self._disk.scan(self._paths.bridge_out)
                      if names.outbound_parts(e.name) is not None)

    def read(self, name: str) -> bytes:
        """The encoded message of one waiting copy: a regular file, bounded, with one link
        or the second one of its writer's staging name (a post between link and unlink).

        Raises:
            Foreign: anything else (a link, a FIFO, a hard link to a file elsewhere).
            FileNotFoundError: it is gone.
        """
        data, st = self._disk.read(self._paths.outbound(name),
                                   self._root.config.max_message_bytes)
        if st.st_nlink > 1 and not self._staged(name[:37], st):
            raise Foreign("hard link to a file elsewhere (not written through bridge/tmp/)")
        return data

    def _staged(self, msg_id: str, st: os.stat_result) -> bool:
        for entry in self._disk.scan(self._paths.bridge_tmp):
            if entry.name.startswith(msg_id):
                found = self._disk.lstat(entry.path)
                if found is not None and same_file(found, st):
                    return True
        return False

    def mark_sent(self, name: str) -> bool:
        """``out/<name>`` to ``sent/<name>``, after JetStream acknowledged it; False if gone.

        A copy ``sent/`` already holds (published again after a republish) is dropped from
        ``out/``: JetStream has it twice under one Nats-Msg-Id, the inbox stores it once.
        """
        moved = self._disk.move(self._paths.outbound(name), self._paths.sent(name))
        if moved is Moved.OCCUPIED:
            return self._disk.unlink(self._paths.outbound(name))
        return moved is Moved.MOVED

    def sweep_sent(self, grace_seconds: float) -> int:
        """Remove ``sent/`` copies acknowledged longer than ``grace_seconds`` ago."""
        horizon = time.time_ns() - int(grace_seconds * 1e9)
        removed = 0
        for name, st in self._sent():
            if st.st_ctime_ns < horizon:
                removed += self._disk.unlink(self._paths.sent(name))
        return removed

    def republish(self, grace_seconds: float) -> int:
        """Move ``sent/`` copies younger than the grace period back to ``out/`` (after the
        NATS host crashed: what it acknowledged but had not fsynced is published again)."""
        horizon = time.time_ns() - int(grace_seconds * 1e9)
        moved = 0
        for name, st in self._sent():
            if st.st_ctime_ns >= horizon:
                moved += self._disk.move(self._paths.sent(name),
                                         self._paths.outbound(name)) is Moved.MOVED
        return moved

    def _sent(self) -> list[tuple[str, os.stat_result]]:
        out = []
        for entry in self._disk.scan(self._paths.bridge_sent):
            st = self._disk.lstat(entry.path)
            if names.outbound_parts(entry.name) is not None and st is not None:
                out.append((entry.name, st))
        return out

    def depth(self) -> tuple[int, float | None]:
        """(copies waiting in ``out/``, age in seconds of the oldest by its id's stamp)."""
        waiting = self.pending()
        if not waiting:
            return 0, None
        stamp = int(waiting[0][:20])
        return len(waiting), max(0.0, (time.time_ns() - stamp) / 1e9)

    def sweep_tmp(self, stale_seconds: float) -> int:
        """Remove abandoned staging files (a sender that died mid-post)."""
        horizon = time.time_ns() - int(stale_seconds * 1e9)
        removed = 0
        for entry in self._disk.scan(self._paths.bridge_tmp):
            st = self._disk.lstat(entry.path)
            if st is not None and (st.st_nlink > 1 or st.st_mtime_ns < horizon):
                removed += self._disk.unlink(entry.path)
        return removed
