"""The supervisor: dead letters and notices, quotas, pick one, expiry, leases, rate, lifecycle."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Hung, deadline, python_env

from agentmailbox import Inbox, LockTimeout, Mailbox, Message, State
from agentmailbox.backoff import Backoff
from agentmailbox.presence import Presence
from agentmailbox.supervisor import Supervisor


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Mailbox]:
    """alice (planner); bob and carol (coders); fsync off."""
    box = Mailbox.init(tmp_path, fsync="never", groups={"crew": ["bob", "carol", "zed"]})
    box.add_agent("alice", role="planner")
    box.add_agent("bob", role="coder")
    box.add_agent("carol", role="coder")
    yield box
    box.close()


@pytest.fixture
def sup(team: Mailbox) -> Iterator[Supervisor]:
    """A supervisor on ``team`` that retries deferred mail at every pass."""
    with Supervisor(team, backoff=(0, 0)) as supervisor:
        yield supervisor


def notices(mb: Mailbox, agent: str = "alice") -> list[dict[str, Any]]:
    return [m.body for m in mb.inbox(agent).list() if m.kind == "notice"]


def unread(mb: Mailbox, agent: str) -> list[str]:
    return [m.id for m in mb.inbox(agent).list() if m.kind != "notice"]


# -- undeliverable -----------------------------------------------------------------------------

def test_unknown_role_goes_to_dead_and_the_sender_is_told(team: Mailbox, sup: Supervisor) -> None:
    """Mail to a role nobody has is buried with a reason and alice gets an undeliverable notice."""
    msg = team.send("alice", "@tester", subject="run the suite")
    sup.run_once()
    [letter] = team.dead.list()
    assert letter.reason == "undeliverable: no agent has role 'tester'"
    assert notices(team) == [{"of": msg.id, "notice": "undeliverable", "address": "@tester",
                              "reason": "no agent has role 'tester'"}]
    assert team.spool.find(msg.id) is None


def test_a_notice_about_mail_with_a_free_form_thread_joins_its_id(team: Mailbox,
                                                                   sup: Supervisor) -> None:
    """Routed mail an older writer spooled with any string as its thread still gets its
    notice, in the thread of its id (a name every reader and the thread markers accept)."""
    from agentmailbox.message import Message, encode

    old = Message(id=team.root.clock.new_id(), sender="alice", to=("@tester",), subject="q",
                  thread="Release 42")
    team.spool.deliver(old.id, encode(old, team.config.max_message_bytes))
    sup.run_once()
    [notice] = [m for m in team.inbox("alice").list() if m.kind == "notice"]
    assert (notice.body["of"], notice.thread) == (old.id, old.id)


def test_partly_unroutable_mail_reaches_the_rest_and_buries_a_copy(team: Mailbox,
                                                                  sup: Supervisor) -> None:
    """A group with an unknown member still reaches bob and carol; the gap is reported."""
    msg = team.send("alice", "+crew")
    sup.run_once()
    assert (unread(team, "bob"), unread(team, "carol")) == ([msg.id], [msg.id])
    [letter] = team.dead.list()
    assert (letter.reason, letter.extra["address"]) == (
        "undeliverable: unknown agent 'zed' in group +crew", "+crew")
    assert [n["address"] for n in notices(team)] == ["+crew"]


def test_malformed_spool_file_is_quarantined(team: Mailbox, sup: Supervisor) -> None:
    """A file in spool/new that is not a valid message goes to dead/ with the parse error."""
    (team.spool.new / "01000000000000000000-0123456789abcdef.json").write_bytes(b"{not json")
    sup.run_once()
    [letter] = team.dead.list()
    assert letter.reason.startswith("invalid JSON")


# -- quotas ---------------------------------------------------------------------------------------

def test_full_inbox_defers_routed_mail_until_there_is_room(team: Mailbox, sup: Supervisor) -> None:
    """Routed mail to a full inbox waits in the spool and arrives once bob reads."""
    team.registry.edit("bob", max_unread=1)
    first = team.send("alice", "bob")
    msg = team.send("alice", "@coder")
    sup.run_once()
    assert (unread(team, "bob"), unread(team, "carol")) == ([first.id], [msg.id])
    assert team.spool.find(msg.id)[0] == "deferred"  # type: ignore[index]
    team.inbox("bob").claim()
    sup.run_once()
    assert unread(team, "bob") == [msg.id]
    assert team.spool.find(msg.id) is None


def test_unroutable_part_of_deferred_mail_is_told_at_once(team: Mailbox,
                                                          sup: Supervisor) -> None:
    """While the rest waits for room, the sender already learns what reaches nobody."""
    team.registry.edit("bob", max_unread=1)
    team.send("alice", "bob")
    msg = team.send("alice", ["@coder", "@tester"])
    sup.run_once()
    assert sorted((n["notice"], n["address"]) for n in notices(team)) == [
        ("deferred", "@coder"), ("undeliverable", "@tester")]
    assert team.dead.list() == []
    team.inbox("bob").claim()
    sup.run_once()
    assert [d.extra["address"] for d in team.dead.list()] == ["@tester"]
    assert unread(team, "bob") == [msg.id] and len(notices(team)) == 2


def test_deferred_sender_is_told_once(team: Mailbox, sup: Supervisor) -> None:
    """However many retries, the sender gets one 'deferred' notice per message."""
    team.registry.edit("bob", max_unread=1)
    team.send("alice", "bob")
    msg = team.send("alice", "@coder")
    for _ in range(3):
        sup.run_once()
    assert [(n["notice"], n["of"]) for n in notices(team)] == [("deferred", msg.id)]
    assert "inbox of bob is full (1 unread, quota 1)" in notices(team)[0]["reason"]


# -- pick one -------------------------------------------------------------------------------------

def beat(mb: Mailbox, agent: str, **fields: Any) -> None:
    Presence(mb.root).beat(agent, **fields)


def test_pick_one_chooses_the_live_agent_with_most_capacity(team: Mailbox,
                                                           sup: Supervisor) -> None:
    """Among live coders, the one reporting the most spare capacity gets the message."""
    team.add_agent("erin", role="coder")
    beat(team, "bob", capacity=0.2)
    beat(team, "carol", capacity=0.9)
    beat(team, "erin")  # no capacity reported: counts as 0.5
    msg = team.send("alice", "@coder", pick="one")
    sup.run_once()
    assert [n for n in ("bob", "carol", "erin") if unread(team, n)] == ["carol"]
    assert team.status(msg.id).routed == {"@coder": ("carol",)}


@pytest.mark.parametrize("trouble", ["stale", "maintenance", "full"])
def test_pick_one_skips_an_agent_that_cannot_take_work(team: Mailbox, sup: Supervisor,
                                                       trouble: str) -> None:
    """A stale, in-maintenance or full agent is passed over even with more capacity."""
    beat(team, "bob", capacity=0.1)
    beat(team, "carol", capacity=1.0, mode="maintenance" if trouble == "maintenance" else "normal")
    if trouble == "stale":
        _age_heartbeat(team, "carol")
    if trouble == "full":
        team.registry.edit("carol", max_unread=1)
        team.send("alice", "carol")
    msg = team.send("alice", "@coder", pick="one")
    sup.run_once()
    assert unread(team, "bob") == [msg.id]
    assert msg.id not in unread(team, "carol")


def _age_heartbeat(mb: Mailbox, agent: str) -> None:
    path = mb.path / "run" / "heartbeats" / f"{agent}.json"
    old = time.time_ns() - int((mb.config.heartbeat_seconds + 60) * 1e9)
    path.write_bytes(path.read_bytes().replace(b'"at":', f'"at":{old},"was":'.encode(), 1))


def test_pick_one_waits_until_an_agent_is_alive(team: Mailbox, sup: Supervisor) -> None:
    """With no live coder the mail waits (sender told), then goes to the first one alive."""
    msg = team.send("alice", "@coder", pick="one")
    sup.run_once()
    assert team.spool.find(msg.id)[0] == "deferred"  # type: ignore[index]
    assert [(n["notice"], n["address"]) for n in notices(team)] == [("waiting", "@coder")]
    beat(team, "carol")
    sup.run_once()
    assert (unread(team, "bob"), unread(team, "carol")) == ([], [msg.id])


def test_pick_one_replayed_after_a_crash_reaches_no_second_agent(team: Mailbox,
                                                                sup: Supervisor) -> None:
    """Routing the same spool file again does not pick a second agent."""
    beat(team, "bob", capacity=0.9)
    beat(team, "carol", capacity=0.1)
    msg = team.send("alice", "@coder", pick="one")
    data = team.spool.new.joinpath(f"{msg.id}.json").read_bytes()
    sup.run_once()
    beat(team, "carol", capacity=1.0)
    (team.spool.cur / f"{msg.id}.json").write_bytes(data)  # as a killed supervisor left it
    sup.run_once()
    assert (unread(team, "bob"), unread(team, "carol")) == ([msg.id], [])


# -- replay ------------------------------------------------------------------------------------

def test_replay_of_a_routed_message_delivers_nothing_twice(team: Mailbox,
                                                           sup: Supervisor) -> None:
    """A spool file left in cur/ by a crash is routed again without a second copy or notice."""
    msg = team.send("alice", ["@coder", "@tester"])
    data = team.spool.new.joinpath(f"{msg.id}.json").read_bytes()
    sup.run_once()
    team.inbox("bob").done(team.inbox("bob").claim())
    (team.spool.cur / f"{msg.id}.json").write_bytes(data)
    sup.run_once()
    assert team.inbox("bob").state_of(msg.id) is State.DONE
    assert team.inbox("bob").ids() == [] and unread(team, "carol") == [msg.id]
    assert len(notices(team)) == 1
    assert team.spool.names(team.spool.cur) == []


def test_agent_named_directly_is_not_offered_the_routed_copy_again(
        team: Mailbox, sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    """bob, named directly and reached through @coder, holds one copy even if his reader
    finishes it while the supervisor routes: no second copy, nothing in dead/."""
    msg = team.send("alice", ["bob", "@coder"])
    real = Inbox._held_beyond_new

    def reader_finishes_in_between(inbox: Inbox, msg_id: str) -> bool:
        held = real(inbox, msg_id)
        if inbox.agent == "bob" and not held:  # bob's reader wins the race here
            with Mailbox.open(team.path) as reader:
                reader.inbox("bob").done(reader.inbox("bob").claim())
        return held

    monkeypatch.setattr(Inbox, "_held_beyond_new", reader_finishes_in_between)
    sup.run_once()
    monkeypatch.undo()
    bob = team.inbox("bob")
    copies = [*bob.new.iterdir(), *bob.cur.iterdir(), *bob.done_dir.glob("*/*")]
    assert ([f"{msg.id}.json"], [], [msg.id]) == (
        [p.name for p in copies], team.dead.list(), unread(team, "carol"))


# -- expiry and leases --------------------------------------------------------------------------

def test_expired_spooled_mail_goes_to_dead(team: Mailbox, sup: Supervisor) -> None:
    """Routed mail past expires_at is buried as expired, not delivered."""
    team.send("alice", "@coder", expires_at="2000-01-01T00:00:00Z")
    sup.run_once()
    assert [d.reason for d in team.dead.list()] == ["expired"]
    assert unread(team, "bob") == []


def test_sweep_buries_unread_mail_past_its_expiry(team: Mailbox, sup: Supervisor) -> None:
    """Unread mail whose expires_at passed moves from new/ to dead/ as expired."""
    stale = team.send("alice", "bob", expires_at="2000-01-01T00:00:00Z")
    fresh = team.send("alice", "bob", expires_at="1d")
    report = sup.run_once()
    assert (report.expired, team.inbox("bob").ids()) == (1, [fresh.id])
    [letter] = team.dead.list()
    assert (letter.reason, letter.name) == ("expired", f"{stale.id}.json")


def test_sweep_requeues_claims_past_their_lease(tmp_path: Path) -> None:
    """A claim older than lease_seconds goes back to new/."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=0)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob")
    mb.inbox("bob").claim()
    with Supervisor(mb) as sup:
        assert sup.run_once().requeued == 1
    assert mb.inbox("bob").state_of(msg.id) is State.NEW


