"""Die at every named fault point, recover, and check the reliability promise.

Each case is one transition (a scenario) and one fault point it passes through. The
scenario's call runs in a forked child armed with ``$AGENTMAILBOX_FAULT=<point>``,
which must exit 77 right there. The parent then does what a restarted system does:
``doctor --repair``, lease expiry, a supervisor pass, and the caller's retry of a call
that never returned. Afterwards:

- mail acknowledged before the crash (or by the retry) is held exactly once;
- no inbox holds an id twice, and nothing is stored that nobody was told about,
  except the one send that was in flight without a key;
- every file in ``new/``, ``cur/`` and ``done/`` is a whole message;
- state, handoff and workspace files are the old or the new version, never torn;
- no staging file is left and ``doctor`` reports nothing.

The crash table of docs/RELIABILITY.md is rendered from the outcomes observed here.
After a deliberate change, rewrite it with ``UPDATE_RELIABILITY_DOC=1``.
"""

from __future__ import annotations

import errno
import os
import re
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import ROOT

import agentmailbox.fs as fs
from agentmailbox import Mailbox, StaleVersion, doctor
from agentmailbox.fs import POINTS, faults
from agentmailbox.inbox import Inbox
from agentmailbox.message import Malformed, decode
from agentmailbox.supervisor import Supervisor

FAULT_EXIT = 77          # a process that died at its armed fault point
NOT_REACHED_EXIT = 3     # the scenario finished without passing the point
FAILED_EXIT = 4          # the scenario raised before reaching the point
AGENTS = ("alice", "bob", "carol")
DOC = ROOT / "docs" / "RELIABILITY.md"
TABLE_BEGIN, TABLE_END = "<!-- crash-table:begin -->", "<!-- crash-table:end -->"
HIDDEN_STAGING = re.compile(r"\.[0-9a-f]{16}\.tmp")


# -- what a scenario keeps between before and after the crash -----------------------------------

@dataclass
class Ctx:
    """What a scenario set up before the crash and learned while recovering."""

    mb: Mailbox
    acked: dict[str, set[str]] = field(default_factory=dict)  # agent -> ids told to a caller
    planted: list[str] = field(default_factory=list)  # names put in dead/ on purpose
    documents: list[tuple[str, Any, tuple[Any, ...]]] = field(default_factory=list)
    stray_allowed: int = 0  # unacknowledged messages an inbox may hold (a keyless send)

    def ack(self, msg_id: str, *agents: str) -> None:
        for agent in agents:
            self.acked.setdefault(agent, set()).add(msg_id)

    def document(self, label: str, seen: Any, *allowed: Any) -> None:
        """Record that ``seen`` must be one of ``allowed`` (the old or the new version)."""
        self.documents.append((label, seen, allowed))


_PLACES = {"new": "in new/", "cur": "in cur/", "done": "in done/", "absent": "absent"}


def _where(mb: Mailbox, agent: str, msg_id: str | None) -> str:
    """Where ``msg_id`` is in ``agent``'s inbox, in words."""
    return "absent" if msg_id is None else _PLACES[str(mb.inbox(agent).state_of(msg_id))]


def _unacked(ctx: Ctx, agent: str) -> str | None:
    """The id in ``agent``'s inbox that nobody acknowledged, if any."""
    extra = set(_stored(ctx.mb.inbox(agent))) - ctx.acked.get(agent, set())
    return min(extra) if extra else None


# -- the scenarios ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """One transition: set up, the call that dies, and the recovery after it."""

    transition: str
    points: tuple[str, ...]
    recovery: str
    prepare: Callable[[Ctx], None]
    act: Callable[[Mailbox], object]
    recover: Callable[[Ctx], str]


def _send_prepare(ctx: Ctx) -> None:
    ctx.ack(ctx.mb.send("alice", ["bob", "carol"], subject="acknowledged").id, "bob", "carol")
    ctx.stray_allowed = 1


def _send_by_link(mb: Mailbox) -> None:
    """A send where renameat2 has no RENAME_NOREPLACE (an older kernel or filesystem)."""
    fs._rename_noreplace = lambda src, dest: errno.EINVAL  # in the dying child only
    mb.send("alice", ["bob", "carol"], subject="in flight")


