"""The `mailbox hook ...` commands, fed the JSON Claude Code's hooks reference documents for
each event (tests/hooks/*.json): what reaches stdout, stderr and the exit code."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import deadline, python_env

from agentmailbox import Mailbox
from agentmailbox.handoff import Handoff
from agentmailbox.hooks import CAP, DEFAULT_BUDGET
from agentmailbox.hooks_state import HookState

Cli = Callable[..., Any]
FIXTURES = Path(__file__).parent / "hooks"


def event(name: str, **changes: Any) -> str:
    """The documented sample of event ``name``, with the fields the reference varies."""
    sample = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    return orjson.dumps({**sample, **changes}).decode()


@pytest.fixture
def hook(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run `mailbox hook NAME` as bob (identity from $MAILBOX_AGENT) with ``stdin``."""
    monkeypatch.setenv("MAILBOX_AGENT", "bob")

    def run(name: str, stdin: str, *args: str) -> Any:
        return cli("hook", name, *args, stdin=stdin)

    return run


def context_of(out: str, event_name: str) -> str:
    """The additionalContext of a hook's stdout (which must be exactly one JSON object)."""
    answer = orjson.loads(out)
    assert event_name == answer["hookSpecificOutput"]["hookEventName"]
    text = answer["hookSpecificOutput"]["additionalContext"]
    assert isinstance(text, str)
    return text


# -- session-start ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["startup", "resume", "clear"])
def test_session_start_starts_an_epoch_and_adds_the_brief(source: str, hook: Any,
                                                          mb: Mailbox) -> None:
    """Startup, resume and clear each begin a new instance, whose brief reaches the model."""
    mb.agent("bob").boot()
    mb.send("alice", "bob", subject="plan v1", body="x")
    result = hook("session-start", event("session-start", source=source))
    assert (0, "") == (result.code, result.err)
    text = context_of(result.out, "SessionStart")
    assert "# boot brief: bob (epoch 2)" in text and "plan v1" in text
    assert 2 == Mailbox.open(mb.path).epoch("bob")


def test_session_start_on_compact_keeps_the_epoch(hook: Any, mb: Mailbox) -> None:
    """A compaction is the same session: the brief comes back, the epoch does not move."""
    mb.agent("bob").boot()
    result = hook("session-start", event("session-start", source="compact"))
    assert (0, "") == (result.code, result.err)
    assert "# boot brief: bob (epoch 1)" in context_of(result.out, "SessionStart")
    assert 1 == Mailbox.open(mb.path).epoch("bob")


@pytest.mark.parametrize("epoch", [1, 2])
def test_the_brief_after_a_compaction_speaks_of_this_instance(epoch: int, hook: Any,
                                                              mb: Mailbox) -> None:
    """After pre-compact and a compact session-start, the claimed mail and the checkpoint
    are this instance's own: the brief does not say a previous instance died with them."""
    for _ in range(epoch):
        mb.agent("bob").boot()
    msg = mb.send("alice", "bob", subject="fix it", body="x")
    mb.inbox("bob").claim(msg.id)
    assert hook("pre-compact", event("pre-compact")).code == 0
    text = context_of(hook("session-start", event("session-start", source="compact")).out,
                      "SessionStart")
    assert "continues the current instance" in text
    assert "claimed and not done yet" in text
    assert "previous instance" not in text and "died" not in text


def test_session_start_brief_stays_within_the_cap(hook: Any, mb: Mailbox) -> None:
    """With 500 unread messages and a 50 KB handoff the context stays within the default
    budget, below the harness's 10,000-character cap."""
    for i in range(500):
        mb.send("alice", "bob", subject=f"task {i} " + "x" * 60, body="x",
                priority="urgent" if i % 7 == 0 else "normal")
    config = mb.path / "mailbox.json"
    settings = orjson.loads(config.read_bytes())
    config.write_bytes(orjson.dumps({**settings, "handoff": {"max_bytes": 60_000}}))
    big = tuple("decision " + "y" * 7200 for _ in range(7))
    written = Mailbox.open(mb.path).agent("bob").write_handoff(Handoff(decided=big))
    assert 50_000 <= len(orjson.dumps(written.to_dict()))
    result = hook("session-start", event("session-start"))
    assert (0, "") == (result.code, result.err)
    text = context_of(result.out, "SessionStart")
    assert len(text) <= DEFAULT_BUDGET < CAP
    assert "budget of 9000 characters reached" in text


def test_session_start_refuses_a_budget_over_the_cap(hook: Any, mb: Mailbox) -> None:
    """A budget the harness would truncate is refused on stderr, and the session goes on."""
    result = hook("session-start", event("session-start"), "--budget", "20000")
    assert (0, "") == (result.code, result.out)
    assert 1 == len(result.err.splitlines()) and "10000" in result.err


# -- prompt -------------------------------------------------------------------------------------


