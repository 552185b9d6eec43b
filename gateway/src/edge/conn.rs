//! A client connection that is closed once it has been idle too long: no
//! call started within the handshake timeout of being accepted, or none in
//! progress for the idle timeout since its last one ended.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::per_address::AddressSlot;
use crate::metrics::Metrics;

/// How long a connection may be idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleLimits {
    /// Before its first call (`--handshake-timeout`).
    pub(crate) handshake: Duration,
    /// After its last call ended (`--idle-timeout`).
    pub(crate) idle: Duration,
}

/// The calls in progress on one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Calls in progress, whether any was ever started, and since when
    /// none is in progress.
    state: Mutex<State>,
    /// Wakes the connection's reader when its last call ends, so that it
    /// arms its idle timer.
    reader: AtomicWaker,
}

#[derive(Debug)]
struct State {
    calls: usize,
    started_any: bool,
    idle_since: Instant,
}

/// One call in progress: it ends when this goes.
#[derive(Debug)]
pub(crate) struct Call(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                calls: 0,
                started_any: false,
                idle_since: Instant::now(),
            }),
            reader: AtomicWaker::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call that began; it ends when the returned value goes.
    pub(crate) fn begin(self: &Arc<Self>) -> Call {
        let mut state = self.lock();
        state.calls += 1;
        state.started_any = true;
        Call(self.clone())
    }

    /// When the connection is to be closed for idleness, while no call is
    /// in progress.
    fn deadline(&self, limits: IdleLimits) -> Option<Instant> {
        let state = self.lock();
        (state.calls == 0).then(|| {
            let limit = if state.started_any {
                limits.idle
            } else {
                limits.handshake
            };
            state.idle_since + limit
        })
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.calls -= 1;
        if state.calls == 0 {
            state.idle_since = Instant::now();
            drop(state);
            self.0.reader.wake();
        }
    }
}

/// What a call knows of its connection (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The connection's calls.
    pub(crate) activity: Arc<Activity>,
    /// The client's address.
    pub(crate) remote: Option<SocketAddr>,
    /// The principal the client's certificate names (mTLS).
    pub(crate) certificate_principal: Option<Arc<str>>,
}

/// An accepted client connection.
pub(crate) struct Conn {
    /// The socket.
    io: TcpStream,
    /// Its calls.
    activity: Arc<Activity>,
    /// How long it may be idle.
    limits: IdleLimits,
    /// Fires at the idle deadline it was last armed for.
    timer: Pin<Box<Sleep>>,
    /// That deadline.
    armed_for: Option<Instant>,
    /// The client's address.
    remote: Option<SocketAddr>,
    /// Its place among the open connections (`--max-connections`), and
    /// among those of its address.
    _slot: (OwnedSemaphorePermit, AddressSlot),
    /// Where open connections are counted.
    metrics: Metrics,
}

impl Conn {
    /// The connection `io`, idle at most as `limits` say, holding `slot`.
    pub(crate) fn new(
        io: TcpStream,
        limits: IdleLimits,
        slot: (OwnedSemaphorePermit, AddressSlot),
        metrics: Metrics,
    ) -> Self {
        metrics.edge().connections(1);
        Self {
            remote: io.peer_addr().ok(),
            io,
            activity: Activity::new(),
            limits,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
            _slot: slot,
            metrics,
        }
    }

    /// The client's address.
    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Whether the connection has been idle too long; arms the timer that
    /// wakes the reader at its deadline.
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        self.activity.reader.register(cx.waker());
        let Some(deadline) = self.activity.deadline(self.limits) else {
            return false;
        };
        if self.armed_for != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed_for = Some(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.metrics.edge().connections(-1);
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            activity: self.activity.clone(),
            remote: self.remote,
            certificate_principal: None,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if read.is_pending() && self.idle_too_long(cx) {
            tracing::debug!(remote = ?self.remote, "closing an idle connection");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            )));
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: IdleLimits = IdleLimits {
        handshake: Duration::from_secs(10),
        idle: Duration::from_secs(300),
    };

    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_runs_only_while_no_call_is_in_progress() {
        let accepted = Instant::now();
        let activity = Activity::new();
        assert_eq!(activity.deadline(LIMITS), Some(accepted + LIMITS.handshake));
        tokio::time::advance(Duration::from_secs(3)).await;
        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.deadline(LIMITS), None);
        drop(first);
        assert_eq!(activity.deadline(LIMITS), None, "one call is still going");
        tokio::time::advance(Duration::from_secs(4)).await;
        drop(second);
        let ended = Instant::now();
        assert_eq!(activity.deadline(LIMITS), Some(ended + LIMITS.idle));
    }
}
