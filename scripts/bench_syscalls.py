"""Workload SYS: system calls per message, counted by `strace -f -c` in a child process.

The child builds the contestant, sends (or drains) `n` messages, and exits; a run with no
message is subtracted, so what remains is the per-message cost of send and of receive
(claim + read + done). Only the client's own calls are counted (a server's, Redis's, are
not).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
CHILD = """
import sys
sys.path[:0] = [{scripts!r}, {repo!r}]
from bench_contestants import CONTESTANTS
from bench_workloads import messages
cls = next(c for c in CONTESTANTS if c.name == {name!r})
store = cls({root!r}, {policy!r})
store.open()
if {what!r} == "send":
    for msg in messages({n}):
        store.send(msg)
else:
    for _ in range({n}):
        if store.receive() is None:
            raise SystemExit("drained too few")
store.close()
"""


def strace_missing() -> str | None:
    """Why the counts cannot be taken here, or None."""
    return None if shutil.which("strace") else "strace is not installed"


def calls(name: str, root: Path, policy: str, what: str, n: int) -> int:
    """Every system call of a child that sends or receives `n` messages (strace -f -c)."""
    code = CHILD.format(scripts=str(SCRIPTS), repo=str(SCRIPTS.parent), name=name,
                        root=str(root), policy=policy, what=what, n=n)
    with tempfile.NamedTemporaryFile(prefix="strace-", suffix=".txt") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name, sys.executable, "-c", code],
                       check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
        return total(Path(out.name).read_text())


def total(report: str) -> int:
    """The calls column of the `total` line of an `strace -c` report."""
    for line in report.splitlines():
        fields = line.split()
        if fields and fields[-1] == "total":
            return int(fields[3])
    raise RuntimeError("no total line in the strace report")


def per_message(cls: Any, root: Path, policy: str, n: int) -> dict[str, float]:
    """System calls per message sent and per message received, in a fresh store."""
    cls(root, policy).create()
    sent = calls(cls.name, root, policy, "send", n) - calls(cls.name, root, policy, "send", 0)
    drained = (calls(cls.name, root, policy, "drain", n)
               - calls(cls.name, root, policy, "drain", 0))
    return {"send_calls": sent / n, "drain_calls": drained / n}
