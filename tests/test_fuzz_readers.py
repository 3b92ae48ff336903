"""Every reader of on-disk JSON survives any bytes and any JSON of the wrong types.

Each test plants a file where a reader looks (arbitrary bytes, an arbitrary JSON value,
or the file's own fields with arbitrary values in their place) and calls the reader
the way the library does. The reader must give a clean :class:`MailboxError`, say the
thing is absent, or quarantine the file into ``dead/``: never any other exception.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmailbox import Mailbox, MailboxError
from agentmailbox.handoff import Handoff, HandoffStore
from agentmailbox.memory import WorkingState
from agentmailbox.message import Malformed, Message, decode, encode
from agentmailbox.presence import Presence
from agentmailbox.root import Config
from agentmailbox.routing import Directory
from agentmailbox.supervisor import Supervisor
from agentmailbox.threads import Threads

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FUZZ_SLOW = settings(FUZZ, max_examples=60)

# Any JSON value orjson can write: no NaN, integers within 64 bits.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def file_contents(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, any JSON value, or ``base`` with fields replaced, added or dropped."""
    keys = sorted(base)
    variants = st.tuples(
        st.dictionaries(st.sampled_from([*keys, "extra"]), json_values, max_size=len(keys)),
        st.sets(st.sampled_from(keys), max_size=2),
    ).map(lambda change: {k: v for k, v in {**base, **change[0]}.items() if k not in change[1]})
    return st.one_of(st.binary(max_size=300), json_values.map(orjson.dumps),
                     variants.map(orjson.dumps))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with agents alice and bob, copied fresh for each test."""
    box = Mailbox.init(tmp_path_factory.mktemp("template"), fsync="never")
    box.add_agent("alice", role="planner")
    box.add_agent("bob", role="coder", groups=["ops"])
    box.close()
    return box.path


@pytest.fixture
def mb(template: Path, tmp_path: Path) -> Iterator[Mailbox]:
    root = tmp_path / ".mailbox"
    shutil.copytree(template, root, symlinks=True)
    box = Mailbox.open(root)
    yield box
    box.close()


def _clean(call: Any) -> Any:
    """Run a reader; a MailboxError is a clean outcome (returned, not raised)."""
    try:
        return call()
    except MailboxError as exc:
        return exc


# -- messages, in inboxes and the spool ----------------------------------------------------------

MESSAGE = orjson.loads(encode(Message(id="01795443442123456789-9f86d081884c7d65", sender="alice",
                                      to=("bob",), subject="s", body={"k": 1},
                                      expires_at="2100-01-01T00:00:00Z", epoch=2), 1 << 20))


@FUZZ
@given(data=file_contents(MESSAGE))
def test_decode_gives_a_message_or_the_reason_it_is_malformed(data: bytes) -> None:
    """decode() of any bytes returns a Message or raises Malformed with a reason."""
    try:
        msg = decode(data, expected_id=MESSAGE["id"])
    except Malformed as exc:
        assert isinstance(exc.reason, str) and exc.reason
    else:
        assert encode(msg, 1 << 30)  # what a reader accepts, a writer can write back


def _plant(folder: Path, data: bytes, mb: Mailbox) -> str:
    """Put ``data`` in ``folder`` under a fresh id, with that id in its ``id`` field if the
    fuzzed content kept the template's id."""
    msg_id = mb.root.clock.new_id()
    data = data.replace(MESSAGE["id"].encode(), msg_id.encode())
    (folder / f"{msg_id}.json").write_bytes(data)
    return msg_id


@FUZZ_SLOW
@given(data=file_contents(MESSAGE))
def test_claim_hands_out_or_quarantines_any_file(mb: Mailbox, data: bytes) -> None:
    """A claim of any planted file hands out a message or buries the file in dead/."""
    with Mailbox.open(mb.path) as reader:
        inbox = reader.inbox("bob")
        msg_id = _plant(inbox.new, data, mb)
        claimed = inbox.claim()
        if claimed is not None:
            inbox.done(claimed)
    buried = [d for d in mb.dead.list() if d.name == f"{msg_id}.json"]
    assert (claimed is not None) != (len(buried) == 1)


