"""Routed mail is tracked per recipient: one inbox that cannot be written stops no other."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentmailbox import Mailbox
from agentmailbox.presence import Presence
from agentmailbox.routing import Directory
from agentmailbox.supervisor import Supervisor, retry_dead_letter
from agentmailbox.supervisor.progress import Progress


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Mailbox]:
    """alice sends; bob, carol and dave are the group +team, in that order; fsync off."""
    box = Mailbox.init(tmp_path, fsync="never", groups={"team": ["bob", "carol", "dave"]})
    for name in ("alice", "bob", "carol", "dave"):
        box.add_agent(name, role="coder" if name != "alice" else "")
    yield box
    box.close()


def supervisor(mb: Mailbox, attempts: int = 3) -> Supervisor:
    """A supervisor that retries at every pass and gives up after ``attempts`` failures."""
    return Supervisor(mb, backoff=(0, 0), give_up=(attempts, 0))


def break_inbox(mb: Mailbox, agent: str, folder: str = "new") -> None:
    """Make ``agent``'s inbox unwritable: a plain file where ``inbox/<folder>/`` belongs."""
    path = mb.inbox(agent).path / folder
    shutil.rmtree(path)
    path.write_text("not a folder")


def mend_inbox(mb: Mailbox, agent: str, folder: str = "new") -> None:
    path = mb.inbox(agent).path / folder
    path.unlink()
    path.mkdir()


def holds(mb: Mailbox, agent: str) -> list[str]:
    return [m.id for m in mb.inbox(agent).list() if m.kind != "notice"]


def notices(mb: Mailbox) -> list[dict[str, Any]]:
    return [m.body for m in mb.inbox("alice").list() if m.kind == "notice"]


def progress_files(mb: Mailbox) -> list[str]:
    return sorted(p.name for p in mb.spool.progress_dir.iterdir())


def progress_of(mb: Mailbox, msg_id: str) -> Progress:
    return Progress.decode((mb.spool.progress_dir / f"{msg_id}.json").read_bytes(), msg_id)


@pytest.mark.parametrize("folder", ["new", "tmp"])
def test_members_after_an_unwritable_inbox_still_get_the_message(team: Mailbox,
                                                                 folder: str) -> None:
    """carol's broken inbox does not keep the message from dave (after her) or bob."""
    break_inbox(team, "carol", folder)
    msg = team.send("alice", "+team")
    with supervisor(team) as sup:
        sup.run_once()
    assert (holds(team, "bob"), holds(team, "dave")) == ([msg.id], [msg.id])
    assert (team.spool.find(msg.id)[0], team.dead.list()) == ("deferred", [])  # type: ignore[index]


def test_a_failing_recipient_is_retried_and_gets_the_message_once_mended(team: Mailbox) -> None:
    """While carol's inbox is broken the message waits for her; mended, she gets it, once."""
    break_inbox(team, "carol")
    msg = team.send("alice", "+team")
    with supervisor(team, attempts=100) as sup:
        sup.run_once()
        [told] = notices(team)
        assert (told["notice"], told["address"]) == ("deferred", "+team")
        assert "could not deliver to carol" in told["reason"]
        mend_inbox(team, "carol")
        sup.run_once()
    assert [holds(team, a) for a in ("bob", "carol", "dave")] == [[msg.id]] * 3
    assert (team.spool.find(msg.id), progress_files(team), team.dead.list()) == (None, [], [])


def test_a_recipient_failing_past_the_bound_is_reported_undeliverable_by_name(
        team: Mailbox) -> None:
    """After the bound the sender is told carol is undeliverable, and a copy is buried for her."""
    break_inbox(team, "carol")
    msg = team.send("alice", "+team")
    with supervisor(team) as sup:
        for _ in range(3):
            sup.run_once()
    undeliverable = [n for n in notices(team) if n["notice"] == "undeliverable"]
    assert [(n["address"], n["agent"]) for n in undeliverable] == [("+team", "carol")]
    assert "could not deliver to carol: gave up after 3 failed attempts" in \
        undeliverable[0]["reason"]
    [letter] = team.dead.list()
    assert (letter.extra["agent"], letter.extra["msg_id"], letter.origin) == (
        "carol", msg.id, "spool/tmp")
    assert (team.spool.find(msg.id), progress_files(team)) == (None, [])
    assert (holds(team, "bob"), holds(team, "dave")) == ([msg.id], [msg.id])


