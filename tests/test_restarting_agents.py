"""The restarting-agents example: a word count that survives SIGKILLs of its agents.

Two kinds of test. The driver runs the whole job while killing agents at random
(two seeds); what it claims is checked here again from the files, independently.
Then single crashes at named points (``$AGENTMAILBOX_FAULT``) pin each recovery
path the random kills may or may not hit.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import ROOT, python_env

from agentmailbox import Mailbox, Message, State
from examples.restarting_agents.agents import COUNTERS, MERGER, RESULT
from examples.restarting_agents.corpus import chunk_lines, count_words
from examples.restarting_agents.driver import CORPUS, prepare

CHUNKS = 40
# Counters sleep PACE per chunk, 20 chunks each, one instance at a time: the job
# cannot finish in under 20 * PACE = 4 s, and a kill comes at least every 1.5 s,
# so every run sees at least two kills however fast the machine is.
PACE = 0.2
KILL_MAX = 1.5
MIN_KILLS = 2


def stored(mb: Mailbox, agent: str) -> list[Message]:
    """Every message in an agent's inbox, in any state."""
    inbox = mb.inbox(agent)
    done = [inbox.get(p.stem) for p in inbox.done_dir.glob("*/*.json")]
    return [*inbox.list(State.NEW), *inbox.list(State.CLAIMED), *done]


def chunks_of(messages: list[Message]) -> list[int]:
    return sorted(m.body["chunk"] for m in messages)


@pytest.fixture(scope="module", params=[3, 11], ids=lambda seed: f"seed{seed}")
def killed_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[dict[str, Any], int, Mailbox]]:
    """One driver run with random kills: its JSON facts, exit code, and the root."""
    base = tmp_path_factory.mktemp(f"run{request.param}")
    proc = subprocess.run(
        [sys.executable, "examples/restarting_agents/driver.py", "--seed", str(request.param),
         "--root", str(base), "--chunks", str(CHUNKS), "--pace", str(PACE),
         "--kill-min", "0.5", "--kill-max", str(KILL_MAX), "--fsync", "never",
         "--timeout", "120", "--json"],
        cwd=ROOT, env=python_env(), capture_output=True, timeout=240, check=False)
    assert proc.stdout, proc.stderr.decode()[-3000:]
    facts = orjson.loads(proc.stdout.splitlines()[-1])
    with Mailbox.open(base / ".mailbox") as mb:
        yield facts, proc.returncode, mb


def test_driver_exits_zero_under_random_kills(killed_run: tuple[Any, int, Mailbox]) -> None:
    """The job finishes and the driver vouches for it, though agents die at random."""
    facts, code, _ = killed_run
    assert (code, facts["crashes"]) == (0, []), facts


def test_agents_were_really_killed_and_restarted(killed_run: tuple[Any, int, Mailbox]) -> None:
    """The run is not vacuous: agents were SIGKILLed mid-job and each one came back."""
    facts, _, _ = killed_run
    assert facts["kills"] >= MIN_KILLS
    assert facts["kills"] == facts["restarts"]


def test_result_equals_an_independent_count(killed_run: tuple[Any, int, Mailbox]) -> None:
    """result.json holds exactly the word counts of the corpus, every chunk merged."""
    _, _, mb = killed_run
    corpus = mb.workspace.get(CORPUS).data.decode()
    result = orjson.loads(mb.workspace.get(RESULT).data)
    assert (result["counts"], result["merged"]) == (dict(Counter(corpus.split())),
                                                    list(range(CHUNKS)))


def test_each_chunk_is_merged_exactly_once(killed_run: tuple[Any, int, Mailbox]) -> None:
    """Every version of result.json adds one new chunk: no merge was ever repeated."""
    _, _, mb = killed_run
    added = []
    before: set[int] = set()
    for version in range(1, mb.workspace.version(RESULT) + 1):
        now = set(orjson.loads(mb.workspace.get(RESULT, version).data)["merged"])
        added.append(sorted(now - before))
        before = now
    assert sorted(added) == [[c] for c in range(CHUNKS)]


def test_each_count_task_is_stored_once(killed_run: tuple[Any, int, Mailbox]) -> None:
    """A splitter that resends after a crash never gives a counter the same chunk twice."""
    _, _, mb = killed_run
    assert chunks_of([m for c in COUNTERS for m in stored(mb, c)]) == list(range(CHUNKS))


def test_each_partial_is_stored_once(killed_run: tuple[Any, int, Mailbox]) -> None:
    """A counter that redoes a chunk after a crash never sends the merger a second partial."""
    _, _, mb = killed_run
    assert chunks_of(stored(mb, MERGER)) == list(range(CHUNKS))


def test_job_thread_is_marked_done(killed_run: tuple[Any, int, Mailbox]) -> None:
    """The merger leaves the job's DONE marker, which is what the driver waited for."""
    facts, _, mb = killed_run
    marker = mb.threads.done(facts["job"])
    assert marker is not None and marker.by == MERGER


# -- single crashes at named points --------------------------------------------------------


