"""The bridge's on-disk half, without a server: ``agent@host`` addresses, the outbound spool,
delivery of remote mail, receipts, ``mailbox bridge status``, and what the send path loads.

The halves that need a real nats-server are in tests/test_bridge_nats.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox, State
from agentmailbox.addresses import Remote, localize, parse_remote
from agentmailbox.bridge.inbound import Inbound, Outcome, Refused, parse_subject
from agentmailbox.bridge.outbox import Outbox
from agentmailbox.bridge.receipts import Receipts
from agentmailbox.bridge.status import bridge_status
from agentmailbox.errors import InvalidName
from agentmailbox.fs import Foreign
from agentmailbox.message import decode

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py

HOSTILE_HOSTS = ["", "..", "a.b", "gpu1.", "*", ">", "a b", "GPU1", "a/b", "-x", "x@y",
                 "g" * 65, "é"]


def test_an_agent_at_a_host_is_parsed_into_its_two_names() -> None:
    """bob@gpu1 names agent bob of host gpu1."""
    assert Remote("bob", "gpu1") == parse_remote("bob@gpu1")
    assert "bob@gpu1" == str(parse_remote("bob@gpu1"))


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_a_send_to_a_hostile_host_is_refused_before_anything_is_written(
        mb: Mailbox, host: str) -> None:
    """A host that is not a name (dots, wildcards, slashes, case, length) is refused as
    a bad agent name is, and the send writes nothing anywhere."""
    with pytest.raises(InvalidName):
        mb.send("alice", [f"bob@{host}"], body="x")
    assert (False, []) == ((mb.path / "bridge").exists(), mb.inbox("bob").ids())


def test_a_send_to_a_remote_agent_posts_one_copy_per_remote_recipient(mb: Mailbox) -> None:
    """bob@gpu1 and carol@gpu1 get a copy each in bridge/out/; local bob gets his now."""
    msg = mb.send("alice", ["bob", "bob@gpu1", "carol@gpu1", "bob@gpu1"], body="x")
    assert [f"{msg.id}.bob@gpu1.json", f"{msg.id}.carol@gpu1.json"] == Outbox(mb.root).pending()
    assert ([msg.id], ("bob", "bob@gpu1", "carol@gpu1")) == (mb.inbox("bob").ids(), msg.to)
    data = Outbox(mb.root).read(f"{msg.id}.bob@gpu1.json")
    assert msg == decode(data)


def test_a_keyed_send_to_a_remote_agent_retried_posts_it_once(mb: Mailbox) -> None:
    """The same key sends one message id to the remote agent however often it is sent."""
    first = mb.send("alice", "bob@gpu1", body="x", key="k1")
    again = mb.send("alice", "bob@gpu1", body="x", key="k1")
    assert (first.id, [f"{first.id}.bob@gpu1.json"]) == (again.id, Outbox(mb.root).pending())


def test_status_shows_a_remote_recipient_from_sent_to_done(mb: Mailbox) -> None:
    """mailbox status ID lists bob@gpu1: absent until its bridge reports, then each state."""
    msg = mb.send("alice", "bob@gpu1", subject="plan", body="x")
    states = [mb.status(msg.id).recipients[0].state]
    for n, state in enumerate(["delivered", "read", "done"]):
        Receipts(mb.root).apply(msg.id, "bob@gpu1", state, 1796000000000000000 + n)
        states.append(mb.status(msg.id).recipients[0].state)
    status = mb.status(msg.id)
    assert [State.ABSENT, State.NEW, State.CLAIMED, State.DONE] == states
    assert ("alice", "plan", "bob@gpu1") == (status.sender, status.subject,
                                             status.recipients[0].agent)
    assert status.recipients[0].done_at is not None


def test_a_late_receipt_never_moves_a_recipient_back(mb: Mailbox) -> None:
    """done, then a delayed read receipt: status still says done."""
    msg = mb.send("alice", "bob@gpu1", body="x")
    receipts = Receipts(mb.root)
    assert receipts.apply(msg.id, "bob@gpu1", "done", 2)
    assert not receipts.apply(msg.id, "bob@gpu1", "read", 1)
    assert not receipts.apply(msg.id, "eve@gpu1", "done", 3)  # not a recipient of it
    assert State.DONE == mb.status(msg.id).recipients[0].state


def test_localize_reads_to_as_the_receiving_host_does() -> None:
    """Names of the sending host gain @origin, names of this host lose @here."""
    assert ("carol@build1", "bob", "dan@other", "@coder") == localize(
        ["carol", "bob@gpu1", "dan@other", "@coder"], "build1", "gpu1")


def _remote_message(to: list[str], sender: str = "alice") -> bytes:
    return orjson.dumps({"v": 1, "id": "01796000000000000000-0123456789abcdef",
                         "from": sender, "to": to, "subject": "s", "body": "b",
                         "receipt": True})


def test_remote_mail_is_delivered_once_as_from_its_host(mb: Mailbox) -> None:
    """A redelivery stores nothing new; the copy is from alice@build1, without a receipt
    request (the bridges carry receipts), and tracked for its receipts."""
    inbound = Inbound(mb.root, "gpu1")
    route = parse_subject("mail.gpu1.msg.bob.build1", "gpu1")
    data = _remote_message(["bob@gpu1", "carol"])
    outcomes = [inbound.deliver(route, data)[0] for _ in range(3)]
    (got,) = mb.inbox("bob").list()
    assert [Outcome.DELIVERED, Outcome.HELD, Outcome.HELD] == outcomes
    assert ("alice@build1", ("bob", "carol@build1"), False) == (got.sender, got.to, got.receipt)
    assert [(got.id, "bob", "build1", None)] == inbound.tracker.tracked()


def test_remote_mail_already_done_here_is_not_delivered_again(mb: Mailbox) -> None:
    """The inbox remembers ids it finished (done/ is kept), whatever JetStream forgot."""
    inbound = Inbound(mb.root, "gpu1")
    route = parse_subject("mail.gpu1.msg.bob.build1", "gpu1")
    inbound.deliver(route, _remote_message(["bob@gpu1"]))
    msg = mb.inbox("bob").claim()
    assert msg is not None and mb.inbox("bob").done(msg)
    assert Outcome.HELD == inbound.deliver(route, _remote_message(["bob@gpu1"]))[0]
    assert [] == mb.inbox("bob").ids()


@pytest.mark.parametrize(("subject", "words"), [
    ("mail.other.msg.bob.build1", "is not mail for host"),
    ("mail.gpu1.msg.Bob.build1", "invalid agent name"),
    ("mail.gpu1.msg.bob.a_b_c_d_e_f_g_h_i_j_k_l_m_n_o_p_q_r_s_t_u_v_w_x_y_z_0_1_2_3_4_5_6_7",
     "invalid host name"),
    ("mail.gpu1.msg.all.build1", "reserved"),
    ("mail.gpu1.msg.bob", "is not mail for host"),
])
def test_a_subject_that_names_no_local_agent_is_refused(subject: str, words: str) -> None:
    """Each token of a subject is checked as a local name before anything is built of it."""
    with pytest.raises(Refused, match=words):
        parse_subject(subject, "gpu1")


@pytest.mark.parametrize(("data", "words"), [
    (b"\xff not json", "malformed"),
    (_remote_message(["carol@gpu1"]), "not addressed to bob@gpu1"),
    (_remote_message(["bob@gpu1"], sender="eve@elsewhere"), "names a host"),
    (b"{" + b" " * 2_000_000 + b"}", "max_message_bytes"),
])
def test_poison_remote_mail_goes_to_dead_with_its_reason(mb: Mailbox, data: bytes,
                                                        words: str) -> None:
    """What can never be delivered is buried, reason and bytes kept; nothing reaches bob."""
    outcome, reason = Inbound(mb.root, "gpu1").deliver(
        parse_subject("mail.gpu1.msg.bob.build1", "gpu1"), data)
    (dead,) = mb.dead.list()
    assert (Outcome.DEAD, [], True) == (outcome, mb.inbox("bob").ids(), words in reason)
    assert (reason, "bridge/tmp") == (dead.reason, dead.origin)


def test_mail_for_an_agent_not_registered_here_goes_to_dead(mb: Mailbox) -> None:
    """A remote sender naming an agent this host does not have gets it buried, not retried."""
    outcome, reason = Inbound(mb.root, "gpu1").deliver(
        parse_subject("mail.gpu1.msg.nobody.build1", "gpu1"), _remote_message(["nobody@gpu1"]))
    assert (Outcome.DEAD, "no agent named 'nobody' on host 'gpu1'") == (outcome, reason)


def test_bridge_status_without_a_bridge_shows_the_spool(cli: Cli, mb: Mailbox) -> None:
    """mailbox bridge status works with no bridge running: the spool depth and its age."""
    mb.send("alice", ["bob@gpu1", "bob@gpu2"], body="x")
    res = cli("bridge", "status", "--json")
    status = orjson.loads(res.out)
    assert (0, False, 2, None) == (res.code, status["running"], status["spool_depth"],
                                   status["consumer"])
    assert status["spool_oldest_age_seconds"] >= 0
    assert "2 waiting" in cli("bridge", "status").out


def test_bridge_without_nats_or_host_is_a_usage_error(cli: Cli) -> None:
    """mailbox bridge needs --nats and --host: exit 2, nothing started."""
    assert 2 == cli("bridge", "--host", "build1").code


def test_bridge_status_ignores_a_status_file_of_a_dead_bridge(mb: Mailbox) -> None:
    """A status.json that says running, from a pid that is gone, is not a running bridge."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    mb.root.paths.bridge.mkdir()
    mb.root.paths.bridge_status.write_bytes(orjson.dumps(
        {"host": "gpu1", "pid": int(proc.stdout), "running": True, "connected": True,
         "updated_ns": 1 << 62}))
    status = bridge_status(mb.root)
    assert (False, False, "gpu1") == (status["running"], status["connected"], status["host"])


