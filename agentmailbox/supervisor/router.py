"""The router: one spooled message from ``spool/new`` to its recipients' inboxes.

It claims the file (``spool/new/X --link+unlink--> spool/cur/X``), reads it (a bad
file is buried), lets the rate gate hold it, expands each address against the
:class:`~agentmailbox.routing.Directory` of the pass, and offers the message to
every recipient (``Inbox.deliver`` is idempotent by id). Routing state is per
recipient: one whose inbox fails is counted in the :class:`Ledger` and the others
are offered it all the same. ``pick: one`` delivers to the best live candidate
only. The :class:`Settler` then finishes or defers the message.

A file found in ``spool/cur`` at start-up was being routed by a supervisor that
died: it is routed again; recipients that hold the id get nothing twice and a
``pick: one`` message already held by a candidate is not picked again.
"""

from __future__ import annotations

from pathlib import Path

from ..addresses import Remote, is_remote, is_routed, parse_remote
from ..bridge.outbox import Outbox
from ..bridge.peers import load_peers
from ..bridge.receipts import Receipts
from ..errors import AgentNotFound, DiskFull, MailboxError
from ..fs import Foreign, Moved, faults, same_file
from ..inbox import State
from ..mailbox import Mailbox
from ..message import Malformed, Message
from ..routing import Directory, Unroutable
from .gate import HeldMail
from .outcome import Outcome, Pass, attempts
from .picker import Picker
from .progress import Ledger, Progress
from .settle import Settler

__all__ = ["Router"]


