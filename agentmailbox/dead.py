"""Dead letters: quarantined or undeliverable mail, never deleted, each with its reason.

``dead/<dead-id>.msg`` is the file as it was met (renamed, never copied or followed:
a symlink stays a symlink, a FIFO stays a FIFO) and ``dead/<dead-id>.reason.json``
says why, where it came from and when. The reason is written first, so a crash in
between leaves a reason without a file (``doctor`` reports it), never mail without one.

A dead letter leaves ``dead/`` in one of two ways: :func:`retry_dead_letter` puts it
back where it came from, :func:`purge_dead_letters` deletes it for good (the only
deleting of mail agentmailbox does). Of two at once, exactly one wins the letter.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .errors import InvalidInput, MailboxError, MessageNotFound, from_oserror
from .fs import Foreign, faults, hidden_name, parse_object
from .layout import REASON_SUFFIX
from .message import Malformed, Message, decode, iso, stamp_of
from .names import as_text, check_agent, is_id, is_message_file, staging_id
from .root import Root

if TYPE_CHECKING:  # they hold dead letters themselves: imported for types only
    from .inbox import Inbox
    from .mailbox import Mailbox
    from .spool import Spool

__all__ = ["DeadLetter", "DeadLetters", "Retried", "purge_dead_letters", "retry_dead_letter"]

_REASON_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One quarantined entry: its id, why, where it came from, and which mail it was."""

    id: str
    reason: str
    origin: str
    name: str
    at: str
    extra: dict[str, Any]
    msg_id: str | None = None
    """The id of the message it was, as its reason file records it (None: not mail)."""
    subject: str | None = None
    """The subject its content gives, if that is a JSON object with a text subject."""
    sender: str | None = None
    """The ``from`` its content gives, likewise."""

    def to_dict(self) -> dict[str, Any]:
        core = {"id": self.id, "msg_id": self.msg_id, "subject": self.subject,
                "from": self.sender, "reason": self.reason, "origin": self.origin,
                "name": self.name, "at": self.at}
        return {**core, **{k: v for k, v in self.extra.items() if k not in core}}


