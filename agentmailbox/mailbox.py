"""The public door: open a root, register agents, send mail, ask where it is."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import layout, names
from .addresses import Remote, expansion_of, split_recipients
from .dead import DeadLetter, DeadLetters
from .errors import (
    AlreadyExists,
    Conflict,
    InboxFull,
    InvalidInput,
    MessageNotFound,
    MessageTooLarge,
    ThreadDoneWarning,
)
from .fs import Disk, FolderSyncs, Fsync, faults
from .inbox import Inbox, State
from .message import Message, Priority, composed, day_of, encode, iso, parse_expiry
from .quotas import Quotas
from .registry import AgentInfo, Registry
from .root import DIRNAME, MODES, Config, Root, find_root
from .spool import Spool
from .threads import Threads

if TYPE_CHECKING:
    from .agent import Agent
    from .workspace import Workspace

__all__ = ["Delivery", "Mailbox", "Status"]

@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one copy of a message is, as its sender sees it (the read receipt)."""

    agent: str
    state: State
    read_at: str | None = None
    read_epoch: int | None = None
    done_at: str | None = None
    surfaced_at: str | None = None
    """When the message first reached the recipient's model (agentmailbox.surfacing)."""
    surfaced_epoch: int | None = None
    surfaced_via: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "state": _STATE_WORDS[self.state],
                "surfaced_at": self.surfaced_at, "surfaced_epoch": self.surfaced_epoch,
                "surfaced_via": self.surfaced_via, "read_at": self.read_at,
                "read_epoch": self.read_epoch, "done_at": self.done_at}


_STATE_WORDS = {State.NEW: "delivered", State.CLAIMED: "read", State.DONE: "done",
                State.ABSENT: "absent"}


