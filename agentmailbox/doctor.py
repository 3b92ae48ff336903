"""``mailbox doctor``: check the whole root, and with ``repair`` put it right safely.

Repairs never delete mail: foreign or malformed files go to ``dead/`` with a reason.
The only files removed are staging leftovers (in ``tmp/``, and the hidden
``.<16 hex>.tmp`` files that atomic replaces and links stage beside their target:
a published one has a second link; an unpublished one was never acknowledged to
its writer) and the idempotency markers past their window.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import layout, names
from .fs import Disk, Foreign, kind_of, same_file
from .handoff import HandoffStore, plausible
from .inbox import Inbox, hold_id, lease_start
from .mailbox import Mailbox, load_key_marker
from .memory import _STATE_LIMIT
from .message import Malformed, decode
from .presence import Presence, load_heartbeat
from .registry import load_identity
from .root import ROOT_FORMAT
from .threads import Threads, load_marker

__all__ = ["Finding", "check"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found: what, where, and whether it was repaired."""

    kind: str
    path: str
    detail: str
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail,
                "repaired": self.repaired}


NOT_REPAIRED = object()
"""What a repair returns when it found the finding could not be repaired safely now."""


class _Doctor:
    def __init__(self, mb: Mailbox, repair: bool, stale_after: float | None) -> None:
        self.mb = mb
        self.disk = mb.root.disk
        self.paths = mb.root.paths
        self.repair = repair
        cfg = mb.config
        self.stale_ns = int((cfg.stale_tmp_seconds if stale_after is None else stale_after) * 1e9)
        self.findings: list[Finding] = []

    def note(self, kind: str, path: Path, detail: str, fix: Any = None) -> None:
        """Record a finding; with ``--repair``, apply ``fix`` (which returns
        :data:`NOT_REPAIRED` when it found it could not repair it safely now)."""
        repaired = False
        if self.repair and fix is not None:
            repaired = fix() is not NOT_REPAIRED
        where = names.as_text(str(path.relative_to(self.mb.path)))
        self.findings.append(Finding(kind, where, detail, repaired))

    def run(self) -> list[Finding]:
        if not self._folders():
            return self.findings  # a link where a folder belongs: nothing below is looked at
        for rel in layout.made_folders("init"):
            self._need_dir(self.mb.path / rel)
        self._tmp_dir(self.paths.spool.tmp)
        for folder in self.paths.staging_folders:
            self._hidden_staging(folder)
        for folder in _workspace_dirs(self.paths.workspace):
            self._hidden_staging(folder)
        self._workspace()
        self._views()
        for name in self.mb.registry.list_names():
            self._agent(name)
            self._identity(name)
            self._working_state(name)
            self._key_markers(name)
            self._future_stamps(name)
        self._heartbeats()
        self._thread_markers()
        self._lock_files((self.paths.supervisor_lock, self.paths.receipts_lock))
        self._foreign_agents()
        self._dead()
        self._format()
        return self.findings

    def _format(self) -> None:
        """A version 1 root is upgraded once its v1 half-claims are settled (§23.1)."""
        if self.mb.config.format >= ROOT_FORMAT:
            return
        config = replace(self.mb.config, format=ROOT_FORMAT)
        pending = any(f.kind == "half-claim" and not f.repaired for f in self.findings)
        self.note("old-format", self.paths.config, f"format {self.mb.config.format}"
                  f" root (stop version 1 programs, then repair: it becomes {ROOT_FORMAT})",
                  None if pending else
                  lambda: self.disk.replace(self.paths.config, config.to_json()))

    def _folders(self) -> bool:
        """Every folder of the layout must be a real folder: a link, file or FIFO in its
        place is quarantined as it is (never followed) and a folder made in its stead.

        Returns False if one is left unrepaired (the rest of the check would refuse it).
        """
        ok = True
        for rel in layout.fixed_folders(self.mb.registry.list_names()):
            path = self.mb.path / rel
            st = os.lstat(path) if os.path.lexists(path) else None
            if st is None or stat.S_ISDIR(st.st_mode):
                continue
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
            self.note("not-a-folder", path, f"{what} where a folder of the layout belongs "
                      "(never followed)", lambda p=path: self._replace_with_folder(p))
            ok = ok and self.repair
        return ok

    def _replace_with_folder(self, path: Path) -> None:
        self.mb.dead.bury(path, "not a folder where a folder of the layout belongs", by="doctor")
        self.disk.ensure_dir(path)

    def _need_dir(self, path: Path) -> None:
        if not path.is_dir():
            self.note("missing-dir", path, "directory missing", lambda: self.disk.ensure_dir(path))

    def _agent(self, name: str) -> None:
        agent = self.paths.agent(name)
        for rel in layout.made_folders("agent add"):
            self._need_dir(self.mb.path / layout.fill(rel, agent=name))
        inbox = self.mb.inbox(name)
        self._tmp_dir(inbox.tmp)
        self._tmp_dir(agent.keys, pattern_ok=lambda n: not n.startswith("."))
        for folder in agent.staging_folders:
            self._hidden_staging(folder)
        # Before cur/: a release there takes run/lease.lock.
        self._lock_files(agent.lock(n) for n in layout.AGENT_LOCKS)
        self._cur(inbox)  # first: what it gives back to new/ is then checked against done/
        self._new(inbox)
        self._keys(agent.keys)

    def _lock_files(self, paths: Iterable[Path]) -> None:
        """A lock file that is not a regular file with one name (a link, FIFO, folder, hard
        link) is one nobody can hold (``Disk.open_lock`` refuses it), so whatever takes
        that lock fails: quarantined as it is, never followed; the next taker makes a new
        one. (A lock file is never deleted, but no one holds one of these.)"""
        for path in paths:
            st = self.disk.lstat(path)
            if st is None or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):
                continue
            self.note("foreign", path, f"{kind_of(st)} where a lock file belongs (never "
                      "followed)", self._bury(path, "not a lock file (a regular file with one "
                                              "name) where a lock file belongs", None))

    def _tmp_dir(self, folder: Path, pattern_ok: Any = lambda n: False) -> None:
        now = time.time_ns()
        for entry in self.disk.scan(folder):
            if pattern_ok(entry.name):
                continue
            path = Path(entry.path)
            st = self.disk.lstat(path)
            if st is None:
                continue
            if not stat.S_ISREG(st.st_mode):
                self.note("foreign", path, "not a staging file (a folder, link or device)",
                          self._bury(path, "foreign entry in a staging folder", None))
            elif st.st_nlink > 1:
                self.note("stale-tmp", path, "staging file already published",
                          lambda p=path: self.disk.unlink(p))
            elif now - st.st_mtime_ns >= self.stale_ns:
                self.note("stale-tmp", path, "abandoned staging file (writer died before "
                          "publishing; never acknowledged)", lambda p=path: self.disk.unlink(p))

    def _hidden_staging(self, folder: Path) -> None:
        """Staging files of an interrupted replace or link (state, views, handoffs...)."""
        self._tmp_dir(folder, pattern_ok=lambda n: not names.is_hidden_staging(n))

    def _workspace(self) -> None:
        """Links, FIFOs and devices in the workspace; files in .versions/ that are no version."""
        ws = self.mb.workspace
        for path, why in ws.foreign():
            self.note("foreign", path, why, self._bury(path, why, None))
        for name, files in ws.collisions():
            why = f"name collision: {name!r} is both a file and a folder of files"
            self.note("name-collision", self.paths.versions_of(name),
                      f"{why}; the file's versions and view go to dead/",
                      lambda fs=files, w=why: [self.mb.dead.bury(f, w, by="doctor") for f in fs])

    def _views(self) -> None:
        """Each workspace view must show its newest version (the versions are the truth)."""
        ws = self.mb.workspace
        for current in ws.ls():
            view = ws.path.joinpath(*names.check_workspace_path(current.name))
            if problem := ws.view_problem(current.name):
                self.note("view-blocked", view, str(problem))  # no repair: the versions stay
                continue
            try:
                shown: bytes | None = self.disk.read(view, max(current.size, 1))[0]
            except (FileNotFoundError, NotADirectoryError, Foreign):
                shown = None
            if shown != ws.get(current.name, current.version).data:
                self.note("stale-view", view, f"does not show version {current.version} "
                          "(a writer died before refreshing it)",
                          lambda n=current.name: ws.refresh_view(n))

    def _new(self, inbox: Inbox) -> None:
        for entry in self.disk.scan(inbox.new):
            path = Path(entry.path)
            if not names.is_message_file(entry.name):
                self.note("foreign", path, "not a message file name",
                          self._bury(path, "foreign file name in new/", inbox.agent))
                continue
            if self._check_file(inbox, path) and inbox.is_done(entry.name[:-5]):
                # A retried send that looked at cur/ and done/ before X was done, and
                # linked its copy after: claiming it settles it as a duplicate.
                self.note("duplicate", path, "a copy of a message already done",
                          lambda i=entry.name[:-5]: inbox.claim(i))

    def _cur(self, inbox: Inbox) -> None:
        now = time.time_ns()
        lease_ns = int(self.mb.config.lease_seconds * 1e9)
        for entry in self.disk.scan(inbox.cur):
            path = Path(entry.path)
            if hold_id(entry.name) is not None:
                self._hold(inbox, path, now)
                continue
            if not names.is_message_file(entry.name):
                self.note("foreign", path, "not a message file name",
                          self._bury(path, "foreign file name in cur/", inbox.agent))
                continue
            twin = inbox.new / entry.name
            a, b = self.disk.lstat(path), self.disk.lstat(twin)
            if (self.mb.config.format < ROOT_FORMAT and a is not None and b is not None
                    and same_file(a, b) and a.st_nlink > 1):
                # Only a version 1 claimer (link, then unlink) leaves this, so only a format 1
                # root can hold one: on a version 2 root the second link is a sender's tmp/
                # name and the file may move between the two looks (PROTOCOL.md §23.1).
                # One inode seen at both names with one link is a file that moved
                # between the two looks (a release): never a pair.
                self.note("half-claim", twin, "a version 1 claim interrupted between link "
                          "and unlink", lambda t=twin: self.disk.unlink(t))
            elif (self._check_file(inbox, path) and a is not None
                  and lease_start(a, now, lease_ns) < now - lease_ns):
                self.note("lease-expired", path, "claimed past its lease",
                          lambda i=entry.name[:-5]: self._release_expired(inbox, i, lease_ns))

    @staticmethod
    def _release_expired(inbox: Inbox, msg_id: str, lease_ns: int) -> object:
        """Release the claim if it is still expired when looked at under the lease lock;
        NOT_REPAIRED if another process holds the lock (it is releasing claims now) or the
        claim was renewed or taken again meanwhile."""
        outcome = inbox.release_expired([msg_id], lease_ns)
        return None if outcome is not None and outcome[0] else NOT_REPAIRED

    def _hold(self, inbox: Inbox, path: Path, now: int) -> None:
        """A copy a process moved to its hold name to settle it, and died holding."""
        st = self.disk.lstat(path)
        if st is None or now - max(st.st_mtime_ns, st.st_ctime_ns) < self.stale_ns:
            return  # maybe being settled right now
        self.note("stale-hold", path, "a copy left mid-settle by a process that died",
                  lambda: inbox.recover_hold(path.name))

    def _check_file(self, inbox: Inbox, path: Path) -> bool:
        try:
            data, st = self.disk.read(path, self.mb.config.max_message_bytes)
            decode(data, expected_id=path.name[:-5])
        except FileNotFoundError:
            return False
        except (Foreign, Malformed) as exc:
            self.note("malformed", path, exc.reason, self._bury(path, exc.reason, inbox.agent))
            return False
        if st.st_nlink > 1 and not inbox._is_own_staging(path.name[:-5], st, path) and not (
                self._half_claimed(inbox, path, st)):
            self.note("hard-link", path, "hard link to a file elsewhere",
                      self._bury(path, "hard link to a file elsewhere", inbox.agent))
            return False
        return True

    def _half_claimed(self, inbox: Inbox, path: Path, st: os.stat_result) -> bool:
        """``new/X`` and ``cur/X`` are one file: a claim stopped between link and unlink."""
        other = (inbox.cur if path.parent == inbox.new else inbox.new) / path.name
        twin = self.disk.lstat(other)
        return twin is not None and same_file(twin, st)

    def _bury(self, path: Path, reason: str, agent: str | None) -> Any:
        about = {} if agent is None else {"agent": agent}
        return lambda: self.mb.dead.bury(path, reason, **about, by="doctor")

    def _keys(self, folder: Path) -> None:
        cutoff = time.time_ns() - int(self.mb.config.key_window_days * 86400e9)
        for entry in self.disk.scan(folder):
            st = self.disk.lstat(Path(entry.path))
            if entry.name.endswith(".json") and st is not None and st.st_mtime_ns < cutoff:
                self.note("old-key", Path(entry.path), "idempotency key past its window",
                          lambda p=Path(entry.path): self.disk.unlink(p))

    def _foreign_agents(self) -> None:
        known = set(self.mb.registry.list_names())
        for entry in self.disk.scan(self.paths.agents):
            if entry.name not in known:
                self.note("foreign", Path(entry.path), "not a registered agent (left alone)")

    def _dead(self) -> None:
        folder = self.mb.dead.directory
        dead = self.mb.dead
        now = time.time_ns()
        for entry in self.disk.scan(folder):
            path = Path(entry.path)
            st = self.disk.lstat(path)
            # A rename (a letter taken by a purge or a retry) sets the ctime, not the mtime.
            if st is None or now - max(st.st_mtime_ns, st.st_ctime_ns) < self.stale_ns:
                continue  # maybe a quarantine, purge or retry in progress right now
            if entry.name.endswith(layout.REASON_SUFFIX):
                dead_id = entry.name.removesuffix(layout.REASON_SUFFIX)
                if not self.disk.exists(self.paths.dead_letter(dead_id)) and \
                        not self.disk.exists(folder / dead.retry_name(dead_id)):
                    self.note("orphan-reason", path, "quarantine interrupted before "
                              "the move; the file stayed where it was",
                              lambda p=path: self.disk.unlink(p))
            elif entry.name.endswith(layout.LETTER_SUFFIX):
                dead_id = entry.name.removesuffix(layout.LETTER_SUFFIX)
                if not self.disk.exists(self.paths.dead_reason(dead_id)):
                    self.note("lost-reason", path, "dead letter without its reason "
                              "file (invisible to mailbox dead)",
                              lambda d=dead_id: dead.restore_reason(d))
            elif entry.name == dead.retry_name(entry.name[1:-6]) and \
                    names.is_id(entry.name[1:-6]):
                self.note("interrupted-retry", path, "a dead letter taken by a retry that "
                          "died before finishing", lambda d=entry.name[1:-6], p=path:
                          dead.put_back(d, p))
            elif names.is_hidden_staging(entry.name):
                self.note("stale-tmp", path, "interrupted reason write or purge",
                          lambda p=path: dead.discard(p))

    # -- the JSON files readers send the user here for ------------------------------------------

    def _unreadable(self, path: Path, load: Any, what: str, then: Any = None,
                    agent: str | None = None) -> None:
        """Quarantine ``path`` if ``load(path)`` finds it is not ``what`` (then ``then()``)."""
        try:
            load(path)
        except FileNotFoundError:
            return
        except ValueError as exc:
            bury = self._bury(path, f"not {what}: {exc}", agent)

            def fix() -> None:
                bury()
                if then is not None:
                    then()

            self.note("malformed", path, f"not {what}: {exc}", fix)

    def _identity(self, name: str) -> None:
        """agent.json: quarantined, and replaced by a name-only identity so the agent, its
        inbox and its mail stay registered (the old fields are in the dead letter)."""
        path = self.mb.registry.identity_path(name)
        self._unreadable(path, lambda p: load_identity(p, name, self.disk),
                         "an agent.json of " + name, lambda: self.mb.registry.restore(name),
                         agent=name)

    def _working_state(self, name: str) -> None:
        """state.json: quarantined (a missing file is the empty state)."""
        self._unreadable(self.paths.agent(name).state,
                         lambda p: _load_state(p, self.disk),
                         "a working state (a JSON object)", agent=name)

    def _key_markers(self, name: str) -> None:
        """keys/: a marker that is not a key record is quarantined (its key is forgotten,
        as when its window runs out)."""
        limit = self.mb.config.max_message_bytes
        for entry in self.disk.scan(self.paths.agent(name).keys):
            if names.is_key_marker(entry.name):
                self._unreadable(Path(entry.path), lambda p: load_key_marker(p, self.disk, limit),
                                 "a key marker", agent=name)

    def _future_stamps(self, name: str) -> None:
        """A handoff or boot record stamped far in the future is never a floor (boot
        ignores it); a handoff is quarantined, the boot record is rewritten by the next boot."""
        store = HandoffStore(self.mb.root, name)
        for msg_id in store.future_ids():
            path = self.paths.agent(name).handoff(msg_id)
            self.note("future-stamp", path, "handoff stamped far in the future",
                      self._bury(path, "handoff stamped far in the future", name))
        at = (self.mb.epoch_record(name) or {}).get("at")
        if type(at) is int and not plausible(at):
            self.note("future-stamp", self.mb.epoch_path(name),
                      "boot record stamped far in the future (the next boot rewrites it)")

    def _heartbeats(self) -> None:
        """run/heartbeats/: a file that is not a heartbeat is quarantined (never seen until
        the agent beats again)."""
        presence = Presence(self.mb.root)
        for entry in self.disk.scan(presence.directory):
            agent = entry.name[:-5]
            if entry.name.endswith(".json") and names.agent_shape(agent):
                self._unreadable(Path(entry.path),
                                 lambda p, a=agent: load_heartbeat(p, a, self.disk),
                                 "a heartbeat of " + agent)

    def _thread_markers(self) -> None:
        """threads/: a marker that is not one is quarantined and rebuilt, so the thread
        stays done (markers are never removed)."""
        threads = Threads(self.mb.root)
        for entry in self.disk.scan(threads.directory):
            thread = entry.name.removesuffix(layout.MARKER_SUFFIX)
            if entry.name.endswith(layout.MARKER_SUFFIX) and names.is_thread(thread):
                self._unreadable(Path(entry.path), lambda p, t=thread: load_marker(p, t, self.disk),
                                 "a thread marker",
                                 lambda t=thread: threads.mark_done(t, None, _REBUILT))


_REBUILT = "marker rebuilt by mailbox doctor: the original was unreadable (see dead/)"


def _load_state(path: Path, disk: Disk | None = None) -> None:
    """Read state.json as :class:`WorkingState` does: a JSON object, at most 1 MiB."""
    (disk or Disk()).read_object(path, _STATE_LIMIT, one_name=True)


def _workspace_dirs(top: Path) -> list[Path]:
    """``workspace/`` and every folder below it (views and versions), links not followed."""
    found, stack = [], [top]
    while stack:
        folder = stack.pop()
        found.append(folder)
        try:
            with os.scandir(folder) as it:
                stack += [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


def check(mb: Mailbox, *, repair: bool = False, stale_after: float | None = None
          ) -> list[Finding]:
    """Check (and with ``repair``, fix) the whole root; returns what was found."""
    return _Doctor(mb, repair, stale_after).run()