@FUZZ_SLOW
@given(data=file_contents(MESSAGE))
def test_supervisor_routes_or_quarantines_any_spool_entry(mb: Mailbox, data: bytes) -> None:
    """A spool entry of any content is routed or buried with its reason, never buried for a
    crash of the supervisor itself; `status` of it is clean."""
    msg_id = _plant(mb.spool.new, data, mb)
    _clean(lambda: mb.status(msg_id))
    with Supervisor(Mailbox.open(mb.path)) as sup:
        sup.run_once()
    assert [] == [d.reason for d in mb.dead.list() if d.reason.startswith("could not route")]
    assert [] == mb.spool.names(mb.spool.new)


# -- continuity files ---------------------------------------------------------------------------

HANDOFF_BODY = {"in_progress": ["a"], "decided": [], "next": ["b"], "can_wait": [],
                "waiting_on": [{"agent": "alice", "ref": MESSAGE["id"], "note": "n"}]}


@FUZZ
@given(data=file_contents({**MESSAGE, "kind": "handoff", "to": ["bob"], "from": "bob",
                           "headers": {"final": "false"}, "body": HANDOFF_BODY}))
def test_handoff_reader_gives_a_handoff_or_skips_the_file(mb: Mailbox, data: bytes) -> None:
    """The newest handoff of any content is read, or skipped as unreadable."""
    store = HandoffStore(mb.root, "bob")
    _plant(store.directory, data, mb)
    found = _clean(store.latest)
    assert found is None or isinstance(found, Handoff | MailboxError)
    assert not isinstance(_clean(store.history), Exception)


