"""Hostile input met by every part that reads the root: readers, the watcher, the supervisor
and doctor. Each must refuse or quarantine it, go on with the good mail, and never read,
write or follow anything outside the root.

tests/test_bad_input.py holds the reader's catalogue of malformed files; this file adds
what it lacks (a 50 MB sparse file, hostile names, case-only twins, unknown recipients,
links out of the root) and plants the same hostile files before the watcher, the
supervisor and doctor. Every test here runs beside a sentinel outside the root whose
content and modification time must not change (the ``outside`` fixture, autouse).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, files_containing

from agentmailbox import AgentNotFound, InvalidInput, InvalidName, Mailbox, doctor
from agentmailbox.inbox import Inbox
from agentmailbox.message import Message, encode
from agentmailbox.names import as_text
from agentmailbox.supervisor import Supervisor

MiB = 1 << 20
LINKED_ID = "01700000000000000000-5ec2e75ec2e75ec2"  # the message a planted hard link shows


# -- the sentinel outside the root ----------------------------------------------------------------

def _fingerprint(top: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every file under ``top``: content hash, size, mode and mtime (not atime, not links)."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            st = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            out[str(path.relative_to(top))] = (digest, st.st_size, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture(autouse=True)
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder beside the root with a valid-looking message and a fake agent in it; the
    test fails if anything there is created, changed or removed."""
    top = tmp_path / "outside"
    (top / "agent" / "inbox" / "new").mkdir(parents=True)
    for sub in ("tmp", "cur", "done"):
        (top / "agent" / "inbox" / sub).mkdir()
    (top / "agent" / "agent.json").write_bytes(b'{"name": "mallory"}\n')
    (top / "secret.json").write_bytes(b"TOP-SECRET-7f3a\n")
    (top / "linked.json").write_bytes(_secret_message(LINKED_ID))
    before = _fingerprint(top)
    yield top
    assert before == _fingerprint(top), "something outside the root changed"


def _secret_message(msg_id: str) -> bytes:
    """A valid message (named ``msg_id``) that carries the secret: what a planted link shows."""
    return encode(Message(id=msg_id, sender="alice", to=("bob",), subject="secret",
                          body="TOP-SECRET-7f3a"), MiB)


# -- hostile files, planted under any name in any folder -----------------------------------------

# A plant creates a hostile entry at (or, for a hard link, beside) a path in a folder of the
# root, given the outside folder; it returns the path it created.
Plant = Callable[[Path, Path], Path]


def _write(data: Callable[[str], bytes]) -> Plant:
    def plant(path: Path, out: Path) -> Path:
        path.write_bytes(data(path.name[:37]))
        return path
    return plant


def _make(create: Callable[[Path, Path], object]) -> Plant:
    def plant(path: Path, out: Path) -> Path:
        create(path, out)
        return path
    return plant


def _valid(msg_id: str, **changes: object) -> bytes:
    obj = orjson.loads(encode(Message(id=msg_id, sender="alice", to=("bob",)), MiB))
    obj.update(changes)
    return orjson.dumps(obj)


