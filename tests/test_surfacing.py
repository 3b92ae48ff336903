"""Surfacing: the record of when mail reached an agent's model (a brief, a hook's line, a
listing or read run as that agent), what `status`, `agents` and the boot brief show of it,
and the prompt hook never announcing in one epoch what the model was already shown."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from agentmailbox import Mailbox
from agentmailbox.message import Clock
from agentmailbox.root import Root
from agentmailbox.surfacing import UNSURFACED_AFTER, first_surfaced

Cli = Callable[..., Any]
HOUR = 3600 * 10**9


@pytest.fixture(autouse=True)
def no_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILBOX_AGENT", raising=False)


def old_mail(mb: Mailbox, subject: str, ago: int = HOUR) -> str:
    """A message alice sent to bob ``ago`` ns ago (her clock is behind by that much)."""
    late = Mailbox(Root.load(mb.path, clock=Clock(wall=lambda: time.time_ns() - ago)))
    try:
        return late.send("alice", "bob", subject=subject, body="x").id
    finally:
        late.close()


def surfaced_via(mb: Mailbox, msg_id: str) -> str | None:
    return mb.status(msg_id).recipients[0].surfaced_via


def prompt(cli: Cli) -> Any:
    return cli("hook", "prompt", stdin='{"hook_event_name": "UserPromptSubmit", "prompt": "go"}')


def test_status_shows_surfaced_between_delivered_and_read(cli: Cli, mb: Mailbox,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A message the prompt hook announced is 'delivered' and surfaced (when, by which
    epoch, how); `next` then reads it; status --json and the text both say so."""
    mb.agent("bob").boot()
    msg = mb.send("alice", "bob", subject="plan", body="x")
    assert mb.status(msg.id).recipients[0].surfaced_at is None
    monkeypatch.setenv("MAILBOX_AGENT", "bob")
    assert "1 new from alice" in prompt(cli).out
    row = cli("status", msg.id, "--json").json()["recipients"][0]
    assert ("delivered", "prompt", 1) == (row["state"], row["surfaced_via"],
                                          row["surfaced_epoch"])
    assert row["surfaced_at"] is not None and row["read_at"] is None
    assert cli("next", "--timeout", "0").code == 0
    row = cli("status", msg.id, "--json").json()["recipients"][0]
    assert ("read", "prompt") == (row["state"], row["surfaced_via"])  # the first surfacing
    text = cli("status", msg.id).out
    assert text.index(" surfaced 2") < text.index(" read 2")


@pytest.mark.parametrize(("command", "via"), [
    (["inbox"], "inbox"), (["peek"], "peek"), (["read", "--peek"], "peek"), (["read"], "read"),
    (["next", "--timeout", "0"], "next"), (["boot"], "brief")])
