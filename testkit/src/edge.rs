//! The files of a gateway with its edge secured, made at test time in a
//! directory of their own (removed when the value goes): a CA, a server
//! certificate for `localhost` and its key, a token signing key and its
//! JWKS file, and a policy file; and what sets a configuration to use them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::Config;

use crate::certs::{Ca, Pem};
use crate::gateway::ClientTls;
use crate::tokens::{claims, jwks, Signer};

/// The issuer the gateway's tokens must name.
pub const ISSUER: &str = "https://issuer.test";
/// The audience the gateway's tokens must hold.
pub const AUDIENCE: &str = "event-gateway";

/// A secured gateway's files: see the module.
pub struct SecureEdge {
    dir: PathBuf,
    /// The CA of the server certificate and of client certificates.
    pub ca: Ca,
    /// The CA certificate's file.
    pub ca_path: PathBuf,
    /// The server certificate's and key's files.
    pub server: (PathBuf, PathBuf),
    /// Signs the tokens the JWKS file verifies.
    pub signer: Signer,
    /// The JWKS file.
    pub jwks_path: PathBuf,
}

impl SecureEdge {
    /// The files, in a new directory named after `test`.
    pub fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gateway-{test}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new(&format!("{test} CA"));
        let ca_path = ca.write(&dir, "ca");
        let server = ca.server("gateway").write(&dir, "server");
        let signer = Signer::es256(&format!("{test}-key"));
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, jwks(&[&signer])).unwrap();
        Self {
            dir,
            ca,
            ca_path,
            server,
            signer,
            jwks_path,
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A token for `principal` that the gateway takes.
    pub fn token(&self, principal: &str) -> String {
        self.signer.sign(&claims(principal, ISSUER, AUDIENCE))
    }

    /// The policy file's path.
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }

    /// Writes the policy file whole and renames it into place, as an
    /// operator's tools do.
    pub fn write_policy(&self, policy: &str) {
        let staging = self.dir.join("policy.toml.new");
        std::fs::write(&staging, policy).unwrap();
        std::fs::rename(&staging, self.policy_path()).unwrap();
    }

    /// `config` with bearer tokens checked against the JWKS file, files
    /// checked for changes every 100 ms.
    pub fn tokens(&self, config: &mut Config) {
        config.tokens.jwks_file = Some(self.jwks_path.clone());
        config.tokens.jwt_issuer = Some(ISSUER.into());
        config.tokens.jwt_audience = Some(AUDIENCE.into());
        config.policy.reload_interval = Duration::from_millis(100);
    }

    /// `config` with the policy file (write it first).
    pub fn policy(&self, config: &mut Config) {
        config.policy.policy_file = Some(self.policy_path());
    }

    /// `config` with TLS on the server certificate, and client
    /// certificates of the CA required when `mutual`; files checked for
    /// changes every 100 ms.
    pub fn tls(&self, config: &mut Config, mutual: bool) {
        config.tls.tls_cert = Some(self.server.0.clone());
        config.tls.tls_key = Some(self.server.1.clone());
        config.tls.tls_client_ca = mutual.then(|| self.ca_path.clone());
        config.policy.reload_interval = Duration::from_millis(100);
    }

    /// How a client reaches the gateway: trusting the CA, with `identity`
    /// as its client certificate.
    pub fn client(&self, identity: Option<Pem>) -> ClientTls {
        ClientTls {
            ca: self.ca.cert.clone(),
            identity,
        }
    }
}

impl Drop for SecureEdge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
