"""The supervisor lock: one supervisor per root.

An flock on ``run/supervisor.lock`` (never deleted) is held for as long as the
supervisor runs; ``run/supervisor.json`` names the process that took it last, for
the error a second supervisor gets and for :func:`running_supervisor`, the hint
senders of routed mail get.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from .. import locks
from ..errors import MailboxError
from ..fs import Disk
from ..mailbox import Mailbox
from ..message import iso

if TYPE_CHECKING:  # locks.acquire imports it when a lock is taken: a sender never pays
    import portalocker

__all__ = ["acquire", "running_supervisor"]

# The largest pid Linux hands out (PID_MAX_LIMIT, the ceiling of kernel.pid_max):
# a hand-edited holder record past it names no process, and os.kill overflows on it.
_PID_MAX = 4_194_304


def acquire(mb: Mailbox) -> portalocker.Lock:
    """Take the supervisor lock of ``mb`` at once and record this process as its holder.

    Raises:
        LockTimeout: another supervisor holds it (the message names its pid).
    """
    paths = mb.root.paths
    mb.root.disk.ensure_dir(paths.run)
    lock = locks.acquire(paths.supervisor_lock, mb.root.disk, timeout=0,
                         message=f"a supervisor is already running for {mb.path}"
                                 f"{_holder(paths.supervisor_record, mb.root.disk)}",
                         hint="one per root: stop that one first, or leave it running")
    try:
        mb.root.disk.replace(paths.supervisor_record, _holder_record())
    except BaseException:
        lock.release()
        raise
    return lock


def running_supervisor(mb: Mailbox) -> int | None:
    """The pid of the supervisor last started on this root, if that process is alive.

    A hint for senders of routed mail (it waits in the spool until one runs), read
    from ``run/supervisor.json`` without touching the lock, so it can never get in
    the way of a supervisor starting. A recycled pid can make it say yes wrongly.
    """
    pid = _recorded_pid(mb.root.paths.supervisor_record, mb.root.disk)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by another user
    return pid


def _holder_record() -> bytes:
    return orjson.dumps({"pid": os.getpid(), "started": iso(time.time_ns())})


def _holder(record: Path, disk: Disk) -> str:
    pid = _recorded_pid(record, disk)
    return f" (pid {pid})" if pid is not None else ""


def _recorded_pid(record: Path, disk: Disk) -> int | None:
    try:
        pid = disk.read_object(record, 1 << 12).get("pid")
    except (OSError, MailboxError, ValueError):
        return None
    ok = isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= _PID_MAX
    return pid if ok else None
