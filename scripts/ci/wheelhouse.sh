#!/usr/bin/env bash
# Build the wheelhouse the images install from, on the host, so image builds need no network:
# the CPU build of torch 2.13.0, and every dependency of the model package and of the extras the
# images install (latentwire[sender], [receiver], [train], [client]; docker/Dockerfile), setuptools
# for building the project's own wheel in the image.
#
#   bash scripts/ci/wheelhouse.sh [DIR]      # default DIR: docker/wheelhouse (inside the build context)
#
# Python 3.11 on x86_64 Linux is needed (the images are cp311 manylinux x86_64). torch comes from
# wherever this machine's pip finds `torch==2.13.0`; on a machine whose pip would take the CUDA
# build from PyPI, point pip at PyTorch's CPU wheel index first (PIP_EXTRA_INDEX_URL, see
# docs/docker.md). Wheels already in DIR are reused; the project's wheel is always rebuilt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${1:-$ROOT/docker/wheelhouse}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

log() { printf '[wheelhouse] %s\n' "$*" >&2; }

"$PYTHON" - <<'PY'
import platform, sys
if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
    sys.exit(f"wheelhouse.sh needs CPython 3.11 on x86_64 (the images' ABI), not {sys.version.split()[0]} on {platform.machine()}")
PY

mkdir -p "$DIR"
# The extras of the four images (docker/Dockerfile installs one per image): all must be in pyproject.toml.
IMAGE_EXTRAS=(sender receiver train client)
"$PYTHON" - "$ROOT/pyproject.toml" "${IMAGE_EXTRAS[@]}" <<'PY'
import sys, tomllib
declared = tomllib.load(open(sys.argv[1], "rb"))["project"].get("optional-dependencies", {})
missing = [extra for extra in sys.argv[2:] if extra not in declared]
if missing:
    sys.exit(f"wheelhouse.sh: pyproject.toml has no extra {', '.join(missing)} (docker/Dockerfile installs them)")
PY
extras="[$(IFS=,; echo "${IMAGE_EXTRAS[*]}")]"
log "pip wheel torch==2.13.0 + the dependencies of latentwire$extras into ${DIR#"$ROOT"/}"
# The project is built from a copy of its sources, so that no build/ or *.egg-info lands in the tree.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/shared" "$ROOT/services" "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} + -o -name '*.egg-info' -prune -exec rm -rf {} +
# --find-links DIR: wheels from an earlier run count as found; pip downloads only what is missing.
# pip's index warnings about this machine's empty local mirrors are noise.
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-cache-dir --find-links "$DIR" -w "$DIR" \
    "torch==2.13.0" "$src$extras" 2> >(grep -v "is neither a file nor a directory" >&2)
# The images build the project from source (docker/Dockerfile): its own wheel is not kept, but
# setuptools is, for that offline build.
rm -f "$DIR"/latentwire-*.whl
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps -d "$DIR" "setuptools>=69" \
    2> >(grep -v "is neither a file nor a directory" >&2)
# A CUDA build would make the images several GB: refuse it.
if ls "$DIR"/nvidia_* >/dev/null 2>&1 || ! ls "$DIR"/torch-2.13.0*cpu*.whl >/dev/null 2>&1; then
    log "ERROR: $DIR holds no CPU build of torch 2.13.0 (or holds CUDA libraries); see docs/docker.md"
    exit 1
fi
log "$(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1)"
