//! Starting a tansu broker (a Kafka-protocol broker) process on loopback:
//! the real broker of the test suites and of the benchmark.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu version scripts/test.sh installs.
pub const VERSION: &str = "0.6.0";

/// Where the tansu binary is: `TANSU_BIN`, the cache scripts/test.sh fills
/// (`~/.cache/event-gateway`), or PATH.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Ok(path.into());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached =
            PathBuf::from(home).join(format!(".cache/event-gateway/tansu-{VERSION}/bin/tansu"));
        if cached.exists() {
            return Ok(cached);
        }
    }
    if let Ok(output) = Command::new("which").arg("tansu").output() {
        if output.status.success() {
            return Ok(PathBuf::from(
                String::from_utf8_lossy(&output.stdout).trim(),
            ));
        }
    }
    Err(
        "the tansu broker is missing: scripts/test.sh installs it into ~/.cache/event-gateway; \
         or set TANSU_BIN, or pass --brokers HOST:PORT"
            .into(),
    )
}

/// A free TCP port on loopback, never one this process was given before:
/// the port is free when asked for, and the system may hand it out again
/// before the process that is to listen on it has started.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Where a broker's log goes: a file named after its port in the temp dir.
pub fn log_file(port: u16) -> (PathBuf, Stdio) {
    let path = std::env::temp_dir().join(format!("event-gateway-tansu-{port}.log"));
    let stdio = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_or_else(|_| Stdio::null(), Stdio::from);
    (path, stdio)
}

/// How a broker listens: where it tells clients to connect (`host:port`;
/// itself when `None`), and whether clients must authenticate (SASL SCRAM,
/// users made with [`create_user`]).
#[derive(Debug, Clone, Default)]
pub struct Listening {
    /// The advertised `host:port`.
    pub advertised: Option<String>,
    /// Whether clients must authenticate.
    pub authentication: bool,
}

/// Starts tansu on 127.0.0.1:`port` with the `storage` engine URL
/// (`memory://tansu/`, `sqlite:///file`), listening as `listening` says,
/// its log in [`log_file`].
pub fn spawn(port: u16, storage: &str, listening: &Listening) -> Result<Child, String> {
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = listening
        .advertised
        .as_ref()
        .map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
    Command::new(binary()?)
        .args([
            "broker",
            "--kafka-listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(listening.authentication.then_some("--authentication"))
        .args(["--storage-engine", storage])
        .env(
            "RUST_LOG",
            std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(log_file(port).1)
        .stderr(log_file(port).1)
        .spawn()
        .map_err(|error| format!("cannot start tansu: {error}"))
}

/// Creates a SCRAM-SHA-512 user on the broker at 127.0.0.1:`port` (one
/// that does not require authentication yet).
pub fn create_user(port: u16, name: &str, password: &str) -> Result<(), String> {
    let status = Command::new(binary()?)
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["--mechanism", "scram512", name, password])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run tansu user create: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("tansu user create {name} failed: {status}"))
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits (blocking) until 127.0.0.1:`port` accepts connections, at most `patience`.
pub fn wait_accepting(port: u16, patience: Duration) -> Result<(), String> {
    let until = Instant::now() + patience;
    while !accepts(port) {
        if Instant::now() > until {
            return Err(format!(
                "nothing accepts connections on port {port} after {patience:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
