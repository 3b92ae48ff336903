"""Promises an outside attacker tried to break: each test plants what they planted.

Hard links past the staging exception, leases set in the far future, a version 1 root
left mid-claim, a kernel out of inotify instances, and two users sharing a group root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, python_env

from agentmailbox import Mailbox, State, doctor
from agentmailbox.root import ROOT_FORMAT

# -- hard links -------------------------------------------------------------------------------


def test_outside_file_linked_into_new_and_tmp_is_never_handed_out(mb: Mailbox,
                                                                 tmp_path: Path) -> None:
    """A file outside the root, hard-linked into new/ and again into tmp/ under a
    staging-like name, is quarantined untouched: not handed out, its mtime unchanged."""
    inbox = mb.inbox("bob")
    msg_id = mb.root.clock.new_id()
    outside = tmp_path / "outside.json"
    outside.write_bytes(orjson.dumps({"v": 1, "id": msg_id, "from": "alice", "to": ["bob"],
                                      "subject": "forged", "body": "x"}))
    os.utime(outside, ns=(1_000_000_000, 1_000_000_000))
    before = outside.stat()
    os.link(outside, inbox.new / f"{msg_id}.json")
    os.link(outside, inbox.tmp / f"{msg_id}.1.abcdef")
    assert inbox.claim() is None
    after = outside.stat()
    assert (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)
    assert ["hard link to a file elsewhere (not written through tmp/)"] == [
        d.reason for d in mb.dead.list()]


# -- leases --------------------------------------------------------------------------------------


def test_claim_with_a_lease_in_the_far_future_is_still_released(tmp_path: Path) -> None:
    """A claim whose mtime was set years ahead is released once its real lease (counted
    from the claim itself) has run out, by readers and by doctor alike."""
    mb = Mailbox.init(tmp_path, fsync="never", lease_seconds=0.05)
    mb.add_agent("alice")
    mb.add_agent("bob")
    first, second = mb.send("alice", "bob").id, mb.send("alice", "bob").id
    inbox = mb.inbox("bob")
    future = time.time_ns() + 10 * 365 * 86400 * 10**9

    def claim_with_future_lease(msg_id: str) -> None:
        inbox.claim(msg_id)
        os.utime(inbox.cur / f"{msg_id}.json", ns=(future, future))
        time.sleep(0.1)

    claim_with_future_lease(first)
    assert [first] == inbox.requeue_expired()
    claim_with_future_lease(second)
    assert {"lease-expired"} == {f.kind for f in doctor.check(mb, repair=True)}
    assert sorted([first, second]) == inbox.ids(State.NEW)


# -- a version 1 root ---------------------------------------------------------------------------


def _as_version_1(mb: Mailbox) -> None:
    config = orjson.loads((mb.path / "mailbox.json").read_bytes())
    config["format"] = 1
    (mb.path / "mailbox.json").write_bytes(orjson.dumps(config))


def test_version_1_root_with_a_half_claim_is_read_and_upgraded_by_doctor(mb: Mailbox) -> None:
    """A version 1 root opens; a claim its old claimer left half made (one file in new/
    and cur/) is left alone by readers, settled by doctor --repair, which then marks the
    root version 2, and the message is handed out once."""
    msg = mb.send("alice", "bob")
    _as_version_1(mb)
    old = Mailbox.open(mb.path)
    inbox = old.inbox("bob")
    os.link(inbox.new / f"{msg.id}.json", inbox.cur / f"{msg.id}.json")
    assert inbox.claim() is None
    found = {f.kind for f in doctor.check(old)}
    assert {"half-claim", "old-format"} <= found
    doctor.check(old, repair=True)
    assert ROOT_FORMAT == orjson.loads((mb.path / "mailbox.json").read_bytes())["format"]
    assert [] == doctor.check(Mailbox.open(mb.path))
    fresh = Mailbox.open(mb.path).inbox("bob")
    fresh.requeue_expired(lease_seconds=0)
    assert msg.id == fresh.claim().id
    assert fresh.claim() is None


def test_a_root_of_an_unknown_format_is_refused(mb: Mailbox) -> None:
    """A root written by a newer protocol version is refused with a hint, not misread."""
    config = orjson.loads((mb.path / "mailbox.json").read_bytes())
    config["format"] = ROOT_FORMAT + 1
    (mb.path / "mailbox.json").write_bytes(orjson.dumps(config))
    from agentmailbox import InvalidInput

    with pytest.raises(InvalidInput, match="format"):
        Mailbox.open(mb.path)


# -- other users ---------------------------------------------------------------------------------

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                             reason="needs root and setpriv to run processes as other users")


def _as_user(uid: int, gid: int, *args: str, code: str | None = None,
             groups: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    cmd += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    cmd += [sys.executable, *(["-c", code] if code else ["-m", "agentmailbox", *args])]
    env = python_env()
    env.pop("MAILBOX_ROOT", None)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user may enter (tmp_path is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="agentmailbox-shared-", dir="/tmp"))
    top.chmod(0o777)
    yield top
    shutil.rmtree(top, ignore_errors=True)


_EXHAUST_AND_WATCH = """
import ctypes, errno, sys, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        assert ctypes.get_errno() == errno.EMFILE, ctypes.get_errno()
        break
    held.append(fd)
