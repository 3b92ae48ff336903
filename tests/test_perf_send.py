"""The send path: what it looks at and draws per message, and what it must never share."""

from __future__ import annotations

import errno
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import agentmailbox.fs as fs
from agentmailbox import Mailbox
from agentmailbox.fs import Disk, faults
from agentmailbox.journal import Journal
from agentmailbox.message import Clock, Message, Priority, composed, encode, encode_composed

SYSCALLS = ("open", "write", "close", "fsync", "fstat", "lstat", "link", "unlink", "rename",
            "replace", "fchmod")


def test_sends_in_a_row_look_at_each_registration_once_a_second(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer sending many messages checks that both agents are registered, then
    trusts what it saw for a second, as it trusts the folders on the way."""
    mb.send("alice", "bob")
    looked: list[str] = []
    lstat = Disk.lstat

    def counting(disk: Disk, path: str | os.PathLike[str]) -> os.stat_result | None:
        if os.fspath(path).startswith(str(mb.registry.directory)):
            looked.append(os.fspath(path))
        return lstat(disk, path)

    monkeypatch.setattr(Disk, "lstat", counting)
    for _ in range(10):
        mb.send("alice", "bob")
    assert [] == looked


def test_an_agent_never_registered_is_refused_after_sends_to_others(mb: Mailbox,
                                                                     tmp_path: Path) -> None:
    """Trusting a registration seen never makes an unknown name a recipient."""
    from agentmailbox import AgentNotFound

    mb.send("alice", "bob")
    with pytest.raises(AgentNotFound):
        mb.send("alice", "carol")


def test_a_forked_child_never_draws_its_parents_random_bits() -> None:
    """Ids made in a forked child differ from its parent's, even though random bits are
    read ahead in blocks."""
    clock = Clock()
    clock.new_id()  # the parent has bits read ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, clock.new_id().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    theirs = os.read(read, 100).decode()
    os.close(read)
    assert 0 == status
    assert theirs.split("-")[1] != clock.new_id().split("-")[1]


def _count_syscalls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count this process's file system calls from now on (renameat2 as ``renameat2``)."""
    calls: Counter[str] = Counter()

    def counted(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return call(*args, **kwargs)
        return wrapper

    for name in SYSCALLS:
        monkeypatch.setattr(os, name, counted(name, getattr(os, name)))
    monkeypatch.setattr(fs, "_rename_noreplace",
                        counted("renameat2", fs._rename_noreplace))
    return calls


def test_a_send_at_fsync_never_is_four_system_calls_beside_its_journal_line(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A send of one message to one agent creates, writes and closes its file in tmp/ and
    moves it into new/ with one rename: no link, no unlink, no look at any folder."""
    mb.send("alice", "bob")  # the registrations and folders are looked at once
    monkeypatch.setattr(Journal, "record_fields", lambda self, *a: None)  # counted elsewhere
    calls = _count_syscalls(monkeypatch)
    mb.send("alice", "bob", subject="counted", body={"n": 1})
    assert {"open": 1, "write": 1, "close": 1, "renameat2": 1} == dict(calls)


def test_a_delivered_message_never_shares_its_inode_with_a_staging_name(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The moment a message is in new/ it has one name: tmp/ is already empty, so no reader
    or doctor ever meets a second link it must explain."""
    inbox = mb.inbox("bob")
    seen: list[tuple[list[int], list[str]]] = []
    hit = faults.hit

    def look(point: str) -> None:
        if point == "send.published":
            seen.append(([p.stat().st_nlink for p in inbox.new.iterdir()],
                         sorted(os.listdir(inbox.tmp))))
        hit(point)

    monkeypatch.setattr(faults, "hit", look)
    mb.send("alice", "bob")
    assert [([1], [])] == seen


def test_a_filesystem_without_rename_noreplace_is_published_by_link_then_unlink(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where renameat2 refuses RENAME_NOREPLACE, a send links and unlinks (exclusive too):
    the message is delivered once, a second delivery of its id stores nothing, and tmp/ is
    left empty."""
    monkeypatch.setattr(fs, "_rename_noreplace", lambda src, dest: errno.EINVAL)
    inbox = mb.inbox("bob")
    msg = mb.send("alice", "bob", subject="by link")
    data = (inbox.new / f"{msg.id}.json").read_bytes()
    again = inbox.deliver(msg.id, data)
    assert (False, [msg.id], []) == (again, inbox.ids(), os.listdir(inbox.tmp))


def test_a_second_delivery_of_an_id_in_new_stores_nothing_and_leaves_no_staging_file(
        mb: Mailbox) -> None:
    """The rename never replaces: a retried delivery of an unread id keeps the first copy
    and removes its own staged file."""
    inbox = mb.inbox("bob")
    msg = mb.send("alice", "bob", subject="first")
    first = (inbox.new / f"{msg.id}.json").stat().st_ino
    again = inbox.deliver(msg.id, (inbox.new / f"{msg.id}.json").read_bytes())
    assert (False, first, []) == (again, (inbox.new / f"{msg.id}.json").stat().st_ino,
                                  os.listdir(inbox.tmp))


def test_a_process_without_ctypes_links_its_first_publish_and_renames_the_next(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-shot send never loads ctypes (its import costs more than the send); a producer
    that goes on sending renames from its second publish on."""
    mb.send("alice", "bob")
    monkeypatch.setattr(Journal, "record_fields", lambda self, *a: None)  # counted elsewhere
    monkeypatch.setattr(fs._Publishes, "rename", False)
    monkeypatch.setattr(fs._Publishes, "linked", False)
    monkeypatch.delitem(sys.modules, "ctypes")  # as in a process that never claimed
    calls = _count_syscalls(monkeypatch)
    mb.send("alice", "bob", subject="first")
    first = dict(calls)
    calls.clear()
    mb.send("alice", "bob", subject="second")
    assert ({"open": 1, "write": 1, "close": 1, "link": 1, "unlink": 1},
            {"open": 1, "write": 1, "close": 1, "renameat2": 1}) == (first, dict(calls))


ODD_FIELDS: list[dict[str, Any]] = [
    {}, {"subject": 3}, {"subject": None}, {"kind": b"x"}, {"thread": 7}, {"reply_to": []},
    {"ts": 1}, {"headers": None}, {"headers": {"a": 1}}, {"headers": [("a", "b")]},
    {"priority": "soon"}, {"priority": "high"}, {"priority": 2}, {"receipt": 1},
    {"receipt": None}, {"epoch": True}, {"epoch": 2.0}, {"epoch": 3},
    {"expires_at": "2030-01-01T00:00:00Z"}, {"expires_at": "tomorrow"}, {"body": {1: 2}},
    {"subject": "\ud800"}, {"body": "x" * 5000},
]


@pytest.mark.parametrize("fields", ODD_FIELDS, ids=repr)
def test_the_send_paths_check_refuses_and_accepts_what_the_full_check_does(
        fields: dict[str, Any]) -> None:
    """What send skips checking is only what it made itself: any field a caller gives is
    accepted, or refused with the same error, as by the reader's whole schema."""
    msg = Message(id=Clock().new_id(), sender="alice", to=("bob", "@coder"), **fields)

    def outcome(write: Callable[[Message, int], bytes]) -> object:
        try:
            return write(msg, 4096)
        except Exception as exc:  # the error itself is compared
            return type(exc), str(exc)

    assert outcome(encode) == outcome(encode_composed)


@pytest.mark.parametrize("fields", ODD_FIELDS, ids=repr)
def test_a_composed_message_is_the_message_and_bytes_the_general_path_makes(
        fields: dict[str, Any]) -> None:
    """message.composed, which lays out a new message once and sets its slots, gives the
    Message that Message(...) gives and the bytes that encode() writes, or the same
    error."""
    given: dict[str, Any] = {
        "subject": "", "body": None, "kind": "message", "thread": "", "reply_to": None,
        "priority": Priority.NORMAL, "expires_at": None, "receipt": False, "headers": {},
        "ts": "", "epoch": None, **fields}
    msg_id = Clock().new_id()

    def general() -> object:
        try:
            msg = Message(id=msg_id, sender="alice", to=("bob", "@coder"), **given)
            return msg, encode(msg, 4096)
        except Exception as exc:  # the error itself is compared
            return type(exc), str(exc)

    def fast() -> object:
        try:
            return composed(msg_id, "alice", ("bob", "@coder"), limit=4096, **given)
        except Exception as exc:
            return type(exc), str(exc)

    ours, theirs = fast(), general()
    assert theirs == ours
    if isinstance(ours, tuple) and isinstance(ours[0], Message):
        assert type(ours[0].priority) is Priority


def test_a_name_found_valid_once_never_lets_an_invalid_one_through() -> None:
    """The agent names check_agent remembers are only ones it accepted: a look-alike (a
    str subclass, another case, a reserved name) is still checked, and the memory is
    bounded."""
    from agentmailbox import names
    from agentmailbox.errors import InvalidName

    class Sly(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    names.check_agent("bob")
    for bad in ("Bob", "all", Sly("bob!"), "bob\n", ""):
        with pytest.raises(InvalidName):
            names.check_agent(bad)
    for n in range(names._KNOWN_LIMIT + 10):
        names.check_agent(f"agent-{n}")
    assert len(names._KNOWN_AGENTS) <= names._KNOWN_LIMIT


def test_a_batch_publishes_each_staged_file_with_one_rename(
        mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mailbox.batch() moves each staged file into new/ when it commits: no link, no
    unlink, and tmp/ is left empty."""
    mb.send("alice", "bob")
    calls = _count_syscalls(monkeypatch)
    with mb.batch():
        sent = [mb.send("alice", "bob", subject=str(n)).id for n in range(3)]
    inbox = mb.inbox("bob")
    assert ((3, 0, 0), [], True) == (
        (calls["renameat2"], calls["link"], calls["unlink"]), os.listdir(inbox.tmp),
        set(sent) <= set(inbox.ids()))