# -- rate limit -----------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_flooding_sender_is_held_then_released_without_loss(tmp_path: Path) -> None:
    """Over its rate, a sender's routed mail is held (it is told), then all of it arrives."""
    mb = Mailbox.init(tmp_path, fsync="never", rate={"per_second": 1, "burst": 2})
    mb.add_agent("alice")
    mb.add_agent("bob", role="coder")
    clock = FakeClock()
    sent = [mb.send("alice", "@coder", subject=str(i)).id for i in range(5)]
    with Supervisor(mb, clock=clock) as sup:
        report = sup.run_once()
        assert (report.routed, report.held) == (2, 3)
        assert [n["notice"] for n in notices(mb)] == ["held"]
        clock.now += 10
        assert sup.run_once().released == 2  # the burst caps what a quiet spell earns
        clock.now += 10
        sup.run_once()
    assert unread(mb, "bob") == sent
    assert [n["notice"] for n in notices(mb)] == ["held", "resumed"]


def test_held_mail_keeps_its_order_behind_earlier_held_mail(tmp_path: Path) -> None:
    """New mail from a held sender queues behind its held mail, even with tokens back."""
    mb = Mailbox.init(tmp_path, fsync="never", rate={"per_second": 1, "burst": 1})
    mb.add_agent("alice")
    mb.add_agent("bob", role="coder")
    clock = FakeClock()
    first = [mb.send("alice", "@coder").id for _ in range(3)]
    with Supervisor(mb, clock=clock) as sup:
        sup.run_once()
        clock.now += 1
        later = mb.send("alice", "@coder").id
        sup.run_once()
        assert unread(mb, "bob") == first[:2]
        for _ in range(2):  # one token per pass: burst 1
            clock.now += 10
            sup.run_once()
    assert unread(mb, "bob") == [*first, later]


