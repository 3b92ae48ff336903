"""`agent edit` from several processes at once: every change survives.

Each process edits its own field of the same agent.json, in rounds, and checks before
each edit that the value it wrote last is still there; an edit that read the file
before another process wrote it, and replaced it after, would take that value away.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
from conftest import python_env

from agentmailbox import Mailbox

ROUNDS = 200

_EDITOR = textwrap.dedent("""
    import os, sys, time
    import orjson
    from agentmailbox import Mailbox

    root, field, prefix, rounds, start = sys.argv[1:6]
    while not os.path.exists(start):
        time.sleep(0.001)
    lost, last = 0, None
    with Mailbox.open(root) as mb:
        for i in range(int(rounds)):
            if last is not None and getattr(mb.registry.get("bob"), field) != last:
                lost += 1
            last = f"{prefix}{i}"
            mb.registry.edit("bob", **{field: last})
    print(orjson.dumps({"lost": lost, "last": last}).decode())
""")


def _editors(root: Path, start: Path, fields: dict[str, str]) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", _EDITOR, str(root), field, prefix,
                              str(ROUNDS), str(start)], env=python_env(), text=True,
                             stdout=subprocess.PIPE)
            for field, prefix in fields.items()]


def test_concurrent_edits_of_different_fields_lose_no_change(tmp_path: Path) -> None:
    """Two processes editing role and description 200 times each, at once, lose none of
    their changes: each sees its own last value before every edit, and both at the end."""
    mb = Mailbox.init(tmp_path, fsync="never")
    mb.add_agent("bob")
    start = tmp_path / "start"
    fields = {"role": "r", "description": "d"}
    procs = _editors(mb.path, start, fields)
    start.touch()
    reports = {}
    for field, proc in zip(fields, procs, strict=True):
        out, _ = proc.communicate(timeout=120)
        assert 0 == proc.returncode
        reports[field] = orjson.loads(out)
    final = mb.registry.get("bob")
    lost = sum(r["lost"] for r in reports.values()) + sum(
        getattr(final, f) != r["last"] for f, r in reports.items())
    assert 0 == lost
