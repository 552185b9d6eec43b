//! A TLS listener in front of a plaintext server (the broker): it
//! terminates TLS with a certificate of a test CA, asks for a client
//! certificate of that CA when told to, and relays the bytes both ways.
//! Handshakes that succeed are counted.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::certs::Ca;

/// The TLS listener, bound but not yet relaying (its port is known, for
/// the broker to advertise).
pub struct BoundFront {
    listener: TcpListener,
    config: ServerConfig,
}

/// The TLS listener: see the module.
pub struct TlsFront {
    port: u16,
    handshakes: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl BoundFront {
    /// Listens on a free loopback port with a `localhost` certificate of
    /// `ca`, requiring a client certificate of `ca` when `mutual`.
    pub async fn bind(ca: &Ca, mutual: bool) -> Self {
        let client_ca = mutual.then_some(ca.cert.as_str());
        let config = ca.server("kafka TLS front").server_config(client_ca);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self { listener, config }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Relays what it accepts, over TLS, to 127.0.0.1:`upstream`.
    pub fn relay_to(self, upstream: u16) -> TlsFront {
        let port = self.port();
        let BoundFront { listener, config } = self;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (counter, handshakes) = watch::channel(0);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counter.send_modify(|n| *n += 1);
                    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront {
            port,
            handshakes,
            task,
        }
    }
}

impl TlsFront {
    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// TLS handshakes that succeeded so far.
    pub fn handshakes(&self) -> usize {
        *self.handshakes.borrow()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
