//! Accepting client connections: at most `--max-connections` at once, and
//! from one address at most its own share at its own rate (see
//! [`super::per_address`]); one more is closed as soon as it is accepted,
//! and logged, without taking a file descriptor for long. Each has TCP
//! keepalive on and Nagle's algorithm off, and there is no busy loop when
//! accepting fails (out of file descriptors): it backs off.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream};
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::conn::{Conn, IdleLimits};
use super::per_address::{PerAddress, Refused};
use crate::metrics::Metrics;

/// How long accepting waits after it failed before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How often, at most, refused connections and accept failures are logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How the gateway accepts connections.
#[derive(Debug, Clone)]
pub(crate) struct Accepting {
    /// Connections open at once (`--max-connections`).
    pub(crate) max_connections: usize,
    /// Connections of one address, and how fast it may open them.
    pub(crate) per_address: PerAddress,
    /// How long a connection may be idle.
    pub(crate) idle: IdleLimits,
    /// The TCP keepalive idle time and interval (`--keepalive-interval`).
    pub(crate) keepalive: Duration,
}

/// Logs an event at most every [`LOG_EVERY`], with how many happened since.
struct Throttled {
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    fn new() -> Self {
        Self {
            last: None,
            since: 0,
        }
    }

    /// Counts one event; returns how many to report now, if it is time.
    fn count(&mut self) -> Option<u64> {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// The connections `listener` accepts, as `accepting` says.
pub(crate) fn incoming(
    listener: TcpListener,
    accepting: Accepting,
    metrics: Metrics,
) -> impl Stream<Item = io::Result<Conn>> {
    let slots = Arc::new(Semaphore::new(accepting.max_connections));
    let state = (
        listener,
        slots,
        [Throttled::new(), Throttled::new(), Throttled::new()],
    );
    stream::unfold(state, move |(listener, slots, mut logs)| {
        let (metrics, accepting) = (metrics.clone(), accepting.clone());
        async move {
            let [refused, by_address, failed] = &mut logs;
            let conn = loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        if let Some(count) = failed.count() {
                            tracing::warn!(%error, count, "cannot accept connections; backing off");
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let address = match accepting.per_address.admit(remote.ip(), Instant::now()) {
                    Ok(address) => address,
                    Err(why) => {
                        drop(tcp);
                        metrics.edge().connection_refused();
                        if let Some(count) = by_address.count() {
                            let limit = match why {
                                Refused::Connections => "--max-connections-per-ip",
                                Refused::Rate => "--max-connection-rate-per-ip",
                            };
                            tracing::warn!(%remote, count, "connections refused: an address over its {limit}");
                        }
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(tcp);
                    metrics.edge().connection_refused();
                    if let Some(count) = refused.count() {
                        tracing::warn!(
                            %remote,
                            count,
                            limit = accepting.max_connections,
                            "connections refused: --max-connections are open"
                        );
                    }
                    continue;
                };
                configure(&tcp, accepting.keepalive);
                break Conn::new(tcp, accepting.idle, (slot, address), metrics.clone());
            };
            Some((Ok(conn), (listener, slots, logs)))
        }
    })
}

/// Nagle's algorithm off (answers leave at once, not after the client's
/// delayed ACK) and TCP keepalive on.
fn configure(tcp: &TcpStream, keepalive: Duration) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot turn Nagle's algorithm off");
    }
    let probes = TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval(keepalive);
    if let Err(error) = SockRef::from(tcp).set_tcp_keepalive(&probes) {
        tracing::debug!(%error, "cannot turn TCP keepalive on");
    }
}

/// Raises the soft limit on open files to the hard limit, so that the
/// connection cap, not the operating system's default of 1,024, is what
/// bounds connections.
pub(crate) fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            from = ?limit.current,
            to = ?limit.maximum,
            "raised the open-files limit"
        ),
        Err(error) => tracing::warn!(%error, "cannot raise the open-files limit"),
    }
}
