"""A consumer of user-registered events through the event gateway, as a
member of a consumer group with MANUAL acknowledgements: each event is
acknowledged after it was handled, so none is lost if this process dies."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "gen"))

from google.protobuf import json_format  # noqa: E402

from eventgateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
import connection  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    connection.add_arguments(parser)
    parser.add_argument("--topic", default="user-registered")
    parser.add_argument("--group", default="python-example")
    parser.add_argument("--count", type=int, default=3, help="stop after this many events")
    args = parser.parse_args()

    with connection.open_channel(args) as channel:
        gateway = gateway_pb2_grpc.EventGatewayStub(channel)
        stream = gateway.Subscribe(
            gateway_pb2.SubscribeRequest(
                topics=[args.topic],
                group=args.group,
                start_from=gateway_pb2.START_FROM_EARLIEST,
                ack_mode=gateway_pb2.ACK_MODE_MANUAL,
            ),
            metadata=connection.metadata(args),
        )
        subscription_id = None
        handled = 0
        for message in stream:
            kind = message.WhichOneof("kind")
            if kind == "subscribed":
                subscription_id = message.subscribed.subscription_id
                print(f"subscribed as {subscription_id}", flush=True)
            elif kind == "delivery":
                delivery = message.delivery
                user = json_format.MessageToDict(delivery.event.json)
                print(
                    f"received user {int(user['user_id'])} <{user['email']}> as {delivery.event.id} attempt {delivery.attempt}",
                    flush=True,
                )
                gateway.Acknowledge(
                    gateway_pb2.AcknowledgeRequest(subscription_id=subscription_id, ack_ids=[delivery.ack_id]),
                    timeout=10,
                    metadata=connection.metadata(args),
                )
                handled += 1
                if handled >= args.count:
                    stream.cancel()
                    break


if __name__ == "__main__":
    main()
