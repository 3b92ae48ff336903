"""The watcher: wake-ups from watchdog, rescans when events are lost, and the consumer loops."""

from __future__ import annotations

import collections
import logging
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox, State, journal
from agentmailbox.presence import Liveness, Presence
from agentmailbox.watch import Watcher

NEVER = 3600.0  # a rescan interval no test waits for: only events can wake the watcher


def _new(mb: Mailbox, agent: str = "bob") -> Path:
    return mb.inbox(agent).new


# -- Inbox.wait ------------------------------------------------------------------------------------

def test_wait_is_true_without_waiting_when_mail_is_there(mb: Mailbox) -> None:
    """wait() returns True at once when unread mail is already present (even with timeout 0)."""
    mb.send("alice", "bob", subject="waiting")
    assert mb.inbox("bob").wait(timeout=0) is True


def test_wait_is_false_after_the_timeout_when_no_mail_comes(mb: Mailbox) -> None:
    """wait() gives up with False when the timeout passes and nothing arrived."""
    assert mb.inbox("bob").wait(timeout=0.2) is False


def test_wait_is_true_when_mail_arrives_while_waiting(mb: Mailbox) -> None:
    """A reader blocked in wait() wakes when a message is delivered."""
    sender = threading.Timer(0.1, lambda: Mailbox.open(mb.path).send("alice", "bob"))
    sender.start()
    try:
        assert mb.inbox("bob").wait(timeout=60) is True
    finally:
        sender.join()


def test_wait_ignores_claimed_mail(mb: Mailbox) -> None:
    """Claimed (not done) mail is not unread: wait() does not wake for it."""
    mb.send("alice", "bob")
    mb.inbox("bob").claim()
    assert mb.inbox("bob").wait(timeout=0) is False


# -- the Watcher -----------------------------------------------------------------------------------

def test_a_delivery_wakes_the_watcher_through_an_event(mb: Mailbox) -> None:
    """A delivery into new/ wakes the watcher long before any rescan is due."""
    with Watcher(_new(mb), rescan_interval=NEVER) as watcher:
        mb.send("alice", "bob")
        assert watcher.wait(timeout=60) is True
        assert watcher.due() == (_new(mb),)


def test_staging_in_tmp_does_not_wake_the_watcher(mb: Mailbox) -> None:
    """Only new/ is watched: files being written in tmp/ cause no wake-up."""
    inbox = mb.inbox("bob")
    with Watcher(inbox.new, rescan_interval=NEVER) as watcher:
        (inbox.tmp / "half-written").write_bytes(b"{")
        assert watcher.wait(timeout=0.3) is False


def test_a_release_back_to_new_wakes_the_watcher(mb: Mailbox) -> None:
    """Mail given back (cur/ -> new/) is a wake-up like a delivery."""
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    inbox.claim()
    with Watcher(inbox.new, rescan_interval=NEVER) as watcher:
        inbox.release(msg)
        assert watcher.wait(timeout=60) is True


def test_one_watcher_watches_several_directories_and_says_which_changed(mb: Mailbox) -> None:
    """A watcher on many inboxes reports only the inbox that received mail."""
    with Watcher(_new(mb, "alice"), _new(mb, "bob"), rescan_interval=NEVER) as watcher:
        mb.send("bob", "alice")
        assert watcher.wait(timeout=60) is True
        assert watcher.due() == (_new(mb, "alice"),)


def test_a_timeout_asks_for_a_full_rescan(mb: Mailbox) -> None:
    """After a quiet wait every directory is due: the periodic rescan is the safety net."""
    with Watcher(_new(mb, "alice"), _new(mb, "bob")) as watcher:
        assert watcher.wait(timeout=0.05) is False
        assert watcher.due() == (_new(mb, "alice"), _new(mb, "bob"))


def test_an_overflow_triggers_a_rescan_that_finds_mail_whose_events_were_lost(
        mb: Mailbox) -> None:
    """Mail delivered while events were lost is found after watchdog reports an overflow."""
    inbox = mb.inbox("bob")
    with Watcher(inbox.new, rescan_interval=NEVER) as watcher:
        assert watcher.observer is not None
        watcher.observer.unschedule_all()  # events are now lost, as in an overflow
        sent = {mb.send("alice", "bob", subject=str(i)).id for i in range(5)}
        assert watcher.wait(timeout=0.2) is False  # nothing woke it: the events were lost
        watcher.due()
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")
        assert watcher.wait(timeout=60) is True
        assert watcher.overflows == 1
        assert watcher.due() == (inbox.new,)
        assert set(inbox.ids()) == sent


def test_an_overflow_wakes_every_watcher(mb: Mailbox) -> None:
    """The kernel cannot say whose events it dropped, so all watchers rescan."""
    with Watcher(_new(mb, "alice"), rescan_interval=NEVER) as first, \
            Watcher(_new(mb, "bob"), rescan_interval=NEVER) as second:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")
        assert (first.wait(timeout=60), second.wait(timeout=60)) == (True, True)


def test_a_stopped_watcher_no_longer_listens_for_overflows(mb: Mailbox) -> None:
    """Stopping detaches the overflow alarm from watchdog's logger."""
    watcher = Watcher(_new(mb)).start()
    watcher.stop()
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    assert watcher.overflows == 0


