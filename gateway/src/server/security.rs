//! What the listener asks of clients: TLS (reloaded certificates), how
//! calls are authenticated, the policy, and warnings about an exposed
//! listener.

use std::net::SocketAddr;
use std::sync::Arc;

use eventgateway_runtime::reload::{self, Reloaded};
use eventgateway_runtime::shutdown::Shutdown;
use tokio_rustls::rustls::ServerConfig;

use crate::auth::access::{Access, Caps};
use crate::auth::jwks::Jwks;
use crate::auth::jwt::Expected;
use crate::auth::policy;
use crate::auth::{Authentication, Tokens};
use crate::config::Config;
use crate::edge;
use crate::metrics::Metrics;

/// What settings files are loaded and watched with: the interval, where a
/// change that does not load is counted, and the shutdown that ends it.
pub(super) struct Reloading<'a> {
    pub(super) config: &'a Config,
    pub(super) metrics: &'a Metrics,
    pub(super) shutdown: &'a Shutdown,
}

impl Reloading<'_> {
    /// `paths` (the `what` of messages) loaded with `load`, and loaded again
    /// when they change; a change that does not load is counted under
    /// `file`.
    pub(super) fn watch<T: Send + Sync + 'static>(
        &self,
        what: &'static str,
        file: &'static str,
        paths: Vec<std::path::PathBuf>,
        load: fn(&[Vec<u8>]) -> Result<T, String>,
    ) -> anyhow::Result<Reloaded<T>> {
        let watch = self.watch_of(what, paths);
        let metrics = self.metrics.clone();
        reload::watch(watch, load, move || metrics.edge().reload_failed(file))
            .map_err(|error| anyhow::anyhow!("cannot load the {what}: {error}"))
    }

    /// How `paths` (the `what` of messages) are watched.
    fn watch_of(&self, what: &'static str, paths: Vec<std::path::PathBuf>) -> reload::Watch<'_> {
        reload::Watch {
            what,
            paths,
            interval: self.config.policy.reload_interval,
            shutdown: self.shutdown,
        }
    }

    /// The listener's TLS settings, when TLS is on.
    pub(super) fn tls(&self) -> anyhow::Result<Option<Reloaded<ServerConfig>>> {
        let Some(files) = self.config.tls.files() else {
            return Ok(None);
        };
        let what = "TLS certificate and key";
        self.watch(what, "tls", files.paths(), edge::server_config)
            .map(Some)
    }

    /// The metrics endpoint's TLS settings, when --metrics-tls is on: the
    /// listener's certificate and key.
    pub(super) fn metrics_tls(&self) -> anyhow::Result<Option<Reloaded<ServerConfig>>> {
        let (true, Some(files)) = (self.config.tls.metrics_tls, self.config.tls.files()) else {
            return Ok(None);
        };
        let what = "metrics TLS certificate and key";
        let paths = vec![files.cert, files.key];
        self.watch(what, "tls", paths, edge::metrics_server_config)
            .map(Some)
    }

    /// What callers may do: the policy file's grants, or everything when
    /// there is none.
    /// `loaded`: the policy file as the start-up check loaded it.
    pub(super) fn access(&self, loaded: Option<reload::Loaded<policy::Policy>>) -> Access {
        let policy = match (&self.config.policy.policy_file, loaded) {
            (Some(path), Some(loaded)) => {
                let watch = self.watch_of("policy", vec![path.clone()]);
                let metrics = self.metrics.clone();
                let failed = move || metrics.edge().reload_failed("policy");
                Some(reload::watch_loaded(watch, loaded, policy::load, failed))
            }
            _ => None,
        };
        let caps = Caps {
            publish_streams: self.config.limits.max_publish_streams,
            subscriptions: self.config.limits.max_subscriptions,
            consumers: self.config.limits.max_consumers,
            share_percent: self.config.limits.max_share_percent,
        };
        Access::new(policy, caps, self.metrics.clone())
    }
}

/// What the listener asks of clients: TLS, and how calls are
/// authenticated.
pub(super) struct Security {
    pub(super) tls: Option<Reloaded<ServerConfig>>,
    pub(super) authentication: Authentication,
}

/// How callers are authenticated, with the token keys loaded.
pub(super) async fn authentication(
    config: &Config,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<Authentication> {
    let tokens = match config.tokens.source() {
        Some(source) => {
            let jwks = Jwks::start(source, config.policy.reload_interval, shutdown, metrics)
                .await
                .map_err(|error| anyhow::anyhow!("cannot load the token keys: {error}"))?;
            let expected = Expected {
                issuer: config.tokens.jwt_issuer.clone().unwrap_or_default(),
                audience: config.tokens.jwt_audience.clone().unwrap_or_default(),
                leeway: config.tokens.jwt_leeway,
            };
            Some(Tokens {
                jwks,
                expected,
                verified: Arc::default(),
            })
        }
        None => None,
    };
    Ok(Authentication {
        certificates: config.tls.tls_client_ca.is_some(),
        tokens,
        protect_reflection: config.policy.protect_reflection,
    })
}

/// What is wrong with listening on `addr` as `config` says: open to
/// other hosts without TLS, or without client authentication.
pub(super) fn exposure_warnings(config: &Config, addr: SocketAddr) -> Vec<&'static str> {
    let mut warnings = Vec::new();
    if addr.ip().is_loopback() {
        return warnings;
    }
    if config.tls.files().is_none() {
        warnings.push(
            "listening on a non-loopback address without TLS: calls, events and any \
             credentials cross the network in clear text (see --tls-cert and --tls-key)",
        );
    }
    if !config.authenticates() {
        warnings.push(
            "listening on a non-loopback address without client authentication: anyone who \
             can reach this port can publish to and read every topic (see --tls-client-ca \
             and --jwks-file)",
        );
    }
    if config
        .edge
        .grpc_web_origins
        .iter()
        .any(|origin| origin == "*")
    {
        warnings.push(
            "--grpc-web-origins * lets a page of any web site call this gateway from its \
             visitors' browsers: name the origins of your own pages instead",
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_address_without_tls_or_authentication_is_warned_about() {
        let open: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let mut config = Config::for_brokers(None);
        assert_eq!(exposure_warnings(&config, open).len(), 2);
        assert!(exposure_warnings(&config, loopback).is_empty());
        config.tls.tls_cert = Some("server.crt".into());
        config.tls.tls_key = Some("server.key".into());
        assert_eq!(
            exposure_warnings(&config, open),
            [
                "listening on a non-loopback address without client authentication: anyone who \
              can reach this port can publish to and read every topic (see --tls-client-ca \
              and --jwks-file)"
            ]
        );
        config.tls.tls_client_ca = Some("ca.crt".into());
        assert!(exposure_warnings(&config, open).is_empty());
        config.tls.tls_client_ca = None;
        config.tokens.jwks_file = Some("jwks.json".into());
        assert!(exposure_warnings(&config, open).is_empty());
        config.edge.grpc_web_origins = vec!["https://app.example".into()];
        assert!(exposure_warnings(&config, open).is_empty());
        config.edge.grpc_web_origins.push("*".into());
        assert_eq!(
            exposure_warnings(&config, open),
            [
                "--grpc-web-origins * lets a page of any web site call this gateway from its \
              visitors' browsers: name the origins of your own pages instead"
            ]
        );
    }
}
