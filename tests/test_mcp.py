"""The MCP server in-process, through the SDK's own client: every tool, its schema, its
errors, identity, idempotent sends, and read-only tools that leave mail state alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed: pip install -e '.[mcp]'")

from conftest import mail_state, python_env
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import CallToolResult

from agentmailbox import Mailbox
from agentmailbox.errors import NotFound
from agentmailbox.hooks_state import HookState
from agentmailbox.mcpserver import (
    BUDGET,
    INBOX_URI,
    build,
    identity,
    tokens,
    tool_list,
)
from agentmailbox.mcptools import WINDOW, Tools
from agentmailbox.presence import Presence


def session(mb: Mailbox, agent: str, body: Callable[[Client], Awaitable[Any]], *,
            notify: bool = False) -> Any:
    """Run ``body`` with a client connected in-process to ``agent``'s server on ``mb``."""
    async def go() -> Any:
        async with Client(build(mb, agent, notify=notify)) as client:
            return await body(client)
    return anyio.run(go)


def call(mb: Mailbox, agent: str, tool: str, **args: Any) -> CallToolResult:
    async def one(client: Client) -> CallToolResult:
        return await client.call_tool(tool, args)
    result: CallToolResult = session(mb, agent, one)
    return result


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a call that must have worked."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


# -- the tool list -----------------------------------------------------------------------------

SNAPSHOT = {
    "boot": ([], ["start"], (False, False, False)),
    "send": (["to", "subject"], ["to", "subject", "body", "priority", "thread", "reply_to", "key"],
             (False, False, True)),
    "inbox": ([], ["limit", "claimed"], (True, False, True)),
    "read": ([], ["id", "claim"], (False, False, False)),
    "done": (["ids"], ["ids"], (False, False, True)),
    "reply": (["id", "body"], ["id", "body", "subject", "done", "key"], (False, False, True)),
    "handoff": ([], ["in_progress", "decided", "next", "can_wait", "waiting_on", "checkpoint"],
                (False, False, False)),
    "status": ([], ["id"], (True, False, True)),
}
"""Per tool: required arguments, every argument, (read-only, destructive, idempotent)."""


def test_the_tool_list_is_eight_tools_with_these_arguments_and_annotations(mb: Mailbox) -> None:
    """Clients see exactly these tools, arguments and hints; a change shows up here first."""
    tools = anyio.run(tool_list, build(mb, "bob", notify=False))
    seen = {t["name"]: (t["inputSchema"].get("required", []), list(t["inputSchema"]["properties"]),
                        (t["annotations"]["readOnlyHint"], t["annotations"]["destructiveHint"],
                         t["annotations"]["idempotentHint"]))
            for t in tools}
    assert SNAPSHOT == seen
    assert all(t["outputSchema"]["type"] == "object" and t["description"] for t in tools)


def test_the_schemas_carry_the_constraints(mb: Mailbox) -> None:
    """Arguments are typed and bounded, so a model's bad call is refused before it acts."""
    tools = {t["name"]: t["inputSchema"]["properties"]
             for t in anyio.run(tool_list, build(mb, "bob", notify=False))}
    assert (1, 50) == (tools["send"]["to"]["minItems"], tools["send"]["to"]["maxItems"])
    assert 200 == tools["send"]["subject"]["maxLength"]
    assert ["low", "normal", "high", "urgent"] == tools["send"]["priority"]["enum"]
    assert (1, 100) == (tools["inbox"]["limit"]["minimum"], tools["inbox"]["limit"]["maximum"])


def test_the_whole_tool_list_costs_at_most_the_budget(mb: Mailbox) -> None:
    """Eight tools stay cheap: names, descriptions and schemas cost at most 2,500 tokens
    (characters/4 of the compact JSON of tools/list)."""
    tools = anyio.run(tool_list, build(mb, "bob", notify=False))
    assert 8 == len(tools)
    assert tokens(tools) <= BUDGET == 2_500


def test_instructions_name_the_agent_its_unread_mail_and_boot_first(mb: Mailbox) -> None:
    """The model is told who it is, how much mail waits, and to boot after a restart."""
    mb.send("alice", "bob", "one")
    async def told(client: Client) -> str | None:
        return client.instructions
    text = session(mb, "bob", told)
    assert "agent bob" in text and "1 unread" in text and "Call boot first" in text


