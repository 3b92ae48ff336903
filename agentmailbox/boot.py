"""The boot brief: what a new instance of an agent reads first, in priority order.

1. **Crash recovery**: mail a previous instance claimed and never finished, stale
   staging files, and whether a handoff was written after the last boot (if not,
   the last instance probably died mid-work).
2. **What changed while down**: unread mail, urgent first, with counts, and how many
   of them waited long and never reached the agent's model (:mod:`agentmailbox.surfacing`); mail
   in a thread already marked done is flagged (completion blindness).
   When ``hook session-end`` recorded that the last session ended without a final
   handoff, the brief says so, so an older handoff is not taken for the current one.
3. **Handoff and working state**: the latest handoff, with every ``waiting_on``
   checked against DONE markers, replies and receipts: resolved (and by what) or
   still open (stale-context defence); then the working state.
4. **History**: not loaded; only how to get it.

The budget is a hard cap on the text as printed: ``len(brief.to_text()) <= budget``,
trailing newline included, whatever the root holds. When everything does not fit, the
brief stops at the first line that does not (priority order, nothing skipped ahead) and
ends with a note of what it left out and how to get it; room for that note is kept from
the start. A budget below :data:`MIN_BUDGET` (200) is refused with
:class:`~agentmailbox.errors.InvalidInput`: below it the heading and that note might not
fit. The JSON form is not capped in characters: it lists exactly the items the text
kept, with their exact values, plus how many each section left out. For the same state
it is the same brief: no "now" in it.
Every text in it that another agent or instance chose (subjects, names, kinds,
handoff notes, state values) is rendered by :func:`agentmailbox.render.line`, so it
cannot forge a section or an item; the JSON form keeps it exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .errors import InvalidInput
from .handoff import Handoff, Waiting
from .hooks_state import HookState
from .inbox import State
from .message import Message, Priority, day_of, stamp_of
from .render import line
from .surfacing import UNSURFACED_AFTER, unsurfaced

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["MIN_BUDGET", "Brief", "build", "check_budget"]

MIN_BUDGET = 200
"""The smallest budget, in characters, a brief is built for: the heading and the note of
what was left out always fit in it."""


@dataclass
class Item:
    """One line of the brief and its structured form."""

    text: str
    data: Any


@dataclass
class Section:
    key: str
    title: str
    items: list[Item] = field(default_factory=list)
    summary: str = ""

    def head(self) -> list[str]:
        """The title line and the summary line (if any): shown together or not at all."""
        return [f"## {self.title}"] + ([self.summary] if self.summary else [])


@dataclass
class Brief:
    """The boot brief of one agent instance."""

    agent: str
    epoch: int | None
    sections: list[Section]
    budget: int
    omitted: int = 0

    def to_text(self) -> str:
        return _render(self)[0]

    def to_dict(self) -> dict[str, Any]:
        _, kept = _render(self)
        out: dict[str, Any] = {"agent": self.agent, "epoch": self.epoch, "budget": self.budget}
        for s in self.sections:
            out[s.key] = {"summary": s.summary, "items": [i.data for i in s.items[: kept[s.key]]],
                          "omitted": len(s.items) - kept[s.key]}
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def shown_mail(self) -> list[str]:
        """The ids of the unread mail the text lists (what surfaces when it is shown)."""
        return [item["id"] for item in self.to_dict()["mail"]["items"]]


def check_budget(budget: int) -> None:
    """Refuse a budget below :data:`MIN_BUDGET`.

    Raises:
        InvalidInput: ``budget`` is below the minimum.
    """
    if budget < MIN_BUDGET:
        raise InvalidInput(f"a boot brief budget of {budget} characters is below the minimum "
                           f"of {MIN_BUDGET}", hint=f"give a budget of {MIN_BUDGET} or more")


def epoch_text(epoch: int | None) -> str:
    """"epoch N", or what stands for it before the agent's first boot (a dry run then)."""
    return "not booted yet" if epoch is None else f"epoch {epoch}"


def _render(brief: Brief) -> tuple[str, dict[str, int]]:
    """Text of at most ``brief.budget`` characters, and how many items of each section fit."""
    check_budget(brief.budget)
    heading = f"# boot brief: {brief.agent} ({epoch_text(brief.epoch)})"
    every = [heading] + [text for s in brief.sections for text in s.head() + _texts(s)]
    if _size(every) <= brief.budget:
        return _join(every), {s.key: len(s.items) for s in brief.sections}
    total = sum(len(s.items) for s in brief.sections)
    # Room for the note is kept first, sized for the most items it could ever name.
    room = brief.budget - _size([_note(brief.budget, total)])
    heading = line(heading, room - 1)  # only a long name at a small budget is cut
    lines, kept = _fit(brief.sections, room - _size([heading]))
    left = total - sum(kept.values())
    return _join([heading, *lines, _note(brief.budget, left)]), kept


