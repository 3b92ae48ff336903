"""The layout is spelled once: the paths the code uses are exactly the tree of PROTOCOL.md §3."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import agentmailbox
from agentmailbox import layout

ROOT = Path("/r")
# One value for each placeholder of the tree, and for each argument of a path method.
SAMPLES = {"agent": "bob", "id": "01795443442123456789-9f86d081884c7d65", "day": "2026-12-01",
           "month": "2026-12", "key": "a" * 40, "name": "notes/plan.md",
           "version": "0000000001", "dead_id": "d1", "thread": "t1"}
ARGUMENTS = {"agent": "bob", "msg_id": SAMPLES["id"], "day": "2026-12-01", "month": "2026-12",
             "key": "a" * 40, "name": "notes/plan.md", "number": 1, "dead_id": "d1",
             "thread": "t1"}
LOCKS = ("state", "epoch", "agent", "lease")
# Names made by the code that stages them (fs.staging_name, inbox.HOLD_PREFIX), not paths.
STAGED = {"<id>.<pid>.<hex>", ".hold.<id>.<pid>.<hex>"}


def _results(obj: Any, name: str) -> list[Any]:
    """What the property ``name`` of ``obj`` gives, or its method called with samples."""
    value = getattr(obj, name)
    if not callable(value):
        return list(value) if isinstance(value, tuple) else [value]
    if isinstance(obj, layout.AgentPaths) and name == "lock":
        return [value(lock) for lock in LOCKS]
    return [value(*(ARGUMENTS[p] for p in inspect.signature(value).parameters))]


def _given(obj: Any) -> set[str]:
    """Every path a Paths object gives: its properties, and its methods called once."""
    out: set[str] = set()
    for name in dir(type(obj)):
        if name.startswith("_") or name == "path":
            continue
        for got in _results(obj, name):
            if isinstance(got, layout.AgentPaths | layout.SpoolPaths):
                out |= {str(got.path.relative_to(ROOT))} | _given(got)
            elif got != ROOT:
                out.add(str(got.relative_to(ROOT)))
    return out


def test_the_paths_the_code_uses_are_exactly_the_tree() -> None:
    """Every folder and file the code reaches is an entry of the documented layout, and
    every entry is reached, so the tree doctor checks is the tree the code writes."""
    given = _given(layout.Paths(ROOT))
    tree = {layout.fill(e.path, **SAMPLES) for e in layout.TREE
            if not any(e.path.endswith(s) for s in STAGED)}
    # <folder>/<id>.json: the folder is given, and message_file names the file.
    messages = {m for m in tree if m.endswith("/" + layout.message_file(SAMPLES["id"]))}
    assert (tree - messages, set()) == (given - messages,
                                        {m for m in messages if str(Path(m).parent) not in given})


def test_init_and_agent_add_make_the_folders_the_protocol_names() -> None:
    """init and agent add create the folders PROTOCOL.md §3 says they create."""
    assert (sorted(["agents", "spool/tmp", "spool/new", "spool/cur", "workspace", "dead", "run",
                    "journal"]),
            sorted(["inbox/tmp", "inbox/new", "inbox/cur", "inbox/done", "keys", "events",
                    "handoffs", "run"])) == (
        sorted(layout.made_folders("init")),
        sorted(p.removeprefix("agents/<agent>/") for p in layout.made_folders("agent add")))


_JOIN = re.compile(r"""\s/\s+f?["']""")


def test_no_module_but_layout_joins_a_path_literal() -> None:
    """Folder and file names of the tree are spelled in layout.py only: no module joins a
    literal onto a path (``path / "new"``)."""
    package = Path(agentmailbox.__file__).parent
    found = {str(p.relative_to(package)) for p in package.rglob("*.py")
             if p.name != "layout.py" and _JOIN.search(p.read_text())}
    assert set() == found
