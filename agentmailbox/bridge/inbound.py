"""Delivery of remote mail: one JetStream message into one local inbox, or into ``dead/``.

The subject says where a message goes and where it comes from
(``mail.<host>.msg.<agent>.<origin>``); each part is checked as a local name is
(:mod:`agentmailbox.names`) before any path is built from it. The message is decoded
with the reader's own schema, then written as this host reads it: ``from`` becomes
``alice@<origin>`` (so a reply goes back over the bridge), ``to`` is localized
(:func:`agentmailbox.addresses.localize`) and ``receipt`` is cleared (the bridges carry
receipts, :mod:`.receipts`). The rewrite is a pure function of the bytes received, so a
redelivery writes the same content under the same id, and the inbox's idempotent
delivery (PROTOCOL.md §9.5, ``deliver(fresh=False)``) stores it once: that, not
JetStream's duplicate window, is what forbids duplicates.

What cannot be delivered ever (malformed, oversized, hostile names, no such agent, not
addressed to it) is buried in ``dead/`` with its reason, and the caller terminates it
(``+TERM``): it is never redelivered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from .. import layout, names
from ..addresses import is_routed, localize
from ..dead import DeadLetters
from ..errors import InboxFull, InvalidInput, MailboxError
from ..fs import staging_name
from ..inbox import Inbox, State
from ..logs import get_logger
from ..message import Malformed, Message, decode, encode
from ..quotas import Quotas
from ..registry import Registry
from ..root import Root
from .outbox import Outbox
from .receipts import Tracker

__all__ = ["Inbound", "Outcome", "Route", "parse_subject"]

log = get_logger("agentmailbox.bridge")


class Outcome(enum.StrEnum):
    """What became of one remote message."""

    DELIVERED = "delivered"   # stored now
    HELD = "held"             # the inbox held this id already (a redelivery): nothing stored
    DEAD = "dead"             # buried in dead/ with its reason: terminate, never redeliver


@dataclass(frozen=True, slots=True)
class Route:
    """Where one subject says a message goes: (kind, local agent or None, origin host)."""

    kind: str
    agent: str | None
    origin: str


class Refused(Exception):
    """Raised inside this module when a remote message can never be delivered; says why."""


def parse_subject(subject: str, here: str) -> Route:
    """``mail.<here>.msg.<agent>.<origin>`` or ``mail.<here>.rcpt.<origin>``, checked.

    Raises:
        Refused: another shape, another host, or a name that fails its check.
    """
    parts = subject.split(".")
    try:
        if len(parts) == 5 and parts[:3] == ["mail", here, "msg"]:
            return Route("msg", names.check_agent(parts[3]), names.check_host(parts[4]))
        if len(parts) == 4 and parts[:3] == ["mail", here, "rcpt"]:
            return Route("rcpt", None, names.check_host(parts[3]))
    except InvalidInput as exc:
        raise Refused(f"subject {subject[:120]!r}: {exc}") from exc
    raise Refused(f"subject {subject[:120]!r} is not mail for host {here!r}")


class Inbound:
    """Delivers remote mail into the inboxes of one root (the host ``here``); makes the
    ``bridge/`` folders it writes into."""

    def __init__(self, root: Root, here: str) -> None:
        self._root = root
        self.here = names.check_host(here)
        Outbox(root).ensure()
        self._registry = Registry(root)
        self._dead = DeadLetters(root)
        self._quotas = Quotas(self._registry, root.config)
        self._inboxes: dict[str, Inbox] = {}
        self.tracker = Tracker(root)

    def inbox(self, agent: str) -> Inbox:
        if agent not in self._inboxes:
            self._inboxes[agent] = Inbox(self._root, agent, self._dead)
        return self._inboxes[agent]

    def has_agent(self, agent: str) -> bool:
        return self._registry.exists(agent)

    def deliver(self, route: Route, data: bytes) -> tuple[Outcome, str]:
        """Store one message for ``route.agent``; (outcome, id or the dead letter's reason).

        Raises:
            InboxFull: the agent's inbox holds its quota of unread mail (the bridge asks
                for the message again later: backpressure, not a dead letter).
        """
        try:
            agent, msg, encoded = self._local_copy(route, data)
        except Refused as exc:
            self.bury(data, str(exc), route)
            return Outcome.DEAD, str(exc)
        inbox = self.inbox(agent)
        fill = self._quotas.full(inbox)
        if fill is not None and inbox.state_of(msg.id) is State.ABSENT:
            raise InboxFull(fill.agent, fill.unread, fill.quota)
        stored = inbox.deliver(msg.id, encoded, fresh=False)
        if stored:
            self._quotas.delivered(agent)
        try:
            self.tracker.track(msg.id, agent, route.origin)
        except MailboxError as exc:  # the mail is delivered: only its receipts are lost
            log.warning("not tracked", id=msg.id, agent=agent, error=str(exc)[:200])
        return (Outcome.DELIVERED if stored else Outcome.HELD), msg.id

    def _local_copy(self, route: Route, data: bytes) -> tuple[str, Message, bytes]:
        """(local agent, the message as this host stores it, its encoding), or
        :class:`Refused`."""
        limit = self._root.config.max_message_bytes
        agent = route.agent
        if agent is None:
            raise Refused("a message subject names no agent")
        if len(data) > limit:
            raise Refused(f"message of {len(data)} bytes is over max_message_bytes ({limit})")
        try:
            msg = decode(data)
        except Malformed as exc:
            raise Refused(f"malformed message from {route.origin}: {exc}") from exc
        if not names.agent_shape(msg.sender):
            raise Refused(f"sender {msg.sender[:80]!r} of host {route.origin} names a host")
        if f"{agent}@{self.here}" not in msg.to and not any(map(is_routed, msg.to)):
            # A routed address (@coder) was expanded by the sending host's supervisor over
            # the agents this host put in the bucket: the subject names the agent it chose.
            raise Refused(f"message {msg.id} is not addressed to {agent}@{self.here}")
        if not self._registry.exists(agent):
            raise Refused(f"no agent named {agent!r} on host {self.here!r}")
        local = msg.evolve(sender=f"{msg.sender}@{route.origin}", receipt=False,
                           to=localize(msg.to, route.origin, self.here))
        try:
            return agent, local, encode(local, limit)
        except InvalidInput as exc:
            raise Refused(f"message {msg.id} cannot be stored here: {exc}") from exc

    def bury_path(self, path: Path, reason: str) -> str | None:
        """Quarantine a file of ``bridge/`` that is not what its folder holds."""
        return self._dead.bury(path, reason, by="bridge")

    def bury(self, data: bytes, reason: str, route: Route | None = None) -> str | None:
        """Put the bytes received into ``dead/`` with ``reason`` (staged in ``bridge/tmp``)."""
        dead_id = self._root.clock.new_id()
        staged = self._root.disk.stage(self._root.paths.bridge_tmp, data, staging_name(dead_id))
        extra = {} if route is None else {"host": route.origin, "agent": route.agent}
        return self._dead.bury(staged, reason, recorded_name=layout.message_file(dead_id),
                               by="bridge", **extra)
