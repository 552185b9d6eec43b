#!/usr/bin/env bash
# Runs the whole system locally, no Docker: the gateway on an embedded,
# in-memory Kafka, and the notifier writing welcome emails as .eml files into
# ./outbox. Ctrl-C stops both.
#
# Environment (all optional): GATEWAY_ADDR (default 127.0.0.1:50051),
# OUTBOX_DIR (./outbox), STATE_DIR (./state); GATEWAY_BIN and NOTIFIER_BIN
# to run given binaries instead of building them (release profile).
set -euo pipefail
cd "$(dirname "$0")/.."

addr="${GATEWAY_ADDR:-127.0.0.1:50051}"
if [ -z "${GATEWAY_BIN:-}" ] || [ -z "${NOTIFIER_BIN:-}" ]; then
  cargo build --release -p gateway -p notifier
  target="${CARGO_TARGET_DIR:-target}"
  GATEWAY_BIN="$target/release/gateway"
  NOTIFIER_BIN="$target/release/notifier"
fi

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM

GATEWAY_ADDR="$addr" "$GATEWAY_BIN" &
pids+=($!)
# The notifier reconnects until the gateway answers.
GATEWAY_URL="http://$addr" OUTBOX_DIR="${OUTBOX_DIR:-./outbox}" STATE_DIR="${STATE_DIR:-./state}" \
  "$NOTIFIER_BIN" &
pids+=($!)
echo "gateway on $addr, notifier writing emails to ${OUTBOX_DIR:-./outbox}; Ctrl-C stops both"
# Either one stopping on its own is a failure: stop the other too.
wait -n "${pids[@]}" || true
echo "a service stopped on its own; stopping the other" >&2
stop
exit 1
