"""Child-process entry points for the concurrency and crash tests.

Run as ``python -m tests.procs COMMAND ARGS...`` from the repository root, with the
environment from ``conftest.python_env()``. Each command talks to its parent through
stdout (one JSON document at the end) or files the parent names, never through
shared memory, so what a test counts is what really reached the disk.

Commands::

    produce ROOT SENDER TO COUNT      send COUNT messages {"producer", "seq"} in order
    read ROOT AGENT STOP              claim and mark done until STOP exists and the inbox
                                      is empty; print the claims as JSON
    drain ROOT AGENT STOP             claim and mark done until STOP exists, then stop at
                                      once (no final sweep); print the claimed ids as JSON
    claim ROOT AGENT [done]           claim once (and mark it done); used with
                                      $AGENTMAILBOX_FAULT to die at a named point
"""

from __future__ import annotations

import os
import sys
import time

import orjson

from agentmailbox import Mailbox

_IDLE_SLEEP = 0.001  # seconds a reader waits when it found nothing to claim


def produce(root: str, sender: str, to: str, count: str) -> None:
    """Send ``count`` numbered messages from ``sender`` to ``to``, oldest first."""
    with Mailbox.open(root) as mb:
        for seq in range(int(count)):
            mb.send(sender, to, subject=f"{sender} {seq}", body={"producer": sender, "seq": seq})
    _print({"sent": int(count)})


def read(root: str, agent: str, stop: str) -> None:
    """Claim and mark done until ``stop`` exists and a claim after that finds nothing.

    Prints ``{"claims": [[producer, seq, id], ...]}`` in claim order.
    """
    claims: list[list[object]] = []
    with Mailbox.open(root) as mb:
        inbox = mb.inbox(agent)
        while True:
            finished = os.path.exists(stop)  # read before the claim: all mail is in by now
            msg = inbox.claim()
            if msg is None:
                if finished:
                    break
                time.sleep(_IDLE_SLEEP)
                continue
            claims.append([msg.body["producer"], msg.body["seq"], msg.id])
            inbox.done(msg)
    _print({"claims": claims})


def drain(root: str, agent: str, stop: str) -> None:
    """Claim and mark done until ``stop`` exists; prints ``{"ids": [...]}``."""
    ids: list[str] = []
    with Mailbox.open(root) as mb:
        inbox = mb.inbox(agent)
        while not os.path.exists(stop):
            msg = inbox.claim()
            if msg is None:
                time.sleep(_IDLE_SLEEP)
                continue
            ids.append(msg.id)
            inbox.done(msg)
    _print({"ids": ids})


def claim(root: str, agent: str, then: str = "") -> None:
    """Claim one message (and mark it done if ``then`` is ``done``); prints its id."""
    with Mailbox.open(root) as mb:
        inbox = mb.inbox(agent)
        msg = inbox.claim()
        if msg is not None and then == "done":
            inbox.done(msg)
    _print({"id": msg.id if msg else None})


def _print(obj: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


COMMANDS = {"produce": produce, "read": read, "drain": drain, "claim": claim}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    COMMANDS[argv[0]](*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
