"""Many processes on one inbox: every message is claimed exactly once, in sender order.

Producers and readers are separate processes (``tests/procs.py``) so that the
only thing they share is the directory tree, as real agents do.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, python_env

from agentmailbox import Mailbox, State

PRODUCERS = 4
PER_PRODUCER = 2_500
READERS = 3
TIMEOUT = 300  # seconds before a hung child fails the test instead of hanging CI


@dataclass
class Run:
    """What the readers reported, and the root they worked on."""

    mb: Mailbox
    claims: list[list[tuple[str, int, str]]]  # per reader, in its claim order


def _child(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.procs", *args], cwd=ROOT,
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err.decode()
    return orjson.loads(out)


@pytest.fixture(scope="module")
def contention(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """4 producers x 2,500 messages into one inbox while 3 readers claim concurrently."""
    base = tmp_path_factory.mktemp("contention")
    mb = Mailbox.init(base, fsync="never")
    senders = [f"p{i}" for i in range(PRODUCERS)]
    for name in [*senders, "worker"]:
        mb.add_agent(name)
    stop = base / "producers-finished"
    readers = [_child("read", str(mb.path), "worker", str(stop)) for _ in range(READERS)]
    producers = [_child("produce", str(mb.path), s, "worker", str(PER_PRODUCER)) for s in senders]
    try:
        for proc in producers:
            assert _result(proc) == {"sent": PER_PRODUCER}
        stop.touch()
        claims = [[(p, s, i) for p, s, i in _result(r)["claims"]] for r in readers]
    finally:
        _reap([*producers, *readers])
    yield Run(mb, claims)
    mb.close()


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill children a failed run left behind (a reader waits for producers forever)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _all_claims(run: Run) -> list[tuple[str, int]]:
    return [(p, s) for reader in run.claims for p, s, _ in reader]


@pytest.mark.slow
def test_every_message_is_claimed_exactly_once(contention: Run) -> None:
    """Under contention no message is claimed twice and none is lost."""
    counts = Counter(_all_claims(contention))
    expected = {(f"p{p}", s) for p in range(PRODUCERS) for s in range(PER_PRODUCER)}
    assert expected == set(counts)
    assert [] == [key for key, n in counts.items() if n != 1]


@pytest.mark.slow
def test_every_reader_got_a_share(contention: Run) -> None:
    """The readers really raced: each one claimed some of the mail."""
    assert [True] * READERS == [len(c) > 0 for c in contention.claims]


@pytest.mark.slow
def test_each_reader_sees_each_sender_in_send_order(contention: Run) -> None:
    """Within one reader's claims, the messages of one sender come in the order sent."""
    out_of_order = []
    for reader in contention.claims:
        last: dict[str, int] = {}
        for producer, seq, msg_id in reader:
            if seq < last.get(producer, -1):
                out_of_order.append((producer, last[producer], seq, msg_id))
            last[producer] = seq
    assert [] == out_of_order


@pytest.mark.slow
def test_ids_of_one_sender_sort_in_send_order(contention: Run) -> None:
    """Each sender's ids sort as strings in the order it sent them."""
    by_sender: dict[str, list[tuple[int, str]]] = {}
    for reader in contention.claims:
        for producer, seq, msg_id in reader:
            by_sender.setdefault(producer, []).append((seq, msg_id))
    for pairs in by_sender.values():
        ids_in_send_order = [i for _, i in sorted(pairs)]
        assert sorted(ids_in_send_order) == ids_in_send_order


@pytest.mark.slow
def test_contention_leaves_everything_done_and_nothing_dead(contention: Run) -> None:
    """After the run, new/, cur/ and tmp/ are empty, and dead/ holds nothing."""
    inbox = contention.mb.inbox("worker")
    assert (0, 0, [], []) == (inbox.count(State.NEW), inbox.count(State.CLAIMED),
                              sorted(p.name for p in inbox.tmp.iterdir()),
                              [d.reason for d in contention.mb.dead.list()])


@pytest.mark.slow
def test_done_folder_holds_each_message_once(contention: Run) -> None:
    """done/ holds exactly the 10,000 messages, one file each."""
    inbox = contention.mb.inbox("worker")
    names = [p.name for p in Path(inbox.done_dir).glob("*/*.json")]
    sent = {i for reader in contention.claims for _, _, i in reader}
    assert (PRODUCERS * PER_PRODUCER, {f"{i}.json" for i in sent}) == (len(names), set(names))
