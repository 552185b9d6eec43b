// Drives the live event viewer in a real browser (Debian's Chromium,
// headless, through playwright-core) for the test suite, one command a
// line on stdin, one JSON line on stdout per command done:
//   open URL                  open the viewer
//   subscribe TOPIC FROM      subscribe (FROM: latest or earliest) and wait until live
//   expect MARKER             wait until an event whose payload holds MARKER is shown
//   pause | resume            press Pause / Resume
//   held N                    wait until N events are held while paused
//   absent MARKER             say whether MARKER is shown now
//   publish TOPIC KEY MARKER  publish {"marker": MARKER} from the page's form
//   serve PORT                serve a blank page at http://127.0.0.1:PORT/ (another origin)
//   cross PAGE_URL GATEWAY    from a page at PAGE_URL, call GATEWAY's Health/Check with gRPC-Web
//   crosspost PAGE_URL URL CONTENT_TYPE BODY  from a page at PAGE_URL, POST BODY to URL as
//                             a simple cross-site request would (no-cors: a form, a
//                             beacon): whether the browser sent it
//   settle GATEWAY ID ACK_ID  from GATEWAY's own page (its viewer), ack ACK_ID of
//                             subscription ID with a gRPC-Web Settle call: its outcome
//   reader PAGE_URL TOKEN CODE WANT  on a page at PAGE_URL, run CODE (base64 of
//                             JavaScript, with `token` set to TOKEN) and wait until
//                             it logs a line containing WANT: that line
//   latency TOPIC GATEWAY N RATE  with the page subscribed to TOPIC, publish N
//                             events at RATE a second through GATEWAY (native
//                             gRPC) and time each from its publish call to its
//                             row on the page: p50, p99, max in ms
//   screenshot PATH           save what the page shows
//   quit
// CHROMIUM names the browser (default: chromium on PATH).
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { chromium, type Page } from "playwright-core";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  EventGateway,
  SettleOutcome,
  SettleRequestSchema,
  SettleResponseSchema,
} from "../src/gen/eventgateway/v1/gateway_pb.js";

const WAIT_MS = 30_000;
const say = (value: object) => console.log(JSON.stringify(value));

function browserPath(): string {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"]).toString().trim();
}

const browser = await chromium.launch({
  executablePath: browserPath(),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
});
const page: Page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
page.setDefaultTimeout(WAIT_MS);
page.on("pageerror", (error) => say({ pageerror: String(error) }));
// What went wrong on the page: script errors, console errors, and answers
// of 400 or more (a missing favicon is one); the `errors` command tells.
const errors: string[] = [];
page.on("pageerror", (error) => errors.push(String(error)));
page.on("console", (message) => {
  if (message.type() === "error") errors.push(message.text());
});
page.on("response", (response) => {
  if (response.status() >= 400) errors.push(`${response.status()} ${response.url()}`);
});

/** Now in milliseconds since the epoch, below the millisecond (the page's
 * clock reads the same way). */
const now = () => performance.timeOrigin + performance.now();

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] : Number.NaN;
}

async function latency(topic: string, gateway: string, events: number, rate: number) {
  const run = `latency-${Date.now()}`;
  await page.evaluate(() => {
    const shown = new Map<string, number>();
    (window as unknown as { shown: Map<string, number> }).shown = shown;
    new MutationObserver((mutations) => {
      const at = performance.timeOrigin + performance.now();
      for (const mutation of mutations) {
        for (const node of mutation.addedNodes) {
          const marker = /"marker": "([^"]+)"/.exec((node as HTMLElement).textContent ?? "")?.[1];
          if (marker && !shown.has(marker)) shown.set(marker, at);
        }
      }
    }).observe(document.querySelector("#events tbody") as Node, { childList: true });
  });
  const client = createClient(EventGateway, createGrpcTransport({ baseUrl: gateway }));
  const sent = new Map<string, number>();
  const calls: Promise<unknown>[] = [];
  const start = now() + 50;
  for (let i = 0; i < events; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 0) await new Promise((done) => setTimeout(done, wait));
    const marker = `${run}-${i}`;
    sent.set(marker, now());
    calls.push(
      client.publishEvent({
        topic,
        key: `k${i}`,
        event: { type: "bench.viewer", source: "/bench", data: { case: "json", value: { marker } } },
      }),
    );
  }
  await Promise.all(calls);
  await page.waitForFunction(
    (n) => (window as unknown as { shown: Map<string, number> }).shown.size >= n,
    events,
  ).catch(() => undefined);
  const shown: [string, number][] = await page.evaluate(() => [
    ...(window as unknown as { shown: Map<string, number> }).shown.entries(),
  ]);
  const times = new Map(shown);
  const latencies = [...sent]
    .filter(([marker]) => times.has(marker))
    .map(([marker, at]) => (times.get(marker) as number) - at)
    .sort((a, b) => a - b);
  say({
    latency: {
      events,
      shown: latencies.length,
      p50_ms: percentile(latencies, 0.5),
      p99_ms: percentile(latencies, 0.99),
      max_ms: latencies.at(-1) ?? Number.NaN,
    },
  });
}

const rowWith = (marker: string) => page.locator("#events tbody tr", { hasText: marker });

