"""Run the word-count job while killing its agents at random; check the result is exact.

::

    python examples/restarting_agents/driver.py --seed 7

The driver makes a root (a temporary folder, or ``--root``), puts a corpus made
from the seed into the workspace, sends the job to the splitter, and starts the four
agents (splitter, counter-1, counter-2, merger) as separate processes. Every 0.5-3 s
(seeded) it SIGKILLs one of them and restarts it after a short pause, until the
merger's DONE marker on the job thread appears. Then it lets the agents hand off and
exit, and checks:

- ``result.json`` equals an independent count of the corpus;
- every count task and every partial was stored once per chunk (idempotency keys);
- every version of ``result.json`` added exactly one new chunk (exactly-once merge).

Exit code 0 only if all of that holds; 1 if not; 2 if the job timed out.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from agentmailbox import Mailbox, Message, State  # noqa: E402
from examples.restarting_agents.agents import COUNTERS, MERGER, RESULT  # noqa: E402
from examples.restarting_agents.corpus import chunk_lines, count_words, make_corpus  # noqa: E402

CORPUS = "corpus.txt"
AGENTS = (("splitter", "splitter"), ("counter", COUNTERS[0]), ("counter", COUNTERS[1]),
          ("merger", MERGER))

# Exit codes.
EXACT = 0        # the result is exact and nothing was done twice
WRONG = 1        # a wrong result, duplicated work, or an agent that crashed by itself
TIMEOUT = 2      # no DONE marker before --timeout
INTERRUPTED = 130  # Ctrl-C: every agent process is killed, the root is kept


@dataclass
class Proc:
    """One agent's current process (None while it waits to be restarted)."""

    role: str
    name: str
    popen: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    exited: bool = False  # handed off and exited by itself (it saw the DONE marker)


@dataclass
class Tally:
    kills: int = 0
    restarts: int = 0
    crashes: list[str] = field(default_factory=list)  # agents that exited by themselves early
    unclean: list[str] = field(default_factory=list)  # agents that did not exit cleanly at the end


