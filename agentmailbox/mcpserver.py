"""``mailbox mcp``: the bus as an MCP server over stdio, acting as one agent.

The only module that imports ``mcp`` (the ``agentmailbox[mcp]`` extra): it registers the
tools of :mod:`agentmailbox.mcptools` with the SDK's ``MCPServer``, with annotations that
are true of them, and turns a library error into an ``is_error`` result carrying the
error's message and hint. The agent comes from ``$MAILBOX_AGENT`` only (:func:`identity`),
never from a tool's argument, so it cannot change across restarts.

Read-only resources: :data:`INBOX_URI` (the unread mail's headers) and
:data:`THREAD_URI` (a thread as text). While the server runs, a watcher on the agent's
``new/`` tells the clients that asked when the inbox changed: a resource-updated event on
their ``subscriptions/listen`` stream (MCP 2026-07-28), or a
``notifications/resources/updated`` after a ``resources/subscribe`` (the 2025 revisions).
Nothing depends on it: the hooks stay the reliable path.

Stdout carries the protocol alone (the SDK's stdio transport holds fd 1 while it serves);
logs go to stderr.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import orjson
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.types import (
    CallToolResult,
    EmptyResult,
    SubscribeRequestParams,
    TextContent,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel

from . import __version__
from .errors import AgentNotFound, InvalidInput, InvalidName, MailboxError, NotFound
from .mailbox import Mailbox
from .mcptools import NAMES, Tools
from .names import AGENT_ENV
from .render import line

__all__ = ["AGENT_ENV", "BUDGET", "INBOX_URI", "NAME", "THREAD_URI", "build", "identity",
           "instructions", "json_text", "tool_list", "tokens"]

NAME = "mailbox"
"""The server's name: Claude Code shows its tools to the model as ``mcp__mailbox__send``."""
INBOX_URI = "mailbox://inbox"
THREAD_URI = "mailbox://thread/{thread}"
BUDGET = 2_500
"""The most the tool list may cost a model's context, in estimated tokens (:func:`tokens`)."""
NOTIFY_POLL = 1.0
"""Seconds between checks that the server still runs, while the watcher waits for mail."""


def _hints(read_only: bool = False, idempotent: bool = False) -> ToolAnnotations:
    # Nothing here deletes or overwrites what a user keeps, and nothing leaves the root.
    return ToolAnnotations(read_only_hint=read_only, destructive_hint=False,
                           idempotent_hint=idempotent, open_world_hint=False)


ANNOTATIONS: dict[str, ToolAnnotations] = {
    "boot": _hints(),                       # start=true starts a new epoch each call
    "send": _hints(idempotent=True),        # a derived (or the caller's) key
    "inbox": _hints(read_only=True, idempotent=True),
    "read": _hints(),                       # claim=true claims; a second claim is refused
    "done": _hints(idempotent=True),        # done twice: "already"
    "reply": _hints(idempotent=True),       # as send
    "handoff": _hints(),                    # each call writes a note
    "status": _hints(read_only=True, idempotent=True),
}
"""What each tool may do. "Read-only" tools change no mail: they append the ``surface``
record (journal, ``run/hooks.json``) that says what the model was shown."""


def identity(environ: Mapping[str, str], mb: Mailbox) -> str:
    """The agent this server acts as: ``$MAILBOX_AGENT``, registered in ``mb``.

    Raises:
        NotFound: the variable is unset or names no registered agent.
        InvalidInput: it holds no agent name at all (``Bob``, ``bob@host``, ``../x``).
    """
    name = environ.get(AGENT_ENV) or ""
    if not name:
        raise NotFound(f"no agent: ${AGENT_ENV} is not set",
                       hint=f"set {AGENT_ENV}=NAME in the MCP client's configuration of the "
                            "server (docs/INTEGRATIONS.md)")
    try:
        return mb.registry.require(name)
    except InvalidName as exc:
        raise InvalidInput(f"${AGENT_ENV} holds an {exc}", hint=exc.hint) from exc
    except AgentNotFound as exc:
        raise NotFound(f"${AGENT_ENV} names {name!r}, which is not registered here "
                       f"({mb.path})", hint=exc.hint) from exc


def instructions(mb: Mailbox, agent: str) -> str:
    """What the client tells the model about this server: who it is, its unread mail, and
    to boot first after a restart."""
    unread = mb.inbox(agent).count()
    return (f"You are agent {agent} on the mailbox at {mb.path}; {unread} unread message(s) "
            "when this server started. Call boot first after a restart (a new session, a "
            "resume, a compaction). Between tasks check inbox; read claims only with "
            "claim=true; mark finished mail done; write a handoff before you stop.")


def build(mb: Mailbox, agent: str, *, notify: bool = True) -> MCPServer[Any]:
    """The server for ``agent`` on ``mb``, its tools and resources registered."""
    tools = Tools(mb, agent)
    bus = InMemorySubscriptionBus()
    subscribers = Subscribers()
    server: MCPServer[Any] = MCPServer(
        NAME, instructions=instructions(mb, agent), version=__version__, subscriptions=bus,
        log_level="WARNING",
        lifespan=_watching(tools, bus, subscribers) if notify else None)
    subscribers.serve(server)
    for name in NAMES:
        server.add_tool(_as_tool(getattr(tools, name)), name=name,
                        annotations=ANNOTATIONS[name], structured_output=True)
        registered = server._tool_manager.get_tool(name)
        assert registered is not None
        registered.fn_metadata = Verbatim(**{field: getattr(registered.fn_metadata, field)
                                             for field in FuncMetadata.model_fields})
    server.resource(INBOX_URI, name="inbox", mime_type="text/plain",
                    description="Headers of your unread mail")(_as_resource(tools.inbox_text))
    server.resource(THREAD_URI, name="thread", mime_type="text/plain",
                    description="A thread's messages as text")(_as_resource(tools.thread_text))
    return server


