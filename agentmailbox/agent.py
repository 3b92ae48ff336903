"""A handle on one agent: its identity, inbox, and the continuity features.

The three persistence layers, each with its own lifecycle::

    agent.info          identity/config   agent.json (changed only by Registry.edit)
    agent.state         working state     state.json (keys set/unset, replaced atomically)
    agent.memory        event memory      events/*.jsonl (append-only)

and the patterns that keep a restarting agent whole: ``boot()`` (a new instance
epoch and the priority-ordered brief), ``handoff()`` (the note to the next
instance), and DONE markers (``inbox.done`` per message, ``thread_done`` per thread).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from . import boot as boot_mod
from .errors import InvalidInput
from .handoff import Handoff, HandoffStore, Waiting, plausible
from .inbox import Inbox
from .memory import Memory, MemoryEvent, WorkingState, agent_lock
from .message import Message
from .registry import AgentInfo
from .threads import ThreadDone

if TYPE_CHECKING:
    from .mailbox import Mailbox

__all__ = ["MAX_EPOCH", "Agent"]

MAX_EPOCH = 2**63 - 1
"""The largest instance epoch: a run/epoch file at it (planted, or hand-edited) cannot
start another, and says so rather than writing a number readers cannot hold."""


class Agent:
    """One registered agent of a mailbox: ``mb.agent("bob")``."""

    def __init__(self, mailbox: Mailbox, name: str) -> None:
        self.mailbox = mailbox
        self.name = name
        root = mailbox.root
        self.state = WorkingState(root, name)
        self.memory = Memory(root, name)
        self.handoffs = HandoffStore(root, name)

    def __repr__(self) -> str:
        return f"<Agent {self.name}>"

    @property
    def inbox(self) -> Inbox:
        return self.mailbox.inbox(self.name)

    @property
    def info(self) -> AgentInfo:
        return self.mailbox.registry.get(self.name)

    @property
    def epoch(self) -> int | None:
        """The instance epoch this process works as (None before the agent's first boot)."""
        return self.mailbox.epoch(self.name)

    def send(self, to: str | Iterable[str], subject: str = "", body: Any = None,
             **options: Any) -> Message:
        """Send as this agent (see :meth:`Mailbox.send`), stamped with its epoch."""
        options.setdefault("epoch", self.epoch)
        return self.mailbox.send(self.name, to, subject, body, **options)

    # -- continuity ----------------------------------------------------------------------

    def boot(self, *, budget: int = 4000, start_epoch: bool = True) -> boot_mod.Brief:
        """Start a new instance epoch and return the boot brief.

        With ``start_epoch=False`` the brief of the current epoch is rendered again
        and nothing changes on disk (a dry run). ``budget`` caps the text in characters
        and is at least :data:`agentmailbox.boot.MIN_BUDGET` (else ``InvalidInput``, and no
        epoch is started).
        """
        boot_mod.check_budget(budget)
        if start_epoch:
            record = self._start_epoch()
        else:
            record = self._epoch_record() or {"epoch": None, "previous_at": None}
        return boot_mod.build(self, epoch=record["epoch"],
                              previous_boot_ns=_stamp(record.get("previous_at")), budget=budget,
                              continuing=not start_epoch)

    def _epoch_record(self) -> dict[str, Any] | None:
        """``run/epoch``: {"epoch": N, "at": HLC stamp of that boot, "previous_at": ...}."""
        return self.mailbox.epoch_record(self.name)

    def _start_epoch(self) -> dict[str, Any]:
        root = self.mailbox.root
        with agent_lock(root, self.name, "epoch"):
            current = self._epoch_record() or {"epoch": 0, "at": None}
            if int(current["epoch"]) >= MAX_EPOCH:
                raise InvalidInput(f"the instance epoch of {self.name} is at its largest "
                                   f"({current['epoch']}): no new one can start",
                                   hint=f"move {self.mailbox.epoch_path(self.name)} aside; the "
                                        "next boot starts at epoch 1")
            previous = _stamp(current.get("at"))
            # After the last boot and the newest handoff, even if the wall clock stepped
            # back: the next boot tells "a handoff was written since" by comparing stamps.
            at = root.clock.stamp(after=max(previous or 0, self.handoffs.newest_stamp()))
            record: dict[str, Any] = {"epoch": int(current["epoch"]) + 1, "at": at,
                                      "previous_at": previous}
            root.disk.replace(self.mailbox.epoch_path(self.name), orjson.dumps(record) + b"\n")
        epoch = record["epoch"]
        self.mailbox.set_epoch(self.name, epoch)
        self.memory.remember(f"boot: epoch {epoch} started", kind="boot", epoch=epoch)
        root.journal.record("boot", agent=self.name, epoch=epoch)
        return record

    def handoff(self, *, in_progress: Sequence[str] = (), decided: Sequence[str] = (),
                next: Sequence[str] = (), can_wait: Sequence[str] = (),
                waiting_on: Sequence[Waiting | str | dict[str, str]] = (),
                final: bool = True) -> Handoff:
        """Write the handoff note for the next instance (durably, or raise).

        ``final=False`` marks a checkpoint written while still working: the next boot
        then knows the instance did not reach a clean stop after it.
        """
        waits = [w if isinstance(w, Waiting) else
                 Waiting.parse(w) if isinstance(w, str) else Waiting.from_dict(w)
                 for w in waiting_on]
        note = Handoff(tuple(in_progress), tuple(decided), tuple(next), tuple(can_wait),
                       tuple(waits), final=final)
        return self.write_handoff(note)

    def write_handoff(self, note: Handoff) -> Handoff:
        booted = _stamp((self._epoch_record() or {}).get("at")) or 0
        written = self.handoffs.write(note, epoch=self.epoch, after=booted)
        word = "handoff" if written.final else "checkpoint"
        self.memory.remember(f"{word} {written.id} written", kind="handoff", epoch=self.epoch)
        return written

    def remember(self, text: str, *, tags: Sequence[str] = ()) -> MemoryEvent:
        """Append to event memory (see :class:`Memory`)."""
        return self.memory.remember(text, tags=list(tags), epoch=self.epoch)

    def thread_done(self, thread: str, note: str = "") -> tuple[ThreadDone, bool]:
        """Mark a whole thread done (returns the marker and whether it is new)."""
        return self.mailbox.threads.mark_done(thread, self.name, note)


def _stamp(value: Any) -> int | None:
    """A stamp read from ``run/epoch``: an integer not far in the future, else none (a
    hand-edited file; a boot rewrites the record)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if not plausible(value):
        warnings.warn(f"a boot record is stamped far in the future ({value}): ignored",
                      stacklevel=2)
        return None
    return value