class DeadLetters:
    """The ``dead/`` folder of one root."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._paths = root.paths
        self.directory = self._paths.dead

    def bury(self, path: Path | str, reason: str, *, recorded_name: str | None = None,
             **extra: Any) -> str | None:
        """Move ``path`` into ``dead/`` with ``reason``; None if it was already gone.

        ``recorded_name`` is the name to record when ``path`` is a temporary one (a hold).
        """
        path = Path(path)
        disk = self._root.disk
        dead_id = self._root.clock.new_id()
        origin = as_text(str(path.parent.relative_to(self._root.path)))
        name = as_text(recorded_name or path.name)  # a hostile name need not be UTF-8
        reason_path = self._write_reason(dead_id, reason, origin=origin, name=name, **extra)
        faults.hit("quarantine.reason_written")
        if not disk.rename(path, self.path_of(dead_id)):
            disk.unlink(reason_path)
            return None
        disk.fsync_dir(self.directory)
        self._root.journal.record("dead", id=dead_id, reason=reason, origin=origin, name=name)
        return dead_id

    def _write_reason(self, dead_id: str, reason: str, **fields: Any) -> Path:
        record = {"id": dead_id, "reason": reason, "at": iso(time.time_ns()), **fields}
        disk = self._root.disk
        reason_path = self._paths.dead_reason(dead_id)
        staged = disk.stage(self.directory, orjson.dumps(record, option=orjson.OPT_INDENT_2))
        disk.place(staged, str(reason_path))
        return reason_path

    def restore_reason(self, dead_id: str) -> None:
        """Give a dead letter whose reason file was lost a reason again (doctor)."""
        self._write_reason(dead_id, "reason lost (quarantine interrupted)", origin="?", name="?")

    def list(self, *, described: bool = True) -> list[DeadLetter]:
        """Every dead letter, oldest first.

        Args:
            described: Also read each letter's content for its sender and subject;
                False reads the reason files alone (what a search by message id or a
                purge needs).
        """
        ids = sorted(e.name.removesuffix(REASON_SUFFIX)
                     for e in self._root.disk.scan(self.directory)
                     if e.name.endswith(REASON_SUFFIX))
        return [d for d in (self._load(i, described=described) for i in ids) if d is not None]

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(self.list())

    def get(self, either_id: str) -> DeadLetter:
        """The letter with dead-letter id ``either_id``, else the latest dead letter of the
        message with that id.

        Raises:
            MessageNotFound: neither is in ``dead/``.
        """
        found = self._load(either_id) or next(reversed(self.of_message(either_id)), None)
        if found is None:
            raise MessageNotFound(either_id, "dead/")
        return found

    def of_message(self, msg_id: str) -> tuple[DeadLetter, ...]:
        """The dead letters of message ``msg_id``, oldest first (a routed message can leave
        one per recipient it could not reach)."""
        if not is_id(msg_id):
            return ()
        return tuple(self._described(d) for d in self.list(described=False)
                     if d.msg_id == msg_id)

    def content(self, either_id: str, limit: int) -> bytes:
        """The quarantined bytes, if it is a regular file with one name (never follows a
        link, never reads through a hard link to a file elsewhere); else what it is.

        ``either_id`` is a dead-letter id or a message id, as for :meth:`get`.
        """
        dead_id = either_id if self._load(either_id) else self.get(either_id).id
        try:
            data, _ = self._root.disk.read(self.path_of(dead_id), limit, one_name=True)
        except FileNotFoundError as exc:
            raise MessageNotFound(dead_id, "dead/") from exc
        except Foreign as exc:
            return f"<{exc.reason}>".encode()
        return data

    def path_of(self, dead_id: str) -> Path:
        return self._paths.dead_letter(dead_id)

    def remove(self, dead_id: str) -> bool:
        """Delete one dead letter for good (``purge``: the only deleting of mail).

        The letter is first taken (:meth:`take`): of two removers at once (two purges,
        a purge and a retry) exactly one wins. Returns whether this call removed it;
        False if someone else took it first.
        """
        held = self.take(dead_id)
        if held is None:
            return False
        self.finish(dead_id, held)  # a crash before this leaves a stale .tmp: doctor clears it
        return True

    def take(self, dead_id: str, *, retry: bool = False) -> Path | None:
        """Rename the letter to a name of this process's own, in one exclusive step.

        A purge takes it to a hidden ``.tmp`` name (doctor deletes one left behind); a
        retry to ``.<dead-id>.retry`` (doctor puts one left behind back). None if
        someone else took it first.
        """
        held = self.directory / (self.retry_name(dead_id) if retry else hidden_name())
        return held if self._root.disk.rename(self.path_of(dead_id), held) else None

    def put_back(self, dead_id: str, held: Path) -> bool:
        """Return a taken letter to its place; False if it was no longer held."""
        return self._root.disk.rename(held, self.path_of(dead_id))

    def finish(self, dead_id: str, held: Path) -> None:
        """Delete a taken letter and its reason for good."""
        self.discard(held)
        self._root.disk.unlink(self._paths.dead_reason(dead_id))

    def discard(self, path: Path) -> None:
        """Delete one entry of ``dead/``: a folder with all it holds, a link as a link.

        ``shutil.rmtree`` refuses a link at the top and never follows one below.
        """
        disk = self._root.disk
        st = disk.lstat(path)
        if st is None or not stat.S_ISDIR(st.st_mode):
            disk.unlink(path)
            return
        disk.guard(path)
        import shutil  # here: it pulls in bz2 and lzma, and only a purge removes folders

        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise from_oserror(exc, "remove", str(path)) from exc

    @staticmethod
    def retry_name(dead_id: str) -> str:
        return f".{dead_id}.retry"

    def _load(self, dead_id: str, *, described: bool = True) -> DeadLetter | None:
        if not is_id(dead_id):
            return None
        try:
            obj = self._root.disk.read_object(self._paths.dead_reason(dead_id),
                                              _REASON_LIMIT)
        except (FileNotFoundError, ValueError):
            return None
        core = {k: obj.pop(k, "") for k in ("id", "reason", "origin", "name", "at")}
        name = str(core["name"])
        recorded = obj.get("msg_id")  # kept in extra too, where readers found it first
        letter = DeadLetter(dead_id, str(core["reason"]), str(core["origin"]), name,
                            str(core["at"]), obj, msg_id=_message_id(recorded, name))
        return self._described(letter) if described else letter

    def _described(self, letter: DeadLetter) -> DeadLetter:
        """``letter`` with the sender and subject its content gives."""
        sender, subject = self._about(letter.id)
        return replace(letter, subject=subject, sender=sender)

    def _about(self, dead_id: str) -> tuple[str | None, str | None]:
        """(``from``, ``subject``) of a letter whose content is a JSON object, else Nones.

        Best effort, for display: the content may be anything a quarantine met.
        """
        try:
            data, _ = self._root.disk.read(self.path_of(dead_id),
                                           self._root.config.max_message_bytes, one_name=True)
            obj = parse_object(data)
        except (FileNotFoundError, Foreign, ValueError, MailboxError):
            return None, None
        sender, subject = obj.get("from"), obj.get("subject")
        return (sender if isinstance(sender, str) else None,
                subject if isinstance(subject, str) else None)


def _message_id(recorded: Any, name: str) -> str | None:
    """The message id a reason file records: its ``msg_id``, else the id its file name
    (``<id>.json``, or a staging name ``<id>.<pid>.<hex>``) carries."""
    if isinstance(recorded, str) and is_id(recorded):
        return recorded
    if is_message_file(name):
        return name.removesuffix(".json")
    return staging_id(name)


# -- leaving dead/ ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Retried:
    """A dead letter put back: its message id, where to, and whether it was stored."""

    dead_id: str
    msg_id: str
    to: str
    stored: bool

    def to_dict(self) -> dict[str, Any]:
        return {"dead_id": self.dead_id, "id": self.msg_id, "to": self.to, "stored": self.stored}


def retry_dead_letter(mb: Mailbox, dead_id: str) -> Retried:
    """Put a dead letter back where it came from, with the same id.

    Mail from an inbox goes back to that inbox's ``new/``; routed mail goes back to
    ``spool/new`` (the supervisor routes it again; recipients that hold it get
    nothing twice). The letter is taken first (so a purge racing this call cannot
    have it too), then delivered: removed once the mail is stored, put back if the
    destination already holds the id or delivery fails.

    Raises:
        MessageNotFound: no dead letter ``dead_id``.
        InvalidInput: its content is not a valid message (or has expired), or it did
            not come from an inbox or the spool.
        AgentNotFound: its inbox's agent is no longer registered.
    """
    letter = mb.dead.get(dead_id)
    dead_id = letter.id  # it may have been named by its message id
    target, where = _origin(mb, letter.origin)
    held = mb.dead.take(dead_id, retry=True)
    if held is None:
        raise MessageNotFound(dead_id, "dead/")  # purged or retried meanwhile
    stored = False
    try:
        msg, data = _dead_message(mb, dead_id, held)
        stored = target.deliver(msg.id, data)
    finally:
        if stored:
            mb.dead.finish(dead_id, held)
        else:
            mb.dead.put_back(dead_id, held)
    mb.root.journal.record("retry", dead_id=dead_id, id=msg.id, to=where, stored=stored)
    return Retried(dead_id, msg.id, where, stored)


def _dead_message(mb: Mailbox, dead_id: str, held: Path) -> tuple[Message, bytes]:
    try:
        data, _ = mb.root.disk.read(held, mb.config.max_message_bytes, one_name=True)
        msg = decode(data)
    except FileNotFoundError as exc:
        raise MessageNotFound(dead_id, "dead/") from exc
    except (Foreign, Malformed) as exc:
        raise InvalidInput(f"dead letter {dead_id} is not a valid message ({exc.reason}); "
                           "it cannot be retried",
                           hint=f"inspect it: mailbox dead show {dead_id}") from exc
    if msg.expired():
        raise InvalidInput(f"dead letter {dead_id} expired at {msg.expires_at}; retrying would "
                           "bury it again", hint="send it again with a later --expires")
    return msg, data


def _origin(mb: Mailbox, origin: str) -> tuple[Inbox | Spool, str]:
    parts = origin.split("/")
    if parts[0] == "spool":
        return mb.spool, "spool"
    if len(parts) == 4 and parts[0] == "agents" and parts[2] == "inbox":
        return mb.inbox(check_agent(parts[1])), f"agents/{parts[1]}/inbox"
    raise InvalidInput(f"this dead letter came from {origin!r}; only mail from an inbox or "
                       "the spool can be retried")


def purge_dead_letters(mb: Mailbox, older_than_days: float | None = None,
                       now_ns: int | None = None) -> list[str]:
    """Delete dead letters for good (all, or those buried more than N days ago).

    The only deleting of mail agentmailbox does; returns the dead ids removed.
    """
    cutoff = (now_ns or time.time_ns()) - int((older_than_days or 0) * 86400e9)
    removed = []
    for letter in mb.dead.list(described=False):
        if (older_than_days is None or stamp_of(letter.id) < cutoff) \
                and mb.dead.remove(letter.id):  # False: a retry or a purge beat us to it
            removed.append(letter.id)
    if removed:
        mb.root.journal.record("purge", count=len(removed))
    return removed
