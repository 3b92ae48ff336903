"""Startup rows of the benchmark: how long one ``mailbox`` call takes, against the bare
interpreter of the same venv.

Agents call the command dozens of times a session, and a hook may run it on every
prompt, so its import cost is paid each time. Each command runs ``REPS`` times,
interleaved with ``python -c pass`` (so a busy phase of the machine falls on all alike),
on a small root (three unread messages); the row is the median wall time and its ratio
to the bare interpreter's median. Bytecode is compiled first, as an installed package
has it (``PYTHONDONTWRITEBYTECODE`` would otherwise make every run compile the package).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPS = 20
WARMUP = 2
BARE = "python -c pass"


def mailbox_command() -> list[str]:
    """The venv's ``mailbox`` script, as users run it (else ``python -m agentmailbox``)."""
    script = Path(sys.executable).parent / "mailbox"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentmailbox"]


def commands() -> dict[str, list[str]]:
    """Row label -> argv; the first row is the bare interpreter every ratio divides by."""
    mailbox = mailbox_command()
    return {
        BARE: [sys.executable, "-c", "pass"],
        "python -c 'import orjson'": [sys.executable, "-c", "import orjson"],
        "python -c 'import click, orjson'": [sys.executable, "-c", "import click, orjson"],
        "mailbox --help": [*mailbox, "--help"],
        "mailbox inbox bob": [*mailbox, "inbox", "bob"],
        "mailbox read bob --peek": [*mailbox, "read", "bob", "--peek"],
        "mailbox send --from alice --to carol --body hi": [
            *mailbox, "send", "--from", "alice", "--to", "carol", "--body", "hi"],
        HOOK: [*mailbox, "hook", "prompt", "--agent", "bob"],
    }


HOOK = "mailbox hook prompt (no news)"
"""The UserPromptSubmit hook on its every-prompt path: the warm-up surfaces bob's mail, so
the measured runs find nothing new and print nothing."""
PROMPT_EVENT = (b'{"session_id": "bench", "transcript_path": "/dev/null", "cwd": "/", '
                b'"hook_event_name": "UserPromptSubmit", "prompt": "go on"}')


def make_root(parent: Path) -> dict[str, str]:
    """A root with alice, bob (three unread messages) and carol; the children's env."""
    sys.path.insert(0, str(REPO))
    from agentmailbox import Mailbox

    mb = Mailbox.init(parent)
    for name in ("alice", "bob", "carol"):
        mb.add_agent(name)
    for i in range(3):
        mb.send("alice", "bob", subject=f"task {i}", body="details")
    mb.close()
    return {**os.environ, "MAILBOX_ROOT": str(mb.path)}


def wall(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> float:
    """Seconds one run of ``argv`` takes, output discarded; it must succeed."""
    began = time.perf_counter()
    subprocess.run(argv, env=env, input=stdin, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def measure(reps: int = REPS) -> list[dict[str, float | str]]:
    """One row per command: median ms over ``reps`` interleaved runs, and x the bare run."""
    compileall.compile_dir(REPO / "agentmailbox", quiet=1)
    argvs = commands()
    times: dict[str, list[float]] = {label: [] for label in argvs}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as top:
        env = make_root(Path(top))
        for rep in range(WARMUP + reps):
            for label, argv in argvs.items():
                took = wall(argv, env, PROMPT_EVENT if label == HOOK else b"")
                if rep >= WARMUP:
                    times[label].append(took)
    bare = statistics.median(times[BARE])
    return [{"command": label, "median_ms": round(statistics.median(t) * 1e3, 1),
             "x_bare": round(statistics.median(t) / bare, 2)} for label, t in times.items()]


def markdown(rows: list[dict[str, float | str]]) -> str:
    """The startup table in markdown."""
    lines = ["| command | median ms | x `python -c pass` |", "|---|---|---|"]
    lines += [f"| `{r['command']}` | {r['median_ms']} | {r['x_bare']:.2f} |" for r in rows]
    return "\n".join(lines) + (
        f"\n\nMedian wall time of {REPS} runs each, interleaved, on a root with three "
        f"unread messages (scripts/bench_startup.py); load average {os.getloadavg()[0]:.2f} "
        "after.")


if __name__ == "__main__":
    print(markdown(measure()))
