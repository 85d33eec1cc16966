#!/usr/bin/env bash
# Create .venv and install latentwire into it (CPU torch), plus the test tools with --dev.
# Used by scripts/quickstart.sh and scripts/test.sh; safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "latentwire needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first and pinned: this CPU build is small; an unpinned torch would pull the multi-GB CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
fi
