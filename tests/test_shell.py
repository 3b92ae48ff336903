"""Mail written and read with a POSIX shell interoperates with the library (docs/PROTOCOL.md).

The example scripts in examples/shell/ and the recipes quoted in PROTOCOL.md run
under ``sh`` against a root made by the library; no jq, no Python in the shell.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import python_env

from agentmailbox import Mailbox, State
from agentmailbox.message import Message, encode

REPO = Path(__file__).resolve().parent.parent
SEND = REPO / "examples" / "shell" / "send.sh"
READ = REPO / "examples" / "shell" / "read.sh"
PROTOCOL = REPO / "docs" / "PROTOCOL.md"
RECIPE = re.compile(r"<!-- recipe: (\w+) -->\n```sh\n(.*?)```", re.DOTALL)


def sh(*args: str | Path, stdin: str = "", env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    """Run ``sh ARGS`` with a plain environment."""
    return subprocess.run(["sh", *map(str, args)], input=stdin, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", **(env or {})},
                          timeout=60)


def recipe(name: str) -> str:
    """The shell block PROTOCOL.md marks ``<!-- recipe: NAME -->``, verbatim."""
    recipes = dict(RECIPE.findall(PROTOCOL.read_text()))
    return recipes[name]


def run_recipe(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    return sh("-eu", "-c", recipe(name), env=env)


def deliver(mb: Mailbox, msg_id: str, body: str = "old") -> None:
    """Put a message with a chosen id (so a chosen day) in bob's inbox."""
    msg = Message(id=msg_id, sender="alice", to=("bob",), subject="dated", body=body)
    assert mb.inbox("bob").deliver(msg_id, encode(msg, mb.config.max_message_bytes))


# -- the example scripts ------------------------------------------------------------------------


def test_message_sent_by_the_shell_script_is_read_by_the_library(mb: Mailbox) -> None:
    """send.sh writes a message the library reads with every field right, text intact."""
    subject = 'plan "v1" \\ with\ttab'
    body = "line 1\nline 2 é ✓\n\tindented \\n not a newline"
    done = sh(SEND, mb.path.parent, "alice", "bob", subject, body)
    assert (0, "") == (done.returncode, done.stderr)
    msg_id = done.stdout.strip()
    got = mb.inbox("bob").claim()
    assert (msg_id, "alice", ("bob",), subject, body) == (got.id, got.sender, got.to,
                                                          got.subject, got.body)
    assert ("message", msg_id, None, "normal", None, False, {}) == (
        got.kind, got.thread, got.reply_to, str(got.priority), got.expires_at, got.receipt,
        got.headers)
    assert [] == mb.dead.list()


def test_shell_script_writes_the_canonical_encoding(mb: Mailbox) -> None:
    """send.sh's file is byte for byte what the library would write for those fields."""
    msg_id = sh(SEND, mb.path, "alice", "bob", "s", "b\x01").stdout.strip()
    data = (mb.inbox("bob").new / f"{msg_id}.json").read_bytes()
    msg = mb.inbox("bob").get(msg_id)
    assert encode(msg, mb.config.max_message_bytes) == data


def test_shell_script_reads_the_body_from_stdin(mb: Mailbox) -> None:
    """Without a BODY argument, send.sh sends stdin (minus its last newline)."""
    msg_id = sh(SEND, mb.path, "alice", "bob", "piped", stdin="a\nb\n").stdout.strip()
    assert "a\nb" == mb.inbox("bob").get(msg_id).body


def test_shell_script_delivers_a_copy_to_each_recipient(mb: Mailbox) -> None:
    """TO may list several agents; each inbox gets its own file (no shared inode)."""
    mb.add_agent("carol")
    msg_id = sh(SEND, mb.path, "alice", "bob,carol", "all", "x").stdout.strip()
    got = [mb.inbox(name).claim() for name in ("bob", "carol")]
    assert [(msg_id, ("bob", "carol"))] * 2 == [(m.id, m.to) for m in got]
    assert [] == mb.dead.list()


