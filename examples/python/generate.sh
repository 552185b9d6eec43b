#!/usr/bin/env bash
# Generates the Python client of the event-gateway API from proto/ into gen/
# (with the HTTP annotations it imports, vendored under proto/google/api).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p gen
python3 -m grpc_tools.protoc -I ../../proto --python_out=gen --grpc_python_out=gen \
  eventgateway/v1/gateway.proto google/api/annotations.proto google/api/http.proto
