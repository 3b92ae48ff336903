# Shared set-up for scripts/*: a .venv at the repository root with the package installed.
# Usage: . scripts/_env.sh [EXTRAS]   (EXTRAS like "test" or "test,bench"; "" for none:
# the package and its own dependencies only)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1-test}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.installed-${extras:-package}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
