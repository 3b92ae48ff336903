"""Agent continuity: handoffs, the three layers, the boot brief, epochs and DONE markers."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from conftest import ROOT, python_env

from agentmailbox import DiskFull, HandoffTooLarge, InvalidInput, Mailbox
from agentmailbox.errors import ThreadDoneWarning
from agentmailbox.fs import faults
from agentmailbox.memory import Memory, WorkingState


def test_newest_handoff_supersedes_and_history_is_kept(mb: Mailbox) -> None:
    """latest() is the newest handoff; history() keeps every one, oldest first."""
    bob = mb.agent("bob")
    first = bob.handoff(next=["write tests"])
    second = bob.handoff(in_progress=["tests half written"], next=["finish tests"])
    assert bob.handoffs.latest() == second
    assert [h.id for h in bob.handoffs.history()] == [first.id, second.id]


def test_handoff_over_item_budget_says_what_to_cut(mb: Mailbox) -> None:
    """Too many items in a section is refused, naming the section and the budget."""
    with pytest.raises(HandoffTooLarge, match="next: 9 items, budget 7"):
        mb.agent("bob").handoff(next=[f"step {i}" for i in range(9)])
    assert mb.agent("bob").handoffs.latest() is None


def test_handoff_over_byte_budget_says_how_much_to_cut(mb: Mailbox) -> None:
    """An oversized handoff is refused with the bytes to cut and the largest section."""
    with pytest.raises(HandoffTooLarge, match=r"cut \d+ bytes \(largest section: decided\)"):
        mb.agent("bob").handoff(decided=["x" * 3000, "y" * 2000])


def test_handoff_waiting_on_must_name_an_agent_and_an_id(mb: Mailbox) -> None:
    """waiting_on entries are schema-checked: a valid agent name and a message/thread id."""
    with pytest.raises(InvalidInput):
        mb.agent("bob").handoff(next=["x"], waiting_on=["alice:not-an-id"])
    with pytest.raises(InvalidInput):
        mb.agent("bob").handoff(next=["x"],
                                waiting_on=["../etc:01795800124550229859-a665c8d6e88c66ff"])


def test_empty_handoff_is_refused(mb: Mailbox) -> None:
    """A handoff with nothing in it is an error, not a silent no-op."""
    with pytest.raises(InvalidInput, match="empty handoff"):
        mb.agent("bob").handoff()


def test_handoff_that_cannot_be_written_fails_loudly(mb: Mailbox, monkeypatch) -> None:
    """A write failure raises, and no partial handoff is visible afterwards."""
    monkeypatch.setattr(faults, "point", "handoff.staged")
    monkeypatch.setattr(faults, "action", "raise")
    with pytest.raises(DiskFull):
        mb.agent("bob").handoff(next=["x"])
    monkeypatch.setattr(faults, "point", "")
    assert mb.agent("bob").handoffs.latest() is None
    assert [p.name for p in mb.agent("bob").handoffs.directory.iterdir()] == []


def test_state_set_get_unset(mb: Mailbox) -> None:
    """Working state keys are set, read and removed; values are any JSON."""
    state = mb.agent("bob").state
    state["current_task"] = "refactor parser"
    state.set("files", ["a.py", "b.py"])
    assert dict(state) == {"current_task": "refactor parser", "files": ["a.py", "b.py"]}
    assert state.unset("files") is True
    assert state.unset("files") is False
    assert state.snapshot() == {"current_task": "refactor parser"}


@pytest.mark.slow
def test_concurrent_state_sets_from_two_processes_lose_no_update(mb: Mailbox) -> None:
    """Two processes setting 100 keys each at once: all 200 keys are there."""
    code = ("import sys; from agentmailbox import Mailbox; "
            "s = Mailbox.open(sys.argv[1]).agent('bob').state\n"
            "for i in range(100): s.set(f'{sys.argv[2]}{i}', i)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(mb.path), p], env=python_env(),
                              cwd=ROOT) for p in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(mb.agent("bob").state.snapshot()) == 200


def test_layers_offer_no_way_to_append_state_or_rewrite_memory() -> None:
    """State has no append; memory has no set, update or delete."""
    assert not any(hasattr(WorkingState, m) for m in ("append", "extend", "remember"))
    assert not any(hasattr(Memory, m) for m in ("set", "update", "delete", "unset", "rewrite",
                                                "__setitem__", "__delitem__"))


def test_memory_is_append_only_and_filterable(mb: Mailbox) -> None:
    """Remembering appends a line and never changes earlier bytes; queries filter."""
    bob = mb.agent("bob")
    bob.remember("the CI box needs 2 GB swap", tags=["infra"])
    path = bob.memory.current_file()
    before = path.read_bytes()
    bob.remember("parser uses a Pratt loop", tags=["design"])
    assert path.read_bytes().startswith(before)
    assert [e.text for e in bob.memory.events(tag="infra")] == ["the CI box needs 2 GB swap"]
    assert [e.text for e in bob.memory.events(grep="PRATT")] == ["parser uses a Pratt loop"]
    assert bob.memory.events(since="2999-01-01") == []


def test_torn_last_memory_line_is_skipped(mb: Mailbox) -> None:
    """A crash mid-append leaves a torn line that readers skip; earlier events survive."""
    bob = mb.agent("bob")
    bob.remember("kept")
    with bob.memory.current_file().open("ab") as f:
        f.write(b'{"t": 1, "text": "to')
    assert [e.text for e in bob.memory.events()] == ["kept"]


def test_agent_edit_changes_identity(mb: Mailbox) -> None:
    """Registry.edit is how role and topics change; agent.json reflects it."""
    mb.registry.edit("bob", role="reviewer", topics=("build",))
    info = mb.agent("bob").info
    assert (info.role, info.topics) == ("reviewer", ("build",))


def test_boot_starts_a_new_epoch_each_time(mb: Mailbox) -> None:
    """Each boot increments the instance epoch."""
    bob = mb.agent("bob")
    assert bob.epoch is None
    assert [bob.boot().epoch, bob.boot().epoch] == [1, 2]


def test_claims_record_the_epoch_of_the_instance(mb: Mailbox) -> None:
    """status shows which instance epoch read the message."""
    msg = mb.send("alice", "bob")
    bob = mb.agent("bob")
    bob.boot()
    bob.boot()
    bob.inbox.claim()
    read = mb.status(msg.id).recipients[0]
    assert read.read_epoch == 2


def test_boot_lists_unfinished_claims_first(mb: Mailbox) -> None:
    """Mail claimed by a previous instance and not done is the first thing in the brief."""
    msg = mb.send("alice", "bob", subject="half done")
    bob = mb.agent("bob")
    bob.boot()
    bob.inbox.claim()
    brief = bob.boot().to_dict()
    assert brief["recovery"]["items"][0]["unfinished"]["id"] == msg.id
    assert "no handoff was written" in brief["recovery"]["summary"]


def test_boot_notes_a_handoff_written_after_the_last_boot(mb: Mailbox) -> None:
    """A clean stop (handoff after boot) is told apart from a crash (none)."""
    bob = mb.agent("bob")
    bob.boot()
    bob.handoff(next=["continue"])
    assert "wrote a final handoff" in bob.boot().to_dict()["recovery"]["summary"]


def test_boot_tells_a_checkpoint_from_a_final_handoff(mb: Mailbox) -> None:
    """A checkpoint without a final handoff means the last instance died after it."""
    bob = mb.agent("bob")
    bob.boot()
    bob.handoff(in_progress=["chunk 3 of 9"], final=False)
    summary = bob.boot().to_dict()["recovery"]["summary"]
    assert "checkpoint" in summary and "no final handoff" in summary
    assert bob.handoffs.latest().final is False


def test_boot_lists_urgent_mail_first_with_counts(mb: Mailbox) -> None:
    """New mail is ordered urgent first and counted by priority."""
    mb.send("alice", "bob", subject="normal")
    urgent = mb.send("alice", "bob", subject="fire", priority="urgent")
    mail = mb.agent("bob").boot().to_dict()["mail"]
    assert mail["items"][0]["id"] == urgent.id
    assert mail["summary"] == "2 unread (1 urgent, 1 normal)."


def test_boot_checks_waiting_on_against_replies_and_done_markers(mb: Mailbox) -> None:
    """A wait answered by a reply, or by a DONE marker, is resolved; others stay open."""
    bob = mb.agent("bob")
    mb.add_agent("carol")
    asked_alice = bob.send("alice", "review?")
    asked_carol = bob.send("carol", "data?")
    asked_done = bob.send("alice", "old question")
    bob.handoff(next=["merge"], waiting_on=[f"alice:{asked_alice.id}", f"carol:{asked_carol.id}",
                                            f"alice:{asked_done.id}"])
    mb.send("alice", "bob", subject="looks good", reply_to=asked_alice.id)
    alice = mb.inbox("alice")
    alice.claim(asked_done.id)
    alice.done(asked_done.id)
    waits = [i for i in bob.boot().to_dict()["handoff"]["items"] if i["section"] == "waiting_on"]
    assert [(w["ref"], w["resolved"]) for w in waits] == [
        (asked_alice.id, True), (asked_carol.id, False), (asked_done.id, True)]
    assert "alice marked" in waits[2]["resolved_by"]


def test_boot_brief_stops_at_the_budget_and_says_so(mb: Mailbox) -> None:
    """A small budget keeps the highest-priority sections and names what it left out."""
    for i in range(40):
        mb.send("alice", "bob", subject=f"message number {i}")
    text = mb.agent("bob").boot(budget=600).to_text()
    assert len(text) <= 600
    assert "## 1. Crash recovery" in text and "## 3. Handoff" not in text
    assert "budget of 600 characters reached" in text


def test_boot_brief_is_deterministic_for_the_same_state(mb: Mailbox) -> None:
    """Rendering the brief twice without a new epoch gives identical output."""
    mb.send("alice", "bob", subject="x")
    bob = mb.agent("bob")
    bob.boot()
    assert bob.boot(start_epoch=False).to_text() == bob.boot(start_epoch=False).to_text()


def test_done_thread_mail_is_flagged_not_hidden(mb: Mailbox) -> None:
    """New mail in a done thread still shows in the brief, flagged as done."""
    first = mb.send("alice", "bob", subject="job")
    mb.agent("alice").thread_done(first.thread)
    with pytest.warns(ThreadDoneWarning):
        late = mb.send("alice", "bob", subject="late", thread=first.thread)
    items = mb.agent("bob").boot().to_dict()["mail"]["items"]
    flagged = {i["id"]: i["thread_done"] is not None for i in items}
    assert flagged[late.id] is True


def test_thread_done_is_idempotent(mb: Mailbox) -> None:
    """The first DONE marker of a thread stays; a second call reports it."""
    msg = mb.send("alice", "bob")
    _, created = mb.threads.mark_done(msg.thread, "bob", "merged")
    again, created_again = mb.threads.mark_done(msg.thread, "alice")
    assert (created, created_again) == (True, False)
    assert again.by == "bob" and again.note == "merged"


def test_continuity_commands(cli, mb: Mailbox) -> None:
    """The CLI writes and shows handoffs, state, memory, identity, boot and threads."""
    q = cli("send", "--from", "bob", "--to", "alice", "--subject", "review?").out.strip()
    assert cli("handoff", "bob", "--in-progress", "parser", "--decided", "chose X because Y",
               "--next", "tests", "--can-wait", "docs", "--waiting-on", f"alice:{q}").code == 0
    shown = cli("handoff", "bob", "--show", "--json").json()
    assert shown["waiting_on"] == [{"agent": "alice", "ref": q, "note": ""}]
    assert cli("state", "bob", "set", "current_task", "refactor parser").code == 0
    assert cli("state", "bob", "get", "current_task").out == "refactor parser\n"
    assert cli("state", "bob", "get", "nope").code == 4
    assert cli("remember", "bob", "the CI box needs 2 GB swap", "--tag", "infra").code == 0
    assert [e["text"] for e in cli("memory", "bob", "--tag", "infra", "--json").json()] == [
        "the CI box needs 2 GB swap"]
    assert cli("agent", "edit", "bob", "--role", "reviewer", "--topic", "build").code == 0
    assert cli("agent", "show", "bob", "--json").json()["topics"] == ["build"]
    brief = cli("boot", "bob", "--json", "--budget", "4000").json()
    assert brief["epoch"] == 1 and brief["handoff"]["items"]
    assert cli("thread", "done", q, "--as", "alice").code == 0
    assert cli("thread", "show", q, "--json").json()["done"]["by"] == "alice"


def test_handoff_from_markdown_on_stdin(cli) -> None:
    """A Markdown handoff (## headings, - bullets) on stdin is parsed into sections."""
    text = "## In progress\n- parser\n## Next\n- tests\n- docs\n"
    out = cli("handoff", "bob", "--file", "-", "--json", stdin=text)
    assert out.code == 0, out.err
    assert (orjson.loads(out.out)["next"]) == ["tests", "docs"]


def test_handoff_over_budget_exits_7_with_what_to_cut(cli) -> None:
    """The CLI refuses an overloaded handoff with exit 7 and says what to cut."""
    out = cli("handoff", "bob", *(arg for i in range(9) for arg in ("--next", f"s{i}")))
    assert out.code == 7
    assert "keep the 7 that matter" in out.err
