"""The message: a frozen record, its JSON encoding, its schema, and the clock that names it.

A message is one JSON object in one file (``<id>.json``), written once. Ids sort in
timestamp order as plain strings::

    01795443442123456789-9f86d081884c7d65
    └ 20-digit HLC stamp ┘ └ 64 random bits ┘

The stamp is a hybrid logical clock in nanoseconds: ``max(wall clock, last + 1)``
per writer, pushed forward by every stamp the writer reads, so it never runs
backwards even when the wall clock does, and replies sort after what they answer.
"""

from __future__ import annotations

import enum
import functools
import operator
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, cast

import orjson

from . import names
from .errors import InvalidInput, MessageTooLarge
from .fs import check_unique_keys

__all__ = ["FORMAT_VERSION", "Clock", "Malformed", "Message", "Priority", "decode", "encode",
           "composed", "encode_composed", "parse_expiry", "parse_time", "reply_subject"]

FORMAT_VERSION = 1
MAX_FUTURE_NS = 60 * 10**9  # stamps read from others further ahead than this do not move our clock
_KNOWN = frozenset({"v", "id", "ts", "from", "to", "subject", "kind", "thread", "reply_to",
                    "priority", "expires_at", "receipt", "headers", "body", "epoch"})


class Priority(enum.StrEnum):
    """How soon a message wants attention; the boot brief lists urgent mail first."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
_PRIORITIES = {str(p): p for p in Priority}


class Malformed(ValueError):
    """A file that is not a valid message; ``reason`` goes into the quarantine record.

    ``field`` names the offending field when one is to blame (a writer's error names it).
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class Clock:
    """A hybrid logical clock in nanoseconds; one per process is enough, and thread-safe."""

    def __init__(self, wall: Any = time.time_ns) -> None:
        self._wall = wall
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self, after: int = 0) -> int:
        """A stamp larger than every stamp this clock gave or observed, and than ``after``.

        ``after`` is a floor read from files whose order must follow their writing
        (an agent's handoffs and boots): a wall clock stepped back between two
        instances must not sort the newer file first. The floor is not remembered,
        so one agent's files never push the whole process's clock (and the ids of
        its mail) ahead.
        """
        with self._lock:
            self._last = max(self._wall(), self._last + 1)
            return max(self._last, after + 1)

    def observe(self, stamp: int) -> None:
        """Move forward past a stamp read from someone else (HLC receive rule)."""
        if stamp <= self._wall() + MAX_FUTURE_NS:
            with self._lock:
                self._last = max(self._last, stamp)

    def new_id(self, after: int = 0) -> str:
        """A fresh message id whose stamp is larger than ``after`` (see :meth:`stamp`)."""
        return str(self.stamp(after)).zfill(20) + "-" + _random_hex()


class _Entropy:
    """64-bit random suffixes from ``os.urandom``, read 64 at a time (one system call for
    64 ids, not one each) and kept as 16-digit hex texts; emptied in a forked child,
    which must never reuse its parent's bytes. ``list.pop`` is atomic, so no two
    threads ever take the same one (two that find it empty both refill: bytes read
    and not used are dropped, never reused)."""

    pool: ClassVar[list[str]] = []

    @classmethod
    def forget(cls) -> None:
        cls.pool = []

    @classmethod
    def refill(cls) -> None:
        text = os.urandom(512).hex()
        cls.pool = [text[i:i + 16] for i in range(0, len(text), 16)]


os.register_at_fork(after_in_child=_Entropy.forget)


def _random_hex() -> str:
    """16 hex digits of 64 bits from the cryptographic source (PROTOCOL.md §0.2 step 4)."""
    while True:
        try:
            return _Entropy.pool.pop()
        except IndexError:
            _Entropy.refill()


def stamp_of(msg_id: str) -> int:
    """The HLC stamp (nanoseconds since the epoch) at the front of an id."""
    return int(msg_id[:20])


def day_of(msg_id: str) -> str:
    """UTC date of an id's stamp, ``YYYY-MM-DD``: the shard of ``done/`` it lives in."""
    return _day_name(int(msg_id[:20]) // _DAY_NS)


def day_span(msg_id: str) -> tuple[str, str, str]:
    """The day of an id (as :func:`day_of`) and the ids that share it: ``(day, first, end)``,
    where every id ``i`` with ``first <= i < end`` (compared as strings: an id's stamp is 20
    zero-padded digits) has that day, and no other id does."""
    day = int(msg_id[:20]) // _DAY_NS
    return _day_name(day), f"{day * _DAY_NS:020d}", f"{(day + 1) * _DAY_NS:020d}"


_DAY_NS = 86_400_000_000_000


@functools.lru_cache(maxsize=64)
def _day_name(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86_400))


