"""Reads deliveries of a topic through the event gateway with a generated
Python client at its default limits, and prints one line per delivery:
offset, payload kind, payload size and, for text, the text itself. Fails
(exit code 1) if any delivery cannot be received."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python", "gen"))

import grpc  # noqa: E402

from eventgateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()

    with grpc.insecure_channel(args.gateway) as channel:
        gateway = gateway_pb2_grpc.EventGatewayStub(channel)
        stream = gateway.Subscribe(
            gateway_pb2.SubscribeRequest(
                topics=[args.topic], start_from=gateway_pb2.START_FROM_EARLIEST
            ),
            timeout=60,
        )
        received = 0
        for message in stream:
            if message.WhichOneof("kind") != "delivery":
                continue
            delivery = message.delivery
            event = delivery.event
            kind = event.WhichOneof("data") or "none"
            if kind == "text":
                detail = event.text
            elif kind == "json":
                detail = str(event.json)
            else:
                detail = event.attributes.get("eventgateway-omitted", "")
            size = len(detail) if kind != "binary" else len(event.binary)
            print(f"{delivery.offset} {kind} {size} {detail[:200]!r}", flush=True)
            received += 1
            if received >= args.count:
                stream.cancel()
                break


if __name__ == "__main__":
    main()