# -- identity ----------------------------------------------------------------------------------


def test_identity_comes_from_mailbox_agent_only(mb: Mailbox) -> None:
    """The server acts as $MAILBOX_AGENT; unset or unknown, it refuses, naming the fix."""
    assert "bob" == identity({"MAILBOX_AGENT": "bob"}, mb)
    with pytest.raises(NotFound, match=r"MAILBOX_AGENT is not set"):
        identity({"AGENTMAILBOX_AGENT": "bob"}, mb)
    with pytest.raises(NotFound, match=r"'carol', which is not registered") as refused:
        identity({"MAILBOX_AGENT": "carol"}, mb)
    assert "mailbox agent add carol" in refused.value.hint


def test_no_tool_takes_an_identity_argument(mb: Mailbox) -> None:
    """No call can act as another agent: the identity is not an argument of any tool."""
    tools = anyio.run(tool_list, build(mb, "bob", notify=False))
    props = {p for t in tools for p in t["inputSchema"]["properties"]}
    assert set() == props & {"agent", "sender", "from", "as", "me"}


# -- boot, send --------------------------------------------------------------------------------


def test_boot_starts_an_epoch_and_returns_the_brief_it_surfaces(mb: Mailbox) -> None:
    """boot is the session-start brief: a new epoch, the unread mail, recorded as shown."""
    msg = mb.send("alice", "bob", "plan v1")
    out = ok(call(mb, "bob", "boot"))
    assert (1, "bob") == (out["epoch"], out["agent"])
    assert "plan v1" in out["brief"] and "epoch 1" in out["brief"]
    assert {msg.id} == HookState(mb.root, "bob").surfaced(1)
    assert 1 == ok(call(mb, "bob", "boot", start=False))["epoch"]


def test_send_delivers_to_the_agent_and_says_where(mb: Mailbox) -> None:
    """send stores one message in the recipient's inbox and returns its id and thread."""
    out = ok(call(mb, "alice", "send", to=["bob"], subject="plan", body="steps",
                  priority="high"))
    msg = mb.inbox("bob").get(out["id"])
    assert ("alice", "plan", "steps", "high") == (msg.sender, msg.subject, msg.body,
                                                  msg.priority)
    assert (["bob"], out["id"], False) == (out["to"], out["thread"], out["duplicate"])


def test_send_to_an_unknown_agent_is_an_error_and_stores_nothing(mb: Mailbox) -> None:
    """A typo in a recipient is refused with the fix, never a silent send."""
    text = error_text(call(mb, "alice", "send", to=["bob", "carol"], subject="x"))
    assert "no agent named 'carol'" in text and "mailbox agent add carol" in text
    assert [] == mb.inbox("bob").ids()


def test_send_to_a_routed_address_that_reaches_nobody_is_an_error(mb: Mailbox) -> None:
    """@role, #topic, +group with no member are refused, not spooled for nobody."""
    text = error_text(call(mb, "alice", "send", to=["@tester"], subject="x"))
    assert "@tester reaches nobody: no agent has role 'tester'" in text


def test_send_to_a_role_is_spooled_and_says_no_supervisor_runs(mb: Mailbox) -> None:
    """Routed mail goes to the spool; the sender hears that it waits for a supervisor."""
    out = ok(call(mb, "alice", "send", to=["@coder"], subject="review"))
    assert ["@coder"] == out["to"]
    assert any("supervisor" in n for n in out["notices"])


def test_a_retried_send_stores_one_message(mb: Mailbox) -> None:
    """A client that retries a call (same arguments, no key) stores nothing twice."""
    args = {"to": ["bob"], "subject": "plan", "body": "steps"}
    first, again = ok(call(mb, "alice", "send", **args)), ok(call(mb, "alice", "send", **args))
    assert (first["id"], False, True) == (again["id"], first["duplicate"], again["duplicate"])
    assert [first["id"]] == mb.inbox("bob").ids()


def test_a_retry_just_across_the_window_boundary_stores_one_message(mb: Mailbox) -> None:
    """The window has no edge a retry can fall over: the previous window's key is reused."""
    now = [WINDOW * 1000 - 1.0]
    tools = Tools(mb, "alice", clock=lambda: now[0])
    first = tools.send(["bob"], "plan", "steps")
    now[0] += 2.0
    again = tools.send(["bob"], "plan", "steps")
    assert (first.id, True) == (again.id, again.duplicate)
    assert 1 == mb.inbox("bob").count()