def iso(ns: int) -> str:
    """RFC 3339 UTC with microseconds (truncated) for a nanosecond timestamp."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    if 0 <= seconds < _YEAR_10000:
        return f"{_iso_second(seconds)}.{fraction // 1000:06d}Z"
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=fraction // 1000).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


_YEAR_10000 = 253_402_300_800


@functools.lru_cache(maxsize=16)
def _iso_second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole second (every send stamps one, so it is cached)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


@dataclass(frozen=True, slots=True)
class Message:
    """One message, as stored. Immutable: a message never changes once visible."""

    id: str
    sender: str
    to: tuple[str, ...]
    subject: str = ""
    body: Any = None
    kind: str = "message"
    thread: str = ""
    reply_to: str | None = None
    priority: Priority = Priority.NORMAL
    expires_at: str | None = None
    receipt: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    ts: str = ""
    epoch: int | None = None
    """The sender's instance epoch when it sent this (set by agents that boot)."""

    @property
    def stamp(self) -> int:
        return stamp_of(self.id)

    def __post_init__(self) -> None:
        # "high" given as a plain string becomes Priority.HIGH; anything else stays as
        # given, and encode() refuses it with the schema's reason.
        if type(self.priority) is not Priority and isinstance(self.priority, str):
            object.__setattr__(self, "priority", _PRIORITIES.get(self.priority, self.priority))

    @property
    def day(self) -> str:
        return day_of(self.id)

    def expired(self, now_ns: int | None = None) -> bool:
        if not self.expires_at:
            return False
        limit = parse_time(self.expires_at, "'expires_at'").timestamp()
        return (now_ns or time.time_ns()) / 1e9 >= limit

    def to_dict(self) -> dict[str, Any]:
        """The on-disk JSON object (``from`` spelled as on disk)."""
        out: dict[str, Any] = {
            "v": FORMAT_VERSION, "id": self.id, "ts": self.ts, "from": self.sender,
            "to": list(self.to) if isinstance(self.to, tuple | list) else self.to,
            "subject": self.subject, "kind": self.kind,
            "thread": self.thread or self.id, "reply_to": self.reply_to,
            "priority": str(self.priority) if isinstance(self.priority, str) else self.priority,
            "expires_at": self.expires_at,
            "receipt": self.receipt, "headers": self.headers, "body": self.body,
        }
        if self.epoch is not None:
            out["epoch"] = self.epoch
        return out

    def evolve(self, **changes: Any) -> Message:
        return replace(self, **changes)


def reply_subject(subject: str) -> str:
    """The subject of a reply: "re: " once, however long the exchange."""
    return subject if subject[:3].lower() == "re:" else f"re: {subject}".rstrip()


def encode(msg: Message, limit: int) -> bytes:
    """Encode ``msg`` as compact JSON bytes, refusing what a reader would quarantine.

    The fields are checked by the very schema :func:`decode` applies, so mail that is
    acknowledged is mail every reader accepts.

    Raises:
        InvalidInput: a field has the wrong type or value, or is not valid text; the
            error names the field.
        MessageTooLarge: the encoding is over ``limit`` bytes.
    """
    obj = msg.to_dict()
    _check_schema(obj)
    return _dump(obj, limit)


def encode_composed(msg: Message, limit: int) -> bytes:
    """:func:`encode` for a message whose id, sender and recipients its writer made or
    checked itself (``Mailbox.send``: a minted id, names that passed :mod:`names`): the
    fields a caller gave are checked by the reader's rules, the others are not looked
    at again.

    What passes :func:`_given_fields_plain` passes the reader's fast check too; anything
    else is checked as :func:`encode` checks it, so exactly the same messages are
    accepted, with the same errors.

    Raises:
        InvalidInput: as :func:`encode`.
        MessageTooLarge: as :func:`encode`.
    """
    obj = msg.to_dict()
    if not _given_fields_plain(obj):
        _check_schema(obj)
    return _dump(obj, limit)


