"""The supervisor's ledger of failed deliveries: ``spool/progress/<id>.json``.

A recipient whose inbox cannot be written (a delivery that raises a MailboxError
other than DiskFull) does not stop the others: its failed attempts are counted in
the message's progress file (replaced atomically), and after the give-up bound
(attempts *and* seconds since the first) it is *undeliverable*. An error that is no
recipient's (a bug, an unreadable spool file) is counted the same way for the
message as a whole. Recipients given up stay given up across a restart: the file
says so.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .. import layout, names
from ..errors import InvalidInput
from ..fs import Foreign, parse_object, staging_name
from ..mailbox import Mailbox
from ..message import Malformed

__all__ = ["PROGRESS_FORMAT", "Attempts", "Failure", "Ledger", "Progress"]

log = logging.getLogger("agentmailbox.supervisor")

PROGRESS_FORMAT = 1
"""The ``v`` of ``spool/progress/<id>.json``; a reader refuses any other value."""
_PROGRESS_LIMIT = 1 << 22


class Attempts(enum.StrEnum):
    """Where the failed deliveries to one recipient stand."""

    RETRYING = "retrying"            # retried with the message, with backoff
    UNDELIVERABLE = "undeliverable"  # given up after the bound: the sender is told


@dataclass(slots=True)
class Failure:
    """Failed attempts to deliver a routed message to one recipient (or to route it at all)."""

    attempts: int
    first_at: int  # nanoseconds since 1970 (wall clock): when the first attempt failed
    last_at: int
    reason: str    # what the last attempt met
    state: Attempts = Attempts.RETRYING

    @property
    def given_up(self) -> bool:
        return self.state is Attempts.UNDELIVERABLE

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "first_at": self.first_at, "last_at": self.last_at,
                "reason": self.reason, "state": str(self.state)}

    @classmethod
    def from_dict(cls, obj: Any) -> Failure:
        if not isinstance(obj, dict):
            raise Malformed("routing progress: an entry is not an object")
        counts = [n for n in (obj.get(k) for k in ("attempts", "first_at", "last_at"))
                  if type(n) is int and n >= 0]
        if len(counts) != 3:
            raise Malformed("routing progress: attempts, first_at and last_at must be "
                            "non-negative integers")
        if not isinstance(obj.get("reason"), str) or obj.get("state") not in set(Attempts):
            raise Malformed("routing progress: reason must be text and state "
                            "'retrying' or 'undeliverable'")
        attempts, first, last = counts
        return cls(attempts, first, last, obj["reason"], Attempts(obj["state"]))


@dataclass
class Progress:
    """What the inboxes cannot tell about one routed message: whose delivery failed.

    Recipients that hold the message are not listed (their inbox says so); only
    recipients with failed attempts are, and ``route`` counts failures of routing the
    message as a whole (an error that is no recipient's). Kept in
    ``spool/progress/<id>.json`` while the message is in the spool.
    """

    msg_id: str
    recipients: dict[str, Failure] = field(default_factory=dict)
    route: Failure | None = None
    changed: bool = False

    def fail(self, agent: str | None, reason: str, now_ns: int) -> Failure:
        """Count one more failed attempt for ``agent`` (None: routing the message at all)."""
        failure = self.route if agent is None else self.recipients.get(agent)
        if failure is None:
            failure = Failure(0, now_ns, now_ns, reason)
            if agent is None:
                self.route = failure
            else:
                self.recipients[agent] = failure
        failure.attempts += 1
        failure.last_at, failure.reason = now_ns, reason
        self.changed = True
        return failure

    def give_up(self, failure: Failure) -> None:
        failure.state = Attempts.UNDELIVERABLE
        self.changed = True

    def delivered(self, agent: str) -> None:
        """``agent`` holds the message now: its failures no longer matter."""
        if self.recipients.pop(agent, None) is not None:
            self.changed = True

    def given_up(self, agent: str) -> Failure | None:
        failure = self.recipients.get(agent)
        return failure if failure is not None and failure.given_up else None

    def empty(self) -> bool:
        return not self.recipients and self.route is None

    def encode(self) -> bytes:
        return orjson.dumps({
            "v": PROGRESS_FORMAT, "id": self.msg_id,
            "route": None if self.route is None else self.route.to_dict(),
            "recipients": {a: f.to_dict() for a, f in self.recipients.items()}},
            option=orjson.OPT_APPEND_NEWLINE)

    @classmethod
    def decode(cls, data: bytes, msg_id: str) -> Progress:
        """Parse a progress file; raises :class:`Malformed` for anything but format 1."""
        try:
            obj = parse_object(data)
        except ValueError as exc:
            raise Malformed(f"routing progress: not one JSON object ({exc})") from exc
        if type(obj.get("v")) is not int:
            raise Malformed("routing progress: not an object with a format version 'v'")
        if obj["v"] != PROGRESS_FORMAT or obj.get("id") != msg_id:
            raise Malformed(f"routing progress: format {obj['v']} of id {str(obj.get('id'))[:40]!r}"
                            f"; expected format {PROGRESS_FORMAT} of {msg_id}")
        recipients = obj.get("recipients")
        if not isinstance(recipients, dict) or not all(
                _is_agent(a) for a in recipients):
            raise Malformed("routing progress: recipients must map agent names to entries")
        route = obj.get("route")
        return cls(msg_id, {a: Failure.from_dict(f) for a, f in recipients.items()},
                   None if route is None else Failure.from_dict(route))


def _is_agent(name: object) -> bool:
    try:
        names.check_agent(name)  # type: ignore[arg-type]
    except InvalidInput:
        return False
    return True


class Ledger:
    """Reads, counts and writes routing progress for the one supervisor of a root.

    Ids with a progress file are listed at start-up (:meth:`start`), then kept by this
    process, the only writer (it holds the lock), so a message without failures
    costs no I/O.

    Args:
        mb: The supervisor's own handle on the root.
        give_up: Failed attempts, and seconds since the first of them, after which a
            recipient (or the message as a whole) is given up; both must be reached.
    """

    def __init__(self, mb: Mailbox, give_up: tuple[int, float]) -> None:
        self._mb = mb
        self._spool = mb.spool
        self.give_up = give_up
        self._with_progress: set[str] = set()

    def start(self) -> None:
        """Note the progress files of messages still in ``spool/cur`` or ``spool/deferred``,
        and remove the others (a supervisor died between removing a message and removing
        its progress)."""
        waiting = (self._spool.cur, self._spool.deferred)
        for msg_id in self._ids():
            if any(self._mb.root.disk.exists(f / layout.message_file(msg_id)) for f in waiting):
                self._with_progress.add(msg_id)
            else:
                self._remove(msg_id)

    def load(self, msg_id: str) -> Progress:
        """The routing progress of a message; a bad progress file is buried (start afresh)."""
        if msg_id not in self._with_progress:
            return Progress(msg_id)
        try:
            return self._read(msg_id)
        except (Foreign, Malformed) as exc:
            self._mb.dead.bury(self._path(msg_id), exc.reason, by="supervisor")
            self._with_progress.discard(msg_id)
            return Progress(msg_id)

    def save(self, progress: Progress) -> None:
        self._write(progress)
        if progress.empty():
            self._with_progress.discard(progress.msg_id)
        else:
            self._with_progress.add(progress.msg_id)

    def drop(self, msg_id: str) -> None:
        if msg_id in self._with_progress:
            self._remove(msg_id)
            self._with_progress.discard(msg_id)

    def failed(self, progress: Progress, agent: str | None, reason: str) -> Failure:
        """Count one failed attempt (for ``agent``, or the whole message); give up at the bound."""
        now = time.time_ns()
        failure = progress.fail(agent, reason, now)
        attempts, seconds = self.give_up
        if failure.attempts >= attempts and now - failure.first_at >= seconds * 1e9:
            progress.give_up(failure)
        log.warning("delivery failed" if agent else "routing failed", extra={
            "id": progress.msg_id, "agent": agent, "attempts": failure.attempts,
            "error": reason, "given_up": failure.given_up})
        return failure

    # -- the files --------------------------------------------------------------------------------

    def _path(self, msg_id: str) -> Path:
        return self._spool.progress_dir / layout.message_file(names.check_id(msg_id))

    def _read(self, msg_id: str) -> Progress:
        """The routing progress of ``msg_id`` (empty if it has none).

        Raises:
            Malformed: the file is not a progress file of format 1 for this id.
            Foreign: a link, folder or device, or a file over the size limit.
        """
        try:
            data, _ = self._mb.root.disk.read(self._path(msg_id), _PROGRESS_LIMIT)
        except FileNotFoundError:
            return Progress(msg_id)
        return Progress.decode(data, msg_id)

    def _write(self, progress: Progress) -> None:
        """Replace the progress file atomically (stage in ``spool/tmp``, rename); none if empty."""
        if progress.empty():
            self._remove(progress.msg_id)
            return
        disk = self._mb.root.disk
        path = self._path(progress.msg_id)
        staged = disk.stage(self._spool.tmp, progress.encode(), staging_name(progress.msg_id))
        try:
            disk.overwrite(staged, path)
        except BaseException:
            disk.unlink(staged)
            raise
        disk.fsync_dir(self._spool.progress_dir)
        progress.changed = False

    def _remove(self, msg_id: str) -> None:
        self._mb.root.disk.unlink(self._path(msg_id))

    def _ids(self) -> list[str]:
        """Ids that have a progress file."""
        return [name[:-5] for name in self._spool.names(self._spool.progress_dir)]
