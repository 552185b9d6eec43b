//! Acks at any replica: the internal listener replicas forward unary
//! Acknowledge and Settle calls to, the address the others reach it at,
//! the keys ids are signed with, and how long a forwarded call may take.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eventgateway::bounds::MAX_INTERNAL_ADDR_LEN;

use crate::route::MIN_KEY_BYTES;

/// The longest forward timeout.
const MAX_FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Acks at any replica")]
pub struct RouteFlags {
    /// Where this replica listens for calls the other replicas forward to
    /// it (a unary Acknowledge or Settle for a subscription it holds).
    /// Turns acks at any replica on: subscription ids name their replica,
    /// signed with --route-key-file, and a call for another replica's
    /// subscription goes there in one hop. Needs --route-key-file.
    #[arg(long, env = "INTERNAL_ADDR", requires = "route_key_file")]
    pub internal_addr: Option<SocketAddr>,

    /// The `host:port` the other replicas reach --internal-addr at (a pod
    /// IP, a headless service's name): put into every subscription id this
    /// replica hands out. Default: --internal-addr, unless it is an
    /// unspecified address (0.0.0.0, ::).
    #[arg(long, env = "ADVERTISED_INTERNAL_ADDR", requires = "internal_addr")]
    pub advertised_internal_addr: Option<String>,

    /// A file of one or two secret keys, one per line (each at least 32
    /// bytes, e.g. `openssl rand -hex 32`), the same on every replica: the
    /// first signs ids and forwarded calls, either verifies. To rotate,
    /// put the new key second everywhere, then first, then drop the old.
    #[arg(long, env = "ROUTE_KEY_FILE", requires = "internal_addr")]
    pub route_key_file: Option<PathBuf>,

    /// How long a forwarded call may take: an owner that has not answered
    /// by then is taken as gone, and the call's ack ids are answered STALE
    /// (its events come again through the group).
    #[arg(long, env = "FORWARD_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub forward_timeout: Duration,

    /// With TLS (--tls-cert): the CA certificates (PEM) every replica's
    /// --tls-cert chains to. The internal listener asks for a client
    /// certificate of it (mTLS), and a replica presents its --tls-cert to
    /// the others. Required with TLS and --internal-addr. The internal
    /// listener re-reads the files when they change; the calls this replica
    /// forwards use them as read at start.
    #[arg(long, env = "INTERNAL_CA", requires = "internal_addr")]
    pub internal_ca: Option<PathBuf>,
}

impl RouteFlags {
    /// Checks what clap's types cannot (`tls`: --tls-cert is set), and
    /// reads the keys; none when acks at any replica are off.
    pub(super) fn check(&self, tls: bool) -> Result<Option<Vec<Vec<u8>>>, String> {
        super::positive(&[("--forward-timeout", self.forward_timeout)])?;
        if self.forward_timeout > MAX_FORWARD_TIMEOUT {
            return Err(format!(
                "--forward-timeout is at most {MAX_FORWARD_TIMEOUT:?}"
            ));
        }
        let (Some(_), Some(path)) = (self.internal_addr, &self.route_key_file) else {
            return Ok(None);
        };
        let advertised = self
            .advertised()
            .ok_or("--internal-addr is an unspecified address: set --advertised-internal-addr to where the other replicas reach it")?;
        if advertised.len() > MAX_INTERNAL_ADDR_LEN || !advertised.contains(':') {
            return Err(format!(
                "--advertised-internal-addr must be host:port, at most {MAX_INTERNAL_ADDR_LEN} bytes"
            ));
        }
        if tls != self.internal_ca.is_some() {
            return Err(match tls {
                true => "--internal-addr with TLS needs --internal-ca: the CA the replicas' certificates chain to".into(),
                false => "--internal-ca needs TLS (--tls-cert and --tls-key)".into(),
            });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("--route-key-file {}: {error}", path.display()))?;
        let keys: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| line.as_bytes().to_vec())
            .collect();
        if keys.is_empty() || keys.len() > 2 {
            return Err(format!(
                "--route-key-file {} holds {} keys; it holds one or two, one per line",
                path.display(),
                keys.len()
            ));
        }
        if keys.iter().any(|key| key.len() < MIN_KEY_BYTES) {
            return Err(format!(
                "--route-key-file {}: each key is at least {MIN_KEY_BYTES} bytes",
                path.display()
            ));
        }
        Ok(Some(keys))
    }

    /// Where the other replicas reach this one.
    pub(crate) fn advertised(&self) -> Option<String> {
        match (&self.advertised_internal_addr, self.internal_addr) {
            (Some(advertised), _) => Some(advertised.clone()),
            (None, Some(addr)) if !addr.ip().is_unspecified() => Some(addr.to_string()),
            _ => None,
        }
    }
}
