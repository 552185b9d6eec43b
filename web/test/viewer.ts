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
//   screenshot PATH           save what the page shows
//   quit
// CHROMIUM names the browser (default: chromium on PATH).
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { chromium, type Page } from "playwright-core";

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
