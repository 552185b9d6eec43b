"""How the examples reach the gateway: plaintext, or TLS with a CA file
(--ca), a client certificate for mutual TLS (--cert, --key), and a bearer
token (--token-file) sent as `authorization: Bearer <token>` on every call."""
import grpc


def add_arguments(parser):
    parser.add_argument("--gateway", default="localhost:50051")
    parser.add_argument("--ca", help="CA certificate (PEM): connect over TLS")
    parser.add_argument("--cert", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--key", help="client private key (PEM), for mutual TLS")
    parser.add_argument("--token-file", help="file holding a bearer token (JWT)")


def _read(path):
    with open(path, "rb") as file:
        return file.read()


def open_channel(args):
    if not args.ca:
        return grpc.insecure_channel(args.gateway)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(args.ca),
        private_key=_read(args.key) if args.key else None,
        certificate_chain=_read(args.cert) if args.cert else None,
    )
    return grpc.secure_channel(args.gateway, credentials)


def metadata(args):
    if not args.token_file:
        return ()
    token = _read(args.token_file).decode().strip()
    return (("authorization", f"Bearer {token}"),)