@pytest.mark.parametrize("victim", ["observer", "emitter"])
def test_a_dead_watch_thread_is_replaced_and_mail_is_still_seen(mb: Mailbox, victim: str) -> None:
    """If watchdog's dispatcher or emitter thread dies, the watcher starts a new one."""
    inbox = mb.inbox("bob")
    with Watcher(inbox.new, rescan_interval=NEVER) as watcher:
        dying = watcher.observer
        assert dying is not None
        thread = dying if victim == "observer" else next(iter(dying.emitters))
        thread.stop()
        thread.join()
        first = mb.send("alice", "bob")
        assert watcher.wait(timeout=60) is True  # the replacement wakes for a full rescan
        assert watcher.restarts == 1
        assert watcher.observer is not dying
        assert first.id in inbox.ids()
        watcher.due()
        mb.send("alice", "bob")
        assert watcher.wait(timeout=60) is True  # and the new observer delivers events
        assert watcher.due() == (inbox.new,)


def test_watching_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    """A watch on a directory that does not exist fails with our error, not OSError."""
    from agentmailbox import StorageError

    with pytest.raises(StorageError):
        Watcher(tmp_path / "missing").start()


# -- Inbox.watch -----------------------------------------------------------------------------------

def test_watch_claims_and_yields_waiting_mail_oldest_first(mb: Mailbox) -> None:
    """watch() yields what is waiting, oldest first, each already claimed."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(3)]
    inbox = mb.inbox("bob")
    seen = [m.id for m in inbox.watch(timeout=0)]
    assert seen == ids
    assert [inbox.state_of(i) for i in ids] == [State.CLAIMED] * 3


def test_watch_yields_mail_sent_while_it_runs(mb: Mailbox) -> None:
    """Messages sent after watching began are yielded as they arrive."""
    stop = threading.Event()
    sender = threading.Timer(0.1, lambda: [Mailbox.open(mb.path).send("alice", "bob", body=i)
                                           for i in range(5)])
    sender.start()
    got = []
    try:
        for msg in mb.inbox("bob").watch(stop=stop, timeout=60):
            got.append(msg.body)
            if len(got) == 5:
                stop.set()
    finally:
        sender.join()
    assert got == [0, 1, 2, 3, 4]


def test_watch_ends_when_stop_is_set(mb: Mailbox) -> None:
    """Setting the stop event ends the loop; unclaimed mail stays unread."""
    for i in range(3):
        mb.send("alice", "bob", body=i)
    stop = threading.Event()
    got = []
    for msg in mb.inbox("bob").watch(stop=stop):
        got.append(msg.body)
        stop.set()
    assert got == [0]
    assert mb.inbox("bob").count(State.NEW) == 2


def test_watch_records_a_heartbeat(mb: Mailbox) -> None:
    """An agent consuming with watch() shows up as alive."""
    list(mb.inbox("bob").watch(timeout=0))
    assert Presence(mb.root).liveness("bob") is Liveness.ALIVE


def test_watch_without_heartbeat_records_none(mb: Mailbox) -> None:
    """heartbeat=False leaves presence alone."""
    list(mb.inbox("bob").watch(timeout=0, heartbeat=False))
    assert Presence(mb.root).liveness("bob") is Liveness.NEVER


def test_leaving_the_watch_loop_early_stops_its_threads(mb: Mailbox) -> None:
    """Breaking out of the for loop stops the watcher (its threads are joined)."""
    mb.send("alice", "bob")
    before = threading.active_count()
    for _ in mb.inbox("bob").watch():
        break
    journal.settle()  # the journal's flusher (the claim's line) is not the watcher's
    assert threading.active_count() == before


# -- many producers --------------------------------------------------------------------------------

PRODUCER = """
import sys
from agentmailbox import Mailbox
mb = Mailbox.open(sys.argv[1], fsync="never")
producer, count = sys.argv[2], int(sys.argv[3])
for seq in range(count):
    mb.send("alice", "bob", body={"producer": producer, "seq": seq})
"""


@pytest.mark.slow
def test_a_burst_from_four_producers_is_seen_exactly_once_by_a_watching_reader(
        mb: Mailbox) -> None:
    """20,000 messages from 4 processes: the watching reader sees each exactly once."""
    producers, per_producer = 4, 5000
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    stop = threading.Event()
    inbox = mb.inbox("bob")
    procs = [subprocess.Popen([sys.executable, "-c", PRODUCER, str(mb.path), f"p{p}",
                               str(per_producer)], env=python_env())
             for p in range(producers)]
    try:
        for msg in inbox.watch(stop=stop, timeout=60):
            seen[(msg.body["producer"], msg.body["seq"])] += 1
            inbox.done(msg)
            if len(seen) == producers * per_producer:
                stop.set()
    finally:
        codes = [p.wait() for p in procs]
    assert codes == [0] * producers
    assert len(seen) == producers * per_producer
    assert set(seen.values()) == {1}
    assert inbox.count(State.NEW) == inbox.count(State.CLAIMED) == 0


def test_message_bodies_survive_the_watch_loop(mb: Mailbox) -> None:
    """What watch() yields is the message as sent."""
    sent = mb.send("alice", "bob", subject="s", body={"k": [1, 2]})
    (got,) = list(mb.inbox("bob").watch(timeout=0))
    assert orjson.dumps(got.to_dict()) == orjson.dumps(sent.to_dict())
