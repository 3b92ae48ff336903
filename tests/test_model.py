"""The inbox claim protocol against an exhaustive model check (SPIN, tests/model/).

``inbox_v2.pml`` restates the claim, release, lease expiry, done, retried send and
``doctor --repair`` of agentmailbox/inbox.py and doctor.py, system call by system
call. ``-DFIXED`` (the three changes that tests/model/README.md describes) is the code
as it is; the retried send publishes by ``renameat2(RENAME_NOREPLACE)`` as the library
does, or with ``-DSEND_LINK`` by ``link`` then ``unlink``, as shell writers and the
library on a filesystem without the flag do (both are checked). SPIN searches every
interleaving of two claimers, a sweeper, a doctor and a resend, any of them dying at any
step, for a copy deleted, the id lost (in dead/ only), done twice, or left in two places after
``doctor --repair``. ``inbox_v1.pml`` is the link-then-unlink claim that version 2
replaced: SPIN must find its lost message, which shows the check finds this class
of bug.

Each trail SPIN finds in the code is also replayed below on the real code, one
process at a time: the steps of the other processes run at the points of the trail
(:class:`Trail`), so the replay is exact and needs no timing. Run with ``-s`` or
``-rA`` to see the state counts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from agentmailbox import Mailbox, State, doctor
from agentmailbox.fs import Disk, faults, staging_name
from agentmailbox.inbox import Inbox
from agentmailbox.message import Message, encode

StrPath = str | os.PathLike[str]
MODELS = Path(__file__).resolve().parent / "model"
# -DCOLLAPSE compresses stored states without loss (the search stays exhaustive);
# it halves the memory of the v2 search. -O2 takes 7 s to compile and pays off only
# on the long search: the link sender's 8.8 million states, not the rename sender's 2.3
# million (CPU seconds, compile + search: -O2 12 + 5, -O0 2 + 9); -DBFS finds a shortest
# trail.
PAN_FLAGS = ("-DSAFETY", "-DCOLLAPSE", "-w")

_SPIN_MARKS = (
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("spin") is None,
                       reason="spin is not installed (Debian/Ubuntu: apt-get install spin)"),
    pytest.mark.skipif(shutil.which("gcc") is None,
                       reason="gcc is not installed (SPIN compiles its verifier with it)"),
)

# What the code still does wrong, each found by the model and replayed below.
DELETES = ("doctor --repair takes a claim that moved between its two looks, while its "
           "sender's tmp/ name was its second link, for a version 1 half-claim, and "
           "unlinks new/X: the last name of a message")
BURIES = ("a claimer whose claim its lease gave away quarantines, by name, another "
          "reader's claim of the last copy as a hard link")
TWO_PLACES = ("doctor --repair looks at new/ before cur/: a claim it gives back "
              "to new/ beside done/X stays there until the next claim")


def needs_spin(fn: Callable[..., None]) -> Callable[..., None]:
    """A model check: slow, and skipped where spin or gcc is missing."""
    for mark in _SPIN_MARKS:
        fn = mark(fn)
    return fn


@dataclass(frozen=True)
class Search:
    """What one ``pan`` run reported."""

    model: str
    output: str
    workdir: Path
    flags: tuple[str, ...]

    def number(self, pattern: str) -> float:
        found = re.search(pattern, self.output)
        assert found, f"{self.model}: no match for {pattern!r} in:\n{self.output}"
        return float(found.group(1))

    @property
    def errors(self) -> int:
        return int(self.number(r"errors: (\d+)"))

    @property
    def complete(self) -> bool:
        return ("Search not completed" not in self.output
                and "max search depth too small" not in self.output)

    def broken(self) -> str:
        """The invariant the trail breaks: the comment on the failed assertion's line."""
        replay = run(["spin", *self.flags, "-t", self.model], self.workdir)
        line = re.search(rf"{re.escape(self.model)}:(\d+), Error: assertion violated", replay)
        assert line, replay
        source = (self.workdir / self.model).read_text().splitlines()[int(line.group(1)) - 1]
        tag = re.search(r"/\* (\(.\) [^*]*?) \*/", source)
        assert tag, source
        return tag.group(1)

    def summary(self) -> str:
        states = self.number(r"([0-9.e+]+) states, stored")
        transitions = self.number(r"([0-9.e+]+) transitions")
        depth = self.number(r"depth reached (\d+)")
        seconds = self.number(r"elapsed time ([0-9.]+)")
        return (f"{self.model} {' '.join(self.flags)}: {states:.0f} states, "
                f"{transitions:.0f} transitions, depth {depth:.0f}, {seconds:.1f} s, "
                f"errors: {self.errors}")