@dataclass(frozen=True, slots=True)
class Status:
    """Per recipient: delivered, read (when, by which instance epoch) or done."""

    id: str
    sender: str
    subject: str
    recipients: tuple[Delivery, ...]
    routed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """How the supervisor expanded each routed address (address -> agents)."""
    spool: str | None = None
    """Where routed mail still waits: ``new``, ``cur``, ``deferred`` or ``held``."""
    dead: tuple[DeadLetter, ...] = ()
    """Its copies in ``dead/`` (expired, quarantined, undeliverable), oldest first."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "from": self.sender, "subject": self.subject,
                "recipients": [d.to_dict() for d in self.recipients],
                "routed": {a: list(agents) for a, agents in self.routed.items()},
                "spool": self.spool,
                "dead": [{"dead_id": d.id, "origin": d.origin, "reason": d.reason, "at": d.at}
                         for d in self.dead]}


class Mailbox:
    """One mailbox root, opened. Use as a context manager, or call :meth:`close`.

    Example::

        mb = Mailbox.init("/srv/team")
        mb.add_agent("alice", role="planner"); mb.add_agent("bob", role="coder")
        mb.send("alice", ["bob"], subject="plan v1", body={"steps": 3})
        with mb.agent("bob").inbox.processing() as msg:
            ...
    """

    def __init__(self, root: Root) -> None:
        self.root = root
        self.registry = Registry(root)
        self.dead = DeadLetters(root)
        self.spool = Spool(root)
        self.quotas = Quotas(self.registry, root.config)
        self._batch: list[tuple[Inbox | Spool, str, str]] | None = None
        self._syncs = FolderSyncs(root.disk)  # the done/ fsyncs a batch puts off
        self._inboxes: dict[str, Inbox] = {}
        self._epochs: dict[str, int | None] = {}
        self._threads: Threads | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", *, fsync: Fsync | str = Fsync.ALWAYS,
             mode: str = "private", exist_ok: bool = False, **settings: Any) -> Mailbox:
        """Create ``<path>/.mailbox`` (or use ``path`` if it is named ``.mailbox``)."""
        where = Path(path)
        base = where if where.name == DIRNAME else where / DIRNAME
        paths = layout.Paths(base)
        if paths.config.exists():
            if exist_ok:
                return cls.open(base)
            raise AlreadyExists(f"{base} already holds a mailbox", hint="use it, or pick a path")
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {sorted(MODES)}")
        config = Config._typed({"fsync": str(fsync), "mode": mode, **settings})
        disk = Disk(config.fsync, *MODES[mode], base=str(base))
        for sub in layout.made_folders("init"):
            disk.ensure_dir(base / sub)
        os.chmod(base, disk.dir_mode)
        disk.replace(paths.config, config.to_json())
        return cls.open(base)

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, *,
             fsync: Fsync | str | None = None) -> Mailbox:
        """Open the root at ``root``, ``$MAILBOX_ROOT``, or the nearest ``.mailbox/`` above."""
        if root is not None and not isinstance(root, str | os.PathLike):
            raise InvalidInput(f"a root is a path, not {type(root).__name__}")
        return cls(Root.load(find_root(None if root is None else os.fspath(root)), fsync=fsync))

    def close(self) -> None:
        self.root.journal.close()
        for inbox in self._inboxes.values():
            inbox.close()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.root.path

    @property
    def config(self) -> Config:
        return self.root.config

    # -- agents -----------------------------------------------------------------------------------

    def add_agent(self, name: str, *, role: str = "", groups: Sequence[str] = (),
                  topics: Sequence[str] = (), description: str = "", max_unread: int = 0
                  ) -> AgentInfo:
        """Register an agent and create its inbox."""
        return self.registry.add(name, role=role, groups=groups, topics=topics,
                                 description=description, max_unread=max_unread)

    def agents(self) -> list[AgentInfo]:
        return self.registry.all()

    def agent(self, name: str) -> Agent:
        """A handle on a registered agent (its inbox, and continuity features)."""
        from .agent import Agent

        return Agent(self, self.registry.require(name))

    def inbox(self, name: str) -> Inbox:
        """The inbox of a registered agent (cached per Mailbox, so claims share a scan)."""
        inbox = self._inboxes.get(name)
        if inbox is None:
            self.registry.require(name)
            inbox = Inbox(self.root, name, self.dead, epoch=lambda: self.epoch(name),
                          notify=self._receipt, syncs=self._syncs)
            self._inboxes[name] = inbox
        return inbox

    def epoch(self, name: str) -> int | None:
        """The instance epoch of ``name`` as this process knows it (read once, then cached)."""
        if name not in self._epochs:
            record = self.epoch_record(name)
            self._epochs[name] = None if record is None else int(record["epoch"])
        return self._epochs[name]

    def epoch_path(self, name: str) -> Path:
        return self.root.paths.agent(names.check_agent(name)).epoch

    def epoch_record(self, name: str) -> dict[str, Any] | None:
        """The last boot of ``name``: {"epoch", "at", "previous_at"}; None before the first."""
        try:
            obj = self.root.disk.read_object(self.epoch_path(name), 4096)
        except (FileNotFoundError, ValueError):
            return None
        return obj if isinstance(obj.get("epoch"), int) else None

    def set_epoch(self, name: str, epoch: int) -> None:
        """Record that this process now works as instance ``epoch`` of ``name``."""
        self._epochs[name] = epoch

    @property
    def threads(self) -> Threads:
        """Thread DONE markers."""
        if self._threads is None:
            self._threads = Threads(self.root)
        return self._threads

    @property
    def workspace(self) -> Workspace:
        from .workspace import Workspace

        return Workspace(self.root)

    # -- sending ----------------------------------------------------------------------------------

    def send(self, sender: str, to: str | Iterable[str], subject: str = "", body: Any = None, *,
             kind: str = "message", thread: str | None = None, reply_to: str | None = None,
             priority: Priority | str = Priority.NORMAL, expires_at: str | None = None,
             receipt: bool = False, headers: dict[str, str] | None = None,
             key: str | None = None, epoch: int | None = None, pick: str | None = None
             ) -> Message:
        """Deliver one message to each recipient; returns it (its ``id`` names it).

        Agent names are delivered now. Routed addresses (``@role``, ``#topic``,
        ``+group``, ``*``) are posted once to ``spool/`` for the supervisor, which
        expands them; ``to`` keeps the addresses as written, and an agent reached
        both ways gets one copy (the same id). An agent of another host
        (``bob@gpu1``) gets a copy in the outbound spool, which the bridge carries
        (docs/BRIDGE.md). Every recipient is checked before
        anything is written. With ``key``, the same (sender, key) stores one message
        however often it is sent (see PROTOCOL.md: idempotency keys).

        Args:
            pick: ``"one"``: each routed address reaches exactly one live agent,
                chosen by the supervisor by spare capacity (header ``pick: one``).

        Raises:
            InboxFull: a named agent's inbox holds its quota of unread mail.
        """
        written, direct, routed, remote = self._recipients(to)
        self.registry.require(sender)  # checks the name (once: a registration seen is trusted)
        # The reader's schema, before any write, of what the caller gave (the id, sender
        # and recipients were minted or checked just now).
        msg, data = self._compose(sender, written, subject, body, kind=kind,
                                  thread=thread, reply_to=reply_to, priority=priority,
                                  expires_at=parse_expiry(expires_at), receipt=receipt,
                                  headers=_pick_header(headers or {}, pick, routed),
                                  epoch=epoch)
        if msg.thread != msg.id:
            self._warn_if_thread_done(msg.thread)
        inboxes = [self.inbox(name) for name in direct]
        self._check_quotas(inboxes)  # before a key marker: a refused send leaves nothing
        minted = msg.id
        if key is not None:
            msg, data = self._claim_key(msg, data, names.check_key(key))
        fresh = msg.id == minted  # an id minted just now: no inbox can hold it yet
        self._record_send(msg)
        for inbox in inboxes:
            if self._deliver(inbox, msg.id, data, fresh=fresh):
                self.quotas.delivered(inbox.agent)
        if routed:
            self._deliver(self.spool, msg.id, data)
        if remote:
            self._post_remote(msg, data, remote)
        return msg

    def _post_remote(self, msg: Message, data: bytes, remote: list[Remote]) -> None:
        """The copies for agents of other hosts, into the bridge's outbound spool."""
        from .bridge.outbox import Outbox  # here: only mail to another host needs it
        from .bridge.receipts import Receipts

        Outbox(self.root).post(msg.id, data, remote)
        Receipts(self.root).start(msg, remote)

    def _check_quotas(self, inboxes: list[Inbox]) -> None:
        for inbox in inboxes:
            fill = self.quotas.full(inbox)
            if fill is not None:
                raise InboxFull(fill.agent, fill.unread, fill.quota)

    def _warn_if_thread_done(self, thread: str) -> None:
        marker = self.threads.done(thread)
        if marker is not None:
            warnings.warn(f"thread {thread} was marked done by {marker.by} at {marker.at}; "
                          "the mail is sent and flagged", ThreadDoneWarning, stacklevel=3)

    def _recipients(self, to: str | Iterable[str]
                    ) -> tuple[tuple[str, ...], list[str], list[str], list[Remote]]:
        """(``to`` as written, agent names, routed addresses, agents of other hosts); agent
        names must be registered."""
        if isinstance(to, str):
            wanted = [to]
        elif isinstance(to, Iterable) and not isinstance(to, bytes | dict):
            wanted = list(to)
        else:
            raise InvalidInput(f"recipients must be a name or a list of names, not "
                               f"{type(to).__name__}")
        if not wanted:
            raise InvalidInput("no recipients", hint="name at least one agent with --to")
        direct, routed, remote = split_recipients(wanted)
        for name in direct:
            self.registry.require(name)
        written = tuple(direct) if len(direct) == len(wanted) else tuple(dict.fromkeys(wanted))
        return written, direct, routed, remote

    def _compose(self, sender: str, to: tuple[str, ...], subject: str, body: Any, *,
                 kind: str = "message", thread: str | None = None,
                 reply_to: str | None = None, priority: Priority | str = Priority.NORMAL,
                 expires_at: str | None = None, receipt: bool = False,
                 headers: dict[str, str] | None = None, epoch: int | None = None
                 ) -> tuple[Message, bytes]:
        """A new message and its bytes, checked by the reader's schema (the id minted
        here, the sender and recipients checked by the caller)."""
        msg_id = self.root.clock.new_id()
        if thread is None:
            thread = msg_id if reply_to is None else self._thread_of(reply_to, sender) or msg_id
        elif isinstance(thread, str):  # another type: encode() refuses it, naming it
            names.check_thread(thread)
        return composed(msg_id, sender, to, str(subject), body, kind=kind, thread=thread,
                        reply_to=reply_to, priority=priority, expires_at=expires_at,
                        receipt=receipt, headers={} if headers is None else headers,
                        ts=iso(time.time_ns()), epoch=epoch,
                        limit=self.config.max_message_bytes)

    def _record_send(self, msg: Message) -> None:
        """The journal's ``send`` line of ``msg`` (PROTOCOL.md §12)."""
        self.root.journal.record_fields("send", {
            "id": msg.id, "from": msg.sender, "to": list(msg.to), "subject": msg.subject[:80],
            "kind": msg.kind, "thread": msg.thread, "reply_to": msg.reply_to})

    def _thread_of(self, reply_to: str | None, sender: str) -> str | None:
        """A reply joins the thread of what it answers (if the replier still has it and
        that thread is a name a writer may give), else the thread of the answered id."""
        if not isinstance(reply_to, str):
            return None  # None, or a wrong type that encode() refuses, naming the field
        names.check_id(reply_to)
        try:
            return writable_thread(self.inbox(sender).get(reply_to))
        except MessageNotFound:
            return reply_to

    def _deliver(self, inbox: Inbox | Spool, msg_id: str, data: bytes, *,
                 fresh: bool = False) -> bool:
        if self._batch is not None:
            staged = (inbox.stage(msg_id, data, fresh=fresh) if isinstance(inbox, Inbox)
                      else inbox.stage(msg_id, data))
            if staged is not None:
                self._batch.append((inbox, msg_id, staged))
            return staged is not None
        if isinstance(inbox, Inbox):
            return inbox.deliver(msg_id, data, fresh=fresh)
        return inbox.deliver(msg_id, data)

    def key_marker(self, sender: str, key: str) -> Path:
        """Where the marker of ``sender``'s idempotency key ``key`` lives (PROTOCOL.md §9.7)."""
        import hashlib  # here: only a send with a key needs it, and OpenSSL costs startup

        digest = hashlib.sha256(names.check_key(key).encode()).hexdigest()[:40]
        return self.root.paths.agent(names.check_agent(sender)).key_marker(digest)

    def _claim_key(self, msg: Message, data: bytes, key: str) -> tuple[Message, bytes]:
        """Make (sender, key) name exactly one message id: the marker is the commit point.

        The marker records the id; a retry after a crash at any point reuses that id,
        so delivery completes instead of being skipped or doubled.
        """
        folder, marker = self.root.paths.agent(msg.sender).keys, self.key_marker(msg.sender, key)
        digest = words_digest(msg)
        record = orjson.dumps({"key": key, "id": msg.id, "to": list(msg.to), "at": msg.ts,
                               "digest": digest})
        if len(record) > self.config.max_message_bytes:  # what load_key_marker admits
            raise MessageTooLarge(len(record), self.config.max_message_bytes)
        staged = self.root.disk.stage(folder, record)
        created = self.root.disk.place(staged, str(marker))
        faults.hit("send.key_marked")
        if created:
            self.root.disk.fsync_dir(folder)
            return msg, data
        try:
            earlier = load_key_marker(marker, self.root.disk, self.config.max_message_bytes)
        except FileNotFoundError as exc:  # its window ran out and doctor removed it just now
            raise Conflict(f"key marker of {key!r} was removed while in use",
                           hint="send again: the key's window has run out") from exc
        except ValueError as exc:
            raise InvalidInput(f"key marker {marker} is unreadable: {exc}",
                               hint="run: mailbox doctor --repair (it quarantines the marker; "
                                    "the key then sends new mail)") from exc
        if sorted(earlier["to"]) != sorted(msg.to):
            raise Conflict(f"key {key!r} was first used for mail to {', '.join(earlier['to'])}; "
                           f"this send is to {', '.join(msg.to)}",
                           hint="a retry must name the same recipients; use a new key for "
                                "different mail")
        known = earlier.get("digest")
        if isinstance(known, str) and known.startswith(DIGEST_SCHEME) and known != digest:
            raise Conflict(f"key {key!r} was first used for other mail (another subject, "
                           "body, kind, thread, reply, priority, expiry, receipt or headers)",
                           hint="a retry must send the same message; use a new key for "
                                "different mail")
        first = replace(msg, id=earlier["id"], ts=earlier.get("at") or msg.ts,
                        thread=msg.thread if msg.thread != msg.id else earlier["id"])
        return first, encode(first, self.config.max_message_bytes)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit, for producers and consumers of many messages at once.

        Sends inside are staged, synced with one syncfs, then published: nothing becomes
        visible before the batch commits, and a crash inside the block publishes nothing
        (the staged files are swept by recovery). Under ``fsync=batch`` a ``done`` inside
        takes effect at once but its ``done/<day>/`` folder is fsynced at the end, once
        (under ``always`` every done still fsyncs). The journal lines of the block are
        appended with one write at its end.
        """
        if self._batch is not None:
            yield
            return
        self._batch = []
        self._syncs.defer()
        self.root.journal.hold()
        try:
            yield
            self._commit(self._batch)
        finally:
            pending, self._batch = self._batch, None
            try:
                for _, _, staged in pending:
                    self.root.disk.unlink(staged)
                self._syncs.flush()
            finally:
                self.root.journal.flush()

    def _commit(self, pending: list[tuple[Inbox | Spool, str, str]]) -> None:
        if not pending:
            return
        if self.root.disk.fsync is not Fsync.NEVER:
            self.root.disk.syncfs(self.path)
        folders = set()
        for inbox, msg_id, staged in pending:
            inbox.publish_staged(staged, msg_id)
            folders.add(inbox.new)
        pending.clear()
        if self.root.disk.fsync is not Fsync.NEVER:
            for folder in folders:
                self.root.disk.sync_dir(folder)

    def _receipt(self, original: Message, state: str, reader: str) -> None:
        """The explicit receipt a sender asked for (``receipt=True``), into its inbox."""
        if not self.registry.exists(original.sender):
            return
        faults.hit("receipt.pending")
        # Straight into the sender's inbox: a receipt is not new work, so quotas and
        # the done-thread warning do not apply (a full inbox must not fail a claim).
        msg, data = self._compose(reader, (original.sender,),
                                  f"{state}: {original.subject}"[:200],
                                  {"of": original.id, "state": state, "by": reader,
                                   "epoch": self.epoch(reader)},
                                  kind="receipt", thread=writable_thread(original),
                                  reply_to=original.id,
                                  epoch=self.epoch(reader))
        self._record_send(msg)
        self.inbox(original.sender).deliver(msg.id, data, fresh=True)

    # -- where is my mail -----------------------------------------------------------------------

    def status(self, msg_id: str, sender: str | None = None) -> Status:
        """Where ``msg_id`` is: per recipient delivered, surfaced (when it first reached
        the recipient's model, agentmailbox.surfacing), read (when, by which epoch) or
        done; still in the spool; and its copies in ``dead/`` (where from, why, since when).

        Raises:
            MessageNotFound: no inbox, the spool nor ``dead/`` holds it (or, with
                ``sender``, it is not mail ``sender`` sent).
        """
        names.check_id(msg_id)
        found = {n: self.inbox(n).state_of(msg_id) for n in self.registry.list_names()}
        holders = [n for n, s in found.items() if s is not State.ABSENT]
        spooled = self.spool.get(msg_id)
        dead = self.dead.of_message(msg_id)
        msg = (self.inbox(holders[0]).get(msg_id) if holders
               else spooled[1] if spooled is not None else None)
        from .bridge.receipts import Receipts  # here: the send path does not need it

        receipts = Receipts(self.root)
        remote = receipts.load(msg_id)  # mail to other hosts (docs/BRIDGE.md)
        if msg is None and not dead and remote is None:
            raise MessageNotFound(msg_id, "any inbox, the spool, the bridge or dead/")
        from_, subject, to = ((msg.sender, msg.subject, msg.to) if msg is not None
                              else (remote["from"], str(remote.get("subject", "")),
                                    tuple(remote["to"])) if remote is not None
                              else (dead[-1].sender, dead[-1].subject or "", ()))
        if sender is not None and from_ != sender:
            raise MessageNotFound(msg_id, f"mail sent by {sender}")
        events = self._events_about(msg_id)
        recipients = [n for n in to if n in found]
        recipients += [n for n in holders if n not in recipients]
        deliveries = [self._delivery(n, found[n], events) for n in recipients]
        if remote is not None:
            deliveries += _remote_deliveries(receipts.states(remote))
        return Status(msg_id, from_ or "", subject, tuple(deliveries),
                      routed=expansion_of(events), spool=spooled[0] if spooled else None,
                      dead=dead)

    def _events_about(self, msg_id: str) -> list[dict[str, Any]]:
        return [e for e in self.root.journal.events(since_day=day_of(msg_id))
                if e.get("id") == msg_id or msg_id in (e.get("ids") or ())]

    @staticmethod
    def _delivery(agent: str, state: State, events: list[dict[str, Any]]) -> Delivery:
        mine = [e for e in events if e.get("agent") == agent]
        claims = [e for e in mine if e["ev"] == "claim"]
        dones = [e for e in mine if e["ev"] == "done"]
        first_claim = claims[0] if claims and state is not State.NEW else None
        shown = next((e for e in mine if e["ev"] == "surface"), None)
        return Delivery(
            agent, state,
            surfaced_at=iso(shown["t"]) if shown else None,
            surfaced_epoch=shown.get("epoch") if shown else None,
            surfaced_via=str(shown["via"]) if shown else None,
            read_at=iso(first_claim["t"]) if first_claim else None,
            read_epoch=first_claim.get("epoch") if first_claim else None,
            done_at=iso(dones[-1]["t"]) if dones and state is State.DONE else None)


DIGEST_SCHEME = "am1:"
"""The prefix of the key-marker digests this library writes (PROTOCOL.md §9.7)."""


def words_digest(msg: Message) -> str:
    """What a caller chose for ``msg``, as one digest: a retry under the same key sends the
    same words; the id, time, epoch and a thread defaulted to the id do not count."""
    import hashlib  # here: only a send with a key needs it

    words = {"to": sorted(msg.to), "subject": msg.subject, "body": msg.body, "kind": msg.kind,
             "thread": None if msg.thread == msg.id else msg.thread, "reply_to": msg.reply_to,
             "priority": str(msg.priority), "expires_at": msg.expires_at,
             "receipt": msg.receipt, "headers": msg.headers}
    encoded = orjson.dumps(words, option=orjson.OPT_SORT_KEYS)
    return DIGEST_SCHEME + hashlib.sha256(encoded).hexdigest()


def load_key_marker(path: Path, disk: Disk, limit: int) -> dict[str, Any]:
    """Read an idempotency-key marker (``{"key", "id", "to", "at", "digest"}``, PROTOCOL.md
    §9.7; markers of older writers have no digest).

    ``limit`` is the root's ``max_message_bytes``: a marker names the recipients of one
    message, and the writer refuses one larger than that.

    Raises:
        FileNotFoundError: there is none.
        ValueError: the file is not a key marker; says why.
    """
    obj = disk.read_object(path, limit)
    if not (isinstance(obj.get("id"), str) and names.is_id(obj["id"])
            and isinstance(obj.get("to"), list) and all(isinstance(a, str) for a in obj["to"])
            and isinstance(obj.get("at", ""), str)):
        raise ValueError('not a key record {"key", "id", "to", "at"}')
    return obj


_REMOTE_STATES = {None: State.ABSENT, "delivered": State.NEW, "read": State.CLAIMED,
                  "done": State.DONE}


def _remote_deliveries(states: dict[str, tuple[str | None, dict[str, int]]]
                       ) -> list[Delivery]:
    """Where each agent of another host has the message, as its bridge's receipts said."""
    out = []
    for address, (state, times) in states.items():
        done = times.get("done")
        read = times.get("read", done)  # finished between two looks: read by then
        out.append(Delivery(address, _REMOTE_STATES[state],
                            read_at=None if read is None else iso(read),
                            done_at=None if done is None else iso(done)))
    return out


def writable_thread(msg: Message) -> str:
    """The thread an answer to ``msg`` (a reply, a receipt, a notice) joins: its own, if a
    writer may give that name (readers accept any string, which an older writer may have
    sent), else ``msg``'s id."""
    return msg.thread if names.is_thread(msg.thread) else msg.id


def _pick_header(headers: dict[str, str], pick: str | None, routed: list[str]
                 ) -> dict[str, str]:
    """Record ``pick: one`` in the headers (only meaningful for routed addresses)."""
    if pick is None or not isinstance(headers, dict):
        return headers  # not a dict: encode() refuses it, naming the field
    if pick != "one":
        raise InvalidInput(f"unknown pick {pick!r}", hint="the only choice is: one")
    if not routed:
        raise InvalidInput("pick one needs a routed address",
                           hint="address a role, topic or group: --to @coder --pick one")
    return {**headers, "pick": "one"}
