"""Routed addresses: expansion of @role, #topic, +group and *, the spool, quotas, status."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import python_env

from agentmailbox import InboxFull, InvalidInput, Mailbox, State
from agentmailbox.inbox import Inbox
from agentmailbox.routing import Directory, Unroutable
from agentmailbox.supervisor import Supervisor


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Mailbox]:
    """alice (planner), bob and carol (coders), dave (reviewer, topic build); groups in config."""
    box = Mailbox.init(tmp_path, fsync="never",
                       groups={"reviewers": ["dave", "bob"], "ghosts": ["nobody"]},
                       routes={"@oncall": ["carol", "#build"]})
    box.add_agent("alice", role="planner")
    box.add_agent("bob", role="coder", groups=["leads"])
    box.add_agent("carol", role="coder", topics=["build"])
    box.add_agent("dave", role="reviewer", topics=["build"], groups=["leads"])
    yield box
    box.close()


def route(mb: Mailbox) -> None:
    with Supervisor(mb, backoff=(0, 0)) as sup:
        sup.run_once()


def holders(mb: Mailbox, msg_id: str) -> list[str]:
    return [n for n in mb.registry.list_names()
            if mb.inbox(n).state_of(msg_id) is not State.ABSENT]


@pytest.mark.parametrize(("address", "expected"), [
    ("@coder", ["bob", "carol"]),
    ("#build", ["carol", "dave"]),
    ("+reviewers", ["bob", "dave"]),
    ("+leads", ["bob", "dave"]),
    ("*", ["bob", "carol", "dave"]),
    ("@oncall", ["carol", "dave"]),
])
def test_routed_address_reaches_exactly_its_agents(team: Mailbox, address: str,
                                                   expected: list[str]) -> None:
    """Role, topic, group (config or agent.json), '*' and configured routes expand as documented."""
    msg = team.send("alice", address, subject="hi")
    route(team)
    assert holders(team, msg.id) == expected


def test_star_leaves_out_the_sender(team: Mailbox) -> None:
    """A message to '*' reaches everyone except whoever sent it."""
    msg = team.send("carol", "*")
    route(team)
    assert holders(team, msg.id) == ["alice", "bob", "dave"]


def test_unknown_member_of_a_group_is_unroutable(team: Mailbox) -> None:
    """A group naming an unregistered agent reports it instead of skipping it silently."""
    expansion = Directory.load(team.registry, team.config).expand("+ghosts", "alice")
    assert expansion.agents == ()
    assert expansion.unroutable == (
        Unroutable("+ghosts", "unknown agent 'nobody' in group +ghosts"),)


def test_role_nobody_has_is_unroutable_with_a_reason(team: Mailbox) -> None:
    """An address that reaches nobody says why."""
    expansion = Directory.load(team.registry, team.config).expand("@tester", "alice")
    assert expansion.unroutable == (Unroutable("@tester", "no agent has role 'tester'"),)


def test_routed_send_posts_one_file_to_the_spool_and_delivers_nothing_yet(team: Mailbox) -> None:
    """Without a supervisor, routed mail waits in spool/new; no inbox has it."""
    msg = team.send("alice", "@coder")
    assert team.spool.names(team.spool.new) == [f"{msg.id}.json"]
    assert holders(team, msg.id) == []


def test_to_keeps_the_addresses_as_written(team: Mailbox) -> None:
    """Recipients see the routed addresses in ``to``, in the order written."""
    msg = team.send("alice", ["#build", "bob", "@coder"])
    route(team)
    assert team.inbox("carol").get(msg.id).to == ("#build", "bob", "@coder")


def test_mixed_send_gives_an_agent_named_both_ways_one_copy(team: Mailbox) -> None:
    """bob named directly and as a coder holds the message once; carol gets it routed."""
    msg = team.send("alice", ["bob", "@coder"])
    assert holders(team, msg.id) == ["bob"]
    route(team)
    assert holders(team, msg.id) == ["bob", "carol"]
    assert team.inbox("bob").ids() == [msg.id]


def test_status_shows_the_expansion_to_the_sender(team: Mailbox) -> None:
    """After routing, status lists who each routed address reached."""
    msg = team.send("alice", ["@coder", "#build"])
    route(team)
    status = team.status(msg.id, "alice")
    assert status.routed == {"@coder": ("bob", "carol"), "#build": ("carol", "dave")}
    assert [d.agent for d in status.recipients] == ["bob", "carol", "dave"]


def test_status_of_unrouted_mail_says_it_waits_in_the_spool(team: Mailbox) -> None:
    """Before the supervisor runs, status finds the message in spool/new."""
    msg = team.send("alice", "@coder")
    status = team.status(msg.id, "alice")
    assert (status.spool, status.recipients) == ("new", ())


def test_pick_one_is_recorded_as_a_header(team: Mailbox) -> None:
    """send(pick="one") marks the spooled message with the header pick: one."""
    msg = team.send("alice", "@coder", pick="one")
    assert msg.headers == {"pick": "one"}


def test_pick_one_without_a_routed_address_is_refused(team: Mailbox) -> None:
    """Picking among one named agent is meaningless and refused."""
    with pytest.raises(InvalidInput, match="routed address"):
        team.send("alice", "bob", pick="one")


def test_direct_send_to_a_full_inbox_raises_inbox_full(tmp_path: Path) -> None:
    """A named recipient at its quota refuses the send; nothing is written anywhere."""
    mb = Mailbox.init(tmp_path, fsync="never", max_unread=2)
    mb.add_agent("alice")
    mb.add_agent("bob")
    mb.send("alice", "bob")
    mb.send("alice", "bob")
    with pytest.raises(InboxFull) as caught:
        mb.send("alice", ["alice", "bob"])
    assert (caught.value.agent, caught.value.unread, caught.value.quota) == ("bob", 2, 2)
    assert (mb.inbox("alice").count(), mb.inbox("bob").count()) == (0, 2)


def test_reading_frees_room_for_direct_sends(tmp_path: Path) -> None:
    """Once the reader claims mail, a refused sender can send again."""
    mb = Mailbox.init(tmp_path, fsync="never", max_unread=1)
    mb.add_agent("alice")
    mb.add_agent("bob")
    mb.send("alice", "bob")
    with pytest.raises(InboxFull):
        mb.send("alice", "bob")
    mb.inbox("bob").claim()
    assert mb.send("alice", "bob").id in mb.inbox("bob").ids()


def test_agent_quota_overrides_the_bus_quota(tmp_path: Path) -> None:
    """agent.json max_unread wins over mailbox.json max_unread."""
    mb = Mailbox.init(tmp_path, fsync="never", max_unread=1)
    mb.add_agent("alice")
    mb.add_agent("bob", max_unread=3)
    for _ in range(3):
        mb.send("alice", "bob")
    with pytest.raises(InboxFull):
        mb.send("alice", "bob")


def test_unlimited_quota_never_lists_the_inbox(team: Mailbox,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With quota 0 a direct send costs no listing of new/ (counting is skipped)."""
    def no_count(self: Inbox, *args: object) -> int:
        raise AssertionError("counted unread mail")

    monkeypatch.setattr(Inbox, "count", no_count)
    for _ in range(3):
        team.send("alice", "bob")
    assert len(team.inbox("bob").ids()) == 3


