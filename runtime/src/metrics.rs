//! The Prometheus endpoint both binaries serve: `GET /metrics` answers the
//! registry in the text exposition format (OpenMetrics flavour), anything
//! else 404. A deliberately small HTTP/1.1 responder: one request per
//! connection, no keep-alive; over TLS when given a TLS configuration
//! (reloaded: each connection takes the latest).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::reload::Reloaded;

/// Longest a scrape may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the metrics endpoint listens; `None` when it is off. Parsed from a
/// flag where empty or `0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        parse_addr(value).map(MetricsAddr)
    }
}

/// Binds the endpoint's listener (when on) and serves `registry` there,
/// over TLS when `tls` is set; returns the task and the bound address.
pub async fn start(
    addr: MetricsAddr,
    registry: Arc<Registry>,
    tls: Option<Reloaded<ServerConfig>>,
) -> std::io::Result<Option<(tokio::task::JoinHandle<()>, SocketAddr)>> {
    let Some(addr) = addr.0 else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %bound, "serving metrics on {scheme}://{bound}/metrics");
    Ok(Some((tokio::spawn(serve(listener, registry, tls)), bound)))
}

/// Parses a metrics address flag: empty or `0` turns the endpoint off.
pub fn parse_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    match value.trim() {
        "" | "0" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|_| format!("{addr:?} is not host:port (or 0 to turn metrics off)")),
    }
}

/// The registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Serves `registry` on `listener` (over TLS when `tls` is set) until the
/// task is dropped or aborted.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    tls: Option<Reloaded<ServerConfig>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        let tls = tls.as_ref().map(|tls| TlsAcceptor::from(tls.current()));
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        answer(stream, &registry).await;
                    }
                }
                None => answer(stream, &registry).await,
            }
        });
    }
}

/// Reads one request from `stream` and answers it.
async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, registry: &Registry) {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let response = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => {
            let body = render(registry);
            format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Scrapes `http://addr/metrics` and returns the body (for tests and tools).
pub async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn zero_or_empty_turns_metrics_off() {
        assert_eq!(parse_addr("").unwrap(), None);
        assert_eq!(parse_addr("0").unwrap(), None);
        assert_eq!(
            parse_addr("127.0.0.1:9464").unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(parse_addr("nonsense").is_err());
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_registry_as_text() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("demo_events", "Events seen", counter.clone());
        counter.inc_by(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(registry), None));
        let body = scrape(addr).await.unwrap();
        assert!(body.contains("demo_events_total 3"), "{body}");
        server.abort();
    }
}
