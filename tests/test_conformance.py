"""The conformance vectors of docs/PROTOCOL.md (§24), run against the library.

Each case in ``tests/conformance/*.json`` lays down a root and some files, runs steps
(open, send, claim, scan, done, release, status, doctor, route, thread_done) and says
what must result. A client in another language runs the same files against itself;
this module is the reference runner. A case the library gets wrong carries ``xfail``
with the bug it shows, until the code is fixed.
"""

from __future__ import annotations

import base64
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentmailbox import Mailbox, MailboxError, State, doctor

VECTORS = Path(__file__).resolve().parent / "conformance"
REASONS: dict[str, list[str]] = orjson.loads((VECTORS / "reasons.json").read_bytes())
DEFAULT_AGENTS = [{"name": "alice", "role": "planner"}, {"name": "bob", "role": "coder"}]
STATES = {"new": State.NEW, "cur": State.CLAIMED, "done": State.DONE, "absent": State.ABSENT}


def load_cases() -> Iterator[Any]:
    """Every case of every vector file, as a pytest parameter named ``file:case``."""
    for path in sorted(VECTORS.glob("*.json")):
        if path.name == "reasons.json":
            continue
        for case in orjson.loads(path.read_bytes())["cases"]:
            marks = ([pytest.mark.xfail(strict=True, reason=case["xfail"])]
                     if "xfail" in case else [])
            yield pytest.param(case, id=f"{path.stem}:{case['name']}", marks=marks)


# -- laying down a root --------------------------------------------------------------------------


def make_root(top: Path, case: dict[str, Any]) -> Path:
    """The root a case starts from: ``mailbox init``, its agents, then its files."""
    spec = case.get("root", {})
    mb = Mailbox.init(top, fsync="never", mode=spec.get("mode", "private"),
                      **spec.get("config", {}))
    for agent in spec.get("agents", DEFAULT_AGENTS):
        mb.add_agent(agent["name"], role=agent.get("role", ""),
                     groups=agent.get("groups", ()), topics=agent.get("topics", ()))
    mb.close()
    if spec.get("format", 2) != 2:
        config = orjson.loads((mb.path / "mailbox.json").read_bytes())
        config["format"] = spec["format"]
        (mb.path / "mailbox.json").write_bytes(orjson.dumps(config) + b"\n")
    for entry in case.get("files", []):
        lay_down(mb.path, entry)
    return mb.path


def content(entry: dict[str, Any]) -> bytes:
    """The bytes of a file entry: ``json``, ``text``, ``base64``, or a ``file`` of the vectors."""
    if "json" in entry:
        return orjson.dumps(entry["json"]) + b"\n"
    if "text" in entry:
        return str(entry["text"]).encode()
    if "base64" in entry:
        return base64.b64decode(entry["base64"])
    return (VECTORS / entry["file"]).read_bytes()