def composed(msg_id: str, sender: str, to: tuple[str, ...], subject: str, body: Any, *,
             kind: str, thread: str, reply_to: str | None, priority: Priority | str,
             expires_at: str | None, receipt: bool, headers: dict[str, str], ts: str,
             epoch: int | None, limit: int) -> tuple[Message, bytes]:
    """The :class:`Message` of these fields and its bytes, for a message its writer just
    composed (``Mailbox.send``: a minted id, names that passed :mod:`names`): what
    ``Message(...)`` and :func:`encode_composed` give, with the same checks and errors.

    In the common case (what passes :func:`_given_fields_plain`) the on-disk object is
    laid out once, and the message is set slot by slot from the very values it holds,
    as :func:`decode` builds one; anything else goes through ``Message(...)`` and
    :func:`encode_composed`.

    Raises:
        InvalidInput: as :func:`encode`.
        MessageTooLarge: as :func:`encode`.
    """
    given = str(priority) if isinstance(priority, str) else priority  # as to_dict() says it
    obj: dict[str, Any] = {
        "v": FORMAT_VERSION, "id": msg_id, "ts": ts, "from": sender, "to": list(to),
        "subject": subject, "kind": kind, "thread": thread or msg_id, "reply_to": reply_to,
        "priority": given, "expires_at": expires_at, "receipt": receipt,
        "headers": headers, "body": body,
    }
    if epoch is not None:
        obj["epoch"] = epoch
    if type(to) is tuple and _given_fields_plain(obj):
        msg = _built((msg_id, sender, to, subject, body, kind, thread, reply_to,
                      _PRIORITIES[given], expires_at, receipt, headers, ts, epoch))
        return msg, _dump(obj, limit)
    msg = Message(id=msg_id, sender=sender, to=to, subject=subject, body=body, kind=kind,
                  thread=thread, reply_to=reply_to,
                  priority=cast(Priority, priority),  # Message turns a str into one
                  expires_at=expires_at, receipt=receipt, headers=headers, ts=ts, epoch=epoch)
    return msg, encode_composed(msg, limit)


def _check_schema(obj: dict[str, Any]) -> None:
    try:
        _check_version(obj)
        if _plain_fields(obj) is None:
            _build_checked(obj)  # says what is wrong, or accepts what the fast path does not
    except Malformed as exc:
        raise InvalidInput(f"invalid message: {exc.reason}",
                           hint="docs/PROTOCOL.md §7.1 gives the type of every field") from exc


def _dump(obj: dict[str, Any], limit: int) -> bytes:
    try:
        data = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError as exc:
        raise _unencodable(obj, exc) from exc
    if len(data) > limit:
        raise MessageTooLarge(len(data), limit)
    return data


def _given_fields_plain(obj: dict[str, Any]) -> bool:
    """The fields a caller of ``send`` gives, as :meth:`Message.to_dict` lays them out,
    each of the exact type :func:`_plain_fields` requires: a subset of what it accepts
    (no ``expires_at``, whose form the slower check parses). False sends the message
    through the whole check."""
    for key in _TEXT_FIELDS:
        value = obj[key]
        if value is not None and type(value) is not str:
            return False
    headers, epoch = obj["headers"], obj.get("epoch")
    return (type(headers) is dict
            and (not headers or all(type(v) is str for v in headers.values()))
            and type(obj["priority"]) is str and obj["priority"] in _PRIORITIES
            and obj["expires_at"] is None and type(obj["receipt"]) is bool
            and (epoch is None or type(epoch) is int))


def _unencodable(obj: dict[str, Any], exc: TypeError) -> InvalidInput:
    """Say which field JSON cannot hold (text that is not Unicode, a body of objects...)."""
    for key, value in obj.items():
        try:
            orjson.dumps(value)
        except TypeError as inner:
            if key == "body":
                return InvalidInput(f"message body is not JSON-serialisable: {inner}",
                                    hint="send str, numbers, lists and dicts with string keys")
            return InvalidInput(f"message field {key!r} is not valid text: {inner}",
                                hint="give text as valid UTF-8 (a command-line argument or "
                                     "header in another encoding cannot be sent)")
    return InvalidInput(f"message is not JSON-serialisable: {exc}")


