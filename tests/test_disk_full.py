"""A full disk fails a send cleanly: a DiskFull error, nothing partial, earlier mail intact."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmailbox import DiskFull, Mailbox
from agentmailbox.message import decode


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (needs root, as in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mb: Mailbox) -> tuple[list[str], DiskFull]:
    sent = []
    body = "x" * 6000
    for _ in range(10_000):
        try:
            sent.append(mb.send("alice", "bob", subject="filler", body=body).id)
        except DiskFull as exc:
            return sent, exc
    raise AssertionError("the disk never filled up")


def test_send_on_full_disk_raises_diskfull_and_leaves_nothing_partial(small_fs: Path) -> None:
    """Sends fail with DiskFull; every visible message is whole; tmp/ is empty."""
    mb = Mailbox.init(small_fs, fsync="always")
    mb.add_agent("alice")
    mb.add_agent("bob")
    sent, error = _fill(mb)
    assert "no space left" in str(error) and error.hint
    inbox = mb.inbox("bob")
    assert sorted(p.name[:-5] for p in inbox.new.iterdir()) == sorted(sent)
    for path in inbox.new.iterdir():
        decode(path.read_bytes(), expected_id=path.name[:-5])
    assert list(inbox.tmp.iterdir()) == []


def test_send_works_again_once_space_is_freed(small_fs: Path) -> None:
    """After a DiskFull, freeing space is enough: the next send succeeds and is readable."""
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\0" * 300_000)
    mb = Mailbox.init(small_fs, fsync="always")
    mb.add_agent("alice")
    mb.add_agent("bob")
    sent, _ = _fill(mb)
    ballast.unlink()
    after = mb.send("alice", "bob", subject="after", body="y" * 6000)
    got = [mb.inbox("bob").claim() for _ in range(len(sent) + 1)]
    assert [m.id for m in got] == [*sent, after.id]


def test_cli_reports_disk_full_with_its_exit_code(small_fs: Path, monkeypatch, capfd) -> None:
    """The command prints a clear error and exits 9 on a full disk."""
    from agentmailbox.cli import EXIT_DISK_FULL, main

    mb = Mailbox.init(small_fs, fsync="never")
    mb.add_agent("alice")
    mb.add_agent("bob")
    _fill(mb)
    monkeypatch.setenv("MAILBOX_ROOT", str(mb.path))
    code = main(["send", "--from", "alice", "--to", "bob", "--body", "z" * 50_000])
    assert code == EXIT_DISK_FULL
    assert "no space left" in capfd.readouterr().err
