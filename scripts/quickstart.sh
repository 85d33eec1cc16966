#!/usr/bin/env bash
# Install latentwire into .venv, start the sender (:8001) and the receiver (:8002) on the shipped
# default model, and send two sample digits through both. The services keep running in the
# background afterwards; `bash scripts/quickstart.sh stop` stops them. The sender also serves the
# browser demo at /demo/ (docs/demo.md); the receiver allows the sender's origin (CORS) for it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run

stop() {
    for name in sender receiver; do
        if [ -f ".run/$name.pid" ]; then
            kill "$(cat ".run/$name.pid")" 2>/dev/null && echo "stopped the $name" || true
            rm -f ".run/$name.pid"
        fi
    done
}
if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

bash scripts/install.sh
stop  # a previous quickstart's services, if any

sender_port=${LATENTWIRE_SENDER_PORT:-8001}
receiver_port=${LATENTWIRE_RECEIVER_PORT:-8002}
.venv/bin/latentwire-sender --port "$sender_port" >.run/sender.log 2>&1 &
echo $! >.run/sender.pid
# The demo page comes from the sender's origin and calls the receiver: allow that origin (CORS).
sender_origins="http://127.0.0.1:$sender_port,http://localhost:$sender_port"
LATENTWIRE_RECEIVER_CORS_ORIGINS=${LATENTWIRE_RECEIVER_CORS_ORIGINS:-$sender_origins} \
    .venv/bin/latentwire-receiver --port "$receiver_port" >.run/receiver.log 2>&1 &
echo $! >.run/receiver.pid

for url in "http://127.0.0.1:$sender_port" "http://127.0.0.1:$receiver_port"; do
    for _ in $(seq 1 120); do
        .venv/bin/python -c "import httpx, sys; sys.exit(httpx.get('$url/readyz').status_code != 200)" 2>/dev/null && break
        sleep 0.5
    done
    .venv/bin/python -c "import httpx; httpx.get('$url/readyz').raise_for_status()" 2>/dev/null \
        || { echo "$url did not become ready; see .run/*.log" >&2; stop; exit 1; }
done
echo "sender   http://127.0.0.1:$sender_port   (docs: /docs)"
echo "receiver http://127.0.0.1:$receiver_port   (docs: /docs)"

samples=$(.venv/bin/python -c "import latentwire, pathlib; print(pathlib.Path(latentwire.__file__).parent / 'samples')")
.venv/bin/latentwire --sender-url "http://127.0.0.1:$sender_port" --receiver-url "http://127.0.0.1:$receiver_port" \
    roundtrip "$samples/mnist-test-0.png" "$samples/digit-on-paper.png" -o .run/decoded
echo "reconstructions: .run/decoded/   logs: .run/sender.log .run/receiver.log"
echo "browser demo: http://127.0.0.1:$sender_port/demo/?sender=http://127.0.0.1:$sender_port&receiver=http://127.0.0.1:$receiver_port"
echo "the services keep running; stop them with: bash scripts/quickstart.sh stop"
