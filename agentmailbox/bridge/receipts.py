"""Receipts of remote recipients: how ``mailbox status ID`` knows where ``bob@gpu1`` is.

Both ends keep a small file per message, and only the bridge changes them:

::

    bridge/receipts/<id>.json              on the sending host: the message's sender,
                                           subject and to, and each remote recipient's
                                           last state {"bob@gpu1": {"state", "at"}}
    bridge/track/<id>.<agent>@<host>.json  on the receiving host: remote mail delivered
                                           here, and the last state sent back for it

The receiving bridge sends ``delivered`` right after its delivery, then looks at the
tracked copies (three ``stat`` calls each) and sends ``read`` and ``done`` as the local
agent claims and finishes them; a copy is no longer tracked once ``done`` was
acknowledged by JetStream. A state only moves forward (delivered < read < done), so a
receipt published twice, or out of order, changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from .. import layout, names
from ..addresses import Remote
from ..fs import staging_name
from ..locks import held
from ..message import Message, iso
from ..root import Root

__all__ = ["STATES", "Receipts", "Tracker", "rank", "receipt_message"]

STATES = ("delivered", "read", "done")
"""The receipt states, in the order a copy moves through them."""

_LIMIT = 1 << 20
LOCK_SECONDS = 10.0
"""How long a change to a receipts record waits for another one to finish."""


def rank(state: str | None) -> int:
    """0 for no state, then 1, 2, 3 for delivered, read, done."""
    return STATES.index(state) + 1 if state in STATES else 0


class Receipts:
    """``bridge/receipts/``: on the sending host, each remote recipient's last state."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._disk = root.disk
        self._paths = root.paths

    def start(self, msg: Message, remotes: list[Remote]) -> None:
        """Record a message sent to remote agents. The first writer (the sender, or the
        supervisor for the agents a routed address reached) creates the record; a later
        one adds the recipients it does not list yet, and a retry changes nothing."""
        record = {"v": 1, "id": msg.id, "from": msg.sender, "subject": msg.subject,
                  "to": list(msg.to), "thread": msg.thread, "receipt": msg.receipt,
                  "recipients": {str(r): None for r in remotes}}
        staged = self._disk.stage(self._paths.bridge_tmp, orjson.dumps(record),
                                  staging_name(msg.id))
        created = self._disk.place(staged, str(self._paths.receipt(msg.id)))
        if created:
            return
        with self._changing():
            known = self.load(msg.id)
            if known is not None and any(str(r) not in known["recipients"] for r in remotes):
                known["recipients"].update({str(r): None for r in remotes
                                            if str(r) not in known["recipients"]})
                self._disk.replace(self._paths.receipt(msg.id), orjson.dumps(known))

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold ``bridge/receipts.lock`` while a record is read and replaced: the sending
        supervisor (adding recipients) and the bridge (applying states) both change
        records, and neither may lose what the other wrote."""
        with held(self._paths.receipts_lock, self._disk, timeout=LOCK_SECONDS,
                  message="another process has been changing a receipts record for "
                          f"{LOCK_SECONDS:.0f} s",
                  hint="a supervisor or bridge of this root may be stuck; try again"):
            yield

    def load(self, msg_id: str) -> dict[str, Any] | None:
        """The record of ``msg_id``, or None if there is none or it is not one."""
        try:
            obj = self._disk.read_object(self._paths.receipt(names.check_id(msg_id)), _LIMIT)
        except (FileNotFoundError, ValueError):
            return None
        ok = (obj.get("id") == msg_id and isinstance(obj.get("recipients"), dict)
              and isinstance(obj.get("to"), list) and isinstance(obj.get("from"), str))
        return obj if ok else None

    def apply(self, msg_id: str, address: str, state: str, at: int) -> dict[str, Any] | None:
        """Record that ``address`` reached ``state``; the record as changed, or None if
        this changes nothing."""
        with self._changing():
            record = self.load(msg_id)
            if record is None or address not in record["recipients"]:
                return None
            known = record["recipients"][address]
            known = known if isinstance(known, dict) else {}
            if rank(known.get("state")) >= rank(state):
                return None
            times = known.get("times")
            times = dict(times) if isinstance(times, dict) else {}
            record["recipients"][address] = {"state": state, "times": {**times, state: at}}
            self._disk.replace(self._paths.receipt(msg_id), orjson.dumps(record))
            return record

    def states(self, record: dict[str, Any]) -> dict[str, tuple[str | None, dict[str, int]]]:
        """Remote recipient -> (last state or None, state -> when it was reported, in ns)."""
        out: dict[str, tuple[str | None, dict[str, int]]] = {}
        for address, value in record["recipients"].items():
            value = value if isinstance(value, dict) else {}
            state = value.get("state") if value.get("state") in STATES else None
            times = value.get("times")
            times = times if isinstance(times, dict) else {}
            out[address] = (state, {k: t for k, t in times.items() if type(t) is int})
        return out


def receipt_message(record: dict[str, Any], address: str, state: str, at: int) -> Message:
    """The explicit receipt (PROTOCOL.md §13) of a remote recipient, for a sender that
    asked for one (``receipt: true``): from ``bob@gpu1``, to the sender.

    Its id is a function of (message, recipient, state) and of the time the remote bridge
    saw the state, so a receipt applied twice (a crash between the delivery of this
    message and the record) is stored once by the inbox.
    """
    digest = hashlib.sha256(f"{record['id']}:{address}:{state}".encode()).hexdigest()
    thread = record.get("thread")
    return Message(
        id=f"{at:020d}-{digest[:16]}", sender=address, to=(record["from"],),
        subject=f"{state}: {record.get('subject', '')}"[:200], kind="receipt",
        body={"of": record["id"], "state": state, "by": address, "epoch": None},
        thread=thread if isinstance(thread, str) and names.is_thread(thread) else record["id"],
        reply_to=record["id"], ts=iso(at))


class Tracker:
    """``bridge/track/``: on the receiving host, remote mail whose receipts still go back.

    Only the bridge writes these files, so it reads the folder once and then keeps what it
    wrote in memory (the receipt loop looks at every tracked copy each second).
    """

    def __init__(self, root: Root) -> None:
        self._disk = root.disk
        self._paths = root.paths
        self._known: dict[tuple[str, str, str], str | None] | None = None

    def track(self, msg_id: str, agent: str, origin: str) -> None:
        """Start tracking a copy just delivered (no receipt sent yet); kept if tracked."""
        name = layout.outbound_file(msg_id, agent, origin)
        staged = self._disk.stage(self._paths.bridge_tmp, orjson.dumps({"state": None}),
                                  staging_name(msg_id))
        created = self._disk.place(staged, str(self._paths.tracked(name)))
        if created and self._known is not None:
            self._known[(msg_id, agent, origin)] = None

    def sent(self, msg_id: str, agent: str, origin: str, state: str) -> None:
        """Remember that ``state`` went back for this copy; forget it once ``done`` did."""
        name = layout.outbound_file(msg_id, agent, origin)
        if state == "done":
            self._disk.unlink(self._paths.tracked(name))
            if self._known is not None:
                self._known.pop((msg_id, agent, origin), None)
            return
        self._disk.replace(self._paths.tracked(name), orjson.dumps({"state": state}))
        if self._known is not None:
            self._known[(msg_id, agent, origin)] = state

    def tracked(self) -> list[tuple[str, str, str, str | None]]:
        """Each tracked copy: (id, local agent, sender's host, last state sent)."""
        if self._known is None:
            self._known = self._load()
        return sorted((*key, state) for key, state in self._known.items())

    def _load(self) -> dict[tuple[str, str, str], str | None]:
        known: dict[tuple[str, str, str], str | None] = {}
        for entry in self._disk.scan(self._paths.bridge_track):
            parts = names.outbound_parts(entry.name)
            if parts is None:
                continue
            try:
                state = self._disk.read_object(entry.path, 4096).get("state")
            except (FileNotFoundError, ValueError):
                state = None
            known[parts] = state if isinstance(state, str) else None
        return known
