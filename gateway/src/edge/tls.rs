//! TLS on the gRPC listener, with rustls: the certificate and key come from
//! PEM files that are read again when they change (new connections get the
//! new certificate; open ones go on), and a client CA file turns client
//! certificates on and requires them (mTLS).
//!
//! Handshakes run each in a task of its own, bounded by
//! `--handshake-timeout`, so a client that stalls its handshake holds no one
//! else up.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eventgateway_runtime::reload::Reloaded;
use eventgateway_runtime::shutdown::Shutdown;
use futures_util::stream::{self, Stream, StreamExt as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tracing::Instrument as _;

use super::conn::{Conn, ConnInfo};
use crate::auth::{self, AuthFailure};
use crate::metrics::Metrics;

/// Where the listener's TLS settings are.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The server's certificate chain (PEM).
    pub(crate) cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
    /// The CAs client certificates must chain to; none: no client
    /// certificates are asked for.
    pub(crate) client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files, in the order [`server_config`] takes their bytes.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{what}: not a PEM certificate list: {error}"))?;
    if certificates.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(certificates)
}

/// The rustls server configuration of the files' bytes (certificate, key,
/// then the client CA when there is one). Errors never show a key's bytes.
pub(crate) fn server_config(files: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let chain = certificates(&files[0], "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_slice(&files[1])
        .map_err(|error| format!("--tls-key: not a PEM private key: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let builder = match files.get(2) {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca, "--tls-client-ca")? {
                roots
                    .add(certificate)
                    .map_err(|error| format!("--tls-client-ca: {error}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|error| format!("--tls-client-ca: {error}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| format!("--tls-cert and --tls-key: {error}"))?;
    // gRPC is HTTP/2; clients that insist on ALPN (grpc-go) need it said.
    // gRPC-Web clients may speak HTTP/1.1 only; HTTP/2 is preferred.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The metrics endpoint's rustls configuration, of the listener's
/// certificate and key bytes: no client certificate is asked for (a scraper
/// rarely has one), and it speaks HTTP/1.1.
pub(crate) fn metrics_server_config(files: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let mut config = server_config(&files[..2])?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client connection, in the clear or over TLS.
pub(crate) enum Transport {
    /// Plaintext.
    Plain(Conn),
    /// TLS, with the principal its client certificate names (mTLS).
    Tls {
        stream: Box<TlsStream<Conn>>,
        principal: Option<Arc<str>>,
    },
}

impl Connected for Transport {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Transport::Plain(conn) => conn.connect_info(),
            Transport::Tls { stream, principal } => ConnInfo {
                certificate_principal: principal.clone(),
                ..stream.get_ref().0.connect_info()
            },
        }
    }
}

/// The plaintext connections `incoming` yields.
pub(crate) fn plain(
    incoming: impl Stream<Item = io::Result<Conn>>,
) -> impl Stream<Item = io::Result<Transport>> {
    incoming.map(|conn| conn.map(Transport::Plain))
}

/// The connections of `incoming` once their TLS handshake (with the
/// configuration loaded last) succeeded within `timeout`. A failed
/// handshake is logged; one that failed on the client's certificate is a
/// failed authentication. The handshakes, and the task that starts them,
/// run under `shutdown`'s tracker.
pub(crate) fn handshakes(
    incoming: impl Stream<Item = io::Result<Conn>> + Send + 'static,
    config: Reloaded<ServerConfig>,
    (timeout, metrics): (Duration, Metrics),
    shutdown: &Shutdown,
) -> impl Stream<Item = io::Result<Transport>> {
    let (tx, rx) = mpsc::channel(64);
    let tasks = shutdown.clone();
    let handshaking = async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let conn = tokio::select! {
                () = tx.closed() => return,
                conn = incoming.next() => conn,
            };
            let conn = match conn {
                Some(Ok(conn)) => conn,
                Some(Err(error)) => {
                    let _ = tx.send(Err(error)).await;
                    continue;
                }
                None => return,
            };
            let acceptor = TlsAcceptor::from(config.current());
            let (tx, metrics) = (tx.clone(), metrics.clone());
            let handshake = async move {
                let remote = conn.remote();
                match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
                    Ok(Ok(stream)) => {
                        let principal = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|leaf| auth::x509::principal(leaf))
                            .map(Arc::from);
                        let transport = Transport::Tls {
                            stream: Box::new(stream),
                            principal,
                        };
                        let _ = tx.send(Ok(transport)).await;
                    }
                    Ok(Err(error)) => handshake_failed(remote, &error, &metrics),
                    Err(_) => tracing::debug!(?remote, "TLS handshake timed out"),
                }
            };
            tasks.spawn(handshake.in_current_span());
        }
    };
    shutdown.spawn(handshaking.in_current_span());
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|transport| (transport, rx))
    })
}

/// Logs a failed handshake: on the audit target when the client's
/// certificate was missing or refused.
fn handshake_failed(remote: Option<SocketAddr>, error: &io::Error, metrics: &Metrics) {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::NoCertificatesPresented) => {
            auth::audit::authentication_failed(AuthFailure::NoClientCertificate, remote, metrics);
        }
        Some(rustls::Error::InvalidCertificate(reason)) => {
            tracing::debug!(?remote, ?reason, "client certificate refused");
            auth::audit::authentication_failed(AuthFailure::BadClientCertificate, remote, metrics);
        }
        _ => tracing::debug!(?remote, %error, "TLS handshake failed"),
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(conn) => Pin::new(conn).poll_read(cx, buf),
            Transport::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(conn) => Pin::new(conn).poll_write(cx, buf),
            Transport::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(conn) => Pin::new(conn).poll_write_vectored(cx, bufs),
            Transport::Tls { stream, .. } => {
                Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(conn) => conn.is_write_vectored(),
            Transport::Tls { stream, .. } => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(conn) => Pin::new(conn).poll_flush(cx),
            Transport::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(conn) => Pin::new(conn).poll_shutdown(cx),
            Transport::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
