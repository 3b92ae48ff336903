"""The bridge daemon: four loops over one NATS connection.

- **outbound**: publish ``bridge/out/`` in id order; move a copy to ``bridge/sent/`` only
  after JetStream's acknowledgement. A failure stops the pass (later copies wait, so one
  recipient's mail enters the stream in the order it was sent) and is retried with
  the same ``Nats-Msg-Id``.
- **inbound**: fetch this host's subjects, deliver each message idempotently into the
  local inbox (fsynced under the root's policy), and only then acknowledge it; terminate
  what can never be delivered once it is in ``dead/``.
- **receipts**: send back delivered / read / done of the remote mail delivered here.
- **status**: write ``bridge/status.json`` for ``mailbox bridge status``.

SIGTERM sets the stop event; each loop finishes the message in hand, the acks are
flushed and the connection drained. A crash at any point loses nothing (the spool and
the stream keep what was not acknowledged) and doubles nothing (the inbox stores an id
once): :class:`CrashPoints` lets the tests die at the two points between an effect and
its acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
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
from ..fs import Foreign
from ..inbox import State
from ..logs import get_logger
from ..message import encode, iso
from ..root import Root
from . import connect
from .config import STREAM, BridgeConfig
from .inbound import Inbound, Outcome, Refused, Route, parse_subject
from .outbox import Outbox
from .receipts import STATES, Receipts, rank, receipt_message
from .status import write_status

__all__ = ["POINTS", "Bridge", "CrashPoints", "run_bridge"]

log = get_logger("agentmailbox.bridge")

POINTS = {
    "bridge.acked": "JetStream acknowledged a copy; it is still in bridge/out/",
    "bridge.delivered": "a remote message is in the local inbox; the stream is not yet "
                        "told (no ack)",
}
"""The bridge's crash points (``$AGENTMAILBOX_BRIDGE_FAULT``), and what holds when one fires."""

QUOTA_WAIT_SECONDS = 5.0
"""How long mail for a full inbox waits in the stream before it is offered again."""
SWEEP_SECONDS = 5.0
"""How often ``bridge/sent/`` is swept of copies past the grace period."""
MSG_ID = "Nats-Msg-Id"
"""JetStream's duplicate-window key: the message id and one recipient (or receipt state)."""
_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
_WORDS = {State.NEW: "delivered", State.CLAIMED: "read", State.DONE: "done"}


class CrashPoints:
    """``$AGENTMAILBOX_BRIDGE_FAULT=point[:probability],...``: exit 77 there, like SIGKILL.

    With a probability (``bridge.acked:0.01``) each pass through the point dies with that
    chance, so one soak run dies at many moments; without one, at the first pass.
    """

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get("AGENTMAILBOX_BRIDGE_FAULT", "") if spec is None else spec
        self.chances: dict[str, float] = {}
        for item in filter(None, spec.split(",")):
            point, _, chance = item.partition(":")
            if point not in POINTS:
                raise ValueError(f"unknown bridge crash point {point!r}")
            self.chances[point] = float(chance or 1.0)
        self._random = random.Random()

    def hit(self, point: str) -> None:
        chance = self.chances.get(point)
        if chance is not None and self._random.random() < chance:
            os._exit(77)  # no cleanup, no flush: what a SIGKILL leaves