# -- retries ------------------------------------------------------------------------------------

def test_retries_wait_twice_as_long_after_each_failure_up_to_the_longest() -> None:
    """Deferred mail (like a failing --exec command) waits 0.5 s, 1 s, 2 s ... then the longest,
    and a success starts the count again."""
    clock = FakeClock()
    retries = Backoff(0.5, 3.0, clock=clock)
    assert [0.5, 1.0, 2.0, 3.0, 3.0] == [retries.failed("x") for _ in range(5)]
    clock.now += 2.9
    assert (False, True) == (retries.ready("x"), retries.ready("never failed"))
    clock.now += 0.1
    assert True is retries.ready("x")
    retries.forget("x")
    assert 0.5 == retries.failed("x")


# -- lifecycle ------------------------------------------------------------------------------------

def test_second_supervisor_on_the_same_root_is_refused(team: Mailbox, sup: Supervisor) -> None:
    """Only one supervisor per root: a second one fails fast with LockTimeout."""
    sup.run_once()
    with Supervisor(team) as other, pytest.raises(LockTimeout, match="already running"):
        other.run_once()


def test_run_routes_until_stop_is_called_from_another_thread(team: Mailbox) -> None:
    """run() routes mail as it arrives and returns once stop() is called."""
    supervisor = Supervisor(team)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    try:
        msg = team.send("alice", "@coder")
        _wait_for(lambda: unread(team, "carol") == [msg.id], f"carol to get {msg.id}")
    finally:
        supervisor.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert unread(team, "bob") == [msg.id]