def _send_recover(ctx: Ctx) -> str:
    bob, carol = _unacked(ctx, "bob"), _unacked(ctx, "carol")
    return (f"the unacknowledged send is {_where(ctx.mb, 'bob', bob)} for bob, "
            f"{_where(ctx.mb, 'carol', carol)} for carol; earlier mail is untouched")


KEY = "order-42"


def _keyed_send(mb: Mailbox) -> str:
    return mb.send("alice", ["bob", "carol"], subject="keyed", key=KEY).id


def _marked_id(mb: Mailbox) -> str | None:
    keys = [p for p in (mb.root.agent_dir("alice") / "keys").iterdir() if p.name.endswith(".json")
            and not p.name.startswith(".")]
    return orjson.loads(keys[0].read_bytes())["id"] if keys else None


def _keyed_recover(ctx: Ctx) -> str:
    marked = _marked_id(ctx.mb)
    bob, carol = _unacked(ctx, "bob"), _unacked(ctx, "carol")
    before = f"bob {_where(ctx.mb, 'bob', bob)}, carol {_where(ctx.mb, 'carol', carol)}"
    retried = _keyed_send(ctx.mb)
    ctx.ack(retried, "bob", "carol")
    how = ("reuses the marked id" if retried == marked else
           "marks a new id" if marked is None else "uses a different id")
    return f"before the retry: {before}; the retry {how} and completes the delivery"


def _route_prepare(ctx: Ctx) -> None:
    ctx.ack(ctx.mb.send("alice", "+team", subject="routed").id, "bob", "carol")


def _route(mb: Mailbox) -> None:
    with Supervisor(mb) as sup:
        sup.run_once()


def _spool_holds(mb: Mailbox) -> list[str]:
    return [f"spool/{f}" for f in mb.spool.FOLDERS if mb.spool.names(mb.spool.path / f)]


def _route_recover(ctx: Ctx) -> str:
    (msg_id,) = ctx.acked["bob"]
    spool = ", ".join(_spool_holds(ctx.mb)) or "nothing in the spool"
    before = (f"{spool}; bob {_where(ctx.mb, 'bob', msg_id)}, "
              f"carol {_where(ctx.mb, 'carol', msg_id)}")
    _route(ctx.mb)
    after = ", ".join(_spool_holds(ctx.mb)) or "the spool is empty"
    return f"before the pass: {before}; after one pass {after}"


def _reader_prepare(ctx: Ctx) -> None:
    for i in range(3):
        ctx.ack(ctx.mb.send("alice", "bob", subject=str(i)).id, "bob")


def _claim_and_finish(mb: Mailbox) -> None:
    inbox = mb.inbox("bob")
    msg = inbox.claim()
    assert msg is not None
    inbox.done(msg)


def _claim_all(inbox: Inbox) -> list[str]:
    handled = []
    while (msg := inbox.claim()) is not None:
        handled.append(msg.id)
        inbox.done(msg)
    return handled


def _reader_recover(ctx: Ctx) -> str:
    first = min(ctx.acked["bob"])
    before = _where(ctx.mb, "bob", first)
    inbox = ctx.mb.inbox("bob")
    inbox.requeue_expired(lease_seconds=0)
    handled = _claim_all(inbox)
    once = "each once" if len(handled) == len(set(handled)) else "some twice"
    return (f"the first message is {before} after the repair; the next reader handles "
            f"{len(handled)} of 3, {once}")


def _receipt_prepare(ctx: Ctx) -> None:
    ctx.ack(ctx.mb.send("alice", "bob", subject="tell me", receipt=True).id, "bob")


def _receipts(mb: Mailbox) -> list[str]:
    return [m.id for m in mb.inbox("alice").list() if m.kind == "receipt"]


def _receipt_recover(ctx: Ctx) -> str:
    before = len(_receipts(ctx.mb))
    inbox = ctx.mb.inbox("bob")
    inbox.requeue_expired(lease_seconds=0)
    claimed = inbox.claim()
    receipts = _receipts(ctx.mb)
    for receipt in receipts:
        ctx.ack(receipt, "alice")
    again = "claims it again" if claimed is not None else "finds nothing"
    return (f"{before} receipts before recovery; the next reader {again} and alice then "
            f"holds {len(receipts)} read receipt{'' if len(receipts) == 1 else 's'}")