def test_a_command_run_as_the_recipient_surfaces_its_mail(
        command: list[str], via: str, cli: Cli, mb: Mailbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """inbox, peek, read, next and boot run as bob record that bob's model saw the mail."""
    msg = mb.send("alice", "bob", subject="plan", body="x")
    monkeypatch.setenv("MAILBOX_AGENT", "bob")
    assert cli(*command).code == 0
    assert via == surfaced_via(mb, msg.id)


@pytest.mark.parametrize("identity", [None, "alice"])
def test_looking_at_another_agents_inbox_surfaces_nothing(
        identity: str | None, cli: Cli, mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mailbox inbox bob` run by a person, or by alice, is not bob's model seeing it."""
    msg = mb.send("alice", "bob", subject="plan", body="x")
    if identity:
        monkeypatch.setenv("MAILBOX_AGENT", identity)
    assert cli("inbox", "bob").code == 0 and cli("peek", "bob").code == 0
    assert surfaced_via(mb, msg.id) is None


def test_prompt_does_not_announce_mail_a_listing_showed(cli: Cli, mb: Mailbox,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Mail the agent already listed in this epoch is not news to its next prompt."""
    mb.agent("bob").boot()
    mb.send("alice", "bob", subject="plan", body="x")
    monkeypatch.setenv("MAILBOX_AGENT", "bob")
    assert "plan" in cli("inbox").out
    assert ("", 0) == (prompt(cli).out, prompt(cli).code)


def test_prompt_does_not_announce_mail_given_back_in_the_same_epoch(
        cli: Cli, mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message announced, claimed, then released is not announced again in that epoch;
    the next epoch's brief lists it."""
    mb.agent("bob").boot()
    msg = mb.send("alice", "bob", subject="plan", body="x")
    monkeypatch.setenv("MAILBOX_AGENT", "bob")
    assert "1 new" in prompt(cli).out
    assert cli("read", "--id", msg.id).code == 0
    mb.send("alice", "bob", subject="other", body="y")  # the set is rewritten while it is out
    assert "1 new from alice" in prompt(cli).out
    assert cli("release", msg.id).code == 0
    assert "" == prompt(cli).out
    start = cli("hook", "session-start", stdin='{"source": "startup"}')
    assert "plan" in start.out


def test_prompt_speaks_again_in_a_new_epoch_only_for_what_the_brief_did_not_show(
        cli: Cli, mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The surfaced set belongs to one epoch: a new session's brief replaces it."""
    monkeypatch.setenv("MAILBOX_AGENT", "bob")
    mb.send("alice", "bob", subject="plan", body="x")
    cli("hook", "session-start", stdin='{"source": "startup"}')
    assert "" == prompt(cli).out
    mb.send("alice", "bob", subject="more", body="y")
    assert "1 new from alice" in prompt(cli).out


def test_agents_counts_old_mail_that_never_surfaced(cli: Cli, mb: Mailbox,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`mailbox agents` shows how much unread mail waited over 10 minutes unseen by the
    model, and how old the oldest is; mail just sent, or already shown, does not count."""
    old_mail(mb, "stale one")
    shown = old_mail(mb, "stale but listed")
    mb.send("alice", "bob", subject="fresh", body="x")
    monkeypatch.setenv("MAILBOX_AGENT", "bob")
    cli("peek", "--id", shown)
    monkeypatch.delenv("MAILBOX_AGENT")
    row = next(r for r in cli("agents", "--json").json() if r["name"] == "bob")
    assert 1 == row["never_surfaced"]
    assert row["oldest_never_surfaced_age_seconds"] >= HOUR / 1e9 - 60
    bob_line = next(x for x in cli("agents").out.splitlines() if x.startswith("bob"))
    assert "UNSEEN" in cli("agents").out and " 1 " in bob_line


def test_boot_brief_names_mail_that_waited_long_and_never_surfaced(
        mb: Mailbox) -> None:
    """The brief says how much unread mail waited long and never reached the model, and
    flags it in the JSON; once a brief has shown it, the next brief does not."""
    old_mail(mb, "stale", ago=UNSURFACED_AFTER + HOUR)
    mb.send("alice", "bob", subject="fresh", body="x")
    brief = mb.agent("bob").boot()
    mail = brief.to_dict()["mail"]
    assert "1 of them waited over 10 minutes and never reached this agent's model" in (
        mail["summary"])
    assert [True, False] == [i["long_unseen"] for i in mail["items"]]
    from agentmailbox import surfacing

    surfacing.record(mb, "bob", brief.shown_mail(), "brief", unread=True)
    assert "never reached" not in mb.agent("bob").boot().to_dict()["mail"]["summary"]


def test_surface_lines_are_journal_events_of_the_documented_shape(mb: Mailbox) -> None:
    """A surface line names agent, epoch, ids and via; a planted line with a bad id is
    not read as one."""
    msg = mb.send("alice", "bob", subject="s", body="x")
    from agentmailbox import surfacing

    surfacing.record(mb, "bob", [msg.id], "mcp")
    ev = first_surfaced(mb, "bob", [msg.id])[msg.id]
    assert ("bob", "mcp", [msg.id]) == (ev["agent"], ev["via"], ev["ids"])
    day = next(mb.root.paths.journal.iterdir())
    with day.open("ab") as f:
        f.write(orjson.dumps({"t": 1, "ev": "surface", "agent": "bob", "epoch": None,
                              "ids": ["../x"], "via": "mcp"}) + b"\n")
    assert [msg.id] == [i for e in mb.root.journal.events() if e["ev"] == "surface"
                        for i in e["ids"]]
