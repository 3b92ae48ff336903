"""What ``mailbox hook ...`` does at each event of an agent harness's session (Claude Code).

Each hook reads the event's JSON (what the harness writes on stdin, docs/INTEGRATIONS.md)
and gives an :class:`Answer`: what to print on stdout (the harness's JSON), one line for
stderr, and the exit code. :func:`run` is the door: it checks identity, opens the root and
turns any error into exit 0 with one line on stderr, so a hook never fails the session.

=============  ================================================================================
session-start  a new epoch on startup, resume and clear (none on compact); the boot brief as
               ``additionalContext``, within the harness's cap (:data:`CAP`)
prompt         one line when unread, unclaimed mail is there that was not surfaced in this epoch
stop           block once (never twice in a row) while mail claimed in this epoch is not done,
               or work was done and no final handoff written since the epoch began
pre-compact    a checkpoint handoff from working state and claimed mail
session-end    record how the session ended; the next brief says when it left no handoff
wait           wait on the watcher for new mail: exit 2 and a doorbell on stderr, 0 at timeout
=============  ================================================================================

The prompt hook is on every prompt's path: it imports nothing beyond what ``mailbox
inbox`` does (no watcher, agent, boot or handoff module; tests/test_cli.py pins it).
"""

from __future__ import annotations

import math
import os
import select
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from . import surfacing
from .errors import InvalidInput, MailboxError
from .fs import parse_object
from .hooks_state import Ended, HookState
from .inbox import State
from .message import stamp_of
from .names import AGENT_ENV, ROOT_ENV
from .render import line

if TYPE_CHECKING:
    from .agent import Agent
    from .handoff import Handoff
    from .mailbox import Mailbox
    from .message import Message

__all__ = ["CAP", "DEFAULT_BUDGET", "DEFAULT_WAIT", "HOOKS", "Answer", "Who", "answer", "run"]

CAP = 10_000
"""Claude Code's cap, in characters, on what a hook adds to the context (``additionalContext``
or plain stdout); beyond it the text is saved to a file and replaced by a preview."""
DEFAULT_BUDGET = 9_000
"""The boot brief's budget in ``hook session-start``: below :data:`CAP`, with room to spare."""
DEFAULT_WAIT = 590.0
"""``hook wait``'s timeout in seconds: under the harness's 600-second default for a command."""
DETAIL = 50
"""At most this many new messages are read to say who they are from."""
HANDOFF_ARGS = '--in-progress "..." --next "..."'
"""What the stop hook's handoff command is shown with (the agent fills in the dots)."""
INPUT_LIMIT = 1 << 20
"""The most of the event's JSON read from stdin (events are a few hundred bytes)."""
STDIN_WAIT = 1.0
"""How long a hook waits, in seconds, for the end of its event on stdin (the harness writes
it at once; session-end has 1.5 s in all)."""
ITEM_CHARS = 120
"""The longest item of a checkpoint (7 items stay well within a handoff's 4 KB)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a hook prints and exits with."""

    stdout: str = ""
    stderr: str = ""
    code: int = 0


@dataclass(frozen=True, slots=True)
class Who:
    """The acting agent, and how a command shown to it names it."""

    name: str
    by_env: bool = True
    """Whether $MAILBOX_AGENT names it (then a command needs no --agent)."""
    root: str | None = None
    """The root, when the hook was given it by --root rather than $MAILBOX_ROOT (then a
    command names it too: the model's shell has only the harness's environment)."""

    def command(self, verb: str, rest: str = "") -> str:
        """``mailbox VERB [--agent NAME] [--root PATH] REST``: a command the agent can paste."""
        flag = "" if self.by_env else f" --agent {self.name}"
        flag += "" if self.root is None else f" --root {shlex.quote(self.root)}"
        return f"mailbox {verb}{flag}" + (f" {rest}" if rest else "")


Handler = Callable[..., Answer]