from agentmailbox import Mailbox
mb = Mailbox.open(sys.argv[1])
inbox = mb.inbox("bob")
got = [m.subject for m in inbox.watch(timeout=3, heartbeat=False)]
print(len(held), got)
"""


@as_root
@pytest.mark.slow
def test_watch_without_inotify_instances_falls_back_to_rescans(shared_dir: Path) -> None:
    """With every inotify instance of its user taken, a watching reader still gets its
    mail (on its rescan timer) instead of dying with an OSError."""
    mb = Mailbox.init(shared_dir, fsync="never")
    mb.add_agent("alice")
    mb.add_agent("bob")
    mb.send("alice", "bob", subject="still here")
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(shared_dir)], check=True)
    done = _as_user(NOBODY, NOBODY, code=_EXHAUST_AND_WATCH.replace(
        "sys.argv[1]", repr(str(mb.path))))
    assert 0 == done.returncode, done.stderr
    count, got = done.stdout.split(" ", 1)
    assert int(count) > 0
    assert "['still here']" == got.strip()
    assert "inotify unavailable" in done.stderr


GROUP = 100  # "users" on Debian
ALICE_UID, BOB_UID = 2001, 2002


def _run_as(uid: int, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _as_user(uid, GROUP, "--root", str(root), *args, groups=(GROUP,))


@as_root
@pytest.mark.slow
def test_two_users_of_a_group_root_claim_finish_and_boot_on_each_others_mail(
        shared_dir: Path) -> None:
    """In a group root, each member claims, marks done and boots on mail the other
    delivered, writes handoffs, state and memory: nothing is refused, nothing dropped."""
    init = _as_user(ALICE_UID, GROUP, "init", str(shared_dir), "--mode", "group",
                    "--fsync", "never", groups=(GROUP,))
    assert 0 == init.returncode, init.stderr
    root = shared_dir / ".mailbox"
    for agent in ("alice", "bob"):
        added = _run_as(ALICE_UID, root, "agent", "add", agent)
        assert 0 == added.returncode, added.stderr
    steps = [
        (ALICE_UID, ["send", "--from", "alice", "--to", "bob", "--body", "from alice"]),
        (BOB_UID, ["send", "--from", "bob", "--to", "alice", "--body", "from bob"]),
        (BOB_UID, ["read", "bob", "--json"]),
        (ALICE_UID, ["read", "alice", "--json"]),
        (BOB_UID, ["boot", "bob"]), (ALICE_UID, ["boot", "alice"]),
        (BOB_UID, ["handoff", "bob", "--next", "go on"]),
        (ALICE_UID, ["handoff", "bob", "--show"]),
        (ALICE_UID, ["remember", "bob", "a fact"]), (BOB_UID, ["remember", "bob", "another"]),
        (ALICE_UID, ["state", "bob", "set", "k", "1"]),
        (BOB_UID, ["state", "bob", "set", "k", "2"]),
    ]
    claimed = {}
    for uid, args in steps:
        result = _run_as(uid, root, *args)
        assert 0 == result.returncode, (uid, args, result.stderr)
        if args[0] == "read":
            claimed[args[1]] = orjson.loads(result.stdout)
    for agent, msg in claimed.items():
        other = BOB_UID if agent == "alice" else ALICE_UID
        ids = [m["id"] for m in msg] if isinstance(msg, list) else [msg["id"]]
        finished = _run_as(other, root, "done", agent, *ids)
        assert 0 == finished.returncode, finished.stderr
    mb = Mailbox.open(root)
    assert (1, 1) == (mb.inbox("alice").count(State.DONE), mb.inbox("bob").count(State.DONE))
    events = [line for f in sorted((root / "journal").iterdir())
              for line in f.read_bytes().splitlines()]
    authors = {orjson.loads(line)["pid"] for line in events}
    assert len(authors) >= 2
    assert [] == [f.to_dict() for f in doctor.check(mb)]


_LEASED_OUT = """
import sys, time
from agentmailbox import Mailbox
mb = Mailbox.init(sys.argv[1], fsync="never", mode="group", lease_seconds=0.5)
for agent in ("alice", "bob"):
    mb.add_agent(agent)
