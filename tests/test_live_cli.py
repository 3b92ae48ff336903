"""The live commands: watch (and --exec), heartbeat, agents' liveness, tail; daemon logs."""

from __future__ import annotations

import errno
import io
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox, State
from agentmailbox.cli.live import _JournalReader
from agentmailbox.fs import Disk
from agentmailbox.journal import Journal
from agentmailbox.logs import daemon_logging
from agentmailbox.presence import Presence

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py


def _lines(out: str) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def _mailbox(mb: Mailbox, *args: str, **kw: object) -> subprocess.Popen[str]:
    """``python -m agentmailbox ARGS`` as a child process of its own group."""
    env = {**python_env(), "MAILBOX_ROOT": str(mb.path)}
    return subprocess.Popen([sys.executable, "-m", "agentmailbox", *args], env=env, text=True,
                            start_new_session=True, **kw)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a child started by ``_mailbox`` and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group already ended
    proc.wait()


def _until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll for a state another process brings about (readiness, not speed)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


# -- watch -----------------------------------------------------------------------------------------

def test_watch_once_prints_unread_mail_without_claiming_it(mb: Mailbox, cli: Cli) -> None:
    """Plain watch is a look, not a read: the mail stays unread."""
    msg = mb.send("alice", "bob", subject="look only")
    result = cli("watch", "bob", "--once", "--json")
    assert (result.code, [m["id"] for m in _lines(result.out)]) == (0, [msg.id])
    assert mb.inbox("bob").state_of(msg.id) is State.NEW


def test_watch_claim_prints_and_claims(mb: Mailbox, cli: Cli) -> None:
    """watch --claim claims each message it prints (the caller marks it done)."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(2)]
    result = cli("watch", "bob", "--claim", "--once", "--json")
    assert [m["id"] for m in _lines(result.out)] == ids
    assert [mb.inbox("bob").state_of(i) for i in ids] == [State.CLAIMED] * 2


def test_watch_text_shows_one_line_per_message(mb: Mailbox, cli: Cli) -> None:
    """Without --json each message is one line with its id, sender and subject."""
    msg = mb.send("alice", "bob", subject="hello there")
    (line,) = cli("watch", "bob", "--once").out.splitlines()
    assert line.split()[0] == msg.id and "alice" in line and line.endswith("hello there")


def test_watch_timeout_exits_zero_when_idle(mb: Mailbox, cli: Cli) -> None:
    """--timeout ends a quiet watch with exit 0."""
    assert cli("watch", "bob", "--timeout", "0.2").code == 0


def test_exec_marks_done_when_the_command_succeeds(mb: Mailbox, cli: Cli) -> None:
    """Exit 0 from the command is the DONE marker for its message."""
    msg = mb.send("alice", "bob")
    assert cli("watch", "bob", "--exec", "true", "--once").code == 0
    assert mb.inbox("bob").state_of(msg.id) is State.DONE


def test_exec_releases_when_the_command_fails(mb: Mailbox, cli: Cli) -> None:
    """A failing command gives its message back to unread, and the log says so."""
    msg = mb.send("alice", "bob")
    result = cli("watch", "bob", "--exec", "exit 3", "--once")
    assert mb.inbox("bob").state_of(msg.id) is State.NEW
    assert {"event": "released", "id": msg.id, "exit": 3}.items() <= _lines(result.err)[-1].items()


def test_exec_tries_a_failed_message_once_per_once_run(mb: Mailbox, cli: Cli,
                                                        tmp_path: Path) -> None:
    """--once does not spin on a failing message: one attempt, then exit."""
    mb.send("alice", "bob")
    runs = tmp_path / "runs"
    assert cli("watch", "bob", "--exec", f"echo x >> {runs}; exit 1", "--once").code == 0
    assert runs.read_text().count("x") == 1


def test_exec_gives_the_command_the_message_and_its_environment(
        mb: Mailbox, cli: Cli, tmp_path: Path) -> None:
    """The command reads the message JSON on stdin and finds it named in its environment."""
    msg = mb.send("alice", "bob", subject="job", body={"n": 7})
    out = tmp_path / "seen"
    names = "$MAILBOX_ID $MAILBOX_AGENT $MAILBOX_ROOT $MAILBOX_PATH"
    cli("watch", "bob", "--once", "--exec", f'cat > {out}.json; echo "{names}" > {out}')
    assert orjson.loads((tmp_path / "seen.json").read_bytes()) == msg.to_dict()
    assert out.read_text().split() == [msg.id, "bob", str(mb.path),
                                       str(mb.inbox("bob").cur / f"{msg.id}.json")]


@pytest.mark.parametrize("where", ["spawn", "claim"])
def test_exec_backs_off_and_goes_on_when_out_of_file_descriptors(
        mb: Mailbox, cli: Cli, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Out of file descriptors, watch --exec gives the claim back, logs it, waits and goes
    on: every message is done in the end, none is lost and no traceback is printed."""
    from agentmailbox import runner
    from agentmailbox.errors import from_oserror
    from agentmailbox.inbox import Inbox

    msgs = [mb.send("alice", "bob", body=i) for i in range(3)]
    failures = iter(range(2))

    def exhaust() -> None:
        if next(failures, None) is not None:
            raise OSError(errno.EMFILE, "Too many open files")

    if where == "spawn":
        spawn = subprocess.Popen

        def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
            exhaust()
            return spawn(*args, **kwargs)
        monkeypatch.setattr(subprocess, "Popen", popen)
    else:
        claim = Inbox.claim

        def claim_or_fail(self: Inbox, *args: Any, **kwargs: Any) -> Any:
            try:
                exhaust()
            except OSError as exc:
                raise from_oserror(exc, "list", str(self.cur)) from exc
            return claim(self, *args, **kwargs)
        monkeypatch.setattr(Inbox, "claim", claim_or_fail)
    monkeypatch.setattr(runner, "RETRY_FIRST_SECONDS", 0.01)
    result = cli("watch", "bob", "--exec", "true", "--once")
    starved = [e for e in _lines(result.err) if e["event"] == "out of file descriptors"]
    assert (0, 2, "Traceback" in result.err) == (result.code, len(starved), False)
    assert [State.DONE] * 3 == [mb.inbox("bob").state_of(m.id) for m in msgs]


