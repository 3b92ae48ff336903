"""The soak: 25 seconds of SIGKILLs among producers, readers and the supervisor.

Runs ``scripts/soak --seconds 25`` as a user would and reads the counts it prints
(its last line is JSON). The soak itself checks every acknowledged message; these
tests make sure it found nothing wrong *and* had real work to check.

25 s, not the 60 s of docs/RELIABILITY.md's sample run: the soak kills a process every
0.2-1 s, so about 35 kills (each of a role drawn at random: the chance that a role is
never killed is about 3 * (2/3)**35, under 1e-6), 5 or 6 planted files, and a killed
reader's claim comes back when its 5 s lease runs out, as in a longer run. Longer runs
are ``scripts/soak --seconds N``.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import orjson
import pytest
from conftest import ROOT

SECONDS = 25


@pytest.fixture(scope="module")
def soak() -> tuple[int, str, dict[str, Any]]:
    """One soak run: its exit status, its output, and the counts it printed last."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTMAILBOX_FAULT"}
    proc = subprocess.run([str(ROOT / "scripts" / "soak"), "--seconds", str(SECONDS)],
                          cwd=ROOT, env=env, capture_output=True, timeout=SECONDS + 300)
    out = proc.stdout.decode() + proc.stderr.decode()
    lines = proc.stdout.decode().strip().splitlines()
    return proc.returncode, out, orjson.loads(lines[-1]) if lines else {}


@pytest.mark.slow
def test_soak_finds_no_violation(soak: tuple[int, str, dict[str, Any]]) -> None:
    """Under a minute of random SIGKILLs nothing is lost, doubled or left behind: exit 0."""
    code, out, counts = soak
    assert (0, []) == (code, counts.get("violations")), out


@pytest.mark.slow
def test_soak_killed_every_role_while_mail_flowed(soak: tuple[int, str, dict[str, Any]]) -> None:
    """The run had work to check: mail sent, routed and read, and every role killed."""
    _, out, counts = soak
    work = {k: counts.get(k, 0) > 0 for k in ("sent", "routed", "delivered", "read", "kills")}
    roles = sorted(counts.get("kills_by_role", {}))
    assert (dict.fromkeys(work, True), ["producer", "reader", "supervisor"]) == (work, roles), out


@pytest.mark.slow
def test_soak_accounts_for_every_message(soak: tuple[int, str, dict[str, Any]]) -> None:
    """Every delivered copy was read and done once; dead/ holds only the planted files."""
    _, out, counts = soak
    assert ((0, 0, 0), counts.get("delivered"), counts.get("planted")) == (
        (counts.get("lost"), counts.get("duplicates"), counts.get("unacknowledged")),
        counts.get("done"), counts.get("dead")), out
