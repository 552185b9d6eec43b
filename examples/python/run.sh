#!/usr/bin/env bash
# One command: installs the client libraries, generates the client, publishes
# three registrations through the gateway and consumes them with MANUAL acks.
# GATEWAY (default localhost:50051) names the gateway.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install --quiet -r requirements.txt
./generate.sh
gateway="${GATEWAY:-localhost:50051}"
python3 user_service.py --gateway "$gateway" --count 3
python3 consumer.py --gateway "$gateway" --group welcome-demo --count 3