def _fit(sections: list[Section], room: int) -> tuple[list[str], dict[str, int]]:
    """The lines that fit in ``room`` characters, in order, stopping at the first that does
    not; and how many items of each section they hold."""
    lines: list[str] = []
    kept = {s.key: 0 for s in sections}
    used = 0
    for s in sections:
        used += _size(s.head())
        if used > room:
            break
        lines += s.head()
        for text in _texts(s):
            used += len(text) + 1
            if used > room:
                return lines, kept
            lines.append(text)
            kept[s.key] += 1
    return lines, kept


def _texts(section: Section) -> list[str]:
    return [item.text for item in section.items]


def _note(budget: int, left: int) -> str:
    return (f"[budget of {budget} characters reached: {left} item(s) and any later sections "
            "left out; raise --budget or use the commands under History]")


def _size(lines: list[str]) -> int:
    """Characters of ``lines`` as printed, one newline after each."""
    return sum(len(text) + 1 for text in lines)


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def build(agent: Agent, *, epoch: int | None, previous_boot_ns: int | None,
          budget: int = 4000, continuing: bool = False) -> Brief:
    """Assemble the brief for ``agent`` (the caller has already started the new epoch).

    ``continuing``: no new epoch was started; the brief is the current instance's own,
    rendered again (after a compaction, or as a dry run), so claimed mail and a checkpoint
    of this epoch are its own work, not a previous instance's.

    Raises:
        InvalidInput: ``budget`` is below :data:`MIN_BUDGET`.
    """
    check_budget(budget)
    inbox = agent.inbox
    unread = inbox.list()
    sections = [
        _recovery(agent, previous_boot_ns, continuing and epoch is not None),
        _mail(agent, unread),
        _handoff(agent, unread),
        _state(agent),
        _history(agent),
    ]
    return Brief(agent.name, epoch, sections, budget)


def _summary(msg: Message, agent: Agent) -> dict[str, Any]:
    # A thread's first message is in that thread too: a request whose own thread was
    # closed must be flagged, or the next instance redoes finished work.
    done = agent.mailbox.threads.done(msg.thread)
    return {"id": msg.id, "from": msg.sender, "subject": msg.subject, "kind": msg.kind,
            "priority": str(msg.priority), "thread": msg.thread, "ts": msg.ts,
            "thread_done": done.to_dict() if done else None}


def _line(msg: Message, summary: dict[str, Any], prefix: str = "-") -> str:
    flags = "".join([f" [{msg.priority}]" if msg.priority in ("urgent", "high") else "",
                     " [thread done: do not redo]" if summary["thread_done"] else "",
                     f" ({line(msg.kind, 40)})" if msg.kind != "message" else ""])
    return f"{prefix} {msg.id} from {line(msg.sender)}: {line(msg.subject)}{flags}"


def _recovery(agent: Agent, previous_boot_ns: int | None, continuing: bool = False
              ) -> Section:
    s = Section("recovery", "1. Crash recovery")
    claimed = agent.inbox.list(State.CLAIMED)
    whose = "claimed and not done yet" if continuing else "claimed by a previous instance"
    for msg in claimed:
        summary = _summary(msg, agent)
        s.items.append(Item(_line(msg, summary, "- unfinished:") +
                            f" ({whose}; finish it, or release it)",
                            {"unfinished": summary}))
    stale = [e.name for e in agent.mailbox.root.disk.scan(agent.inbox.tmp)]
    if stale:
        s.items.append(Item(f"- {len(stale)} staging file(s) in inbox/tmp: run mailbox doctor "
                            "--repair", {"stale_tmp": len(stale)}))
    latest = agent.handoffs.latest()
    if previous_boot_ns is None:
        s.summary = "first boot of this agent."
    elif latest is None or stamp_of(latest.id) < previous_boot_ns:
        s.summary = ("no handoff was written after the previous boot: the last instance "
                     "probably stopped without one; check unfinished work above.")
    elif not latest.final:
        s.summary = (f"the previous instance wrote a checkpoint ({line(latest.at)}) but no final "
                     "handoff: it probably died after it; work since then may be unfinished.")
    else:
        s.summary = "the previous instance wrote a final handoff before stopping."
    if continuing:
        s.summary = ("this brief continues the current instance (after a compaction, or a dry "
                     "run): the claimed mail below and any checkpoint since it began are its "
                     "own work.")
    elif _ended_without_handoff(agent, latest):
        s.summary = ("the last session ended without a handoff: any handoff below is older "
                     "than that session; check unfinished work above.")
    if not s.items and previous_boot_ns is not None:
        s.summary += " Nothing unfinished."
    return s


def _ended_without_handoff(agent: Agent, latest: Handoff | None) -> bool:
    """Whether ``hook session-end`` recorded that the last session wrote no final handoff,
    and none was written since."""
    ended = HookState(agent.mailbox.root, agent.name).ended()
    return (ended is not None and not ended.handoff
            and (latest is None or stamp_of(latest.id) < ended.at))


