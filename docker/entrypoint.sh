#!/bin/sh
# Entry point of the latentwire images.
#
# 1. docker-compose.yml passes every setting as ${VAR:-}: an empty LATENTWIRE_* variable means
#    "not set" (the program's own default), so it is removed before the program starts.
# 2. Checkpoints the trainer wrote into the compose volumes win over the packaged default:
#    /models/encoder/encoder.safetensors (sender) and /models/decoder/decoder.safetensors
#    (receiver) are used when present and no checkpoint is set, under either of the names the
#    service reads (LATENTWIRE_SENDER_ENCODER or LATENTWIRE_ENCODER; LATENTWIRE_RECEIVER_DECODER
#    or LATENTWIRE_DECODER).
set -eu
for name in $(env | sed -n 's/^\(LATENTWIRE_[A-Za-z0-9_]*\)=$/\1/p'); do
    unset "$name"
done
if [ -z "${LATENTWIRE_SENDER_ENCODER:-}${LATENTWIRE_ENCODER:-}" ] && [ -f /models/encoder/encoder.safetensors ]; then
    export LATENTWIRE_ENCODER=/models/encoder/encoder.safetensors
fi
if [ -z "${LATENTWIRE_RECEIVER_DECODER:-}${LATENTWIRE_DECODER:-}" ] && [ -f /models/decoder/decoder.safetensors ]; then
    export LATENTWIRE_DECODER=/models/decoder/decoder.safetensors
fi
exec "$@"
