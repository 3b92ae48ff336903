"""The shared workspace: files agents work on together, with versions, CAS and locks.

::

    workspace/<name>                        the current content (a view, atomically replaced)
    workspace/.versions/<name>/<10 digits>  every version, immutable; the source of truth
    workspace/.locks/<name>.lock            portalocker lock files (empty, never deleted)

Writing version N+1 is an exclusive ``link`` of ``.versions/<name>/N+1``: of two
writers based on version N exactly one succeeds, the other gets
:class:`StaleVersion`. That is the single-source-of-truth defence against state
drift: nobody overwrites a change they have not seen.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import layout, locks, names
from .errors import AlreadyExists, InvalidInput, InvalidName, MailboxError, NotFound, StaleVersion
from .fs import Disk, Foreign, Moved, faults, kind_of, refused
from .root import Root

__all__ = ["MAX_FILE", "Workspace", "WsFile"]

MAX_FILE = 64 << 20
"""The largest workspace file, in bytes."""
_LAST_VERSION = 9_999_999_999


@dataclass(frozen=True, slots=True)
class WsFile:
    """One version of one workspace file."""

    name: str
    version: int
    size: int
    data: bytes = b""

    def to_dict(self, with_data: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "size": self.size}
        if with_data:
            out["text"] = self.data.decode("utf-8", "replace")
        return out


class Workspace:
    """The shared workspace of a root.

    No link is ever followed in it: every folder on the way to a version, a view or a
    lock file is looked at first (:meth:`fs.Disk.real_folder`), and files are opened
    without following one, so a link planted anywhere in ``workspace/`` is refused.
    """

    def __init__(self, root: Root) -> None:
        self._root = root
        self._disk = root.disk
        self._paths = root.paths
        self.path = self._paths.workspace

    def _versions(self, name: str) -> Path:
        return self._paths.versions_of("/".join(names.check_workspace_path(name)))

    def _view(self, name: str) -> Path:
        return self._paths.view("/".join(names.check_workspace_path(name)))

    def _real(self, folder: Path) -> bool:
        return self._disk.real_folder(self._root.path, folder)

    def version(self, name: str) -> int:
        """The current version of ``name``; 0 if it was never written."""
        folder = self._versions(name)
        return _newest(self._disk, folder) if self._real(folder) else 0

    def get(self, name: str, version: int | None = None) -> WsFile:
        """The content of ``name`` at ``version`` (default: current)."""
        names.check_workspace_path(name)
        _check_version(version, "version")
        number = version or self.version(name)
        if number <= 0 or not self._real(self._versions(name)):
            raise NotFound(f"no workspace file {name!r}", hint="list them: mailbox ws ls")
        try:
            path = self._versions(name) / layout.version_name(number)
            data, st = self._disk.read(path, MAX_FILE)
            if st.st_nlink != 1:  # a version is moved into place: one name, ever
                raise Foreign("a hard link to a file elsewhere")
        except FileNotFoundError as exc:
            raise NotFound(f"{name!r} has no version {number}") from exc
        except Foreign as exc:
            raise InvalidInput(f"workspace version {name}@{number}: {exc.reason}",
                               hint="run mailbox doctor") from exc
        return WsFile(name, number, len(data), data)

    def put(self, name: str, data: bytes, *, if_version: int | None = None,
            author: str | None = None) -> int:
        """Write a new version; returns its number.

        With ``if_version=N`` the write succeeds only if N is still current
        (compare-and-swap; 0 means "must not exist yet"), else :class:`StaleVersion`.
        A name can't be both a file and a folder: ``notes`` and ``notes/today.md``
        cannot both exist, and the second is refused (:class:`AlreadyExists`) before
        anything is written.
        """
        names.check_workspace_path(name)
        _check_version(if_version, "if_version")
        if not isinstance(data, bytes):
            raise InvalidInput(f"{name}: workspace content must be bytes, not "
                               f"{type(data).__name__}", hint="encode text first: "
                               "text.encode('utf-8')")
        if len(data) > MAX_FILE:
            raise InvalidInput(f"{name}: {len(data)} bytes is over the {MAX_FILE}-byte limit")
        folder = self._versions(name)
        if problem := self._name_taken(name) or self.view_problem(name):
            raise problem
        self._disk.ensure_dir(folder)
        staged = self._disk.stage(folder.parent, data)
        try:
            number = self._link_next(name, folder, staged, if_version)
        finally:
            self._disk.unlink(staged)
        faults.hit("ws.versioned")
        self._disk.fsync_dir(folder)
        self.refresh_view(name)
        self._root.journal.record("ws.put", name=name, version=number, author=author)
        return number

    def _name_taken(self, name: str) -> AlreadyExists | None:
        """Why ``name`` cannot be a file, if a file is named as one of its folders or it is
        a folder of files already (read from the versions: they are the truth)."""
        parts = names.check_workspace_path(name)
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if self.version(above):
                return AlreadyExists(f"{above!r} is a workspace file, so {name!r} cannot be "
                                     "put under it: a name can't be both a file and a folder",
                                     hint="choose another name")
        folder = self._versions(name)
        if self._real(folder) and any(leaf != folder for leaf in _leaf_dirs(folder)):
            return AlreadyExists(f"{name!r} is a folder of workspace files, so it cannot be "
                                 "put as a file: a name can't be both a file and a folder",
                                 hint=f"list them (mailbox ws ls), or put {name}/NAME")
        return None

    def view_problem(self, name: str) -> MailboxError | None:
        """Why the view of ``name`` cannot be written, or None.

        A file where one of its folders belongs, or a folder where it belongs, is a
        name collision (:class:`AlreadyExists`); a link, FIFO or device anywhere on the
        way is refused (:class:`StorageError`; doctor quarantines it).
        """
        view = self._view(name)
        path = self.path
        try:
            if not self._real(self.path):
                return None
            for part in view.relative_to(self.path).parts:
                path = path / part
                st = self._disk.lstat(path)
                if st is None:
                    return None
                if path == view:
                    return _view_kind(path, st, name)
                if stat.S_ISREG(st.st_mode):
                    return AlreadyExists(f"workspace/{path.relative_to(self.path)} is a file, so "
                                         f"{name!r} cannot be shown under it: a name can't be "
                                         "both a file and a folder", hint="choose another name")
                if not stat.S_ISDIR(st.st_mode):
                    return refused(path, st, "a folder")
        except MailboxError as exc:
            return exc
        return None

    def _link_next(self, name: str, folder: Path, staged: str, if_version: int | None) -> int:
        while True:
            current = self.version(name)
            if if_version is not None and if_version != current:
                raise StaleVersion(name, if_version, current)
            if current >= _LAST_VERSION:
                raise InvalidInput(f"{name!r} is at version {current}, the last one possible",
                                   hint="put the content under a new name")
            slot = folder / layout.version_name(current + 1)
            if self._disk.move(staged, slot) is Moved.MOVED:  # one name, never replaced
                return current + 1
            if if_version is not None:
                raise StaleVersion(name, if_version, self.version(name))
            if self.version(name) == current:  # the slot is taken, and not by a version
                raise refused(slot, self._disk.lstat(slot), "a version file")

    def refresh_view(self, name: str) -> None:
        """Make ``workspace/<name>`` show the newest version; converges under races.

        Each writer re-checks after replacing, so the last one to finish leaves
        the newest content even if an older writer replaced the view after it.

        Raises:
            AlreadyExists: the view cannot exist (a name collision, see :meth:`put`).
            StorageError: a link or other special file is in the way.
        """
        if problem := self.view_problem(name):
            raise problem
        view = self._view(name)
        self._disk.ensure_dir(view.parent)
        shown = -1
        while (current := self.version(name)) != shown:
            self._disk.replace(view, self.get(name, current).data)
            shown = current

    def ls(self) -> list[WsFile]:
        """Every workspace file with its current version and size."""
        base = self._paths.versions
        if not self._real(base):
            return []
        out = []
        for name, folder in _named_leaves(base):
            number = self.version(name)
            if number:
                st = self._disk.lstat(folder / layout.version_name(number))
                out.append(WsFile(name, number, st.st_size if st else 0))
        return sorted(out, key=lambda f: f.name)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 30.0) -> Iterator[None]:
        """Hold the exclusive lock of ``name`` for a multi-step edit (portalocker, flock).

        Locks are advisory: every writer of ``name`` must take it. Raises
        :class:`LockTimeout` if someone else still holds it after ``timeout`` seconds.
        """
        parts = names.check_workspace_path(name)
        path = self._paths.lock("/".join(parts))
        self._real(path.parent)  # raises if a folder on the way is a link: never followed
        with locks.held(path, self._disk, timeout=timeout,
                        message=f"{name} is locked by someone else",
                        hint="wait and retry, or raise --timeout"):
            yield

    def collisions(self) -> list[tuple[str, list[Path]]]:
        """Names that are both a file and a folder of files (two racing puts can leave one),
        each with the files of the file: its versions, and its view if that is a file.

        ``doctor --repair`` quarantines those, so the folder's files can be shown again.
        """
        base = self._paths.versions
        if not self._real(base):
            return []
        leaves = {folder: name for name, folder in _named_leaves(base)}
        out = []
        for folder in sorted({p for leaf in leaves for p in leaf.parents if p in leaves}):
            name = leaves[folder]
            files = sorted(Path(e.path) for e in self._disk.scan(folder)
                           if names.is_version_name(e.name) and e.is_file(follow_symlinks=False))
            view = self._view(name)
            st = self._disk.lstat(view)
            out.append((name, files + ([view] if st and stat.S_ISREG(st.st_mode) else [])))
        return out

    def foreign(self) -> Iterator[tuple[Path, str]]:
        """What does not belong in the workspace, with why (``doctor`` quarantines it).

        Links, FIFOs, devices and sockets anywhere in it, and in ``.versions/`` any
        file not named as a version (10 ASCII digits) or a staging file, and any
        folder whose name is no workspace name (nothing below it is looked at).
        """
        versions = self._paths.versions
        top = self._disk.lstat(self.path)
        if top is not None and not stat.S_ISDIR(top.st_mode):
            yield self.path, f"{kind_of(top)} where the workspace folder belongs"
            return
        stack = [self.path]
        while stack:
            folder = stack.pop()
            in_versions = folder.is_relative_to(versions)
            for entry in self._disk.scan(folder):
                path = Path(entry.path)
                st = self._disk.lstat(path)
                if st is None or names.is_hidden_staging(entry.name):
                    continue  # staging files have their own check (doctor's stale-tmp)
                if stat.S_ISDIR(st.st_mode) and in_versions and \
                        not _is_name(path.relative_to(versions).as_posix()):
                    yield path, "a folder in .versions/ whose name is no workspace name"
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(path)
                elif not stat.S_ISREG(st.st_mode):
                    yield path, f"{kind_of(st)} in the workspace (never followed)"
                elif in_versions and not names.is_version_name(entry.name):
                    yield path, "not a version file (versions are named by 10 ASCII digits)"


def _check_version(value: object, what: str) -> None:
    """A version argument is a whole number or None (``True`` and ``"1"`` are not)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidInput(f"{what} must be a whole number, not {value!r}")