def decode(data: bytes, *, expected_id: str | None = None) -> Message:
    """Parse and validate one message file; raise :class:`Malformed` with the reason."""
    obj = _parse(data)
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    _check_version(obj)
    # The common case is checked with as few calls as possible (_plain_fields); anything
    # else is decided by _build_checked, which says what is wrong. Both accept exactly
    # the same messages.
    fields = _plain_fields(obj)
    msg = _build_checked(obj) if fields is None else _built(fields)
    if expected_id is not None and msg.id != expected_id:
        raise Malformed(f"id {msg.id!r} does not match its file name {expected_id!r}")
    return msg


def _check_version(obj: dict[str, Any]) -> None:
    version = obj.get("v")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise Malformed(f"unknown format version {version!r} (this reader speaks {FORMAT_VERSION})",
                        "v")


def _parse(data: bytes) -> Any:
    try:
        obj = orjson.loads(data)  # strict: UTF-8, no BOM, no NaN, nesting <= 1024, no trailing
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc}") from exc
    try:
        canonical = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError as exc:  # orjson writes at most 254 levels, reads 1024
        raise Malformed(f"JSON nested too deeply to handle: {exc}") from exc
    if canonical != data:
        # Not in our canonical form (written by a shell or another library): it may
        # hide duplicate keys, which orjson resolves silently, last one winning.
        try:
            check_unique_keys(data)
        except ValueError as exc:
            raise Malformed(str(exc)) from exc
    return obj


_AGENT_NAME = names.sender_shape  # a local agent, or agent@host (mail from a bridge)
_ID_SHAPE = names.id_shape
_ANY_ADDRESS = names.address_shape


(_SET_ID, _SET_SENDER, _SET_TO, _SET_SUBJECT, _SET_BODY, _SET_KIND, _SET_THREAD, _SET_REPLY_TO,
 _SET_PRIORITY, _SET_EXPIRES_AT, _SET_RECEIPT, _SET_HEADERS, _SET_TS, _SET_EPOCH) = (
    getattr(Message, f.name).__set__ for f in dataclass_fields(Message))
_new = object.__new__


def _built(fields: tuple[Any, ...]) -> Message:
    """The Message of the checked ``fields`` (in field order) that :func:`_plain_fields`
    returns, set slot by slot: the dataclass ``__init__`` of a frozen class sets each field
    through ``object.__setattr__``, which costs more than the whole schema check (and its
    ``__post_init__`` has nothing to do: the priority is a Priority already)."""
    (msg_id, sender, to, subject, body, kind, thread, reply_to, priority, expires_at, receipt,
     headers, ts, epoch) = fields
    msg = _new(Message)
    _SET_ID(msg, msg_id)
    _SET_SENDER(msg, sender)
    _SET_TO(msg, to)
    _SET_SUBJECT(msg, subject)
    _SET_BODY(msg, body)
    _SET_KIND(msg, kind)
    _SET_THREAD(msg, thread)
    _SET_REPLY_TO(msg, reply_to)
    _SET_PRIORITY(msg, priority)
    _SET_EXPIRES_AT(msg, expires_at)
    _SET_RECEIPT(msg, receipt)
    _SET_HEADERS(msg, headers)
    _SET_TS(msg, ts)
    _SET_EPOCH(msg, epoch)
    return msg


_TEXT_FIELDS = ("subject", "kind", "thread", "reply_to", "ts")
"""The optional text fields of a message (a string, or null for the default)."""
_TEXT_TYPES = frozenset({str, type(None)})
"""The JSON types of an optional text field (a string, or null for the default)."""
_SHAPED_SENDERS: set[str] = set()
_SHAPED_ADDRESSES: set[str] = set()
_SHAPED_LIMIT = 4096


def _shaped(text: str, shape: Callable[[str], object], known: set[str]) -> bool:
    """Whether ``text`` has ``shape``, remembered in ``known`` if so: mail names the same
    few senders and recipients over and over, and a set look-up costs a fraction of a
    pattern match. (Bounded: past :data:`_SHAPED_LIMIT` names it starts afresh.)"""
    if not shape(text):
        return False
    if len(known) >= _SHAPED_LIMIT:
        known.clear()
    known.add(text)
    return True


_WRITTEN = ("id", "from", "to", "subject", "kind", "thread", "reply_to", "ts", "headers",
            "priority", "receipt", "expires_at")
