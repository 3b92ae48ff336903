"""Routed addresses reaching the agents of other hosts, from a planted ``bridge/agents.json``.

No server here: the cache is written as the bridge writes it (tests/test_bridge_nats.py has
the bucket and two real bridges). Host ``build1`` is this root: alice (planner), bob (coder).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentmailbox import InvalidInput, Mailbox, State
from agentmailbox.bridge.inbound import Inbound, Outcome, parse_subject
from agentmailbox.bridge.outbox import Outbox
from agentmailbox.bridge.peers import load_peers, parse_entry, write_peers
from agentmailbox.bridge.receipts import Receipts
from agentmailbox.message import decode, encode
from agentmailbox.presence import Presence
from agentmailbox.registry import AgentInfo
from agentmailbox.supervisor import Supervisor

HERE = "build1"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Mailbox]:
    """build1: alice (planner), bob (coder, group ml); gpu1 has coder and tester, lab1 ana."""
    box = Mailbox.init(tmp_path / HERE, fsync="never")
    box.add_agent("alice", role="planner")
    box.add_agent("bob", role="coder", groups=["ml"])
    Outbox(box.root).ensure()
    write_peers(box.root, HERE, {
        "coder@gpu1": AgentInfo("coder", role="coder", topics=("train",)),
        "tester@gpu1": AgentInfo("tester", role="tester", groups=("ml",)),
        "ana@lab1": AgentInfo("ana", role="analyst", topics=("train",))})
    yield box
    box.close()


def route(mb: Mailbox) -> None:
    with Supervisor(mb, backoff=(0, 0)) as sup:
        sup.run_once()


def outbound(mb: Mailbox) -> list[str]:
    """The remote agents with a copy waiting in bridge/out/ (agent@host, in name order)."""
    return [name[38:-5] for name in Outbox(mb.root).pending()]


def plant(mb: Mailbox, agents: dict[str, Any], **fields: Any) -> None:
    """Write bridge/agents.json by hand, as anything on the disk could."""
    document = {"v": 1, "host": HERE, "updated_ns": 1, "agents": agents, **fields}
    mb.root.paths.bridge_agents.write_bytes(orjson.dumps(document))


@pytest.mark.parametrize(("address", "local", "remote"), [
    ("@coder", ["bob"], ["coder@gpu1"]),
    ("#train", [], ["ana@lab1", "coder@gpu1"]),
    ("+ml", ["bob"], ["tester@gpu1"]),
    ("*", ["bob"], ["ana@lab1", "coder@gpu1", "tester@gpu1"]),
    ("coder@gpu1", [], ["coder@gpu1"]),
])
def test_a_routed_address_reaches_the_agents_of_other_hosts_the_bridge_learned(
        host: Mailbox, address: str, local: list[str], remote: list[str]) -> None:
    """@role, #topic, +group and '*' reach the matching agents of every host: local ones in
    their inboxes, each remote one by one copy in the outbound spool."""
    msg = host.send("alice", address, body="go")
    route(host)
    got = [n for n in ("alice", "bob") if host.inbox(n).state_of(msg.id) is not State.ABSENT]
    assert (local, remote) == (got, outbound(host))


def test_the_remote_copy_is_the_message_and_status_lists_its_recipient(host: Mailbox) -> None:
    """The copy for coder@gpu1 holds the message as sent; status shows coder@gpu1 (absent
    until its bridge reports) and what @coder reached."""
    msg = host.send("alice", "@coder", subject="build", body="go")
    route(host)
    data = Outbox(host.root).read(f"{msg.id}.coder@gpu1.json")
    status = host.status(msg.id)
    assert (msg.id, ("@coder",)) == (decode(data).id, decode(data).to)
    assert [("bob", State.NEW), ("coder@gpu1", State.ABSENT)] == [
        (r.agent, r.state) for r in status.recipients]
    assert {"@coder": ("bob", "coder@gpu1")} == status.routed


def test_routing_a_message_again_posts_no_second_copy(host: Mailbox) -> None:
    """A message routed twice (a supervisor that died mid-route) posts its remote copies
    once: one already published and moved to bridge/sent/ is not written again."""
    msg = host.send("alice", "@coder", body="go")
    spooled = host.spool.new / f"{msg.id}.json"
    data = spooled.read_bytes()
    route(host)
    Outbox(host.root).mark_sent(f"{msg.id}.coder@gpu1.json")
    spooled.write_bytes(data)
    route(host)
    assert ([], ["coder@gpu1"]) == (outbound(host), list(
        Receipts(host.root).load(msg.id)["recipients"]))  # type: ignore[index]


def test_a_send_to_an_agent_at_a_host_and_its_role_records_both_remote_recipients(
        host: Mailbox) -> None:
    """coder@gpu1 named directly and tester@gpu1 reached by @tester: one copy each, and the
    receipts record follows both, whichever of sender and supervisor wrote it first."""
    msg = host.send("alice", ["coder@gpu1", "@tester", "@coder"], body="go")
    route(host)
    assert ["coder@gpu1", "tester@gpu1"] == outbound(host)
    assert ["coder@gpu1", "tester@gpu1"] == sorted(
        Receipts(host.root).load(msg.id)["recipients"])  # type: ignore[index]


HOSTILE = {
    "Coder@gpu1": {"role": "coder"},          # a capital: no agent name
    "coder@GPU1": {"role": "coder"},          # nor a host name
    "all@gpu1": {"role": "coder"},            # reserved
    "a.b@gpu1": {"role": "coder"},
    "x@gpu1.lan": {"role": "coder"},
    "../x@gpu1": {"role": "coder"},
    "c" * 65 + "@gpu1": {"role": "coder"},
    "evil@gpu1": {"role": "Coder"},           # a role that is no name
    "worse@gpu1": {"role": "coder", "groups": "ml"},
    "odd@gpu1": ["coder"],
    "alice@build1": {"role": "coder"},        # this host's own agent
    "bob": {"role": "coder"},                 # no host: would stand for local bob
    "good@gpu1": {"role": "coder"},
}


def test_hostile_entries_of_the_cache_reach_nobody(host: Mailbox) -> None:
    """An entry whose names fail the checks of a local agent, or that names this host or
    no host, is left out; the good entry still gets its copy and local bob his."""
    plant(host, HOSTILE)
    msg = host.send("alice", "@coder", body="go")
    route(host)
    assert (["good@gpu1"], State.NEW, State.ABSENT) == (
        outbound(host), host.inbox("bob").state_of(msg.id), host.inbox("alice").state_of(msg.id))
    assert ["good@gpu1"] == list(load_peers(host.root))


@pytest.mark.parametrize("document", [
    {"v": 2, "host": HERE, "agents": {"coder@gpu1": {"role": "coder"}}},
    {"v": 1, "agents": {"coder@gpu1": {"role": "coder"}}},
    {"v": 1, "host": HERE, "agents": ["coder@gpu1"]},
])
def test_a_cache_of_another_version_or_shape_gives_no_remote_agents(
        host: Mailbox, document: dict[str, Any]) -> None:
    """A reader takes no agents of other hosts from a cache it does not understand, and
    routes to its own agents as before."""
    host.root.paths.bridge_agents.write_bytes(orjson.dumps(document))
    msg = host.send("alice", "@coder", body="go")
    route(host)
    assert ([], State.NEW) == (outbound(host), host.inbox("bob").state_of(msg.id))


def test_a_root_without_the_cache_routes_to_its_own_agents_only(tmp_path: Path) -> None:
    """An older root (no bridge/ at all) routes as it always did and gets no bridge/."""
    mb = Mailbox.init(tmp_path, fsync="never")
    mb.add_agent("alice")
    mb.add_agent("bob", role="coder")
    msg = mb.send("alice", "@coder", body="go")
    route(mb)
    assert (State.NEW, False) == (mb.inbox("bob").state_of(msg.id),
                                  (tmp_path / "bridge").exists())


def test_a_remote_agent_never_stands_for_a_local_one(host: Mailbox) -> None:
    """bob@gpu1 in the cache is not bob: mail to bob stays here, and @coder reaches both."""
    write_peers(host.root, HERE, {"bob@gpu1": AgentInfo("bob", role="coder")})
    direct = host.send("alice", "bob", body="here")
    routed = host.send("alice", "@coder", body="both")
    route(host)
    assert [f"{routed.id}.bob@gpu1.json"] == Outbox(host.root).pending()
    assert [direct.id, routed.id] == host.inbox("bob").ids()


def test_pick_one_picks_an_agent_of_this_host_only(host: Mailbox) -> None:
    """pick: one never picks a remote agent (their liveness and room are not known here);
    an address that reaches only remote agents is unroutable under it."""
    Presence(host.root).beat("bob", capacity=1.0)
    mixed = host.send("alice", "@coder", body="one", pick="one")
    remote = host.send("alice", "@tester", body="one", pick="one")
    route(host)
    assert ([], State.NEW) == (outbound(host), host.inbox("bob").state_of(mixed.id))
    reasons = [m.body["reason"] for m in host.inbox("alice").list() if m.kind == "notice"]
    assert ["pick: one picks an agent of this host; @tester reaches only agents of other "
            "hosts (tester@gpu1)"] == reasons
    assert host.spool.find(remote.id) is None


@pytest.mark.parametrize(("key", "value"), [
    ("gpu1.coder", {"role": "coder", "groups": ["ml"], "topics": ["train"]}),
    ("gpu1.coder", b'{"role": "coder"}'),
])
def test_a_bucket_entry_is_read_as_an_agent_of_its_host(key: str, value: Any) -> None:
    """<host>.<agent> with its role, groups and topics becomes agent@host."""
    address, info = parse_entry(key, value, HERE)
    assert ("coder@gpu1", "coder") == (address, info.role)


@pytest.mark.parametrize("key", ["gpu1", "gpu1.Coder", "GPU1.coder", "gpu1.a.b", "gpu1.all",
                                 f"{HERE}.alice", ".coder", "gpu1.", "gpu1.c" + "c" * 64])
def test_a_hostile_bucket_key_is_refused_as_a_local_name_is(key: str) -> None:
    """A key that is not <host>.<agent> of valid names, or names this host, is refused."""
    with pytest.raises(InvalidInput):
        parse_entry(key, {"role": "coder"}, HERE)


@pytest.mark.parametrize("value", [b'{"role": "coder", "role": "admin"}', b"[" * 300 + b"]" * 300,
                                   b'"coder"', b"{", b"{}" + b" " * 70_000])
def test_a_bucket_value_is_read_as_every_json_object_of_the_root_is(value: bytes) -> None:
    """A value with a repeated key, nested too deep, not an object, not JSON or too large
    is refused, as the same document in a file of the root would be."""
    with pytest.raises(InvalidInput):
        parse_entry("gpu1.coder", value, HERE)


def test_the_receiving_bridge_delivers_a_copy_a_routed_address_sent(tmp_path: Path) -> None:
    """On gpu1, a copy whose to is @coder, published for coder, is delivered to coder as
    from alice@build1 with to as written."""
    gpu1 = Mailbox.init(tmp_path / "gpu1", fsync="never")
    gpu1.add_agent("coder", role="coder")
    sender = Mailbox.init(tmp_path / HERE, fsync="never")
    sender.add_agent("alice")
    msg = sender.send("alice", "@nobody-here", body="go")  # any routed message: its bytes
    data = encode(msg.evolve(to=("@coder",)), 1 << 20)
    outcome, _ = Inbound(gpu1.root, "gpu1").deliver(
        parse_subject(f"mail.gpu1.msg.coder.{HERE}", "gpu1"), data)
    got = gpu1.inbox("coder").get(msg.id)
    assert (Outcome.DELIVERED, "alice@build1", ("@coder",)) == (outcome, got.sender, got.to)