def _parsed_or_bytes(data: bytes) -> Any:
    """The document in ``data`` when it is JSON, else the bytes themselves (any shape)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data


@FUZZ
@given(body=json_values | file_contents(HANDOFF_BODY).map(lambda d: _parsed_or_bytes(d)))
def test_handoff_sections_of_any_shape_are_a_clean_error(body: Any) -> None:
    """A handoff body of any JSON shape is a Handoff or an InvalidInput."""
    assert isinstance(_clean(lambda: Handoff.from_dict(body)), Handoff | MailboxError)


@FUZZ
@given(data=file_contents({"agent": "bob", "at": 1, "pid": 2, "capacity": 0.5,
                           "mode": "normal", "epoch": 3}))
def test_heartbeat_reader_gives_a_heartbeat_or_never_seen(mb: Mailbox, data: bytes) -> None:
    """Any heartbeat file reads as a heartbeat, or as never seen; `read` says why."""
    presence = Presence(mb.root)
    presence.directory.mkdir(parents=True, exist_ok=True)
    (presence.directory / "bob.json").write_bytes(data)
    beat = presence.last("bob")
    assert beat is None or beat.agent == "bob"
    _clean(lambda: presence.read("bob"))
    presence.liveness("bob")


@FUZZ
@given(data=file_contents({"thread": MESSAGE["id"], "by": "alice", "at": "2026-01-01T00:00:00Z",
                           "note": "merged"}))
def test_thread_marker_reader_gives_a_marker_or_a_clean_error(mb: Mailbox, data: bytes) -> None:
    """Any thread marker reads as a marker or is a clean InvalidInput."""
    threads = Threads(mb.root)
    threads.directory.mkdir(exist_ok=True)
    (threads.directory / f"{MESSAGE['id']}.done.json").write_bytes(data)
    _clean(lambda: threads.done(MESSAGE["id"]))


AGENT_JSON = {"name": "bob", "role": "coder", "groups": ["ops"], "topics": ["ci"],
              "description": "d", "max_unread": 3, "created": "2026-01-01T00:00:00Z"}


@FUZZ
@given(data=file_contents(AGENT_JSON))
def test_agent_json_reader_gives_an_identity_or_a_clean_error(mb: Mailbox, data: bytes) -> None:
    """Any agent.json reads as an identity or is a clean InvalidInput, and routing goes on."""
    (mb.path / "agents/bob/agent.json").write_bytes(data)
    _clean(lambda: mb.registry.get("bob"))
    _clean(mb.agents)
    assert "bob" in Directory.load(mb.registry, mb.config).agents
    mb.quotas.quota("bob")


CONFIG = orjson.loads(Config(groups={"ops": ["bob"]}, routes={"@oncall": ["bob"]},
                             extra={"rate": {"per_second": 1, "burst": 2},
                                    "handoff": {"max_bytes": 4096, "max_items": 7}}).to_json())


@FUZZ
@given(data=file_contents(CONFIG))
def test_mailbox_json_opens_or_is_a_clean_error(mb: Mailbox, data: bytes) -> None:
    """Any mailbox.json opens as settings or is a clean InvalidInput naming the problem."""
    (mb.path / "mailbox.json").write_bytes(data)
    opened = _clean(lambda: Mailbox.open(mb.path))
    if isinstance(opened, Mailbox):
        with opened:  # settings that open are settings every layer can use
            Directory.load(opened.registry, opened.config).expand("+ops", "alice")
            Supervisor(opened).close()
            opened.quotas.quota("bob")


@FUZZ
@given(data=file_contents({"key": "job-1", "id": MESSAGE["id"], "to": ["bob"],
                           "at": "2026-01-01T00:00:00Z"}))
def test_key_marker_reader_gives_a_record_or_a_clean_error(mb: Mailbox, data: bytes) -> None:
    """A keyed send over any key marker sends, or is a clean error."""
    digest = hashlib.sha256(b"job-1").hexdigest()[:40]
    marker = mb.path / "agents/alice/keys" / f"{digest}.json"
    marker.write_bytes(data)
    _clean(lambda: mb.send("alice", "bob", key="job-1"))


@FUZZ
@given(data=file_contents({"answer": 42}))
def test_working_state_reader_gives_a_state_or_a_clean_error(mb: Mailbox, data: bytes) -> None:
    """Any state.json reads as the working state or is a clean InvalidInput."""
    (mb.path / "agents/bob/state.json").write_bytes(data)
    _clean(WorkingState(mb.root, "bob").snapshot)


@FUZZ_SLOW
@given(data=file_contents({"epoch": 3, "at": 1795803015357379564,
                           "previous_at": 1795802015357379564}))
def test_boot_over_any_epoch_record_starts_an_instance(mb: Mailbox, data: bytes) -> None:
    """A boot over any run/epoch starts a new instance (or is a clean error); a dry run
    over it renders the brief."""
    (mb.path / "agents/bob/run/epoch").write_bytes(data)
    for start in (False, True):
        with Mailbox.open(mb.path) as instance:
            _clean(lambda i=instance, s=start: i.agent("bob").boot(start_epoch=s))


# -- records: the journal and dead letters -------------------------------------------------------

JOURNAL_LINE = {"t": 1795443442123456789, "ev": "claim", "pid": 1, "agent": "bob",
                "id": MESSAGE["id"], "epoch": 1}


@FUZZ
@given(lines=st.lists(file_contents(JOURNAL_LINE), max_size=4))
def test_journal_reader_yields_only_objects(mb: Mailbox, lines: list[bytes]) -> None:
    """Journal lines of any content are skipped or read as objects."""
    day = mb.path / "journal" / "2026-11-27.jsonl"
    day.write_bytes(b"\n".join(lines) + b"\n")
    assert all(isinstance(e, dict) for e in mb.root.journal.events())


@FUZZ
@given(data=file_contents({"id": MESSAGE["id"], "reason": "r", "origin": "agents/bob/inbox/new",
                           "name": "x.json", "at": "2026-01-01T00:00:00Z", "agent": "bob"}))
def test_dead_letter_reasons_of_any_content_list_cleanly(mb: Mailbox, data: bytes) -> None:
    """Reason files of any content are listed or skipped, and each listed one renders."""
    dead_id = mb.root.clock.new_id()
    (mb.dead.directory / f"{dead_id}.reason.json").write_bytes(data)
    (mb.dead.directory / f"{dead_id}.msg").write_bytes(b"x")
    for letter in _clean(mb.dead.list):
        orjson.dumps(letter.to_dict())
