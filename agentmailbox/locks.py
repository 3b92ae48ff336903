"""Cross-process exclusive locks (portalocker, flock): one way to take them everywhere.

Lock files are empty, created with the root's file mode (so members of a group root
can open them), and never deleted: deleting a lock file while someone waits on it
would let two holders in (see the portalocker notes in DESIGN).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import portalocker

from .errors import LockTimeout, from_oserror
from .fs import Disk

__all__ = ["acquire", "held"]

_FLAGS = portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING


def acquire(path: Path, disk: Disk, *, timeout: float, message: str, hint: str
            ) -> portalocker.Lock:
    """Take the lock at ``path`` within ``timeout`` seconds (0: one try), or raise.

    Raises:
        LockTimeout: someone else still holds it (with ``message`` and ``hint``).
    """
    _create(path, disk)
    lock = portalocker.Lock(str(path), mode="a", timeout=timeout,
                            check_interval=min(0.05, timeout or 0.05),
                            fail_when_locked=timeout == 0, flags=_FLAGS)
    try:
        lock.acquire()
    except portalocker.LockException as exc:
        raise LockTimeout(message, hint=hint) from exc
    return lock


@contextlib.contextmanager
def held(path: Path, disk: Disk, *, timeout: float, message: str, hint: str
         ) -> Iterator[None]:
    """Hold the lock at ``path`` for a block (see :func:`acquire`)."""
    lock = acquire(path, disk, timeout=timeout, message=message, hint=hint)
    try:
        yield
    finally:
        lock.release()


def _create(path: Path, disk: Disk) -> None:
    disk.ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     disk.file_mode)
    except OSError as exc:
        raise from_oserror(exc, "create lock file", str(path)) from exc
    try:
        disk.share(fd)
    finally:
        os.close(fd)
