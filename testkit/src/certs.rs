//! Certificates made at test time: a CA, server certificates it signs for
//! `localhost` and 127.0.0.1, and client certificates naming a principal
//! (URI SAN, DNS SAN or only a CN), valid or expired.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsConnector;

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Pem {
    /// Writes `<name>.crt` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }

    /// A rustls server configuration presenting this certificate, asking
    /// for a client certificate of `client_ca` (PEM) when given.
    pub fn server_config(&self, client_ca: Option<&str>) -> ServerConfig {
        let chain = vec![CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots(ca).into(), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        builder.with_single_cert(chain, key).unwrap()
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_slice(self.cert.as_bytes())
            .unwrap()
            .to_vec()
    }
}

/// The roots of a CA certificate (PEM).
fn roots(ca: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    roots
}

/// A TLS connection to `localhost` at `addr`, trusting `ca` (PEM).
async fn connect_tls(
    addr: SocketAddr,
    ca: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    connect_tls_offering(addr, ca, &[]).await
}

/// A TLS connection to `localhost` at `addr`, trusting `ca` (PEM), that
/// offers the application protocols `alpn` (say `http/1.1`) in its hello.
pub async fn connect_tls_offering(
    addr: SocketAddr,
    ca: &str,
    alpn: &[&str],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A TLS connection to `localhost` at `addr` from the local address
/// `from` (any of 127.0.0.0/8 on loopback), trusting `ca` (PEM).
pub async fn connect_tls_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    ca: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The certificate the TLS server at `addr` presents for `localhost`, as
/// checked against `ca` (DER).
pub async fn served_certificate(addr: SocketAddr, ca: &str) -> std::io::Result<Vec<u8>> {
    let tls = connect_tls(addr, ca).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    Ok(leaf.expect("a TLS server presents a certificate").to_vec())
}

/// What a client certificate names.
#[derive(Debug, Clone)]
pub enum CertName<'a> {
    /// A URI SAN (e.g. a SPIFFE id), with a DNS SAN and a CN beside it.
    Uri(&'a str),
    /// A DNS SAN, with a CN beside it.
    Dns(&'a str),
    /// Only a subject CN.
    CommonName(&'a str),
}

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, in PEM.
    pub cert: String,
}

impl Ca {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// Writes the CA certificate to `<dir>/<name>.crt`; returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, &self.cert).unwrap();
        path
    }

    /// A server certificate for `localhost` and 127.0.0.1, with `cn` as its
    /// subject (so a client can tell one certificate from another).
    pub fn server(&self, cn: &str) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A gateway replica's certificate for `localhost` and 127.0.0.1: a
    /// server's that is a client's too (replicas call each other's
    /// internal listener with it).
    pub fn replica(&self, cn: &str) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// A client certificate naming `name`, valid now.
    pub fn client(&self, name: CertName<'_>) -> Pem {
        self.sign(client_params(name))
    }

    /// A client certificate naming `name` that expired in 2001.
    pub fn expired_client(&self, name: CertName<'_>) -> Pem {
        let mut params = client_params(name);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn client_params(name: CertName<'_>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cn, sans) = match name {
        CertName::Uri(uri) => (
            "uri-client",
            vec![
                SanType::DnsName("dns.example".try_into().unwrap()),
                SanType::URI(uri.try_into().unwrap()),
            ],
        ),
        CertName::Dns(dns) => (
            "dns-client",
            vec![SanType::DnsName(dns.try_into().unwrap())],
        ),
        CertName::CommonName(cn) => (cn, Vec::new()),
    };
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params
}

/// Scrapes `https://localhost:<port>/metrics` at `addr`, trusting `ca`;
/// returns the body.
pub async fn scrape_tls(addr: SocketAddr, ca: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tls = connect_tls(addr, ca).await?;
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    // The server closes without close_notify at times; what came is enough.
    let _ = tls.read_to_string(&mut response).await;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
