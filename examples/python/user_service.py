"""A "user service" that publishes user-registered events through the
event gateway, the way a Python microservice would with a Kafka client:
JSON events keyed by user id, so that one user's events keep their order."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "gen"))

from google.protobuf import struct_pb2  # noqa: E402

from eventgateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
import connection  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    connection.add_arguments(parser)
    parser.add_argument("--topic", default="user-registered")
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()

    with connection.open_channel(args) as channel:
        gateway = gateway_pb2_grpc.EventGatewayStub(channel)
        for user_id in range(1, args.count + 1):
            body = struct_pb2.Struct()
            body.update({"user_id": user_id, "email": f"user{user_id}@example.com", "name": f"User {user_id}"})
            answer = gateway.PublishEvent(
                gateway_pb2.PublishEventRequest(
                    topic=args.topic,
                    key=str(user_id),
                    event=gateway_pb2.Event(type="user.registered", source="/user-service", json=body),
                ),
                timeout=10,
                metadata=connection.metadata(args),
            )
            print(f"published user {user_id} as {answer.event_id} -> partition {answer.partition} offset {answer.offset}", flush=True)


if __name__ == "__main__":
    main()
