"""Settling one routed message: it finishes, or it waits in ``spool/deferred``.

It finishes when every recipient holds it or was given up: the journal records a
``route`` event, what was unroutable is buried (the file itself if nobody got it,
else a copy per gap), then the spool file is removed, and its progress file after
it. A crash between the two repeats the one effect that is not idempotent: a
second dead-letter copy for a gap. It waits when a recipient is at its quota or
failed, or no live agent can be picked: the file moves to ``spool/deferred`` and
is retried with backoff. Either way the sender is told about each gap once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..backoff import Backoff
from ..fs import faults
from ..mailbox import Mailbox
from ..message import Message
from .notices import Notices
from .outcome import Outcome, Pass
from .progress import Ledger

__all__ = ["Settler"]

log = logging.getLogger("agentmailbox.supervisor")


class Settler:
    """Finishes or defers one message once its :class:`Outcome` is known."""

    def __init__(self, mb: Mailbox, notices: Notices, ledger: Ledger, retry: Backoff) -> None:
        self._mb = mb
        self._spool = mb.spool
        self._notices = notices
        self._ledger = ledger
        self._retry = retry

    def tell_unroutable(self, msg: Message, outcome: Outcome) -> dict[str, str]:
        """Tell the sender about each unroutable address and each recipient given up (now,
        even if the rest waits); returns the reasons per unroutable address."""
        reasons: dict[str, str] = {}
        for problem in outcome.unroutable:
            known = reasons.get(problem.address)
            reasons[problem.address] = f"{known}; {problem.reason}" if known else problem.reason
        for address, reason in reasons.items():
            self._notices.tell(msg, "undeliverable", address, reason)
        for agent, (address, reason) in outcome.undeliverable.items():
            self._notices.tell(msg, "undeliverable", address, reason, agent=agent)
        return reasons

    def finish(self, path: Path, msg: Message, data: bytes, outcome: Outcome,
               report: Pass) -> None:
        """Every recipient holds it, or was given up: bury what was unroutable, remove it."""
        reasons = self.tell_unroutable(msg, outcome)
        self._mb.root.journal.record(
            "route", id=msg.id, **{"from": msg.sender}, recipients=outcome.holders,
            expansion=outcome.expansion, dead=list(reasons),
            undeliverable={agent: why for agent, (_, why) in outcome.undeliverable.items()})
        faults.hit("route.recorded")
        if reasons or outcome.undeliverable:
            report.dead += self._bury_unroutable(path, msg, data, outcome, reasons)
        self._mb.root.disk.unlink(path)  # gone already if the whole message was buried
        self._ledger.drop(msg.id)
        self._retry.forget(path.name)
        report.routed += 1
        log.debug("routed", extra={"id": msg.id, "sender": msg.sender,
                                   "recipients": outcome.holders})

    def _bury_unroutable(self, path: Path, msg: Message, data: bytes, outcome: Outcome,
                         reasons: dict[str, str]) -> int:
        """Nobody got it: bury the file. Some did: bury a copy per unroutable address and
        per recipient given up."""
        gaps: list[tuple[str, dict[str, str]]] = [
            (reason, {"address": address}) for address, reason in reasons.items()]
        gaps += [(reason, {"address": address, "agent": agent})
                 for agent, (address, reason) in outcome.undeliverable.items()]
        log.info("undeliverable", extra={"id": msg.id, "sender": msg.sender,
                                         "reasons": [reason for reason, _ in gaps]})
        if not outcome.holders:
            text = "; ".join(reason for reason, _ in gaps)
            agents = list(outcome.undeliverable)
            about: dict[str, Any] = {"agents": agents} if agents else {}
            return int(self._mb.dead.bury(
                path, f"undeliverable: {text}", msg_id=msg.id,
                addresses=list(dict.fromkeys(where["address"] for _, where in gaps)),
                **about, by="supervisor") is not None)
        buried = 0
        for reason, where in gaps:
            copy = self._spool.stage(msg.id, data)
            if self._mb.dead.bury(copy, f"undeliverable: {reason}", msg_id=msg.id, **where,
                                  by="supervisor") is not None:
                buried += 1
        return buried

    def defer(self, path: Path, msg: Message, outcome: Outcome, report: Pass) -> None:
        """Some recipient must wait: keep it in spool/deferred, tell the sender, retry later.

        Unroutable addresses and recipients given up are told now, and buried when the
        message finishes.
        """
        self.tell_unroutable(msg, outcome)
        for (what, address), reasons in outcome.waiting.items():
            self._notices.tell(msg, what, address, "; ".join(reasons))
        target = self._spool.deferred / path.name
        if path != target:
            self._mb.root.disk.overwrite(path, target)
            self._mb.root.journal.record("defer", id=msg.id, **{"from": msg.sender},
                                         recipients=outcome.holders,
                                         waiting=sorted({a for _, a in outcome.waiting}))
            log.info("deferred", extra={"id": msg.id, "sender": msg.sender, "waiting": {
                a: r for (_, a), r in outcome.waiting.items()}})
            report.deferred += 1
        self._retry.failed(path.name)

    def route_failed(self, paths: tuple[Path, ...], reason: str, report: Pass) -> None:
        """Count a failure of routing the message as a whole; retry it, or bury it at the bound.

        Left in ``spool/new`` (the claim itself failed) it is tried at the next pass;
        from ``spool/cur`` or ``spool/held`` it moves to ``spool/deferred``.
        """
        path = next((p for p in paths if self._mb.root.disk.exists(p)), None)
        if path is None or path.parent == self._spool.new:
            return
        progress = self._ledger.load(path.name[:-5])
        failure = self._ledger.failed(progress, None, reason)
        if failure.given_up:
            if self._mb.dead.bury(path, f"could not route: {reason}", by="supervisor"):
                report.dead += 1
            self._ledger.drop(progress.msg_id)
            return
        self._ledger.save(progress)
        if path.parent != self._spool.deferred:
            self._mb.root.disk.overwrite(path, self._spool.deferred / path.name)
        self._retry.failed(path.name)
