"""The supervisor: routes the spool, enforces quotas and rates, expires mail, requeues leases.

Optional (principle 6): without it direct mail still flows; routed mail waits in
``spool/new`` until a supervisor runs. One per root, held by an flock on
``run/supervisor.lock`` (never deleted; ``run/supervisor.json`` names the holder).

Transitions, each one atomic step (see :mod:`agentmailbox.spool` for the folders)::

    claim   spool/new/X  --link+unlink-->  spool/cur/X
    route   deliver X to every recipient (Inbox.deliver: idempotent by id), journal
            "route" {id, from, recipients, expansion, dead, undeliverable}, then
            unlink spool/cur/X, then spool/progress/X
    defer   spool/cur/X  --rename-->  spool/deferred/X   a recipient is at its quota or
                                                           failed, or no live agent can
                                                           be picked
    hold    spool/cur/X  --rename-->  spool/held/X       the sender is over its rate
    bury    spool/*/X    --rename-->  dead/               expired, malformed, undeliverable

Routing state is per recipient. A recipient whose inbox cannot be written (the
delivery raises a MailboxError other than DiskFull) does not stop the others: its
failed attempts are counted in ``spool/progress/X`` (replaced atomically) and the
message is deferred and retried with backoff; after :attr:`Supervisor.give_up` the
recipient is *undeliverable*: the sender gets a notice naming it, and a copy is
buried for it when the message finishes. An error that is no recipient's (a bug,
an unreadable spool file) is counted the same way for the message as a whole.

A file left in ``spool/cur`` by a killed supervisor is routed again at start-up:
recipients that hold the id get nothing twice, a ``pick: one`` message already held
by any candidate is not picked again, recipients given up stay given up (the
progress file says so), and notices have ids derived from (message, kind,
address, agent), so a sender is told once. The one repeatable effect of a crash
at the very end of routing is a second dead-letter copy for an unroutable address
or an undeliverable recipient.

The pieces, each in its module:

- :mod:`.loop`: :class:`Supervisor`, start/stop, the passes and the waits between;
- :mod:`.lock`: one supervisor per root, and :func:`running_supervisor`;
- :mod:`.router`: one spooled message from the spool to its recipients' inboxes;
- :mod:`.settle`: finishing it, or deferring it for a retry;
- :mod:`.progress`: the failed deliveries of each message and the give-up bound;
- :mod:`.picker`: which agent gets a ``pick: one`` message;
- :mod:`.gate`: the per-sender rate limit and the mail it holds;
- :mod:`.notices`: what senders are told (see there for the notice format);
- :mod:`.sweep`: expired leases and expired mail in the inboxes.

Dead-letter retry and purge live with the dead letters (:mod:`agentmailbox.dead`);
they are importable from here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..dead import Retried, purge_dead_letters, retry_dead_letter
from .lock import running_supervisor

if TYPE_CHECKING:
    from .loop import Supervisor
    from .outcome import Pass

__all__ = ["Pass", "Retried", "Supervisor", "purge_dead_letters", "retry_dead_letter",
           "running_supervisor"]


def __getattr__(name: str) -> Any:
    """``Supervisor`` and ``Pass`` are imported on first use (PEP 562): the loop pulls in
    the file watcher, which a sender asking :func:`running_supervisor` does not need."""
    if name == "Supervisor":
        from .loop import Supervisor
        return Supervisor
    if name == "Pass":
        from .outcome import Pass
        return Pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