BARRIER = """
import os, pathlib, sys, time
marks = pathlib.Path(sys.argv[1]); cur = pathlib.Path(sys.argv[2])
(marks / os.environ["MAILBOX_ID"]).touch()
deadline = time.monotonic() + 10
while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
with open(marks.parent / "claimed", "a") as f:
    f.write(f"{len(list(cur.iterdir()))}\\n")
"""


def test_exec_runs_up_to_max_inflight_and_claims_no_more(mb: Mailbox, cli: Cli,
                                                          tmp_path: Path) -> None:
    """With --max-inflight 2 two commands run together, and never more than two are claimed."""
    for i in range(4):
        mb.send("alice", "bob", body=i)
    (tmp_path / "marks").mkdir()
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER)
    cmd = f"{sys.executable} {script} {tmp_path / 'marks'} {mb.inbox('bob').cur}"
    assert cli("watch", "bob", "--exec", cmd, "--max-inflight", "2", "--once").code == 0
    claimed = [int(n) for n in (tmp_path / "claimed").read_text().split()]
    assert (len(claimed), max(claimed)) == (4, 2)
    assert mb.inbox("bob").count(State.NEW) == 0


@pytest.mark.slow
def test_exec_renews_the_lease_of_a_long_command(tmp_path: Path) -> None:
    """A command running longer than the lease keeps its claim: it runs once, not again."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=0.5)
    mb.add_agent("alice")
    mb.add_agent("bob")
    msg = mb.send("alice", "bob")
    runs = tmp_path / "runs"
    # A free second slot makes the runner rescan, and a rescan requeues expired leases.
    proc = _mailbox(mb, "watch", "bob", "--exec", f"echo x >> {runs}; sleep 1.5",
                    "--max-inflight", "2", "--once", stderr=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=60)
    finally:
        _kill_group(proc)
    assert code == 0
    assert runs.read_text().count("x") == 1
    assert mb.inbox("bob").state_of(msg.id) is State.DONE


def _running_command(mb: Mailbox, pidfile: Path, *extra: str) -> subprocess.Popen[str]:
    """``watch bob --exec`` with a 30 s command that writes its pid to ``pidfile``."""
    return _mailbox(mb, "watch", "bob", "--exec", f"echo $$ > {pidfile}; exec sleep 30",
                    *extra, stderr=subprocess.DEVNULL)


def _has_pid(pidfile: Path) -> bool:
    return pidfile.exists() and pidfile.read_text().endswith("\n")


def _kill_pid_in(pidfile: Path) -> None:
    try:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


@pytest.mark.slow
def test_exec_killed_mid_command_loses_no_mail(mb: Mailbox, tmp_path: Path) -> None:
    """SIGKILL while a command runs leaves the claim in cur/; the lease brings it back."""
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    pidfile = tmp_path / "pid"
    proc = _running_command(mb, pidfile)
    try:
        _until(lambda: _has_pid(pidfile), "the command")
    finally:
        _kill_group(proc)
        _kill_pid_in(pidfile)  # the command runs in a process group of its own
    assert inbox.state_of(msg.id) is State.CLAIMED
    assert inbox.requeue_expired(lease_seconds=0) == [msg.id]
    assert inbox.claim().id == msg.id


@pytest.mark.slow
def test_sigterm_stops_exec_and_gives_the_running_message_back(
        mb: Mailbox, tmp_path: Path) -> None:
    """SIGTERM ends watch --exec with exit 0: its command is stopped and the mail unread."""
    msg = mb.send("alice", "bob")
    pidfile = tmp_path / "pid"
    proc = _running_command(mb, pidfile)
    try:
        _until(lambda: _has_pid(pidfile), "the command")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        _kill_group(proc)
        _kill_pid_in(pidfile)
    assert code == 0
    assert mb.inbox("bob").state_of(msg.id) is State.NEW
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


@pytest.mark.slow
def test_ctrl_c_stops_watch_with_exit_130(mb: Mailbox) -> None:
    """Ctrl-C ends a running watch cleanly with exit code 130."""
    proc = _mailbox(mb, "watch", "bob", "--json", stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    try:
        msg = mb.send("alice", "bob")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"watch ended early: {proc.communicate()[1]}"
        assert orjson.loads(line)["id"] == msg.id  # it is in its loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        _kill_group(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


# -- heartbeat and agents --------------------------------------------------------------------------

def test_heartbeat_records_capacity_and_mode(mb: Mailbox, cli: Cli) -> None:
    """mailbox heartbeat writes the agent's presence with its capacity and mode."""
    result = cli("heartbeat", "bob", "--capacity", "0.3", "--mode", "maintenance", "--json")
    beat = Presence(mb.root).last("bob")
    assert result.code == 0 and beat is not None
    assert (beat.capacity, str(beat.mode)) == (0.3, "maintenance")
    assert result.json()["agent"] == "bob"