def test_cli_send_to_a_full_inbox_exits_8(cli, mb: Mailbox) -> None:  # type: ignore[no-untyped-def]
    """The CLI reports a full inbox with exit code 8 and names the agent."""
    mb.registry.edit("bob", max_unread=1)
    assert cli("send", "--from", "alice", "--to", "bob", "--body", "1").code == 0
    result = cli("send", "--from", "alice", "--to", "bob", "--body", "2")
    assert result.code == 8
    assert "bob" in result.err


def test_cli_send_accepts_routed_addresses_and_pick_one(cli, mb: Mailbox) -> None:  # type: ignore[no-untyped-def]
    """``send --to @coder --pick one`` spools the message with pick: one."""
    result = cli("send", "--from", "alice", "--to", "@coder", "--pick", "one", "--body", "x",
                 "--json")
    assert result.code == 0
    msg_id = result.json()["id"]  # type: ignore[index]
    assert mb.spool.get(msg_id)[1].headers == {"pick": "one"}  # type: ignore[index]


def test_routed_send_inside_a_batch_is_posted_at_commit(team: Mailbox) -> None:
    """batch() holds routed mail back too: nothing in spool/new until the batch commits."""
    with team.batch():
        msg = team.send("alice", ["bob", "@coder"])
        assert team.spool.names(team.spool.new) == [] and holders(team, msg.id) == []
    assert team.spool.names(team.spool.new) == [f"{msg.id}.json"]
    assert holders(team, msg.id) == ["bob"]


def test_cli_send_of_routed_mail_warns_when_no_supervisor_runs(cli, mb: Mailbox) -> None:  # type: ignore[no-untyped-def]
    """A sender is told on stderr that routed mail waits until a supervisor runs."""
    result = cli("send", "--from", "alice", "--to", "@coder", "--body", "x")
    assert result.code == 0 and "no supervisor is running" in result.err


def test_cli_send_of_routed_mail_is_quiet_while_a_supervisor_runs(cli, mb: Mailbox) -> None:  # type: ignore[no-untyped-def]
    """With a live supervisor recorded in run/supervisor.json, no warning is printed."""
    (mb.path / "run" / "supervisor.json").write_text(f'{{"pid": {os.getpid()}}}')
    result = cli("send", "--from", "alice", "--to", "@coder", "--body", "x")
    assert (result.code, result.err) == (0, "")


# -- layers ---------------------------------------------------------------------------------

def _loaded_after(statement: str) -> list[str]:
    """The modules of agentmailbox, watchdog and portalocker a fresh interpreter holds after
    ``statement``."""
    probe = (f"{statement}\nimport sys\n"
             "print(' '.join(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('agentmailbox', 'watchdog', 'portalocker'))))")
    done = subprocess.run([sys.executable, "-c", probe], env=python_env(), check=True,
                          capture_output=True, text=True)
    return done.stdout.split()


def test_the_send_path_loads_no_supervisor_code() -> None:
    """Opening a root and sending (Mailbox, addresses, spool, quotas) loads neither the
    supervisor, its address expansion, nor the file watcher: a send costs no daemon imports."""
    loaded = _loaded_after("import agentmailbox, agentmailbox.mailbox")
    assert {"agentmailbox.addresses", "agentmailbox.spool", "agentmailbox.quotas"} <= set(loaded)
    daemon = ("agentmailbox.supervisor", "agentmailbox.routing", "watchdog", "portalocker")
    assert [] == [m for m in loaded if m.startswith(daemon)]


def test_asking_whether_a_supervisor_runs_loads_no_file_watcher() -> None:
    """running_supervisor(), which a routed send asks, loads the lock module only (not even
    portalocker: it reads the holder record without touching the lock)."""
    loaded = _loaded_after("from agentmailbox.supervisor import running_supervisor")
    daemon = ("agentmailbox.supervisor", "watchdog", "portalocker")
    supervisor = [m for m in loaded if m.startswith(daemon)]
    assert ["agentmailbox.supervisor", "agentmailbox.supervisor.lock"] == supervisor
