"""What a sender is told once its mail is stored: recipients offline, routed mail waiting.

The mail is delivered either way; these say why nobody may read it soon. The command line
prints them on stderr (and lists the offline agents in ``--json``), the MCP tools return
them as ``notices``: one wording for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import is_routed
from .mailbox import Mailbox
from .message import Message, iso
from .presence import Heartbeat, Presence

__all__ = ["SendNotices", "after_send"]


@dataclass(frozen=True, slots=True)
class SendNotices:
    """The agents ``to`` named whose heartbeat went stale, and whether routed mail waits
    for a supervisor that is not running."""

    offline: list[Heartbeat]
    no_supervisor: bool

    def lines(self) -> list[str]:
        """One sentence per notice."""
        lines = [f"queued: {beat.agent} offline since {iso(beat.at)} (its last heartbeat); "
                 "the mail waits in its inbox" for beat in self.offline]
        if self.no_supervisor:
            lines.append("no supervisor is running: routed mail waits in the spool until one "
                         "does (mailbox supervise)")
        return lines


def after_send(mb: Mailbox, msg: Message) -> SendNotices:
    """What the sender of ``msg`` should know (looked at after it was stored)."""
    direct = [a for a in msg.to if not is_routed(a)]
    return SendNotices(Presence(mb.root).offline(direct),
                       len(direct) < len(msg.to) and _no_supervisor(mb))


def _no_supervisor(mb: Mailbox) -> bool:
    from .supervisor import running_supervisor  # only routed mail asks

    return running_supervisor(mb) is None
