"""`mailbox mcp` as an MCP client runs it: a subprocess speaking JSON-RPC on stdin/stdout."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import orjson
import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed: pip install -e '.[mcp]'")

from conftest import deadline, python_env
from mcp import Client, StdioServerParameters

from agentmailbox import Mailbox
from agentmailbox.inbox import State
from agentmailbox.mcptools import NAMES


def environment(mb: Mailbox, agent: str | None) -> dict[str, str]:
    env = {**python_env(), "MAILBOX_ROOT": str(mb.path)}
    env.pop("MAILBOX_AGENT", None)
    return env | ({"MAILBOX_AGENT": agent} if agent else {})


def server(mb: Mailbox, agent: str) -> StdioServerParameters:
    """What a client's configuration says: run `mailbox mcp` with the agent in its env."""
    return StdioServerParameters(command=sys.executable, args=["-m", "agentmailbox", "mcp"],
                                 env=environment(mb, agent))


def test_a_client_initializes_and_lists_the_tools(mb: Mailbox) -> None:
    """A real client starts the server, reads its instructions and its eight tools."""
    async def go() -> tuple[str | None, list[str]]:
        async with Client(server(mb, "bob")) as client:
            return client.instructions, [t.name for t in (await client.list_tools()).tools]
    with deadline(60):
        instructions, names = anyio.run(go)
    assert list(NAMES) == names
    assert instructions is not None and "agent bob" in instructions


def test_two_servers_with_different_agents_exchange_mail_on_one_root(mb: Mailbox) -> None:
    """alice's server sends, bob's server sees and claims it: identity is per process."""
    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with Client(server(mb, "alice")) as alice, Client(server(mb, "bob")) as bob:
            sent = await alice.call_tool("send", {"to": ["bob"], "subject": "plan",
                                                  "body": "step 1"})
            listed = await bob.call_tool("inbox", {})
            read = await bob.call_tool("read", {"claim": True})
            return (sent.structured_content or {}, listed.structured_content or {},
                    read.structured_content or {})
    with deadline(90):
        sent, listed, read = anyio.run(go)
    assert [sent["id"]] == [m["id"] for m in listed["mail"]]
    message = read["message"]
    assert (sent["id"], "alice", "step 1", "claimed") == (
        message["id"], message["sender"], message["body"], message["state"])
    assert [sent["id"]] == mb.inbox("bob").ids(State.CLAIMED)


@pytest.mark.parametrize(("agent", "says"), [
    (None, "mailbox mcp: no agent: $MAILBOX_AGENT is not set"),
    ("carol", "mailbox mcp: $MAILBOX_AGENT names 'carol', which is not registered"),
])
def test_without_a_registered_agent_it_refuses_to_start_with_one_line(
        mb: Mailbox, agent: str | None, says: str) -> None:
    """A misconfigured server exits at once (code 4) with one line on stderr, nothing on
    stdout: the client shows the user why."""
    done = subprocess.run([sys.executable, "-m", "agentmailbox", "mcp"], capture_output=True,
                          text=True, env=environment(mb, agent), timeout=60,
                          stdin=subprocess.DEVNULL)
    assert (4, "") == (done.returncode, done.stdout)
    assert 1 == len(done.stderr.splitlines()) and done.stderr.startswith(says), done.stderr


@pytest.mark.parametrize("argv", [["--agent", "bob", "mcp"], ["mcp", "--agent", "bob"]])
def test_the_agent_option_is_refused_for_serving(argv: list[str], mb: Mailbox) -> None:
    """Only the environment names the server's agent, so a client's config is the truth:
    --agent before or after the command is refused, never silently ignored."""
    done = subprocess.run([sys.executable, "-m", "agentmailbox", *argv],
                          capture_output=True, text=True, env=environment(mb, "alice"),
                          timeout=60, stdin=subprocess.DEVNULL)
    assert 5 == done.returncode and "not --agent" in done.stderr


def rpc(method: str, params: dict[str, Any], msg_id: int | None = None) -> bytes:
    frame: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    return orjson.dumps(frame if msg_id is None else {**frame, "id": msg_id}) + b"\n"


def test_stdout_carries_the_protocol_and_nothing_else(mb: Mailbox) -> None:
    """Every line the server writes on stdout is a JSON-RPC message, warnings and errors
    included (a stray line breaks the client's parser)."""
    original = mb.send("bob", "alice", "plan")
    mb.threads.mark_done(original.thread, "bob")
    calls = [("send", {"to": ["bob"], "subject": "late", "thread": original.thread}),
             ("send", {"to": ["nobody"], "subject": "x"}), ("boot", {}), ("inbox", {})]
    proc = subprocess.Popen([sys.executable, "-m", "agentmailbox", "mcp"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=environment(mb, "alice"))
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[bytes] = []
    with deadline(60):
        proc.stdin.write(rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                            "clientInfo": {"name": "test", "version": "0"}}, 0))
        proc.stdin.write(rpc("notifications/initialized", {}))
        for n, (tool, args) in enumerate(calls, 1):
            proc.stdin.write(rpc("tools/call", {"name": tool, "arguments": args}, n))
        proc.stdin.flush()
        while len([m for m in map(orjson.loads, lines) if "id" in m]) <= len(calls):
            lines.append(proc.stdout.readline())
        proc.stdin.close()
        lines += proc.stdout.read().splitlines()
        proc.wait()
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()
    messages = [orjson.loads(raw) for raw in lines if raw.strip()]
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    results = {m["id"]: m["result"] for m in messages if "result" in m}
    assert "marked done" in " ".join(results[1]["structuredContent"]["notices"])
    assert results[2]["isError"] is True and not results[3].get("isError")
