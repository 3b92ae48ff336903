"""The bridge daemon: one NATS connection, five loops.

- **outbound** (:mod:`.publish`): publish ``bridge/out/`` in id order; a copy moves to
  ``bridge/sent/`` only after JetStream's acknowledgement.
- **inbound** (:mod:`.consume`): fetch this host's subjects, deliver each message
  idempotently into the local inbox (fsynced under the root's policy), and only then
  acknowledge it; terminate what can never be delivered once it is in ``dead/``.
- **receipts** (:mod:`.consume`): send back delivered / read / done of the remote mail
  delivered here.
- **agents** (:mod:`.announce`): put this root's agents into the KV bucket
  ``mailbox-agents`` and cache the other hosts' in ``bridge/agents.json``, which the
  supervisor expands routed addresses over.
- **status**: write ``bridge/status.json`` for ``mailbox bridge status``.

SIGTERM sets the stop event; each loop finishes the message in hand, the acks are
flushed and the connection drained. A crash at any point loses nothing (the spool and
the stream keep what was not acknowledged) and doubles nothing (the inbox stores an id
once); :mod:`.crash` lets the tests die at the two points between an effect and its
acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from ..errors import MailboxError
from ..logs import get_logger
from ..message import iso
from ..root import Root
from . import connect
from .announce import Announcer
from .config import STREAM, BridgeConfig
from .consume import Consumer
from .crash import CrashPoints
from .inbound import Inbound
from .publish import Publisher
from .status import write_status

__all__ = ["Bridge", "run_bridge"]

log = get_logger("agentmailbox.bridge")

KEEP_PAUSE_SECONDS = 1.0
"""How long a loop the disk failed waits before it starts again."""


class Bridge:
    """One host's bridge over one root."""

    def __init__(self, root: Root, config: BridgeConfig) -> None:
        self.root = root
        self.config = config
        self.counters = connect.Counters()
        self.counts = {"published": 0, "duplicates": 0, "delivered": 0, "held": 0, "dead": 0,
                       "deferred": 0, "receipts_sent": 0, "receipts_applied": 0}
        crash = CrashPoints()
        inbound = Inbound(root, config.host)
        self.publisher = Publisher(root, config, inbound, self.counts, crash)
        self.consumer = Consumer(root, config, inbound, self.counts, crash, self.counters)
        self.announcer = Announcer(root, config)
        self.consumer_info: dict[str, int] | None = None
        self.server_version: str | None = None
        self.started_at = time.time_ns()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        outbox = self.publisher.outbox
        outbox.sweep_tmp(self.root.config.stale_tmp_seconds)
        if self.config.republish_sent:
            log.info("republishing", copies=outbox.republish(self.config.grace_seconds))
        self._write_status(running=True)
        client = await connect.connect(self.config, self.counters, stop)
        if client is None:
            self._write_status(running=False)
            return
        self.server_version = _version(client)
        js = client.jetstream(timeout=5.0)
        await self._setup(js, stop)
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "outbound": lambda: self.publisher.run(js, stop),
            "inbound": lambda: self.consumer.run(client, js, stop),
            "receipts": lambda: self.consumer.send_receipts(js, stop),
            "agents": lambda: self.announcer.run(js, stop),
            "status": lambda: self._status(js, stop)}
        try:
            # A loop that fails for a bug ends them all (the TaskGroup cancels the others)
            # and the bridge exits; the disk failing one is only paused (_keep).
            async with asyncio.TaskGroup() as group:
                for name, loop in loops.items():
                    group.create_task(_keep(name, loop, stop))
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
            except (*connect.ERRORS, nats.js.errors.Error) as exc:
                log.warning("cannot set the stream up", error=str(exc)[:200])
                await connect.sleep(stop, 1.0)

    # -- status -----------------------------------------------------------------------------

    async def _status(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                info = await js.consumer_info(STREAM, self.config.durable, timeout=2.0)
                self.consumer_info = {"num_pending": info.num_pending or 0,
                                      "num_ack_pending": info.num_ack_pending or 0,
                                      "num_redelivered": info.num_redelivered or 0}
            except (*connect.ERRORS, nats.js.errors.Error):
                self.consumer_info = None
            self._write_status(running=True)
            await connect.sleep(stop, self.config.status_seconds)

    def _write_status(self, *, running: bool) -> None:
        write_status(self.root, self.snapshot(running))

    def snapshot(self, running: bool) -> dict[str, Any]:
        """What ``bridge/status.json`` holds (docs/BRIDGE.md)."""
        last_ack = self.publisher.last_ack_at
        return {"host": self.config.host, "pid": os.getpid(), "running": running,
                "started_at": iso(self.started_at), "updated_at": iso(time.time_ns()),
                "updated_ns": time.time_ns(),
                "servers": list(self.config.servers), "connected": self.counters.connected,
                "server_version": self.server_version, "reconnects": self.counters.reconnects,
                "last_error": self.counters.last_error,
                "last_ack_at": None if last_ack is None else iso(last_ack),
                "consumer": self.consumer_info, "counts": dict(self.counts)}


async def _keep(name: str, loop: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run one loop until ``stop``; when the disk fails it (a folder of the root replaced,
    the filesystem full), log that, pause, and start it again: the message in hand was not
    acknowledged, so it comes back."""
    while not stop.is_set():
        try:
            await loop()
        except MailboxError as exc:
            log.error("loop failed", loop=name, error=str(exc)[:300])
            await connect.sleep(stop, KEEP_PAUSE_SECONDS)


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