def test_prompt_is_silent_when_nothing_changed(hook: Any, mb: Mailbox) -> None:
    """No new mail, no words: the prompt hook adds nothing to the context."""
    mb.agent("bob").boot()
    result = hook("prompt", event("user-prompt-submit"))
    assert (0, "", "") == (result.code, result.out, result.err)


def test_prompt_speaks_once_when_mail_arrives(hook: Any, mb: Mailbox) -> None:
    """New mail is announced once, in one line naming the urgent sender and the command;
    the next prompt says nothing more about it."""
    mb.agent("bob").boot()
    mb.send("alice", "bob", subject="fix it", body="x", priority="urgent")
    mb.send("alice", "bob", subject="later", body="y")
    first = hook("prompt", event("user-prompt-submit"))
    assert (0, "") == (first.code, first.err)
    assert "2 new: 1 urgent from alice — mailbox next" == context_of(first.out, "UserPromptSubmit")
    again = hook("prompt", event("user-prompt-submit"))
    assert (0, "", "") == (again.code, again.out, again.err)


def test_prompt_does_not_repeat_what_the_brief_showed(hook: Any, mb: Mailbox) -> None:
    """Mail the boot brief already put in front of the model is not announced again."""
    mb.send("alice", "bob", subject="in the brief", body="x")
    assert "in the brief" in hook("session-start", event("session-start")).out
    result = hook("prompt", event("user-prompt-submit"))
    assert (0, "", "") == (result.code, result.out, result.err)


