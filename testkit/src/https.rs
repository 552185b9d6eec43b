//! A small HTTPS server on loopback that serves one document (a JWKS) at
//! any path, with a certificate from a test CA: the document can change,
//! fetches are counted, and the server can stop (so that it is unreachable).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::Ca;

/// The HTTPS server: see the module.
pub struct DocumentServer {
    addr: SocketAddr,
    document: Arc<Mutex<String>>,
    fetches: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl DocumentServer {
    /// Serves `document` over HTTPS with a `localhost` certificate of `ca`.
    pub async fn start(ca: &Ca, document: String) -> Self {
        let config = ca.server("document server").server_config(None);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let document = Arc::new(Mutex::new(document));
        let (counter, fetches) = watch::channel(0);
        let served = document.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, served, counter) =
                    (acceptor.clone(), served.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = served.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                    counter.send_modify(|n| *n += 1);
                });
            }
        });
        Self {
            addr,
            document,
            fetches,
            task,
        }
    }

    /// Its URL, with the name its certificate is for.
    pub fn url(&self) -> String {
        format!(
            "https://localhost:{}/.well-known/jwks.json",
            self.addr.port()
        )
    }

    /// Serves `document` from now on.
    pub fn set(&self, document: String) {
        *self.document.lock().unwrap() = document;
    }

    /// How many times the document was served.
    pub fn fetches(&self) -> usize {
        *self.fetches.borrow()
    }

    /// Stops serving: connections are refused from now on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
