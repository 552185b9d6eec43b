#!/usr/bin/env bash
# Generates the OpenAPI document of the plain HTTP API, docs/openapi.json
# (or the path given): protoc-gen-openapiv2 (grpc-gateway's generator,
# built from the Go module proxy into ~/.cache/event-gateway) reads the
# google.api.http annotations of proto/ through buf, and scripts/openapi.py
# carries its output to OpenAPI 3.1 and merges docs/openapi.overlay.json
# over it. The suite checks that the committed document is this script's
# output; the gateway serves it at /v1/openapi.json.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-docs/openapi.json}"
cache="${EVENT_GATEWAY_CACHE:-$HOME/.cache/event-gateway}"
version="v2.34.0"
plugin_dir="$cache/protoc-gen-openapiv2-$version"
plugin="$plugin_dir/protoc-gen-openapiv2"
if ! command -v go >/dev/null 2>&1; then
  PATH="/usr/local/go/bin:$PATH"
fi
if [ ! -x "$plugin" ]; then
  echo "== building protoc-gen-openapiv2 $version (Go module proxy)" >&2
  GOBIN="$plugin_dir" go install "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$version"
fi
buf="web/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  buf="$cache/buf-1.75.0/node_modules/.bin/buf"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/buf.gen.yaml" <<YAML
version: v2
plugins:
  - local: $plugin
    out: $work/out
    opt:
      - output_format=json
      - Meventgateway/v1/gateway.proto=example.invalid/eventgateway/v1
YAML
"$buf" generate proto --template "$work/buf.gen.yaml" --path proto/eventgateway
python3 scripts/openapi.py "$work/out/eventgateway/v1/gateway.swagger.json" \
  docs/openapi.overlay.json "$out"
