"""The atomic file primitives; the only module that links, renames or fsyncs.

Every transition of the protocol is one ``link``, ``rename`` or exclusive create
made here. Expected outcomes (the name exists, the file is gone) come back as
``False``/``None``; any other ``OSError`` is translated by :func:`errors.from_oserror`.
"""

from __future__ import annotations

import enum
import errno
import functools
import json
import os
import random
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import DiskFull, InvalidInput, StorageError, from_oserror

StrPath = str | os.PathLike[str]

__all__ = ["GONE", "MOVED", "NEVER", "OCCUPIED", "POINTS", "TRUST_SECONDS", "Disk",
           "FolderSyncs", "Foreign", "Fsync", "Moved", "check_unique_keys", "dump_object",
           "faults", "hidden_name", "kind_of", "libc_function", "parse_object", "pid",
           "read_open", "refused", "same_file", "staging_name", "staging_suffix"]

_CHUNK = 1 << 20  # how much of a log one read takes
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted where a log or lock file belongs must fail, not wait
# for ever for a reader; it changes nothing for the regular file expected there.
_APPEND_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC)
_LOCK_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Fsync(enum.StrEnum):
    """When data reaches the disk before a send (or a done) returns."""

    ALWAYS = "always"  # fsync each file before it is linked, then its directory; every
    #                    done fsyncs its done/<day>/ folder, inside a batch too
    BATCH = "batch"    # inside Mailbox.batch(): one syncfs for the batch, then link all,
    #                    and each done/<day>/ folder touched fsynced once at its end;
    #                    outside a batch, every write is as durable as under ALWAYS
    NEVER = "never"    # no fsync: for tests and tmpfs


NEVER = Fsync.NEVER
"""``Fsync.NEVER`` as a plain name (see :data:`MOVED`)."""


class Moved(enum.Enum):
    """What a rename that never replaces found (:meth:`Disk.move`)."""

    MOVED = "moved"        # the name moved: the caller now owns the file under its new name
    GONE = "gone"          # the source name was gone (someone else moved it first)
    OCCUPIED = "occupied"  # the destination name exists (another file, or another name of it)


MOVED, GONE, OCCUPIED = Moved.MOVED, Moved.GONE, Moved.OCCUPIED
"""The outcomes of :meth:`Disk.move` as plain names, for the paths that run per message: on
Python 3.11 every ``Moved.X`` goes through the enum class's ``__getattr__``, which costs
ten times a global look-up (about 550 instructions against 50)."""


class Foreign(Exception):
    """A file that is not a message of ours: a symlink, FIFO, directory, or too large.

    Internal: readers turn it into a quarantine with ``reason``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Every fault-injection point, named ``<transition>.<step>``, and what has happened on
# disk when it fires. tests/test_crash_points.py dies at each one and checks recovery;
# docs/RELIABILITY.md tabulates them. A ``faults.hit`` with a name not listed here
# fails the tests.
POINTS: dict[str, str] = {
    "stage.written": "a staging file is written in full but not yet fsynced or linked",
    "send.staged": "the message is staged (written, fsynced) in <inbox>/tmp/; "
                   "new/ does not hold it",
    "send.published": "the message is renamed into new/ (delivered); tmp/ no longer "
                      "holds it; new/ not yet fsynced",
    "publish.linked": "a staged file is linked to its destination (no RENAME_NOREPLACE "
                      "here, or a process's first publish); its staging name is still there",
    "send.key_marked": "the idempotency-key marker names the message id; "
                       "no inbox holds the message yet",
    "settle.held": "the claimer's copy of X is under its own hold name in cur/; "
                   "X's destination is held by another copy",
    "claim.moved": "new/X is renamed to cur/X (the claim is made); "
                   "the lease is not yet set",
    "claim.taken": "cur/X holds the claim and its lease has started; "
                   "not yet read, journalled or receipted",
    "receipt.pending": "the message is claimed and journalled; the read receipt "
                       "the sender asked for is not yet sent",
    "done.moved": "cur/X is renamed into done/<day>/; the folder is not fsynced, "
                  "nothing journalled",
    "release.moved": "cur/X is renamed back to new/X; not journalled",
    "quarantine.reason_written": "dead/<dead-id>.reason.json exists; "
                                 "the file has not moved yet",
    "route.claimed": "spool/new/X is moved to spool/cur/X; no recipient holds it",
    "route.delivered": "the first recipient holds X, the others not yet; "
                       "spool/cur/X remains",
    "route.recorded": "every recipient holds X and the route is journalled; "
                      "spool/cur/X is not yet removed",
    "handoff.staged": "the handoff is staged (fsynced) in handoffs/ under a hidden "
                      "name; not linked",
    "state.locked": "the agent's state lock is held and state.json read; "
                    "nothing written",
    "replace.staged": "the replacement is staged (fsynced) beside its target, which "
                      "still holds the old content",
    "ws.versioned": "version N+1 is moved into workspace/.versions/ (committed); "
                    "the view still shows version N",
}


class _Faults:
    """Named fault-injection points, armed by ``$AGENTMAILBOX_FAULT=point[:action]``.

    Used by the crash tests: a child process dies exactly at a named point,
    between two system calls. Unarmed, each point costs one attribute test.
    The points are listed in :data:`POINTS`.
    """

    def __init__(self) -> None:
        spec = os.environ.get("AGENTMAILBOX_FAULT", "")
        self.point, _, self.action = spec.partition(":")

    def hit(self, point: str) -> None:
        if self.point and self.point == point:
            if self.action == "raise":
                raise DiskFull(f"injected fault at {point}")
            os._exit(77)  # like SIGKILL: no cleanup, no flush


faults = _Faults()


class _Pid:
    """This process's id, read once and again after a fork (no system call per message)."""

    value = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.value = os.getpid()