def test_the_buried_copy_for_an_undeliverable_recipient_can_be_retried(team: Mailbox) -> None:
    """mailbox dead retry of carol's copy, once her inbox is mended, reaches her alone."""
    break_inbox(team, "carol")
    msg = team.send("alice", "+team")
    with supervisor(team) as sup:
        for _ in range(3):
            sup.run_once()
        mend_inbox(team, "carol")
        [letter] = team.dead.list()
        retry_dead_letter(team, letter.id)
        sup.run_once()
    assert [holds(team, a) for a in ("bob", "carol", "dave")] == [[msg.id]] * 3


def test_failed_attempts_are_counted_across_a_restart(team: Mailbox) -> None:
    """The count of carol's failures is kept in the spool: a new supervisor goes on from it."""
    break_inbox(team, "carol")
    msg = team.send("alice", "+team")
    with supervisor(team, attempts=100) as sup:
        sup.run_once()
    so_far = progress_of(team, msg.id).recipients["carol"].attempts
    with supervisor(team, attempts=so_far + 1) as sup:
        sup.run_once()
    assert [n["agent"] for n in notices(team) if n["notice"] == "undeliverable"] == ["carol"]
    assert team.spool.find(msg.id) is None


def test_a_recipient_given_up_gets_nothing_after_the_sender_was_told(team: Mailbox) -> None:
    """Once the sender heard carol is undeliverable, a later retry (dave full meanwhile) and a
    restart do not deliver to carol after all."""
    team.registry.edit("dave", max_unread=1)
    team.send("alice", "dave", subject="fills dave")
    break_inbox(team, "carol")
    msg = team.send("alice", "+team")
    with supervisor(team) as sup:
        for _ in range(3):
            sup.run_once()
    assert team.spool.find(msg.id)[0] == "deferred"  # type: ignore[index]
    mend_inbox(team, "carol")
    team.inbox("dave").claim()
    with supervisor(team) as sup:
        sup.run_once()
    assert (holds(team, "carol"), holds(team, "dave")) == ([], [msg.id])
    assert [d.extra["agent"] for d in team.dead.list()] == ["carol"]


def test_pick_one_passes_over_a_candidate_whose_inbox_cannot_be_written(team: Mailbox) -> None:
    """The best candidate's broken inbox makes the pick go to the next one, at once."""
    Presence(team.root).beat("bob", capacity=1.0)
    Presence(team.root).beat("carol", capacity=0.5)
    break_inbox(team, "bob")
    msg = team.send("alice", "@coder", pick="one")
    with supervisor(team) as sup:
        sup.run_once()
    assert (holds(team, "carol"), team.spool.find(msg.id), team.dead.list()) == ([msg.id], None,
                                                                                 [])


def test_pick_one_with_every_candidate_given_up_is_undeliverable(team: Mailbox) -> None:
    """If no candidate of @coder can ever be written, the sender hears so and dead/ holds it."""
    Presence(team.root).beat("bob")
    for agent in ("carol", "dave"):
        team.registry.edit(agent, role="tester")
    break_inbox(team, "bob")
    msg = team.send("alice", "@coder", pick="one")
    with supervisor(team) as sup:
        for _ in range(3):
            sup.run_once()
    [letter] = team.dead.list()
    assert letter.reason.startswith("undeliverable: no agent of @coder could take it: bob: ")
    assert [n["notice"] for n in notices(team)] == ["waiting", "undeliverable"]
    assert team.spool.find(msg.id) is None


