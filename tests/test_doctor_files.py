"""Every file an error sends the user to `mailbox doctor` for, doctor checks and repairs.

A bad thread marker, agent.json, heartbeat, working state or key marker gives a clean
error (or reads as absent), `doctor` reports it, and `doctor --repair` quarantines it
into dead/ with its reason, rebuilding a default only where one is obvious.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentmailbox import InvalidInput, Mailbox, doctor
from agentmailbox.cli import EXIT_INVALID, EXIT_OK, EXIT_UNHEALTHY
from agentmailbox.presence import Liveness, Presence

Cli = Any


def _clean(out: Any) -> bool:
    """A one-line error (and its hint), not a traceback."""
    return "Traceback" not in out.err and out.err.count("\n") <= 2


# -- thread markers ----------------------------------------------------------------------------

@pytest.fixture
def bad_marker(mb: Mailbox) -> str:
    """A thread with unread mail whose DONE marker holds ``[]``; returns the thread id."""
    msg = mb.send("alice", "bob", subject="in a done thread")
    mb.threads.mark_done(msg.thread, "alice")
    (mb.path / "threads" / f"{msg.thread}.done.json").write_bytes(b"[]")
    return msg.thread


def test_bad_thread_marker_is_a_clean_error_pointing_to_doctor(cli: Cli, mb: Mailbox,
                                                               bad_marker: str) -> None:
    """inbox, boot and a reply into the thread exit 5 with a hint to run doctor."""
    for args in (["inbox", "bob"], ["boot", "bob"],
                 ["send", "--from", "bob", "--to", "alice", "--reply-to", bad_marker,
                  "--body", "x"]):
        out = cli(*args)
        assert (EXIT_INVALID, True, True) == (out.code, "doctor" in out.err, _clean(out)), args


def test_doctor_repairs_a_bad_thread_marker_and_the_thread_stays_done(
        cli: Cli, mb: Mailbox, bad_marker: str) -> None:
    """doctor reports the marker; --repair quarantines it with a reason and rebuilds it, so
    the thread is still done and inbox works again."""
    assert EXIT_UNHEALTHY == cli("doctor").code
    assert EXIT_OK == cli("doctor", "--repair").code
    dead = mb.dead.list()
    assert (1, "threads", True) == (len(dead), dead[0].origin, "thread marker" in dead[0].reason)
    out = cli("inbox", "bob", "--json")
    assert (EXIT_OK, [True]) == (out.code, [row["thread_done"] for row in out.json()])
    assert EXIT_OK == cli("doctor").code


# -- agent.json ----------------------------------------------------------------------------------

def test_bad_agent_json_is_a_clean_error_pointing_to_doctor(cli: Cli, mb: Mailbox) -> None:
    """`agent show` of an agent.json holding [] exits 5 with a hint to run doctor."""
    (mb.path / "agents/bob/agent.json").write_bytes(b"[]")
    out = cli("agent", "show", "bob")
    assert (EXIT_INVALID, True, True) == (out.code, "doctor" in out.err, _clean(out))


def test_doctor_repairs_a_bad_agent_json_and_keeps_the_agent(mb: Mailbox) -> None:
    """--repair quarantines agent.json and gives the agent a name-only identity: it stays
    registered and its mail stays readable."""
    sent = mb.send("alice", "bob")
    (mb.path / "agents/bob/agent.json").write_bytes(b'{"name": "bob", "role": 5}')
    assert ["malformed"] == [f.kind for f in doctor.check(mb)]
    assert [True] == [f.repaired for f in doctor.check(mb, repair=True)]
    claimed = Mailbox.open(mb.path).inbox("bob").claim()
    assert ("", sent.id, ["agents/bob"]) == (mb.registry.get("bob").role,
                                            claimed.id if claimed else None,
                                            [d.origin for d in mb.dead.list()])
    assert [] == doctor.check(mb)


# -- heartbeats --------------------------------------------------------------------------------

def test_doctor_repairs_a_bad_heartbeat(mb: Mailbox) -> None:
    """A heartbeat holding [] is reported; --repair quarantines it; bob is never seen until
    he beats again."""
    presence = Presence(mb.root)
    presence.beat("bob")
    (mb.path / "run/heartbeats/bob.json").write_bytes(b"[]")
    assert ["malformed"] == [f.kind for f in doctor.check(mb)]
    doctor.check(mb, repair=True)
    assert ([], Liveness.NEVER, ["run/heartbeats"]) == (
        doctor.check(mb), presence.liveness("bob"), [d.origin for d in mb.dead.list()])
    presence.beat("bob")
    assert Liveness.ALIVE == presence.liveness("bob")


# -- working state ---------------------------------------------------------------------------------

def test_doctor_repairs_a_state_file_that_is_a_link(cli: Cli, mb: Mailbox,
                                                    tmp_path: Path) -> None:
    """state.json linked out of the root is refused with a hint to doctor, which quarantines
    the link (never following it); the state is then empty."""
    outside = tmp_path / "outside.json"
    outside.write_bytes(b'{"secret": 1}')
    os.symlink(outside, mb.path / "agents/bob/state.json")
    out = cli("state", "bob", "get")
    assert (EXIT_INVALID, True) == (out.code, "doctor" in out.err)
    assert EXIT_OK == cli("doctor", "--repair").code
    assert ({}, b'{"secret": 1}') == (mb.agent("bob").state.snapshot(), outside.read_bytes())


# -- idempotency-key markers ---------------------------------------------------------------------

def test_bad_key_marker_is_a_clean_error_and_doctor_repairs_it(cli: Cli, mb: Mailbox) -> None:
    """A key marker holding [] makes a keyed send exit 5 with a hint to doctor; after
    --repair the key sends new mail."""
    mb.send("alice", "bob", key="job-1")
    (marker,) = (mb.path / "agents/alice/keys").iterdir()
    marker.write_bytes(b"[]")
    with pytest.raises(InvalidInput) as caught:
        mb.send("alice", "bob", key="job-1")
    assert "doctor" in caught.value.hint
    assert EXIT_UNHEALTHY == cli("doctor").code
    assert EXIT_OK == cli("doctor", "--repair").code
    again = mb.send("alice", "bob", key="job-1")
    assert (2, [again.id]) == (len(mb.inbox("bob").ids()),
                               [i for i in mb.inbox("bob").ids() if i == again.id])
