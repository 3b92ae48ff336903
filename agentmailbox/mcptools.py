"""The MCP server's tools: eight thin wrappers over the library calls the CLI makes.

=========  ==================================================================================
boot       the boot brief of the session-start hook (a new epoch, or the current one again)
send       to agents and routed addresses; unknown recipients refused; idempotent by default
inbox      headers of unread (and claimed) mail; changes no mail
read       one message in full; claims it only when asked
done       mark claimed mail done
reply      to a message's sender, in its thread; optionally done
handoff    the note the next session boots with
status     where a message is, per recipient; or who is on the bus, alive or offline
=========  ==================================================================================

The agent is fixed when the server starts (:mod:`agentmailbox.mcpserver`), never an
argument. Mail a tool puts in front of the model is recorded as surfaced
(:mod:`agentmailbox.surfacing`), as the hooks and the CLI record it. *Idempotent by
default*: a send or reply without a caller's key gets one derived from the logical call
(agent, epoch, the normalized arguments and a :data:`WINDOW` of time), so a client that
retries a call stores nothing twice (the library's keys, PROTOCOL.md §9.7). The workspace
has no tool: an agent with an MCP client has file tools of its own, and the team's shared
files are one ``mailbox ws`` away; the eight here are what a restarting agent needs.

This module uses pydantic (typed inputs with constraints, structured outputs) and not
``mcp``; :mod:`agentmailbox.mcpserver` registers these methods with the SDK.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field

from . import surfacing
from .addresses import is_routed
from .errors import Conflict, NotFound, ThreadDoneWarning
from .handoff import Handoff, Waiting
from .hooks import DEFAULT_BUDGET
from .inbox import State
from .mailbox import Mailbox
from .message import Message, iso, reply_subject
from .presence import Presence
from .render import block, line

__all__ = ["NAMES", "WINDOW", "Tools", "derive_key"]

NAMES = ("boot", "send", "inbox", "read", "done", "reply", "handoff", "status")
"""The tools, in the order they are listed."""
WINDOW = 300
"""Seconds: the same send (or reply) again within this window (at most twice it) stores
nothing new; a derived key covers the window it falls in and the one before."""

Id = Annotated[str, Field(min_length=1, max_length=80)]
OptId = Annotated[str | None, Field(max_length=80)]
Text = Annotated[str, Field(max_length=200)]
Items = Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=20)]
Key = Annotated[str | None, Field(max_length=200, description="idempotency key (default: "
                                  "derived from the call)")]
PriorityName = Literal["low", "normal", "high", "urgent"]


class BootBrief(BaseModel):
    agent: str
    epoch: int | None
    brief: str


class Sent(BaseModel):
    id: str
    to: list[str]
    thread: str
    duplicate: bool
    notices: list[str]


class Header(BaseModel):
    id: str
    sender: str
    subject: str
    date: str
    priority: str
    thread: str
    state: str


class InboxPage(BaseModel):
    unread: int
    claimed: int
    mail: list[Header]


class Mail(Header):
    to: list[str]
    kind: str
    reply_to: str | None
    body: Any
    claimed_until: str | None


class ReadResult(BaseModel):
    message: Mail | None


class Finished(BaseModel):
    done: list[str]
    already: list[str]


class HandoffNote(BaseModel):
    id: str
    at: str
    final: bool


class AgentRow(BaseModel):
    name: str
    role: str
    liveness: str
    last_seen: str | None
    unread: int


class StatusResult(BaseModel):
    message: dict[str, Any] | None
    agents: list[AgentRow] | None


class Tools:
    """The tools of one agent's server: ``Tools(mb, "bob").send(["alice"], "hi", "...")``."""

    def __init__(self, mb: Mailbox, agent: str, *, clock: Callable[[], float] = time.time
                 ) -> None:
        self.mb = mb
        self.agent = mb.registry.require(agent)
        self._clock = clock

    # -- the tools (each docstring is the description the model reads) ---------------------

    def boot(self, start: bool = True) -> BootBrief:
        """Your boot brief: crash recovery, new mail, last handoff, state. Call first
        after a restart; it starts a new session epoch (start=false: show it again)."""
        self._refresh()
        brief = self.mb.agent(self.agent).boot(budget=DEFAULT_BUDGET, start_epoch=start)
        surfacing.record(self.mb, self.agent, brief.shown_mail(), "brief", unread=True)
        return BootBrief(agent=self.agent, epoch=brief.epoch, brief=brief.to_text())

    def send(self, to: Annotated[list[Annotated[str, Field(max_length=80)]],
                                 Field(min_length=1, max_length=50)],
             subject: Text, body: str = "", priority: PriorityName = "normal",
             thread: OptId = None, reply_to: OptId = None, key: Key = None) -> Sent:
        """Send mail to agents or routed addresses (@role, #topic, +group, *). Unknown
        recipients are refused. The same call retried stores one message."""
        self._refresh()
        self._check_reachable(to)
        return self._send(to, subject, body, priority=priority, thread=thread,
                          reply_to=reply_to, key=key)

    def inbox(self, limit: Annotated[int, Field(ge=1, le=100)] = 20,
              claimed: bool = False) -> InboxPage:
        """Headers of your unread mail, oldest first (claimed=true: claimed mail too).
        Changes no mail."""
        self._refresh()
        box = self.mb.inbox(self.agent)
        mail = box.list()  # what a read can be handed: a bad file is neither listed nor counted
        unread = mail[:limit]
        held = box.list(State.CLAIMED)[:limit] if claimed else []
        surfacing.record(self.mb, self.agent, [m.id for m in unread], "mcp", unread=True)
        return InboxPage(unread=len(mail), claimed=box.count(State.CLAIMED),
                         mail=[_header(m, "unread") for m in unread]
                         + [_header(m, "claimed") for m in held])

    def read(self, id: OptId = None, claim: bool = False) -> ReadResult:
        """One message in full (default: your oldest unread). claim=true also claims it:
        it is yours until you mark it done."""
        self._refresh()
        id = id or None  # "" is what some clients send for "not given", as status takes it
        box = self.mb.inbox(self.agent)
        if claim:
            msg = box.claim(id)
            if msg is None and id is not None:
                raise box.unclaimable(id) or Conflict(f"{id} could not be claimed")
        else:
            msg = box.get(id) if id is not None else next(iter(box.list()), None)
        if msg is None:
            return ReadResult(message=None)
        surfacing.record(self.mb, self.agent, [msg.id], "mcp", unread=not claim)
        until = box.lease_end(msg.id) if claim else None
        return ReadResult(message=_mail(msg, box.state_of(msg.id), until))

    def done(self, ids: Annotated[list[Id], Field(min_length=1, max_length=100)]) -> Finished:
        """Mark claimed messages done (finished). Marking one twice is harmless."""
        self._refresh()
        box = self.mb.inbox(self.agent)
        results = {i: box.done(i) for i in ids}
        return Finished(done=[i for i, new in results.items() if new],
                        already=[i for i, new in results.items() if not new])

    def reply(self, id: Id, body: str, subject: Text | None = None, done: bool = False,
              key: Key = None) -> Sent:
        """Reply to a message in your inbox: to its sender, in its thread. done=true also
        marks it done."""
        self._refresh()
        box = self.mb.inbox(self.agent)
        original = box.get(id)
        sent = self._send([original.sender], reply_subject(original.subject)
                          if subject is None else subject, body, thread=original.thread,
                          reply_to=original.id, key=key)
        if done:
            box.finish(original.id)
        return sent

    def handoff(self, in_progress: Items = [], decided: Items = [],  # noqa: B006
                next: Items = [], can_wait: Items = [], waiting_on: Items = [],  # noqa: B006
                checkpoint: bool = False) -> HandoffNote:
        """Write the note your next session boots with. waiting_on items: "agent:id[:note]".
        checkpoint=true while still working; the final note before you stop."""
        self._refresh()
        note = Handoff(tuple(in_progress), tuple(decided), tuple(next), tuple(can_wait),
                       tuple(Waiting.parse(w) for w in waiting_on))
        written = self.mb.agent(self.agent).write_handoff(
            dataclasses.replace(note, final=not checkpoint))
        return HandoffNote(id=written.id, at=written.at, final=written.final)

    def status(self, id: OptId = None) -> StatusResult:
        """Where a message is, per recipient (delivered, surfaced, read, done). Without id:
        every agent, its role, whether it is alive, its unread count."""
        if id:
            return StatusResult(message=self.mb.status(id).to_dict(), agents=None)
        presence, now = Presence(self.mb.root), time.time_ns()
        rows = [AgentRow(name=info.name, role=info.role,
                         liveness=str(presence.liveness(info.name, now)),
                         last_seen=_seen(presence, info.name),
                         unread=self.mb.inbox(info.name).count())
                for info in self.mb.agents()]
        return StatusResult(message=None, agents=rows)

    # -- the resources (read-only, and not surfacing: a client may read them for a person) ---

    def inbox_text(self) -> str:
        """The headers of the agent's unread mail, one line each, oldest first."""
        mail = self.mb.inbox(self.agent).list()
        return "\n".join([f"{len(mail)} unread for {self.agent}",
                          *(_header_line(m) for m in mail)]) + "\n"

    def thread_text(self, thread: str) -> str:
        """The messages of ``thread`` that this agent sent or received, oldest first.

        Raises:
            NotFound: the agent has none in that thread.
        """
        shown = [m for m in map(self._own_copy, self.mb.threads.sent_in(thread)) if m]
        if not shown:
            raise NotFound(f"no mail of {self.agent} in thread {thread!r}",
                           hint="a thread id is a message id, or the name given at send")
        marker = self.mb.threads.done(thread)
        state = (f"done by {line(marker.by or '?')} at {line(marker.at)}" if marker
                 else "open")
        parts = [f"thread {line(thread)}: {state}, {len(shown)} message(s)"]
        for msg in shown:
            parts += ["", _header_line(msg) + f" to {line(', '.join(msg.to))}",
                      block(msg.body if isinstance(msg.body, str)
                            else orjson.dumps(msg.body).decode())]
        return "\n".join(parts) + "\n"

    def _own_copy(self, event: dict[str, Any]) -> Message | None:
        """The message of a send event, if this agent received it or sent it. The event
        only says where to look: a copy in another inbox counts if the message itself
        names this agent as its sender (a journal line is no proof)."""
        msg_id = str(event.get("id"))
        holders = [self.agent] if event.get("from") != self.agent else \
            [self.agent, *self.mb.registry.list_names()]
        for name in dict.fromkeys(holders):
            box = self.mb.inbox(name)
            if box.state_of(msg_id) is not State.ABSENT:
                msg = box.get(msg_id)
                if name == self.agent or msg.sender == self.agent:
                    return msg
        return None

    # -- the shared send path ----------------------------------------------------------------

    def _send(self, to: list[str], subject: str, body: str, **fields: Any) -> Sent:
        key = fields.pop("key")
        call = {"to": sorted(set(to)), "subject": subject, "body": body, **fields}
        key, duplicate = (key, self._used(key)) if key else self._derived(call)
        with warnings.catch_warnings(record=True) as caught:  # told to the model, not stderr
            warnings.simplefilter("always", ThreadDoneWarning)
            msg = self.mb.send(self.agent, to, subject, body, key=key,
                               epoch=self.mb.epoch(self.agent), **fields)
        told = [str(w.message) for w in caught if issubclass(w.category, ThreadDoneWarning)]
        for other in (w for w in caught if not issubclass(w.category, ThreadDoneWarning)):
            warnings.warn(other.message, other.category, stacklevel=2)
        return Sent(id=msg.id, to=list(msg.to), thread=msg.thread, duplicate=duplicate,
                    notices=told + self._notices(msg))

    def _derived(self, call: dict[str, Any]) -> tuple[str, bool]:
        """The derived key of ``call``: the previous window's when that one was used
        (a retry just across the boundary), else this window's."""
        slot = int(self._clock() // WINDOW)
        here, before = (derive_key(self.agent, self.mb.epoch(self.agent), call, s)
                        for s in (slot, slot - 1))
        if self._used(before):
            return before, True
        return here, self._used(here)

    def _used(self, key: str) -> bool:
        return self.mb.root.disk.exists(self.mb.key_marker(self.agent, key))

    def _check_reachable(self, to: list[str]) -> None:
        """Refuse a routed address that reaches nobody now (an agent name the library
        checks itself): mail to nobody is never a silent success.

        Raises:
            NotFound: an address expands to no registered agent.
        """
        routed = [a for a in to if is_routed(a)]
        if not routed:
            return
        from .routing import Directory

        directory = Directory.load(self.mb.registry, self.mb.config)
        for address in routed:
            expansion = directory.expand(address, self.agent)
            if not expansion.agents:
                why = "; ".join(u.reason for u in expansion.unroutable)
                raise NotFound(f"{address} reaches nobody: {why}",
                               hint="see who is there with the status tool")

    def _notices(self, msg: Message) -> list[str]:
        """What the sender should know: recipients offline, routed mail waiting."""
        from .notices import after_send

        return after_send(self.mb, msg).lines()

    def _refresh(self) -> None:
        """Read the agent's epoch again: a hook in another process may have started one."""
        record = self.mb.epoch_record(self.agent)
        if record is not None:
            self.mb.set_epoch(self.agent, int(record["epoch"]))


def derive_key(agent: str, epoch: int | None, call: dict[str, Any], slot: int) -> str:
    """The idempotency key of one logical call: the same agent, epoch, arguments and
    window slot give the same key."""
    text = orjson.dumps({"agent": agent, "epoch": epoch, "slot": slot, "call": call},
                        option=orjson.OPT_SORT_KEYS)
    return "mcp:" + hashlib.sha256(text).hexdigest()[:32]


def _seen(presence: Presence, agent: str) -> str | None:
    beat = presence.last(agent)
    return iso(beat.at) if beat else None


def _header_line(msg: Message) -> str:
    flag = {"urgent": " [urgent]", "high": " [high]"}.get(str(msg.priority), "")
    # Each field a planted file may fill (readers accept any string) goes through line().
    return f"{msg.id}  {line(msg.ts)}  from {line(msg.sender)}{flag}: {line(msg.subject)}"


def _header(msg: Message, state: str) -> Header:
    return Header(id=msg.id, sender=msg.sender, subject=msg.subject, date=msg.ts,
                  priority=str(msg.priority), thread=msg.thread or msg.id, state=state)


def _mail(msg: Message, state: State, until: int | None) -> Mail:
    words = {State.NEW: "unread", State.CLAIMED: "claimed", State.DONE: "done"}
    return Mail(**_header(msg, words.get(state, str(state))).model_dump(), to=list(msg.to),
                kind=msg.kind, reply_to=msg.reply_to, body=msg.body,
                claimed_until=iso(until) if until else None)