async function run(words: string[]) {
  const [command, ...args] = words;
  switch (command) {
    case "open":
      await page.goto(args[0]);
      return say({ opened: await page.title() });
    case "subscribe":
      await page.fill("#subscribe [name=topics]", args[0]);
      await page.selectOption("#subscribe [name=from]", args[1] ?? "latest");
      await page.click("#subscribe button[type=submit]");
      await page.waitForSelector("#status[data-state=live]");
      return say({ subscribed: await page.textContent("#status") });
    case "expect": {
      const row = rowWith(args[0]).first();
      await row.waitFor();
      return say({
        seen: args[0],
        partition: Number(await row.getAttribute("data-partition")),
        offset: await row.getAttribute("data-offset"),
        at: Date.now(),
      });
    }
    case "pause":
    case "resume":
      await page.click("#pause");
      return say({ [command]: await page.getAttribute("#status", "data-state") });
    case "held":
      await page.waitForFunction(
        (n) => Number.parseInt(document.getElementById("held")?.textContent ?? "0", 10) >= n,
        Number(args[0]),
      );
      return say({ held: await page.textContent("#held") });
    case "absent":
      return say({ absent: args[0], shown: await rowWith(args[0]).count() });
    case "publish":
      await page.fill("#publish [name=topic]", args[0]);
      await page.fill("#publish [name=key]", args[1]);
      await page.fill("#publish [name=payload]", JSON.stringify({ marker: args[2] }));
      await page.click("#publish button[type=submit]");
      await page.waitForSelector("#published[data-offset]");
      return say({
        published: {
          partition: Number(await page.getAttribute("#published", "data-partition")),
          offset: await page.getAttribute("#published", "data-offset"),
        },
      });
    case "serve": {
      const server = createServer((_, response) => {
        response.writeHead(200, { "content-type": "text/html" });
        response.end("<!doctype html><title>another site</title>");
      });
      await new Promise<void>((done) => server.listen(Number(args[0]), "127.0.0.1", done));
      server.unref();
      return say({ serving: Number(args[0]) });
    }
    case "cross": {
      const other = await browser.newPage();
      await other.goto(args[0]);
      const outcome = await other.evaluate(async (gateway) => {
        try {
          const response = await fetch(`${gateway}/grpc.health.v1.Health/Check`, {
            method: "POST",
            headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
            body: new Uint8Array([0, 0, 0, 0, 0]),
          });
          await response.arrayBuffer();
          return { ok: response.ok, status: response.status };
        } catch (error) {
          return { ok: false, error: String(error) };
        }
      }, args[1]);
      await other.close();
      return say({ cross: args[0], ...outcome });
    }
    case "crosspost": {
      const other = await browser.newPage();
      await other.goto(args[0]);
      const sent = await other.evaluate(
        async ([url, type, body]) => {
          try {
            // As a hostile page may: no preflight, the answer unreadable.
            await fetch(url, {
              method: "POST",
              mode: "no-cors",
              headers: { "content-type": type, "ce-specversion": "1.0", "ce-id": "x", "ce-source": "/x", "ce-type": "x" },
              body,
            });
            return true;
          } catch {
            return false;
          }
        },
        [args[1], args[2], args[3]],
      );
      await other.close();
      return say({ crosspost: args[2], sent });
    }
    case "settle": {
      // The request is encoded here, sent by the browser's fetch as
      // gRPC-Web (a frame: flag 0, length, message), and its answer's
      // first frame decoded here.
      const message = toBinary(SettleRequestSchema, create(SettleRequestSchema, { subscriptionId: args[1], acks: [args[2]] }));
      const other = await browser.newPage();
      await other.goto(args[0]);
      const answer = await other.evaluate(async (body) => {
        const framed = new Uint8Array(5 + body.length);
        new DataView(framed.buffer).setUint32(1, body.length);
        framed.set(body, 5);
        const response = await fetch("/eventgateway.v1.EventGateway/Settle", {
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
          body: framed,
        });
        return { status: response.status, bytes: [...new Uint8Array(await response.arrayBuffer())] };
      }, [...message]);
      await other.close();
      const bytes = new Uint8Array(answer.bytes);
      if (bytes.length < 5 || bytes[0] !== 0) {
        return say({ settle: { http: answer.status, trailer: new TextDecoder().decode(bytes.slice(5)) } });
      }
      const length = new DataView(bytes.buffer).getUint32(1);
      const settled = fromBinary(SettleResponseSchema, bytes.slice(5, 5 + length));
      const result = settled.results[0];
      return say({ settle: { outcome: SettleOutcome[result.outcome], detail: result.detail } });
    }
    case "reader": {
      // The README's fetch-based stream reader, as a page would run it.
      const other = await browser.newPage();
      await other.goto(args[0]);
      const logged = new Promise<string>((resolve) =>
        other.on("console", (message) => {
          if (message.text().includes(args[3])) resolve(message.text());
        }),
      );
      const code = Buffer.from(args[2], "base64").toString("utf8");
      other.evaluate(`(async (token) => { ${code} })(${JSON.stringify(args[1])})`).catch(() => {});
      const line = await Promise.race([
        logged,
        new Promise<string>((resolve) => setTimeout(() => resolve(""), WAIT_MS)),
      ]);
      await other.close();
      return say({ reader: line });
    }
    case "latency":
      return latency(args[0], args[1], Number(args[2]), Number(args[3]));
    case "errors":
      return say({ errors });
    case "screenshot":
      await page.screenshot({ path: args[0] });
      return say({ screenshot: args[0] });
    case "quit":
      await browser.close();
      say({ quit: true });
      process.exit(0);
    default:
      return say({ unknown: command });
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const words = line.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) continue;
  try {
    await run(words);
  } catch (error) {
    say({ failed: words[0], error: String(error) });
  }
}
await browser.close();
