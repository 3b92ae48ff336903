"""One schema for each on-disk JSON file, in both directions.

What a writer acknowledges, every reader accepts; what a reader would quarantine, the
writer refuses up front with an error naming the field or key. Each file below is met
with the wrong types a hand edit or a careless caller produces.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import python_env

from agentmailbox import InvalidInput, Mailbox
from agentmailbox.cli import EXIT_INVALID, EXIT_OK
from agentmailbox.message import day_of, day_span
from agentmailbox.presence import Liveness, Presence
from agentmailbox.routing import Directory
from agentmailbox.supervisor import Supervisor

# -- messages: send refuses what a claim would quarantine ------------------------------------------

WRONG_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "header-value-is-a-number": ({"headers": {"retries": 3}}, "'headers'"),
    "kind-is-a-number": ({"kind": 5}, "'kind'"),
    "thread-is-a-number": ({"thread": 5}, "'thread'"),
    "thread-is-a-list": ({"thread": [1]}, "'thread'"),
    "receipt-is-a-string": ({"receipt": "yes"}, "'receipt'"),
    "epoch-is-a-string": ({"epoch": "x"}, "'epoch'"),
    "epoch-is-true": ({"epoch": True}, "'epoch'"),
    "priority-in-capitals": ({"priority": "URGENT"}, "'priority'"),
    "priority-is-a-number": ({"priority": 1}, "'priority'"),
    "headers-is-a-list": ({"headers": [("a", "b")]}, "'headers'"),
    "reply-to-is-a-number": ({"reply_to": 5}, "'reply_to'"),
    "expiry-is-a-number": ({"expires_at": 5}, "'expires_at'"),
}


@pytest.mark.parametrize("name", sorted(WRONG_FIELDS))
def test_send_refuses_a_field_the_reader_would_quarantine_naming_it(mb: Mailbox,
                                                                     name: str) -> None:
    """A send with a field of the wrong type fails with InvalidInput naming the field, and
    nothing is delivered or recorded (no message acknowledged, then buried at claim)."""
    options, field = WRONG_FIELDS[name]
    with pytest.raises(InvalidInput) as caught:
        mb.send("alice", "bob", "s", "b", **options)
    assert field in str(caught.value)
    assert ([], [], []) == (mb.inbox("bob").ids(), mb.dead.list(), list(mb.root.journal.events()))


def test_send_takes_a_priority_as_plain_text(mb: Mailbox) -> None:
    """`priority="high"` is a Priority once sent, and the reader agrees."""
    sent = mb.send("alice", "bob", priority="high")
    claimed = mb.inbox("bob").claim()
    assert (sent.priority.rank, claimed.priority if claimed else None) == (1, sent.priority)


def test_every_accepted_send_is_claimed_not_quarantined(mb: Mailbox) -> None:
    """Mail sent with every optional field set is handed out by a claim, not buried."""
    sent = mb.send("alice", "bob", "s", {"k": [1, 2.5, None]}, kind="task", priority="urgent",
                   expires_at="1d", receipt=True, headers={"h": "v"}, epoch=3,
                   thread=mb.root.clock.new_id())
    claimed = mb.inbox("bob").claim()
    assert (sent.id, []) == (claimed.id if claimed else None, mb.dead.list())


# -- expiry ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("expiry", ["99999999d", "1" * 400 + "s", "9999-12-31T23:59:59-23:59",
                                    "0001-01-01T00:00:00+23:59"])
def test_expiry_out_of_range_is_invalid_input(mb: Mailbox, expiry: str) -> None:
    """An expiry past year 9999 (or before year 1) once in UTC is a clear InvalidInput."""
    with pytest.raises(InvalidInput, match="expir"):
        mb.send("alice", "bob", expires_at=expiry)
    assert [] == mb.inbox("bob").ids()


def test_cli_expiry_out_of_range_exits_invalid_without_traceback(cli: Any) -> None:
    """`send --expires 99999999d` exits 5 with a one-line error, not a traceback."""
    out = cli("send", "--from", "alice", "--to", "bob", "--expires", "99999999d", "--body", "x")
    assert (EXIT_INVALID, "Traceback" in out.err) == (out.code, False)
    assert "99999999d" in out.err


def test_expiry_durations_and_times_become_utc(mb: Mailbox) -> None:
    """Durations and RFC 3339 times with any offset are stored as UTC ``Z`` times."""
    stored = mb.send("alice", "bob", expires_at="2030-01-01T02:00:00+02:00").expires_at
    later = mb.send("alice", "bob", expires_at="1.5h").expires_at
    assert stored == "2030-01-01T00:00:00Z"
    assert later is not None and later.endswith("Z")


def test_reader_quarantines_an_expiry_that_has_no_utc_time(mb: Mailbox) -> None:
    """A planted message whose expiry cannot be put in UTC is buried with that reason."""
    msg = mb.send("alice", "bob", expires_at="1d")
    path = mb.inbox("bob").new / f"{msg.id}.json"
    obj = orjson.loads(path.read_bytes())
    obj["expires_at"] = "0001-01-01T00:00:00+23:59"
    path.write_bytes(orjson.dumps(obj))
    assert mb.inbox("bob").claim() is None
    assert "expires_at" in mb.dead.list()[0].reason


def test_expiry_without_a_time_zone_is_refused_at_send_and_quarantined_at_claim(
        mb: Mailbox) -> None:
    """A time with no UTC offset is no expiry: send refuses it, and a reader buries a
    planted one, both saying it has no time zone (one parser for both)."""
    with pytest.raises(InvalidInput, match="no time zone"):
        mb.send("alice", "bob", expires_at="2030-01-01T00:00:00")
    msg = mb.send("alice", "bob", expires_at="1d")
    path = mb.inbox("bob").new / f"{msg.id}.json"
    obj = orjson.loads(path.read_bytes())
    obj["expires_at"] = "2030-01-01T00:00:00"
    path.write_bytes(orjson.dumps(obj))
    assert mb.inbox("bob").claim() is None
    assert "no time zone" in mb.dead.list()[0].reason


def test_memory_since_reads_a_date_or_a_time_without_offset_as_utc(mb: Mailbox) -> None:
    """``--since`` typed as a date or a time without an offset is a UTC time, not an error."""
    memory = mb.agent("bob").memory
    memory.remember("x")
    assert [[], [], ["x"]] == [[e.text for e in memory.events(since=s)] for s in (
        "2999-01-01", "2999-01-01T00:00:00", "2000-01-01T00:00:00")]


# -- text fields that are not valid Unicode --------------------------------------------------------

@pytest.mark.parametrize("field", ["subject", "kind", "thread"])
def test_text_that_is_not_unicode_is_blamed_on_its_own_field(mb: Mailbox, field: str) -> None:
    """A subject, kind or thread holding undecodable bytes (surrogate escapes) is refused
    naming that field, not the body."""
    with pytest.raises(InvalidInput) as caught:
        mb.send("alice", "bob", body="fine", **{field: "bad \udcff"})
    assert f"'{field}'" in str(caught.value) and "body" not in str(caught.value)


@pytest.mark.parametrize("option", ["--subject", "--thread", "--kind"])
def test_cli_invalid_utf8_argument_names_its_option(mb: Mailbox, option: str) -> None:
    """Invalid UTF-8 bytes on the command line are blamed on the right field (exit 5)."""
    argv = [os.fsencode(sys.executable), b"-m", b"agentmailbox", b"--root", os.fsencode(mb.path),
            b"send", b"--from", b"alice", b"--to", b"bob", b"--body", b"fine",
            option.encode(), b"bad \xff\xfe"]
    done = subprocess.run(argv, env={**python_env(), "LC_ALL": "C.UTF-8"}, capture_output=True,
                          timeout=60)
    first = done.stderr.decode("utf-8", "replace").splitlines()[0]
    assert (EXIT_INVALID, True, False) == (done.returncode, f"'{option[2:]}'" in first,
                                           "body" in first)


# -- mailbox.json ----------------------------------------------------------------------------------

MISTYPED_SETTINGS: dict[str, Any] = {
    "lease_seconds": "600",
    "max_unread": "5",
    "max_message_bytes": "1048576",
    "heartbeat_seconds": 0,
    "key_window_days": -1,
    "stale_tmp_seconds": True,
    "fsync": "sometimes",
    "mode": 5,
    "groups": ["bob"],
    "routes": {"@oncall": "bob"},
    "rate": {"per_second": "1"},
    "handoff": [],
    "format": True,
}


def _config_with(mb: Mailbox, key: str, value: Any) -> Path:
    path = mb.path / "mailbox.json"
    obj = orjson.loads(path.read_bytes())
    obj[key] = value
    path.write_bytes(orjson.dumps(obj))
    return mb.path


@pytest.mark.parametrize("key", sorted(MISTYPED_SETTINGS))
def test_mistyped_setting_is_refused_on_open_naming_the_key(mb: Mailbox, key: str) -> None:
    """Opening a root whose mailbox.json holds a wrong type or range fails with InvalidInput
    naming the key, before any read, send, sweep or doctor can misuse it."""
    root = _config_with(mb, key, MISTYPED_SETTINGS[key])
    with pytest.raises(InvalidInput) as caught:
        Mailbox.open(root)
    assert (f"'{key}'" in str(caught.value) or "format" in str(caught.value)) is True


def test_mistyped_setting_names_the_expected_type(mb: Mailbox) -> None:
    """The error says what the key must be, so the fix is obvious."""
    root = _config_with(mb, "lease_seconds", "600")
    with pytest.raises(InvalidInput, match=r"'lease_seconds' must be a number .*a string"):
        Mailbox.open(root)


def test_cli_on_a_mistyped_root_exits_invalid(cli: Any, mb: Mailbox) -> None:
    """Every command on such a root exits 5 with the key named, never a traceback."""
    _config_with(mb, "max_unread", "5")
    for args in (["inbox", "bob"], ["send", "--from", "alice", "--to", "bob", "--body", "x"],
                 ["doctor"], ["agents"]):
        out = cli(*args)
        assert (EXIT_INVALID, True, False) == (out.code, "'max_unread'" in out.err,
                                                "Traceback" in out.err)


def test_init_refuses_settings_a_reader_would_refuse(tmp_path: Path) -> None:
    """`Mailbox.init` checks settings with the same schema as opening does."""
    with pytest.raises(InvalidInput, match="'lease_seconds'"):
        Mailbox.init(tmp_path, fsync="never", lease_seconds="600")
    with pytest.raises(InvalidInput, match="'fsync'"):
        Mailbox.init(tmp_path, fsync="sometimes")
    assert not (tmp_path / ".mailbox" / "mailbox.json").exists()


def test_well_typed_optional_settings_still_open(mb: Mailbox) -> None:
    """Documented optional settings, and unknown keys, open as before."""
    root = _config_with(mb, "handoff", {"max_bytes": 2048, "max_items": 3})
    _config_with(mb, "rate", {"per_second": 2.5, "burst": None})
    _config_with(mb, "x-local", [1, 2])
    opened = Mailbox.open(root)
    assert (opened.config.extra["handoff"]["max_items"], opened.config.extra["x-local"]) == (
        3, [1, 2])


# -- agent.json: add, edit and read agree ----------------------------------------------------------

@pytest.mark.parametrize("change", [{"role": "Bad Role"}, {"groups": ["Ops!"]},
                                    {"topics": ["a b"]}, {"groups": "ops"},
                                    {"max_unread": "5"}, {"max_unread": True},
                                    {"max_unread": -1}, {"description": 5}])
def test_edit_refuses_what_add_refuses(mb: Mailbox, change: dict[str, Any]) -> None:
    """`agent edit` applies the validation of `agent add`, and agent.json is unchanged."""
    before = (mb.path / "agents/bob/agent.json").read_bytes()
    with pytest.raises(InvalidInput):
        mb.add_agent("carol", **change)
    with pytest.raises(InvalidInput):
        mb.registry.edit("bob", **change)
    assert before == (mb.path / "agents/bob/agent.json").read_bytes()


def test_edit_refuses_fields_that_do_not_change(mb: Mailbox) -> None:
    """Name and creation time are not editable, and unknown fields are refused, not crashed."""
    for change in ({"name": "mallory"}, {"created": "now"}, {"colour": "red"}):
        with pytest.raises(InvalidInput):
            mb.registry.edit("bob", **change)


def test_cli_agent_edit_refuses_an_invalid_role(cli: Any) -> None:
    """`mailbox agent edit bob --role 'Bad Role'` exits 5, as `agent add` does."""
    assert (EXIT_INVALID, EXIT_INVALID) == (
        cli("agent", "add", "carol", "--role", "Bad Role").code,
        cli("agent", "edit", "bob", "--role", "Bad Role").code)
    assert EXIT_OK == cli("agent", "edit", "bob", "--role", "").code


@pytest.mark.parametrize("field,value", [("role", 5), ("groups", "ops"), ("groups", [5]),
                                         ("max_unread", "5"), ("topics", {"a": 1})])
def test_hand_edited_agent_json_of_wrong_type_is_a_clear_error(
        mb: Mailbox, field: str, value: Any) -> None:
    """Reading an agent.json with a wrong type is InvalidInput pointing to doctor, and the
    router treats the agent as reachable by name only."""
    path = mb.path / "agents/bob/agent.json"
    obj = orjson.loads(path.read_bytes())
    obj[field] = value
    path.write_bytes(orjson.dumps(obj))
    with pytest.raises(InvalidInput) as caught:
        mb.registry.get("bob")
    assert ("doctor" in caught.value.hint, "bob" in Directory.load(mb.registry, mb.config).agents
            ) == (True, True)


# -- heartbeats ------------------------------------------------------------------------------------

BAD_BEATS = [b"[]", b"{}", b'{"at": "1", "pid": 1}', b'{"at": 1, "pid": true}',
             b'{"at": 1.5, "pid": 1}', b'{"at": 1, "pid": 1, "mode": "asleep"}',
             b'{"at": 1, "pid": 1, "mode": []}', b'{"at": 1, "pid": 1, "capacity": "full"}',
             b'{"at": 1, "pid": 1, "capacity": 7}', b'{"at": 1, "pid": 1, "epoch": "x"}',
             b'{"agent": "alice", "at": 1, "pid": 1}', b"\xff", b""]


@pytest.mark.parametrize("data", BAD_BEATS)
def test_malformed_heartbeat_counts_as_never_seen(mb: Mailbox, data: bytes) -> None:
    """A heartbeat file that is not a heartbeat reads as never seen, for every caller."""
    presence = Presence(mb.root)
    presence.directory.mkdir(parents=True, exist_ok=True)
    (presence.directory / "bob.json").write_bytes(data)
    assert (None, Liveness.NEVER) == (presence.last("bob"), presence.liveness("bob"))


def test_agents_command_lists_past_a_malformed_heartbeat(cli: Any, mb: Mailbox) -> None:
    """`mailbox agents` shows an agent whose heartbeat file holds [] as never seen."""
    Presence(mb.root).beat("alice")
    (Presence(mb.root).directory / "bob.json").write_bytes(b"[]")
    out = cli("agents", "--json")
    rows = {r["name"]: r["liveness"] for r in out.json()}
    assert (EXIT_OK, rows) == (out.code, {"alice": "alive", "bob": "never seen"})


@pytest.mark.parametrize("options", [{"capacity": "x"}, {"capacity": 2.0}, {"capacity": True},
                                     {"mode": "asleep"}, {"epoch": "x"}])
def test_beat_refuses_what_a_reader_would_ignore(mb: Mailbox, options: dict[str, Any]) -> None:
    """A heartbeat the reader would count as malformed is refused with InvalidInput."""
    with pytest.raises(InvalidInput):
        Presence(mb.root).beat("bob", **options)
    assert not (Presence(mb.root).directory / "bob.json").exists()


def test_pick_one_passes_over_an_agent_with_a_malformed_heartbeat(mb: Mailbox) -> None:
    """A `--pick one` message reaches the live candidate when another candidate's heartbeat
    file holds [], instead of being buried by the supervisor."""
    mb.add_agent("carol", role="coder")
    presence = Presence(mb.root)
    presence.beat("carol", capacity=0.5)
    (presence.directory / "bob.json").write_bytes(b"[]")
    msg = mb.send("alice", "@coder", pick="one")
    with Supervisor(Mailbox.open(mb.path)) as sup:
        sup.run_once()
    assert ([], [msg.id], []) == ([d.reason for d in mb.dead.list()], mb.inbox("carol").ids(),
                                  mb.inbox("bob").ids())


def test_handoff_file_that_is_not_utf8_is_a_clean_error(cli: Any, tmp_path: Path) -> None:
    """`handoff --file` of bytes that are not UTF-8 exits 5 saying so, not a traceback."""
    note = tmp_path / "note.md"
    note.write_bytes(b"## Next\n- \xff\xfe the plan\n")
    out = cli("handoff", "bob", "--file", str(note))
    assert (EXIT_INVALID, True, False) == (out.code, "UTF-8" in out.err, "Traceback" in out.err)


@pytest.mark.parametrize("stamp", [0, 1, 86_399_999_999_999, 86_400_000_000_000,
                                   1_796_169_599_999_999_999, 1_796_169_600_000_000_000])
def test_the_day_span_of_an_id_holds_exactly_the_ids_of_its_day(stamp: int) -> None:
    """done/ finds an id's day folder by comparing it with the bounds of the last day seen,
    so those bounds hold every id of that day and none of another."""
    msg_id = f"{stamp:020d}-0123456789abcdef"
    day, first, end = day_span(msg_id)
    assert day == day_of(msg_id)
    assert first <= msg_id < end
    assert day_of(f"{first}-0000000000000000") == day
    assert day_of(f"{int(end) - 1:020d}-ffffffffffffffff") == day
    assert day_of(f"{end}-0000000000000000") != day
    if int(first) > 0:
        assert day_of(f"{int(first) - 1:020d}-ffffffffffffffff") != day