class Router:
    """Routes spooled files, one at a time; the supervisor loop calls it."""

    def __init__(self, mb: Mailbox, held: HeldMail, ledger: Ledger, settler: Settler,
                 picker: Picker) -> None:
        self._mb = mb
        self._spool = mb.spool
        self._held = held
        self._ledger = ledger
        self._settler = settler
        self._picker = picker
        self._directory: Directory | None = None

    def new_pass(self) -> None:
        """Read who is registered again at the next use."""
        self._directory = None

    @property
    def directory(self) -> Directory:
        """Who is registered and the routing rules, read once per pass."""
        if self._directory is None:
            self._directory = Directory.load(self._mb.registry, self._mb.config,
                                             load_peers(self._mb.root))
        return self._directory

    def admit(self, name: str, report: Pass) -> None:
        """Claim ``spool/new/<name>`` and route it, unless the rate gate holds it."""
        new, cur = self._spool.new / name, self._spool.cur / name
        taken = self._mb.root.disk.move(new, cur)
        if taken is Moved.GONE:
            return
        if taken is Moved.OCCUPIED:
            self.recover(name, report)
            return
        faults.hit("route.claimed")
        loaded = self._load(cur, report)
        if loaded is None:
            return
        msg, data = loaded
        if self._held.admit(cur, msg, report):
            self._route(cur, msg, data, report)

    def recover(self, name: str, report: Pass) -> None:
        """A file in spool/cur was being routed by a supervisor that died: route it again."""
        cur, new = self._spool.cur / name, self._spool.new / name
        a, b = self._mb.root.disk.lstat(cur), self._mb.root.disk.lstat(new)
        if a is not None and b is not None and same_file(a, b):
            # A v1 claim that died between link and unlink. Only the supervisor (one per
            # root, under its lock) acts on the spool, so removing this second name of
            # the file cannot race anyone.
            self._mb.root.disk.unlink(new)
        self.route_file(cur, report)

    def route_file(self, path: Path, report: Pass) -> None:
        """Route a file already taken out of ``spool/new`` (cur, deferred or held)."""
        loaded = self._load(path, report)
        if loaded is not None:
            self._route(path, *loaded, report)

    def _load(self, path: Path, report: Pass) -> tuple[Message, bytes] | None:
        try:
            return self._spool.read(path)
        except FileNotFoundError:
            return None
        except (Foreign, Malformed) as exc:
            if self._mb.dead.bury(path, exc.reason, by="supervisor"):
                report.dead += 1
            return None

    def _route(self, path: Path, msg: Message, data: bytes, report: Pass) -> None:
        if msg.expired():
            if self._mb.dead.bury(path, "expired", expires_at=msg.expires_at, by="supervisor"):
                report.expired += 1
            self._ledger.drop(msg.id)
            return
        progress = self._ledger.load(msg.id)
        outcome = Outcome()
        self._count_direct(msg, outcome)
        pick = msg.headers.get("pick") == "one"
        remote: list[Remote] = []
        for address in msg.to:
            if is_remote(address):
                continue  # another host's agent: its copy is in bridge/out/ (docs/BRIDGE.md)
            expansion = self.directory.expand(address, msg.sender)
            outcome.unroutable += expansion.unroutable
            if pick and is_routed(address) and expansion.agents:
                self._pick_here(address, expansion.agents, msg, data, outcome, progress)
                continue
            for agent in expansion.agents:
                if is_remote(agent):
                    outcome.hold(address, agent)
                    if (found := parse_remote(agent)) not in remote:
                        remote.append(found)
                elif not self._offer(agent, address, msg, data, outcome, progress):
                    self._unsettled(agent, address, outcome, progress)
        if remote:
            self._post_remote(msg, data, remote)
        if progress.changed:
            self._ledger.save(progress)
        if outcome.waiting:
            self._settler.defer(path, msg, outcome, report)
        else:
            self._settler.finish(path, msg, data, outcome, report)

    def _post_remote(self, msg: Message, data: bytes, remote: list[Remote]) -> None:
        """The copies for the agents of other hosts that routed addresses reached, into the
        bridge's outbound spool, as a send to ``agent@host`` posts them (PROTOCOL.md §25.1).

        Once per agent: one the receipts record lists was posted before (by the sender,
        or by an earlier routing of this message). The copy is posted before the record
        names it, so a crash in between posts it again (``EEXIST``: the same copy).
        """
        receipts = Receipts(self._mb.root)
        record = receipts.load(msg.id)
        posted = record["recipients"] if record is not None else {}
        new = [r for r in remote if str(r) not in posted]
        if new:
            Outbox(self._mb.root).post(msg.id, data, new)
            receipts.start(msg, new)

    def _pick_here(self, address: str, agents: tuple[str, ...], msg: Message, data: bytes,
                   outcome: Outcome, progress: Progress) -> None:
        """``pick: one`` picks an agent of this host: only for those does the supervisor
        know liveness, capacity and room (heartbeats, quotas). An address that reaches
        agents of other hosts only is unroutable under ``pick: one``."""
        local = tuple(a for a in agents if not is_remote(a))
        if local:
            self._pick(address, local, msg, data, outcome, progress)
            return
        outcome.unroutable.append(Unroutable(address, f"pick: one picks an agent of this "
                                                      f"host; {address} reaches only agents "
                                                      f"of other hosts ({', '.join(agents)})"))

    def _count_direct(self, msg: Message, outcome: Outcome) -> None:
        """Agents named in ``to`` got their copy from the sender before it posted the
        spool copy: they hold it already and are not offered it again. (An offer checks
        ``cur/`` and ``done/`` and then links into ``new/``; a reader that claims the
        sender's copy in between would find a second copy there.)"""
        for address in msg.to:
            if not is_routed(address) and address in self.directory.agents:
                outcome.hold(address, address)

    def _offer(self, agent: str, address: str, msg: Message, data: bytes, outcome: Outcome,
               progress: Progress) -> bool:
        """Deliver to one agent unless it holds the id already, its inbox is full, or it
        was given up. True if it holds the message now.

        A failure is this recipient's alone: it is counted in ``progress`` and the
        other recipients are offered the message all the same.
        """
        if agent in outcome.holders:
            outcome.hold(address, agent)
            return True
        if agent in outcome.failed or progress.given_up(agent) is not None:
            return False
        try:
            held = self._deliver(agent, address, msg, data, outcome)
        except DiskFull:
            raise  # the whole disk, not this inbox: the pass ends and routing pauses
        except MailboxError as exc:
            outcome.failed.add(agent)
            self._ledger.failed(progress, agent, str(exc))
            return False
        if held:
            progress.delivered(agent)
        return held

    def _deliver(self, agent: str, address: str, msg: Message, data: bytes,
                 outcome: Outcome) -> bool:
        try:
            inbox = self._mb.inbox(agent)
        except AgentNotFound:
            outcome.unroutable.append(Unroutable(address, f"no agent named {agent!r}"))
            return False
        fill = self._mb.quotas.full(inbox)
        if fill is not None and inbox.state_of(msg.id) is State.ABSENT:
            outcome.wait("deferred", address, f"inbox of {agent} is full "
                         f"({fill.unread} unread, quota {fill.quota})")
            return False
        if fill is None and inbox.deliver(msg.id, data):  # deliver is idempotent by id
            self._mb.quotas.delivered(agent)
        faults.hit("route.delivered")
        outcome.hold(address, agent)
        return True

    def _unsettled(self, agent: str, address: str, outcome: Outcome,
                   progress: Progress) -> None:
        """A recipient that did not get it: if its delivery failed, it waits or is given up."""
        failure = progress.recipients.get(agent)
        if failure is None or not (failure.given_up or agent in outcome.failed):
            return  # waiting for room, or unroutable: noted by the offer
        if failure.given_up:
            outcome.give_up(address, agent, f"could not deliver to {agent}: gave up after "
                            f"{attempts(failure)}; the last: {failure.reason}")
        else:
            outcome.wait("deferred", address, f"could not deliver to {agent} "
                         f"({attempts(failure)}, retried later): {failure.reason}")

    def _pick(self, address: str, agents: tuple[str, ...], msg: Message, data: bytes,
              outcome: Outcome, progress: Progress) -> None:
        """Deliver to exactly one agent of ``agents`` (unless one already holds it).

        A candidate whose delivery fails is passed over for the next best; one given
        up for this message is no candidate. If every agent was given up, the address
        is unroutable.
        """
        for agent in agents:
            if self._holds(agent, msg.id):
                outcome.hold(address, agent)
                return
        left = [a for a in agents if progress.given_up(a) is None]
        while left and (chosen := self._picker.choose(left)) is not None:
            if self._offer(chosen, address, msg, data, outcome, progress):
                return
            if chosen not in outcome.failed:
                return  # filled up since it was scored: the offer noted the wait
            left.remove(chosen)
        failures = {a: progress.recipients[a] for a in agents if a in progress.recipients}
        tried = "; ".join(f"{a}: {f.reason} ({attempts(f)})" for a, f in failures.items())
        if all(f.given_up for f in failures.values()) and len(failures) == len(agents):
            outcome.unroutable.append(Unroutable(address, f"no agent of {address} could take "
                                                          f"it: {tried}"))
            return
        outcome.wait("waiting", address, f"no live agent of {address} has room now "
                     f"({len(agents)} known)" + (f"; delivery failed to {tried}" if tried else ""))

    def _holds(self, agent: str, msg_id: str) -> bool:
        try:
            return self._mb.inbox(agent).state_of(msg_id) is not State.ABSENT
        except DiskFull:
            raise
        except MailboxError:
            return False  # unknown, or its inbox cannot be looked at: an offer finds out

