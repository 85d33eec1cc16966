#!/usr/bin/env bash
# The gateway's entrypoint: write nginx's configuration from the environment, start nginx, and keep
# its upstream lists equal to what DNS answers for the sender and receiver names, so that replicas
# that come (`docker compose up --scale sender=3`, a pod turning ready) and go (a crash, a scale
# down) are picked up within LATENTWIRE_GATEWAY_RESOLVE_INTERVAL_S. A change reloads nginx
# gracefully: requests in flight finish on the old workers.
#
# Why not nginx's own resolver: the `resolve` parameter of an upstream server is not in Debian
# bookworm's nginx (1.22), and a resolved `proxy_pass $variable` always starts at the first address
# (no balancing) and keeps no connections alive. getent also uses resolv.conf's search domains, so
# short Service names work on Kubernetes as they do in compose.
#
# Settings (environment; empty or unset = the default):
#   LATENTWIRE_GATEWAY_SENDER                  host:port of the sender replicas    (sender:8001)
#   LATENTWIRE_GATEWAY_RECEIVER                host:port of the receiver replicas  (receiver:8002)
#   LATENTWIRE_GATEWAY_LISTEN_PORT             port nginx listens on in the container (8080; compose
#                                              publishes it as LATENTWIRE_GATEWAY_PORT, 8000)
#   LATENTWIRE_GATEWAY_SENDER_MAX_BODY_BYTES   body limit of sender paths   (10485760: the sender's)
#   LATENTWIRE_GATEWAY_RECEIVER_MAX_BODY_BYTES body limit of receiver paths (4194304: the receiver's)
#   LATENTWIRE_GATEWAY_TIMEOUT_S               read/send timeouts, client and replicas (60)
#   LATENTWIRE_GATEWAY_RESOLVE_INTERVAL_S      how often DNS is asked for the replicas (2)
#   LATENTWIRE_GATEWAY_WORKERS                 nginx worker processes (auto: one per CPU)
#   LATENTWIRE_GATEWAY_ACCESS_LOG              true: one line per request on stdout (true)
set -euo pipefail

fail() { echo "latentwire-gateway: $*" >&2; exit 2; }
setting() {  # setting NAME DEFAULT PATTERN [WHAT]: NAME's value or DEFAULT; exit 2 unless PATTERN
    local value=${!1:-$2}
    [[ $value =~ ^($3)$ ]] || fail "$1=$value is not valid (expected ${4:-${3//|/ or }})"
    printf '%s' "$value"
}
# A port: 1-65535.
port_re='[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]'
hostport="[A-Za-z0-9._-]+:($port_re)"
positive='[1-9][0-9]*'
sender=$(setting LATENTWIRE_GATEWAY_SENDER sender:8001 "$hostport" "host:port")
receiver=$(setting LATENTWIRE_GATEWAY_RECEIVER receiver:8002 "$hostport" "host:port")
port=$(setting LATENTWIRE_GATEWAY_LISTEN_PORT 8080 "$port_re" "a port, 1-65535")
sender_max=$(setting LATENTWIRE_GATEWAY_SENDER_MAX_BODY_BYTES 10485760 "$positive")
receiver_max=$(setting LATENTWIRE_GATEWAY_RECEIVER_MAX_BODY_BYTES 4194304 "$positive")
timeout=$(setting LATENTWIRE_GATEWAY_TIMEOUT_S 60 "$positive")
interval=$(setting LATENTWIRE_GATEWAY_RESOLVE_INTERVAL_S 2 "$positive|[0-9]*\.[0-9]*[1-9][0-9]*" \
    "a number of seconds above 0")
workers=$(setting LATENTWIRE_GATEWAY_WORKERS auto "auto|$positive")
access_log=$(setting LATENTWIRE_GATEWAY_ACCESS_LOG true "true|false|1|0")
case $access_log in true | 1) access_log="/dev/stdout gateway" ;; *) access_log=off ;; esac