@dataclass
class Job:
    """A root as the driver makes it (agents, corpus, job sent), with two chunks."""

    mb: Mailbox
    id: str
    corpus: str

    def run(self, role: str, name: str, fault: str = "") -> int:
        """One instance of an agent in its own process (dying at ``fault``); its exit code."""
        env = python_env()
        if fault:
            env["AGENTMAILBOX_FAULT"] = fault
        proc = subprocess.run(
            [sys.executable, "-m", "examples.restarting_agents.agents", role, name,
             str(self.mb.path), "--pace", "0", "--exit-when-idle"],
            cwd=ROOT, env=env, capture_output=True, timeout=60, check=False)
        return proc.returncode

    def send_task(self, chunk: int) -> None:
        """The count task the splitter would send (same key)."""
        self.mb.send("splitter", COUNTERS[0], f"count chunk {chunk}",
                     {"job": self.id, "chunk": chunk, "chunks": 2,
                      "text": chunk_lines(self.corpus, 2, chunk)},
                     thread=self.id, key=f"count:{self.id}:{chunk}")

    def send_partial(self, chunk: int) -> None:
        """The partial a counter would send (same key)."""
        self.mb.send(COUNTERS[0], MERGER, f"partial {chunk}",
                     {"job": self.id, "chunk": chunk, "chunks": 2,
                      "counts": count_words(chunk_lines(self.corpus, 2, chunk))},
                     thread=self.id, key=f"partial:{self.id}:{chunk}")

    def merged_per_version(self) -> list[list[int]]:
        ws = self.mb.workspace
        return [orjson.loads(ws.get(RESULT, v).data)["merged"]
                for v in range(1, ws.version(RESULT) + 1)]


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    mb, job_id = prepare(tmp_path, seed=5, lines=40, chunks=2, fsync="never")
    yield Job(mb, job_id, mb.workspace.get(CORPUS).data.decode())
    mb.close()


def test_merger_killed_after_merging_does_not_merge_again(job: Job) -> None:
    """A merge committed just before a crash is skipped by the next instance, not redone."""
    job.send_partial(0)
    job.send_partial(1)
    assert job.run("merger", MERGER, fault="ws.versioned") == 77  # died right after merge 1
    assert job.run("merger", MERGER) == 0
    assert job.merged_per_version() == [[0], [0, 1]]


def test_merger_restart_finishes_the_job(job: Job) -> None:
    """After a crash mid-job, the next merger instance completes the count and the DONE marker."""
    job.send_partial(0)
    job.send_partial(1)
    assert [77, 0] == [job.run("merger", MERGER, fault="ws.versioned"), job.run("merger", MERGER)]
    result = orjson.loads(job.mb.workspace.get(RESULT).data)
    assert (result["counts"], job.mb.threads.done(job.id) is not None) == (
        count_words(job.corpus), True)


def test_merger_trusts_the_workspace_over_stale_working_state(job: Job) -> None:
    """Working state left a version behind by a crash is noticed and overruled at boot."""
    job.send_partial(0)
    assert 0 == job.run("merger", MERGER)  # merges chunk 0, notes v1 in working state
    job.send_partial(1)
    assert 77 == job.run("merger", MERGER, fault="ws.versioned")  # v2 written, note says v1
    assert 0 == job.run("merger", MERGER)
    merger = job.mb.agent(MERGER)
    drift = [e.text for e in merger.memory.events(tag="drift")]
    assert (drift, merger.state["result_version"]) == (
        [f"working state said {RESULT} v1, the workspace has v2: trusting the workspace"], 2)


def test_counter_killed_after_sending_stores_one_partial(job: Job) -> None:
    """A counter that dies after sending, before marking its task done, redoes it harmlessly."""
    job.send_task(0)
    assert job.run("counter", COUNTERS[0], fault="send.published") == 77
    assert job.run("counter", COUNTERS[0]) == 0
    task_states = [job.mb.inbox(COUNTERS[0]).state_of(m.id) for m in stored(job.mb, COUNTERS[0])]
    assert (chunks_of(stored(job.mb, MERGER)), task_states) == ([0], [State.DONE])


def test_claim_in_a_done_thread_is_finished_without_redoing(job: Job) -> None:
    """A restarted agent does not redo work whose thread is already marked done."""
    job.send_task(0)
    task = job.mb.inbox(COUNTERS[0]).claim()  # the instance that claimed it then died
    job.mb.threads.mark_done(job.id, MERGER)
    assert job.run("counter", COUNTERS[0]) == 0
    assert task is not None
    assert (stored(job.mb, MERGER), job.mb.inbox(COUNTERS[0]).state_of(task.id)) == (
        [], State.DONE)


def test_splitter_killed_mid_split_sends_each_chunk_once(job: Job) -> None:
    """A splitter that dies between sending a task and noting it resends under the same key."""
    assert job.run("splitter", "splitter", fault="send.published") == 77
    assert job.run("splitter", "splitter") == 0
    assert chunks_of([m for c in COUNTERS for m in stored(job.mb, c)]) == [0, 1]


# -- the brief an instance acts on ----------------------------------------------------------


def test_brief_flags_a_claimed_request_whose_own_thread_is_done(mb: Mailbox) -> None:
    """A job message left claimed after its thread was closed shows as "do not redo" at boot."""
    request = mb.send("alice", "bob", subject="count the corpus")
    mb.inbox("bob").claim()  # the instance working on it dies; meanwhile the job is finished
    mb.threads.mark_done(request.thread, "alice")
    items = mb.agent("bob").boot().to_dict()["recovery"]["items"]
    assert [i["unfinished"]["thread_done"] is not None for i in items] == [True]
