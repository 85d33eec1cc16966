#!/usr/bin/env bash
# Make a Debian bookworm base image with Python 3.11 (python3 + python3-venv) without any
# container registry: debootstrap a minimal root file system and `docker import` it.
#
#   bash scripts/ci/base-image.sh [IMAGE]     # default IMAGE: $LATENTWIRE_BASE_IMAGE or latentwire-base:bookworm
#
# Skips the work when the image already exists (a second run takes well under a second).
# The image plays the part of `python:3.11-slim` for docker/Dockerfile: `python3 -m venv` works
# in both, and both carry CPython 3.11 (cp311, glibc x86_64), the ABI of the host-built wheelhouse.
set -euo pipefail

IMAGE=${1:-${LATENTWIRE_BASE_IMAGE:-latentwire-base:bookworm}}
SUITE=${LATENTWIRE_BASE_SUITE:-bookworm}

log() { printf '[base-image] %s\n' "$*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE exists; skipping"
    exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }

root=$(mktemp -d /tmp/latentwire-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
log "debootstrap --variant=minbase $SUITE (python3, python3-venv) into $root"
# No mirror argument: debootstrap's default Debian mirror.
if ! debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$root" >"$root.log" 2>&1; then
    tail -n 30 "$root.log" >&2
    rm -f "$root.log"
    exit 1
fi
rm -f "$root.log"
# What a slim image does without: package caches and lists, documentation, translations.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
"$root"/usr/bin/python3 --version >/dev/null 2>&1 || chroot "$root" python3 --version >/dev/null

log "importing as $IMAGE"
tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
log "$IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
