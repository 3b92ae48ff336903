"""Live commands: watch an inbox, run a command per message, heartbeat, tail the journal.

``watch`` imports the watcher (watchdog), the runner and the logging setup itself:
``heartbeat``, which an agent may run on every turn, loads none of them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, MutableSequence
from typing import Any

import click
import orjson

from .. import render
from ..journal import Journal
from ..message import Message
from ..presence import Mode, Presence
from ._base import (
    IDENTITY,
    Ctx,
    acting,
    agent_option,
    emit,
    json_option,
    message_line,
    msg_json,
    pass_ctx,
)

TAIL_POLL_SECONDS = 0.2
"""How often ``tail -f`` looks for new journal lines."""

WATCH_EPILOG = """\b
Examples:
  mailbox watch bob                         print new mail as it arrives (claims nothing)
  mailbox watch bob --claim --json          claim and print each message as a JSON line
  mailbox watch bob --exec 'python handle.py' --max-inflight 4
  mailbox watch bob --exec ./handle.sh --once   handle what is there, then exit

\b
--exec runs the command through the shell with the message JSON on stdin and
MAILBOX_ID, MAILBOX_PATH (the claimed file), MAILBOX_AGENT, MAILBOX_ROOT set.
Exit 0 marks the message done; any other exit releases it for another try.
SIGTERM stops the watch cleanly (running commands get SIGTERM and are settled
by their exit code) with exit 0; Ctrl-C does the same with exit 130.
""" + IDENTITY


@click.command(epilog=WATCH_EPILOG)
@click.argument("agent_name", metavar="[AGENT]", required=False)
@click.option("--claim", is_flag=True, help="Claim each message as it is printed "
              "(you mark it done: mailbox done AGENT ID).")
@click.option("--exec", "command", default=None, metavar="CMD",
              help="Claim each message and run CMD for it (see below).")
@click.option("--max-inflight", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --exec: how many commands may run at once.")
@click.option("--once", is_flag=True, help="Handle what is there now, then exit.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Exit 0 after this many seconds without new mail.")
@agent_option
@json_option
@pass_ctx
def watch(c: Ctx, agent_name: str | None, claim: bool, command: str | None, max_inflight: int,
          once: bool, timeout: float | None, agent: str | None, as_json: bool) -> None:
    """Print AGENT's new mail as it arrives, or run a command for each message.

    --json prints one JSON line per message (a stream, not one document).
    """
    from ..logs import daemon_logging
    from ..runner import CommandRunner
    from ..watch import arrivals

    box = c.mb.inbox(acting(agent_name, agent))
    with daemon_logging(), _stop_on_sigterm() as stop:
        if command is not None:
            CommandRunner(box, c.mb.root, command, max_inflight=max_inflight).run(
                once=once, idle_timeout=timeout, stop=stop)
            return
        msgs = box.watch(stop=stop, timeout=0 if once else timeout) if claim else arrivals(
            box, once=once, timeout=timeout, stop=stop)
        _print_messages(msgs, as_json)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """SIGTERM asks the loop to finish (the handler only sets a flag); exit is then 0."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_messages(msgs: Iterable[Message], as_json: bool) -> None:
    for msg in msgs:
        emit(msg_json(msg), as_json, message_line(msg))


# -- presence --------------------------------------------------------------------------------------

@click.command(epilog=IDENTITY)
@click.argument("agent_name", metavar="[AGENT]", required=False)
@click.option("--capacity", type=click.FloatRange(0.0, 1.0), default=None,
              help="Spare capacity, 0.0 (full) to 1.0 (idle).")
@click.option("--mode", type=click.Choice([str(m) for m in Mode]), default=str(Mode.NORMAL),
              show_default=True, help="maintenance: alive, but takes no new distributed work.")
@agent_option
@json_option
@pass_ctx
def heartbeat(c: Ctx, agent_name: str | None, capacity: float | None, mode: str,
              agent: str | None, as_json: bool) -> None:
    """Record that AGENT is alive now (run it from the agent's loop or a cron job)."""
    agent_name = acting(agent_name, agent)
    c.mb.registry.require(agent_name)
    beat = Presence(c.mb.root).beat(agent_name, capacity=capacity, mode=mode,
                                    epoch=c.mb.epoch(agent_name))
    emit(beat.to_dict(), as_json, lambda d: f"{d['agent']} alive at {d['at_iso']}"
         + (f", capacity {d['capacity']}" if d["capacity"] is not None else "")
         + (f", {d['mode']}" if d["mode"] != Mode.NORMAL else ""))


# -- tail ------------------------------------------------------------------------------------------

