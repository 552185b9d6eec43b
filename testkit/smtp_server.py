"""A real SMTP server for the notifier's tests (aiosmtpd).

Stores each accepted message as an .eml file in --dir, with the envelope
recipients in an X-Envelope-To header, and answers 550 for the recipients
given with --reject. For a recipient given with --hold it answers only once
a file "release-<address>" exists in --dir, and meanwhile leaves a file
"holding-<address>-<n>" there for each such recipient it holds (a slow
server, as the tests see it). Prints "ready" once it listens.
"""
import argparse
import asyncio
import os
import uuid

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out_dir, rejected, held):
        self.out_dir = out_dir
        self.rejected = set(rejected)
        self.held = set(held)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rejected:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if address in self.held:
            marker = os.path.join(self.out_dir, "holding-%s-%s" % (address, uuid.uuid4().hex))
            open(marker, "w").close()
            release = os.path.join(self.out_dir, "release-" + address)
            while not os.path.exists(release):
                await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        tmp = os.path.join(self.out_dir, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.out_dir, name + ".eml"))
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--hold", action="append", default=[])
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Handler(args.dir, args.reject, args.hold), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
