"""Hostile or broken input: refused with a clear error, or quarantined, and the reader goes on.

Every bad file below sits in ``new/`` ahead of a good message. A claim must put the
bad one in ``dead/`` with a reason that names the cause, never crash or block, never
follow a link out of the root, and hand out the good message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import files_containing

from agentmailbox import AgentNotFound, InvalidName, Mailbox, MessageTooLarge, doctor
from agentmailbox.message import Message, encode

MiB = 1 << 20


def _valid(msg_id: str, **fields: object) -> bytes:
    """The canonical encoding of a message from alice to bob named ``msg_id``."""
    return encode(Message(id=msg_id, sender="alice", to=("bob",), subject="s", **fields), MiB)


def _edited(msg_id: str, **changes: object) -> bytes:
    obj = orjson.loads(_valid(msg_id))
    obj.update(changes)
    return orjson.dumps(obj)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _with_body(msg_id: str, body: bytes) -> bytes:
    """A message whose body is raw JSON text (it may be more than orjson writes)."""
    head = _valid(msg_id, body=None).rstrip(b"\n")
    return head.replace(b'"body":null', b'"body":' + body)


# name -> (content for new/<id>.json, words the quarantine reason must contain)
BAD_CONTENT: dict[str, tuple[Callable[[str], bytes], tuple[str, ...]]] = {
    "empty": (lambda i: b"", ("invalid JSON", "empty")),
    "truncated": (lambda i: _valid(i)[:40], ("invalid JSON", "end of data")),
    "invalid-utf8": (lambda i: _valid(i).replace(b'"s"', b'"\xff\xfe"'), ("UTF-8",)),
    "bom": (lambda i: b"\xef\xbb\xbf" + _valid(i), ("byte order mark",)),
    "trailing-garbage": (lambda i: _valid(i) + b"garbage", ("after document",)),
    "nested-1025": (lambda i: _with_body(i, _nested(1025)), ("depth",)),
    "nested-300": (lambda i: _with_body(i, _nested(300)), ("nested",)),
    "not-an-object": (lambda i: b"[1, 2]\n", ("not a JSON object",)),
    "to-is-a-string": (lambda i: _edited(i, to="bob"), ("'to'", "list")),
    "subject-is-a-number": (lambda i: _edited(i, subject=5), ("'subject'", "str")),
    "receipt-is-a-string": (lambda i: _edited(i, receipt="yes"), ("'receipt'", "bool")),
    "version-is-true": (lambda i: _edited(i, v=True), ("format version",)),
    "unknown-version": (lambda i: _edited(i, v=2), ("unknown format version 2",)),
    "duplicate-keys": (lambda i: _valid(i).replace(b'"subject":"s"',
                                                   b'"subject":"s","subject":"t"'),
                       ("duplicate keys",)),
    "id-not-file-name": (lambda i: _edited(i, id=f"{int(i[:20]) - 1:020d}{i[20:]}"),
                         ("does not match its file name",)),
    "id-malformed": (lambda i: _edited(i, id="../../etc/passwd"), ("invalid message id",)),
    "bad-sender": (lambda i: _edited(i, **{"from": "../x"}), ("invalid sender",)),
}


def _bad_then_good(mb: Mailbox) -> tuple[Path, str]:
    """A path in new/ for a bad file that sorts before a good message, and the good id."""
    bad_id = mb.root.clock.new_id()
    good = mb.send("alice", "bob", subject="good")
    return mb.inbox("bob").new / f"{bad_id}.json", good.id


def _claim_past_bad(mb: Mailbox) -> tuple[str | None, list[str]]:
    """Claim once, as a fresh reader; the claimed id and the quarantine reasons."""
    with Mailbox.open(mb.path) as reader:
        msg = reader.inbox("bob").claim()
        return (msg.id if msg else None), [d.reason for d in reader.dead.list()]


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_malformed_file_is_quarantined_with_its_reason_and_reader_moves_on(
        mb: Mailbox, case: str) -> None:
    """A malformed message file goes to dead/ saying why; the next good message is claimed."""
    make, words = BAD_CONTENT[case]
    bad, good = _bad_then_good(mb)
    bad.write_bytes(make(bad.name[:-5]))
    claimed, reasons = _claim_past_bad(mb)
    assert (good, 1, []) == (claimed, len(reasons),
                             [w for w in words if w not in "".join(reasons)])


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_quarantined_file_keeps_its_bytes_and_origin(mb: Mailbox, case: str) -> None:
    """dead/ holds the file as it was met, with the folder and name it came from."""
    make, _ = BAD_CONTENT[case]
    bad, _ = _bad_then_good(mb)
    data = make(bad.name[:-5])
    bad.write_bytes(data)
    _claim_past_bad(mb)
    (dead,) = mb.dead.list()
    assert (data, bad.name) == (mb.dead.content(dead.id, 2 * MiB), dead.name)


def test_oversized_file_is_quarantined_without_being_read_whole(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2 MB file in new/ is quarantined by its size alone; its bytes are never read."""
    bad, good = _bad_then_good(mb)
    bad.write_bytes(b'{"v":1,' + b" " * (2 * MiB))
    seen = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        seen.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    claimed, reasons = _claim_past_bad(mb)
    monkeypatch.undo()
    assert (good, True) == (claimed, sum(seen) < MiB)
    assert ["over the", "limit"] == [w for w in ("over the", "limit") if w in reasons[0]]