@click.command()
@click.argument("agents", nargs=-1, metavar="[AGENT]...")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they happen.")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=50,
              show_default=True, help="How many past events to print first.")
@json_option
@pass_ctx
def tail(c: Ctx, agents: tuple[str, ...], follow: bool, count: int, as_json: bool) -> None:
    """Print the bus journal (send, claim, done, release, dead, ws.put...) in time order.

    With AGENT names, only events involving them (as agent, sender or recipient).
    --json prints one JSON line per event (a stream, not one document).
    """
    for name in agents:
        c.mb.registry.require(name)
    reader = _JournalReader(c.mb.root.journal)
    wanted = frozenset(agents)
    for event in reader.last(count, wanted):
        _print_event(event, as_json)
    while follow:
        for event in reader.follow():
            if _involves(event, wanted):
                _print_event(event, as_json)
        time.sleep(TAIL_POLL_SECONDS)


class _JournalReader:
    """Reads the journal's days through ``Journal.read`` (bounded; links and FIFOs are
    never opened); remembers where it stopped to follow them."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.day = ""
        self.offset = 0

    def last(self, count: int, wanted: frozenset[str]) -> list[dict[str, Any]]:
        """The last ``count`` matching events in time order; follow() goes on from there."""
        days = self.journal.days()
        found: list[dict[str, Any]] = []
        for day in reversed(days):
            events, end = self._read(day, 0, deque(maxlen=count), wanted)
            if day == days[-1]:
                self.day, self.offset = day, end
            found[:0] = events
            if len(found) >= count:
                break
        found.sort(key=_stamp)
        return found[max(len(found) - count, 0):] if count else []

    def follow(self) -> Iterator[dict[str, Any]]:
        """Events appended since the last call, across a change of day."""
        while True:
            if self.day:
                events, self.offset = self._read(self.day, self.offset, [], frozenset())
                yield from events
            later = [d for d in self.journal.days() if d > self.day]
            if not later:
                return
            self.day, self.offset = later[0], 0  # rolled over: the old day is finished

    def _read(self, day: str, offset: int, into: MutableSequence[dict[str, Any]],
              wanted: frozenset[str]) -> tuple[MutableSequence[dict[str, Any]], int]:
        """The complete lines of one day from ``offset`` that involve ``wanted``, added to
        ``into`` (a bounded deque keeps only the last ones), and where to go on from."""
        end = offset
        for stop, event in self.journal.read(day, offset):
            if event is not None and _involves(event, wanted):
                into.append(event)
            end = stop
        return into, end


def _involves(event: dict[str, Any], wanted: frozenset[str]) -> bool:
    if not wanted:
        return True
    to = event.get("to")
    origin = str(event.get("origin") or "").split("/")
    return bool(
        {event.get("agent"), event.get("from"), event.get("author")} & wanted
        or (isinstance(to, list) and wanted.intersection(map(str, to)))
        or (len(origin) > 1 and origin[0] == "agents" and origin[1] in wanted))


_COLOURS = {"send": "green", "route": "green", "claim": "cyan", "done": "blue",
            "release": "yellow", "dead": "red", "ws.put": "magenta"}
_SHOWN = ("t", "ev", "pid", "agent", "from", "to", "recipients", "author", "id")


def _stamp(event: dict[str, Any]) -> int:
    """The event's time in nanoseconds; 0 for a line whose ``t`` is not one."""
    t = event.get("t")
    return t if type(t) is int and 0 <= t < 1 << 63 else 0


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    """One journal line as text; every field another process wrote is rendered safely."""
    if as_json:
        emit(event, True)
        return
    ev = render.line(event.get("ev", "?"), 40)
    t = _stamp(event)
    when = f"{time.strftime('%H:%M:%S', time.gmtime(t // 10**9))}.{t // 10**6 % 1000:03d}"
    rest = " ".join(f"{render.line(k, 40)}={render.line(_plain(v))}"
                    for k, v in event.items() if k not in _SHOWN)
    click.echo(f"{when} {click.style(f'{ev:<8}', fg=_COLOURS.get(ev, 'white'), bold=True)} "
               f"{render.line(_who(event)):<24} {render.line(event.get('id', ''), 60)} "
               f"{rest}".rstrip())


def _who(event: dict[str, Any]) -> str:
    if "from" in event:
        to = event.get("to") or event.get("recipients") or []
        to = to if isinstance(to, list) else [to]
        return f"{event['from']} -> {', '.join(map(str, to))}"
    return str(event.get("agent") or event.get("author") or event.get("origin") or "")


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
