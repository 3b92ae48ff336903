"""Thin Linux system-call helpers for the benchmark: inotify, syncfs, directory fsync."""

from __future__ import annotations

import ctypes
import os
import select
import struct

IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
READ_SIZE = 64 * 1024
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


def _count_events(chunk: bytes) -> int:
    """Events in one read of an inotify descriptor (16-byte header + name each)."""
    count, offset = 0, 0
    while offset + _EVENT_HEADER.size <= len(chunk):
        _, _, _, length = _EVENT_HEADER.unpack_from(chunk, offset)
        offset += _EVENT_HEADER.size + length
        count += 1
    return count


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
    """Raw inotify watches on directories, for files created or moved into them."""

    def __init__(self, *paths: str, mask: int = IN_MOVED_TO | IN_CREATE) -> None:
        libc = _libc()
        self.fd = _check(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        for path in paths:
            _check(libc.inotify_add_watch(self.fd, os.fsencode(path), mask),
                   "inotify_add_watch")

    def wait(self, timeout: float) -> bool:
        """Block until an event arrives or `timeout` passes; consume pending events."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            self._discard_events()
        return bool(ready)

    def _discard_events(self) -> None:
        self.read_events()

    def read_events(self) -> int:
        """Consume every pending event without blocking; return how many there were."""
        count = 0
        try:
            while chunk := os.read(self.fd, READ_SIZE):
                count += _count_events(chunk)
        except BlockingIOError:
            pass
        return count

    def stop(self) -> None:
        """Same as `close` (so an idle watch of any contestant can be stopped alike)."""
        self.close()

    def close(self) -> None:
        """Release the inotify descriptor."""
        os.close(self.fd)
