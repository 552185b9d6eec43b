//! Where the token-verifying keys come from: a JWKS file, re-read when it
//! changes, or an HTTPS URL, fetched at start and then every refresh
//! interval, and again (at most every [`MIN_REFETCH`]) when a token names a
//! key id the cached document does not have. A fetch that fails keeps the
//! cached keys: an unreachable key server never stalls calls whose tokens
//! the cached keys verify, and a call with an unknown key id waits at most
//! [`UNKNOWN_KEY_WAIT`] for a fetch.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eventgateway_runtime::reload::{self, Reloaded};
use eventgateway_runtime::shutdown::Shutdown;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::jwt::KeySet;
use crate::metrics::Metrics;

/// The largest JWKS document fetched.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long one fetch may take, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest time between two fetches asked for by unknown key ids.
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long a call whose token names an unknown key id waits for a fetch.
const UNKNOWN_KEY_WAIT: Duration = Duration::from_secs(2);

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(crate) enum JwksSource {
    /// A JWKS file, re-read when it changes.
    File(PathBuf),
    /// An HTTPS URL.
    Url {
        url: http::Uri,
        /// The CA certificates (PEM) its server's certificate must chain to;
        /// none: the Mozilla root set.
        ca: Option<PathBuf>,
        /// How often it is fetched again.
        refresh: Duration,
    },
}

/// The current keys, and a way to ask for a fetch.
#[derive(Clone)]
pub(crate) struct Jwks {
    keys: Reloaded<KeySet>,
    fetcher: Option<Arc<Fetcher>>,
}

/// Asks the URL's refresher for an early fetch, at most every
/// [`MIN_REFETCH`].
struct Fetcher {
    wake: Notify,
    last_asked: Mutex<Option<Instant>>,
}

impl Jwks {
    /// Loads the keys from `source` and keeps them fresh until the shutdown
    /// begins.
    pub(crate) async fn start(
        source: JwksSource,
        file_interval: Duration,
        shutdown: &Shutdown,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let metrics = metrics.clone();
        match source {
            JwksSource::File(path) => {
                let watch = reload::Watch {
                    what: "JWKS file",
                    paths: vec![path],
                    interval: file_interval,
                    shutdown,
                };
                let keys = reload::watch(
                    watch,
                    |files| KeySet::parse(&files[0]),
                    move || metrics.edge().reload_failed("jwks"),
                )
                .map_err(|error| format!("--jwks-file: {error}"))?;
                Ok(Self {
                    keys,
                    fetcher: None,
                })
            }
            JwksSource::Url { url, ca, refresh } => {
                let client = HttpsClient::new(url, ca.as_deref())?;
                let first = client
                    .fetch()
                    .await
                    .map_err(|error| format!("--jwks-url: {error}"))?;
                let (tx, rx) = watch::channel(Arc::new(first));
                let fetcher = Arc::new(Fetcher {
                    wake: Notify::new(),
                    last_asked: Mutex::new(None),
                });
                shutdown.spawn(refresh_loop(
                    client,
                    tx,
                    refresh,
                    fetcher.clone(),
                    metrics,
                    shutdown.clone(),
                ));
                Ok(Self {
                    keys: Reloaded::new(rx),
                    fetcher: Some(fetcher),
                })
            }
        }
    }

    /// The keys to verify a token naming key id `kid` with: the cached ones,
    /// or, when they lack `kid` and the keys come from a URL, those of a
    /// fetch made now (waited for at most [`UNKNOWN_KEY_WAIT`]).
    pub(crate) async fn keys_for(&self, kid: Option<&str>) -> Arc<KeySet> {
        let keys = self.keys.current();
        let Some(fetcher) = &self.fetcher else {
            return keys;
        };
        if keys.has(kid) {
            return keys;
        }
        {
            let mut last = fetcher.last_asked.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
                return keys;
            }
            *last = Some(Instant::now());
        }
        let mut changes = self.keys.changes();
        changes.borrow_and_update();
        fetcher.wake.notify_one();
        let _ = tokio::time::timeout(UNKNOWN_KEY_WAIT, changes.changed()).await;
        self.keys.current()
    }
}

