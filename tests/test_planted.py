"""A link, a FIFO, a folder or a hard link planted at every path of the layout.

The paths come from ``agentmailbox.layout.TREE`` (the layout spelled once), not from a
list kept here, so a path added to the layout is attacked too. For each path and each
kind of planted thing, a root in use (mail in every state, a workspace file, a
handoff, state, a thread marker, keys, the journal) gets the plant, then the commands
people and agents run go over it. None may hang, crash with a traceback, or read or
change anything outside the root; every one either works or fails with a clear error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from conftest import Hung, Stdin, deadline

from agentmailbox import Mailbox, layout
from agentmailbox.cli import main
from agentmailbox.message import day_of

SECRET = b"PLANTED-OUTSIDE-SECRET"
HANG_SECONDS = 10
KINDS = ("symlink-to-folder", "symlink-to-file", "fifo", "folder", "hard-link")


@dataclass(frozen=True)
class Template:
    """A root in use, made once, and the names its paths are filled with."""

    base: Path
    values: dict[str, str]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    base = tmp_path_factory.mktemp("template")
    mb = Mailbox.init(base, fsync="never", groups={"team": ["bob", "carol"]})
    for name in ("alice", "bob", "carol"):
        mb.add_agent(name)
    done = mb.send("alice", "bob", subject="finished")
    claimed = mb.send("alice", "bob", subject="in hand")
    unread = mb.send("alice", "bob", subject="waiting", key="k1")
    inbox = mb.inbox("bob")
    inbox.done(inbox.claim(done.id))
    inbox.claim(claimed.id)
    mb.send("alice", "+team", subject="routed")
    mb.workspace.put("notes.md", b"v1\n")
    bob = mb.agent("bob")
    bob.handoff(next=["go on"])
    bob.remember("a fact")
    mb.agent("alice").thread_done(unread.id)
    dead_id = mb.dead.bury(inbox.new / f"{unread.id}.json", "planted for the test")
    mb.close()
    assert dead_id is not None
    return Template(base, {
        "agent": "bob", "id": unread.id, "pid": "1", "hex": "abcdef", "day": day_of(done.id),
        "key": hashlib.sha256(b"k1").hexdigest()[:40], "month": time.strftime("%Y-%m"),
        "name": "notes.md", "version": "0000000001", "dead_id": dead_id, "thread": unread.id,
    })


def _cases() -> list[tuple[str, str]]:
    out = []
    for entry in layout.TREE:
        for kind in KINDS:
            if entry.folder and kind == "folder":
                continue  # a folder where a folder belongs is the normal case
            out.append((entry.path, kind))
    return out


@dataclass
class Outside:
    """A folder outside the root that a planted thing points into."""

    top: Path
    secret: Path

    def snapshot(self) -> dict[str, tuple[int, int, int, bytes]]:
        seen = {}
        for folder, dirs, files in os.walk(self.top):
            for name in dirs + files:
                path = Path(folder) / name
                st = os.lstat(path)
                data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
                seen[str(path.relative_to(self.top))] = (st.st_mode, st.st_size,
                                                         st.st_mtime_ns, data)
        return seen


def _furnish(outside: Outside, template: Template) -> None:
    """What a folder outside the root holds: files a reader following a link would take
    for its own (an agent.json, a message, a version, a journal day), each carrying the
    secret, and the secret itself."""
    folder = outside.top / "folder"
    folder.mkdir(parents=True)
    msg_id = template.values["id"]
    as_message = orjson.dumps({"v": 1, "id": msg_id, "from": "alice", "to": ["bob"],
                               "subject": SECRET.decode(), "body": SECRET.decode()})
    files = {"kept.json": SECRET, "agent.json": orjson.dumps(
                 {"name": "bob", "description": SECRET.decode(),
                  "created": "2026-01-01T00:00:00Z"}),
             f"{msg_id}.json": as_message, template.values["version"]: SECRET,
             f"{template.values['day']}.jsonl": orjson.dumps(
                 {"t": 1, "ev": "send", "id": msg_id, "subject": SECRET.decode()}) + b"\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    outside.secret.write_bytes(as_message)


def _plant(path: Path, kind: str, outside: Outside) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink-to-folder":
        path.symlink_to(outside.top / "folder")
    elif kind == "symlink-to-file":
        path.symlink_to(outside.secret)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
        (path / "inner.json").write_bytes(b"{}")
    else:
        os.link(outside.secret, path)


def _commands(values: dict[str, str]) -> list[list[str]]:
    msg = values["id"]
    return [
        ["send", "--from", "alice", "--to", "bob", "--body", "hello"],
        ["send", "--from", "alice", "--to", "bob", "--id", "k1", "--body", "again"],
        ["send", "--from", "alice", "--to", "+team", "--body", "routed"],
        ["inbox", "bob"], ["inbox", "bob", "--json"],
        ["read", "bob", "--json"], ["read", "bob", "--all", "--json"],
        ["release", "bob", msg], ["done", "bob", msg],
        ["status", msg, "--from", "alice"],
        ["agents", "--json"], ["agent", "show", "bob"], ["agent", "edit", "bob", "--role", "r"],
        ["ws", "ls"], ["ws", "get", "notes.md"], ["ws", "put", "notes.md", "--file", "-"],
        ["handoff", "bob", "--next", "step"], ["handoff", "bob", "--show"],
        ["state", "bob", "set", "k", "v"], ["state", "bob", "get"],
        ["remember", "bob", "text"], ["memory", "bob"],
        ["boot", "bob"], ["boot", "bob", "--json"],
        ["thread", "show", msg], ["thread", "done", msg],
        ["heartbeat", "bob"], ["tail", "-n", "5"],
        ["dead", "ls"], ["supervise", "--once", "--json"],
        ["doctor", "--json"], ["doctor", "--repair", "--json"], ["doctor", "--json"],
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("where", "kind"), _cases())
def test_planted_thing_is_never_followed_and_blocks_nothing(
        where: str, kind: str, template: Template, tmp_path: Path,
        capfdbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever is planted at a path of the layout, every command works or says what is
    wrong: nothing hangs, nothing crashes, nothing outside the root is read or changed."""
    outside = Outside(tmp_path / "outside", tmp_path / "outside" / "secret.json")
    _furnish(outside, template)
    before = outside.snapshot()
    base = tmp_path / "root"
    shutil.copytree(template.base, base, symlinks=True)
    root = base / ".mailbox"
    _plant(root / layout.fill(where, **template.values), kind, outside)
    monkeypatch.setenv("MAILBOX_ROOT", str(root))
    monkeypatch.setattr("sys.stdin", Stdin(b""))
    failures = []
    for args in _commands(template.values):
        try:
            with deadline(HANG_SECONDS):
                code = main(args)
        except Hung as exc:
            failures.append(f"mailbox {' '.join(args)}: {exc}")
            continue
        except BaseException as exc:  # any escape is the failure looked for
            failures.append(f"mailbox {' '.join(args)}: {type(exc).__name__}: {exc}")
            continue
        out, err = capfdbinary.readouterr()
        if SECRET in out or SECRET in err:
            failures.append(f"mailbox {' '.join(args)} printed the outside file")
        if code not in (0, 1, 3, 4, 5, 6, 7, 8, 10):
            failures.append(f"mailbox {' '.join(args)} exited {code}")
    assert [] == failures
    assert before == outside.snapshot()
    leaked = [p for p in _regular_files(root) if SECRET in p.read_bytes()]
    assert [] == [str(p.relative_to(root)) for p in leaked if not _is_the_plant(p, outside)]


def _regular_files(top: Path) -> Iterator[Path]:
    for folder, _, files in os.walk(top):
        for name in files:
            path = Path(folder) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path


def _is_the_plant(path: Path, outside: Outside) -> bool:
    """The planted hard link itself (wherever it was moved to) is the outside file's
    other name: holding it is not a copy."""
    return os.path.samefile(path, outside.secret)
