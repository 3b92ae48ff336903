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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import locks, names
from .errors import InvalidInput, NotFound, StaleVersion
from .fs import Disk, Foreign, faults
from .root import Root

__all__ = ["Workspace", "WsFile"]

_MAX_FILE = 64 << 20


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
    """The shared workspace of a root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._disk = root.disk
        self.path = root.path / "workspace"

    def _versions(self, name: str) -> Path:
        return self.path / ".versions" / "/".join(names.check_workspace_path(name))

    def version(self, name: str) -> int:
        """The current version of ``name``; 0 if it was never written."""
        found = [int(e.name) for e in self._disk.scan(self._versions(name))
                 if e.name.isdigit() and len(e.name) == 10]
        return max(found, default=0)

    def get(self, name: str, version: int | None = None) -> WsFile:
        """The content of ``name`` at ``version`` (default: current)."""
        number = version or self.version(name)
        if number <= 0:
            raise NotFound(f"no workspace file {name!r}", hint="list them: mailbox ws ls")
        try:
            data, _ = self._disk.read(self._versions(name) / f"{number:010d}", _MAX_FILE)
        except FileNotFoundError as exc:
            raise NotFound(f"{name!r} has no version {number}") from exc
        except Foreign as exc:
            raise InvalidInput(f"workspace version {name}@{number}: {exc.reason}") from exc
        return WsFile(name, number, len(data), data)

    def put(self, name: str, data: bytes, *, if_version: int | None = None,
            author: str | None = None) -> int:
        """Write a new version; returns its number.

        With ``if_version=N`` the write succeeds only if N is still current
        (compare-and-swap; 0 means "must not exist yet"), else :class:`StaleVersion`.
        """
        if len(data) > _MAX_FILE:
            raise InvalidInput(f"{name}: {len(data)} bytes is over the {_MAX_FILE}-byte limit")
        folder = self._versions(name)
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

    def _link_next(self, name: str, folder: Path, staged: str, if_version: int | None) -> int:
        while True:
            current = self.version(name)
            if if_version is not None and if_version != current:
                raise StaleVersion(name, if_version, current)
            if self._disk.publish(staged, folder / f"{current + 1:010d}"):
                return current + 1
            if if_version is not None:
                raise StaleVersion(name, if_version, self.version(name))

    def refresh_view(self, name: str) -> None:
        """Make ``workspace/<name>`` show the newest version; converges under races.

        Each writer re-checks after replacing, so the last one to finish leaves
        the newest content even if an older writer replaced the view after it.
        """
        view = self.path.joinpath(*names.check_workspace_path(name))
        self._disk.ensure_dir(view.parent)
        shown = -1
        while (current := self.version(name)) != shown:
            self._disk.replace(view, self.get(name, current).data)
            shown = current

    def ls(self) -> list[WsFile]:
        """Every workspace file with its current version and size."""
        base = self.path / ".versions"
        out = []
        for folder in _leaf_dirs(base):
            name = folder.relative_to(base).as_posix()
            number = self.version(name)
            if number:
                st = self._disk.lstat(folder / f"{number:010d}")
                out.append(WsFile(name, number, st.st_size if st else 0))
        return sorted(out, key=lambda f: f.name)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 30.0) -> Iterator[None]:
        """Hold the exclusive lock of ``name`` for a multi-step edit (portalocker, flock).

        Locks are advisory: every writer of ``name`` must take it. Raises
        :class:`LockTimeout` if someone else still holds it after ``timeout`` seconds.
        """
        parts = names.check_workspace_path(name)
        path = self.path / ".locks" / ("/".join(parts) + ".lock")
        with locks.held(path, self._disk, timeout=timeout,
                        message=f"{name} is locked by someone else",
                        hint="wait and retry, or raise --timeout"):
            yield


def _leaf_dirs(base: Path) -> Iterator[Path]:
    """Folders under ``base`` that hold version files."""
    stack = [base]
    while stack:
        folder = stack.pop()
        entries = list(Disk().scan(folder))
        if any(e.name.isdigit() for e in entries):
            yield folder
        stack.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