"""The fields :meth:`Message.to_dict` always writes (``v`` is checked apart; ``body`` and
``epoch`` are read apart, ``epoch`` being written only when set)."""
_written = operator.itemgetter(*_WRITTEN)


def _plain_fields(obj: dict[str, Any]) -> tuple[Any, ...] | None:
    """The fields of a message in the common case, as :class:`Message` takes them in
    order, or None: every field present has the exact JSON type it must have, names and
    addresses are well formed, and there is no ``expires_at``. A writer's check stops here
    (it needs no Message built)."""
    try:
        (msg_id, sender, to, subject, kind, thread, reply_to, ts, headers, priority, receipt,
         expires_at) = _written(obj)
    except KeyError:  # not written by us: a field left out has its default
        get = obj.get
        (msg_id, sender, to, subject, kind, thread, reply_to, ts, headers, priority, receipt,
         expires_at) = (get(key) for key in _WRITTEN)
    if not (type(msg_id) is str and _ID_SHAPE(msg_id) and type(sender) is str
            and (sender in _SHAPED_SENDERS or _shaped(sender, _AGENT_NAME, _SHAPED_SENDERS))
            and type(to) is list and to):
        return None
    for address in to:
        if type(address) is not str or (address not in _SHAPED_ADDRESSES and not _shaped(
                address, _ANY_ADDRESS, _SHAPED_ADDRESSES)):
            return None
    if not {type(subject), type(kind), type(thread), type(reply_to), type(ts)} <= _TEXT_TYPES:
        return None
    if headers is None:
        headers = {}
    elif type(headers) is not dict or (headers and not all(
            type(v) is str for v in headers.values())):
        return None
    if priority is None:
        priority = Priority.NORMAL
    elif type(priority) is not str or (priority := _PRIORITIES.get(priority)) is None:
        return None
    epoch = obj.get("epoch")
    if (expires_at is not None or (receipt is not None and type(receipt) is not bool)
            or (epoch is not None and type(epoch) is not int)):
        return None
    return (msg_id, sender, tuple(to), subject or "", obj.get("body"),
            "message" if kind is None else kind, thread or msg_id, reply_to, priority, None,
            receipt or False, headers, ts or "", epoch)


def _build_checked(obj: dict[str, Any]) -> Message:
    _require(obj, "id", str)
    try:
        names.check_id(obj["id"])
    except InvalidInput as exc:
        raise Malformed(str(exc), "id") from exc
    sender = _require(obj, "from", str)
    if not _AGENT_NAME(sender):
        raise Malformed(f"field 'from': invalid sender {sender[:80]!r}", "from")
    to = _require(obj, "to", list)
    if not to or not all(isinstance(a, str) and _ANY_ADDRESS(a) for a in to):
        raise Malformed("'to' must be a non-empty list of addresses", "to")
    headers = _optional(obj, "headers", dict, {})
    for name, value in headers.items():
        if not isinstance(value, str):
            raise Malformed(f"'headers' values must be strings (header {name[:40]!r} is "
                            f"{type(value).__name__})", "headers")
    priority = _PRIORITIES.get(_optional(obj, "priority", str, "normal"))
    if priority is None:
        raise Malformed(f"field 'priority': unknown priority {str(obj.get('priority'))[:20]!r} "
                        f"(one of {', '.join(_PRIORITIES)})", "priority")
    epoch = _optional(obj, "epoch", int, None)
    return Message(
        id=obj["id"], sender=sender, to=tuple(to),
        subject=_optional(obj, "subject", str, ""), body=obj.get("body"),
        kind=_optional(obj, "kind", str, "message"),
        thread=_optional(obj, "thread", str, None) or obj["id"],
        reply_to=_optional(obj, "reply_to", str, None),
        priority=priority, expires_at=_expiry(obj),
        receipt=_optional(obj, "receipt", bool, False), headers=headers,
        ts=_optional(obj, "ts", str, ""), epoch=epoch,
    )


def _expiry(obj: dict[str, Any]) -> str | None:
    value: str | None = _optional(obj, "expires_at", str, None)
    if value is not None:
        try:
            parse_time(value, "'expires_at'")
        except InvalidInput as exc:
            raise Malformed(str(exc), "expires_at") from exc
    return value


# RFC 3339 date-time (PROTOCOL.md §7.1): YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM),
# ASCII digits, upper-case T and Z. Not datetime.fromisoformat, which also takes ISO 8601
# forms other readers refuse (basic format, week dates, no seconds, a space for T).
# (\d with re.ASCII is [0-9]: a time is not a name, whose patterns only names.py spells.)
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})"
                      r"(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?)?",
                      re.ASCII)