class Bridge:
    """One host's bridge over one root."""

    def __init__(self, root: Root, config: BridgeConfig) -> None:
        self.root = root
        self.config = config
        self.outbox = Outbox(root)
        self.inbound = Inbound(root, config.host)
        self.receipts = Receipts(root)
        self.counters = connect.Counters()
        self.counts = {"published": 0, "duplicates": 0, "delivered": 0, "held": 0, "dead": 0,
                       "deferred": 0,
                       "receipts_sent": 0, "receipts_applied": 0}
        self.last_ack_at: int | None = None
        self.consumer: dict[str, int] | None = None
        self.server_version: str | None = None
        self.started_at = time.time_ns()
        self.crash = CrashPoints()

    # -- the whole run ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        self.outbox.ensure()
        self.outbox.sweep_tmp(self.root.config.stale_tmp_seconds)
        if self.config.republish_sent:
            log.info("republishing", copies=self.outbox.republish(self.config.grace_seconds))
        self._write_status(running=True)
        client = await connect.connect(self.config, self.counters, stop)
        if client is None:
            self._write_status(running=False)
            return
        self.server_version = _version(client)
        js = client.jetstream(timeout=5.0)
        await self._setup(js, stop)
        loops = [self._outbound(js, stop), self._inbound(client, js, stop),
                 self._receipts(js, stop), self._status(js, stop)]
        try:
            await asyncio.gather(*loops)
        finally:
            await self._close(client)
            self._write_status(running=False)

    async def _close(self, client: Client) -> None:
        """Flush the acks and close; a server that is gone by now costs a log line only."""
        try:
            await asyncio.wait_for(client.drain(), 5.0)
        except Exception as exc:  # any failure of a connection we are leaving anyway
            log.warning("drain failed", error=str(exc)[:200])
            try:
                await client.close()
            except Exception as again:
                log.warning("close failed", error=str(again)[:200])

    async def _setup(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """Make sure of the stream and the consumer before the loops start (retried)."""
        while not stop.is_set():
            try:
                await connect.ensure(js, self.config)
                return
            except (*_ERRORS, nats.js.errors.Error) as exc:
                log.warning("cannot set the stream up", error=str(exc)[:200])
                await connect.sleep(stop, 1.0)

    # -- outbound ---------------------------------------------------------------------------

    async def _outbound(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        failures = 0
        next_sweep = 0.0
        while not stop.is_set():
            waiting = self.outbox.pending()
            ok = True
            for name in waiting:
                if stop.is_set():
                    return
                ok = await self._publish(js, name)
                if not ok:
                    break
            failures = 0 if ok else failures + 1
            if time.monotonic() >= next_sweep:
                self.outbox.sweep_sent(self.config.grace_seconds)
                next_sweep = time.monotonic() + SWEEP_SECONDS
            await connect.sleep(stop, self.config.poll_seconds if ok
                                else min(5.0, 0.2 * 2 ** min(failures, 5)))

    async def _publish(self, js: JetStreamContext, name: str) -> bool:
        """Publish one waiting copy; True once JetStream has it (or it is gone or buried)."""
        parts = names.outbound_parts(name)
        if parts is None:
            return True
        msg_id, agent, host = parts
        try:
            data = self.outbox.read(name)
        except FileNotFoundError:
            return True
        except Foreign as exc:
            self.inbound.bury_path(self.root.paths.outbound(name), f"outbound spool: {exc}")
            return True
        try:
            ack = await js.publish(self.config.message_subject(host, agent), data, timeout=5.0,
                                   stream=STREAM, headers={MSG_ID: f"{msg_id}:{agent}@{host}"})
        except _ERRORS as exc:
            log.warning("publish failed", id=msg_id, to=f"{agent}@{host}", error=str(exc)[:200])
            return False
        self.crash.hit("bridge.acked")
        self.outbox.mark_sent(name)
        self.last_ack_at = time.time_ns()
        self.counts["duplicates" if ack.duplicate else "published"] += 1
        log.info("published", id=msg_id, to=f"{agent}@{host}", seq=ack.seq,
                 duplicate=bool(ack.duplicate))
        return True

    # -- inbound ----------------------------------------------------------------------------

    async def _inbound(self, client: Client, js: JetStreamContext, stop: asyncio.Event) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        seen_reconnects = -1
        size = 1
        while not stop.is_set():
            if sub is None or seen_reconnects != self.counters.reconnects:
                seen_reconnects = self.counters.reconnects
                sub = await self._subscribe(js, sub, stop)
                continue
            # nats-py's fetch(n) returns what is there at once, but when it has to wait it
            # waits for all n (or the timeout): so wait for one, then take the backlog.
            try:
                batch = await sub.fetch(size, timeout=1.0)
            except nats.errors.TimeoutError:
                size = 1
                continue
            except _ERRORS as exc:
                log.warning("fetch failed", error=str(exc)[:200])
                sub = await self._subscribe(js, sub, stop)
                continue
            for msg in batch:
                await self._handle(msg)
            await self._flush(client)
            size = self.config.batch

    async def _subscribe(self, js: JetStreamContext,
                         old: JetStreamContext.PullSubscription | None,
                         stop: asyncio.Event) -> JetStreamContext.PullSubscription | None:
        """(Re)make the stream, the consumer and the subscription; None while that fails."""
        if old is not None:
            try:
                await old.unsubscribe()
            except _ERRORS:
                pass
        try:
            await connect.ensure(js, self.config)
            return await connect.subscribe(js, self.config)
        except (*_ERRORS, nats.js.errors.Error) as exc:
            log.warning("cannot subscribe", error=str(exc)[:200])
            await connect.sleep(stop, 1.0)
            return None

    async def _flush(self, client: Client) -> None:
        try:
            await client.flush(timeout=5)
        except _ERRORS as exc:
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
            self.counts["deferred"] += 1
            await self._nak(msg, QUOTA_WAIT_SECONDS)
            return
        except MailboxError as exc:  # the disk failed us (full, unwritable): try again later
            await self._failed(msg, route, exc)
            return
        self.crash.hit("bridge.delivered")
        self.counts[str(outcome)] += 1
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
        except _ERRORS:
            pass  # redelivered after ack_wait instead

    def _bury(self, msg: Msg, reason: str, route: Route | None) -> None:
        self.inbound.bury(msg.data, reason, route)
        self.counts["dead"] += 1
        log.warning("dead", subject=msg.subject[:120], reason=reason)

    async def _settle(self, msg: Msg, *, term: bool) -> None:
        try:
            await (msg.term() if term else msg.ack())
        except _ERRORS as exc:  # redelivered later: delivery is idempotent
            log.warning("ack failed", error=str(exc)[:200])

    # -- receipts ---------------------------------------------------------------------------

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
            self.counts["dead"] += 1
            return False
        record = self.receipts.apply(msg_id, f"{agent}@{route.origin}", state, at)
        if record is not None:
            self.counts["receipts_applied"] += 1
            if record.get("receipt") is True and state != "delivered":
                address = f"{agent}@{route.origin}"
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

    async def _receipts(self, js: JetStreamContext, stop: asyncio.Event) -> None:
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
                                 MSG_ID: f"{msg_id}:{agent}@{self.config.host}:{state}"})
        except _ERRORS as exc:
            log.warning("receipt failed", id=msg_id, error=str(exc)[:200])
            return False
        self.inbound.tracker.sent(msg_id, agent, origin, state)
        self.counts["receipts_sent"] += 1
        return True

    # -- status -----------------------------------------------------------------------------

    async def _status(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                info = await js.consumer_info(STREAM, self.config.durable, timeout=2.0)
                self.consumer = {"num_pending": info.num_pending or 0,
                                 "num_ack_pending": info.num_ack_pending or 0,
                                 "num_redelivered": info.num_redelivered or 0}
            except (*_ERRORS, nats.js.errors.Error):
                self.consumer = None
            self._write_status(running=True)
            await connect.sleep(stop, self.config.status_seconds)

    def _write_status(self, *, running: bool) -> None:
        write_status(self.root, self.snapshot(running))

    def snapshot(self, running: bool) -> dict[str, Any]:
        """What ``bridge/status.json`` holds (docs/BRIDGE.md)."""
        return {"host": self.config.host, "pid": os.getpid(), "running": running,
                "started_at": iso(self.started_at), "updated_at": iso(time.time_ns()),
                "updated_ns": time.time_ns(),
                "servers": list(self.config.servers), "connected": self.counters.connected,
                "server_version": self.server_version, "reconnects": self.counters.reconnects,
                "last_error": self.counters.last_error,
                "last_ack_at": None if self.last_ack_at is None else iso(self.last_ack_at),
                "consumer": self.consumer, "counts": dict(self.counts)}


def _version(client: Client) -> str:
    """The server's version as it says it (``2.15.1``)."""
    version = client.connected_server_version
    return f"{version.major}.{version.minor}.{version.patch}"


def run_bridge(root: Root, config: BridgeConfig) -> None:
    """Run one bridge in this process until SIGTERM (or Ctrl-C)."""
    asyncio.run(_main(root, config))


async def _main(root: Root, config: BridgeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await Bridge(root, config).run(stop)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
