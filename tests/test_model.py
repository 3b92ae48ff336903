"""The inbox claim protocol against an exhaustive model check (SPIN, tests/model/).

``inbox_v2.pml`` is the protocol of docs/PROTOCOL.md: SPIN must find no state,
in any interleaving of two claimers, a release, a lease-expiry sweep, done,
doctor --repair, a retried send and processes dying at any step, in which a copy
is deleted or the message is lost. ``inbox_v1.pml`` is the link-then-unlink claim
it replaces: SPIN must find its lost message, which shows the check finds this
class of bug. Run with ``-s`` or ``-rA`` to see the state counts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parent / "model"
# -DCOLLAPSE compresses stored states without loss (the search stays exhaustive);
# it halves the memory of the v2 search.
PAN_FLAGS = ("-DSAFETY", "-DCOLLAPSE", "-O2", "-w")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("spin") is None,
                       reason="spin is not installed (Debian/Ubuntu: apt-get install spin)"),
    pytest.mark.skipif(shutil.which("gcc") is None,
                       reason="gcc is not installed (SPIN compiles its verifier with it)"),
]


@dataclass(frozen=True)
class Search:
    """What one ``pan`` run reported."""

    model: str
    output: str

    def number(self, pattern: str) -> float:
        found = re.search(pattern, self.output)
        assert found, f"{self.model}: no match for {pattern!r} in:\n{self.output}"
        return float(found.group(1))

    @property
    def errors(self) -> int:
        return int(self.number(r"errors: (\d+)"))

    @property
    def complete(self) -> bool:
        return ("Search not completed" not in self.output
                and "max search depth too small" not in self.output)

    def summary(self) -> str:
        states = self.number(r"([0-9.e+]+) states, stored")
        transitions = self.number(r"([0-9.e+]+) transitions")
        depth = self.number(r"depth reached (\d+)")
        seconds = self.number(r"elapsed time ([0-9.]+)")
        return (f"{self.model}: {states:.0f} states, {transitions:.0f} transitions, "
                f"depth {depth:.0f}, {seconds:.1f} s, errors: {self.errors}")


def run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def verify(model: str, workdir: Path) -> Search:
    """Generate, compile and run the verifier of ``model`` in ``workdir``."""
    shutil.copy(MODELS / model, workdir / model)
    run(["spin", "-a", model], workdir)
    run(["gcc", *PAN_FLAGS, "-o", "pan", "pan.c"], workdir)
    search = Search(model, run(["./pan", "-m100000"], workdir))
    print(search.summary())
    return search


def test_redesigned_claim_never_deletes_or_loses_a_message_in_any_interleaving(
        tmp_path: Path) -> None:
    """No interleaving of claim, release, expiry, done, doctor, resend and crashes loses X."""
    search = verify("inbox_v2.pml", tmp_path)
    assert search.complete, search.output
    assert 0 == search.errors, search.output


def test_model_check_finds_the_message_lost_by_the_link_then_unlink_claim(
        tmp_path: Path) -> None:
    """The check finds the v1 loss: a claim's unlink removes a released message's last name."""
    search = verify("inbox_v1.pml", tmp_path)
    assert 1 <= search.errors
    assert "assertion violated" in search.output
    replay = run(["spin", "-t", "-p", "inbox_v1.pml"], tmp_path)
    assert "assertion violated" in replay
    steps = search.number(r"at depth (\d+)")
    print(f"inbox_v1.pml: the first trail found is {steps:.0f} steps long")