def parse_time(value: Any, what: str, *, hint: str = "", assume_utc: bool = False
               ) -> datetime:
    """An RFC 3339 time as an aware UTC datetime: the one parser of the times the
    protocol stores and the commands take.

    Exactly the form of PROTOCOL.md §7.1: ``YYYY-MM-DDTHH:MM:SS``, an optional
    fraction, then ``Z`` or ``+HH:MM``/``-HH:MM``. With ``assume_utc``, a time without
    an offset, or a bare ``YYYY-MM-DD``, is read as UTC: for what a user types
    (``--since``), never for a field read from a file.

    Args:
        value: the text to parse.
        what: how the error names it (``"'expires_at'"``, ``"--since"``...).
        hint: what the error tells the user to do.
        assume_utc: read a time without an offset as UTC rather than refuse it.

    Raises:
        InvalidInput: ``value`` is not text, not of that form, not a real date and time,
            has no offset, or is outside the years 1 to 9999 once in UTC; the message
            names ``what`` and says which.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be str, not {type(value).__name__}", hint=hint)
    parts = _RFC3339.fullmatch(value)
    if parts is None:
        raise _bad_time(what, value, "not an RFC 3339 time (YYYY-MM-DDTHH:MM:SSZ)", hint)
    if parts[8] is None and not assume_utc:
        why = "has no time zone (append Z for UTC)" if parts[4] else "has no time of day"
        raise _bad_time(what, value, why, hint)
    try:
        moment = _moment(parts)
    except ValueError as exc:
        raise _bad_time(what, value, f"not a real date and time ({exc})", hint) from exc
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise _bad_time(what, value, "outside the years 1 to 9999 once in UTC", hint) from exc


def _moment(parts: re.Match[str]) -> datetime:
    """The aware datetime the groups of :data:`_RFC3339` name (no offset: UTC).

    Raises:
        ValueError: a field is out of range (month 13, hour 24, offset +24:00...).
    """
    year, month, day, hour, minute, second = (int(p or 0) for p in parts.groups()[:6])
    micro = int((parts[7] or "").ljust(6, "0")[:6])
    zone = UTC
    if parts[8] not in (None, "Z"):
        sign = -1 if parts[8][0] == "-" else 1
        hours, minutes = int(parts[8][1:3]), int(parts[8][4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset {parts[8]} out of range")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)


def _bad_time(what: str, value: str, why: str, hint: str) -> InvalidInput:
    return InvalidInput(f"{what} {value[:40]!r}: {why}", hint=hint)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([smhd])")
_SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_expiry(value: Any) -> str | None:
    """A sender's expiry, an RFC 3339 time or a duration from now (``90s``, ``15m``,
    ``2h``, ``1d``), as the RFC 3339 UTC text a message stores; None for no expiry.

    Raises:
        InvalidInput: not a time or a duration, no time zone, or beyond year 9999.
    """
    if value is None:
        return None
    hint = ("give an RFC 3339 time (2026-12-01T12:00:00Z) or a duration like 90s, 15m, "
            "2h, 1d")
    if not isinstance(value, str):
        raise InvalidInput(f"field 'expires_at' must be str, not {type(value).__name__}",
                           hint=hint)
    duration = _DURATION.fullmatch(value)
    if not duration:
        moment = parse_time(value, "invalid expiry", hint=hint)
    else:
        try:
            seconds = float(duration[1]) * _SECONDS_PER[duration[2]]
            moment = datetime.now(UTC) + timedelta(seconds=seconds)
        except OverflowError as exc:
            raise InvalidInput(f"expiry {value[:40]!r} is too far ahead (the latest is the "
                               "end of year 9999 UTC)", hint=hint) from exc
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _require(obj: dict[str, Any], key: str, kind: type) -> Any:
    if key not in obj:
        raise Malformed(f"missing field {key!r}", key)
    return _check_type(obj[key], key, kind)


def _optional(obj: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = obj.get(key)
    return default if value is None else _check_type(value, key, kind)


def _check_type(value: Any, key: str, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Malformed(f"field {key!r} must be {kind.__name__}, not {type(value).__name__}",
                        key)
    return value