def _mail(agent: Agent, unread: list[Message]) -> Section:
    s = Section("mail", "2. New mail")
    ordered = sorted(unread, key=lambda m: (Priority(m.priority).rank, m.id))
    counts = Counter(str(m.priority) for m in unread)
    kinds = ", ".join(f"{n} {p}" for p, n in sorted(counts.items(),
                                                  key=lambda kv: Priority(kv[0]).rank))
    s.summary = f"{len(unread)} unread" + (f" ({kinds})" if unread else "") + "."
    never = set(_long_unseen(agent, unread))
    if never:
        oldest = min((m for m in unread if m.id in never), key=lambda m: m.id)
        s.summary += (f" {len(never)} of them waited over {UNSURFACED_AFTER // 60_000_000_000}"
                      f" minutes and never reached this agent's model (the oldest sent "
                      f"{line(oldest.ts, 40)}).")
    for msg in ordered:
        summary = {**_summary(msg, agent), "long_unseen": msg.id in never}
        s.items.append(Item(_line(msg, summary), summary))
    return s


def _long_unseen(agent: Agent, unread: list[Message]) -> list[str]:
    """The unread ids sent over :data:`~agentmailbox.surfacing.UNSURFACED_AFTER` before this
    boot (the epoch record's time, so the brief holds no "now") and never surfaced."""
    record = agent.mailbox.epoch_record(agent.name) or {}
    at = record.get("at")
    if not isinstance(at, int) or not unread:
        return []
    return unsurfaced(agent.mailbox, agent.name, [m.id for m in unread],
                      before=at - UNSURFACED_AFTER)


def _handoff(agent: Agent, unread: list[Message]) -> Section:
    s = Section("handoff", "3. Handoff")
    latest = agent.handoffs.latest()
    if latest is None:
        s.summary = "no handoff yet."
        return s
    s.summary = f"from {line(latest.at)} ({epoch_text(latest.epoch)}, id {line(latest.id)})."
    for key, title in (("in_progress", "in progress"), ("decided", "decided"),
                       ("next", "next"), ("can_wait", "can wait")):
        for text in getattr(latest, key):
            s.items.append(Item(f"- {title}: {line(text, None)}", {"section": key, "text": text}))
    for wait in latest.waiting_on:
        resolved = resolve(agent, wait, unread)
        word = f"RESOLVED by {line(resolved)}" if resolved else "still open"
        s.items.append(Item(f"- waiting on {wait.agent} about {wait.ref}"
                            + (f" ({line(wait.note)})" if wait.note else "") + f": {word}",
                            {"section": "waiting_on", **wait.to_dict(),
                             "resolved": resolved is not None, "resolved_by": resolved}))
    return s


def resolve(agent: Agent, wait: Waiting, unread: list[Message]) -> str | None:
    """What resolved a wait, or None: a DONE marker, a reply, or a receipt."""
    mb = agent.mailbox
    marker = mb.threads.done(wait.ref)
    if marker is not None:
        return f"thread done marker by {marker.by} at {marker.at}"
    if mb.registry.exists(wait.agent) and mb.inbox(wait.agent).state_of(wait.ref) is State.DONE:
        return f"{wait.agent} marked {wait.ref} done"
    for msg in unread:
        if msg.sender == wait.agent and wait.ref in (msg.reply_to, msg.thread):
            return f"{msg.kind} {msg.id} from {wait.agent} (unread)"
    for event in mb.root.journal.events(since_day=day_of(wait.ref)):
        if (event.get("ev") == "send" and event.get("from") == wait.agent
                and agent.name in event.get("to", ())
                and wait.ref in (event.get("reply_to"), event.get("thread"))):
            return f"{event.get('kind', 'message')} {event.get('id')} from {wait.agent}"
    return None


def _state(agent: Agent) -> Section:
    s = Section("state", "Working state")
    snapshot = agent.state.snapshot()
    s.summary = f"{len(snapshot)} key(s)." if snapshot else "empty."
    for key in sorted(snapshot):
        value = orjson.dumps(snapshot[key]).decode()
        s.items.append(Item(f"- {key} = {line(value, 300)}", {"key": key, "value": snapshot[key]}))
    return s


def _history(agent: Agent) -> Section:
    s = Section("history", "4. History (not loaded)")
    n = agent.name
    s.items = [Item(f"- {line(cmd, None)}", {"command": cmd}) for cmd in (
        f"mailbox memory {n} --since YYYY-MM-DD [--tag T] [--grep WORD]",
        f"mailbox handoff {n} --show --history",
        f"mailbox inbox {n} --claimed",
        f"tail -f {agent.memory.directory}/$(date -u +%Y-%m).jsonl",
    )]
    return s