claimed = mb.send("alice", "bob", subject="claimed, then left")
mb.send("alice", "bob", subject="unread")
assert mb.inbox("bob").claim() is not None
time.sleep(0.6)  # its lease runs out
"""


def _lock_taken_by_a_shell(shared_dir: Path) -> Path:
    """A group root where alice's claim of bob's mail ran out, and alice then ran the
    release recipe of PROTOCOL.md §23.3 (``flock "$ROOT/agents/$AGENT/run/lease.lock" sh -c
    '…'``) from a shell with the common umask 022: flock(1) made lease.lock ``0644``."""
    made = _as_user(ALICE_UID, GROUP, code=_LEASED_OUT.replace(
        "sys.argv[1]", repr(str(shared_dir))), groups=(GROUP,))
    assert 0 == made.returncode, made.stderr
    root = shared_dir / ".mailbox"
    lock = root / "agents" / "bob" / "run" / "lease.lock"
    subprocess.run(["setpriv", f"--reuid={ALICE_UID}", f"--regid={GROUP}", f"--groups={GROUP}",
                    "sh", "-c", f"umask 022; flock '{lock}' sh -c 'umask 007; true'"],
                   check=True, timeout=30)
    assert 0o644 == lock.stat().st_mode & 0o777
    return root


@as_root
@pytest.mark.slow
def test_a_lease_lock_another_member_made_read_only_stops_no_reader(shared_dir: Path) -> None:
    """In a group root, a member still reads unread mail when the inbox's lease lock was
    made by another member without group write."""
    root = _lock_taken_by_a_shell(shared_dir)
    read = _run_as(BOB_UID, root, "read", "bob", "--json")
    assert 0 == read.returncode, read.stderr


@as_root
@pytest.mark.slow
def test_doctor_repair_by_a_member_who_cannot_take_the_lease_lock_ends_with_a_report(
        shared_dir: Path) -> None:
    """doctor --repair, run by a member, ends with a report (never with the error whose
    hint sent the user to doctor), and what it leaves unrepaired names the lease lock."""
    root = _lock_taken_by_a_shell(shared_dir)
    repaired = _run_as(BOB_UID, root, "doctor", "--repair", "--json")
    assert repaired.returncode in (0, 10), repaired.stderr
    left = [f["path"] for f in orjson.loads(repaired.stdout)["findings"]
            if not f["repaired"]]
    assert repaired.returncode == 0 or "agents/bob/run/lease.lock" in left, left