def lay_down(root: Path, entry: dict[str, Any]) -> None:
    path = root / entry["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    if "symlink" in entry:
        path.symlink_to(entry["symlink"])
    elif "link" in entry:
        os.link(root / entry["link"], path)
    elif entry.get("fifo"):
        os.mkfifo(path)
    else:
        path.write_bytes(content(entry))
    if "age_seconds" in entry:
        then = time.time() - entry["age_seconds"]
        os.utime(path, (then, then), follow_symlinks=False)


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every name under the root with its inode, size and mtime: what a scan must not change."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(Path(folder) / name)
            found[os.path.relpath(Path(folder) / name, root)] = (st.st_ino, st.st_size,
                                                                  st.st_mtime_ns)
    return found


# -- the steps -----------------------------------------------------------------------------------


def run_step(root: Path, step: dict[str, Any]) -> dict[str, Any]:
    """Do one step; returns its outcome (``refused`` with the error for a MailboxError)."""
    try:
        with Mailbox.open(root) as mb:
            return ACTIONS[step["do"]](mb, step)
    except MailboxError as exc:
        return {"outcome": "refused", "error": type(exc).__name__, "exit_code": exc.exit_code}


def do_open(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    return {"outcome": "accepted"}


def do_send(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    args = {k: step[k] for k in ("kind", "thread", "reply_to", "priority", "expires_at",
                                 "receipt", "headers", "key", "pick") if k in step}
    msg = mb.send(step["from"], step["to"], step.get("subject", ""), step.get("body"), **args)
    return {"outcome": "accepted", "id": msg.id, "fields": msg.to_dict()}


def do_claim(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    msg = mb.inbox(step["agent"]).claim(step.get("id"))
    if msg is None:
        return {"outcome": "empty"}
    return {"outcome": "claimed", "id": msg.id, "fields": msg.to_dict()}


def do_scan(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    return {"outcome": "listed", "ids": [m.id for m in mb.inbox(step["agent"]).list()]}


def do_done(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    mb.inbox(step["agent"]).done(step["id"])
    return {"outcome": "accepted"}


def do_release(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    mb.inbox(step["agent"]).release(step["id"])
    return {"outcome": "accepted"}


def do_status(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    status = mb.status(step["id"], step.get("from"))
    return {"outcome": "accepted", "recipients": {d.agent: str(d.state) for d in
                                                  status.recipients},
            "spool": status.spool}


def do_doctor(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    found = doctor.check(mb, repair=step.get("repair", False), stale_after=0)
    return {"outcome": "accepted", "findings": sorted({f.kind for f in found})}


def do_route(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    from agentmailbox.supervisor import Supervisor

    with Supervisor(mb) as sup:
        sup.run_once()
    return {"outcome": "accepted"}


def do_thread_done(mb: Mailbox, step: dict[str, Any]) -> dict[str, Any]:
    mb.threads.mark_done(step["thread"], by=step.get("by"))
    return {"outcome": "accepted", "done": mb.threads.done(step["thread"]) is not None}


ACTIONS = {"open": do_open, "send": do_send, "claim": do_claim, "scan": do_scan,
           "done": do_done, "release": do_release, "status": do_status, "doctor": do_doctor,
           "route": do_route, "thread_done": do_thread_done}


# -- what must result ----------------------------------------------------------------------------


def contains(expected: Any, actual: Any) -> bool:
    """``expected`` is ``actual``, or for objects a subset of it (recursively)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(k in actual and contains(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual) and type(expected) is type(actual)


def check_outcome(expect: dict[str, Any], got: dict[str, Any], sent: str | None) -> None:
    """The step's own result; ``"$sent"`` stands for the id the last send returned."""
    expect = {k: sent if v == "$sent" else v for k, v in expect.items()}
    for key in ("outcome", "error", "exit_code", "id", "ids", "findings", "recipients",
                "spool_folder", "done"):
        if key in expect:
            actual = got.get("spool") if key == "spool_folder" else got.get(key)
            assert expect[key] == actual, (key, got)
    if "fields" in expect:
        assert contains(expect["fields"], got.get("fields")), got


def dead_categories(mb: Mailbox) -> list[str]:
    """The reason category of every dead letter: the first in reasons.json one of whose
    texts occurs in its reason."""
    out = []
    for letter in mb.dead.list():
        matches = [c for c, texts in REASONS.items() if any(t in letter.reason for t in texts)]
        assert matches, f"dead letter with an unknown reason: {letter.reason!r}"
        out.append(matches[0])
    return out


def unread(mb: Mailbox, agent: str) -> list[dict[str, Any]]:
    return [m.to_dict() for m in mb.inbox(agent).list()]


def check_root(root: Path, expect: dict[str, Any], sent: str | None) -> None:
    """The root-wide expectations of a step: states, dead letters, mail, spool, files."""
    if {"states", "dead", "mail", "spool"}.isdisjoint(expect):
        return check_files(root, expect)
    with Mailbox.open(root) as mb:
        for agent, ids in expect.get("states", {}).items():
            for msg_id, state in ids.items():
                msg_id = sent if msg_id == "$sent" else msg_id
                assert STATES[state] == mb.inbox(agent).state_of(msg_id), (agent, msg_id)
        if "dead" in expect:
            assert Counter(expect["dead"]) == Counter(dead_categories(mb))
        for agent, wanted in expect.get("mail", {}).items():
            got = unread(mb, agent)
            assert len(wanted) == len(got), (agent, got)
            assert all(contains(w, g) for w, g in zip(wanted, got, strict=True)), (agent, got)
        for folder, ids in expect.get("spool", {}).items():
            assert ids == sorted(p.name[:-5] for p in (root / "spool" / folder).glob("*.json"))
    check_files(root, expect)


def check_files(root: Path, expect: dict[str, Any]) -> None:
    for path, there in expect.get("files", {}).items():
        assert (there == "present") == os.path.lexists(root / path), path


@pytest.mark.parametrize("case", list(load_cases()))
def test_conformance_vector(case: dict[str, Any], tmp_path: Path) -> None:
    """The library does what each conformance vector says a conforming program does."""
    root = make_root(tmp_path, case)
    sent = None
    for step in case["steps"]:
        before = snapshot(root)
        got = run_step(root, step)
        expect = step["expect"]
        check_outcome(expect, got, sent)
        sent = got.get("id", sent) if step["do"] == "send" else sent
        if step["do"] == "scan" or expect.get("unchanged"):
            assert before == snapshot(root), "a listing changed the root"
        check_root(root, expect, sent)


def test_every_vector_names_an_operation_and_an_outcome() -> None:
    """Every case has known operations, each with an outcome and defined dead categories."""
    params = list(load_cases())
    assert len({p.id for p in params}) == len(params)
    cases = [p.values[0] for p in params]
    for case in cases:
        assert case["about"] and case["steps"], case["name"]
        for step in case["steps"]:
            assert step["do"] in ACTIONS and "outcome" in step["expect"], case["name"]
            assert set(step["expect"].get("dead", [])) <= set(REASONS), case["name"]