def _claim_one(mb: Mailbox) -> None:
    mb.inbox("bob").claim()


def _release_prepare(ctx: Ctx) -> None:
    ctx.ack(ctx.mb.send("alice", "bob", subject="give back").id, "bob")


def _claim_and_release(mb: Mailbox) -> None:
    inbox = mb.inbox("bob")
    msg = inbox.claim()
    assert msg is not None
    inbox.release(msg)


def _release_recover(ctx: Ctx) -> str:
    (msg_id,) = ctx.acked["bob"]
    state = _where(ctx.mb, "bob", msg_id)
    claimed = ctx.mb.inbox("bob").claim()
    gets = "gets it" if claimed is not None and claimed.id == msg_id else "does not get it"
    return f"the message is {state} after the repair; the next claim {gets}"


def _release_beside_a_copy(mb: Mailbox) -> None:
    """Claim, let a retried send put a second copy into new/, then give the claim back."""
    inbox = mb.inbox("bob")
    msg = inbox.claim()
    assert msg is not None
    (inbox.new / f"{msg.id}.json").write_bytes((inbox.cur / f"{msg.id}.json").read_bytes())
    inbox.release(msg)


def _duplicate_recover(ctx: Ctx) -> str:
    (msg_id,) = ctx.acked["bob"]
    state = _where(ctx.mb, "bob", msg_id)
    copies = [d.name for d in ctx.mb.dead.list() if d.reason.startswith("duplicate")]
    ctx.planted.extend(copies)  # the redundant copy: the retried send made it
    handled = _claim_all(ctx.mb.inbox("bob"))
    return (f"the message is {state} after the repair, {len(copies)} redundant copy in dead/; "
            f"the next reader handles {len(handled)} of 1")


def _quarantine_prepare(ctx: Ctx) -> None:
    bad = f"{ctx.mb.root.clock.new_id()}.json"
    (ctx.mb.inbox("bob").new / bad).write_bytes(b"")
    ctx.planted.append(bad)
    ctx.ack(ctx.mb.send("alice", "bob", subject="after the bad one").id, "bob")


def _quarantine_recover(ctx: Ctx) -> str:
    dead = [d.name for d in ctx.mb.dead.list()]
    buried = "the empty file" if dead == ctx.planted else f"{dead}"
    (good,) = ctx.acked["bob"]
    return (f"doctor finishes the quarantine: dead/ holds {buried}; the good message is "
            f"{_where(ctx.mb, 'bob', good)}")


HANDOFF_OLD, HANDOFF_NEW = ["step one"], ["step two"]


def _handoff_prepare(ctx: Ctx) -> None:
    ctx.mb.agent("bob").handoff(next=HANDOFF_OLD)


def _write_handoff(mb: Mailbox) -> None:
    mb.agent("bob").handoff(next=HANDOFF_NEW)


def _version_word(seen: Any, old: Any, new: Any) -> str:
    return "old" if seen == old else "new" if seen == new else "torn"


def _handoff_recover(ctx: Ctx) -> str:
    agent = ctx.mb.agent("bob")
    latest = agent.handoffs.latest()
    before = list(latest.next) if latest else None
    ctx.document("newest handoff before the retry", before, HANDOFF_OLD, HANDOFF_NEW)
    _write_handoff(ctx.mb)
    after = agent.handoffs.latest()
    ctx.document("newest handoff after the retry", list(after.next) if after else None,
                 HANDOFF_NEW)
    return (f"the newest handoff is the {_version_word(before, HANDOFF_OLD, HANDOFF_NEW)} one; "
            "the retry makes the new one newest")


def _state_prepare(ctx: Ctx) -> None:
    ctx.mb.agent("bob").state.set("step", 1)


def _set_state(mb: Mailbox) -> None:
    mb.agent("bob").state.set("step", 2)