os.register_at_fork(after_in_child=_Pid.refresh)


def pid() -> int:
    """The current process id (cached; correct in forked children too)."""
    return _Pid.value


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """True if two stat results are the same file (one inode, two names)."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def kind_of(st: os.stat_result | None) -> str:
    """What a file is, in words, for error messages: ``"a FIFO"``, ``"a symbolic link"``..."""
    if st is None:
        return "gone"
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return "a hard link (the file has another name elsewhere)"
    for test, words in _KINDS:
        if test(st.st_mode):
            return words
    return "a special file"


_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def refused(path: StrPath, st: os.stat_result | None, expected: str) -> StorageError:
    """The error for a file of the wrong kind where the layout expects ``expected``."""
    return StorageError(f"{path} is {kind_of(st)}, not {expected}: refusing to use it "
                        "(run mailbox doctor)", path=str(path))


def hidden_name() -> str:
    """``.<16 hex>.tmp``: a name of this writer's own beside a target (doctor knows it)."""
    import secrets  # here: it pulls in hmac and OpenSSL, which reading mail never needs

    return f".{secrets.token_hex(8)}.tmp"


def staging_name(msg_id: str) -> str:
    """``<id>.<pid>.<6 hex>``: starts with the id, so a reader can find it by prefix."""
    return f"{msg_id}.{staging_suffix()}"


def staging_suffix() -> str:
    """``<pid>.<6 hex>``: what makes a staging name unique among writers of one id."""
    return f"{_Pid.value}.{random.getrandbits(24):06x}"


_monotonic = time.monotonic
TRUST_SECONDS = 1.0
"""How long a folder found real (not a link) is trusted before it is looked at again."""


class _Publishes:
    """Whether :meth:`Disk.place` renames yet: renameat2 is reached through ctypes, whose
    import (2 to 3 ms) costs a one-shot ``mailbox send`` more than its whole send
    (docs/PERFORMANCE.md, "Startup"). So a process's first publish links and unlinks
    unless ctypes is loaded already (by a claim); from its second on it renames."""

    rename = False
    linked = False

    @classmethod
    def may_rename(cls) -> bool:
        if "ctypes" in sys.modules or cls.linked:
            cls.rename = True
        cls.linked = True
        return cls.rename


