#!/usr/bin/env bash
# Install everything into .venv, fetch MNIST, and run the whole test suite (extra args go to pytest).
# Integration tests drive docker-compose: they skip without a Docker engine, but fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh --dev
.venv/bin/python -m latentwire.data            # MNIST into $LATENTWIRE_DATA_DIR or ~/.cache/latentwire/mnist
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