class Fleet:
    """The four agent processes: start, kill, restart, stop."""

    def __init__(self, root: Path, logs: Path, pace: float) -> None:
        self.root, self.logs, self.pace = root, logs, pace
        self.procs = [Proc(role, name) for role, name in AGENTS]
        self.tally = Tally()

    def start(self, proc: Proc) -> None:
        """A fresh instance: a new process, its output appended to ``logs/<name>.log``."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO),
                                                           os.environ.get("PYTHONPATH", "")]))
        with open(self.logs / f"{proc.name}.log", "ab") as log:
            proc.popen = subprocess.Popen(
                [sys.executable, "-m", "examples.restarting_agents.agents", proc.role,
                 proc.name, str(self.root), "--pace", str(self.pace)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def running(self) -> list[Proc]:
        return [p for p in self.procs if p.popen is not None and p.popen.poll() is None]

    def kill(self, proc: Proc, popen: subprocess.Popen[bytes], pause: float) -> None:
        """SIGKILL: no handoff, no cleanup; the next instance recovers from the files."""
        popen.send_signal(signal.SIGKILL)
        popen.wait()
        proc.popen, proc.restart_at = None, time.monotonic() + pause
        self.tally.kills += 1

    def kill_one(self, rng: random.Random, pause: float) -> None:
        """Kill one running agent, chosen by the seeded ``rng``."""
        running = [(p, p.popen) for p in self.procs if p.popen and p.popen.poll() is None]
        if running:
            self.kill(*rng.choice(running), pause)

    def tend(self, pause: float) -> None:
        """Restart what is due; restart (and count) an agent that crashed by itself."""
        now = time.monotonic()
        for proc in self.procs:
            if proc.popen is None and not proc.exited and now >= proc.restart_at:
                self.start(proc)
                self.tally.restarts += 1
            elif proc.popen is not None and proc.popen.poll() is not None:
                self._exited(proc, proc.popen.returncode, now + pause)

    def _exited(self, proc: Proc, code: int, restart_at: float) -> None:
        if code == 0:
            proc.exited = True  # a clean exit: the agent saw the job's DONE marker
        else:
            self.tally.crashes.append(f"{proc.name} (exit {code})")
        proc.popen, proc.restart_at = None, restart_at

    def finish(self, grace: float) -> None:
        """After DONE: start anyone still down, let all exit by themselves, then stop them."""
        for proc in self.procs:
            if proc.popen is None and not proc.exited:
                self.start(proc)
                self.tally.restarts += 1
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in self.running():
            proc.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for proc in self.procs:
            self._reap(proc)

    def _reap(self, proc: Proc) -> None:
        if proc.popen is None:
            return
        try:
            code = proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            code = proc.popen.wait()
        if code != 0:
            self.tally.unclean.append(f"{proc.name} (exit {code})")

    def close(self) -> None:
        """Leave no process behind, whatever happened."""
        for proc in self.running():
            proc.popen.kill()  # type: ignore[union-attr]
            proc.popen.wait()  # type: ignore[union-attr]


def prepare(root: Path, seed: int, lines: int, chunks: int, fsync: str) -> tuple[Mailbox, str]:
    """A new root with the agents, the corpus in the workspace, and the job sent."""
    mb = Mailbox.init(root, fsync=fsync)
    mb.add_agent("driver", role="driver", description="starts jobs, checks results")
    for role, name in AGENTS:
        mb.add_agent(name, role=role)
    mb.workspace.put(CORPUS, make_corpus(seed, lines).encode(), author="driver")
    job = mb.send("driver", "splitter", f"count the words of {CORPUS}",
                  {"corpus": CORPUS, "chunks": chunks}, key=f"job:{seed}")
    return mb, job.id


def run_job(mb: Mailbox, fleet: Fleet, job: str, args: argparse.Namespace) -> bool:
    """Start the agents and kill one at random until the DONE marker; False on timeout."""
    rng = random.Random(args.seed)
    for proc in fleet.procs:
        fleet.start(proc)
    deadline = time.monotonic() + args.timeout
    next_kill = time.monotonic() + rng.uniform(args.kill_min, args.kill_max)
    while mb.threads.done(job) is None:
        if time.monotonic() > deadline:
            return False
        fleet.tend(args.pause)
        if time.monotonic() >= next_kill:
            fleet.kill_one(rng, args.pause)
            next_kill = time.monotonic() + rng.uniform(args.kill_min, args.kill_max)
        time.sleep(0.02)
    return True


def stored(mb: Mailbox, agent: str) -> list[Message]:
    """Every message an agent's inbox holds, whatever its state (new, claimed, done)."""
    inbox = mb.inbox(agent)
    done = [inbox.get(p.stem) for p in sorted(inbox.done_dir.glob("*/*.json"))]
    return [*inbox.list(State.NEW), *inbox.list(State.CLAIMED), *done]


def duplicates(messages: list[Message]) -> int:
    """Messages beyond one per chunk."""
    return len(messages) - len({m.body["chunk"] for m in messages})


def merge_audit(mb: Mailbox, corpus: str, chunks: int) -> int:
    """Versions of result.json that did not add exactly one new chunk with its exact counts."""
    bad, merged, totals = 0, set(), Counter()  # type: ignore[var-annotated]
    for version in range(1, mb.workspace.version(RESULT) + 1):
        result = orjson.loads(mb.workspace.get(RESULT, version).data)
        added = set(result["merged"]) - merged
        if len(added) == 1 and len(result["merged"]) == len(merged) + 1:
            totals.update(count_words(chunk_lines(corpus, chunks, added.pop())))
        if len(result["merged"]) != len(merged) + 1 or dict(totals) != result["counts"]:
            bad += 1
        merged = set(result["merged"])
    return bad