def test_symlink_to_outside_file_is_never_followed(mb: Mailbox, tmp_path: Path) -> None:
    """A symlink in new/ is quarantined as a link: the file it names is neither read nor
    changed, and its content shows up nowhere."""
    bad, good = _bad_then_good(mb)
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    data = _valid(bad.name[:-5], body="TOP-SECRET-7f3a")
    secret.write_bytes(data)
    before = secret.stat()
    bad.symlink_to(secret)
    claimed, reasons = _claim_past_bad(mb)
    after = secret.stat()
    assert (good, ["symbolic link (never followed)"]) == (claimed, reasons)
    assert (data, before.st_mtime_ns, before.st_atime_ns) == (
        secret.read_bytes(), after.st_mtime_ns, after.st_atime_ns)
    assert [] == files_containing(mb.path, b"TOP-SECRET-7f3a")


def test_symlinked_dead_letter_content_is_not_followed(mb: Mailbox, tmp_path: Path) -> None:
    """Showing a quarantined symlink prints a marker, not the file it points to."""
    bad, _ = _bad_then_good(mb)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-7f3a")
    bad.symlink_to(secret)
    _claim_past_bad(mb)
    (dead,) = mb.dead.list()
    assert b"<symbolic link (never followed)>" == mb.dead.content(dead.id, MiB)


def test_fifo_is_quarantined_without_blocking_the_reader(mb: Mailbox, no_hang: None) -> None:
    """A FIFO named like a message does not block the reader: it goes to dead/."""
    bad, good = _bad_then_good(mb)
    os.mkfifo(bad)
    claimed, reasons = _claim_past_bad(mb)
    assert (good, ["a FIFO, not a regular file"]) == (claimed, reasons)


def test_directory_named_like_a_message_is_quarantined(mb: Mailbox) -> None:
    """A directory in new/ named <id>.json is quarantined; the reader claims the next one."""
    bad, good = _bad_then_good(mb)
    bad.mkdir()
    (bad / "inner.json").write_bytes(b"{}")
    claimed, reasons = _claim_past_bad(mb)
    assert (good, 1, True) == (claimed, len(reasons), "directory" in reasons[0])


def test_hard_link_to_outside_file_is_quarantined_and_outside_file_untouched(
        mb: Mailbox, tmp_path: Path) -> None:
    """A hard link planted in new/ is quarantined; the outside file keeps its content."""
    bad, good = _bad_then_good(mb)
    outside = tmp_path / "outside.json"
    data = _valid(bad.name[:-5], body="planted")
    outside.write_bytes(data)
    os.link(outside, bad)
    claimed, reasons = _claim_past_bad(mb)
    assert (good, ["hard link to a file elsewhere (not written through tmp/)"]) == (
        claimed, reasons)
    assert data == outside.read_bytes()


@pytest.mark.parametrize("name", ["notes.txt", ".hidden.json", "0123.json", "x" * 200])
def test_foreign_file_name_is_quarantined(mb: Mailbox, name: str) -> None:
    """A file in new/ not named <id>.json goes to dead/ under its own name."""
    good = mb.send("alice", "bob").id
    (mb.inbox("bob").new / name).write_bytes(b"hello")
    claimed, reasons = _claim_past_bad(mb)
    assert (good, 1, True, [name]) == (claimed, len(reasons), "foreign file name" in reasons[0],
                                       [d.name for d in mb.dead.list()])


def test_listing_skips_bad_files_and_moves_nothing(mb: Mailbox) -> None:
    """Listing new/ with bad files in it shows the good mail and quarantines nothing."""
    bad, good = _bad_then_good(mb)
    bad.write_bytes(b"")
    (bad.parent / "notes.txt").write_bytes(b"x")
    assert ([good], [], True) == ([m.id for m in mb.inbox("bob").list()], mb.dead.list(),
                                  bad.exists())


# -- sends that must be refused before anything is written ----------------------------------------

