"""The inbound side: fetch this host's subjects, deliver each message idempotently into the
local inbox and only then acknowledge it; apply the receipts other hosts send; and send
back the receipts of the remote mail delivered here.

What can never be delivered is terminated once it is in ``dead/``; what may succeed later
(a full disk, an inbox at its quota) is negatively acknowledged and comes back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from .. import names
from ..errors import InboxFull, MailboxError
from ..inbox import State
from ..logs import get_logger
from ..message import encode
from ..root import Root
from . import connect
from .config import STREAM, BridgeConfig
from .crash import CrashPoints
from .inbound import Inbound, Outcome, Refused, Route, parse_subject
from .receipts import STATES, Receipts, rank, receipt_message

__all__ = ["QUOTA_WAIT_SECONDS", "Consumer"]

log = get_logger("agentmailbox.bridge")

QUOTA_WAIT_SECONDS = 5.0
"""How long mail for a full inbox waits in the stream before it is offered again."""
_WORDS = {State.NEW: "delivered", State.CLAIMED: "read", State.DONE: "done"}

PullSubscription = JetStreamContext.PullSubscription


class Consumer:
    """Mail and receipts addressed to this host."""

    def __init__(self, root: Root, config: BridgeConfig, inbound: Inbound,
                 counts: dict[str, int], crash: CrashPoints,
                 counters: connect.Counters) -> None:
        self.root = root
        self.config = config
        self.inbound = inbound
        self.receipts = Receipts(root)
        self._counts = counts
        self._crash = crash
        self._counters = counters

    # -- fetch and deliver ------------------------------------------------------------------

    async def run(self, client: Client, js: JetStreamContext, stop: asyncio.Event) -> None:
        sub: PullSubscription | None = None
        seen_reconnects = -1
        size = 1
        while not stop.is_set():
            if sub is None or seen_reconnects != self._counters.reconnects:
                seen_reconnects = self._counters.reconnects
                sub = await self._subscribe(js, sub, stop)
                continue
            # nats-py's fetch(n) returns what is there at once, but when it has to wait it
            # waits for all n (or the timeout): so wait for one, then take the backlog.
            try:
                batch = await sub.fetch(size, timeout=1.0)
            except nats.errors.TimeoutError:
                size = 1
                continue
            except connect.ERRORS as exc:
                log.warning("fetch failed", error=str(exc)[:200])
                sub = await self._subscribe(js, sub, stop)
                continue
            for msg in batch:
                await self._handle(msg)
            await self._flush(client)
            size = self.config.batch

    async def _subscribe(self, js: JetStreamContext, old: PullSubscription | None,
                         stop: asyncio.Event) -> PullSubscription | None:
        """(Re)make the stream, the consumer and the subscription; None while that fails."""
        if old is not None:
            try:
                await old.unsubscribe()
            except connect.ERRORS:
                pass
        try:
            await connect.ensure(js, self.config)
            return await connect.subscribe(js, self.config)
        except (*connect.ERRORS, nats.js.errors.Error) as exc:
            log.warning("cannot subscribe", error=str(exc)[:200])
            await connect.sleep(stop, 1.0)
            return None

    async def _flush(self, client: Client) -> None:
        try:
            await client.flush(timeout=5)
        except connect.ERRORS as exc:
            log.warning("flush failed", error=str(exc)[:200])

    async def _handle(self, msg: Msg) -> None:
        """Deliver one fetched message, then ack it (or term it once it is in dead/)."""
        try:
            route = parse_subject(msg.subject, self.config.host)
        except Refused as exc:
            self._bury(msg, str(exc), None)
            await self._settle(msg, term=True)
            return
        if route.kind == "rcpt":
            await self._settle(msg, term=not self._apply_receipt(route, msg.data))
            return
        try:
            outcome, detail = self.inbound.deliver(route, msg.data)
        except InboxFull as exc:  # backpressure: the stream keeps it until there is room
            log.info("inbox full", agent=route.agent, origin=route.origin, error=str(exc)[:200])
            self._counts["deferred"] += 1
            await self._nak(msg, QUOTA_WAIT_SECONDS)
            return
        except MailboxError as exc:  # the disk failed us (full, unwritable): try again later
            await self._failed(msg, route, exc)
            return
        self._crash.hit("bridge.delivered")
        self._counts[str(outcome)] += 1
        log.info(str(outcome), id=detail if outcome is not Outcome.DEAD else None,
                 agent=route.agent, origin=route.origin,
                 reason=detail if outcome is Outcome.DEAD else None)
        await self._settle(msg, term=outcome is Outcome.DEAD)

    async def _failed(self, msg: Msg, route: Route, exc: MailboxError) -> None:
        deliveries = msg.metadata.num_delivered or 1
        log.warning("delivery failed", agent=route.agent, origin=route.origin,
                    deliveries=deliveries, error=str(exc)[:200])
        if deliveries >= self.config.give_up_deliveries:
            self._bury(msg, f"delivery failed {deliveries} times: {exc}", route)
            await self._settle(msg, term=True)
            return
        await self._nak(msg, min(30.0, 0.5 * deliveries))

    async def _nak(self, msg: Msg, delay: float) -> None:
        try:
            await msg.nak(delay=delay)
        except connect.ERRORS:
            pass  # redelivered after ack_wait instead

    def _bury(self, msg: Msg, reason: str, route: Route | None) -> None:
        self.inbound.bury(msg.data, reason, route)
        self._counts["dead"] += 1
        log.warning("dead", subject=msg.subject[:120], reason=reason)

    async def _settle(self, msg: Msg, *, term: bool) -> None:
        try:
            await (msg.term() if term else msg.ack())
        except connect.ERRORS as exc:  # redelivered later: delivery is idempotent
            log.warning("ack failed", error=str(exc)[:200])

    # -- receipts from other hosts ----------------------------------------------------------

    def _apply_receipt(self, route: Route, data: bytes) -> bool:
        """Record a receipt from ``route.origin``; False (and buried) if it is not one."""
        try:
            obj = orjson.loads(data)
            msg_id, agent, state, at = obj["id"], obj["agent"], obj["state"], obj["at"]
            names.check_id(msg_id)
            names.check_agent(agent)
            if state not in STATES or type(at) is not int or not 0 < at < 10 ** 20:
                raise ValueError(f"state {str(state)[:20]!r}, at {str(at)[:20]!r}")
        except (ValueError, KeyError, TypeError, MailboxError) as exc:
            self.inbound.bury(data, f"malformed receipt from {route.origin}: {exc}", route)
            self._counts["dead"] += 1
            return False
        address = f"{agent}@{route.origin}"
        record = self.receipts.apply(msg_id, address, state, at)
        if record is not None:
            self._counts["receipts_applied"] += 1
            if record.get("receipt") is True and state != "delivered":
                times = record["recipients"][address]["times"]
                if state == "done" and "read" not in times:  # finished between two looks
                    self._tell_sender(record, address, "read", at - 1)  # sorts before done
                self._tell_sender(record, address, state, at)
        return True

    def _tell_sender(self, record: dict[str, Any], address: str, state: str, at: int) -> None:
        """The read or done receipt message a sender asked for, into its inbox."""
        msg = receipt_message(record, address, state, at)
        if not names.agent_shape(msg.to[0]) or not self.inbound.has_agent(msg.to[0]):
            return
        data = encode(msg, self.root.config.max_message_bytes)
        if self.inbound.inbox(msg.to[0]).deliver(msg.id, data, fresh=False):
            self.root.journal.record("send", id=msg.id, **{"from": address}, to=list(msg.to),
                                     subject=msg.subject[:80], kind=msg.kind, thread=msg.thread,
                                     reply_to=msg.reply_to)

    # -- receipts of the mail delivered here ------------------------------------------------

    async def send_receipts(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """Each second, send back the states the tracked copies reached."""
        while not stop.is_set():
            for n, (msg_id, agent, origin, last) in enumerate(self.inbound.tracker.tracked()):
                if stop.is_set():
                    return
                if n % 64 == 63:
                    await asyncio.sleep(0)  # three stats each: let the other loops run
                state = _WORDS.get(self.inbound.inbox(agent).state_of(msg_id))
                if state is None or rank(state) <= rank(last):
                    continue
                if not await self._send_receipt(js, msg_id, agent, origin, state):
                    break
            await connect.sleep(stop, self.config.receipt_seconds)

    async def _send_receipt(self, js: JetStreamContext, msg_id: str, agent: str, origin: str,
                            state: str) -> bool:
        body = orjson.dumps({"id": msg_id, "agent": agent, "state": state, "at": time.time_ns()})
        try:
            await js.publish(self.config.receipt_subject(origin), body, timeout=5.0,
                             stream=STREAM, headers={
                                 connect.MSG_ID: f"{msg_id}:{agent}@{self.config.host}:{state}"})
        except connect.ERRORS as exc:
            log.warning("receipt failed", id=msg_id, error=str(exc)[:200])
            return False
        self.inbound.tracker.sent(msg_id, agent, origin, state)
        self._counts["receipts_sent"] += 1
        return True
