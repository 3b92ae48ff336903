"""Thin Linux system-call helpers for the benchmark: inotify, syncfs, directory fsync."""

from __future__ import annotations

import ctypes
import os
import select

IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
READ_SIZE = 64 * 1024


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def fsync_dir(path: str) -> None:
    """Make the entries of directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: str) -> None:
    """Flush the whole file system holding `path` (falls back to os.sync)."""
    libc = _libc()
    if not hasattr(libc, "syncfs"):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _check(libc.syncfs(fd), "syncfs")
    finally:
        os.close(fd)


class Inotify:
    """A raw inotify watch on one directory, for files created or moved into it."""

    def __init__(self, path: str, mask: int = IN_MOVED_TO | IN_CREATE) -> None:
        libc = _libc()
        self.fd = _check(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        _check(libc.inotify_add_watch(self.fd, os.fsencode(path), mask), "inotify_add_watch")

    def wait(self, timeout: float) -> bool:
        """Block until an event arrives or `timeout` passes; consume pending events."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            self._discard_events()
        return bool(ready)

    def _discard_events(self) -> None:
        try:
            while os.read(self.fd, READ_SIZE):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the inotify descriptor."""
        os.close(self.fd)