conf=/tmp/nginx
mkdir -p "$conf"
sed -e "s|@WORKERS@|$workers|g" -e "s|@PORT@|$port|g" -e "s|@TIMEOUT@|$timeout|g" \
    -e "s|@SENDER_MAX_BODY@|$sender_max|g" -e "s|@RECEIVER_MAX_BODY@|$receiver_max|g" \
    -e "s|@ACCESS_LOG@|$access_log|g" \
    /etc/latentwire/nginx.conf.template >"$conf/nginx.conf"

upstream() {  # upstream NAME HOST:PORT: an upstream block with one server per address of HOST
    local name=$1 host=${2%:*} port=${2##*:} addresses
    addresses=$(getent ahostsv4 "$host" | awk '{print $1}' | sort -u || true)
    if [ -z "$addresses" ]; then  # once more: a lookup that failed for a moment must not empty the list
        sleep 0.2
        addresses=$(getent ahostsv4 "$host" | awk '{print $1}' | sort -u || true)
    fi
    echo "upstream $name {"
    if [ -z "$addresses" ]; then
        # Nothing to send to (yet): every request gets the gateway's JSON 502 "unavailable".
        echo "    server 127.0.0.1:1 down;  # $host: no address"
    else
        for address in $addresses; do
            # One failed connection takes a replica out of this worker's rotation for 2 s (the
            # request goes to another at once); DNS drops a dead one within the resolve interval.
            echo "    server $address:$port max_fails=1 fail_timeout=2s;"
        done
    fi
    # Connections kept open to the replicas; closed before uvicorn's own 5 s keep-alive timeout.
    echo "    keepalive 32;"
    echo "    keepalive_timeout 4s;"
    echo "}"
}
upstreams() { upstream sender_replicas "$sender"; upstream receiver_replicas "$receiver"; }
replicas() { grep -o 'server [0-9.]*:[0-9]*' "$1" | cut -d' ' -f2 | tr '\n' ' '; }

upstreams >"$conf/upstreams.conf"
nginx -e stderr -c "$conf/nginx.conf" -t -q || fail "nginx refuses the configuration above"
echo "latentwire-gateway: listening on :$port; sender $sender, receiver $receiver: $(replicas "$conf/upstreams.conf")"
nginx -e stderr -c "$conf/nginx.conf" -g 'daemon off;' &
nginx_pid=$!

# SIGTERM/SIGINT: nginx's graceful stop (SIGQUIT) lets requests in flight finish.
stopping=
trap 'stopping=1; kill -QUIT "$nginx_pid" 2>/dev/null || true' TERM INT

while kill -0 "$nginx_pid" 2>/dev/null && [ -z "$stopping" ]; do
    sleep "$interval" &
    wait $! || true
    [ -z "$stopping" ] || break
    upstreams >"$conf/upstreams.next"
    if ! cmp -s "$conf/upstreams.next" "$conf/upstreams.conf"; then
        # Test the new lists before nginx gets them: on a refusal keep serving the old ones
        # and try again at the next interval (nothing is replaced, so the change is seen again).
        cp "$conf/upstreams.conf" "$conf/upstreams.good"
        cp "$conf/upstreams.next" "$conf/upstreams.conf"
        if nginx -e stderr -c "$conf/nginx.conf" -t -q; then
            echo "latentwire-gateway: replicas now $(replicas "$conf/upstreams.conf")"
            kill -HUP "$nginx_pid"
        else
            echo "latentwire-gateway: nginx refuses the new replica lists; keeping the old ones" >&2
            cp "$conf/upstreams.good" "$conf/upstreams.conf"
        fi
    fi
done
# nginx's exit status (0 after a graceful stop); a wait cut short by the trap is waited again.
status=0
while kill -0 "$nginx_pid" 2>/dev/null; do
    status=0
    wait "$nginx_pid" || status=$?
done
exit "$status"
