"""The bridge: mail between hosts over NATS JetStream (docs/BRIDGE.md, PROTOCOL.md §25).

Agents keep using plain local files. A send to ``bob@gpu1`` writes one copy per remote
recipient into the outbound spool (:mod:`.outbox`); the bridge of this host publishes it
and moves it to ``bridge/sent/`` only once JetStream acknowledged it. The bridge of
``gpu1`` fetches what is addressed to its host and acknowledges a message only after an
fsync'd idempotent delivery into the local inbox (:mod:`.inbound`); receipts travel
back the same way (:mod:`.receipts`).

The package splits by concern: :mod:`.config` (what a bridge connects with),
:mod:`.outbox` (the outbound spool), :mod:`.inbound` (delivery of remote mail),
:mod:`.receipts` (receipts both ways), :mod:`.status` (``mailbox bridge status``),
:mod:`.peers` (the agents of other hosts, ``bridge/agents.json``), :mod:`.announce` (the
loop that keeps them from the KV bucket),
:mod:`.connect` (the NATS connection, stream and consumer), :mod:`.publish` (the
outbound loop), :mod:`.consume` (the inbound loop and receipts), :mod:`.crash` (the
crash points of the tests) and :mod:`.daemon` (the five loops over one connection).
Only :mod:`.connect`, :mod:`.publish`, :mod:`.consume`, :mod:`.announce` and :mod:`.daemon`
import ``nats`` (the ``nats`` extra): the send path loads :mod:`.outbox` and
:mod:`.receipts` alone, the supervisor :mod:`.peers` too.
"""