def test_heartbeat_for_an_unknown_agent_is_refused(mb: Mailbox, cli: Cli) -> None:
    """Presence is only recorded for registered agents (exit 4)."""
    assert cli("heartbeat", "nobody").code == 4


def _old_beat(mb: Mailbox, agent: str, age_seconds: float) -> None:
    folder = mb.path / "run" / "heartbeats"
    folder.mkdir(parents=True, exist_ok=True)
    at = time.time_ns() - int(age_seconds * 1e9)
    (folder / f"{agent}.json").write_bytes(orjson.dumps({"agent": agent, "at": at, "pid": 1}))


def test_agents_shows_alive_stale_and_never_seen(mb: Mailbox, cli: Cli) -> None:
    """agents tells live agents from stale ones and from ones never seen."""
    mb.add_agent("carol")
    cli("heartbeat", "bob", "--capacity", "0.5")
    _old_beat(mb, "alice", mb.config.heartbeat_seconds + 60)
    rows = {r["name"]: r for r in cli("agents", "--json").json()}
    assert {n: r["liveness"] for n, r in rows.items()} == {
        "alice": "stale", "bob": "alive", "carol": "never seen"}
    assert (rows["bob"]["capacity"], rows["bob"]["mode"]) == (0.5, "normal")
    assert rows["carol"]["heartbeat_age_seconds"] is None


def test_agents_counts_unread_claimed_and_the_oldest_unread_age(mb: Mailbox, cli: Cli) -> None:
    """agents shows unread and claimed counts and how old the oldest unread message is."""
    first = mb.send("alice", "bob")
    mb.send("alice", "bob")
    mb.send("alice", "bob")
    mb.inbox("bob").claim()
    bob = next(r for r in cli("agents", "--json").json() if r["name"] == "bob")
    assert (bob["unread"], bob["claimed"]) == (2, 1)
    assert bob["oldest_unread_age_seconds"] < (time.time_ns() - first.stamp) / 1e9


def test_agents_text_has_a_column_per_field(mb: Mailbox, cli: Cli) -> None:
    """The text table names liveness, capacity and mode for each agent."""
    cli("heartbeat", "bob", "--capacity", "0.25", "--mode", "maintenance")
    lines = cli("agents").out.splitlines()
    bob = next(line for line in lines if line.startswith("bob"))
    assert lines[0].split()[:3] == ["AGENT", "ROLE", "LIVENESS"]
    assert "alive" in bob and "0.25" in bob and "maintenance" in bob