def _view_kind(view: Path, st: os.stat_result, name: str) -> MailboxError | None:
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return AlreadyExists(f"workspace/{name} is a folder, so {name!r} cannot be shown as a "
                             "file: a name can't be both a file and a folder",
                             hint="choose another name")
    return refused(view, st, "a regular file")


def _newest(disk: Disk, folder: Path) -> int:
    """The highest version file in ``folder``: a regular file named by 10 ASCII digits.

    ``str.isdigit`` would also take ``٩٩٩٩٩٩٩٩٩٩`` or ``²²²``; folders are names below
    this one (``notes/0000000001`` is a file of its own), links are never versions.
    """
    return max((int(e.name) for e in disk.scan(folder)
                if names.is_version_name(e.name) and e.is_file(follow_symlinks=False)), default=0)


def _is_name(name: str) -> bool:
    try:
        names.check_workspace_path(name)
    except InvalidName:
        return False
    return True


def _named_leaves(base: Path) -> Iterator[tuple[str, Path]]:
    """The leaf folders of ``.versions/`` whose path is a workspace name, with that name
    (a folder planted under another name is no file: doctor quarantines it)."""
    for folder in _leaf_dirs(base):
        name = folder.relative_to(base).as_posix()
        if _is_name(name):
            yield name, folder


def _leaf_dirs(base: Path) -> Iterator[Path]:
    """Folders under ``base`` that hold version files (links are not followed)."""
    stack = [base]
    while stack:
        folder = stack.pop()
        entries = list(Disk().scan(folder))
        if any(names.is_version_name(e.name) and e.is_file(follow_symlinks=False)
               for e in entries):
            yield folder
        stack.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
