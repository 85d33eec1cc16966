#!/usr/bin/env bash
# Install the programs some tests drive, from Debian's packages, when they are missing:
#   chromium  the browser demo's tests (Playwright drives it: its own browser download is blocked)
#   kubectl   `kubectl kustomize` renders deploy/kubernetes for tests/unit/test_kubernetes.py; it
#             needs kustomize v5 (kubectl 1.27 or newer). The CI machines carry one; Debian
#             bookworm's own `kubernetes-client` (1.20) is too old, and this script says so.
#   wrk       the load generator of latentwire-bench's HTTP sections (tests/unit/test_bench.py)
# Without them those tests skip on a developer's machine; under CI=true they fail, so .ci/run
# runs this first. Needs root (or sudo) and the Debian mirror.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v kubectl >/dev/null || missing+=(kubectl)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then
    echo "[test-tools] chromium, kubectl and wrk present"
else
    echo "[test-tools] installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    for package in "${missing[@]}"; do
        # kubectl is `kubernetes-client` in some Debian releases.
        as_root apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
            || { [ "$package" = kubectl ] && as_root apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null; } \
            || { echo "[test-tools] cannot install $package" >&2; exit 1; }
    done
fi
chromium --version 2>/dev/null
{ wrk --version 2>&1 || true; } | sed -n 1p   # wrk prints its version and usage, exit status 1
kubectl version --client 2>/dev/null | sed -n 1p   # sed reads it all: no SIGPIPE under pipefail
cd "$(dirname "$0")/../.."
kubectl kustomize deploy/kubernetes/base >/dev/null \
    || { echo "[test-tools] this kubectl cannot render deploy/kubernetes: kustomize v5 (kubectl >= 1.27) is needed" >&2; exit 1; }