def test_an_error_that_is_no_recipients_keeps_the_message_for_a_retry(
        team: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while routing (not a bad file) no longer buries the message: it is retried."""
    real = Directory.expand
    failures = iter([RuntimeError("a passing fault")])

    def flaky(self: Directory, address: str, sender: str) -> Any:
        for exc in failures:
            raise exc
        return real(self, address, sender)

    monkeypatch.setattr(Directory, "expand", flaky)
    msg = team.send("alice", "+team")
    with supervisor(team) as sup:
        sup.run_once()
    assert [holds(team, a) for a in ("bob", "carol", "dave")] == [[msg.id]] * 3
    assert (team.dead.list(), team.spool.find(msg.id), progress_files(team)) == ([], None, [])


def test_a_message_that_always_fails_to_route_is_buried_at_the_bound(
        team: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error at every try ends, after the bound, in dead/ with 'could not route'."""
    def broken(self: Directory, address: str, sender: str) -> Any:
        raise RuntimeError("always")

    monkeypatch.setattr(Directory, "expand", broken)
    team.send("alice", "+team")
    with supervisor(team) as sup:
        for _ in range(2):
            sup.run_once()
    assert [d.reason for d in team.dead.list()] == ["could not route: RuntimeError: always"]
    assert progress_files(team) == []


def test_a_malformed_heartbeat_never_buries_pick_one_mail(team: Mailbox) -> None:
    """A heartbeat holding [] makes no pick-one message dead: it waits or reaches a live coder."""
    Presence(team.root).beat("carol")
    (team.path / "run" / "heartbeats" / "bob.json").write_bytes(b"[]")
    msg = team.send("alice", "@coder", pick="one")
    with Supervisor(team, backoff=(0, 0)) as sup:
        sup.run_once()
    assert team.dead.list() == []
    assert holds(team, "carol") == [msg.id] or team.spool.find(msg.id) is not None


@pytest.mark.parametrize("content", [b"[]", b"{not json", b'{"v": 2}', b"\xff\xfe",
                                     b'{"v":1,"id":"x","recipients":{}}'])
def test_a_bad_progress_file_is_quarantined_and_routing_goes_on(team: Mailbox,
                                                                content: bytes) -> None:
    """A planted or torn spool/progress file goes to dead/ with a reason; the mail still flows."""
    msg = team.send("alice", "+team")
    team.spool.ensure()
    (team.spool.progress_dir / f"{msg.id}.json").write_bytes(content)
    (team.spool.cur / f"{msg.id}.json").write_bytes(
        (team.spool.new / f"{msg.id}.json").read_bytes())
    (team.spool.new / f"{msg.id}.json").unlink()
    with Supervisor(team) as sup:
        sup.run_once()
    [letter] = team.dead.list()
    assert (letter.origin, letter.reason.startswith("routing progress: ")) == (
        "spool/progress", True)
    assert [holds(team, a) for a in ("bob", "carol", "dave")] == [[msg.id]] * 3


def test_the_progress_file_is_the_documented_format(team: Mailbox) -> None:
    """spool/progress/<id>.json names each failing recipient with its attempts and state."""
    break_inbox(team, "carol")
    msg = team.send("alice", "+team")
    with supervisor(team, attempts=100) as sup:
        sup.run_once()
    obj = orjson.loads((team.spool.progress_dir / f"{msg.id}.json").read_bytes())
    assert (obj["v"], obj["id"], obj["route"], list(obj["recipients"])) == (
        1, msg.id, None, ["carol"])
    carol = obj["recipients"]["carol"]
    assert (sorted(carol), carol["state"]) == (
        ["attempts", "first_at", "last_at", "reason", "state"], "retrying")


def test_a_sender_whose_inbox_cannot_be_written_still_has_its_mail_routed(
        team: Mailbox) -> None:
    """alice's own broken inbox (no notice can reach her) does not keep +team from its mail."""
    team.registry.edit("dave", max_unread=1)
    team.send("alice", "dave", subject="fills dave")
    break_inbox(team, "alice")
    msg = team.send("alice", "+team")
    with supervisor(team, attempts=1) as sup:  # a failed routing would be buried at once
        sup.run_once()
        team.inbox("dave").claim()
        sup.run_once()
    assert [holds(team, a) for a in ("bob", "carol", "dave")] == [[msg.id]] * 3
    assert (team.spool.find(msg.id), team.dead.list()) == (None, [])