def _tree(top: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``top`` with its size and modification time (links not followed)."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            st = os.lstat(Path(folder) / name)
            out[str(Path(folder, name).relative_to(top))] = (st.st_size, st.st_mtime_ns)
    return out


def test_send_over_the_limit_raises_and_leaves_nothing(tmp_path: Path) -> None:
    """A message over max_message_bytes raises MessageTooLarge; tmp/ and new/ stay empty."""
    mb = Mailbox.init(tmp_path, fsync="never", max_message_bytes=4096)
    mb.add_agent("alice")
    mb.add_agent("bob")
    with pytest.raises(MessageTooLarge) as caught:
        mb.send("alice", "bob", body="x" * 5000)
    inbox = mb.inbox("bob")
    assert (4096, [], []) == (caught.value.limit, list(inbox.tmp.iterdir()),
                              list(inbox.new.iterdir()))


def test_send_to_unknown_recipient_raises_before_writing_anything(mb: Mailbox) -> None:
    """AgentNotFound comes before any file is created, changed or journalled."""
    before = _tree(mb.path)
    with pytest.raises(AgentNotFound):
        mb.send("alice", ["bob", "nobody"], subject="x")
    assert before == _tree(mb.path)


def _sentinel(tmp_path: Path) -> Path:
    """Something that looks like an agent outside the root, where ../../etc would lead."""
    etc = tmp_path / "etc"
    for sub in ("inbox/tmp", "inbox/new", "inbox/cur", "inbox/done"):
        (etc / sub).mkdir(parents=True)
    (etc / "agent.json").write_bytes(b'{"name": "etc"}')
    return etc


@pytest.mark.parametrize("target", ["../../etc", "..", "bob/../../../etc", "/etc", "./bob",
                                    "bob\x00", "Bob"])
def test_cli_send_to_an_invalid_name_is_refused_before_any_path_is_built(
        mb: Mailbox, cli, tmp_path: Path, target: str) -> None:
    """--to with a path-like or invalid name exits 5 and touches no file in or out of the root."""
    assert mb.path.parent == tmp_path
    etc = _sentinel(tmp_path)
    before = (_tree(etc), _tree(mb.path))
    result = cli("send", "--from", "alice", "--to", target, "--body", "hi")
    assert (5, True) == (result.code, "invalid agent name" in result.err)
    assert before == (_tree(etc), _tree(mb.path))


# -- agent names ----------------------------------------------------------------------------------

BAD_NAMES = {
    "slash": "a/b",
    "dot-dot": "..",
    "parent-path": "../x",
    "nul": "a\x00b",
    "leading-dot": ".hidden",
    "newline": "bob\n",
    "tab": "a\tb",
    "escape": "a\x1b[31m",
    "space": "a b",
    "too-long": "x" * 65,
    "empty": "",
    "leading-dash": "-x",
    "leading-underscore": "_x",
    "non-ascii": "bób",
    "upper-case": "Bob",
    "reserved-all": "all",
    "reserved-everyone": "everyone",
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_invalid_agent_name_is_refused_and_creates_nothing(mb: Mailbox, case: str) -> None:
    """An invalid agent name raises InvalidName and no folder appears under agents/."""
    before = _tree(mb.path)
    with pytest.raises(InvalidName):
        mb.add_agent(BAD_NAMES[case])
    assert before == _tree(mb.path)


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_invalid_recipient_name_is_refused(mb: Mailbox, case: str) -> None:
    """Sending to an invalid name raises InvalidName, not AgentNotFound."""
    with pytest.raises(InvalidName):
        mb.send("alice", BAD_NAMES[case])


def test_upper_case_name_hint_gives_the_lower_case_spelling(mb: Mailbox) -> None:
    """'Bob' is refused with a hint that says to use 'bob'."""
    with pytest.raises(InvalidName) as caught:
        mb.send("alice", "Bob")
    assert "use 'bob'" in caught.value.hint


def test_reserved_name_says_it_is_reserved(mb: Mailbox) -> None:
    """A reserved name is refused as reserved, not as malformed."""
    with pytest.raises(InvalidName, match="reserved"):
        mb.add_agent("all")


def test_longest_valid_name_is_accepted(mb: Mailbox) -> None:
    """A 64-character name is the longest accepted."""
    assert "x" * 64 == mb.add_agent("x" * 64).name


def test_dead_letter_without_reason_gets_one_back_from_doctor(mb: Mailbox) -> None:
    """A .msg whose reason file was lost is made visible to `mailbox dead` again."""
    (mb.dead.directory / f"{mb.root.clock.new_id()}.msg").write_bytes(b"x")
    assert mb.dead.list() == []
    found = doctor.check(mb, repair=True, stale_after=0)
    assert ["lost-reason"] == [f.kind for f in found]
    assert ["reason lost (quarantine interrupted)"] == [d.reason for d in mb.dead.list()]