def test_shell_script_refuses_an_unknown_agent_and_writes_nothing(mb: Mailbox) -> None:
    """An unregistered recipient exits 4 (as the mailbox command does) before any write."""
    done = sh(SEND, mb.path, "alice", "bob,carol", "s", "x")
    assert (4, "send.sh: no agent named 'carol'\n") == (done.returncode, done.stderr)
    assert 0 == mb.inbox("bob").count()


def test_shell_script_refuses_an_invalid_agent_name(mb: Mailbox) -> None:
    """A name the library would refuse exits 5, before any path is built from it."""
    assert 5 == sh(SEND, mb.path, "alice", "../bob", "s", "x").returncode


def test_shell_script_refuses_a_message_over_the_size_limit(tmp_path: Path) -> None:
    """max_message_bytes from mailbox.json holds for shell writers too (exit 7)."""
    mb = Mailbox.init(tmp_path, fsync="never", max_message_bytes=400)
    mb.add_agent("alice")
    mb.add_agent("bob")
    assert 7 == sh(SEND, mb.path, "alice", "bob", "s", "x" * 400).returncode
    assert 0 == mb.inbox("bob").count()


def test_message_sent_by_the_library_is_read_by_the_shell_script(mb: Mailbox) -> None:
    """read.sh prints the message file; the library then sees it done, read by bob."""
    sent = mb.send("alice", "bob", subject="plan", body={"steps": [1, 2]})
    done = sh(READ, mb.path.parent, "bob")
    assert 0 == done.returncode, done.stderr
    assert sent.to_dict() == orjson.loads(done.stdout)
    assert State.DONE == mb.inbox("bob").state_of(sent.id)
    status = mb.status(sent.id, "alice").recipients[0]
    assert (State.DONE, True, True) == (status.state, status.read_at is not None,
                                        status.done_at is not None)


def test_shell_script_reads_oldest_first(mb: Mailbox) -> None:
    """read.sh takes messages in id order, like the library."""
    ids = [mb.send("alice", "bob", subject=str(i)).id for i in range(3)]
    read = [orjson.loads(sh(READ, mb.path, "bob").stdout)["id"] for _ in ids]
    assert ids == read


def test_shell_script_exits_3_when_there_is_no_unread_mail(mb: Mailbox) -> None:
    """An empty inbox is exit 3, as for `mailbox read`."""
    done = sh(READ, mb.path, "bob")
    assert (3, "") == (done.returncode, done.stdout)


@pytest.mark.parametrize("stamp", [
    "00000000000000000001",  # 1970-01-01
    "00951782400000000000",  # 2000-02-29
    "01735689599999999999",  # 2024-12-31 23:59:59.999999999
    "04107542400000000000",  # 2100-03-01 (not a leap year)
])
def test_shell_script_files_done_mail_under_the_day_of_its_id(mb: Mailbox, stamp: str) -> None:
    """read.sh computes the done/ day the library looks in, for any date."""
    msg_id = f"{stamp}-0123456789abcdef"
    deliver(mb, msg_id)
    assert 0 == sh(READ, mb.path, "bob").returncode
    assert State.DONE == mb.inbox("bob").state_of(msg_id)


def test_shell_script_quarantines_a_duplicate_of_done_mail(mb: Mailbox) -> None:
    """A second copy of a done id is moved to dead/ with a reason, never printed."""
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    data = (inbox.new / f"{msg.id}.json").read_bytes()
    inbox.done(inbox.claim())
    (inbox.new / f"{msg.id}.json").write_bytes(data)
    done = sh(READ, mb.path, "bob")
    assert (3, "") == (done.returncode, done.stdout)
    assert [("duplicate delivery of a message already done", f"{msg.id}.json")] == [
        (d.reason, d.name) for d in mb.dead.list()]