def report(mb: Mailbox, fleet: Fleet, job: str, args: argparse.Namespace,
           elapsed: float, finished: bool) -> dict[str, Any]:
    corpus = mb.workspace.get(CORPUS).data.decode()
    expected = count_words(corpus)
    version = mb.workspace.version(RESULT)
    result = orjson.loads(mb.workspace.get(RESULT).data) if version else {"counts": {}}
    tasks = [m for name in COUNTERS for m in stored(mb, name)]
    memories = {name: mb.agent(name).memory.events() for _, name in AGENTS}
    return {
        "seed": args.seed, "root": str(mb.path), "job": job, "finished": finished,
        "chunks": args.chunks, "words": sum(expected.values()),
        "kills": fleet.tally.kills, "restarts": fleet.tally.restarts,
        "crashes": fleet.tally.crashes, "unclean_exits": fleet.tally.unclean,
        "boots": {name: (mb.epoch_record(name) or {}).get("epoch", 0) for _, name in AGENTS},
        "duplicate_tasks": duplicates(tasks),
        "duplicate_partials": duplicates(stored(mb, MERGER)),
        "duplicate_merges": merge_audit(mb, corpus, args.chunks),
        "recoveries": sum("recovery" in e.tags for es in memories.values() for e in es),
        "drift_noticed": sum("drift" in e.tags for es in memories.values() for e in es),
        "merges_skipped": sum("skipped" in e.tags for es in memories.values() for e in es),
        "result_version": version,
        "exact": result["counts"] == expected and result.get("merged") == list(range(args.chunks)),
        "elapsed": round(elapsed, 2),
    }


def verdict(facts: dict[str, Any]) -> int:
    if not facts["finished"]:
        return TIMEOUT
    clean = not (facts["crashes"] or facts["unclean_exits"] or facts["duplicate_tasks"]
                 or facts["duplicate_partials"] or facts["duplicate_merges"])
    return EXACT if facts["exact"] and clean else WRONG


def describe(facts: dict[str, Any]) -> str:
    boots = ", ".join(f"{n} {b}" for n, b in facts["boots"].items())
    return "\n".join([
        f"seed {facts['seed']}: {facts['chunks']} chunks, {facts['words']} words",
        f"kills {facts['kills']}, restarts {facts['restarts']}, "
        f"crashes {len(facts['crashes'])} {facts['crashes'] or ''}".rstrip(),
        f"boots (instance epochs): {boots}",
        f"duplicates detected: count tasks {facts['duplicate_tasks']}, partials "
        f"{facts['duplicate_partials']}, merges {facts['duplicate_merges']}",
        f"unfinished claims recovered {facts['recoveries']} (merges skipped as already in "
        f"{RESULT}: {facts['merges_skipped']}), state drift noticed {facts['drift_noticed']}",
        f"{RESULT} v{facts['result_version']}: "
        + ("exact (equals an independent count)" if facts["exact"] else "WRONG"),
        f"elapsed {facts['elapsed']} s" + ("" if facts["finished"] else " (TIMED OUT)"),
    ])


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python examples/restarting_agents/driver.py "
                                       "--seed 7")
    p.add_argument("--seed", type=int, default=7, help="corpus and kill schedule (default 7)")
    p.add_argument("--root", type=Path, help="folder for the mailbox (default: a temp folder)")
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--lines", type=int, default=2000, help="lines in the corpus")
    p.add_argument("--pace", type=float, default=0.1,
                   help="seconds of simulated work per counted chunk")
    p.add_argument("--kill-min", type=float, default=0.5)
    p.add_argument("--kill-max", type=float, default=3.0)
    p.add_argument("--pause", type=float, default=0.2, help="seconds before a restart")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--fsync", default="always", choices=("always", "batch", "never"))
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    base = args.root or Path(tempfile.mkdtemp(prefix="restarting-agents-"))
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    mb, job = prepare(base, args.seed, args.lines, args.chunks, args.fsync)
    fleet = Fleet(mb.path, logs, args.pace)
    started = time.monotonic()
    try:
        finished = run_job(mb, fleet, job, args)
        fleet.finish(grace=15.0)
    except KeyboardInterrupt:
        print(f"interrupted; root and logs kept in {base}", file=sys.stderr)
        return INTERRUPTED
    finally:
        fleet.close()
    facts = report(mb, fleet, job, args, time.monotonic() - started, finished)
    code = verdict(facts)
    print(orjson.dumps(facts).decode() if args.json else describe(facts))
    mb.close()
    if code != EXACT or args.keep or args.root:
        print(f"root and logs kept in {base}", file=sys.stderr)
    else:
        shutil.rmtree(base)
    return code


if __name__ == "__main__":
    sys.exit(main())