class Verbatim(FuncMetadata):
    """The SDK's argument handling, but a string given for an optional text argument (a
    thread, a reply's subject, a key) stays that string: the SDK would parse ``"null"`` as
    JSON (no thread, so a new one) and ``'["draft"]'`` into a list it then refuses. Lists
    given as JSON text for a list argument are still parsed."""

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        parsed = super().pre_parse_json(data)
        fields = self.arg_model.model_fields
        return {key: data[key] if key in fields and _optional_text(fields[key].annotation)
                else value for key, value in parsed.items()}


def _optional_text(annotation: Any) -> bool:
    """``str | None``, the ``str`` perhaps ``Annotated`` with constraints."""
    members = typing.get_args(annotation)
    return (typing.get_origin(annotation) in (typing.Union, types.UnionType)
            and {getattr(m, "__origin__", m) for m in members} == {str, type(None)})


def _as_tool(method: Callable[..., BaseModel]) -> Callable[..., Any]:
    """``method`` as the SDK calls it: on the event loop (the library's calls take
    milliseconds), a library error as a ToolError with its message and hint, a result as
    its structured content and that content as escaped JSON text (:func:`json_text`)."""
    @functools.wraps(method)
    async def tool(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            result = method(*args, **kwargs)
        except MailboxError as exc:
            raise ToolError(_text(exc)) from exc
        data = result.model_dump(mode="json")
        return CallToolResult(content=[TextContent(type="text", text=json_text(data))],
                              structured_content=data)
    return tool


def json_text(data: Any) -> str:
    """``data`` as the indented JSON text a model reads, every character that is not
    printable (the C1 controls, DEL, bidirectional overrides, ...) written as a ``\\u``
    escape: JSON escapes only those below U+0020, and mail text comes from any writer.
    Parsed, the text is ``data`` again."""
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    if text.replace("\n", "").isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _as_resource(method: Callable[..., str]) -> Callable[..., Any]:
    """``method`` as a resource: a library error as a ResourceError with its hint."""
    @functools.wraps(method)
    async def read(*args: Any, **kwargs: Any) -> str:
        try:
            return method(*args, **kwargs)
        except MailboxError as exc:
            raise ResourceError(_text(exc)) from exc
    return read


def _text(exc: MailboxError) -> str:
    """The error and its hint on one escaped line: a message may quote what a file held."""
    return line(f"{exc}" + (f" (hint: {exc.hint})" if exc.hint else ""), None)


class Subscribers:
    """The sessions that sent ``resources/subscribe`` (the 2025 revisions' way to ask for
    change notifications; 2026-07-28 clients listen on the bus instead)."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[Any]] = {}

    def serve(self, server: MCPServer[Any]) -> None:
        """Answer ``resources/subscribe`` and ``unsubscribe`` on ``server``. (MCPServer
        registers no handler for them, so its low-level server gets them.)"""
        low = server._lowlevel_server
        low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams,
                                self._unsubscribe)

    async def _subscribe(self, ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        listed = self.sessions.setdefault(str(params.uri), [])
        if ctx.session not in listed:
            listed.append(ctx.session)
        return EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        listed = self.sessions.get(str(params.uri), [])
        if ctx.session in listed:
            listed.remove(ctx.session)
        return EmptyResult()

    async def updated(self, uri: str) -> None:
        """Tell each subscribed session that ``uri`` changed; one that is gone is dropped."""
        for session in list(self.sessions.get(uri, [])):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a closed session: the client went away
                self.sessions[uri].remove(session)


def _watching(tools: Tools, bus: InMemorySubscriptionBus, subscribers: Subscribers
              ) -> Callable[[MCPServer[Any]], Any]:
    """The server's lifespan: a watcher on the agent's ``new/`` that tells listening and
    subscribed clients the inbox resource changed."""
    @asynccontextmanager
    async def lifespan(server: MCPServer[Any]) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(_notify, tools, bus, subscribers)
            yield
            group.cancel_scope.cancel()
    return lifespan


async def _notify(tools: Tools, bus: InMemorySubscriptionBus, subscribers: Subscribers
                  ) -> None:
    from .watch import Watcher  # only the running server watches

    box = tools.mb.inbox(tools.agent)
    seen = set(box.ids())
    with Watcher(box.new) as watcher:
        while True:
            await anyio.to_thread.run_sync(watcher.wait, NOTIFY_POLL, abandon_on_cancel=True)
            now = set(box.ids())
            if now != seen:
                seen = now
                await bus.publish(ResourceUpdated(uri=INBOX_URI))
                await subscribers.updated(INBOX_URI)


async def tool_list(server: MCPServer[Any]) -> list[dict[str, Any]]:
    """The tool list as ``tools/list`` sends it (names, descriptions, schemas,
    annotations), as JSON objects."""
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True)
            for t in await server.list_tools()]


def tokens(tools: list[dict[str, Any]]) -> int:
    """The documented estimate of what the tool list costs a model's context: the
    characters of its compact JSON divided by 4, rounded up."""
    return -(-len(orjson.dumps(tools)) // 4)
