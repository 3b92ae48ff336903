"""The command as an agent uses it: identity from $MAILBOX_AGENT, whoami, next, peek, the
claim notice of read, reply, and --root/--json on either side of the command."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from agentmailbox import Mailbox, State
from agentmailbox.cli import (
    EXIT_CONFLICT,
    EXIT_EMPTY,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
)

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py


@pytest.fixture
def as_bob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOX_AGENT", "bob")


@pytest.fixture(autouse=True)
def no_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILBOX_AGENT", raising=False)


# -- identity ------------------------------------------------------------------------------------


def test_mailbox_agent_is_the_identity_of_read(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """With MAILBOX_AGENT=bob, `mailbox read` reads bob's mail."""
    msg = mb.send("alice", "bob", subject="s", body="b")
    assert msg.id == cli("read", "--json").json()["id"]


def test_mailbox_agent_is_the_sender_of_send(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """send without --from sends as MAILBOX_AGENT."""
    result = cli("send", "--to", "alice", "--body", "hi", "--json")
    assert "bob" == mb.inbox("alice").get(result.json()["id"]).sender


def test_agent_option_overrides_mailbox_agent(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """--agent NAME wins over MAILBOX_AGENT."""
    mb.send("bob", "alice", subject="s", body="b")
    assert "bob" == cli("inbox", "--agent", "alice", "--json").json()[0]["from"]


def test_agent_option_before_the_command_overrides_mailbox_agent(cli: Cli, mb: Mailbox,
                                                                 as_bob: None) -> None:
    """mailbox --agent alice inbox is alice's inbox, whatever MAILBOX_AGENT says."""
    mb.send("bob", "alice", subject="s", body="b")
    assert "bob" == cli("--agent", "alice", "inbox", "--json").json()[0]["from"]


def test_explicit_argument_wins_over_agent_option(cli: Cli, mb: Mailbox) -> None:
    """The positional AGENT (and --from) still work, and win over --agent."""
    mb.send("alice", "bob", subject="s", body="b")
    assert 1 == len(cli("inbox", "bob", "--agent", "alice", "--json").json())
    sent = cli("send", "--from", "alice", "--agent", "bob", "--to", "bob", "--body", "x").out
    assert "alice" == mb.inbox("bob").get(sent.strip()).sender


def test_no_identity_is_refused_with_a_hint(cli: Cli) -> None:
    """A command that needs the acting agent, given none, exits 4 naming MAILBOX_AGENT."""
    result = cli("read")
    assert EXIT_NOT_FOUND == result.code
    assert "MAILBOX_AGENT" in result.err and "--agent" in result.err


def test_done_takes_ids_alone_under_mailbox_agent(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """`mailbox done ID` marks bob's claimed message done when MAILBOX_AGENT=bob."""
    msg = mb.send("alice", "bob", subject="s", body="b")
    mb.inbox("bob").claim(msg.id)
    assert EXIT_OK == cli("done", msg.id).code
    assert State.DONE == mb.inbox("bob").state_of(msg.id)


def test_state_takes_its_agent_from_mailbox_agent(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """`mailbox state set K V` sets bob's state when MAILBOX_AGENT=bob."""
    assert EXIT_OK == cli("state", "set", "step", "3").code
    assert {"step": "3"} == cli("state", "bob", "get", "--json").json()


def test_remember_takes_its_agent_from_mailbox_agent(cli: Cli, mb: Mailbox,
                                                     as_bob: None) -> None:
    """`mailbox remember TEXT` appends to bob's memory when MAILBOX_AGENT=bob."""
    assert EXIT_OK == cli("remember", "chose plan b").code
    assert ["chose plan b"] == [e["text"] for e in cli("memory", "--json").json()
                                if e["kind"] == "note"]


# -- whoami --------------------------------------------------------------------------------------


def test_whoami_prints_name_role_root_and_epoch(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """whoami --json says who the acting agent is, its role, the root and its epoch."""
    assert {"name": "bob", "role": "coder", "root": str(mb.path), "epoch": None} == cli(
        "whoami", "--json").json()


def test_whoami_without_identity_exits_4_with_a_hint(cli: Cli) -> None:
    """whoami with no identity set exits 4 and says how to set one."""
    result = cli("whoami", "--json")
    assert EXIT_NOT_FOUND == result.code
    assert "MAILBOX_AGENT" in orjson.loads(result.err)["hint"]


def test_whoami_of_an_unregistered_agent_exits_4(cli: Cli) -> None:
    """whoami names an agent that is not registered: exit 4, hint to register it."""
    result = cli("whoami", "--agent", "carol")
    assert EXIT_NOT_FOUND == result.code and "agent add carol" in result.err


# -- read, peek, next ----------------------------------------------------------------------------


def test_read_says_the_message_is_claimed_until_done(cli: Cli, mb: Mailbox) -> None:
    """read's output says the message is claimed, until when, and to run mailbox done ID."""
    msg = mb.send("alice", "bob", subject="s", body="b")
    out = cli("read", "bob").out
    assert "claimed:  by bob until " in out and f"mailbox done {msg.id}" in out
    claim = cli("peek", "bob", "--id", msg.id, "--json").json()
    assert claim["claim"] is None


def test_read_json_gives_the_lease_end(cli: Cli, mb: Mailbox) -> None:
    """read --json carries the claim: by whom and until when (RFC 3339)."""
    mb.send("alice", "bob", subject="s", body="b")
    claim = cli("read", "bob", "--json").json()["claim"]
    assert "bob" == claim["by"] and claim["until"].endswith("Z")


def test_peek_shows_without_claiming(cli: Cli, mb: Mailbox) -> None:
    """peek is read --peek: it prints the oldest unread message and leaves it unread."""
    msg = mb.send("alice", "bob", subject="s", body="b")
    assert msg.id == cli("peek", "bob", "--json").json()["id"]
    assert State.NEW == mb.inbox("bob").state_of(msg.id)


def test_read_id_of_a_claimed_message_says_it_is_claimed(cli: Cli, mb: Mailbox) -> None:
    """read --id of a claimed message exits 6 saying it is claimed, not "no unread mail"."""
    msg = mb.send("alice", "bob", subject="s", body="b")
    mb.inbox("bob").claim(msg.id)
    result = cli("read", "bob", "--id", msg.id)
    assert EXIT_CONFLICT == result.code
    assert "claimed" in result.err and "no unread mail" not in result.err


def test_read_id_of_an_unknown_message_exits_4(cli: Cli, mb: Mailbox) -> None:
    """read --id of an id the inbox never held is not found (exit 4)."""
    other = mb.send("alice", "alice", subject="s", body="b")
    assert EXIT_NOT_FOUND == cli("read", "bob", "--id", other.id).code


def test_next_claims_mail_that_is_already_there(cli: Cli, mb: Mailbox) -> None:
    """next claims and prints the oldest unread message at once when there is one."""
    first = mb.send("alice", "bob", subject="s", body="b")
    mb.send("alice", "bob", subject="s", body="b")
    assert first.id == cli("next", "bob", "--json").json()["id"]
    assert State.CLAIMED == mb.inbox("bob").state_of(first.id)


def test_next_waits_for_mail_sent_later(cli: Cli, mb: Mailbox) -> None:
    """next sleeps until a message arrives, then claims it."""
    sent: list[str] = []
    timer = threading.Timer(0.3, lambda: sent.append(mb.send("alice", "bob", body="x").id))
    timer.start()
    try:
        result = cli("next", "bob", "--timeout", "20", "--json")
    finally:
        timer.join()
    assert (EXIT_OK, sent[0]) == (result.code, result.json()["id"])


def test_next_exits_3_at_the_timeout(cli: Cli) -> None:
    """next with no mail before the timeout exits 3 (JSON: null)."""
    result = cli("next", "bob", "--timeout", "0.2", "--json")
    assert (EXIT_EMPTY, None) == (result.code, result.json())


# -- reply ---------------------------------------------------------------------------------------


def test_reply_goes_to_the_sender_in_the_same_thread(cli: Cli, mb: Mailbox,
                                                     as_bob: None) -> None:
    """reply ID sends to ID's sender, in its thread, with reply_to and "re: " once."""
    original = mb.send("alice", "bob", subject="re: plan", body="b")
    reply_id = cli("reply", original.id, "--body", "on it").out.strip()
    got = mb.inbox("alice").get(reply_id)
    assert ("bob", original.thread, original.id, "re: plan", "on it") == (
        got.sender, got.thread, got.reply_to, got.subject, got.body)


def test_reply_adds_re_to_a_plain_subject(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """A reply's subject is "re: " and the original's."""
    original = mb.send("alice", "bob", subject="plan", body="b")
    reply_id = cli("reply", original.id, "--body", "ok", "--json").json()["id"]
    assert "re: plan" == mb.inbox("alice").get(reply_id).subject


def test_reply_done_also_marks_the_message_done(cli: Cli, mb: Mailbox, as_bob: None) -> None:
    """reply --done marks ID done too (claiming it first if it was unread)."""
    original = mb.send("alice", "bob", subject="plan", body="b")
    assert cli("reply", original.id, "--body", "done", "--done", "--json").json()["done"]
    assert State.DONE == mb.inbox("bob").state_of(original.id)


# -- --root and --json on either side ------------------------------------------------------------


def test_root_is_accepted_after_the_command(cli: Cli, mb: Mailbox,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """--root PATH after the command is the same as before it."""
    monkeypatch.delenv("MAILBOX_ROOT")
    monkeypatch.chdir("/")
    assert [] == cli("inbox", "bob", "--root", str(mb.path), "--json").json()


def test_json_is_accepted_before_the_command(cli: Cli, mb: Mailbox) -> None:
    """mailbox --json inbox bob prints JSON."""
    assert [] == cli("--json", "inbox", "bob").json()


@pytest.mark.parametrize("argv", [("--json", "send", "--no-such"), ("send", "--json"),
                                  ("--json", "no-such-command")], ids=" ".join)
def test_usage_errors_under_json_are_one_json_object(cli: Cli, argv: tuple[str, ...]) -> None:
    """A usage error with --json is one JSON object on stderr: error, message, hint, exit_code."""
    result = cli(*argv)
    err = orjson.loads(result.err)
    assert (EXIT_USAGE, EXIT_USAGE) == (result.code, err["exit_code"])
    assert {"error", "message", "hint", "exit_code"} == set(err) and err["message"]


# -- round trips and honest output ---------------------------------------------------------------


def test_handoff_show_json_is_accepted_by_handoff_file(cli: Cli, mb: Mailbox,
                                                       tmp_path: Any) -> None:
    """What handoff --show --json prints, handoff --file takes back, with the same sections."""
    assert EXIT_OK == cli("handoff", "bob", "--next", "review plan", "--decided", "use b").code
    shown = cli("handoff", "bob", "--show", "--json").out
    (tmp_path / "note.json").write_text(shown)
    assert EXIT_OK == cli("handoff", "bob", "--file", str(tmp_path / "note.json")).code
    again = cli("handoff", "bob", "--show", "--json").json()
    first = orjson.loads(shown)
    assert (first["next"], first["decided"]) == (again["next"], again["decided"])
    assert first["id"] != again["id"]


def test_boot_dry_run_before_any_boot_never_says_epoch_none(cli: Cli, mb: Mailbox) -> None:
    """boot --dry-run of an agent never booted says so, not "epoch None"."""
    cli("handoff", "bob", "--next", "x")
    out = cli("boot", "bob", "--dry-run").out
    assert "None" not in out and "not booted yet" in out


def test_ws_put_records_mailbox_agent_as_the_author(cli: Cli, mb: Mailbox, tmp_path: Any,
                                                    as_bob: None) -> None:
    """ws put without --as journals MAILBOX_AGENT as the author."""
    (tmp_path / "plan.md").write_text("plan")
    assert EXIT_OK == cli("ws", "put", "plan.md", "--file", str(tmp_path / "plan.md")).code
    puts = [e for e in cli("tail", "--json").out.splitlines() if '"ws.put"' in e]
    assert "bob" == orjson.loads(puts[-1])["author"]


def test_an_error_before_the_command_json_is_one_json_object(cli: Cli) -> None:
    """mailbox --json read with no identity is one JSON error object on stderr."""
    result = cli("--json", "read")
    assert (EXIT_NOT_FOUND, "NotFound") == (result.code, orjson.loads(result.err)["error"])


# -- sending to an agent that is offline ---------------------------------------------------------


def _beat(mb: Mailbox, agent: str, ago_seconds: float) -> None:
    """A heartbeat of ``agent`` sent ``ago_seconds`` ago."""
    import time

    from agentmailbox.presence import Presence

    presence = Presence(mb.root)
    presence.beat(agent)
    record = orjson.loads(presence.path(agent).read_bytes())
    record["at"] = time.time_ns() - int(ago_seconds * 1e9)
    presence.path(agent).write_bytes(orjson.dumps(record))


def test_a_send_to_an_agent_gone_stale_delivers_and_tells_the_sender(cli: Cli,
                                                                     mb: Mailbox) -> None:
    """bob's last heartbeat is an hour old: the mail is stored all the same, and the sender
    reads "queued: bob offline since ..." on stderr and in --json."""
    _beat(mb, "bob", 3600)
    result = cli("send", "--from", "alice", "--to", "bob", "--body", "hi", "--json")
    assert result.code == EXIT_OK
    sent = result.json()
    assert mb.inbox("bob").get(sent["id"]).body == "hi"
    assert ["bob"] == [o["agent"] for o in sent["offline"]]
    assert "mailbox: queued: bob offline since " in result.err
    assert sent["offline"][0]["since"] in result.err


def test_a_reply_to_an_agent_gone_stale_tells_the_sender(cli: Cli, mb: Mailbox,
                                                         as_bob: None) -> None:
    """A reply is a direct send too: its sender is told the original sender went offline."""
    msg = mb.send("alice", "bob", subject="s", body="b")
    _beat(mb, "alice", 3600)
    result = cli("reply", msg.id, "--body", "ok", "--json")
    assert ["alice"] == [o["agent"] for o in result.json()["offline"]]
    assert "queued: alice offline since" in result.err


@pytest.mark.parametrize("beat", [None, 1.0])
def test_no_notice_for_an_agent_alive_or_without_heartbeats(beat: float | None, cli: Cli,
                                                            mb: Mailbox) -> None:
    """An agent alive, or one that never sends heartbeats, is not called offline."""
    if beat is not None:
        _beat(mb, "bob", beat)
    result = cli("send", "--from", "alice", "--to", "bob", "--body", "hi", "--json")
    assert ([], "") == (result.json()["offline"], result.err)
