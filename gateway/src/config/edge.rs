//! The listener's flags: where it listens, what a connection and a call
//! may hold before any RPC runs, gRPC-Web origins, the viewer and the
//! metrics endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// The least `--max-header-bytes`: a token's 16 KiB and the rest of a
/// call's metadata.
const MIN_HEADER_BYTES: u32 = 20 * 1024;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listener")]
pub struct EdgeFlags {
    /// Address the gRPC server listens on.
    #[arg(long = "listen", env = "GATEWAY_ADDR", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Web origins whose pages may call the gateway with gRPC-Web
    /// (comma-separated, each scheme://host[:port], or * for any): CORS.
    /// None by default, so browsers keep pages of other origins out;
    /// gRPC-Web clients outside a browser need no origin.
    #[arg(long, env = "GRPC_WEB_ORIGINS", value_delimiter = ',', value_parser = web_origin)]
    pub grpc_web_origins: Vec<String>,

    /// Serves the live event viewer, a web page that subscribes, shows
    /// events as they arrive and publishes test events, at / on the
    /// gateway's port (open http://HOST:PORT/). Its calls are gRPC-Web
    /// calls like any other: tokens and the policy apply.
    #[arg(long, env = "VIEWER")]
    pub viewer: bool,

    /// Most client connections at once; a connection beyond it is closed as
    /// soon as it is accepted (and logged).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most client connections from one address open at once (Kafka's
    /// `max.connections.per.ip`); more are closed as soon as accepted.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,

    /// Most new connections from one address a second (a second's worth at
    /// once); faster ones are closed as soon as accepted.
    #[arg(long, env = "MAX_CONNECTION_RATE_PER_IP", default_value_t = 200.0)]
    pub max_connection_rate_per_ip: f64,

    /// Addresses with limits of their own, `address=connections` comma
    /// separated (a load balancer, a benchmark host): each may hold that
    /// many connections and open as many a second.
    #[arg(long, env = "CONNECTION_OVERRIDES", default_value = "", value_parser = parse_connection_overrides)]
    pub connection_overrides: ConnectionOverrides,

    /// Most streams (calls) open at once on one HTTP/2 connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 1_000)]
    pub max_streams_per_connection: u32,

    /// Most bytes of headers (metadata) one call may send over HTTP/2
    /// (SETTINGS_MAX_HEADER_LIST_SIZE): within it, a call with a token
    /// over its own limit gets UNAUTHENTICATED; past it, HTTP/2 refuses the
    /// call (431) or, far past it, closes the connection (its header
    /// compression state is shared by every call on it).
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: u32,

    /// Longest a unary or server-streaming call's request may take to
    /// arrive, from its headers to the end of its body; a slower one gets
    /// DEADLINE_EXCEEDED.
    #[arg(long, env = "REQUEST_ARRIVAL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_arrival_timeout: Duration,

    /// Longest a new connection may go without starting a call; then it is
    /// closed.
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Longest a connection may stay open with no call in progress; then it
    /// is closed.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How often the gateway pings a client over HTTP/2 (and probes its TCP
    /// connection) to find it is still there.
    #[arg(long, env = "KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Duration,

    /// How long a client has to answer a ping; a connection that does not
    /// is closed, and its streams end (a frozen subscriber's partitions go
    /// to the rest of its group).
    #[arg(long, env = "KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Where Prometheus metrics are served (GET /metrics); 0 or empty turns
    /// them off. Loopback unless an operator opens it to other hosts.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: eventgateway_runtime::metrics::MetricsAddr,
}

impl EdgeFlags {
    /// Checks what clap's types cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        for (name, limit) in [
            ("--max-connections", self.max_connections),
            ("--max-connections-per-ip", self.max_connections_per_ip),
            (
                "--max-streams-per-connection",
                self.max_streams_per_connection as usize,
            ),
        ] {
            if limit == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if !(self.max_connection_rate_per_ip.is_finite() && self.max_connection_rate_per_ip > 0.0) {
            return Err("--max-connection-rate-per-ip must be above 0".into());
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!(
                "--max-header-bytes must be at least {MIN_HEADER_BYTES} (a bearer token alone may take 16 KiB)"
            ));
        }
        super::positive(&[
            ("--request-arrival-timeout", self.request_arrival_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
        ])
    }
}

/// `--connection-overrides`: addresses and the connections each may hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionOverrides(pub Vec<(std::net::IpAddr, usize)>);

/// Reads `--connection-overrides`: `address=connections` entries, comma
/// separated (`10.0.0.5=20000,127.0.0.1=50000`).
pub(super) fn parse_connection_overrides(text: &str) -> Result<ConnectionOverrides, String> {
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || format!("{entry:?} is not address=connections (e.g. 10.0.0.5=20000)");
        let (address, count) = entry.split_once('=').ok_or_else(bad)?;
        let address = address.trim().parse().map_err(|_| bad())?;
        let connections: usize = count.trim().parse().map_err(|_| bad())?;
        if connections == 0 {
            return Err(bad());
        }
        entries.push((address, connections));
    }
    Ok(ConnectionOverrides(entries))
}

/// The longest web origin accepted.
const MAX_ORIGIN_LEN: usize = 256;

/// A web origin as browsers send it (scheme://host[:port], lower case), or
/// `*`.
pub(super) fn web_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    let shape = "an origin is scheme://host[:port], e.g. https://app.example.com, or *";
    if text.len() > MAX_ORIGIN_LEN {
        return Err(format!("at most {MAX_ORIGIN_LEN} bytes; {shape}"));
    }
    let uri: http::Uri = text.parse().map_err(|_| shape.to_owned())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/") && !text.ends_with('/');
    match uri.authority() {
        Some(authority) if scheme_ok && bare && !authority.as_str().contains('@') => Ok(format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            authority.as_str().to_ascii_lowercase()
        )),
        _ => Err(shape.to_owned()),
    }
}