def answer(hook: str, agent: str | None, open_mailbox: Callable[[], Mailbox],
           root: str | None = None, **options: Any) -> Answer:
    """Run ``hook`` as the command does: the event from stdin (:func:`read_event`; none
    from a terminal), the agent from ``agent`` (the --agent option) or
    ``$MAILBOX_AGENT``; ``root`` is the root the command was given, if any. Never raises."""
    name = agent or os.environ.get(AGENT_ENV) or None
    named_root = root if root and root != os.environ.get(ROOT_ENV) else None
    who = None if name is None else Who(name, os.environ.get(AGENT_ENV) == name, named_root)
    note = ""
    try:
        stdin = sys.stdin
        data, why = (b"", "") if stdin is None or stdin.isatty() else read_event(stdin)
        note = f"mailbox hook {hook}: {why}; read as no event" if why else ""
    except (OSError, ValueError) as exc:
        data, note = b"", f"mailbox hook {hook}: stdin unreadable ({exc}); read as no event"
    got = run(hook, data, who, open_mailbox, **options)
    return Answer(got.stdout, "\n".join(filter(None, [note, got.stderr])), got.code)


def read_event(stdin: Any) -> tuple[bytes, str]:
    """The event's JSON from ``stdin``, or nothing and why: more than :data:`INPUT_LIMIT`
    bytes (a pasted prompt of megabytes must not cost the prompt's line), or no end
    within :data:`STDIN_WAIT` (a writer that keeps stdin open must not stall the hook).

    Raises:
        OSError: stdin cannot be read.
    """
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor: a stand-in for a file
        data, whole = stdin.buffer.read(INPUT_LIMIT + 1), True
    else:
        data, whole = _read_fd(fd)
    if len(data) > INPUT_LIMIT:
        return b"", f"the event is over {INPUT_LIMIT} bytes"
    if not whole:
        return b"", f"stdin held no whole event within {STDIN_WAIT:g} s"
    return data, ""


def _read_fd(fd: int) -> tuple[bytes, bool]:
    """At most :data:`INPUT_LIMIT` and one bytes of ``fd``, up to its end or, when the
    writer keeps it open, to the end of a whole JSON object; and whether one of these came
    within :data:`STDIN_WAIT` (the descriptor is shared with the harness: it is never made
    non-blocking, ``select`` bounds each read)."""
    data = b""
    end = time.monotonic() + STDIN_WAIT
    while len(data) <= INPUT_LIMIT:
        if not select.select([fd], [], [], max(end - time.monotonic(), 0.0))[0]:
            return data, _whole(data)
        chunk = os.read(fd, INPUT_LIMIT + 1 - len(data))
        if not chunk or _whole(data := data + chunk):
            break
    return data, True


def _whole(data: bytes) -> bool:
    if not data.rstrip().endswith(b"}"):
        return False
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def run(hook: str, data: bytes, who: Who | None, open_mailbox: Callable[[], Mailbox],
        **options: Any) -> Answer:
    """Run ``hook`` on the event JSON ``data``; never raises.

    Without identity it answers nothing but one line on stderr (exit 0): a hook never
    guesses which agent it speaks for.
    """
    if who is None:
        return Answer(stderr=f"mailbox hook {hook}: no agent: start the harness with "
                             "MAILBOX_AGENT=NAME, or give --agent NAME in the hook's command; "
                             "nothing was surfaced")
    try:
        event = parse_event(data)
        mb = open_mailbox()
        try:
            return HOOKS[hook](mb, who, event, **options)
        finally:
            mb.close()
    except Exception as exc:  # any at all: a hook never fails the user's session
        return Answer(stderr=f"mailbox hook {hook}: {_why(exc, 300)} (ignored: the session "
                             "goes on)")


def _why(exc: Exception, limit: int) -> str:
    """One line saying what went wrong: a bus error's message, else the exception's repr."""
    return line(str(exc) if isinstance(exc, MailboxError) else repr(exc), limit)