def _sparse(path: Path, out: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(50 * MiB)
    return path


def _hard_link_out(path: Path, out: Path) -> Path:
    """A link to a valid message outside the root, named as that message (so it decodes)."""
    planted = path.parent / f"{LINKED_ID}.json"
    os.link(out / "linked.json", planted)
    return planted


HOSTILE: dict[str, Plant] = {
    "empty": _write(lambda i: b""),
    "truncated-json": _write(lambda i: _valid(i)[:30]),
    "invalid-utf8": _write(lambda i: _valid(i, subject="x").replace(b'"x"', b'"\xff\xfe"')),
    "bom": _write(lambda i: b"\xef\xbb\xbf" + _valid(i)),
    "trailing-garbage": _write(lambda i: _valid(i) + b"}garbage"),
    "nested-1100": _write(lambda i: _valid(i).replace(b'"body":null',
                                                      b'"body":' + b"[" * 1100 + b"]" * 1100)),
    "wrong-types": _write(lambda i: _valid(i, to="bob", subject=5)),
    "unknown-version": _write(lambda i: _valid(i, v=99)),
    "duplicate-keys": _write(lambda i: _valid(i).replace(b'"v":1', b'"v":1,"v":1')),
    "sparse-50mb": _sparse,
    "symlink-outside": _make(lambda path, out: path.symlink_to(out / "secret.json")),
    "symlink-to-dir-outside": _make(lambda path, out: path.symlink_to(out / "agent")),
    "fifo": _make(lambda path, out: os.mkfifo(path)),
    "directory": _make(lambda path, out: (path.mkdir(), (path / "x.json").write_bytes(b"{}"))),
    "hard-link-outside": _hard_link_out,
}
# Names a file can have on disk that are not <id>.json (no '/' or NUL is possible there).
FOREIGN_NAMES = {"control-characters": "\x1b[31mred\n\t.json", "255-bytes": "x" * 250 + ".json",
                 "dot-dot-lookalike": "...json", "non-utf8": os.fsdecode(b"\xff\xfe.json")}


def _bad_name(mb: Mailbox) -> str:
    """A message file name that sorts before mail sent after it."""
    return f"{mb.root.clock.new_id()}.json"


def _dead_names(mb: Mailbox) -> list[str]:
    return [d.name for d in mb.dead.list()]


# -- readers ---------------------------------------------------------------------------------------

def test_sparse_50_mb_file_is_quarantined_without_being_read(
        mb: Mailbox, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 50 MB file in new/ is quarantined by its size; the reader reads none of it."""
    bad = mb.inbox("bob").new / _bad_name(mb)
    good = mb.send("alice", "bob").id
    _sparse(bad, outside)
    read: list[int] = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: read.append(n) or real_read(fd, n))
    with Mailbox.open(mb.path) as reader:
        claimed = reader.inbox("bob").claim()
    monkeypatch.undo()
    assert (good, [bad.name], True) == (claimed.id if claimed else None, _dead_names(mb),
                                        sum(read) < MiB)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_reader_quarantines_hostile_file_and_claims_the_good_mail(
        mb: Mailbox, outside: Path, no_hang: None, case: str) -> None:
    """A claim meets a hostile file ahead of good mail: it buries it, claims the good
    message, and leaves whatever the file pointed to outside the root as it was."""
    bad = HOSTILE[case](mb.inbox("bob").new / _bad_name(mb), outside)
    good = mb.send("alice", "bob").id
    with Mailbox.open(mb.path) as reader:
        claimed = reader.inbox("bob").claim()
    assert (good, [bad.name]) == (claimed.id if claimed else None, _dead_names(mb))


@pytest.mark.parametrize("case", sorted(FOREIGN_NAMES))
def test_hostile_file_name_in_new_is_quarantined_under_its_own_name(
        mb: Mailbox, outside: Path, case: str) -> None:
    """Control characters, 255 bytes or undecodable bytes in a name in new/: the file goes
    to dead/ as it was named, and the reader claims the good mail."""
    good = mb.send("alice", "bob").id
    name = FOREIGN_NAMES[case]
    (mb.inbox("bob").new / name).write_bytes(b"hello")
    with Mailbox.open(mb.path) as reader:
        claimed = reader.inbox("bob").claim()
    assert (good, [as_text(name)]) == (claimed.id if claimed else None, _dead_names(mb))


# -- the watcher -----------------------------------------------------------------------------------

needs_watch = pytest.mark.skipif(not hasattr(Inbox, "watch"), reason="no inbox watcher yet")


@needs_watch
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_watcher_quarantines_hostile_file_and_yields_the_good_mail(
        mb: Mailbox, outside: Path, no_hang: None, case: str) -> None:
    """inbox.watch() meets a hostile file ahead of good mail: it buries it and yields the
    good message, without raising or blocking."""
    bad = HOSTILE[case](mb.inbox("bob").new / _bad_name(mb), outside)
    good = mb.send("alice", "bob").id
    with Mailbox.open(mb.path) as reader:
        stream = reader.inbox("bob").watch(timeout=5, heartbeat=False)
        first = next(stream, None)
        stream.close()
    assert (good, [bad.name]) == (first.id if first else None, _dead_names(mb))


@needs_watch
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_wait_returns_with_hostile_files_in_new(mb: Mailbox, outside: Path, no_hang: None,
                                                case: str) -> None:
    """inbox.wait() with a hostile file beside good mail says mail is there, at once."""
    HOSTILE[case](mb.inbox("bob").new / _bad_name(mb), outside)
    mb.send("alice", "bob")
    assert mb.inbox("bob").wait(timeout=5)


# -- the supervisor --------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_supervisor_buries_hostile_spool_file_and_routes_the_rest(
        mb: Mailbox, outside: Path, no_hang: None, case: str) -> None:
    """A hostile file in spool/new is buried; routed mail behind it reaches its recipient."""
    HOSTILE[case](mb.spool.new / _bad_name(mb), outside)
    good = mb.send("alice", "@coder", subject="routed").id
    with Supervisor(mb) as sup:
        sup.run_once()
    assert ([good], 1, []) == (mb.inbox("bob").ids(), len(mb.dead.list()),
                               mb.spool.names(mb.spool.new) + mb.spool.names(mb.spool.cur))
    assert [] == files_containing(mb.path / "agents", b"TOP-SECRET-7f3a")
    assert [] == files_containing(mb.path / "journal", b"TOP-SECRET-7f3a")


@pytest.mark.parametrize("case", sorted(FOREIGN_NAMES))
def test_supervisor_buries_hostile_spool_file_name(mb: Mailbox, outside: Path,
                                                   case: str) -> None:
    """A spool entry with a hostile name is buried under that name; routing goes on."""
    (mb.spool.new / FOREIGN_NAMES[case]).write_bytes(b"x")
    good = mb.send("alice", "@coder").id
    with Supervisor(mb) as sup:
        sup.run_once()
    assert ([good], [as_text(FOREIGN_NAMES[case])]) == (mb.inbox("bob").ids(),
                                                         _dead_names(mb))


def test_routed_mail_to_an_unknown_agent_is_buried_and_the_sender_told(
        mb: Mailbox, outside: Path) -> None:
    """A spooled message whose to names no registered agent goes to dead/ as
    undeliverable and alice gets a notice; nothing is created for the unknown name."""
    msg = Message(id=mb.root.clock.new_id(), sender="alice", to=("ghost",), subject="hi")
    mb.spool.deliver(msg.id, encode(msg, MiB))
    with Supervisor(mb) as sup:
        sup.run_once()
    notices = [m.body["notice"] for m in mb.inbox("alice").list() if m.kind == "notice"]
    reasons = [d.reason for d in mb.dead.list()]
    assert (["undeliverable: no agent named 'ghost'"], ["undeliverable"], False) == (
        reasons, notices, (mb.path / "agents" / "ghost").exists())


# -- doctor ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["new", "cur"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_doctor_quarantines_hostile_file_in_an_inbox(mb: Mailbox, outside: Path,
                                                     no_hang: None, case: str,
                                                     folder: str) -> None:
    """doctor --repair buries a hostile file found in new/ or cur/, and is clean after."""
    HOSTILE[case](mb.inbox("bob").path / folder / _bad_name(mb), outside)
    doctor.check(mb, repair=True)
    assert (1, []) == (len(mb.dead.list()), doctor.check(mb))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_doctor_clears_hostile_file_in_tmp(mb: Mailbox, outside: Path, no_hang: None,
                                           case: str) -> None:
    """doctor --repair meets a hostile entry in tmp/ without crashing; nothing stays that
    it reports, and nothing outside the root is touched."""
    HOSTILE[case](mb.inbox("bob").tmp / f"{_bad_name(mb)[:-5]}.1.abcdef", outside)
    doctor.check(mb, repair=True, stale_after=0)
    assert [] == [f.to_dict() for f in doctor.check(mb, stale_after=0) if not f.repaired]


# -- names -----------------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "dot-dot": "..",
    "parent-path": "../outside/secret.json",
    "absolute": "/etc/passwd",
    "nul": "a\x00b",
    "control": "a\x1bb",
    "newline": "a\nb",
    "300-bytes": "a" * 300,
    "300-bytes-non-ascii": "é" * 150,
}


def _tree(top: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            st = os.lstat(Path(folder) / name)
            out[str(Path(folder, name).relative_to(top))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_agent_name_is_refused_before_any_path_is_built(
        mb: Mailbox, outside: Path, case: str) -> None:
    """As a new agent, a recipient or a sender, a hostile name raises InvalidName and no
    file changes."""
    name = HOSTILE_NAMES[case]
    before = _tree(mb.path)
    refused = []
    for attempt in (lambda: mb.add_agent(name), lambda: mb.send("alice", name),
                    lambda: mb.send(name, "bob"), lambda: mb.inbox(name)):
        with pytest.raises(InvalidName):
            attempt()
        refused.append(True)
    assert ([True] * 4, before) == (refused, _tree(mb.path))


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_workspace_name_is_refused_before_any_path_is_built(
        mb: Mailbox, outside: Path, case: str) -> None:
    """Writing, reading or locking a workspace file with a hostile name raises InvalidName
    and changes nothing."""
    name = HOSTILE_NAMES[case]
    before = _tree(mb.path)
    ws = mb.workspace
    for attempt in (lambda: ws.put(name, b"x"), lambda: ws.get(name),
                    lambda: ws.lock(name).__enter__()):
        with pytest.raises(InvalidName):
            attempt()
    assert before == _tree(mb.path)


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_message_id_is_refused_before_any_path_is_built(
        mb: Mailbox, outside: Path, case: str) -> None:
    """Claiming, finishing, releasing or asking the status of a hostile id raises
    InvalidInput and changes nothing."""
    msg_id = HOSTILE_NAMES[case]
    inbox = mb.inbox("bob")
    before = _tree(mb.path)
    for attempt in (lambda: inbox.claim(msg_id), lambda: inbox.done(msg_id),
                    lambda: inbox.release(msg_id), lambda: mb.status(msg_id),
                    lambda: mb.send("alice", "bob", reply_to=msg_id)):
        with pytest.raises(InvalidInput):
            attempt()
    assert before == _tree(mb.path)


def test_path_like_idempotency_key_is_hashed_never_used_as_a_path(
        mb: Mailbox, outside: Path) -> None:
    """A key like ../../outside/x names a hashed marker inside keys/; sent twice, one message."""
    key = "../../outside/secret.json"
    first = mb.send("alice", "bob", key=key).id
    again = mb.send("alice", "bob", key=key).id
    keys = os.listdir(mb.root.agent_dir("alice") / "keys")
    assert (first, 1, True) == (again, len(keys), keys[0][:-5].isalnum())


@pytest.mark.parametrize("key", ["k" * 201, "a\x00b", "a\nb", ""])
def test_unprintable_or_overlong_idempotency_key_is_refused(mb: Mailbox, key: str) -> None:
    """A key over 200 characters, empty or with control characters raises InvalidInput."""
    before = _tree(mb.path)
    with pytest.raises(InvalidInput):
        mb.send("alice", "bob", key=key)
    assert before == _tree(mb.path)


# -- agents that are not what they seem ---------------------------------------------------------

def test_folder_named_like_an_agent_in_upper_case_is_not_an_agent(mb: Mailbox,
                                                                  outside: Path) -> None:
    """A hand-made agents/Bob/ beside bob is never listed, sent to or claimed from;
    doctor reports it and leaves it alone."""
    fake = mb.path / "agents" / "Bob"
    (fake / "inbox" / "new").mkdir(parents=True)
    (fake / "agent.json").write_bytes(b'{"name": "Bob"}')
    with pytest.raises(InvalidName):
        mb.send("alice", "Bob")
    found = [(f.kind, f.path) for f in doctor.check(mb, repair=True)]
    assert (["alice", "bob"], [("foreign", "agents/Bob")]) == (
        [a.name for a in mb.agents()], found)


def test_agent_folder_that_is_a_symlink_out_of_the_root_is_not_an_agent(
        mb: Mailbox, outside: Path) -> None:
    """agents/mallory linking to a fake agent outside the root: sending to mallory is
    refused as unknown and nothing is written through the link."""
    (mb.path / "agents" / "mallory").symlink_to(outside / "agent")
    with pytest.raises(AgentNotFound):
        mb.send("alice", "mallory", subject="to the outside")
    assert ["alice", "bob"] == [a.name for a in mb.agents()]


def test_adding_an_agent_over_a_symlinked_folder_writes_nothing_outside(
        mb: Mailbox, outside: Path) -> None:
    """add_agent("mallory") where agents/mallory links out of the root is refused."""
    (mb.path / "agents" / "mallory").symlink_to(outside / "agent")
    with pytest.raises(InvalidInput):
        mb.add_agent("mallory")


# -- the catalogue in docs/RELIABILITY.md -------------------------------------------------------

def _catalogue() -> str:
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    return text.split("<!-- hostile-table:begin -->", 1)[1].split("<!-- hostile-table:end -->")[0]


def test_catalogue_names_only_tests_that_exist() -> None:
    """Each test the hostile-input catalogue cites as proof is defined where it says."""
    cited = re.findall(r"`(tests/\w+\.py)::(\w+)`", _catalogue())
    missing = [f"{f}::{name}" for f, name in cited
               if f"def {name}(" not in (ROOT / f).read_text()]
    assert (True, []) == (len(cited) > 20, missing)


def test_catalogue_lists_every_hostile_file_planted_here() -> None:
    """Each hostile file these tests plant has its row in the catalogue."""
    assert [] == [case for case in HOSTILE if f"`{case}`" not in _catalogue()]
