"""The test guard (tests/conftest.py and pyproject.toml) fails what it promises to fail.

A guard that never fires looks the same as one that works, so each promise is shown
on a small test file run by pytest in a child process, with this repository's
conftest.py and pytest settings.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT, python_env

INNER = '''
import threading
import warnings

import pytest

from agentmailbox.errors import ThreadDoneWarning

released = threading.Event()  # set by the last test, so the interpreter can exit


def test_leaks_a_thread():
    threading.Thread(target=released.wait).start()


def test_leaks_a_daemon_thread():
    threading.Thread(target=threading.Event().wait, daemon=True).start()


def test_stops_its_daemon_thread_at_its_end():
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    stop.set()


@pytest.mark.keeps_thread("a server that lives as long as the run")
def test_keeps_a_thread_on_purpose():
    threading.Thread(target=threading.Event().wait, daemon=True).start()


def test_a_thread_dies_of_an_exception():
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()


def test_sends_into_a_done_thread(mb):
    first = mb.send("alice", "bob")
    mb.threads.mark_done(first.thread, "alice")
    mb.send("alice", "bob", thread=first.thread)


def test_expects_the_done_thread_warning(mb):
    first = mb.send("alice", "bob")
    mb.threads.mark_done(first.thread, "alice")
    with pytest.warns(ThreadDoneWarning):
        mb.send("alice", "bob", thread=first.thread)


@pytest.mark.filterwarnings("default::UserWarning")
def test_allows_a_warning_by_marker():
    warnings.warn("allowed here")


def test_leaves_a_file_open_in_a_cycle():
    class Holder:
        pass

    holder = Holder()
    holder.me = holder
    holder.file = open(__file__)


def test_zz_releases_the_leaked_thread():
    released.set()
'''

GUARDED = {"test_leaks_a_thread", "test_leaks_a_daemon_thread",
           "test_a_thread_dies_of_an_exception", "test_sends_into_a_done_thread",
           "test_leaves_a_file_open_in_a_cycle"}
LET_THROUGH = {"test_stops_its_daemon_thread_at_its_end", "test_keeps_a_thread_on_purpose",
               "test_expects_the_done_thread_warning", "test_allows_a_warning_by_marker",
               "test_zz_releases_the_leaked_thread"}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Each inner test's outcomes (PASSED, FAILED, ERROR), from one guarded pytest run."""
    where = tmp_path_factory.mktemp("guarded")
    (where / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (where / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (where / "test_inner.py").write_text(INNER)
    # The guard is conftest.py and pyproject.toml alone: the plugins installed beside pytest
    # (hypothesis, anyio) play no part in it, and loading them was most of this run's time
    # (both packages assertion-rewritten at start-up, hypothesis imported whole at the end).
    env = {**python_env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=where, env=env, capture_output=True, text=True, timeout=300, check=False)
    found: dict[str, set[str]] = {}
    for outcome, name in re.findall(r"^(PASSED|FAILED|ERROR) test_inner\.py::(\w+)",
                                    proc.stdout, re.MULTILINE):
        found.setdefault(name, set()).add(outcome)
    assert GUARDED | LET_THROUGH == set(found), proc.stdout + proc.stderr
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GUARDED))
def test_the_guard_fails_a_test_that_leaks_or_warns(outcomes: dict[str, set[str]],
                                                     name: str) -> None:
    """A leaked thread, a dead thread, an unexpected warning or an unclosed file fails its test."""
    assert outcomes[name] & {"FAILED", "ERROR"}, outcomes[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LET_THROUGH))
def test_the_guard_lets_declared_and_clean_tests_pass(outcomes: dict[str, set[str]],
                                                      name: str) -> None:
    """A test that stops its threads, or declares its warning or its thread, passes."""
    assert {"PASSED"} == outcomes[name]

