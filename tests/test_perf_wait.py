"""inbox.wait() wakes as fast as a watch loop: no observer threads to start or join."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import deadline

import agentmailbox.watch as watch
from agentmailbox import Mailbox
from agentmailbox.watch import Watcher


def _send_soon(mb: Mailbox) -> threading.Timer:
    timer = threading.Timer(0.1, lambda: mb.send("alice", "bob", subject="now"))
    timer.start()
    return timer


def test_wait_wakes_on_arrival_without_a_watch_thread(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader blocked in wait() wakes at the delivery without starting a watchdog
    observer, whose threads would have to be joined after every wake-up."""

    def refuse(self: Watcher) -> Watcher:
        raise AssertionError("wait() started a watchdog observer")

    monkeypatch.setattr(Watcher, "start", refuse)
    timer = _send_soon(mb)
    with deadline(30):
        assert mb.inbox("bob").wait(timeout=60) is True
    timer.join()


def test_wait_without_inotify_instances_still_wakes_on_its_rescan(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the kernel has no inotify instance left for this user, wait() still returns
    once mail is there, on its periodic rescan."""
    real = watch.libc_function

    def no_instances(name: str) -> Any:
        if name != "inotify_init1":
            return real(name)

        def refused(flags: int) -> int:
            ctypes.set_errno(errno.EMFILE)
            return -1

        return refused

    monkeypatch.setattr(watch, "libc_function", no_instances)
    timer = _send_soon(mb)
    with deadline(30):
        assert watch.wait_for_mail(mb.inbox("bob").new, 60, rescan_interval=0.2) is True
    timer.join()


def _on_inotify_init(monkeypatch: pytest.MonkeyPatch, then: Callable[[int], int]) -> None:
    """Pass every inotify descriptor opened from now on through ``then`` (which returns the
    descriptor the caller gets)."""
    real = watch.libc_function

    def wrapped(name: str) -> Any:
        function = real(name)
        if name != "inotify_init1":
            return function

        def init(flags: int) -> int:
            fd: int = function(flags)
            return then(fd)

        return init

    monkeypatch.setattr(watch, "libc_function", wrapped)


def _count_inotify_instances(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The inotify descriptors opened from now on (the list grows as they are made)."""
    made: list[int] = []

    def note(fd: int) -> int:
        made.append(fd)
        return fd

    _on_inotify_init(monkeypatch, note)
    return made


def test_a_loop_of_waits_keeps_one_inotify_descriptor(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader looping over wait() and claim() opens one inotify descriptor for all its
    waits (closing one waits for the kernel), and Mailbox.close() closes it."""
    made = _count_inotify_instances(monkeypatch)
    inbox = mb.inbox("bob")
    for _ in range(3):
        timer = _send_soon(mb)
        with deadline(30):
            assert inbox.wait(timeout=60) is True
        timer.join()
        msg = inbox.claim()
        assert msg is not None and inbox.done(msg)
    assert 1 == len(made)
    mb.close()
    with pytest.raises(OSError):
        os.fstat(made[0])


def test_wait_works_with_a_descriptor_past_1023(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-running process with many files open still waits for mail (select() cannot
    watch a descriptor past 1023)."""
    def high(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1100)
        os.close(fd)
        return moved

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("the hard limit of open files is below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    try:
        _on_inotify_init(monkeypatch, high)
        assert mb.inbox("bob").wait(timeout=0.1) is False
        timer = _send_soon(mb)
        with deadline(30):
            assert mb.inbox("bob").wait(timeout=60) is True
        timer.join()
        mb.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_kept_bell_lists_new_once_before_sleeping_and_still_sees_mail_sent_in_between(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a reader's wait() has armed its descriptor, the next wait lists new/ once before
    it sleeps and once when woken, and returns at once for mail that came while the
    reader was busy."""
    inbox = mb.inbox("bob")
    timer = _send_soon(mb)
    with deadline(30):
        assert inbox.wait(timeout=60) is True  # arms the bell
    timer.join()
    msg = inbox.claim()
    assert msg is not None and inbox.done(msg)
    mb.send("alice", "bob", subject="while busy")  # rings a bell nobody waits on yet
    with deadline(30):
        assert inbox.wait(timeout=60) is True
    msg = inbox.claim()
    assert msg is not None and msg.subject == "while busy" and inbox.done(msg)
    assert inbox.wait(timeout=0) is False
    real, listed = watch.has_mail, []

    def counting(directory: Any, disk: Any = None) -> bool:
        listed.append(directory)
        return real(directory, disk)

    monkeypatch.setattr(watch, "has_mail", counting)
    timer = _send_soon(mb)
    with deadline(30):
        assert inbox.wait(timeout=60) is True
    timer.join()
    assert 2 == len(listed)


def test_a_loop_of_claim_next_keeps_one_inotify_descriptor_and_no_thread(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """claim_next() and watch() wait on the handle's one inotify descriptor, as wait()
    does: a loop of them opens one for all its calls and starts no watcher thread."""
    made = _count_inotify_instances(monkeypatch)
    def refuse(self: Watcher) -> Watcher:
        raise AssertionError("claim_next() started a watchdog observer")

    monkeypatch.setattr(Watcher, "start", refuse)
    inbox = mb.inbox("bob")
    for _ in range(3):
        timer = _send_soon(mb)
        with deadline(30):
            msg = inbox.claim_next(timeout=60)
        timer.join()
        assert msg is not None and inbox.done(msg)
    assert 1 == len(made)


def test_a_bell_cleared_after_more_arrivals_than_one_read_holds_rings_again_only_for_new_ones(
        tmp_path: Path) -> None:
    """Clearing a doorbell forgets every arrival so far, even more than one read returns,
    and the next arrival rings it again."""
    folder = tmp_path / "new"
    folder.mkdir()
    with watch.Doorbell(folder) as bell:
        bell.open()
        for i in range(3000):  # ~60 bytes of event each: about three reads' worth
            (folder / f"{i:040d}.json").touch()
        bell.clear()
        assert bell._poller is not None and not bell._poller.poll(0)
        (folder / "one-more.json").touch()
        assert bell._poller.poll(0)