# -- tail ------------------------------------------------------------------------------------------

def test_tail_shows_the_last_events_in_time_order(mb: Mailbox, cli: Cli) -> None:
    """tail -n N prints the last N journal events, oldest first."""
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    inbox.claim()
    inbox.done(msg)
    events = _lines(cli("tail", "-n", "2", "--json").out)
    assert [(e["ev"], e["id"]) for e in events] == [("claim", msg.id), ("done", msg.id)]


def test_tail_filters_by_agent(mb: Mailbox, cli: Cli) -> None:
    """tail AGENT shows only events where it is the agent, the sender or a recipient."""
    mb.add_agent("carol")
    to_carol = mb.send("alice", "carol")
    mb.send("alice", "bob")
    mb.inbox("carol").claim()
    events = _lines(cli("tail", "carol", "--json").out)
    assert [(e["ev"], e["id"]) for e in events] == [("send", to_carol.id), ("claim", to_carol.id)]


def test_tail_text_names_event_and_agents(mb: Mailbox, cli: Cli) -> None:
    """The text form shows the event, who, and the message id on one line."""
    msg = mb.send("alice", "bob", subject="hi")
    (line,) = cli("tail", "-n", "1").out.splitlines()
    assert "send" in line and "alice -> bob" in line and msg.id in line


@pytest.mark.slow
def test_tail_follow_prints_new_events(mb: Mailbox) -> None:
    """tail -f keeps printing events as they are appended."""
    proc = _mailbox(mb, "tail", "-f", "-n", "0", "--json", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    sent: list[str] = []
    try:
        # Events appended before it started are "past" (-n 0): send until one shows.
        while not select.select([proc.stdout], [], [], 0.2)[0]:
            assert len(sent) < 150, "tail -f printed nothing"
            sent.append(mb.send("alice", "bob").id)
        assert orjson.loads(proc.stdout.readline())["id"] in sent
    finally:
        _kill_group(proc)


def _journal_day(directory: Path, day: str, *events: dict) -> None:
    with open(directory / f"{day}.jsonl", "ab") as f:
        for e in events:
            f.write(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE))


def test_following_the_journal_crosses_into_the_next_day(tmp_path: Path) -> None:
    """After midnight (a new day file) following goes on in the new file, in order."""
    _journal_day(tmp_path, "2026-01-01", {"t": 1, "ev": "boot"})
    reader = _JournalReader(Journal(tmp_path, Disk()))
    assert [e["t"] for e in reader.last(10, frozenset())] == [1]
    _journal_day(tmp_path, "2026-01-01", {"t": 2, "ev": "claim"})
    _journal_day(tmp_path, "2026-01-02", {"t": 3, "ev": "done"})
    assert [e["t"] for e in reader.follow()] == [2, 3]
    _journal_day(tmp_path, "2026-01-02", {"t": 4, "ev": "boot"})
    assert [e["t"] for e in reader.follow()] == [4]


def test_following_the_journal_waits_for_a_line_being_written(tmp_path: Path) -> None:
    """A half-written last line is read once it is complete, never as a torn event."""
    reader = _JournalReader(Journal(tmp_path, Disk()))
    (tmp_path / "2026-01-01.jsonl").write_bytes(b'{"t": 1, "ev"')
    assert list(reader.follow()) == []
    with open(tmp_path / "2026-01-01.jsonl", "ab") as f:
        f.write(b': "boot"}\n')
    assert [e["t"] for e in reader.follow()] == [1]


# -- daemon logging --------------------------------------------------------------------------------

@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    with daemon_logging(stream=stream):
        yield stream


def test_watchdog_overflow_warning_is_logged_as_json(log_stream: io.StringIO) -> None:
    """watchdog's stdlib overflow warning reaches the daemon log as a JSON line."""
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost")
    record = orjson.loads(log_stream.getvalue().splitlines()[-1])
    assert (record["level"], record["logger"]) == ("warning", "watchdog.observers.inotify_c")
    assert "overflowed" in record["event"]


def test_daemon_logging_is_undone_on_exit() -> None:
    """Leaving daemon_logging removes its handler: nothing stays configured."""
    before = list(logging.getLogger().handlers)
    with daemon_logging(stream=io.StringIO()):
        pass
    assert logging.getLogger().handlers == before
