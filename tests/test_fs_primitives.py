"""The file primitives exist once: fs.py alone creates a file exclusively or reads a log."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

import agentmailbox
from agentmailbox import StorageError, fs
from agentmailbox.fs import Disk

# An exclusive create (os.O_EXCL, open(..., "x")) and a split of bytes into lines are
# the two sequences whose copies drifted apart before; fs.Disk.stage and
# fs.Disk.read_lines are the one of each.
_COPIES = re.compile(r"""O_EXCL|open\([^)]*["']x|split\(b["']\\n|\.readline\(""")


def test_only_fs_creates_files_exclusively_or_reads_lines_of_a_log() -> None:
    """Every message, marker and log is written and read by one audited sequence each
    (fs.Disk.stage, fs.Disk.read_lines): no module has a copy of its own."""
    package = Path(agentmailbox.__file__).parent
    found = {str(p.relative_to(package)) for p in package.rglob("*.py")
             if _COPIES.search(p.read_text())}
    assert {"fs.py"} == found


_STATE_CHANGES = re.compile(
    r"\bos\.(?:link|rename|replace|unlink|remove|fsync|fdatasync|symlink)\(")


def test_only_fs_links_renames_unlinks_or_syncs() -> None:
    """Every link, rename, unlink and fsync goes through fs.Disk, where the guard against
    links and foreign files below the root lives: no module calls the os functions itself."""
    package = Path(agentmailbox.__file__).parent
    found = {str(p.relative_to(package)) for p in package.rglob("*.py")
             if _STATE_CHANGES.search(p.read_text())}
    assert {"fs.py"} == found


@pytest.mark.parametrize("flag", ["renameat2", "no-flag"])
def test_a_move_into_a_missing_folder_is_an_error_unless_the_folder_may_not_exist_yet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    """Disk.move says the same with and without RENAME_NOREPLACE: a missing source is
    GONE, a missing folder of the destination a StorageError naming it (GONE only when
    the caller said the folder may not exist yet), and nothing moves."""
    if flag == "no-flag":
        monkeypatch.setattr(fs, "_rename_noreplace", lambda src, dest: errno.EINVAL)
    disk = Disk(base=str(tmp_path))
    src, missing = tmp_path / "a.json", tmp_path / "nowhere"
    src.write_bytes(b"{}")
    assert fs.GONE is disk.move(tmp_path / "gone.json", tmp_path / "b.json")
    with pytest.raises(StorageError, match=str(missing)):
        disk.move(src, missing / "a.json")
    assert fs.GONE is disk.move(src, missing / "a.json", new_folder=True)
    assert (True, False) == (src.exists(), missing.exists())