def _state_recover(ctx: Ctx) -> str:
    agent = ctx.mb.agent("bob")
    before = agent.state.snapshot()
    ctx.document("state.json before the retry", before, {"step": 1}, {"step": 2})
    _set_state(ctx.mb)  # the dead writer's lock went with it: this must not wait
    ctx.document("state.json after the retry", agent.state.snapshot(), {"step": 2})
    return (f"state.json is the {_version_word(before, {'step': 1}, {'step': 2})} version, "
            "whole; the retry takes the lock at once and writes the new one")


PLAN_OLD, PLAN_NEW = b"plan v1\n", b"plan v2\n"


def _ws_prepare(ctx: Ctx) -> None:
    ctx.mb.workspace.put("plan.md", PLAN_OLD)


def _put_plan(mb: Mailbox) -> None:
    mb.workspace.put("plan.md", PLAN_NEW, if_version=1)


def _ws_recover(ctx: Ctx) -> str:
    ws = ctx.mb.workspace
    view = (ws.path / "plan.md").read_bytes()
    ctx.document("workspace view after the repair", view, PLAN_OLD, PLAN_NEW)
    committed = ws.version("plan.md")
    try:
        _put_plan(ctx.mb)
        retry = "writes version 2"
    except StaleVersion:
        retry = "finds version 2 already there (StaleVersion)"
    ctx.document("newest version after the retry", ws.get("plan.md").data, PLAN_NEW)
    ctx.document("view after the retry", (ws.path / "plan.md").read_bytes(), PLAN_NEW)
    return (f"version {committed} is the newest; the view shows the "
            f"{_version_word(view, PLAN_OLD, PLAN_NEW)} version after the repair; a "
            f"compare-and-swap retry {retry}")


REPAIR = "doctor --repair"
SCENARIOS = (
    Scenario("send", ("stage.written", "send.staged", "send.published"),
             f"{REPAIR}; a keyless send is not retried (the sender was never told)",
             _send_prepare, lambda mb: mb.send("alice", ["bob", "carol"], subject="in flight"),
             _send_recover),
    Scenario("send without RENAME_NOREPLACE", ("publish.linked",),
             f"{REPAIR}; a keyless send is not retried (the sender was never told)",
             _send_prepare, _send_by_link, _send_recover),
    Scenario("send with a key",
             ("stage.written", "send.key_marked", "send.staged", "send.published"),
             f"{REPAIR}; the caller retries the same keyed send", lambda ctx: None,
             _keyed_send, _keyed_recover),
    Scenario("route", ("route.claimed", "send.published", "route.delivered",
                       "route.recorded"),
             f"{REPAIR}; one supervisor pass", _route_prepare, _route, _route_recover),
    Scenario("claim and done", ("claim.moved", "claim.taken", "done.moved"),
             f"{REPAIR}; the lease expires; a new reader claims everything",
             _reader_prepare, _claim_and_finish, _reader_recover),
    Scenario("receipt", ("receipt.pending",),
             f"{REPAIR}; the lease expires; a new reader claims it",
             _receipt_prepare, _claim_one, _receipt_recover),
    Scenario("release", ("release.moved",), REPAIR, _release_prepare, _claim_and_release,
             _release_recover),
    Scenario("give back a duplicate", ("settle.held",), REPAIR, _release_prepare,
             _release_beside_a_copy, _duplicate_recover),
    Scenario("quarantine", ("quarantine.reason_written",), REPAIR, _quarantine_prepare,
             _claim_one, _quarantine_recover),
    Scenario("handoff", ("stage.written", "handoff.staged"),
             f"{REPAIR}; the agent writes its handoff again", _handoff_prepare,
             _write_handoff, _handoff_recover),
    Scenario("state set", ("state.locked", "stage.written", "replace.staged"),
             f"{REPAIR}; the caller sets the key again", _state_prepare, _set_state,
             _state_recover),
    Scenario("workspace put", ("stage.written", "ws.versioned", "replace.staged"),
             f"{REPAIR}; the writer retries its compare-and-swap put", _ws_prepare, _put_plan,
             _ws_recover),
)
CASES = {f"{s.transition}@{point}": (s, point) for s in SCENARIOS for point in s.points}


# -- running one case ------------------------------------------------------------------------------

