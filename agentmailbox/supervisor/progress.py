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

import logging
import time

from ..fs import Foreign
from ..mailbox import Mailbox
from ..message import Malformed
from ..routing import Failure, Progress

__all__ = ["Ledger"]

log = logging.getLogger("agentmailbox.supervisor")


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
        for msg_id in self._spool.progress_ids():
            if any(self._mb.root.disk.exists(f / f"{msg_id}.json") for f in waiting):
                self._with_progress.add(msg_id)
            else:
                self._spool.drop_progress(msg_id)

    def load(self, msg_id: str) -> Progress:
        """The routing progress of a message; a bad progress file is buried (start afresh)."""
        if msg_id not in self._with_progress:
            return Progress(msg_id)
        try:
            return self._spool.progress(msg_id)
        except (Foreign, Malformed) as exc:
            self._mb.dead.bury(self._spool.progress_path(msg_id), exc.reason, by="supervisor")
            self._with_progress.discard(msg_id)
            return Progress(msg_id)

    def save(self, progress: Progress) -> None:
        self._spool.save_progress(progress)
        if progress.empty():
            self._with_progress.discard(progress.msg_id)
        else:
            self._with_progress.add(progress.msg_id)

    def drop(self, msg_id: str) -> None:
        if msg_id in self._with_progress:
            self._spool.drop_progress(msg_id)
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