def test_prompt_names_the_agent_when_identity_came_from_the_option(
        cli: Cli, mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command it suggests works as pasted: with --agent when $MAILBOX_AGENT is unset."""
    monkeypatch.delenv("MAILBOX_AGENT", raising=False)
    mb.send("alice", "bob", subject="hi", body="x")
    result = cli("hook", "prompt", "--agent", "bob", stdin=event("user-prompt-submit"))
    assert "1 new from alice — mailbox next --agent bob" == context_of(result.out,
                                                                      "UserPromptSubmit")


# -- stop ---------------------------------------------------------------------------------------


def test_stop_blocks_once_for_claimed_mail_not_done(hook: Any, mb: Mailbox) -> None:
    """Mail this session claimed and left unfinished holds the stop once, with the exact
    command; the next stop is let through, so it never loops."""
    bob = Mailbox.open(mb.path).agent("bob")
    bob.boot()
    msg = mb.send("alice", "bob", subject="task", body="x")
    assert bob.inbox.claim() is not None
    first = hook("stop", event("stop", stop_hook_active=False))
    assert (0, "") == (first.code, first.err)
    answer = orjson.loads(first.out)
    assert "block" == answer["decision"] and f"`mailbox done {msg.id}`" in answer["reason"]
    second = hook("stop", event("stop", stop_hook_active=False))
    assert (0, "", "") == (second.code, second.out, second.err)


def test_stop_respects_stop_hook_active(hook: Any, mb: Mailbox) -> None:
    """When the harness says a stop hook already made it continue, the stop is allowed."""
    bob = Mailbox.open(mb.path).agent("bob")
    bob.boot()
    mb.send("alice", "bob", subject="task", body="x")
    assert bob.inbox.claim() is not None
    result = hook("stop", event("stop"))  # the documented sample: stop_hook_active true
    assert (0, "", "") == (result.code, result.out, result.err)


def test_stop_asks_for_a_handoff_after_work(hook: Any, mb: Mailbox) -> None:
    """A session that did work and wrote no handoff is asked for one, by command; once it
    is written the stop goes through."""
    bob = Mailbox.open(mb.path).agent("bob")
    bob.boot()
    bob.send("alice", "done with the plan")
    answer = orjson.loads(hook("stop", event("stop", stop_hook_active=False)).out)
    assert "block" == answer["decision"] and "`mailbox handoff --in-progress" in answer["reason"]
    bob.handoff(next=["review"])
    hook("stop", event("stop", stop_hook_active=False))  # the one after a block passes
    result = hook("stop", event("stop", stop_hook_active=False))
    assert (0, "", "") == (result.code, result.out, result.err)


def test_stop_allows_a_session_that_did_nothing(hook: Any, mb: Mailbox) -> None:
    """No claimed mail and no work: nothing to hold the stop for."""
    mb.agent("bob").boot()
    result = hook("stop", event("stop", stop_hook_active=False))
    assert (0, "", "") == (result.code, result.out, result.err)


# -- pre-compact and session-end ----------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["manual", "auto"])
def test_pre_compact_writes_a_checkpoint_of_working_state(trigger: str, hook: Any,
                                                          mb: Mailbox) -> None:
    """Before compaction the working state and claimed mail are saved as a checkpoint."""
    bob = Mailbox.open(mb.path).agent("bob")
    bob.boot()
    bob.state.set("step", 3)
    msg = mb.send("alice", "bob", subject="task", body="x")
    assert bob.inbox.claim() is not None
    result = hook("pre-compact", event("pre-compact", trigger=trigger))
    assert (0, "", "") == (result.code, result.out, result.err)
    note = Mailbox.open(mb.path).agent("bob").handoffs.latest()
    assert note is not None and not note.final
    assert "state step = 3" in note.in_progress
    assert any(msg.id in item for item in note.in_progress)


def test_session_end_without_a_handoff_shows_in_the_next_brief(hook: Any, mb: Mailbox) -> None:
    """A session that ended without a handoff is named so in the next brief, and the old
    handoff is not taken for the current one."""
    bob = Mailbox.open(mb.path).agent("bob")
    bob.boot()
    bob.handoff(next=["old plan"])
    bob.boot()
    ended = hook("session-end", event("session-end"))
    assert (0, "", "") == (ended.code, ended.out, ended.err)
    brief = context_of(hook("session-start", event("session-start")).out, "SessionStart")
    assert "the last session ended without a handoff" in brief


def test_session_end_with_a_handoff_says_nothing_of_the_kind(hook: Any, mb: Mailbox) -> None:
    """A session that wrote its handoff is not reported as having left none."""
    bob = Mailbox.open(mb.path).agent("bob")
    bob.boot()
    bob.handoff(next=["the plan"])
    hook("session-end", event("session-end", reason="prompt_input_exit"))
    brief = context_of(hook("session-start", event("session-start")).out, "SessionStart")
    assert "without a handoff" not in brief


# -- identity and failures ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "sample"), [
    ("session-start", "session-start"), ("prompt", "user-prompt-submit"), ("stop", "stop"),
    ("pre-compact", "pre-compact"), ("session-end", "session-end")])
def test_a_hook_without_identity_prints_nothing_to_the_model(
        name: str, sample: str, cli: Cli, mb: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $MAILBOX_AGENT a hook never guesses: empty stdout, one line on stderr, exit 0."""
    monkeypatch.delenv("MAILBOX_AGENT", raising=False)
    mb.send("alice", "bob", subject="hi", body="x")
    result = cli("hook", name, stdin=event(sample))
    assert (0, "") == (result.code, result.out)
    assert 1 == len(result.err.splitlines()) and "MAILBOX_AGENT" in result.err


def test_a_hook_that_fails_never_fails_the_session(hook: Any, mb: Mailbox,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown agent, or input that is not JSON: exit 0, one line on stderr."""
    garbled = hook("prompt", "{not json")
    assert (0, "") == (garbled.code, garbled.out)
    assert 1 == len(garbled.err.splitlines())
    monkeypatch.setenv("MAILBOX_AGENT", "nobody")
    result = hook("session-start", event("session-start"))
    assert (0, "") == (result.code, result.out)
    assert 1 == len(result.err.splitlines()) and "nobody" in result.err


# -- wait ---------------------------------------------------------------------------------------


def test_wait_exits_0_at_its_timeout(hook: Any, mb: Mailbox) -> None:
    """No new mail: wait ends quietly at its timeout."""
    result = hook("wait", "", "--timeout", "0.2")
    assert (0, "", "") == (result.code, result.out, result.err)


def test_wait_rings_for_mail_not_yet_surfaced(hook: Any, mb: Mailbox) -> None:
    """New mail makes wait exit 2 with a short doorbell on stderr (which wakes the session)."""
    mb.send("alice", "bob", subject="wake up", body="x", priority="urgent")
    result = hook("wait", "", "--timeout", "5")
    assert (2, "") == (result.code, result.out)
    assert "1 new: 1 urgent from alice — mailbox next\n" == result.err


def _waiter(mb: Mailbox, *args: str) -> subprocess.Popen[str]:
    """`mailbox hook wait` as bob in a process of its own; returns once it is waiting (its
    token is in bob's hook record)."""
    state = HookState(mb.root, "bob")
    before = state.load().get("waiter")
    proc = subprocess.Popen([sys.executable, "-m", "agentmailbox", "hook", "wait", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**python_env(), "MAILBOX_ROOT": str(mb.path),
                                 "MAILBOX_AGENT": "bob"})
    with deadline(30):
        while state.load().get("waiter") in (None, before):
            time.sleep(0.01)
    return proc


def test_wait_rings_when_mail_is_delivered(mb: Mailbox) -> None:
    """A waiting hook is woken by a delivery: exit 2, the doorbell on stderr."""
    proc = _waiter(mb, "--timeout", "60")
    mb.send("alice", "bob", subject="now", body="x")
    out, err = proc.communicate(timeout=60)
    assert (2, "", "1 new from alice — mailbox next\n") == (proc.returncode, out, err)


def test_the_newest_waiter_supersedes_older_ones(mb: Mailbox) -> None:
    """Two waiters of one agent: only the newest rings; the older one ends quietly."""
    older = _waiter(mb, "--timeout", "60")
    newer = _waiter(mb, "--timeout", "60")
    mb.send("alice", "bob", subject="now", body="x")
    assert (2, "") == (newer.wait(timeout=60), newer.communicate()[0])
    out, err = older.communicate(timeout=60)
    assert (0, "", "") == (older.returncode, out, err)
