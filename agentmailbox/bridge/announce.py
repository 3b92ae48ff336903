"""The bucket of agents: this root's agents into JetStream KV, the other hosts' into the cache.

Every ``agents_seconds`` (2 s) the bridge reads the current values of the bucket
``mailbox-agents`` (a watch of every key that stops after the last current value: it
costs one short-lived consumer, and a server that lost its store is met again at the
next pass), then:

1. puts each registered agent of this root whose entry (``<host>.<agent>`` ->
   ``{"role", "groups", "topics"}``) is missing or differs, and deletes the entries of
   this host whose agent is no longer registered;
2. writes the other hosts' entries that pass :func:`.peers.parse_entry` (a name that
   is not one is refused, and logged once) into ``bridge/agents.json``, when that
   changed.

The bucket keeps one value per key and no age limit: a host whose bridge is down keeps
its agents known, and mail routed to them waits in the stream (docs/BRIDGE.md). A
failure of the server costs this pass only.
"""

from __future__ import annotations

import asyncio

import nats.js.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from ..errors import InvalidInput, MailboxError
from ..logs import get_logger
from ..registry import AgentInfo, Registry
from ..root import Root
from . import connect
from .config import BridgeConfig
from .peers import BUCKET, entry_value, parse_entry, write_peers

__all__ = ["Announcer"]

log = get_logger("agentmailbox.bridge")

_WATCH_SECONDS = 5.0
_CONSUMER_IDLE_SECONDS = 10.0  # the server drops a pass's consumer once it is this idle


class Announcer:
    """Keeps this host's entries in the bucket and the others' in ``bridge/agents.json``."""

    def __init__(self, root: Root, config: BridgeConfig) -> None:
        self.root = root
        self.config = config
        self.peers = 0
        self._registry = Registry(root)
        self._written: dict[str, object] | None = None
        self._refused: set[str] = set()

    async def run(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        kv: KeyValue | None = None
        while not stop.is_set():
            try:
                kv = kv or await self._bucket(js)
                await self._pass(kv)
            except (*connect.ERRORS, nats.js.errors.Error) as exc:
                log.warning("agents bucket failed", error=str(exc)[:200])
                kv = None
            await connect.sleep(stop, self.config.agents_seconds)

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        try:
            return await js.key_value(BUCKET)
        except nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(KeyValueConfig(
                bucket=BUCKET, history=1, storage=StorageType.FILE,
                replicas=self.config.replicas))

    async def _pass(self, kv: KeyValue) -> None:
        entries = await self._entries(kv)
        mine = f"{self.config.host}."
        local = {f"{mine}{name}": orjson.dumps(entry_value(info))
                 for name, info in self._local().items()}
        for key, value in local.items():
            if entries.get(key) != value:
                await kv.put(key, value)
                log.info("agent announced", key=key)
        for key in entries:
            if key.startswith(mine) and key not in local:
                await kv.delete(key)
                log.info("agent withdrawn", key=key)
        self._cache({k: v for k, v in entries.items() if not k.startswith(mine)})

    async def _entries(self, kv: KeyValue) -> dict[str, bytes]:
        """The bucket's current values, key -> bytes (deleted keys left out)."""
        watcher = await kv.watchall(ignore_deletes=True,
                                    inactive_threshold=_CONSUMER_IDLE_SECONDS)
        out: dict[str, bytes] = {}
        try:
            while True:
                entry = await watcher.updates(_WATCH_SECONDS)  # type: ignore[no-untyped-call]
                if entry is None:  # the watch's marker: every current value was given
                    break
                out[entry.key] = entry.value or b""
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return out

    def _local(self) -> dict[str, AgentInfo]:
        """This root's registered agents; one whose agent.json cannot be read is left out
        (it is reachable by name only, here as on every host)."""
        out = {}
        for name in self._registry.list_names():
            try:
                out[name] = self._registry.get(name)
            except MailboxError:
                continue
        return out

    def _cache(self, entries: dict[str, bytes]) -> None:
        peers: dict[str, AgentInfo] = {}
        for key in sorted(entries):
            try:
                address, info = parse_entry(key, entries[key], self.config.host)
            except InvalidInput as exc:
                if key not in self._refused:
                    self._refused.add(key)
                    log.warning("agent refused", key=key[:120], reason=str(exc)[:200])
                continue
            peers[address] = info
        view: dict[str, object] = {a: entry_value(i) for a, i in peers.items()}
        if view != self._written:
            write_peers(self.root, self.config.host, peers)
            self._written = view
            log.info("agents of other hosts", count=len(peers))
        self.peers = len(peers)