@dataclass
class Run:
    """What one crash left behind, and what recovery made of it."""

    status: int
    outcome: str
    ctx: Ctx
    stored: dict[str, Counter[str]]
    undecodable: list[str]
    leftovers: list[str]
    dead: list[str]
    findings: list[doctor.Finding]


def _die_at(point: str, root: Path, act: Callable[[Mailbox], object]) -> int:
    """Run ``act`` in a forked child armed at ``point``; its wait status."""
    pid = os.fork()
    if pid == 0:
        code = NOT_REACHED_EXIT
        try:
            os.environ["AGENTMAILBOX_FAULT"] = point
            faults.__init__()  # type: ignore[misc]  # read $AGENTMAILBOX_FAULT, as at start-up
            with Mailbox.open(root) as mb:
                act(mb)
        except BaseException:
            traceback.print_exc()
            code = FAILED_EXIT
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _stored(inbox: Inbox) -> Counter[str]:
    files = [*inbox.new.iterdir(), *inbox.cur.iterdir(), *inbox.done_dir.glob("*/*")]
    return Counter(p.name[:-5] for p in files)


def _undecodable(inbox: Inbox) -> list[str]:
    bad = []
    for path in [*inbox.new.iterdir(), *inbox.cur.iterdir(), *inbox.done_dir.glob("*/*")]:
        try:
            decode(path.read_bytes(), expected_id=path.name[:-5])
        except (Malformed, OSError) as exc:
            bad.append(f"{path.name}: {exc}")
    return bad


def _leftovers(top: Path) -> list[str]:
    """Staging files anywhere in the root: in a tmp/ folder, or hidden beside a target."""
    found = []
    for folder, _, files in os.walk(top):
        for name in files:
            if Path(folder).name == "tmp" or HIDDEN_STAGING.fullmatch(name):
                found.append(str(Path(folder, name).relative_to(top)))
    return found


def _run(base: Path, scenario: Scenario, point: str) -> Run:
    setup = Mailbox.init(base, fsync="never", groups={"team": ["bob", "carol"]})
    for name in AGENTS:
        setup.add_agent(name)
    ctx = Ctx(setup)
    scenario.prepare(ctx)
    status = _die_at(point, setup.path, scenario.act)
    with Mailbox.open(setup.path) as mb:  # a restarted process
        ctx.mb = mb
        doctor.check(mb, repair=True, stale_after=0)
        outcome = scenario.recover(ctx)
        inboxes = {name: mb.inbox(name) for name in AGENTS}
        run = Run(status, outcome, ctx,
                  stored={name: _stored(i) for name, i in inboxes.items()},
                  undecodable=[e for i in inboxes.values() for e in _undecodable(i)],
                  leftovers=_leftovers(mb.path), dead=[d.name for d in mb.dead.list()],
                  findings=doctor.check(mb))
    setup.close()
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case, crashed and recovered once."""
    return {case: _run(tmp_path_factory.mktemp("crash"), *CASES[case]) for case in CASES}


# -- the promise, case by case ---------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_the_process_died_at_the_point(runs: dict[str, Run], case: str) -> None:
    """The child exited 77: the point is on this transition's path and fired."""
    status = runs[case].status
    assert (True, FAULT_EXIT) == (os.WIFEXITED(status), os.WEXITSTATUS(status))


@pytest.mark.parametrize("case", CASES)
def test_acknowledged_mail_is_held_exactly_once(runs: dict[str, Run], case: str) -> None:
    """Whatever a caller was told was sent is in each recipient's inbox once after recovery."""
    run = runs[case]
    wrong = [(agent, msg_id, run.stored[agent][msg_id])
             for agent, ids in run.ctx.acked.items() for msg_id in ids
             if run.stored[agent][msg_id] != 1]
    assert [] == wrong


@pytest.mark.parametrize("case", CASES)
def test_no_inbox_holds_an_id_twice(runs: dict[str, Run], case: str) -> None:
    """No id is in two folders, or twice in one, of any inbox."""
    run = runs[case]
    assert [] == [(a, i, n) for a, ids in run.stored.items() for i, n in ids.items() if n > 1]


