"""The shape of every command's ``--json`` output, as JSON Schema, and a checker for it.

One contract: a command that returns one result prints one JSON document on one line
(compact, as :func:`._base.emit` writes it); a command that streams (``watch``, ``tail``)
prints one JSON document per line. :data:`SHAPES` says which, and gives the schema of each
document; docs/CLI.md prints them (scripts/gen_cli_docs.py) and tests/test_json_contract.py
runs every command against them. The commands never import this module.

Only the part of JSON Schema used here is checked (:func:`problems`): ``type``,
``properties``, ``required``, ``items``, ``enum`` and ``anyOf``. Objects may carry more keys
than listed; the listed ones are there, with those types, in every release.
"""

from __future__ import annotations

from typing import Any, NamedTuple

Schema = dict[str, Any]

__all__ = ["NAMED", "SHAPES", "Shape", "describe", "problems"]


class Shape(NamedTuple):
    """What one command prints under --json."""

    stream: bool
    """True: one JSON document per line (a stream); False: one document."""
    schema: Schema
    """The schema of each document."""
    note: str = ""


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
ANY: Schema = {}
OBJECT: Schema = {"type": "object"}


def opt(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(**properties: Schema) -> Schema:
    """An object with these keys (all required) and possibly others."""
    return {"type": "object", "properties": properties, "required": list(properties)}


def extend(base: Schema, **properties: Schema) -> Schema:
    return obj(**base["properties"], **properties)


CONTEXT = obj(hookSpecificOutput=obj(hookEventName=STR, additionalContext=STR))
"""What a hook adds to the model's context (Claude Code's hook output)."""
HOOK_NOTE = "the harness's JSON (docs/INTEGRATIONS.md), the same with or without --json"

SETUP = obj(path=STR, agent=opt(STR), undo=BOOL, dry_run=BOOL, changed=BOOL, written=BOOL,
            settings={"type": "object"}, diff=STR)
SETUP_NOTE = ("settings: the whole file as written (or as --dry-run would write it); diff: "
              "the unified diff under --dry-run, else \"\"; agent: null under --undo and "
              "--agent-from-env")

MESSAGE = obj(v=INT, id=STR, ts=STR, **{"from": STR}, to=arr(STR), subject=STR, kind=STR,
              thread=STR, reply_to=opt(STR),
              priority={"enum": ["low", "normal", "high", "urgent"]}, expires_at=opt(STR),
              receipt=BOOL, headers={"type": "object"}, body=ANY)
READ = extend(MESSAGE, claim=opt(obj(by=STR, until=STR)))
READ_OUT = {"anyOf": [READ, arr(READ), {"type": "null"}]}
AGENT = obj(name=STR, role=STR, groups=arr(STR), topics=arr(STR), description=STR,
            max_unread=INT, created=STR)
SENT = obj(id=STR, to=arr(STR), thread=STR, offline=arr(obj(agent=STR, since=STR)))
HANDOFF = obj(id=STR, at=STR, epoch=opt(INT), final=BOOL, in_progress=arr(STR),
              decided=arr(STR), next=arr(STR), can_wait=arr(STR),
              waiting_on=arr(obj(agent=STR, ref=STR, note=STR)))
EVENT = obj(t=INT, at=STR, kind=STR, text=STR, tags=arr(STR), epoch=opt(INT))
MARKER = obj(thread=STR, by=opt(STR), at=STR, note=STR)
DEAD = obj(id=STR, reason=STR, origin=STR, name=STR, at=STR)
COUNT = obj(id=STR)

NAMED: dict[str, Schema] = {"message": MESSAGE, "read-message": READ, "agent": AGENT,
                            "sent": SENT, "handoff": HANDOFF, "event": EVENT,
                            "thread-marker": MARKER, "dead-letter": DEAD}
"""Shapes used by several commands, by the name docs/CLI.md gives them."""

SHAPES: dict[str, Shape] = {
    "init": Shape(False, obj(root=STR, created=BOOL)),
    "agent add": Shape(False, AGENT),
    "agent show": Shape(False, AGENT),
    "agent edit": Shape(False, AGENT),
    "agents": Shape(False, arr(extend(
        AGENT, liveness=STR, heartbeat_at=opt(STR), heartbeat_age_seconds=opt(NUM),
        capacity=opt(NUM), mode=opt(STR), unread=INT, oldest_unread_age_seconds=opt(NUM),
        never_surfaced=INT, oldest_never_surfaced_age_seconds=opt(NUM),
        claimed=INT))),
    "whoami": Shape(False, obj(name=STR, role=STR, root=STR, epoch=opt(INT))),
    "send": Shape(False, SENT),
    "inbox": Shape(False, arr(extend(MESSAGE, state={"enum": ["new", "cur"]},
                                     thread_done=BOOL))),
    "read": Shape(False, READ_OUT, "a message; a list with --all; null (exit 3) when none. "
                  "claim is null with --peek"),
    "peek": Shape(False, READ_OUT, "as read --peek: claim is null"),
    "next": Shape(False, READ_OUT, "a message; null at the timeout (exit 3)"),
    "done": Shape(False, arr(extend(COUNT, done=BOOL, already=BOOL))),
    "release": Shape(False, arr(extend(COUNT, released=BOOL))),
    "reply": Shape(False, extend(SENT, reply_to=STR, done=BOOL),
                   "done: true if --done marked the message done"),
    "status": Shape(False, obj(id=STR, **{"from": STR}, subject=STR, recipients=arr(obj(
        agent=STR, state=STR, surfaced_at=opt(STR), surfaced_epoch=opt(INT),
        surfaced_via=opt(STR), read_at=opt(STR), read_epoch=opt(INT), done_at=opt(STR))))),
    "ws put": Shape(False, obj(name=STR, version=INT)),
    "ws get": Shape(False, obj(name=STR, version=INT, size=INT, base64=STR, text=opt(STR)),
                    "base64: the exact bytes; text: the same when valid UTF-8, else null"),
    "ws ls": Shape(False, arr(obj(name=STR, version=INT, size=INT))),
    "ws lock": Shape(False, obj(name=STR, command=arr(STR), exit_status=INT),
                     "printed after COMMAND ran; exit_status is negative for a signal"),
    "doctor": Shape(False, obj(root=STR, clean=BOOL, findings=arr(obj(
        kind=STR, path=STR, detail=STR, repaired=BOOL))), "exit 10 when not clean"),
    "watch": Shape(True, MESSAGE, "one line per message, as it arrives"),
    "heartbeat": Shape(False, obj(agent=STR, at=INT, at_iso=STR, pid=INT, capacity=opt(NUM),
                                  mode=STR, epoch=opt(INT))),
    "tail": Shape(True, obj(t=INT, ev=STR), "one line per journal event; other keys by event"),
    "supervise": Shape(False, {"type": "object", "additionalProperties": INT},
                       "with --once: counts of what the pass did; without, nothing on "
                       "stdout (logs are JSON lines on stderr)"),
    "dead ls": Shape(False, arr(DEAD)),
    "dead show": Shape(False, extend(DEAD, content=STR)),
    "dead retry": Shape(False, obj(dead_id=STR, id=STR, to=STR, stored=BOOL)),
    "dead purge": Shape(False, obj(purged=arr(STR))),
    "handoff": Shape(False, {"anyOf": [HANDOFF, arr(HANDOFF), {"type": "null"}]},
                     "the note written; --show: the latest (null if none), --history: a "
                     "list. handoff --file takes this object back"),
    "state set": Shape(False, obj(key=STR, value=ANY)),
    "state get": Shape(False, ANY, "every key as an object; with KEY, its value"),
    "state unset": Shape(False, obj(key=STR, removed=BOOL)),
    "remember": Shape(False, EVENT),
    "memory": Shape(False, arr(EVENT)),
    "boot": Shape(False, obj(agent=STR, epoch=opt(INT), budget=INT),
                  "and one key per section: {summary, items, omitted}"),
    "hook session-start": Shape(True, CONTEXT, HOOK_NOTE),
    "hook prompt": Shape(True, CONTEXT, HOOK_NOTE + "; nothing when no mail is new"),
    "hook stop": Shape(True, obj(decision={"enum": ["block"]}, reason=STR),
                       HOOK_NOTE + "; nothing when the session may stop"),
    "hook pre-compact": Shape(True, ANY, "prints nothing"),
    "hook session-end": Shape(True, ANY, "prints nothing"),
    "setup claude-code": Shape(False, SETUP, SETUP_NOTE),
    "setup codex": Shape(False, SETUP, SETUP_NOTE),
    "hook wait": Shape(True, ANY, "prints nothing; the doorbell is on stderr, with exit 2"),
    "mcp": Shape(False, obj(tools=arr(obj(name=STR, description=STR, inputSchema=OBJECT)),
                            tokens=INT, budget=INT, per_tool=OBJECT, instructions=STR),
                 "with --tools: the tool list as tools/list sends it, and its cost in tokens "
                 "(characters/4); serving, stdout carries the MCP protocol alone"),
    "bridge status": Shape(False, obj(
        host=opt(STR), running=BOOL, pid=opt(INT), updated_at=opt(STR), spool_depth=INT,
        spool_oldest_age_seconds=opt(NUM), sent_kept=INT, tracked=INT, remote_agents=INT,
        connected=BOOL,
        server_version=opt(STR), reconnects=INT, last_ack_at=opt(STR), last_error=opt(STR),
        consumer=opt(obj(num_pending=INT, num_ack_pending=INT, num_redelivered=INT)),
        counts={"type": "object", "additionalProperties": INT}, problems=arr(STR)),
        "the daemon's last view (bridge/status.json) and the spool as it is now; "
        "docs/BRIDGE.md"),
    "thread done": Shape(False, extend(MARKER, created=BOOL)),
    "thread show": Shape(False, obj(thread=STR, done=opt(MARKER), messages=arr(obj(
        id=STR, **{"from": opt(STR)}, subject=STR, recipients={"type": "object"})))),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "object": (dict,), "array": (list,)}


def problems(value: Any, schema: Schema, where: str = "$") -> list[str]:
    """Where ``value`` does not fit ``schema`` (empty if it does)."""
    if "anyOf" in schema:
        tries = [problems(value, s, where) for s in schema["anyOf"]]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        return [f"{where}: {type(value).__name__} where {kind} was expected"]
    found: list[str] = []
    if isinstance(value, dict):
        found += [f"{where}: no key {k!r}" for k in schema.get("required", []) if k not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                found += problems(value[key], sub, f"{where}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in set(value) - set(schema.get("properties", {})):
                found += problems(value[key], extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{i}]")
    return found


def describe(schema: Schema, named: bool = True) -> str:
    """``schema`` in a short notation: ``{"id": string, "to": [string]}``, ``a | null``,
    and the :data:`NAMED` shapes by name (``<message>``)."""
    for name, known in NAMED.items():
        if named and schema is known:
            return f"<{name}>"
    if "anyOf" in schema:
        return " | ".join(describe(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "|".join(f'"{v}"' for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"[{describe(schema.get('items', ANY))}]"
    if kind == "object" and "properties" in schema:
        return "{" + ", ".join(f'"{k}": {describe(v)}'
                               for k, v in schema["properties"].items()) + "}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"{{string: {describe(schema['additionalProperties'])}}}"
    return str(kind or "any")


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])
