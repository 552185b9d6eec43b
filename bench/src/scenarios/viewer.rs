//! The live event viewer in a real browser: the time from publishing an
//! event to its row on the page, at a fixed rate. `web/test/viewer.ts`
//! drives headless Chromium (Debian's `chromium`, through playwright-core):
//! it opens the page a gateway started with `--viewer` serves, subscribes
//! to the topic from the latest event, publishes the events itself (native
//! gRPC) and times each from its publish call to its row appearing.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

use crate::tally::{Latency, Side, Tally};

/// How long the driver may take to start the browser and open the page.
const BROWSER_STARTUP: Duration = Duration::from_secs(60);

/// Where `web/` is: the benchmark runs from the repository.
fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Installs web/'s libraries from its lock file when they are missing (a
/// plain clone has none): the driver runs on them, and on Chromium.
async fn install_web_libraries() -> Result<(), String> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if std::env::var_os("CHROMIUM").is_none()
        && !on_path("chromium")
        && !on_path("chromium-browser")
    {
        return Err(
            "the viewer scenario needs Chromium: run scripts/system-packages.sh, or set CHROMIUM to a browser"
                .into(),
        );
    }
    if web_dir().join("node_modules/tsx").is_dir() {
        return Ok(());
    }
    eprintln!("installing web/'s libraries from web/package-lock.json (npm ci)");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(web_dir())
        .status()
        .await;
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`npm ci` in web/ failed ({status}): run it there, then the benchmark again"
        )),
        Err(error) => Err(format!(
            "cannot run npm ({error}): install Node.js and run `npm ci` in web/, then the benchmark again"
        )),
    }
}

/// The browser driver, one command a line.
struct Driver {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    /// Sends `command` and returns the first JSON line with the key
    /// `answer`, within `patience`; a line saying the command failed is an
    /// error.
    async fn run(
        &mut self,
        command: &str,
        answer: &str,
        patience: Duration,
    ) -> Result<serde_json::Value, String> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|error| format!("the browser driver stopped taking commands: {error}"))?;
        let wait = async {
            while let Some(line) = self.lines.next_line().await.map_err(|e| e.to_string())? {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if value.get(answer).is_some() {
                    return Ok(value);
                }
                if value.get("failed").is_some() {
                    return Err(format!("the browser driver: {line}"));
                }
            }
            Err("the browser driver ended".to_owned())
        };
        tokio::time::timeout(patience, wait)
            .await
            .map_err(|_| format!("the browser driver did not answer {command:?} in {patience:?}"))?
    }
}

/// The page's publish-to-display latency of `events` events at `rate` a
/// second on `topic`, through the gateway at `url` (which serves the
/// viewer); every event must appear.
pub(crate) async fn page_latency(
    url: &str,
    topic: &str,
    events: u64,
    rate: u64,
    patience: Duration,
) -> Result<Side, String> {
    install_web_libraries().await?;
    let mut child = Command::new("npx")
        .args(["tsx", "test/viewer.ts"])
        .current_dir(web_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            format!("cannot start the browser driver (npx tsx test/viewer.ts in web/): {error}")
        })?;
    let mut driver = Driver {
        stdin: child.stdin.take().ok_or("no stdin")?,
        lines: BufReader::new(child.stdout.take().ok_or("no stdout")?).lines(),
    };
    // Starting Node and Chromium takes seconds of its own, whatever
    // --patience says about events.
    let startup = patience.max(BROWSER_STARTUP);
    driver
        .run(&format!("open {url}/"), "opened", startup)
        .await?;
    driver
        .run(&format!("subscribe {topic} latest"), "subscribed", startup)
        .await?;
    let publishing = Duration::from_secs_f64(events as f64 / rate.max(1) as f64);
    let measured = driver
        .run(
            &format!("latency {topic} {url} {events} {rate}"),
            "latency",
            patience + publishing,
        )
        .await?;
    let _ = driver.run("quit", "quit", Duration::from_secs(10)).await;
    let _ = child.wait().await;
    let figures = &measured["latency"];
    let number = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
    let shown = figures["shown"].as_u64().unwrap_or(0).min(events);
    let mut tally = Tally::new(events);
    for index in 0..shown {
        tally.mark(index);
    }
    if shown < events {
        tally.error(format!("{} events never shown on the page", events - shown));
    }
    let latency = Latency {
        p50: number("p50_ms"),
        p99: number("p99_ms"),
        max: number("max_ms"),
    };
    Ok((latency, tally))
}
