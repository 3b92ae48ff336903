"""The harness CLIs the end-to-end tests run (Claude Code, Codex): installed by npm into a
folder of their own (``.ci/run`` does it), found there or skipped with what is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli_dir(env: str, name: str) -> Path:
    """Where a CLI is installed (``npm install --prefix`` of that folder): ``$env``, else
    ``.cache/<name>`` in the repository."""
    named = os.environ.get(env)
    return Path(named) if named else ROOT / ".cache" / name


def cli_or_skip(folder: Path, package: str, command: str, version: str, label: str) -> Path:
    """The ``command`` executable of ``package`` at the pinned ``version`` in ``folder``,
    or skip saying what is missing and how to install it."""
    exe = folder / "node_modules" / ".bin" / command
    if not exe.exists():
        missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
        pytest.skip(f"{label} CLI not installed in {folder}"
                    + (f" ({' and '.join(missing)} not found)" if missing else "")
                    + f": npm install --prefix {folder} {package}@{version}")
    found = orjson.loads((folder / "node_modules" / package / "package.json").read_bytes())
    if found["version"] != version:
        pytest.skip(f"{folder} holds {label} {found['version']}, the test is pinned to "
                    f"{version} (.ci/run installs it)")
    return exe
