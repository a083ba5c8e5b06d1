#!/usr/bin/env bash
# Refreshes constraints.txt: installs the newest releases pyproject.toml allows into .venv-latest, runs the
# whole test suite there, and writes the lock only if it passes. Review `git diff constraints.txt` after.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_VENV=.venv-latest ./install.sh --latest
HF_HUB_OFFLINE=1 .venv-latest/bin/python -m pytest -n 2 "$@"
{
  echo "# The exact versions the whole test suite passed with; install.sh installs these (pip -c)."
  echo "# Refresh: scripts/refresh-lock.sh (newest releases, full suite, then this file). $(date -u +%F)"
  .venv-latest/bin/pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
} > constraints.txt
echo "refresh-lock: constraints.txt written; review it with git diff"
