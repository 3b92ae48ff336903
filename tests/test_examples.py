"""examples/claude_team/run.py runs start to end on a checkout with only the package
installed, and the hooks answer each step of its scripted sessions as its README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEAM = REPO / "examples" / "claude_team" / "run.py"


@pytest.fixture(scope="module")
def team_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What run.py prints, run as a user runs it (no MAILBOX_ variable, its own TMPDIR)."""
    tmp = tmp_path_factory.mktemp("team")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOX_")}
    done = subprocess.run([sys.executable, str(TEAM)], capture_output=True, text=True,
                          env={**env, "TMPDIR": str(tmp)}, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert 0 == done.returncode, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert [] == list(tmp.iterdir())  # the temporary project is removed
    return done.stdout


def section(out: str, number: int) -> str:
    """The output of step ``number``."""
    return re.split(r"\n== \d\. ", out)[number]


def test_each_agents_brief_is_its_own(team_output: str) -> None:
    """One set of hooks, two sessions: the planner's brief and the coder's, which lists the
    planner's task."""
    assert "| # boot brief: planner (epoch 1)" in section(team_output, 1)
    coder = section(team_output, 2)
    assert "| # boot brief: coder (epoch 1)" in coder
    assert "from planner: add --json to export" in coder


def test_a_session_without_an_agent_gets_nothing(team_output: str) -> None:
    """Without MAILBOX_AGENT the hook prints nothing for the model and one line on stderr."""
    step = section(team_output, 3)
    assert "stdout:  (empty: nothing reaches the model)" in step
    assert "stderr:  mailbox hook session-start: no agent: start the harness" in step


def test_the_prompt_hook_speaks_once(team_output: str) -> None:
    """New mail is announced on the first prompt and not on the next."""
    step = section(team_output, 4)
    assert 1 == step.count("| 1 new: 1 high from planner — mailbox next")
    assert step.rstrip().endswith("stdout:  (empty: nothing reaches the model)\n"
                                  "    stderr:  (empty)")


def test_the_stop_hook_blocks_until_done_and_handoff(team_output: str) -> None:
    """The first stop blocks with the commands to run; after them both stops go through."""
    step = section(team_output, 5)
    blocked, after = step.split("coder$ mailbox done ")
    assert "decision: block" in blocked and "mailbox handoff --in-progress" in blocked
    assert "decision" not in after and 2 == after.count("(empty: nothing reaches the model)")


def test_the_next_session_sees_the_handoff_and_compaction_keeps_the_epoch(
        team_output: str) -> None:
    """The new session is epoch 2 with epoch 1's handoff; after compaction still epoch 2."""
    assert "| - in progress: export --json written, tests pass" in section(team_output, 7)
    assert "| # boot brief: coder (epoch 2)" in section(team_output, 7)
    compact = section(team_output, 8)
    assert "| # boot brief: coder (epoch 2)" in compact
    assert "resume after the manual compaction" in compact
    assert "(epoch 3)" not in team_output