def test_sending_to_a_remote_agent_does_not_load_nats(mb: Mailbox) -> None:
    """The send path, status and bridge status stay light: nats loads only in the daemon."""
    code = ("import sys; from agentmailbox.cli import main; "
            "main(['send', '--from', 'alice', '--to', 'bob@gpu1', '--body', 'hi']); "
            "main(['bridge', 'status']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nats', 'asyncio')), "
            "file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**python_env(), "MAILBOX_ROOT": str(mb.path)}, timeout=60)
    assert "[]" == done.stderr.strip().splitlines()[-1]


def test_a_copy_read_between_its_link_and_unlink_is_not_foreign(mb: Mailbox) -> None:
    """The writer's staging name is the one second link a waiting copy may have."""
    msg = mb.send("alice", "bob@gpu1", body="x")
    name = f"{msg.id}.bob@gpu1.json"
    outbox = Outbox(mb.root)
    staged = mb.root.paths.bridge_tmp / f"{msg.id}.1.abcdef"
    staged.hardlink_to(mb.root.paths.outbound(name))
    assert msg == decode(outbox.read(name))


def test_a_hard_link_to_a_file_elsewhere_in_the_spool_is_foreign(mb: Mailbox) -> None:
    """A file planted in bridge/out/ as a second name of a file elsewhere is never sent."""
    msg = mb.send("alice", "bob@gpu1", body="x")
    name = f"{msg.id}.bob@gpu1.json"
    (mb.path.parent / "outside").hardlink_to(mb.root.paths.outbound(name))
    with pytest.raises(Foreign):
        Outbox(mb.root).read(name)


def test_a_routed_send_that_also_names_a_remote_agent_routes_only_the_local_part(
        mb: Mailbox) -> None:
    """@coder and bob@gpu1 in one send: the supervisor delivers to the coders and tells the
    sender of nothing unroutable; the remote copy waits in the outbound spool."""
    from agentmailbox.supervisor import Supervisor

    mb.add_agent("carol", role="coder")
    msg = mb.send("alice", ["@coder", "bob@gpu1"], body="x")
    with Supervisor(mb) as sup:
        sup.run_once()
    assert ([msg.id], [msg.id], [], None) == (
        mb.inbox("bob").ids(), mb.inbox("carol").ids(), mb.inbox("alice").ids(),
        mb.status(msg.id).spool)
    assert [f"{msg.id}.bob@gpu1.json"] == Outbox(mb.root).pending()


def test_remote_mail_for_a_full_inbox_waits_and_is_not_buried(mb: Mailbox) -> None:
    """A remote message for an inbox at its quota is refused for now (the stream keeps it),
    and delivered once the agent has read its mail; a copy it holds already still acks."""
    from agentmailbox.errors import InboxFull

    mb.registry.edit("bob", max_unread=1)
    inbound = Inbound(mb.root, "gpu1")
    route = parse_subject("mail.gpu1.msg.bob.build1", "gpu1")
    first = _remote_message(["bob@gpu1"])
    second = first.replace(b"0123456789abcdef", b"0123456789abcdee")
    assert Outcome.DELIVERED == inbound.deliver(route, first)[0]
    with pytest.raises(InboxFull):
        inbound.deliver(route, second)
    assert Outcome.HELD == inbound.deliver(route, first)[0]
    assert mb.inbox("bob").claim() is not None
    assert (Outcome.DELIVERED, []) == (inbound.deliver(route, second)[0], mb.dead.list())


def test_a_remote_receipt_message_has_one_id_however_often_it_is_made() -> None:
    """The receipt message for (message, recipient, state) is the same message each time,
    so the sender's inbox stores it once."""
    from agentmailbox.bridge.receipts import receipt_message

    record = {"id": "01796000000000000000-0123456789abcdef", "from": "alice", "subject": "s",
              "thread": "t1"}
    made = [receipt_message(record, "bob@gpu1", "read", 1796000000000000001) for _ in range(2)]
    assert (made[0], ("alice",), "t1", "receipt") == (made[1], made[0].to, made[0].thread,
                                                      made[0].kind)
    assert made[0].id != receipt_message(record, "bob@gpu1", "done", 1796000000000000001).id


_ADDER = """
import sys
from agentmailbox import Mailbox
from agentmailbox.addresses import Remote
from agentmailbox.bridge.receipts import Receipts
mb = Mailbox.open(sys.argv[1])
receipts = Receipts(mb.root)
record = receipts.load(sys.argv[2])
from agentmailbox.message import Message
sent = Message(id=record["id"], sender=record["from"], to=tuple(record["to"]), subject="",
               body=None, thread=record["thread"])
for n in range(int(sys.argv[3])):  # as the supervisor adds the agents a routed address reached
    receipts.start(sent, [Remote(f"r{n}", "gpu2")])
"""

_APPLIER = """
import sys
from agentmailbox import Mailbox
from agentmailbox.bridge.receipts import Receipts
mb = Mailbox.open(sys.argv[1])
receipts = Receipts(mb.root)
for n, state in enumerate(("delivered", "read", "done")):
    for agent in range(int(sys.argv[3])):
        receipts.apply(sys.argv[2], f"a{agent}@gpu1", state, 1796000000000000000 + n)
"""


def test_receipts_applied_while_recipients_are_added_are_all_kept(mb: Mailbox) -> None:
    """A bridge applying states while a supervisor adds remote recipients to the same
    message (two processes changing one receipts record) loses neither's changes."""
    msg = mb.send("alice", [f"a{n}@gpu1" for n in range(20)], body="x")
    added, applied = 150, 20
    procs = [subprocess.Popen([sys.executable, "-c", code, str(mb.path), msg.id, str(count)],
                              env=python_env())
             for code, count in ((_ADDER, added), (_APPLIER, applied))]
    assert [0, 0] == [p.wait(timeout=120) for p in procs]
    record = Receipts(mb.root).load(msg.id)
    assert record is not None
    states = Receipts(mb.root).states(record)
    assert {f"r{n}@gpu2" for n in range(added)} <= set(states)
    assert all(states[f"a{n}@gpu1"][0] == "done" for n in range(applied))