@pytest.mark.parametrize("case", CASES)
def test_nothing_is_stored_that_nobody_was_told_about(runs: dict[str, Run], case: str) -> None:
    """After the retry every stored message was acknowledged; only a keyless send in flight
    may leave one copy nobody was told about."""
    run = runs[case]
    strays = {agent: set(ids) - run.ctx.acked.get(agent, set())
              for agent, ids in run.stored.items()}
    assert [] == [(a, s) for a, s in strays.items() if len(s) > run.ctx.stray_allowed]


@pytest.mark.parametrize("case", CASES)
def test_no_partial_message_is_visible(runs: dict[str, Run], case: str) -> None:
    """Every file in new/, cur/ and done/ decodes as a whole message under its name."""
    assert [] == runs[case].undecodable


@pytest.mark.parametrize("case", CASES)
def test_files_are_the_old_or_the_new_version(runs: dict[str, Run], case: str) -> None:
    """State, handoff and workspace files read back as one whole version, never torn."""
    torn = [(label, seen) for label, seen, allowed in runs[case].ctx.documents
            if seen not in allowed]
    assert [] == torn


@pytest.mark.parametrize("case", CASES)
def test_recovery_leaves_no_staging_file(runs: dict[str, Run], case: str) -> None:
    """doctor --repair removes every staging file the dead process left."""
    assert [] == runs[case].leftovers


@pytest.mark.parametrize("case", CASES)
def test_dead_letters_are_only_what_was_bad(runs: dict[str, Run], case: str) -> None:
    """A crash sends no good mail to dead/; a planted bad file ends there once."""
    run = runs[case]
    assert run.ctx.planted == run.dead


@pytest.mark.parametrize("case", CASES)
def test_doctor_reports_clean_after_recovery(runs: dict[str, Run], case: str) -> None:
    """After recovery doctor finds nothing at all."""
    assert [] == [f.to_dict() for f in runs[case].findings]


# -- the registry of points, and the table in docs/RELIABILITY.md ----------------------------------

def _hits_in_package() -> tuple[list[str], int]:
    """Every literal ``faults.hit("...")`` in the package, and the count of all calls."""
    source = "".join(p.read_text() for p in sorted((ROOT / "agentmailbox").rglob("*.py")))
    return re.findall(r'faults\.hit\("([^"]+)"\)', source), source.count("faults.hit(")


def test_every_fault_point_in_the_code_is_registered() -> None:
    """Each faults.hit in the package names a point of fs.POINTS, as a literal."""
    literals, calls = _hits_in_package()
    assert ([], len(literals)) == (sorted(set(literals) - set(POINTS)), calls)


def test_every_registered_point_is_in_the_code() -> None:
    """fs.POINTS lists no point that nothing hits."""
    literals, _ = _hits_in_package()
    assert [] == sorted(set(POINTS) - set(literals))


def test_every_registered_point_is_crashed_at() -> None:
    """Each point of fs.POINTS is the death of at least one case here."""
    exercised = {point for _, point in CASES.values()}
    assert [] == sorted(set(POINTS) - exercised)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def crash_table(runs: dict[str, Run]) -> str:
    """The crash table of docs/RELIABILITY.md, from what the runs observed."""
    lines = ["| transition | point | on disk when it fires | recovery | outcome (observed) |",
             "|---|---|---|---|---|"]
    for case, (scenario, point) in CASES.items():
        lines.append(f"| {scenario.transition} | `{point}` | {_cell(POINTS[point])} | "
                     f"{_cell(scenario.recovery)} | {_cell(runs[case].outcome)} |")
    return "\n".join(lines)


def _doc_table(text: str) -> str:
    return text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()


def test_reliability_doc_shows_the_observed_crash_table(runs: dict[str, Run]) -> None:
    """docs/RELIABILITY.md lists every case with the outcome these tests observed."""
    text = DOC.read_text()
    table = crash_table(runs)
    if os.environ.get("UPDATE_RELIABILITY_DOC"):
        head, rest = text.split(TABLE_BEGIN, 1)
        DOC.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}")
        text = DOC.read_text()
    assert table == _doc_table(text)


def test_reliability_doc_lists_every_point() -> None:
    """Every point of fs.POINTS has a row in the crash table of docs/RELIABILITY.md."""
    table = _doc_table(DOC.read_text())
    assert [] == [p for p in POINTS if f"| `{p}` |" not in table]