def parse_event(data: bytes) -> dict[str, Any]:
    """The event: a JSON object; nothing at all is the empty event.

    Raises:
        InvalidInput: ``data`` is not a JSON object.
    """
    if not data.strip():
        return {}
    try:
        return parse_object(data)
    except ValueError as exc:
        raise InvalidInput(f"the hook's input is {exc}") from exc


def context(event_name: str, text: str) -> str:
    """The harness's JSON that adds ``text`` to the model's context."""
    out = {"hookSpecificOutput": {"hookEventName": event_name, "additionalContext": text}}
    return orjson.dumps(out).decode()


# -- session-start ----------------------------------------------------------------------------


def session_start(mb: Mailbox, who: Who, event: dict[str, Any],
                  budget: int = DEFAULT_BUDGET) -> Answer:
    if budget > CAP:
        raise InvalidInput(f"a budget of {budget} characters is over the harness's cap of {CAP}",
                           hint=f"give --budget {DEFAULT_BUDGET} or less than {CAP}")
    # startup, resume and clear start an epoch; compact continues the current one.
    start = event.get("source") != "compact"
    agent = mb.agent(who.name)
    note = ""
    try:
        brief = agent.boot(budget=budget, start_epoch=start)
    except Exception as exc:  # the brief matters more than the epoch (run/epoch planted...)
        if not start:
            raise
        brief = agent.boot(budget=budget, start_epoch=False)
        note = (f"mailbox hook session-start: could not start a new epoch "
                f"({_why(exc, 200)}); the brief is of the current one")
    surfacing.record(mb, who.name, brief.shown_mail(), "brief", unread=True)
    return Answer(stdout=context("SessionStart", brief.to_text()), stderr=note)


# -- prompt and wait: new mail ----------------------------------------------------------------


def prompt(mb: Mailbox, who: Who, event: dict[str, Any]) -> Answer:
    new, note = _news(mb, who.name, "prompt")
    text = news_line(mb, who, new) if new else ""
    if not text:
        return Answer(stderr=note)
    return Answer(stdout=context("UserPromptSubmit", text), stderr=note)


def _news(mb: Mailbox, name: str, via: str,
          current: Callable[[], bool] | None = None) -> tuple[list[str], str]:
    """The unread, unclaimed ids not surfaced yet in this epoch, recorded as surfaced
    ``via`` this hook, and a line for stderr when the record could not be written. The
    epoch's surfaced set keeps what is still in the inbox (unread or claimed), so mail
    given back after it was shown is not announced again; with nothing new, the record
    is not even rewritten. A record that cannot be written costs a repeated notice,
    never the notice itself. With ``current``, nothing is taken unless it still holds
    under the lock: a waiter that a newer one or a new session replaced while it looked
    leaves the mail to them."""
    epoch = mb.epoch(name)
    state = HookState(mb.root, name)
    inbox = mb.inbox(name)
    unread = set(inbox.ids())
    if unread <= (state.surfaced(epoch) or set()):
        return [], ""  # the path of nearly every prompt: no lock, no write
    with state.locked():  # another hook may be announcing the same mail right now
        before = state.surfaced(epoch) or set()
        new = unread - before
        if not new or (current is not None and not current()):
            return [], ""
        surfacing.record(mb, name, new, via)
        kept = before if before <= unread else before & unread.union(inbox.ids(State.CLAIMED))
        try:
            state.set_surfaced(epoch, kept | new)
        except MailboxError as exc:
            return sorted(new), (f"mailbox hook {via}: could not record what it surfaced "
                                 f"({line(str(exc), 200)}): it will announce it again")
    return sorted(new), ""