/// Fetches the keys every `refresh`, and when woken; a failed fetch keeps
/// the cached keys.
async fn refresh_loop(
    client: HttpsClient,
    keys: watch::Sender<Arc<KeySet>>,
    refresh: Duration,
    fetcher: Arc<Fetcher>,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = shutdown.started() => return,
            () = tokio::time::sleep(refresh) => {}
            () = fetcher.wake.notified() => {}
        }
        match client.fetch().await {
            Ok(set) => {
                keys.send_replace(Arc::new(set));
                tracing::debug!("fetched the JWKS document");
            }
            Err(error) => {
                metrics.edge().reload_failed("jwks");
                tracing::warn!(%error, "cannot fetch the JWKS document; keeping the cached keys");
                // Wake anyone waiting: the cached keys are what there is.
                keys.send_modify(|_| {});
            }
        }
    }
}

/// A minimal HTTPS client for one URL.
struct HttpsClient {
    url: http::Uri,
    /// The URL as messages show it: without any user or password in it.
    shown: String,
    host: String,
    port: u16,
    tls: TlsConnector,
}

impl HttpsClient {
    fn new(url: http::Uri, ca: Option<&std::path::Path>) -> Result<Self, String> {
        if url.scheme_str() != Some("https") {
            return Err("--jwks-url must be an https:// URL".into());
        }
        let host = url
            .host()
            .ok_or("--jwks-url has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_u16().unwrap_or(443);
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                let pem = reload::read_file(path)?;
                for certificate in CertificateDer::pem_slice_iter(&pem) {
                    let certificate = certificate.map_err(|error| {
                        format!("--jwks-ca: not a PEM certificate list: {error}")
                    })?;
                    roots
                        .add(certificate)
                        .map_err(|error| format!("--jwks-ca: {error}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let shown = format!("https://{host}:{port}{}", url.path());
        Ok(Self {
            url,
            shown,
            host,
            port,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Fetches and parses the document, within [`FETCH_TIMEOUT`].
    async fn fetch(&self) -> Result<KeySet, String> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| format!("no answer from {} within {FETCH_TIMEOUT:?}", self.shown))??;
        KeySet::parse(&body)
    }

    /// The GET of the document: `Host` is the URL's host and port only; a
    /// user and password in the URL go as HTTP Basic credentials, never in
    /// a header that proxies and logs show.
    fn request(&self) -> Result<http::Request<Empty<Bytes>>, http::Error> {
        use base64::Engine as _;
        let path = self.url.path_and_query().map_or("/", |path| path.as_str());
        let authority = self.url.authority().map_or("", |a| a.as_str());
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        let mut request = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::ACCEPT, "application/json");
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let credentials = format!("{}:{}", decoded(user), decoded(password));
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            request = request.header(http::header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        request.body(Empty::<Bytes>::new())
    }

    async fn get(&self) -> Result<Bytes, String> {
        let failed =
            |error: &dyn std::fmt::Display| format!("cannot fetch {}: {error}", self.shown);
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed(&e))?;
        let name = ServerName::try_from(self.host.clone()).map_err(|e| failed(&e))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| failed(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(self.request().map_err(|e| failed(&e))?)
            .await
            .map_err(|e| failed(&e))?;
        if !response.status().is_success() {
            return Err(failed(&format!("HTTP status {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| failed(&e))?;
        Ok(body.to_bytes())
    }
}

/// `text` with its `%XX` escapes (as a URL's user and password carry them)
/// decoded, or as it is when they do not decode.
fn decoded(text: &str) -> String {
    crate::text::percent_decoded(text.as_bytes()).unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_jwks_url_go_as_basic_auth_never_in_host() {
        let url: http::Uri = "https://svc%40corp:p%3Ass@idp.example:8443/keys?x=1"
            .parse()
            .unwrap();
        let request = HttpsClient::new(url, None).unwrap().request().unwrap();
        assert_eq!(request.headers()[http::header::HOST], "idp.example:8443");
        assert_eq!(request.uri(), "/keys?x=1");
        // base64("svc@corp:p:ss")
        assert_eq!(
            request.headers()[http::header::AUTHORIZATION],
            "Basic c3ZjQGNvcnA6cDpzcw=="
        );
        let plain = HttpsClient::new("https://idp.example/keys".parse().unwrap(), None)
            .unwrap()
            .request()
            .unwrap();
        assert_eq!(plain.headers()[http::header::HOST], "idp.example");
        assert!(!plain.headers().contains_key(http::header::AUTHORIZATION));
    }

    #[test]
    fn messages_show_the_jwks_url_without_credentials() {
        let url: http::Uri = "https://user:hunter2@idp.example:8443/keys?x=1"
            .parse()
            .unwrap();
        let client = HttpsClient::new(url, None).unwrap();
        assert_eq!(client.shown, "https://idp.example:8443/keys");
        assert!(HttpsClient::new("http://idp.example/keys".parse().unwrap(), None).is_err());
    }
}
