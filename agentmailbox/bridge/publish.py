"""The outbound loop: publish ``bridge/out/`` in id order, and move each copy to
``bridge/sent/`` only after JetStream acknowledged it.

A failure stops the pass (later copies wait, so one recipient's mail enters the stream in
the order it was sent) and the same file is published again, with the same
``Nats-Msg-Id``, after a growing pause.
"""

from __future__ import annotations

import asyncio
import time

from nats.js import JetStreamContext

from .. import names
from ..backoff import Backoff
from ..fs import Foreign
from ..logs import get_logger
from ..root import Root
from . import connect
from .config import STREAM, BridgeConfig
from .crash import CrashPoints
from .inbound import Inbound
from .outbox import Outbox

__all__ = ["SWEEP_SECONDS", "Publisher"]

_RETRY = Backoff(0.4, 5.0)
"""The pause after a pass that failed: 0.4 s, doubling up to 5 s."""

log = get_logger("agentmailbox.bridge")

SWEEP_SECONDS = 5.0
"""How often ``bridge/sent/`` is swept of copies past the grace period."""


class Publisher:
    """Publishes this root's outbound spool."""

    def __init__(self, root: Root, config: BridgeConfig, inbound: Inbound,
                 counts: dict[str, int], crash: CrashPoints) -> None:
        self.root = root
        self.config = config
        self.outbox = Outbox(root)
        self._inbound = inbound
        self._counts = counts
        self._crash = crash
        self.last_ack_at: int | None = None

    async def run(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        failures = 0
        next_sweep = 0.0
        while not stop.is_set():
            ok = await self._pass(js, stop)
            failures = 0 if ok else failures + 1
            if time.monotonic() >= next_sweep:
                self.outbox.sweep_sent(self.config.grace_seconds)
                next_sweep = time.monotonic() + SWEEP_SECONDS
            await connect.sleep(stop, self.config.poll_seconds if ok
                                else _RETRY.pause(failures))

    async def _pass(self, js: JetStreamContext, stop: asyncio.Event) -> bool:
        """Publish what waits, oldest first; False at the first copy that failed."""
        for name in self.outbox.pending():
            if stop.is_set():
                return True
            if not await self._publish(js, name):
                return False
        return True

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
            self._inbound.bury_path(self.root.paths.outbound(name), f"outbound spool: {exc}")
            return True
        try:
            ack = await js.publish(self.config.message_subject(host, agent), data, timeout=5.0,
                                   stream=STREAM,
                                   headers={connect.MSG_ID: f"{msg_id}:{agent}@{host}"})
        except connect.ERRORS as exc:
            log.warning("publish failed", id=msg_id, to=f"{agent}@{host}", error=str(exc)[:200])
            return False
        self._crash.hit("bridge.acked")
        self.outbox.mark_sent(name)
        self.last_ack_at = time.time_ns()
        self._counts["duplicates" if ack.duplicate else "published"] += 1
        log.info("published", id=msg_id, to=f"{agent}@{host}", seq=ack.seq,
                 duplicate=bool(ack.duplicate))
        return True