def test_the_same_send_after_the_window_is_new_mail(mb: Mailbox) -> None:
    """The same words sent again later (two windows on) are a new message."""
    now = [WINDOW * 1000.0]
    tools = Tools(mb, "alice", clock=lambda: now[0])
    first = tools.send(["bob"], "ping", "")
    now[0] += 2 * WINDOW
    later = tools.send(["bob"], "ping", "")
    assert first.id != later.id and not later.duplicate
    assert 2 == mb.inbox("bob").count()


def test_a_caller_key_stores_one_message_whatever_the_time(mb: Mailbox) -> None:
    """A key given by the caller is the library's idempotency key, as `send --id`."""
    first = ok(call(mb, "alice", "send", to=["bob"], subject="a", key="task-7"))
    again = ok(call(mb, "alice", "send", to=["bob"], subject="a", key="task-7"))
    assert (first["id"], True) == (again["id"], again["duplicate"])


def test_send_to_an_agent_whose_heartbeat_is_stale_says_it_is_queued(mb: Mailbox) -> None:
    """Nobody waits on a dead agent unknowingly: the result says since when it is offline."""
    path = Presence(mb.root).path("bob")
    Presence(mb.root).beat("bob")
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()),
                                   "at": 1_700_000_000 * 10**9}))
    out = ok(call(mb, "alice", "send", to=["bob"], subject="x"))
    assert any(n.startswith("queued: bob offline since 2023-11-14T22:13:20") for n in
               out["notices"]), out["notices"]


# -- inbox, read, done, reply, handoff, status -------------------------------------------------


def test_inbox_lists_headers_oldest_first_and_records_them_as_shown(mb: Mailbox) -> None:
    """inbox gives headers only, and what it listed is not announced again by the hook."""
    one, two = mb.send("alice", "bob", "one", "body 1"), mb.send("alice", "bob", "two")
    mb.agent("bob").boot()
    out = ok(call(mb, "bob", "inbox"))
    assert (2, 0) == (out["unread"], out["claimed"])
    assert [(one.id, "one", "unread"), (two.id, "two", "unread")] == [
        (m["id"], m["subject"], m["state"]) for m in out["mail"]]
    assert "body" not in out["mail"][0]
    assert {one.id, two.id} <= (HookState(mb.root, "bob").surfaced(1) or set())


def test_what_the_server_shows_counts_for_the_epoch_a_hook_started_since(mb: Mailbox) -> None:
    """A session-start hook (another process) starts an epoch while the server runs: what
    the server lists after it is recorded for that epoch, so the prompt hook stays quiet."""
    msg = mb.send("alice", "bob", "plan")
    mb.agent("bob").boot()
    server = build(mb, "bob", notify=False)
    with Mailbox.open(mb.path) as elsewhere:
        elsewhere.agent("bob").boot()

    async def listing() -> None:
        async with Client(server) as client:
            await client.call_tool("inbox", {})
    anyio.run(listing)
    assert {msg.id} == HookState(mb.root, "bob").surfaced(2)


def test_inbox_limit_and_claimed_mail(mb: Mailbox) -> None:
    """limit caps the listing; claimed=true adds the mail claimed and not done."""
    ids = [mb.send("alice", "bob", f"m{i}").id for i in range(3)]
    mb.inbox("bob").claim(ids[0])
    out = ok(call(mb, "bob", "inbox", limit=1, claimed=True))
    assert [(ids[1], "unread"), (ids[0], "claimed")] == [(m["id"], m["state"])
                                                         for m in out["mail"]]


READ_ONLY: dict[str, Callable[[str], dict[str, Any]]] = {
    "inbox": lambda i: {"claimed": True},
    "read": lambda i: {"id": i},
    "read oldest": lambda i: {},
    "status": lambda i: {},
    "status id": lambda i: {"id": i},
}