def test_shell_script_leaves_a_root_that_doctor_finds_clean(mb: Mailbox) -> None:
    """Mail sent and read by the scripts leaves no staging file, lock or stray line."""
    from agentmailbox import doctor

    sh(SEND, mb.path, "alice", "bob", "s", "x")
    sh(READ, mb.path, "bob")
    assert [] == doctor.check(mb, stale_after=0)
    assert all(isinstance(orjson.loads(line), dict)
               for day in (mb.path / "journal").iterdir() for line in day.read_bytes().splitlines())


# -- the recipes in PROTOCOL.md ------------------------------------------------------------------


def test_protocol_send_recipe_delivers_a_message_the_library_reads(mb: Mailbox) -> None:
    """The send recipe of PROTOCOL.md, run verbatim, delivers valid mail with defaults."""
    done = run_recipe("send", ROOT=str(mb.path), FROM="alice", TO="bob", SUBJECT="hi",
                      BODY="from the recipe")
    assert 0 == done.returncode, done.stderr
    got = mb.inbox("bob").claim()
    assert (done.stdout.strip(), "alice", "hi", "from the recipe", got.id) == (
        got.id, got.sender, got.subject, got.body, got.thread)
    assert [] == list(mb.inbox("bob").tmp.iterdir())


def test_protocol_read_recipe_claims_prints_and_finishes(mb: Mailbox) -> None:
    """The read recipe prints the oldest message and leaves it done where the library looks."""
    first, second = mb.send("alice", "bob", body="one"), mb.send("alice", "bob", body="two")
    done = run_recipe("read", ROOT=str(mb.path), AGENT="bob")
    assert 0 == done.returncode, done.stderr
    assert first.to_dict() == orjson.loads(done.stdout)
    inbox = mb.inbox("bob")
    assert (State.DONE, State.NEW) == (inbox.state_of(first.id), inbox.state_of(second.id))


def test_protocol_release_recipe_gives_a_claim_back(mb: Mailbox) -> None:
    """The release recipe puts a claimed message back where the library claims it again."""
    msg = mb.send("alice", "bob")
    mb.inbox("bob").claim()
    assert 0 == run_recipe("release", ROOT=str(mb.path), AGENT="bob", ID=msg.id).returncode
    assert msg.id == Mailbox.open(mb.path).inbox("bob").claim().id


def test_protocol_status_recipe_reports_each_state(mb: Mailbox) -> None:
    """The status recipe tells delivered / read / done from the folders alone."""
    mb.add_agent("carol")
    mb.add_agent("dave")
    msg = mb.send("alice", ["bob", "carol", "dave"])
    mb.inbox("carol").claim()
    mb.inbox("dave").done(mb.inbox("dave").claim())
    done = run_recipe("status", ROOT=str(mb.path), ID=msg.id)
    assert ["bob delivered", "carol read", "dave done"] == done.stdout.splitlines()


def test_protocol_quotes_the_example_scripts_it_names() -> None:
    """PROTOCOL.md points at the example scripts, and they exist."""
    text = PROTOCOL.read_text()
    for script in (SEND, READ):
        assert script.is_file()
        assert f"examples/shell/{script.name}" in text


# -- routed mail and presence from a shell -------------------------------------------------------


def post(mb: Mailbox, to: str, **env: str) -> str:
    """Run the post recipe as alice; returns the id it printed."""
    done = run_recipe("post", ROOT=str(mb.path), FROM="alice", TO=to, SUBJECT="routed",
                      BODY="from the shell", **env)
    assert 0 == done.returncode, done.stderr
    return done.stdout.strip()


def route(mb: Mailbox) -> None:
    from agentmailbox.supervisor import Supervisor

    with Supervisor(mb) as sup:
        sup.run_once()


