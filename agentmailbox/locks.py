"""Cross-process exclusive locks (portalocker, flock): one way to take them everywhere.

Lock files are empty, created with the root's file mode (so members of a group root
can open them), and never deleted: deleting a lock file while someone waits on it
would let two holders in (see the portalocker notes in DESIGN). They are opened by
:meth:`fs.Disk.open_lock`, so a FIFO or link planted in their place is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LockTimeout
from .fs import Disk

if TYPE_CHECKING:
    import portalocker

__all__ = ["acquire", "held"]


def acquire(path: Path, disk: Disk, *, timeout: float, message: str, hint: str
            ) -> portalocker.Lock:
    """Take the lock at ``path`` within ``timeout`` seconds (0: one try), or raise.

    Raises:
        LockTimeout: someone else still holds it (with ``message`` and ``hint``).
    """
    # Imported here, not at the top: portalocker pulls in asyncio (~15 ms), and most
    # commands that import this module (through the registry) never take a lock.
    import portalocker

    disk.ensure_dir(path.parent)
    flags = portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
    lock = portalocker.Lock(str(path), mode="a", timeout=timeout,
                            check_interval=min(0.05, timeout or 0.05),
                            fail_when_locked=timeout == 0, flags=flags,
                            opener=lambda name, flags: _open(name, disk))
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


def _open(path: str, disk: Disk) -> int:
    """The lock file's descriptor (read only: ``flock`` needs no more), never blocking on
    a FIFO, never following a link (portalocker's own ``open`` would do both)."""
    return disk.open_lock(path)  # with the root's mode (Disk.share)