def news_line(mb: Mailbox, who: Who, ids: list[str]) -> str:
    """"2 new: 1 urgent from alice — mailbox next": how many, the pressing ones and from whom.

    Of the first :data:`DETAIL` ids, those that no longer read as a message are not counted
    (claimed since the scan, or a file planted in ``new/`` that is no message, which a
    listing skips too); "" when nothing is left to announce.
    """
    msgs = [m for m in (_peek(mb, who.name, i) for i in ids[:DETAIL]) if m is not None]
    count = len(msgs) + len(ids[DETAIL:])
    if not count:
        return ""
    pressing = [(p, [m for m in msgs if m.priority == p]) for p in ("urgent", "high")]
    parts = [f"{len(group)} {p} from {_senders(group)}" for p, group in pressing if group]
    head = f"{count} new" + (f": {', '.join(parts)}" if parts else
                             f" from {_senders(msgs)}" if msgs else "")
    return f"{head} — {who.command('next')}"


def _peek(mb: Mailbox, name: str, msg_id: str) -> Message | None:
    try:
        return mb.inbox(name).get(msg_id)
    except MailboxError:
        return None  # claimed or gone since the scan


def _senders(msgs: list[Message]) -> str:
    names = sorted({m.sender for m in msgs})
    shown = ", ".join(line(n, 40) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def wait(mb: Mailbox, who: Who, event: dict[str, Any], timeout: float = DEFAULT_WAIT) -> Answer:
    """Exit 2 with a doorbell when new mail is there (now, or when the watcher wakes), 0 at
    the timeout, once a newer waiter of the same agent has started, or once a new epoch
    began (the session that started it ended: its doorbell would ring for nobody, and the
    mail it took as surfaced would never be announced to the new session)."""
    from .watch import Doorbell  # only here: the prompt path never loads it (nor ctypes)

    if not math.isfinite(timeout):  # nan would wait for ever, inf overflows the clock
        raise InvalidInput(f"a timeout of {timeout} seconds is no timeout",
                           hint=f"give --timeout {DEFAULT_WAIT:g} or another number of seconds")
    state = HookState(mb.root, who.name)
    epoch = mb.epoch(who.name)  # before the token is seen: the waiter is of this epoch
    token = f"{os.getpid()}.{time.time_ns()}"
    state.update(waiter=token)
    deadline = time.monotonic() + max(timeout, 0.0)

    def current() -> bool:
        return state.load().get("waiter") == token and _epoch_now(mb, who.name) == epoch

    with Doorbell(mb.inbox(who.name).new) as bell:
        bell.open()  # watching before the first look: a delivery in between rings
        while current():
            # Asked again under the lock that a newer waiter takes to write its token: one
            # that starts (or a session that begins) while this one looks gets the mail.
            new = _news(mb, who.name, "wait", current)[0]
            text = news_line(mb, who, new) if new else ""
            if text:
                return Answer(stderr=text, code=2)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            bell.wait(left)
    return Answer()


def _epoch_now(mb: Mailbox, name: str) -> int | None:
    """The epoch in ``run/epoch`` now (:meth:`Mailbox.epoch` is read once per process)."""
    record = mb.epoch_record(name)
    return None if record is None else int(record["epoch"])


# -- stop -------------------------------------------------------------------------------------


def stop(mb: Mailbox, who: Who, event: dict[str, Any]) -> Answer:
    state = HookState(mb.root, who.name)
    epoch = mb.epoch(who.name)
    if event.get("stop_hook_active") is True or state.stop_blocked(epoch):
        if state.stop_blocked(epoch):
            state.set_stop_blocked(epoch, False)
        return Answer()
    reasons = unfinished(mb, who)
    if not reasons:
        return Answer()
    state.set_stop_blocked(epoch, True)
    return Answer(stdout=orjson.dumps({"decision": "block", "reason": " ".join(reasons)}).decode())


def unfinished(mb: Mailbox, who: Who) -> list[str]:
    """Why this epoch should not stop yet, each with the command that settles it."""
    record = mb.epoch_record(who.name)
    if record is None or not isinstance(record.get("at"), int):
        return []  # never booted: no epoch to hold to account
    epoch, at = int(record["epoch"]), int(record["at"])
    claims, worked = _this_epoch(mb, who.name, epoch, at)
    still = sorted(claims & set(mb.inbox(who.name).ids(State.CLAIMED)))
    reasons = []
    if still:
        reasons.append(f"This session claimed {len(still)} message(s) it has not marked done: "
                       f"finish them, then run `{who.command('done', ' '.join(still))}` (or "
                       f"`{who.command('release', 'ID')}` to give one back).")
    if worked and not final_handoff_since(mb.agent(who.name), at):
        command = who.command("handoff", HANDOFF_ARGS)
        reasons.append(f"This session did work and wrote no handoff since it began: run "
                       f"`{command}`.")
    return reasons


def _this_epoch(mb: Mailbox, name: str, epoch: int, at: int) -> tuple[set[str], bool]:
    """The ids ``name`` claimed as ``epoch``, and whether it did any work since ``at`` (sent,
    claimed, marked done, closed a thread, wrote a shared file), from the journal."""
    day = time.strftime("%Y-%m-%d", time.gmtime(at // 1_000_000_000))
    claims: set[str] = set()
    worked = False
    for ev in mb.root.journal.events(since_day=day):
        if ev["t"] < at:
            continue
        kind = str(ev["ev"])
        if kind == "claim" and ev.get("agent") == name and ev.get("epoch") == epoch:
            claims.add(str(ev.get("id")))
        worked = worked or ev.get(WORK.get(kind, "")) == name
    return claims, worked


WORK = {"claim": "agent", "done": "agent", "thread.done": "agent", "send": "from",
        "ws.put": "author"}
"""The journal events that are an agent's work, and the field that names the agent."""


def final_handoff_since(agent: Agent, at: int) -> bool:
    """Whether ``agent`` wrote a final handoff (not a checkpoint) stamped after ``at``."""
    if not any(stamp_of(i) > at for i in agent.handoffs.ids()):
        return False
    latest = agent.handoffs.latest()
    if latest is not None and latest.final and stamp_of(latest.id) > at:
        return True
    return any(h.final and stamp_of(h.id) > at for h in agent.handoffs.history())


# -- pre-compact and session-end --------------------------------------------------------------


def pre_compact(mb: Mailbox, who: Who, event: dict[str, Any]) -> Answer:
    agent = mb.agent(who.name)
    note = checkpoint(agent, str(event.get("trigger") or "auto"))
    if note is not None:
        agent.write_handoff(note)
    return Answer()


def checkpoint(agent: Agent, trigger: str) -> Handoff | None:
    """A checkpoint from working state and claimed mail; None when there is neither."""
    from .handoff import DEFAULT_MAX_ITEMS, Handoff

    state = agent.state.snapshot()
    items = [f"state {k} = {orjson.dumps(state[k]).decode()}" for k in sorted(state)]
    items += [f"claimed {m.id} from {m.sender}: {m.subject}"
              for m in agent.inbox.list(State.CLAIMED)]
    if not items:
        return None
    kept = tuple(_cut(i) for i in items[:DEFAULT_MAX_ITEMS])
    more = len(items) - len(kept)
    nxt = f"resume after the {_cut(trigger, 20)} compaction from the items above" + (
        f" ({more} more: mailbox state get, mailbox inbox --claimed)" if more else "")
    return Handoff(in_progress=kept, next=(nxt,), final=False)


def _cut(text: str, limit: int = ITEM_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def session_end(mb: Mailbox, who: Who, event: dict[str, Any]) -> Answer:
    record = mb.epoch_record(who.name) or {}
    at = record.get("at")
    wrote = isinstance(at, int) and final_handoff_since(mb.agent(who.name), at)
    ended = Ended(mb.epoch(who.name), mb.root.clock.stamp(), wrote,
                  _cut(str(event.get("reason") or ""), 40))
    HookState(mb.root, who.name).set_ended(ended)
    return Answer()


HOOKS: dict[str, Handler] = {
    "session-start": session_start,
    "prompt": prompt,
    "stop": stop,
    "pre-compact": pre_compact,
    "session-end": session_end,
    "wait": wait,
}