@pytest.mark.parametrize("name", sorted(READ_ONLY))
def test_read_only_tools_leave_the_mail_state_unchanged(name: str, mb: Mailbox) -> None:
    """Listing, reading without claim and status change no mail: the root's tree is byte
    for byte the same, but for the surfacing records (journal/, agents/*/run/hooks.json)."""
    msg = mb.send("alice", "bob", "plan", "steps")
    mb.inbox("bob").claim(mb.send("alice", "bob", "held").id)
    mb.agent("bob").boot()
    before = mail_state(mb.path)
    ok(call(mb, "bob", name.split()[0], **READ_ONLY[name](msg.id)))
    assert before == mail_state(mb.path)


@pytest.mark.keeps_thread("the SDK reads a template resource on an AnyIO worker thread, "
                         "which may still be stopping when the test ends")
def test_resources_leave_the_mail_state_unchanged(mb: Mailbox) -> None:
    """Reading the inbox and a thread as resources changes nothing, records included."""
    msg = mb.send("alice", "bob", "plan", "steps")
    before = mail_state(mb.path)

    async def read(client: Client) -> None:
        await client.read_resource(INBOX_URI)
        await client.read_resource(f"mailbox://thread/{msg.thread}")
    session(mb, "bob", read)
    assert before == mail_state(mb.path)


def test_read_shows_a_message_in_full_without_claiming_it(mb: Mailbox) -> None:
    """read without claim is a peek: the message stays unread."""
    msg = mb.send("alice", "bob", "plan", {"steps": 3})
    out = ok(call(mb, "bob", "read"))["message"]
    assert (msg.id, {"steps": 3}, "unread", None) == (out["id"], out["body"], out["state"],
                                                      out["claimed_until"])
    assert [msg.id] == mb.inbox("bob").ids()


def test_read_of_an_empty_inbox_is_no_message_not_an_error(mb: Mailbox) -> None:
    """Nothing to read is an answer (message null), not a failure."""
    assert {"message": None} == ok(call(mb, "bob", "read", claim=True))


def test_read_claim_then_done_finishes_the_message(mb: Mailbox) -> None:
    """claim=true claims (with the lease's end); done marks it done, twice harmlessly."""
    msg = mb.send("alice", "bob", "plan")
    out = ok(call(mb, "bob", "read", id=msg.id, claim=True))["message"]
    assert ("claimed", True) == (out["state"], bool(out["claimed_until"]))
    assert {"done": [msg.id], "already": []} == ok(call(mb, "bob", "done", ids=[msg.id]))
    assert {"done": [], "already": [msg.id]} == ok(call(mb, "bob", "done", ids=[msg.id]))
    assert mb.inbox("bob").is_done(msg.id)


def test_claiming_a_claimed_message_is_an_error_with_what_to_do(mb: Mailbox) -> None:
    """A second claim is refused with the commands that settle it."""
    msg = mb.send("alice", "bob", "plan")
    mb.inbox("bob").claim(msg.id)
    text = error_text(call(mb, "bob", "read", id=msg.id, claim=True))
    assert "is claimed already" in text and f"mailbox done {msg.id}" in text


def test_done_of_a_message_that_is_not_there_is_an_error(mb: Mailbox) -> None:
    """A wrong id is an error result naming it, not a crash of the server."""
    text = error_text(call(mb, "bob", "done", ids=["01796176735378453593-766a1b558364adb8"]))
    assert "01796176735378453593-766a1b558364adb8" in text


def test_reply_goes_to_the_sender_in_the_thread_and_can_finish(mb: Mailbox) -> None:
    """reply answers in the thread, "re: " once, and with done=true finishes the original."""
    msg = mb.send("alice", "bob", "plan")
    out = ok(call(mb, "bob", "reply", id=msg.id, body="on it", done=True))
    answer = mb.inbox("alice").get(out["id"])
    assert ("re: plan", msg.thread, msg.id, "on it") == (answer.subject, answer.thread,
                                                        answer.reply_to, answer.body)
    assert mb.inbox("bob").is_done(msg.id)


def test_handoff_is_what_the_next_boot_reads(mb: Mailbox) -> None:
    """The note written through MCP is the one the next session's brief shows."""
    mb.agent("bob").boot()
    out = ok(call(mb, "bob", "handoff", in_progress=["refactor"], next=["run tests"]))
    assert out["final"] is True
    assert "run tests" in mb.agent("bob").boot().to_text()


