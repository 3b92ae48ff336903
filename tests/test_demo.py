"""scripts/demo runs start to end: a supervisor and three agents exchange routed mail.

The demo is run as a user runs it, except that MAILBOX_DEMO_PYTHON makes it use this
interpreter and this checkout instead of setting up .venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentmailbox import Mailbox

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scripts" / "demo"


@pytest.mark.slow
def test_demo_runs_to_the_end_and_routes_as_it_says(tmp_path: Path) -> None:
    """Exit 0 within a minute; @coder reaches both coders, --pick one the one with most
    capacity, the unknown role is buried, carol's second boot sees her wait resolved, and
    the supervisor stops cleanly."""
    env = {k: v for k, v in os.environ.items() if k != "MAILBOX_ROOT"}
    env.update(MAILBOX_DEMO_PYTHON=sys.executable, TMPDIR=str(tmp_path))
    done = subprocess.run(["bash", str(DEMO)], capture_output=True, text=True, env=env,
                          timeout=90, stdin=subprocess.DEVNULL)
    out = done.stdout
    assert 0 == done.returncode, f"{out[-3000:]}\n{done.stderr[-3000:]}"
    assert "mailbox: " not in done.stderr  # no error or warning: the supervisor was up in time
    assert re.search(r'route +alice -> bob, carol +\S+ expansion=\{"@coder":\["bob","carol"\]\}',
                     out)
    assert '"routed":{"@coder":["carol"]},"spool":null' in out  # pick one: capacity 0.9 won
    assert "undeliverable: no agent has role 'tester'" in out
    assert "# boot brief: carol (epoch 2)" in out
    assert "the previous instance wrote a final handoff before stopping." in out
    assert re.search(r"waiting on bob about \S+ \(result.md of the plan\): RESOLVED by bob", out)
    assert re.search(r"bob +done .*\n  carol +done .*\(epoch 1\)", out)
    assert '"event":"supervisor stopped"' in out
    assert out.rstrip().endswith(": clean")
    assert [] == list(tmp_path.iterdir())  # the demo removed its folders


def test_tail_prints_every_event_when_there_are_fewer_than_asked(cli, mb: Mailbox) -> None:  # type: ignore[no-untyped-def]
    """tail -n 30 on a journal of 3 events prints the 3 (the demo's last step relies on it)."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(3)]
    result = cli("tail", "-n", "30", "--json")
    assert (0, ids) == (result.code, [e["id"] for e in map(_json, result.out.splitlines())])


def _json(line: str) -> dict[str, object]:
    import orjson

    return orjson.loads(line)


def test_demo_installs_the_package_without_the_test_tools(tmp_path: Path) -> None:
    """scripts/demo asks pip for the package alone: a first run does not fetch the test
    extras it never uses."""
    (tmp_path / "scripts").mkdir()
    for name in ("demo", "_env.sh"):
        (tmp_path / "scripts" / name).write_bytes((REPO / "scripts" / name).read_bytes())
    (tmp_path / "pyproject.toml").write_text("")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    log = tmp_path / "pip.log"
    for name, script in (("python", f'echo "$@" >> {log}\n'), ("mailbox", "exit 1\n")):
        (venv_bin / name).write_text("#!/bin/sh\n" + script)
        (venv_bin / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MAILBOX_ROOT", "MAILBOX_DEMO_PYTHON")}
    subprocess.run(["bash", str(tmp_path / "scripts" / "demo")], capture_output=True, env=env,
                   timeout=60, stdin=subprocess.DEVNULL)
    assert ["-m pip install --quiet --disable-pip-version-check -e ."] == \
        log.read_text().splitlines()