def test_protocol_post_recipe_is_routed_by_the_supervisor(mb: Mailbox) -> None:
    """Mail posted into spool/ by the recipe waits there, then reaches every coder."""
    mb.add_agent("carol", role="coder")
    msg_id = post(mb, "@coder")
    assert [f"{msg_id}.json"] == os.listdir(mb.spool.new)
    assert "new" == mb.status(msg_id).spool
    route(mb)
    status = mb.status(msg_id, "alice")
    assert ({"@coder": ("bob", "carol")}, None) == (status.routed, status.spool)
    assert [("bob", State.NEW), ("carol", State.NEW)] == [
        (d.agent, d.state) for d in status.recipients]
    got = mb.inbox("carol").claim()
    assert (msg_id, ("@coder",), "from the shell", {}) == (got.id, got.to, got.body, got.headers)
    assert ([], [], 0) == (os.listdir(mb.spool.tmp), mb.dead.list(), mb.inbox("alice").count())


def test_protocol_heartbeat_and_post_recipes_pick_the_agent_with_most_capacity(
        mb: Mailbox) -> None:
    """Heartbeats written by the shell steer pick one: carol (0.9) gets it, bob (0.2) not."""
    from agentmailbox import doctor
    from agentmailbox.presence import Liveness, Presence

    mb.add_agent("carol", role="coder")
    for agent, capacity in (("bob", "0.2"), ("carol", "0.9")):
        done = run_recipe("heartbeat", ROOT=str(mb.path), AGENT=agent, CAPACITY=capacity)
        assert 0 == done.returncode, done.stderr
    presence = Presence(mb.root)
    assert [(Liveness.ALIVE, 0.2), (Liveness.ALIVE, 0.9)] == [
        (presence.liveness(a), presence.last(a).capacity) for a in ("bob", "carol")]
    msg_id = post(mb, "@coder", PICK="one")
    route(mb)
    assert {"@coder": ("carol",)} == mb.status(msg_id).routed
    assert (State.ABSENT, State.NEW) == (mb.inbox("bob").state_of(msg_id),
                                         mb.inbox("carol").state_of(msg_id))
    assert {"pick": "one"} == mb.inbox("carol").get(msg_id).headers
    assert [] == doctor.check(mb, stale_after=0)


def test_protocol_post_recipe_to_nobody_is_buried_and_the_sender_told(mb: Mailbox) -> None:
    """An address that reaches nobody goes to dead/ and alice gets an undeliverable notice."""
    msg_id = post(mb, "@tester")
    route(mb)
    assert [("undeliverable: no agent has role 'tester'", "spool/cur")] == [
        (d.reason, d.origin) for d in mb.dead.list()]
    notice = mb.inbox("alice").claim()
    assert ("notice", "supervisor", msg_id) == (notice.kind, notice.sender, notice.reply_to)
    assert {"of": msg_id, "notice": "undeliverable", "reason": "no agent has role 'tester'",
            "address": "@tester"} == notice.body


# -- a group root: what one member's shell writes, another member reads and claims ---------------

GROUP = 100  # "users" on Debian
ALICE_UID, BOB_UID = 2001, 2002
as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                             reason="needs root and setpriv to run processes as other users")


