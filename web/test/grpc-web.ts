// A gRPC-Web client generated from proto/ (Connect-ES) against a running
// gateway, under Node: a unary call, a server stream and an error status.
// Prints one JSON line per step for the test that runs it:
//   tsx test/grpc-web.ts http://127.0.0.1:50051 TOPIC
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { AckMode, EventGateway, StartFrom } from "../src/gen/eventgateway/v1/gateway_pb.js";

const [baseUrl, topic] = process.argv.slice(2);
if (!baseUrl || !topic) {
  console.error("usage: grpc-web.ts BASE_URL TOPIC");
  process.exit(2);
}
// HTTP/1.1, as a browser's fetch speaks gRPC-Web to a plain-text server.
const transport = createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
const client = createClient(EventGateway, transport);
const say = (step: string, value: unknown) =>
  console.log(JSON.stringify({ [step]: value }, (_, v) => (typeof v === "bigint" ? v.toString() : v)));

const stored = await client.publishEvent({
  topic,
  key: "node-web",
  event: { type: "test.grpc-web", source: "/node", data: { case: "json", value: { n: 41 } } },
});
say("published", { partition: stored.partition, offset: stored.offset, id: stored.eventId });

const stop = new AbortController();
for await (const message of client.subscribe(
  { topics: [topic], startFrom: StartFrom.EARLIEST, ackMode: AckMode.AUTO },
  { signal: stop.signal, timeoutMs: 30_000 },
)) {
  if (message.kind.case !== "delivery") continue;
  const delivery = message.kind.value;
  const data = delivery.event?.data;
  say("delivered", {
    partition: delivery.partition,
    offset: delivery.offset,
    key: delivery.key,
    n: data?.case === "json" ? data.value.n : null,
  });
  stop.abort();
  break;
}

try {
  await client.publishEvent({ topic: "bad topic", event: { data: { case: "text", value: "x" } } });
  say("error", null);
} catch (error) {
  const refused = ConnectError.from(error);
  say("error", { code: Code[refused.code], message: refused.rawMessage });
}
