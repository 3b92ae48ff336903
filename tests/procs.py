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
    churn ROOT AGENT STOP SEED MIX    until STOP exists, claim and then at random give
                                      back, mark done, or keep past the lease; MIX
                                      "release" never marks done; prints the counts
    resend ROOT SENDER AGENT STOP SEED  until STOP exists, send again (same key) mail
                                      that was sent before: copies of ids the inbox holds
    doctor ROOT STOP                  until STOP exists, run doctor --repair in a loop
"""

from __future__ import annotations

import os
import random
import sys
import time

import orjson

from agentmailbox import Mailbox, MailboxError, doctor

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


def churn(root: str, agent: str, stop: str, seed: str, mix: str) -> None:
    """Claim, then give back, finish or abandon at random, until ``stop`` exists."""
    rng = random.Random(int(seed))
    counts = {"claimed": 0, "released": 0, "done": 0, "kept": 0, "refused": 0}
    with Mailbox.open(root) as mb:
        inbox = mb.inbox(agent)
        while not os.path.exists(stop):
            msg = inbox.claim()
            if msg is None:
                time.sleep(_IDLE_SLEEP)
                continue
            counts["claimed"] += 1
            roll = rng.random()
            try:
                if mix == "release" or roll < 0.5:
                    counts["released"] += inbox.release(msg)
                elif roll < 0.75:
                    counts["done"] += inbox.done(msg)
                else:
                    counts["kept"] += 1  # the lease runs out: someone else releases it
            except MailboxError:
                counts["refused"] += 1  # our lease ran out and another reader moved it
    _print(counts)


def resend(root: str, sender: str, agent: str, stop: str, seed: str) -> None:
    """Repeat keyed sends ``key-<n>`` already made: each retry is a copy of a held id."""
    rng = random.Random(int(seed))
    sent = 0
    with Mailbox.open(root) as mb:
        keys = int(mb.config.extra.get("test_keys", 0))
        while not os.path.exists(stop) and keys:
            n = rng.randrange(keys)  # the retry sends the first send's words
            mb.send(sender, agent, subject=str(n), key=f"key-{n}")
            sent += 1
            time.sleep(_IDLE_SLEEP)
    _print({"sent": sent})


def doctor_loop(root: str, stop: str) -> None:
    """``doctor --repair`` again and again, as an operator's cron job might."""
    runs = 0
    with Mailbox.open(root) as mb:
        while not os.path.exists(stop):
            doctor.check(mb, repair=True, stale_after=0.5)
            runs += 1
    _print({"runs": runs})


def _print(obj: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


COMMANDS = {"produce": produce, "read": read, "drain": drain, "claim": claim, "churn": churn,
            "resend": resend, "doctor": doctor_loop}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    COMMANDS[argv[0]](*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
