"""Notices: what the supervisor tells senders about their routed mail.

A notice goes to the sender's inbox as a message of kind ``notice`` from
``supervisor``, body ``{"of", "notice", "reason", "address"}`` where ``notice`` is
``undeliverable``, ``deferred`` (a recipient's inbox is full; retried with
backoff), ``waiting`` (pick one found no live agent with room), ``held`` (the
sender's rate tripped the circuit breaker) or ``resumed`` (its held mail is
flowing again). An ``undeliverable`` notice about one recipient also has
``"agent"``. Notices bypass quotas, and their ids are derived from what they are
about, so a sender is told once even across a crash.
"""

from __future__ import annotations

import hashlib
import logging
import time

from ..errors import DiskFull, MailboxError
from ..mailbox import Mailbox, writable_thread
from ..message import Message, encode, iso, stamp_of

__all__ = ["NOTICE_SENDER", "Notices", "notice_id"]

NOTICE_SENDER = "supervisor"
_TOLD_MEMORY = 100_000

# A notice's stamp is its message's plus this: it sorts right after the mail it is
# about, and "resumed" after "held".
_NOTICE_ORDER = {"deferred": 1, "waiting": 1, "held": 1, "undeliverable": 2, "resumed": 3}

log = logging.getLogger("agentmailbox.supervisor")


def notice_id(of: str, what: str, address: str, agent: str = "") -> str:
    """A notice's id, derived from what it is about: redelivering it stores nothing."""
    about = f"{of}|{what}|{address}" + (f"|{agent}" if agent else "")
    digest = hashlib.blake2b(about.encode(), digest_size=8).hexdigest()
    return f"{stamp_of(of) + _NOTICE_ORDER.get(what, 1):020d}-{digest}"


class Notices:
    """Tells senders what became of their routed mail (at most once per kind and address).

    Best effort, like the journal: a sender whose inbox cannot be written is not told,
    and the routing of its mail goes on.
    """

    def __init__(self, mb: Mailbox) -> None:
        self._mb = mb
        self._told: set[str] = set()

    def tell(self, msg: Message, what: str, address: str, reason: str, agent: str = "") -> None:
        """Tell the sender of ``msg``; ``agent`` names the one recipient it is about, if any."""
        nid = notice_id(msg.id, what, address, agent)
        if nid in self._told or not self._mb.registry.exists(msg.sender):
            return
        body = {"of": msg.id, "notice": what, "reason": reason, "address": address}
        if agent:
            body["agent"] = agent
        notice = Message(id=nid, sender=NOTICE_SENDER, to=(msg.sender,),
                         subject=f"{what}: {msg.subject}"[:200], kind="notice",
                         thread=writable_thread(msg), reply_to=msg.id, ts=iso(time.time_ns()),
                         body=body)
        data = encode(notice, self._mb.config.max_message_bytes)
        try:
            self._mb.inbox(msg.sender).deliver(nid, data)
        except DiskFull:
            raise
        except MailboxError:  # the sender's own inbox is broken: routing goes on without it
            log.warning("could not tell the sender", exc_info=True,
                        extra={"id": msg.id, "sender": msg.sender, "notice": what})
            return
        if len(self._told) >= _TOLD_MEMORY:
            self._told.clear()  # only a shortcut: the inbox refuses a second copy anyway
        self._told.add(nid)
