"""Surfacing: when mail reached a model's context, as a record anyone can check.

Mail that is stored but never put in front of the model is the commonest way an agent
team fails: nobody is told, everybody waits. So the moment a model acting as an agent is
shown a message is recorded. A message is *surfaced* to its recipient when it appears
in that agent's boot brief, is counted in a hook's line (``hook prompt``, ``hook wait``),
or its text is printed by ``mailbox next``, ``read``, ``peek`` or ``inbox`` run as that
agent (identity from ``--agent`` or ``$MAILBOX_AGENT``, not another agent's name given as
the argument), or by the MCP server.

Each showing appends one ``surface`` journal line (PROTOCOL.md §12): ``agent``,
``epoch``, ``ids`` and ``via`` (one of :data:`VIA`). ``mailbox status ID`` shows the
first one between delivered and read; the boot brief says which unread mail never
reached any earlier instance; ``mailbox agents`` counts unread mail sent more than
:data:`UNSURFACED_AFTER` ago and never surfaced.

Surfacings that leave the mail unread (a brief, a hook's line, a listing) also join the
epoch's *surfaced set* in ``run/hooks.json`` (:mod:`agentmailbox.hooks_state`), which is
what keeps ``hook prompt`` from announcing twice in one epoch what the model was already
shown. The journal is the record; the set is the fast path the prompt hook reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import MailboxError
from .hooks_state import HookState
from .message import day_of, stamp_of

if TYPE_CHECKING:
    from .mailbox import Mailbox

__all__ = ["CHUNK", "UNSURFACED_AFTER", "VIA", "first_surfaced", "record", "unsurfaced"]

VIA = ("brief", "prompt", "wait", "next", "read", "peek", "inbox", "mcp")
"""How mail can reach a model: what a ``surface`` line's ``via`` says."""
UNSURFACED_AFTER = 600 * 10**9
"""Unread mail sent longer ago than this (ns: 10 minutes) and never surfaced is flagged
by ``mailbox agents``."""
CHUNK = 1000
"""At most this many ids in one journal line (a line stays far below the journal's 1 MiB)."""


def record(mb: Mailbox, agent: str, ids: Iterable[str], via: str, *,
           unread: bool = False) -> None:
    """Record that the messages ``ids`` of ``agent``'s inbox reached its model ``via``.

    ``unread``: they stay unread (a listing, a brief, a hook's line), so they join this
    epoch's surfaced set and ``hook prompt`` does not announce them again. Best effort, as
    the journal: a failure to record never fails the showing.
    """
    if via not in VIA:
        raise ValueError(f"unknown way to surface mail: {via!r}")
    shown = sorted(set(ids))
    if not shown:
        return
    epoch = mb.epoch(agent)
    for start in range(0, len(shown), CHUNK):
        mb.root.journal.record("surface", agent=agent, epoch=epoch,
                               ids=shown[start:start + CHUNK], via=via)
    if unread:
        try:
            HookState(mb.root, agent).add_surfaced(epoch, shown)
        except MailboxError:
            pass  # hooks.json cannot be written (a folder planted there, a full disk)


def first_surfaced(mb: Mailbox, agent: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """For each of ``ids`` ever surfaced to ``agent``: its first ``surface`` line (``t``,
    ``epoch``, ``via``), read from the journal from the day of the oldest id on."""
    wanted = set(ids)
    if not wanted:
        return {}
    since = day_of(min(wanted, key=stamp_of))
    found: dict[str, dict[str, Any]] = {}
    for ev in mb.root.journal.events(since_day=since):
        if ev["ev"] != "surface" or ev.get("agent") != agent:
            continue
        for msg_id in wanted.intersection(ev.get("ids") or ()):
            found.setdefault(msg_id, ev)
    return found


def unsurfaced(mb: Mailbox, agent: str, ids: list[str], *, before: int | None = None
               ) -> list[str]:
    """The ids among ``ids`` (of ``agent``'s inbox) never surfaced to it, oldest first;
    with ``before`` (ns), only those stamped earlier."""
    candidates = [i for i in ids if before is None or stamp_of(i) < before]
    seen = first_surfaced(mb, agent, candidates)
    return sorted((i for i in candidates if i not in seen), key=stamp_of)