def as_member(uid: int, *cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as user ``uid`` of the root's group, with a plain environment."""
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={GROUP}", f"--groups={GROUP}"]
    return subprocess.run([*setpriv, *cmd], capture_output=True, text=True, timeout=60, cwd="/",
                          env={**python_env(), "LC_ALL": "C.UTF-8", "MAILBOX_ROOT": "", **env})


def member_recipe(uid: int, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = as_member(uid, "sh", "-eu", "-c", recipe(name), **env)
    assert 0 == done.returncode, (name, done.stderr)
    return done


def member_mailbox(uid: int, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = as_member(uid, sys.executable, "-m", "agentmailbox", "--root", str(root), *args)
    assert 0 == done.returncode, (args, done.stderr)
    return done


@pytest.fixture
def group_root() -> Iterator[Mailbox]:
    """A group root in a folder every user may enter, owned by alice (uid 2001), agents
    alice and bob; bob's processes run as uid 2002 of the same group."""
    top = Path(tempfile.mkdtemp(prefix="agentmailbox-group-", dir="/tmp"))
    top.chmod(0o777)
    box = Mailbox.init(top, fsync="never", mode="group")
    box.add_agent("alice", role="planner")
    box.add_agent("bob", role="coder")
    subprocess.run(["chown", "-R", f"{ALICE_UID}:{GROUP}", str(top)], check=True)
    yield box
    box.close()
    shutil.rmtree(top, ignore_errors=True)


def modes_under(top: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of every file and folder under ``top``."""
    found = set()
    for folder, dirs, files in os.walk(top):
        found |= {("dir", stat.S_IMODE(os.lstat(Path(folder) / d).st_mode)) for d in dirs}
        found |= {("file", stat.S_IMODE(os.lstat(Path(folder) / f).st_mode)) for f in files}
    return found


@as_root
def test_send_recipe_in_a_group_root_writes_mail_another_member_claims(
        group_root: Mailbox) -> None:
    """In a group root, mail alice's shell delivers is read and finished by bob's library."""
    root = group_root.path
    sent = member_recipe(ALICE_UID, "send", ROOT=str(root), FROM="alice", TO="bob",
                         SUBJECT="hi", BODY="from alice's shell").stdout.strip()
    got = orjson.loads(member_mailbox(BOB_UID, root, "read", "bob", "--json").stdout)
    got = got[0] if isinstance(got, list) else got
    assert (sent, "from alice's shell") == (got["id"], got["body"])
    member_mailbox(BOB_UID, root, "done", "bob", sent)
    assert State.DONE == group_root.inbox("bob").state_of(sent)


@as_root
def test_read_recipe_in_a_group_root_claims_another_members_mail(group_root: Mailbox) -> None:
    """Bob's shell claims and finishes alice's mail, in group-shared files and folders."""
    root = group_root.path
    sent = orjson.loads(member_mailbox(ALICE_UID, root, "send", "--from", "alice", "--to",
                                       "bob", "--body", "from alice", "--json").stdout)
    printed = member_recipe(BOB_UID, "read", ROOT=str(root), AGENT="bob").stdout
    assert sent["id"] == orjson.loads(printed)["id"]
    status = orjson.loads(member_mailbox(ALICE_UID, root, "status", sent["id"],
                                         "--json").stdout)
    assert "done" == status["recipients"][0]["state"]
    assert {("dir", 0o2770), ("file", 0o660)} >= modes_under(root / "agents" / "bob")


@as_root
def test_post_and_heartbeat_recipes_in_a_group_root_are_used_by_another_member(
        group_root: Mailbox) -> None:
    """Alice's shell heartbeats and routed mail are used by bob's supervisor and reader."""
    root = group_root.path
    for agent in ("alice", "bob"):
        member_recipe(ALICE_UID, "heartbeat", ROOT=str(root), AGENT=agent, CAPACITY="0.5")
    posted = member_recipe(ALICE_UID, "post", ROOT=str(root), FROM="alice", TO="@coder",
                           SUBJECT="routed", BODY="from the shell", PICK="one").stdout.strip()
    member_mailbox(BOB_UID, root, "supervise", "--once")
    got = orjson.loads(member_mailbox(BOB_UID, root, "read", "bob", "--json").stdout)
    got = got[0] if isinstance(got, list) else got
    assert (posted, "from the shell") == (got["id"], got["body"])
    assert {("dir", 0o2770), ("file", 0o660)} >= modes_under(root / "run")


@as_root
def test_example_scripts_in_a_group_root_interoperate_across_members(
        group_root: Mailbox) -> None:
    """send.sh as alice and read.sh as bob hand one message over, leaving shared files."""
    root = group_root.path
    sent = as_member(ALICE_UID, "sh", str(SEND), str(root), "alice", "bob", "s", "x")
    assert 0 == sent.returncode, sent.stderr
    read = as_member(BOB_UID, "sh", str(READ), str(root), "bob")
    assert 0 == read.returncode, read.stderr
    assert sent.stdout.strip() == orjson.loads(read.stdout)["id"]
    assert {("dir", 0o2770), ("file", 0o660)} >= modes_under(root / "agents")
    assert {("file", 0o660)} >= modes_under(root / "journal")


# -- what the minimal read recipe refuses to hand out, and its portable arithmetic ---------------


def test_protocol_read_recipe_never_hands_out_a_duplicate_of_done_mail(mb: Mailbox) -> None:
    """A copy in new/ of an id already done is left for recovery, not printed (exit 1)."""
    msg = mb.send("alice", "bob")
    inbox = mb.inbox("bob")
    data = (inbox.new / f"{msg.id}.json").read_bytes()
    inbox.done(inbox.claim())
    (inbox.new / f"{msg.id}.json").write_bytes(data)
    done = run_recipe("read", ROOT=str(mb.path), AGENT="bob")
    assert (1, "") == (done.returncode, done.stdout)
    assert [] == mb.dead.list()


def test_protocol_read_recipe_never_follows_a_symbolic_link(mb: Mailbox, tmp_path: Path) -> None:
    """A link in new/ is claimed but neither printed nor touched, so its target stays as it was."""
    target = tmp_path / "outside.json"
    target.write_text('{"secret": 1}\n')
    os.utime(target, ns=(10**9, 10**9))
    msg_id = mb.root.clock.new_id()
    (mb.inbox("bob").new / f"{msg_id}.json").symlink_to(target)
    done = run_recipe("read", ROOT=str(mb.path), AGENT="bob")
    assert (1, "", 10**9) == (done.returncode, done.stdout, target.stat().st_mtime_ns)


def test_protocol_read_recipe_refuses_a_file_over_the_size_limit(tmp_path: Path) -> None:
    """A file over max_message_bytes is not printed; a library reader later quarantines it."""
    mb = Mailbox.init(tmp_path, fsync="never", max_message_bytes=400)
    mb.add_agent("alice")
    mb.add_agent("bob")
    deliver(mb, mb.root.clock.new_id(), body="x" * 50)
    big = next(mb.inbox("bob").new.iterdir())
    big.write_bytes(big.read_bytes()[:-2] + b" " * 400 + b"}\n")
    done = run_recipe("read", ROOT=str(mb.path), AGENT="bob")
    assert (1, "") == (done.returncode, done.stdout)
    inbox = Mailbox.open(mb.path).inbox("bob")
    inbox.requeue_expired(lease_seconds=0)
    assert inbox.claim() is None
    assert [True] == ["-byte limit" in d.reason for d in mb.dead.list()]


@pytest.mark.parametrize("stamp", [
    "00000000000000000001",  # 1970-01-01
    "00951782400000000000",  # 2000-02-29
    "01735689599999999999",  # 2024-12-31 23:59:59.999999999
    "04107542400000000000",  # 2100-03-01 (not a leap year)
    "09999999999999999999",  # 2286-11-20
])
def test_protocol_read_and_status_recipes_compute_the_day_of_any_id(mb: Mailbox,
                                                                   stamp: str) -> None:
    """The recipes' awk day matches the library's done/ folder for any date."""
    msg_id = f"{stamp}-0123456789abcdef"
    deliver(mb, msg_id)
    assert 0 == run_recipe("read", ROOT=str(mb.path), AGENT="bob").returncode
    assert State.DONE == mb.inbox("bob").state_of(msg_id)
    status = run_recipe("status", ROOT=str(mb.path), ID=msg_id)
    assert ["bob done"] == status.stdout.splitlines()


@pytest.mark.parametrize(("expires", "code"), [
    ("2000-01-01T00:00:00Z", 0),
    ("2999-01-01T00:00:00Z", 1),
    ("1999-12-31T23:00:00-01:00", 0),
    ("2999-01-01T00:00:00.999999+14:00", 1),
    ("9999-12-31T23:59:59Z", 1),
    ("0001-01-01T00:00:00Z", 0),
    ("2028-02-29T00:00:00Z", 1),
    ("2030-02-29T00:00:00Z", 2),   # not a leap year
    ("2030-13-01T00:00:00Z", 2),
    ("2030-01-01T24:00:00Z", 2),
    ("2030-01-01T00:00:00", 2),    # no offset
    ("2030-01-01T00:00:00z", 2),   # lower-case z
    ("0001-01-01T00:00:00+01:00", 2),  # before the year 1 once in UTC
    ("9999-12-31T23:00:00-01:00", 2),  # after the year 9999 once in UTC
])
def test_protocol_expiry_recipe_agrees_with_the_library(expires: str, code: int) -> None:
    """The expiry recipe says expired / not yet / malformed as the library's reader does."""
    from agentmailbox.message import Malformed, decode

    raw = orjson.dumps({"v": 1, "id": "01795443442123456789-9f86d081884c7d65", "from": "a",
                        "to": ["b"], "expires_at": expires})
    try:
        library = 0 if decode(raw).expired() else 1
    except Malformed:
        library = 2
    assert (code, code) == (library, run_recipe("expired", EXPIRES=expires).returncode)


def test_shell_script_hands_out_no_file_over_the_size_limit(tmp_path: Path) -> None:
    """read.sh leaves a file over max_message_bytes unprinted and reads the next one."""
    mb = Mailbox.init(tmp_path, fsync="never", max_message_bytes=400)
    mb.add_agent("alice")
    mb.add_agent("bob")
    big, small = mb.root.clock.new_id(), mb.root.clock.new_id()
    deliver(mb, big)
    path = mb.inbox("bob").new / f"{big}.json"
    path.write_bytes(path.read_bytes()[:-2] + b" " * 400 + b"}\n")
    deliver(mb, small)
    done = sh(READ, mb.path, "bob")
    assert (0, small) == (done.returncode, orjson.loads(done.stdout)["id"])
    assert State.CLAIMED == mb.inbox("bob").state_of(big)


@pytest.mark.parametrize("script", [SEND, READ])
def test_shell_scripts_refuse_a_root_of_an_unknown_format(mb: Mailbox, script: Path) -> None:
    """A root of a newer format is refused (exit 5) before anything is read or written."""
    config = orjson.loads((mb.path / "mailbox.json").read_bytes())
    (mb.path / "mailbox.json").write_bytes(orjson.dumps({**config, "format": 3}))
    mb.send("alice", "bob")
    args = ("alice", "bob", "s", "x") if script == SEND else ("bob",)
    done = sh(script, mb.path, *args)
    assert (5, "") == (done.returncode, done.stdout)
    assert 1 == mb.inbox("bob").count()


# -- the conformance vectors, run against read.sh as §24 tells a client to -----------------------

MINIMAL_CHECKS = {"foreign-name", "not-regular", "too-large", "duplicate-done"}


def one_claim_cases() -> list[Any]:
    """Vectors of one plain claim by bob whose outcome a minimal reader must match: mail
    handed out, or withheld for a reason read.sh checks itself (§0.3). Releasing an
    expired claim is a MAY, so cases that start with a claim in cur/ are left out."""
    from test_conformance import load_cases

    chosen = []
    for param in load_cases():
        case = param.values[0]
        step = case["steps"][0]
        wanted = set(step["expect"].get("dead", []))
        if (len(case["steps"]) == 1 and step["do"] == "claim" and "id" not in step
                and "xfail" not in case and "mail" not in step["expect"]
                and not any("/inbox/cur/" in f["path"] for f in case.get("files", []))
                and (step["expect"]["outcome"] == "claimed" or wanted & MINIMAL_CHECKS)):
            chosen.append(pytest.param(case, id=param.id))
    return chosen


@pytest.mark.parametrize("case", one_claim_cases())
def test_read_script_passes_the_claim_vectors_a_minimal_reader_must(case: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    """read.sh hands out what the vectors say is claimed and withholds what they say is not."""
    from test_conformance import make_root

    root = make_root(tmp_path, case)
    expect = case["steps"][0]["expect"]
    done = sh(READ, root, "bob")
    if expect["outcome"] == "claimed":
        assert (0, expect["id"]) == (done.returncode, orjson.loads(done.stdout)["id"])
    else:
        assert (3, "") == (done.returncode, done.stdout), done.stderr
