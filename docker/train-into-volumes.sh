#!/bin/sh
# The trainer container's command: train, then hand each half to its own volume.
#
#   docker compose --profile train run --rm trainer [latentwire-train options...]
#
# Trains into a scratch directory, then installs encoder.safetensors into /models/encoder (the
# sender's volume), decoder.safetensors into /models/decoder (the receiver's volume) and the rest
# (figure, logs) into /models/report. Each file is copied under a temporary name and renamed, so
# a service never sees half a file. MNIST is read from (or fetched into) $LATENTWIRE_DATA_DIR.
set -eu
scratch=$(mktemp -d /tmp/latentwire-train.XXXXXX)
latentwire-train --out "$scratch" --data-dir "${LATENTWIRE_DATA_DIR:-/data}" "$@"
for half in encoder decoder; do
    [ -f "$scratch/$half.safetensors" ] || { echo "latentwire-train wrote no $half.safetensors" >&2; exit 1; }
done
install_file() {  # install_file SRC DIR
    cp "$1" "$2/.$(basename "$1").tmp"
    mv -f "$2/.$(basename "$1").tmp" "$2/$(basename "$1")"
}
install_file "$scratch/encoder.safetensors" /models/encoder
install_file "$scratch/decoder.safetensors" /models/decoder
rm -f "$scratch/encoder.safetensors" "$scratch/decoder.safetensors"
for f in "$scratch"/*; do
    [ -f "$f" ] && install_file "$f" /models/report
done
rm -rf "$scratch"
echo "trained checkpoints installed: /models/encoder/encoder.safetensors, /models/decoder/decoder.safetensors"