def run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:  # not an AssertionError: the xfails below expect only those
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def verify(model: str, workdir: Path, *flags: str, long: bool = False, bfs: bool = False
           ) -> Search:
    """Generate, compile and run the verifier of ``model`` (with ``-D`` flags) in ``workdir``.

    Args:
        long: The search is long: compile the verifier optimised.
        bfs: Search breadth first: the trail found is a shortest one.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / model, workdir / model)
    run(["spin", *flags, "-a", model], workdir)
    cc = [*PAN_FLAGS, "-O2" if long else "-O0", *(["-DBFS"] if bfs else [])]
    run(["gcc", *cc, "-o", "pan", "pan.c"], workdir)
    search = Search(model, run(["./pan", "-m100000"], workdir), workdir, flags)
    print(search.summary())
    return search


# -- the model check -------------------------------------------------------------------------


@needs_spin
@pytest.mark.parametrize(("sender", "long"), [((), False), (("-DSEND_LINK",), True)],
                         ids=["rename-send", "link-send"])
def test_claim_protocol_with_the_three_fixes_keeps_every_message_in_one_place(
        tmp_path: Path, sender: tuple[str, ...], long: bool) -> None:
    """The code's configuration (the three fixes of tests/model/README.md, in the code now),
    beside a sender that renames (the library) or links then unlinks (a shell): no
    interleaving deletes, loses or doubles X."""
    search = verify("inbox_v2.pml", tmp_path, "-DFIXED", *sender, long=long)
    assert 0 == search.errors, f"{search.broken()}:\n{search.output}"
    assert search.complete, search.output


@needs_spin
@pytest.mark.parametrize(("flags", "bfs", "broken"), [
    (("-DBURY_ONLY_OPENED", "-DDOCTOR_CUR_FIRST", "-DSEND_LINK"), True, "(a) never deleted"),
    (("-DHALF_CLAIM_V1_ONLY", "-DDOCTOR_CUR_FIRST", "-DSEND_LINK"), False, "(b) never lost"),
    (("-DBURY_ONLY_OPENED", "-DHALF_CLAIM_V1_ONLY"), True, "(c) in one place"),
    (("-DFIXED", "-DSWEEP_ANY_LINKS"), True, "(b) never lost"),
], ids=["half-claim-repair", "bury-by-name", "doctor-order", "sweep-any-links"])
def test_model_check_finds_what_each_fix_prevents(
        tmp_path: Path, flags: tuple[str, ...], bfs: bool, broken: str) -> None:
    """Each fix is needed: without it (or without the sweeper's link test) SPIN finds a trail.
    The first two need a sender that links (a shell writer): its staging name is the
    second link they misread."""
    search = verify("inbox_v2.pml", tmp_path, *flags, bfs=bfs)
    assert 1 <= search.errors
    assert broken == search.broken()
    steps = search.number(r"at depth (\d+)")
    print(f"{' '.join(flags)}: a trail of {steps:.0f} steps ({'shortest' if bfs else 'first'})")


@needs_spin
def test_model_check_finds_the_message_lost_by_the_link_then_unlink_claim(
        tmp_path: Path) -> None:
    """The check finds the v1 loss: a claim's unlink removes a released message's last name."""
    search = verify("inbox_v1.pml", tmp_path)
    assert 1 <= search.errors
    assert "assertion violated" in search.output
    replay = run(["spin", "-t", "-p", "inbox_v1.pml"], tmp_path)
    assert "assertion violated" in replay
    steps = search.number(r"at depth (\d+)")
    print(f"inbox_v1.pml: the first trail found is {steps:.0f} steps long")


# -- the trails, replayed on the code ---------------------------------------------------------


class Died(Exception):
    """Raised at a fault point: the process stops there for good."""


Step = tuple[str, str, tuple[Callable[[], object], ...]]


class Trail:
    """Runs the steps of other processes at chosen points of one process's run.

    ``then(kind, where, *actions)``: ``"scan"`` runs the actions just before the
    folder ``where`` is listed, ``"lstat"`` just after ``where`` is looked at (the
    caller acts on what it saw before them), ``"fault"`` at the fault point named
    ``where``. Steps fire once each, in order; what an action does fires nothing.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[Step] = []
        self.busy = False
        scan, list_names, lstat, hit = Disk.scan, Disk.names, Disk.lstat, faults.hit

        def scanned(disk: Disk, path: StrPath) -> Iterator[os.DirEntry[str]]:
            self.fire("scan", path)
            return scan(disk, path)

        def listed(disk: Disk, path: StrPath) -> list[str]:
            self.fire("scan", path)
            return list_names(disk, path)

        def looked(disk: Disk, path: StrPath) -> os.stat_result | None:
            seen = lstat(disk, path)
            self.fire("lstat", path)
            return seen

        def point(name: str) -> None:
            self.fire("fault", name)
            hit(name)

        monkeypatch.setattr(Disk, "scan", scanned)
        monkeypatch.setattr(Disk, "names", listed)
        monkeypatch.setattr(Disk, "lstat", looked)
        monkeypatch.setattr(faults, "hit", point)

    def then(self, kind: str, where: StrPath, *actions: Callable[[], object]) -> Trail:
        self.steps.append((kind, os.fspath(where), actions))
        return self

    def finished(self) -> None:
        """Every step ran (else the code no longer takes the trail's path)."""
        if self.steps:
            raise RuntimeError(f"steps not reached: {[s[:2] for s in self.steps]}")

    def fire(self, kind: str, where: StrPath) -> None:
        if self.busy or not self.steps or self.steps[0][:2] != (kind, os.fspath(where)):
            return
        self.busy = True
        try:
            for action in self.steps.pop(0)[2]:
                action()
        finally:
            self.busy = False


def _held(inbox: Inbox, msg_id: str) -> list[State]:
    """Every place of ``new/``, ``cur/`` and ``done/`` that holds ``msg_id``."""
    return [state for state in (State.NEW, State.CLAIMED, State.DONE)
            if msg_id in inbox.ids(state)]


@dataclass(frozen=True)
class Send:
    """One delivery of ``msg_id`` into bob's inbox, step by step, as a writer that links
    then unlinks does (PROTOCOL.md §9.1 step 3 by ``link``, the shell recipe of §22)."""

    mb: Mailbox
    msg_id: str
    data: bytes
    staged: str

    @classmethod
    def staged_for(cls, mb: Mailbox, msg_id: str | None = None) -> Send:
        """Step 2 done: the staging file is in tmp/, not yet linked into new/."""
        msg_id = msg_id or mb.root.clock.new_id()
        msg = Message(id=msg_id, sender="alice", to=("bob",), subject="s")
        data = encode(msg, mb.config.max_message_bytes)
        staged = mb.root.disk.stage(mb.inbox("bob").tmp, data, staging_name(msg_id))
        return cls(mb, msg_id, data, staged)

    def link(self) -> None:
        """Step 3: link the staging file into new/ (the send is acknowledged)."""
        self.mb.root.disk.publish(self.staged, self.mb.inbox("bob").new / f"{self.msg_id}.json")

    def unstage(self) -> None:
        """Step 4: unlink the staging name."""
        self.mb.root.disk.unlink(self.staged)


@pytest.fixture
def readers() -> Iterator[Callable[[Mailbox, int], list[Inbox]]]:
    """Readers of bob's inbox, each with its own handle, as separate processes have."""
    handles: list[Mailbox] = []

    def make(mb: Mailbox, count: int) -> list[Inbox]:
        handles.extend(Mailbox.open(mb.path) for _ in range(count))
        return [handle.inbox("bob") for handle in handles[-count:]]

    yield make
    for handle in handles:
        handle.close()


@pytest.fixture
def mb_expiring(tmp_path: Path) -> Iterator[Mailbox]:
    """A root with agents alice and bob whose leases run out at once (``lease_seconds`` 0)."""
    box = Mailbox.init(tmp_path, fsync="never", lease_seconds=0)
    box.add_agent("alice")
    box.add_agent("bob")
    yield box
    box.close()


Readers = Callable[[Mailbox, int], list[Inbox]]


def test_doctor_beside_a_send_a_claim_and_a_release_deletes_nothing(
        mb: Mailbox, readers: Readers, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor --repair beside ordinary sends, claims and give-backs never deletes mail."""
    inbox, (reader,) = mb.inbox("bob"), readers(mb, 1)
    send = Send.staged_for(mb)
    trail = (Trail(monkeypatch)
             .then("scan", inbox.cur, send.link, partial(reader.claim, send.msg_id))
             .then("lstat", inbox.cur / f"{send.msg_id}.json",
                   send.unstage, partial(reader.release, send.msg_id)))
    doctor.check(mb, repair=True)   # saw cur/X with two links, then new/X: one inode
    trail.finished()
    assert ([State.NEW], []) == (_held(inbox, send.msg_id), mb.dead.list())  # nor in dead/


def test_a_claimer_whose_lease_ran_out_never_buries_the_next_claim(
        mb: Mailbox, readers: Readers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claimer paused past its lease never quarantines the claim another reader holds."""
    inbox = mb.inbox("bob")
    slow, fast, sweeper = readers(mb, 3)
    first = Send.staged_for(mb)
    first.link()
    first.unstage()
    msg_id = first.msg_id
    retry = Send.staged_for(mb, msg_id)         # X is unread: the retry's looks passed
    claim, release = partial(fast.claim, msg_id), partial(fast.release, msg_id)
    trail = (Trail(monkeypatch)
             .then("fault", "claim.moved",      # slow has moved new/X to cur/X
                   retry.link,
                   partial(sweeper.requeue_expired, 0),     # slow's copy: to dead/
                   claim)                       # the retry, its tmp/ name still there
             .then("scan", inbox.tmp, retry.unstage, release)
             .then("lstat", inbox.cur / f"{msg_id}.json", claim))
    slow.claim(msg_id)                  # fstat: two links; tmp/, then cur/X: none
    trail.finished()
    assert [State.CLAIMED] == _held(inbox, msg_id)


def test_one_doctor_repair_leaves_each_message_in_one_place(
        mb_expiring: Mailbox, readers: Readers, monkeypatch: pytest.MonkeyPatch) -> None:
    """After one doctor --repair, a message is in exactly one of new/, cur/ and done/."""
    mb = mb_expiring
    inbox, (reader,) = mb.inbox("bob"), readers(mb, 1)
    first = Send.staged_for(mb)
    first.link()
    first.unstage()
    retry = Send.staged_for(mb, first.msg_id)   # a retry that looked before the claim ...
    inbox.claim(retry.msg_id)
    inbox.done(retry.msg_id)
    retry.link()                                # ... and links its copy after it
    retry.unstage()

    def die() -> None:
        raise Died

    trail = Trail(monkeypatch).then("fault", "claim.moved", die)
    with pytest.raises(Died):
        reader.claim(retry.msg_id)      # moved to cur/, died before looking at done/
    trail.finished()
    doctor.check(mb, repair=True)
    assert [State.DONE] == _held(inbox, retry.msg_id)
