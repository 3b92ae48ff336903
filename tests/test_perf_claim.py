"""The claim path stays O(1) in the claims in flight, sets the lease only where the claiming
rename did not, and expired leases still come back."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentmailbox import Mailbox, State
from agentmailbox.fs import Disk


def _claims_in_flight(mb: Mailbox, n: int) -> Mailbox:
    """``n`` messages claimed by another reader and not done; returns that reader's root."""
    other = Mailbox.open(mb.path)
    for _ in range(n):
        mb.send("alice", "bob")
        assert other.inbox("bob").claim() is not None
    return other


def test_claiming_new_mail_looks_at_no_claim_in_flight_until_one_may_run_out(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader claiming mail as it arrives does not look at the claims other readers hold
    while none of their leases can have run out: a claim costs the same with 0 or 1,000 in
    flight."""
    other = _claims_in_flight(mb, 5)
    inbox = mb.inbox("bob")
    in_flight = {str(inbox.cur / f"{msg_id}.json") for msg_id in inbox.ids(State.CLAIMED)}
    assert inbox.claim() is None  # the first refill sweeps once and sees five fresh leases
    looked: list[str] = []
    lstat = Disk.lstat

    def counting(disk: Disk, path: str | Path) -> object:
        if os.fspath(path) in in_flight:
            looked.append(str(path))
        return lstat(disk, path)

    monkeypatch.setattr(Disk, "lstat", counting)
    for _ in range(3):
        sent = mb.send("alice", "bob")
        got = inbox.claim()
        assert got is not None and got.id == sent.id
        inbox.done(got)
    assert [] == looked
    other.close()


class _Clock:
    """The wall clock the inbox reads, set by the test (file times stay the kernel's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = time.time_ns()
        monkeypatch.setattr("agentmailbox.inbox.time", SimpleNamespace(time_ns=lambda: self.now))


LEASE_NS = 60 * 10**9
SLACK_NS = 100_000_000  # how far a claim's ctime may stand from the claim (PROTOCOL.md §9.2)


@pytest.fixture
def leased(tmp_path: Path) -> Iterator[tuple[Mailbox, str]]:
    """A root with a 60 s lease and one message claimed by a holder, not done."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=LEASE_NS / 1e9)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob")
    holder = Mailbox.open(mb.path)
    assert holder.inbox("bob").claim() is not None
    yield mb, msg.id
    holder.close()
    mb.close()


def test_an_expired_lease_is_given_back_by_the_first_refill_after_it_ran_out(
        leased: tuple[Mailbox, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim whose lease ran out is handed to the next reader that looks for mail, even
    when that reader's last look found the claim well within its lease."""
    mb, msg_id = leased
    clock = _Clock(monkeypatch)
    reader = mb.inbox("bob")
    assert reader.claim() is None  # its sweep saw the claim within its lease
    ends = reader.lease_end(msg_id)
    assert ends is not None
    clock.now = ends - 10**9
    assert reader.claim() is None
    clock.now = ends + 1
    again = reader.claim()
    assert again is not None and again.id == msg_id


def test_a_renewed_claim_is_not_given_back_at_its_first_lease_end(
        leased: tuple[Mailbox, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Renewing a claim moves its lease end: a reader that saw the old end does not
    release it then, and does once the new end has passed."""
    mb, msg_id = leased
    clock = _Clock(monkeypatch)
    reader = mb.inbox("bob")
    assert reader.claim() is None
    first_end = reader.lease_end(msg_id)
    assert first_end is not None
    renewed_at = first_end - LEASE_NS // 2  # as a renew half a lease after the claim
    os.utime(reader.cur / f"{msg_id}.json", ns=(renewed_at, renewed_at))
    clock.now = first_end + 1
    assert reader.claim() is None
    clock.now = renewed_at + LEASE_NS + 1
    again = reader.claim()
    assert again is not None and again.id == msg_id


def test_a_wall_clock_stepped_back_sweeps_at_once(
        leased: tuple[Mailbox, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """After the wall clock steps back by more than a lease, the claims stamped in its
    future are released by the next refill, as the lease rule says (such times are not
    believed)."""
    mb, msg_id = leased
    clock = _Clock(monkeypatch)
    reader = mb.inbox("bob")
    assert reader.claim() is None
    clock.now -= 2 * LEASE_NS
    again = reader.claim()
    assert again is not None and again.id == msg_id


def _lease_ns(mb: Mailbox) -> int:
    return int(mb.config.lease_seconds * 1e9)


def _counting_leases(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors whose times a claim sets, from now on."""
    set_on: list[int] = []
    touch_open = Disk.touch_open

    def counting(fd: int, path: str | os.PathLike[str]) -> None:
        set_on.append(fd)
        touch_open(fd, path)

    monkeypatch.setattr(Disk, "touch_open", staticmethod(counting))
    return set_on


def _renames_keep_the_ctime(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on a claimer sees what a rename that leaves the ctime alone (as POSIX
    allows) leaves: the ctime of the delivery, here its mtime."""
    open_regular = Disk.open_regular

    def as_delivered(disk: Disk, path: str | os.PathLike[str], limit: int
                     ) -> tuple[int, os.stat_result]:
        fd, st = open_regular(disk, path, limit)
        fields = {k: getattr(st, k) for k in dir(st) if k.startswith("st_")}
        fields["st_ctime_ns"] = st.st_mtime_ns
        return fd, os.stat_result(tuple(st), fields)

    monkeypatch.setattr(Disk, "open_regular", as_delivered)


def test_a_claim_whose_rename_started_the_lease_sets_no_times(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a filesystem whose rename sets the ctime (Linux), claiming costs no futimens: the
    claim's ctime is its lease start, and the lease runs a full lease from the claim."""
    sent = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    set_on = _counting_leases(monkeypatch)
    before = time.time_ns()
    got = inbox.claim()
    assert got is not None and got.id == sent.id
    ends = inbox.lease_end(sent.id)
    assert ends is not None and ends >= before + _lease_ns(mb) - SLACK_NS
    assert [] == set_on


def test_a_claim_whose_rename_left_the_ctime_still_starts_its_lease(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a rename leaves the ctime alone, the claimer sets the times itself: a message
    delivered long ago is not released to a second reader as soon as it is claimed."""
    sent = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    os.utime(inbox.new / f"{sent.id}.json", ns=(10**9, 10**9))  # delivered long ago
    _renames_keep_the_ctime(monkeypatch)
    set_on = _counting_leases(monkeypatch)
    before = time.time_ns()
    assert inbox.claim() is not None
    assert 1 == len(set_on)
    assert (inbox.cur / f"{sent.id}.json").stat().st_mtime_ns >= before - SLACK_NS


def test_a_claim_of_a_file_with_a_future_mtime_starts_its_lease_now(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivered file whose mtime stands ahead (planted, or a clock stepped back) does not
    hold its claim longer: the claimer sets its times, and the lease counts from the claim."""
    sent = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    ahead = time.time_ns() + _lease_ns(mb) // 2
    os.utime(inbox.new / f"{sent.id}.json", ns=(ahead, ahead))
    set_on = _counting_leases(monkeypatch)
    assert inbox.claim() is not None
    after = time.time_ns()
    ends = inbox.lease_end(sent.id)
    assert 1 == len(set_on)
    assert ends is not None and ends <= after + _lease_ns(mb)


def test_a_claim_of_an_empty_inbox_lists_new_once(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader polling an empty inbox pays one listing of ``new/`` per claim, and still gets
    the mail that arrives next."""
    inbox = mb.inbox("bob")
    listed: list[str] = []
    scan, list_names = Disk.scan, Disk.names

    def counting(disk: Disk, path: str | os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
        listed.append(os.fspath(path))
        return scan(disk, path)

    def counting_names(disk: Disk, path: str | os.PathLike[str]) -> list[str]:
        listed.append(os.fspath(path))
        return list_names(disk, path)

    monkeypatch.setattr(Disk, "scan", counting)
    monkeypatch.setattr(Disk, "names", counting_names)
    assert inbox.claim() is None
    assert [str(inbox.new)] == [p for p in listed if p.startswith(str(inbox.new))]
    sent = mb.send("alice", "bob")
    got = inbox.claim()
    assert got is not None and got.id == sent.id
