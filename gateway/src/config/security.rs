//! Who may call and what they may do: the listener's TLS, bearer tokens
//! and the policy file, with the interval their files are re-read at.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// The most slack accepted on a token's exp and nbf.
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsFlags {
    /// The server's TLS certificate chain (PEM). With --tls-key, the
    /// listener speaks TLS only. Re-read when it changes (see
    /// --reload-interval): new connections get the new certificate.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to: turns
    /// mutual TLS on, and a client without a valid certificate is refused at
    /// the handshake. The caller's principal is the certificate's URI SAN,
    /// else its DNS SAN, else its subject's CN.
    #[arg(long, env = "TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve the metrics over HTTPS, with --tls-cert and --tls-key (no
    /// client certificate is asked for).
    #[arg(long, env = "METRICS_TLS", default_value_t = false)]
    pub metrics_tls: bool,
}

impl TlsFlags {
    /// Checks what clap's types cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
        }
        if self.metrics_tls && self.tls_cert.is_none() {
            return Err("--metrics-tls needs --tls-cert and --tls-key".into());
        }
        Ok(())
    }

    /// The listener's TLS files, when TLS is on.
    pub(crate) fn files(&self) -> Option<crate::edge::TlsFiles> {
        Some(crate::edge::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Bearer tokens")]
pub struct TokenFlags {
    /// A JWKS document (file) with the keys bearer tokens are verified with:
    /// turns tokens on, and every call but health checks (and reflection,
    /// unless --protect-reflection) needs 'authorization: Bearer <JWT>'.
    /// Re-read when it changes.
    #[arg(long, env = "JWKS_FILE", conflicts_with = "jwks_url")]
    pub jwks_file: Option<PathBuf>,

    /// The HTTPS URL of a JWKS document, instead of --jwks-file: fetched at
    /// start (the gateway does not start without it), every --jwks-refresh,
    /// and when a token names a key id the cached keys lack (at most every
    /// 10 s). A failed fetch keeps the cached keys.
    #[arg(long, env = "JWKS_URL", hide_env_values = true)]
    pub jwks_url: Option<http::Uri>,

    /// CA certificates (PEM) the --jwks-url server's certificate must chain
    /// to; without it, the Mozilla root set.
    #[arg(long, env = "JWKS_CA", requires = "jwks_url")]
    pub jwks_ca: Option<PathBuf>,

    /// How often the --jwks-url document is fetched again.
    #[arg(long, env = "JWKS_REFRESH", default_value = "5m", value_parser = humantime::parse_duration)]
    pub jwks_refresh: Duration,

    /// The issuer (iss) a bearer token must name; required with tokens.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The audience (aud) a bearer token must include; required with tokens.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Slack on a token's exp and nbf, for clocks that disagree (at most 5m).
    #[arg(long, env = "JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,
}

impl TokenFlags {
    /// Whether bearer tokens are on.
    pub(crate) fn on(&self) -> bool {
        self.jwks_file.is_some() || self.jwks_url.is_some()
    }

    /// Checks what clap's types cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        super::positive(&[("--jwks-refresh", self.jwks_refresh)])?;
        if !self.on() {
            return Ok(());
        }
        if self.jwt_issuer.as_deref().is_none_or(str::is_empty)
            || self.jwt_audience.as_deref().is_none_or(str::is_empty)
        {
            return Err(
                "bearer tokens (--jwks-file or --jwks-url) need --jwt-issuer and --jwt-audience"
                    .into(),
            );
        }
        if self.jwt_leeway > MAX_JWT_LEEWAY {
            return Err(format!("--jwt-leeway must be at most {MAX_JWT_LEEWAY:?}"));
        }
        if self
            .jwks_url
            .as_ref()
            .is_some_and(|url| url.scheme_str() != Some("https"))
        {
            return Err("--jwks-url must be an https:// URL".into());
        }
        Ok(())
    }

    /// Where token keys come from, when tokens are on.
    pub(crate) fn source(&self) -> Option<crate::auth::jwks::JwksSource> {
        use crate::auth::jwks::JwksSource;
        match (&self.jwks_file, &self.jwks_url) {
            (Some(path), _) => Some(JwksSource::File(path.clone())),
            (None, Some(url)) => Some(JwksSource::Url {
                url: url.clone(),
                ca: self.jwks_ca.clone(),
                refresh: self.jwks_refresh,
            }),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Policy")]
pub struct PolicyFlags {
    /// Guard reflection with authentication too (by default only the
    /// EventGateway service is guarded; health checks never are).
    #[arg(long, env = "PROTECT_REFLECTION", default_value_t = false)]
    pub protect_reflection: bool,

    /// The policy file (TOML): which principals may publish and subscribe
    /// to which topics, with which consumer groups, at what rate. Once set,
    /// everything it does not grant is denied. Needs client authentication.
    /// Re-read when it changes: a change that does not load keeps the
    /// previous policy; one that revokes rights ends the affected open
    /// subscriptions with PERMISSION_DENIED.
    #[arg(long, env = "POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// How often the certificate, key, CA, JWKS and policy files are checked
    /// for changes. A change that does not load keeps the previous settings (logged, and
    /// counted in gateway_reload_failures_total).
    #[arg(long, env = "RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
}

impl PolicyFlags {
    /// Checks what clap's types cannot; `authenticates`: whether callers
    /// are authenticated (a policy grants rights to principals).
    pub(super) fn check(&self, authenticates: bool) -> Result<(), String> {
        super::positive(&[("--reload-interval", self.reload_interval)])?;
        if self.policy_file.is_some() && !authenticates {
            return Err("--policy-file needs client authentication (--tls-client-ca, --jwks-file or --jwks-url): a policy grants rights to principals".into());
        }
        if self.protect_reflection && !authenticates {
            return Err("--protect-reflection needs client authentication (--tls-client-ca, --jwks-file or --jwks-url)".into());
        }
        Ok(())
    }
}