@dataclass(frozen=True, slots=True)
class Disk:
    """The file operations of one root, with its fsync policy and permission modes.

    Every path below ``base`` (the root) is checked before use: each folder between the
    root and the file must be a real folder, not a symbolic link or anything else, or
    :class:`StorageError` is raised and nothing is touched. The last component is
    never followed either (``O_NOFOLLOW``, ``lstat``, links moved as links).
    """

    fsync: Fsync = Fsync.ALWAYS
    file_mode: int = 0o600
    dir_mode: int = 0o700
    base: str = ""
    _trusted: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    # -- the folders of the root are never followed ------------------------------------

    def guard(self, path: StrPath) -> None:
        """Refuse ``path`` if a folder between the root and it is a link or not a folder.

        Each folder is looked at with ``lstat`` (never followed); one found real is
        trusted for :data:`TRUST_SECONDS`, so the hot paths pay a dictionary look-up.
        A missing folder passes (nothing to follow; the call itself then fails).
        """
        if not self.base:
            return
        # The hot paths pass strings: cutting at the last "/" is several times cheaper
        # than os.path.dirname (one guard per file operation, several per message).
        self._guard_at(path, _monotonic())

    def _guard_at(self, path: StrPath, now: float) -> None:
        """:meth:`guard` with the clock read already (a move guards two names with one)."""
        text = path if type(path) is str else os.fspath(path)
        if self._trusted.get(text.rpartition("/")[0], 0.0) <= now:
            self._check_folders(os.path.dirname(text))

    def _check_folders(self, folder: str) -> None:
        base = self.base
        if not folder.startswith(base + "/"):
            return  # the root itself, or a path outside the root (a --body-file...)
        now = time.monotonic()
        here = base
        for part in folder[len(base) + 1:].split("/"):
            here = f"{here}/{part}"
            if self._trusted.get(here, 0.0) > now:
                continue
            try:
                st = os.lstat(here)
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                raise from_oserror(exc, "look at", here) from exc
            if not stat.S_ISDIR(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
                raise StorageError(f"{here} is {what} where a folder of the root belongs "
                                   "(never followed); mailbox doctor --repair puts a real "
                                   "folder back", path=here)
            self._trusted[here] = now + TRUST_SECONDS

    def check_folder(self, path: StrPath) -> None:
        """Refuse ``path`` itself as well as its parents unless each is a real folder."""
        self.guard(os.path.join(os.fspath(path), "-"))

    # -- directories --------------------------------------------------------------

    def ensure_dir(self, path: Path) -> None:
        """Create ``path`` and missing parents with this root's directory mode (umask aside).

        A symlink (or any non-directory) where a folder should be is refused, never
        followed: nothing may be written outside the root through a planted link.
        """
        self.guard(path)
        st = self.lstat(path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return
        missing = []
        while st is None:
            missing.append(path)
            path = path.parent
            st = self.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{path} is not a directory (a link or a file?)", path=str(path))
        for folder in reversed(missing):
            try:
                os.mkdir(folder, self.dir_mode)
            except FileExistsError:
                continue
            except OSError as exc:
                raise from_oserror(exc, "create directory", str(folder)) from exc
            os.chmod(folder, self.dir_mode)  # mkdir's mode is masked by the umask

    def real_folder(self, top: Path, folder: Path) -> bool:
        """Whether ``folder`` exists, every folder from below ``top`` down to it looked at
        without following a link; False if one of them does not exist (yet).

        Raises:
            StorageError: one of them is a link, a file or a FIFO, not a real folder.
        """
        path = top
        for part in folder.relative_to(top).parts:
            path = path / part
            st = self.lstat(path)
            if st is None:
                return False
            if not stat.S_ISDIR(st.st_mode):
                raise refused(path, st, "a folder")
        return True

    def fsync_dir(self, path: StrPath) -> None:
        """Make the names in directory ``path`` durable (unless the policy is ``never``)."""
        if self.fsync is not NEVER:
            self.sync_dir(path)

    def sync_dir(self, path: StrPath) -> None:
        self.check_folder(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise from_oserror(exc, "open directory", str(path)) from exc
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def names(self, path: StrPath) -> list[str]:
        """The names in folder ``path`` (unsorted), as :meth:`scan` finds them but without
        an entry object per name (a claim's refill lists ``new/`` twice)."""
        self.check_folder(path)
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise from_oserror(exc, "list", str(path)) from exc

    def scan(self, path: StrPath) -> Iterator[os.DirEntry[str]]:
        """Entries of folder ``path`` (unsorted); a missing folder is empty, a link where
        it should be is refused (:meth:`guard`)."""
        self.check_folder(path)
        try:
            with os.scandir(path) as it:
                yield from it
        except FileNotFoundError:
            return
        except OSError as exc:
            raise from_oserror(exc, "list", str(path)) from exc

    # -- writing --------------------------------------------------------------------

    def stage(self, directory: StrPath, data: bytes, name: str | None = None,
              *, sync: bool | None = None) -> str:
        """Exclusively create a new file in ``directory`` holding ``data``; returns its path.

        On any failure the partial file is removed, so nothing half-written stays.
        ``sync`` defaults to the policy (anything but ``never`` fsyncs the file).
        """
        name = name or hidden_name()
        if isinstance(directory, str) and directory.endswith("/"):
            path = directory + name  # the hot path: inboxes pass "<inbox>/tmp/"
        else:
            path = os.path.join(directory, name)
        self.guard(path)
        try:
            fd = os.open(path, _CREATE_FLAGS, self.file_mode)
        except OSError as exc:
            raise from_oserror(exc, "create file", str(path)) from exc
        try:
            self._fill(fd, data, self.fsync is not Fsync.NEVER if sync is None else sync)
        except OSError as exc:
            os.close(fd)
            self.unlink(path)
            raise from_oserror(exc, "write file", str(path)) from exc
        except BaseException:
            os.close(fd)
            self.unlink(path)
            raise
        os.close(fd)
        return path

    def share(self, fd: int) -> None:
        """Give a file this root's mode: the umask must not take a group root's access away
        (every member appends to the journal and event memory, and claims any mail)."""
        if self.file_mode & 0o060 and os.fstat(fd).st_mode & 0o777 != self.file_mode:
            try:
                os.fchmod(fd, self.file_mode)
            except PermissionError:
                pass  # another member's file, which only its owner may change

    def _fill(self, fd: int, data: bytes, sync: bool) -> None:
        self.share(fd)
        written = os.write(fd, data)
        if written < len(data):  # short (a signal, a disk nearly full): write the rest
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view):]
        faults.hit("stage.written")
        if sync:
            os.fsync(fd)

    def publish(self, staged: StrPath, dest: StrPath) -> bool:
        """Link ``staged`` to ``dest`` without replacing. False if ``dest`` exists."""
        self.guard(staged)
        self.guard(dest)
        try:
            os.link(staged, dest, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as exc:
            raise from_oserror(exc, "publish", str(dest)) from exc
        return True

    def place(self, staged: str, dest: str) -> bool:
        """Move the file ``staged`` (from :meth:`stage`) to ``dest``, never replacing it:
        one ``renameat2(RENAME_NOREPLACE)``, so ``dest`` never shares an inode with a
        staging name. True if ``dest`` now holds it; False if ``dest`` exists (nothing new
        is stored: the staged file is removed). The staged name is gone either way.

        On a filesystem without the flag, ``link`` then ``unlink`` of the staged name
        (exclusive as well, PROTOCOL.md §9.1), never a look at ``dest`` and a rename; and
        so is a process's first publish while ctypes is not loaded (see :class:`_Publishes`).

        Only ``dest`` is guarded: ``staged`` is a name :meth:`stage` made in a folder it
        guarded (one guard per folder per delivery), and a rename from it writes nothing
        outside the root.

        Raises:
            StorageError: the staged file or the folder of ``dest`` is gone; the staged
                file is removed.
        """
        self.guard(dest)
        if not _Publishes.rename and not _Publishes.may_rename():
            return self._place_by_link(staged, dest)
        result = _rename_noreplace(_encoded(staged), _encoded(dest))
        if result == 0:
            return True
        if result in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            return self._place_by_link(staged, dest)
        self.unlink(staged)
        if result == errno.EEXIST:
            return False
        raise from_oserror(OSError(result, os.strerror(result), dest), "publish", dest)

    def _place_by_link(self, staged: str, dest: str) -> bool:
        try:
            linked = self.publish(staged, dest)
            if linked:
                faults.hit("publish.linked")
        finally:
            self.unlink(staged)
        return linked

    def replace(self, path: Path, data: bytes) -> None:
        """Atomically replace ``path`` with ``data`` (state files, views): write, fsync, rename."""
        self.guard(path)
        # doctor --repair removes staging files it finds abandoned (by age, so a clock
        # step or stale_tmp_seconds 0 can take ours): stage again rather than return
        # as if it had been written.
        tries = 3
        for _ in range(tries):
            staged = self.stage(path.parent, data, sync=self.fsync is not Fsync.NEVER)
            faults.hit("replace.staged")
            try:
                replaced = self.overwrite(staged, path)
            except BaseException:
                self.unlink(staged)
                raise
            if replaced:
                self.fsync_dir(path.parent)
                return
        raise StorageError(f"could not replace {path}: its staged copy was removed "
                           f"{tries} times (doctor --repair took it for abandoned)",
                           path=str(path))

    def append(self, path: Path, line: bytes, *, sync: bool = False) -> None:
        """Append one record with a single ``write`` (O_APPEND: records never interleave).

        Raises:
            StorageError: ``path`` is not a regular file (see :meth:`open_append`).
        """
        fd = self.open_append(path)
        try:
            if os.write(fd, line) != len(line):
                raise DiskFull(f"short append to {path}", path=str(path))
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise from_oserror(exc, "append", str(path)) from exc
        finally:
            os.close(fd)

    def open_append(self, path: StrPath) -> int:
        """Open (or create, with this root's file mode) ``path`` for appending; the caller
        closes the descriptor. Logs are opened here and nowhere else.

        Never blocks and never follows a link: a symlink, FIFO, device, socket or folder
        planted at ``path`` is refused, so nothing outside the root is written and no
        open waits for ever for a reader.

        Raises:
            StorageError: ``path`` is not a regular file (the message says what it is).
        """
        return self._open_file(path, _APPEND_FLAGS, "open for append")

    def open_lock(self, path: StrPath) -> int:
        """Open (or create, with this root's file mode) the lock file ``path`` for
        ``flock``, which needs no write access: a lock file another member of a group
        root made without group write (a shell's ``flock`` under its own umask) can still
        be taken. Lock files are opened here and nowhere else, checked as
        :meth:`open_append` checks a log."""
        return self._open_file(path, _LOCK_FLAGS, "open the lock")

    def _open_file(self, path: StrPath, flags: int, doing: str) -> int:
        self.guard(path)
        try:
            fd = os.open(path, flags, self.file_mode)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise refused(path, self.lstat(path), "a regular file") from exc
            raise from_oserror(exc, doing, str(path)) from exc
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise from_oserror(exc, "look at", str(path)) from exc
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise refused(path, st, "a regular file with one name")
        self.share(fd)
        return fd

    # -- moving ------------------------------------------------------------------------

    def move(self, src: StrPath, dest: StrPath, new_folder: bool = False) -> Moved:
        """Rename ``src`` to ``dest`` without ever replacing ``dest``: one atomic step.

        ``renameat2(RENAME_NOREPLACE)``: of several callers moving one name, exactly one
        gets ``MOVED``; the others get ``GONE``. ``OCCUPIED`` means ``dest`` exists (even
        as another name of the same file) and nothing moved. Links are moved as links,
        never followed. On a filesystem without the flag, a look at ``dest`` followed by
        a plain ``rename`` stands in (documented in PROTOCOL.md: not exclusive there).

        A folder of ``dest`` that does not exist is a :class:`StorageError`, unless
        ``new_folder`` says it may not exist yet: then it is ``GONE`` as well, and the
        caller looks which of the two names was missing.
        """
        if self.base:
            now = _monotonic()
            self._guard_at(src, now)
            self._guard_at(dest, now)
        result = _rename_noreplace(_encoded(src), _encoded(dest))
        if result == 0:
            return MOVED
        if result == errno.EEXIST:
            return OCCUPIED
        if result == errno.ENOENT:
            return self._gone(dest, new_folder)
        if result in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            return self._move_without_flag(src, dest, new_folder)
        raise from_oserror(OSError(result, os.strerror(result), os.fspath(src)), "rename",
                           os.fspath(src))

    def _gone(self, dest: StrPath, new_folder: bool) -> Moved:
        """A rename that met ``ENOENT``: ``GONE``, or a :class:`StorageError` if the folder
        of ``dest`` does not exist and ``new_folder`` does not allow that."""
        if new_folder:
            return GONE
        parent = os.path.dirname(os.fspath(dest))
        if parent and self.lstat(parent) is None:
            raise from_oserror(OSError(errno.ENOENT, os.strerror(errno.ENOENT), parent),
                               "rename into", parent)
        return GONE

    def _move_without_flag(self, src: StrPath, dest: StrPath, new_folder: bool) -> Moved:
        if self.lstat(dest) is not None:
            return OCCUPIED
        try:
            os.rename(src, dest)
        except FileNotFoundError:
            return self._gone(dest, new_folder)
        except OSError as exc:
            raise from_oserror(exc, "rename", str(src)) from exc
        return MOVED

    def overwrite(self, src: StrPath, dest: StrPath) -> bool:
        """Rename ``src`` over ``dest``, replacing it: only where one process owns both
        names (a staged replacement, or the supervisor moving spool files under its
        lock). False if ``src`` is gone."""
        self.guard(src)
        self.guard(dest)
        try:
            os.replace(src, dest)
        except FileNotFoundError as exc:
            if self.lstat(os.path.dirname(os.fspath(dest))) is None:
                raise from_oserror(exc, "rename into", os.path.dirname(os.fspath(dest))) from exc
            return False
        except OSError as exc:
            raise from_oserror(exc, "rename", str(src)) from exc
        return True

    def rename(self, src: StrPath, dest: StrPath) -> bool:
        """Move ``src`` to a ``dest`` that nobody else uses (never replacing). False if
        ``src`` is gone; an existing ``dest`` is a :class:`StorageError`."""
        moved = self.move(src, dest)
        if moved is OCCUPIED:
            raise StorageError(f"could not rename {src}: {dest} already exists", path=str(dest))
        return moved is MOVED

    def unlink(self, path: StrPath) -> bool:
        """Remove ``path``; False if it was already gone."""
        self.guard(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise from_oserror(exc, "remove", str(path)) from exc
        return True

    def touch(self, path: StrPath) -> bool:
        """Set the times of ``path`` to now (a lease renewed); False if it is gone.

        Times set to *now* (``utimensat`` with no times) need write permission only, so
        every member of a group root may do it; explicit times would need the owner.
        A symlink is refused, never followed.
        """
        try:
            fd, _ = self.open_regular(path, 1 << 62)
        except FileNotFoundError:
            return False
        except Foreign as exc:
            raise StorageError(f"could not renew {path}: {exc.reason}", path=str(path)) from exc
        try:
            self.touch_open(fd, path)
        finally:
            os.close(fd)
        return True

    # -- reading ------------------------------------------------------------------------

    def read(self, path: StrPath, limit: int, *, one_name: bool = False
             ) -> tuple[bytes, os.stat_result]:
        """Read a regular file without following a symlink; at most ``limit`` bytes.

        Raises :class:`Foreign` for a symlink, FIFO, device, directory or a file over
        ``limit`` (and with ``one_name``, for a file with a second link: a file only
        ever put in place by a rename has one name, so another is a file elsewhere);
        ``FileNotFoundError`` passes through (the caller lost a race).
        """
        fd, st = self.open_regular(path, limit)
        try:
            if one_name and st.st_nlink != 1:
                raise Foreign(kind_of(st))
            return _read_all(fd, st.st_size, limit), st
        finally:
            os.close(fd)

    def read_object(self, path: StrPath, limit: int, *, one_name: bool = False
                    ) -> dict[str, Any]:
        """Read a file holding one JSON object (a marker, a heartbeat, an identity...).

        Raises:
            FileNotFoundError: there is none.
            ValueError: it is not a regular file, not JSON, or not an object; says why.
        """
        try:
            data = self.read(path, limit, one_name=one_name)[0]
        except Foreign as exc:
            raise ValueError(exc.reason) from exc
        return parse_object(data)

    def open_regular(self, path: StrPath, limit: int) -> tuple[int, os.stat_result]:
        """Open a regular file of at most ``limit`` bytes for reading, never following a
        symlink; returns the descriptor (the caller closes it) and its ``fstat``.

        Raises like :meth:`read`; :func:`read_open` then reads it.
        """
        self.guard(path)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Foreign("symbolic link (never followed)") from exc
            if exc.errno in (errno.EISDIR, errno.ENXIO):
                st = self.lstat(path)
                raise Foreign(f"{kind_of(st)}, not a regular "
                              "file") from exc
            raise from_oserror(exc, "open", str(path)) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Foreign(f"{kind_of(st)}, not a regular file")
            if st.st_size > limit:
                raise Foreign(f"{st.st_size} bytes, over the {limit}-byte limit")
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def read_lines(self, path: StrPath, *, line_limit: int, limit: int, start: int = 0
                   ) -> Iterator[tuple[int, bytes]]:
        """Stream the complete lines of a log (journal, event memory) from byte ``start``,
        each with the offset just past its newline (where a follower goes on from).

        Bounded: at most ``limit`` bytes are read, and no line longer than
        ``line_limit`` is held (it comes back as ``b""``, unreadable like a torn
        line). Bytes after the last newline (a line being written, or torn by a
        crash) are not returned. Opens like :meth:`read` when first iterated: raises
        :class:`Foreign` for a symlink, FIFO, device or folder; ``FileNotFoundError``
        passes through.
        """
        fd, st = self.open_regular(path, sys.maxsize)
        try:
            if st.st_nlink != 1:  # a log has one name; another is a file elsewhere
                raise Foreign(kind_of(st))
            yield from _lines(fd, start, line_limit, start + limit)
        finally:
            os.close(fd)

    @staticmethod
    def touch_open(fd: int, path: StrPath) -> None:
        """Set the times of an open file to now (the lease start of a claim).

        No explicit times: ``futimens(fd, NULL)`` is allowed to anyone who may write
        the file, not only to its owner (a group root's members claim each other's mail).
        """
        try:
            os.utime(fd)
        except OSError as exc:
            raise from_oserror(exc, "set time of", str(path)) from exc

    def lstat(self, path: StrPath) -> os.stat_result | None:
        self.guard(path)
        try:
            return os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise from_oserror(exc, "look at", str(path)) from exc

    def exists(self, path: StrPath) -> bool:
        return self.lstat(path) is not None

    # -- batches ---------------------------------------------------------------------------

    def syncfs(self, path: Path) -> None:
        """Flush the whole filesystem holding ``path`` (one call for a batch of files)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            syncfs = libc_function("syncfs")
            if syncfs is None or syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)


@dataclass(slots=True)
class FolderSyncs:
    """The folder fsyncs of finished work, which a batch may put off to its end.

    Outside a batch :meth:`fsync_dir` is :meth:`Disk.fsync_dir`. Inside one
    (:meth:`defer`, only under ``fsync=batch``: ``Mailbox.batch()``), it notes the folder,
    and :meth:`flush` syncs each noted folder once.
    """

    disk: Disk
    pending: set[str] | None = None

    def defer(self) -> None:
        """From now on, note folders instead of syncing them (under ``fsync=batch`` only)."""
        if self.disk.fsync is Fsync.BATCH and self.pending is None:
            self.pending = set()

    def fsync_dir(self, path: StrPath) -> None:
        """Make the names in ``path`` durable now, or at the end of the batch."""
        if self.pending is not None:
            self.pending.add(os.fspath(path))
        elif self.disk.fsync is not NEVER:
            self.disk.sync_dir(path)

    def flush(self) -> None:
        """Sync every folder noted since :meth:`defer`, once each; stop deferring."""
        pending, self.pending = self.pending, None
        for folder in sorted(pending or ()):
            self.disk.sync_dir(folder)


def parse_object(data: bytes) -> dict[str, Any]:
    """One JSON object, as a file or a log line holds it, that can be written back.

    orjson reads 1024 levels of nesting but writes 254: a document nested deeper would be
    accepted here and then fail whoever shows or rewrites it, so it is refused here. A
    repeated key is refused too (:func:`check_unique_keys`), as in a message.

    Raises:
        ValueError: it is not JSON, not an object, nested too deeply or has a duplicate
            key; says why.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object but {type(obj).__name__}")
    try:
        compact = orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"JSON nested too deeply to handle: {exc}") from exc
    text = data.rstrip(b"\n")
    if text != compact and text != orjson.dumps(obj, option=orjson.OPT_INDENT_2):
        check_unique_keys(data)  # as orjson wrote it (compact or indented): no duplicates
    return obj


def check_unique_keys(data: bytes) -> None:
    """Refuse JSON text in which some object repeats a key.

    orjson keeps the last of duplicate keys silently and other parsers keep the first,
    so such a document means different things to different readers (PROTOCOL.md §7.2).
    The slow check: callers skip it for text in orjson's own form, which cannot repeat one.

    Raises:
        ValueError: a key repeats ("duplicate keys in a JSON object"), or the text is
            nested too deeply to check.
    """

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate keys in a JSON object")
        return dict(pairs)

    try:
        json.loads(data, object_pairs_hook=unique)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def dump_object(obj: dict[str, Any], what: str, option: int = 0) -> bytes:
    """``obj`` as JSON, the counterpart of :func:`parse_object` for every writer of a file
    or a log line.

    Raises:
        InvalidInput: a field JSON cannot hold (text that is not valid Unicode, such as a
            command-line argument in another encoding); names ``what`` and the field.
    """
    try:
        return orjson.dumps(obj, option=option)
    except orjson.JSONEncodeError as exc:
        field = next((k for k, v in obj.items() if not _encodes(v)), None)
        where = f"{what} field {field!r}" if field is not None else what
        raise InvalidInput(f"{where} cannot be stored: {exc}",
                           hint="give text as valid UTF-8 (a command-line argument in "
                                "another encoding cannot be stored)") from exc


def _encodes(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def read_open(fd: int, st: os.stat_result, limit: int) -> bytes:
    """The content of a file opened by :meth:`Disk.open_regular` (at most ``limit`` bytes)."""
    return _read_all(fd, st.st_size, limit)


def _read_all(fd: int, size: int, limit: int) -> bytes:
    first = os.read(fd, size + 1)
    if len(first) <= size:
        return first  # the usual case: one read, the whole file
    chunks = [first]
    total = len(first)
    while total > size:  # grew since fstat: keep reading, but never past the limit
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise Foreign(f"over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _lines(fd: int, offset: int, line_limit: int, end: int) -> Iterator[tuple[int, bytes]]:
    pending: list[bytes] = []  # the start of a line that an earlier chunk did not finish
    held = 0  # its length; -1 once it is over the limit (the rest is skipped)
    while offset < end:
        chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not chunk:
            return
        parts = chunk.split(b"\n")
        for part in parts[:-1]:
            offset += len(part) + 1
            if held < 0 or held + len(part) > line_limit:
                yield offset, b""
            else:
                yield offset, b"".join([*pending, part]) if pending else part
            pending, held = [], 0
        tail = parts[-1]
        offset += len(tail)
        if held >= 0 and held + len(tail) <= line_limit:
            pending.append(tail)
            held += len(tail)
        else:
            pending, held = [], -1


@functools.cache
def libc_function(name: str) -> Any:
    """``name`` from the C library the interpreter itself is linked with, or None.

    Looked up on first use, not at import (loading ctypes costs every command that never
    renames or syncs, ``mailbox inbox``, more than its own work), and through the
    process's own symbols (``CDLL(None)``) rather than ``ctypes.util.find_library``,
    which starts an ``ldconfig -p`` child on every first lookup.

    No ``argtypes`` are declared: converting declared arguments costs a third of each
    call, and ctypes passes a Python int as a C ``int`` (refusing one that does not fit)
    and ``bytes`` as ``char *``, which is what the callers give (typed: see
    :func:`_rename_noreplace`); the result is a C ``int``."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError, TypeError):
        return None


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
# What os.fsencode encodes a str path with: Disk.move encodes its plain strings itself,
# without the Python-level checks that cost as much as the encoding.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _encoded(path: StrPath) -> bytes:
    """``os.fsencode(path)``, a plain ``str`` encoded directly (the renames' hot path)."""
    return path.encode(_FS_ENCODING, _FS_ERRORS) if type(path) is str else os.fsencode(path)


def _rename_noreplace(src: bytes, dest: bytes) -> int:
    """``renameat2(src, dest, RENAME_NOREPLACE)``: 0, or the errno it failed with."""
    renameat2 = libc_function("renameat2")
    if renameat2 is None:
        return errno.ENOSYS
    if renameat2(_AT_FDCWD, src, _AT_FDCWD, dest, _RENAME_NOREPLACE) == 0:
        return 0
    import ctypes  # loaded already, by libc_function

    return int(ctypes.get_errno())
