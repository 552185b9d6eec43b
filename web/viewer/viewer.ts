// The live event viewer: subscribes to topics through the gateway that
// serves this page (gRPC-Web, same origin), shows events as they arrive,
// can pause, and publishes test events. All text goes into the page as
// text, never as markup.
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  AckMode,
  EventGateway,
  StartFrom,
  type Delivery,
  type Event,
} from "../src/gen/eventgateway/v1/gateway_pb.js";

/** Rows kept on the page; older ones are removed. */
const MAX_ROWS = 500;
/** Events held while paused; beyond it the oldest held are dropped. */
const MAX_HELD = 10_000;

const client = createClient(
  EventGateway,
  createGrpcWebTransport({ baseUrl: window.location.origin }),
);

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const subscribeForm = element<HTMLFormElement>("subscribe");
const publishForm = element<HTMLFormElement>("publish");
const status = element<HTMLElement>("status");
const stopButton = element<HTMLButtonElement>("stop");
const pauseButton = element<HTMLButtonElement>("pause");
const published = element<HTMLOutputElement>("published");
const rows = document.querySelector("#events tbody") as HTMLTableSectionElement;
const shown = element<HTMLElement>("shown");
const heldCount = element<HTMLElement>("held");

let running: AbortController | undefined;
let paused = false;
let held: Delivery[] = [];
let dropped = 0;

function setStatus(state: "idle" | "live" | "paused" | "error", text: string) {
  status.dataset.state = state;
  status.textContent = text;
}

function headers(): HeadersInit {
  const token = (subscribeForm.elements.namedItem("token") as HTMLInputElement).value.trim();
  return token ? { authorization: `Bearer ${token}` } : {};
}

function cell(text: string, className?: string): HTMLTableCellElement {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function timeOf(time: Timestamp | undefined): string {
  if (!time) return "";
  // A Kafka timestamp is any 64-bit number of milliseconds; a Date holds
  // only ±8.64e15 of them: beyond, the time is shown as it came.
  const date = timestampDate(time);
  return Number.isNaN(date.getTime()) ? `${time.seconds} s since 1970` : date.toISOString();
}

function payloadOf(event: Event | undefined): string {
  const data = event?.data;
  switch (data?.case) {
    case "json":
      return JSON.stringify(data.value, null, 2);
    case "text":
      return data.value;
    case "binary": {
      const hex = Array.from(data.value.slice(0, 64), (b) => b.toString(16).padStart(2, "0"));
      return `${data.value.length} bytes: ${hex.join(" ")}${data.value.length > 64 ? " ..." : ""}`;
    }
    default:
      return "";
  }
}

/** Shows a delivery; one that cannot be shown is shown as such, and the
 * stream goes on. */
function show(delivery: Delivery) {
  try {
    showRow(delivery);
  } catch (error) {
    const row = document.createElement("tr");
    row.append(cell(`cannot show ${delivery.topic} ${delivery.partition}/${delivery.offset}: ${String(error)}`));
    rows.prepend(row);
  }
}

function showRow(delivery: Delivery) {
  const event = delivery.event;
  const row = document.createElement("tr");
  row.dataset.topic = delivery.topic;
  row.dataset.partition = String(delivery.partition);
  row.dataset.offset = delivery.offset.toString();
  const payload = document.createElement("td");
  const pre = document.createElement("pre");
  pre.textContent = payloadOf(event);
  payload.append(pre);
  row.append(
    cell(timeOf(event?.time), "time"),
    cell(event?.type ?? ""),
    cell(event?.source ?? ""),
    cell(delivery.key),
    cell(`${delivery.topic} ${delivery.partition}/${delivery.offset}`, "where"),
    payload,
  );
  rows.prepend(row);
  while (rows.rows.length > MAX_ROWS) rows.deleteRow(rows.rows.length - 1);
  shown.textContent = String(Number(shown.textContent) + 1);
}

function hold(delivery: Delivery) {
  held.push(delivery);
  if (held.length > MAX_HELD) {
    held.shift();
    dropped += 1;
  }
  heldCount.textContent = dropped ? `${held.length} (${dropped} dropped)` : String(held.length);
}

function startRequest(form: HTMLFormElement) {
  const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value;
  const topics = value("topics")
    .split(",")
    .map((topic) => topic.trim())
    .filter(Boolean);
  const from = value("from");
  const startFrom =
    from === "earliest" ? StartFrom.EARLIEST : from === "timestamp" ? StartFrom.TIMESTAMP : StartFrom.LATEST;
  const startTime =
    startFrom === StartFrom.TIMESTAMP && value("time") ? timestampFromDate(new Date(value("time"))) : undefined;
  return { topics, startFrom, startTime, ackMode: AckMode.AUTO };
}

async function subscribe(request: ReturnType<typeof startRequest>) {
  running?.abort();
  const controller = new AbortController();
  running = controller;
  stopButton.disabled = false;
  pauseButton.disabled = false;
  setStatus("idle", "subscribing...");
  try {
    for await (const message of client.subscribe(request, { signal: controller.signal, headers: headers() })) {
      if (message.kind.case === "subscribed") {
        setStatus(paused ? "paused" : "live", `subscribed to ${request.topics.join(", ")}`);
      } else if (message.kind.case === "delivery") {
        if (paused) hold(message.kind.value);
        else show(message.kind.value);
      }
    }
    if (running === controller) setStatus("idle", "the stream ended");
  } catch (error) {
    if (!controller.signal.aborted) setStatus("error", ConnectError.from(error).message);
  } finally {
    if (running === controller) {
      running = undefined;
      stopButton.disabled = true;
      pauseButton.disabled = true;
    }
  }
}

subscribeForm.addEventListener("submit", (event) => {
  event.preventDefault();
  void subscribe(startRequest(subscribeForm));
});

stopButton.addEventListener("click", () => {
  running?.abort();
  running = undefined;
  stopButton.disabled = true;
  pauseButton.disabled = true;
  setStatus("idle", "not subscribed");
});

pauseButton.addEventListener("click", () => {
  paused = !paused;
  pauseButton.textContent = paused ? "Resume" : "Pause";
  pauseButton.setAttribute("aria-pressed", String(paused));
  if (!paused) {
    for (const delivery of held) show(delivery);
    held = [];
    dropped = 0;
    heldCount.textContent = "0";
  }
  if (running) setStatus(paused ? "paused" : "live", paused ? "paused" : "live");
});

publishForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = (name: string) => (publishForm.elements.namedItem(name) as HTMLInputElement).value;
  const text = value("payload");
  let data: Event["data"];
  try {
    data = { case: "json", value: JSON.parse(text) };
  } catch {
    data = { case: "text", value: text };
  }
  if (data.case === "json" && (typeof data.value !== "object" || data.value === null || Array.isArray(data.value))) {
    data = { case: "text", value: text };
  }
  published.textContent = "publishing...";
  delete published.dataset.partition;
  delete published.dataset.offset;
  try {
    const stored = await client.publishEvent(
      { topic: value("topic").trim(), key: value("key"), event: { type: value("type"), source: "/viewer", data } },
      { headers: headers() },
    );
    published.dataset.partition = String(stored.partition);
    published.dataset.offset = stored.offset.toString();
    published.textContent = `stored: ${stored.topic} ${stored.partition}/${stored.offset}`;
  } catch (error) {
    published.textContent = `refused: ${ConnectError.from(error).message}`;
  }
});