def test_status_shows_each_recipient_and_the_agents(mb: Mailbox) -> None:
    """status ID says where mail is per recipient; without an id, who is on the bus."""
    msg = mb.send("alice", "bob", "plan")
    out = ok(call(mb, "alice", "status", id=msg.id))
    assert [("bob", "delivered")] == [(r["agent"], r["state"])
                                      for r in out["message"]["recipients"]]
    team = ok(call(mb, "alice", "status"))["agents"]
    assert [("alice", 0), ("bob", 1)] == [(a["name"], a["unread"]) for a in team]


@pytest.mark.parametrize(("tool", "args", "says"), [
    ("inbox", {"limit": 0}, "limit"),
    ("send", {"to": [], "subject": "x"}, "to"),
    ("send", {"to": ["bob"], "subject": "x", "priority": "asap"}, "priority"),
    ("read", {"id": "../../etc/passwd"}, "invalid"),
    ("handoff", {}, "empty"),
])
def test_bad_arguments_are_error_results_that_say_which(tool: str, args: dict[str, Any],
                                                         says: str, mb: Mailbox) -> None:
    """A bad call comes back as an error result naming the problem; the server goes on."""
    assert says in error_text(call(mb, "bob", tool, **args)).lower()


# -- resources and notifications ---------------------------------------------------------------


@pytest.mark.keeps_thread("the SDK reads a template resource on an AnyIO worker thread, "
                         "which may still be stopping when the test ends")
def test_the_inbox_and_a_thread_are_resources_as_text(mb: Mailbox) -> None:
    """A client can attach the inbox headers or a whole thread as plain text."""
    msg = mb.send("alice", "bob", "plan", "step 1\nstep 2")
    mb.send("bob", "alice", "re: plan", "ok", reply_to=msg.id)

    async def read(client: Client) -> tuple[str, str]:
        inbox = (await client.read_resource(INBOX_URI)).contents[0]
        thread = (await client.read_resource(f"mailbox://thread/{msg.thread}")).contents[0]
        return getattr(inbox, "text", ""), getattr(thread, "text", "")
    inbox, thread = session(mb, "bob", read)
    assert inbox.startswith("1 unread for bob\n") and "plan" in inbox
    assert "2 message(s)" in thread and "| step 2" in thread and "| ok" in thread


@pytest.mark.keeps_thread("the SDK's worker thread idles for 10 s after the watcher's wait")
def test_a_listening_client_is_told_when_new_mail_arrives(mb: Mailbox) -> None:
    """A client that listens hears that the inbox resource changed when mail arrives."""
    async def listen(client: Client) -> str:
        async with client.listen(resource_subscriptions=[INBOX_URI]) as events:
            mb.send("alice", "bob", "news")
            with anyio.fail_after(10):
                event = await events.__anext__()
        return str(getattr(event, "uri", ""))
    assert INBOX_URI == session(mb, "bob", listen, notify=True)


@pytest.mark.keeps_thread("the SDK's worker thread idles for 10 s after the watcher's wait")
def test_a_client_that_subscribed_the_2025_way_is_told_when_new_mail_arrives(
        mb: Mailbox) -> None:
    """A client on a 2025 revision that sent resources/subscribe gets
    notifications/resources/updated for the inbox when mail arrives."""
    told = anyio.Event()
    seen: list[str] = []

    async def handler(message: Any) -> None:
        uri = getattr(getattr(getattr(message, "root", message), "params", None), "uri", None)
        if uri is not None:
            seen.append(str(uri))
            told.set()

    async def go() -> None:
        async with Client(build(mb, "bob"), mode="legacy", message_handler=handler) as client:
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.subscribe is True
            with pytest.warns(MCPDeprecationWarning):
                await client.subscribe_resource(INBOX_URI)
            mb.send("alice", "bob", "news")
            with anyio.fail_after(10):
                await told.wait()
    anyio.run(go)
    assert [INBOX_URI] == seen


def test_import_agentmailbox_does_not_load_mcp() -> None:
    """The extra costs nothing to those who do not serve MCP."""
    code = ("import sys, agentmailbox, agentmailbox.cli; agentmailbox.Mailbox; "
            "print(sorted(m for m in sys.modules if m == 'mcp' or 'mcp' in m.split('.')[-1]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=python_env(), timeout=60, check=True)
    assert "[]" == done.stdout.strip()