def _wait_for(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Return once ``condition()`` holds; fail the test, saying ``what``, after ``limit`` s."""
    try:
        with deadline(limit):
            while not condition():
                time.sleep(0.01)
    except Hung:
        pytest.fail(f"waited {limit:g} s for {what}", pytrace=False)


def test_a_wait_that_times_out_fails_the_test_naming_what_it_waited_for() -> None:
    """A condition that never holds fails the waiting test loudly, not silently later."""
    with pytest.raises(pytest.fail.Exception, match=r"waited 0\.05 s for the impossible"):
        _wait_for(lambda: False, "the impossible", limit=0.05)


def _supervise(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agentmailbox", "--root", str(root),
                             "supervise", *args], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _started(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stderr is not None
    return proc.stderr.readline()


@pytest.mark.slow
def test_second_mailbox_supervise_exits_6_with_a_clear_message(team: Mailbox) -> None:
    """`mailbox supervise` on a supervised root exits 6 and says another one runs."""
    first = _supervise(team.path)
    try:
        assert b"supervisor started" in _started(first)
        second = _supervise(team.path)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 6
        assert b"already running" in err and str(first.pid).encode() in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_stops_mailbox_supervise_cleanly_after_routing(team: Mailbox, sig: int,
                                                              code: int) -> None:
    """SIGTERM (exit 0) or Ctrl-C (exit 130) ends `mailbox supervise`, which logged JSON lines."""
    proc = _supervise(team.path)
    try:
        assert orjson.loads(_started(proc))["event"] == "supervisor started"
        msg = team.send("alice", "@coder")
        _wait_for(lambda: unread(team, "carol") == [msg.id], f"carol to get {msg.id}")
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert b"supervisor stopped" in err
    assert unread(team, "bob") == [msg.id]


def test_held_mail_survives_a_restart(tmp_path: Path) -> None:
    """Mail held by one supervisor is released by the next one, none lost."""
    mb = Mailbox.init(tmp_path, fsync="never", rate={"per_second": 1, "burst": 1})
    mb.add_agent("alice")
    mb.add_agent("bob", role="coder")
    clock = FakeClock()
    sent = [mb.send("alice", "@coder").id for _ in range(3)]
    with Supervisor(mb, clock=clock) as sup:
        sup.run_once()
    clock.now += 100
    with Supervisor(mb, clock=clock) as sup:
        sup.run_once()
        clock.now += 100
        sup.run_once()
    assert unread(mb, "bob") == sent


def test_notice_is_a_message_from_the_supervisor_in_reply(team: Mailbox, sup: Supervisor) -> None:
    """A notice replies to the original, in its thread, with kind 'notice'."""
    msg = team.send("alice", "@tester", subject="x")
    sup.run_once()
    [notice] = team.inbox("alice").list()
    assert isinstance(notice, Message)
    assert (notice.kind, notice.sender, notice.reply_to, notice.thread) == (
        "notice", "supervisor", msg.id, msg.thread)


def test_foreign_file_in_the_spool_is_quarantined(team: Mailbox, sup: Supervisor) -> None:
    """A file in spool/new not named like a message is moved to dead/, not routed."""
    shutil.copy(__file__, team.spool.new / "notes.txt")
    sup.run_once()
    assert [d.reason for d in team.dead.list()] == ["foreign file name in spool/new/"]


def test_a_spool_entry_that_cannot_be_routed_is_buried_and_routing_goes_on(
        team: Mailbox, sup: Supervisor) -> None:
    """A directory posing as a message is quarantined; the mail after it still arrives."""
    (team.spool.new / "01000000000000000000-0123456789abcdef.json").mkdir()
    msg = team.send("alice", "@coder")
    sup.run_once()
    [letter] = team.dead.list()
    assert "a directory, not a regular file" == letter.reason
    assert unread(team, "bob") == [msg.id]
