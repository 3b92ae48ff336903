"""The NATS side: connect (and keep reconnecting), and make sure the stream and this host's
consumer exist with the settings the bridge relies on.

nats-py pitfalls this module answers (shared notes, part A7): the client gives up after
60 reconnect attempts unless told ``-1``; the first connect fails at once when the server
is down, so it is retried here; ``pull_subscribe`` does not update an existing durable's
settings, so the consumer is created or updated explicitly with ``add_consumer``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from ..backoff import Backoff
from ..logs import get_logger
from .config import STREAM, BridgeConfig

__all__ = ["ERRORS", "MSG_ID", "Counters", "connect", "ensure", "sleep", "subscribe"]

log = get_logger("agentmailbox.bridge")

ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
"""What a call to the server may raise when the server or the network fails."""
MSG_ID = "Nats-Msg-Id"
"""JetStream's duplicate-window key: the message id and one recipient (or receipt state)."""


class Counters:
    """What the connection callbacks count, for ``mailbox bridge status``."""

    def __init__(self) -> None:
        self.reconnects = 0
        self.disconnects = 0
        self.connected = False
        self.last_error: str | None = None


def _options(config: BridgeConfig, counters: Counters) -> dict[str, Any]:
    async def on_error(exc: Exception) -> None:
        counters.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("nats error", error=counters.last_error)

    async def on_disconnect() -> None:
        counters.disconnects += 1
        counters.connected = False
        log.warning("disconnected")

    async def on_reconnect() -> None:
        counters.reconnects += 1
        counters.connected = True
        log.info("reconnected")

    options: dict[str, Any] = {
        "servers": list(config.servers), "name": f"mailbox-bridge-{config.host}",
        "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5, "connect_timeout": 2,
        "allow_reconnect": True, "error_cb": on_error, "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect, "inbox_prefix": config.inbox_prefix}
    tls = config.tls_context()
    if tls is not None:
        options["tls"] = tls
    for key, value in (("user_credentials", config.creds), ("nkeys_seed", config.nkey_seed),
                       ("user", config.user), ("password", config.password)):
        if value is not None:
            options[key] = value
    return options


async def connect(config: BridgeConfig, counters: Counters, stop: asyncio.Event
                  ) -> Client | None:
    """Connect, retrying with backoff until it works or ``stop`` is set (then None).

    With ``max_reconnect_attempts=-1`` nats-py keeps trying a server that is down inside
    ``connect`` itself, so the attempt runs as a task that ``stop`` cancels: SIGTERM
    stops a bridge that never reached its server.
    """
    delays = Backoff(0.2, 5.0)
    while not stop.is_set():
        client = Client()
        attempt = asyncio.ensure_future(client.connect(**_options(config, counters)))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not attempt.done():
            attempt.cancel()
            await _quietly(attempt, client)
            return None
        if attempt.exception() is not None:
            log.warning("cannot connect", servers=list(config.servers),
                        error=str(attempt.exception())[:200])
            await sleep(stop, delays.failed("connect"))
            continue
        counters.connected = True
        log.info("connected", host=config.host)
        return client
    return None


async def _quietly(attempt: asyncio.Future[None], client: Client) -> None:
    """Wait for a cancelled connection attempt to end, and close what it left."""
    try:
        await attempt
    except (asyncio.CancelledError, *ERRORS):
        pass
    try:
        await client.close()
    except Exception as exc:  # a client that never connected may fail to close: we leave it
        log.warning("close failed", error=str(exc)[:200])


async def ensure(js: JetStreamContext, config: BridgeConfig) -> None:
    """Create the stream if it is missing, and create or update this host's consumer."""
    stream = StreamConfig(
        name=STREAM, subjects=["mail.>"], storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
        max_age=config.max_age_seconds, duplicate_window=config.duplicate_window_seconds,
        num_replicas=config.replicas)
    try:
        await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(stream)
        except nats.js.errors.BadRequestError as exc:  # created meanwhile by another host
            log.info("stream exists", detail=str(exc)[:200])
    # With a name, the request's subject carries the filter (CONSUMER.CREATE.<stream>.
    # <name>.<filter>), so a server permission can pin each host to its own subjects.
    await js.add_consumer(STREAM, ConsumerConfig(
        name=config.durable, durable_name=config.durable, filter_subject=config.filter_subject,
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
        ack_wait=config.ack_wait_seconds, max_deliver=-1,
        max_ack_pending=config.max_ack_pending, num_replicas=config.replicas))


async def subscribe(js: JetStreamContext, config: BridgeConfig
                    ) -> JetStreamContext.PullSubscription:
    """This host's pull subscription, bound to its durable consumer."""
    return await js.pull_subscribe_bind(durable=config.durable, stream=STREAM)


async def sleep(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass

