//! Configuration: command-line flags, each with an environment variable
//! fallback, validated once at start-up.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Sends each newly registered user a welcome email, consuming user-registered events through the event gateway
#[derive(Debug, Clone, Parser)]
#[command(version, after_help = "Logging follows RUST_LOG (default: info).")]
pub struct Config {
    /// The event gateway to subscribe through.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:50051")]
    pub gateway_url: String,

    /// CA certificates (PEM) the gateway's certificate must chain to, for an
    /// https:// --gateway-url; without it, the Mozilla root set.
    #[arg(long, env = "GATEWAY_CA")]
    pub gateway_ca: Option<PathBuf>,

    /// The notifier's client certificate (PEM), for a gateway that requires
    /// one (mTLS); with --gateway-key. Read at each connect.
    #[arg(long, env = "GATEWAY_CERT", requires = "gateway_key")]
    pub gateway_cert: Option<PathBuf>,

    /// The private key of --gateway-cert (PEM).
    #[arg(long, env = "GATEWAY_KEY", requires = "gateway_cert")]
    pub gateway_key: Option<PathBuf>,

    /// A file holding the bearer token (JWT) sent on every call; re-read
    /// when it changes (see --reload-interval), so a token renewed in place
    /// is used from the next call on.
    #[arg(long, env = "GATEWAY_TOKEN_FILE")]
    pub gateway_token_file: Option<PathBuf>,

    /// How often the token file is checked for changes.
    #[arg(long, env = "RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,

    /// Topic of the registration events.
    #[arg(long, env = "NOTIFIER_TOPIC", default_value = "user-registered")]
    pub topic: String,

    /// Consumer group; every notifier instance of one deployment shares it.
    #[arg(long, env = "NOTIFIER_GROUP", default_value = "notification-service")]
    pub group: String,

    /// SMTP server: smtp://host:port (plain), smtp://host:port?tls=required
    /// (STARTTLS; ?tls=opportunistic uses it when offered), smtps://host:port
    /// (TLS); credentials as smtp://user:password@host:port. Unset: each
    /// email is written as an .eml file into OUTBOX_DIR instead (development).
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender of the welcome emails.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Welcome <welcome@example.com>"
    )]
    pub mail_from: String,

    /// Where emails go when SMTP_URL is unset.
    #[arg(long, env = "OUTBOX_DIR", default_value = "./outbox")]
    pub outbox_dir: PathBuf,

    /// Where the notifier remembers which events it already sent an email for
    /// (an embedded database that survives kill -9).
    #[arg(long, env = "STATE_DIR", default_value = "./state")]
    pub state_dir: PathBuf,

    /// Directory with replacement templates: subject.txt, welcome.txt,
    /// welcome.html (any missing file keeps the built-in one). Placeholders:
    /// {{name}}, {{email}}, {{user_id}}.
    #[arg(long, env = "TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,

    /// How long the gateway waits for an acknowledgement before it delivers
    /// an event again; longer than a slow SMTP send.
    #[arg(long, env = "NOTIFIER_ACK_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// Where Prometheus metrics are served (GET /metrics); 0 or empty turns
    /// them off. The default port differs from the gateway's, so that both
    /// run on one host; loopback unless an operator opens it to other hosts.
    #[arg(long, env = "NOTIFIER_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    pub metrics_addr: eventgateway_runtime::metrics::MetricsAddr,

    /// Emails handled at once (the subscription's max_unacked). One user's
    /// emails are never handled at once: the subscription orders by key (the
    /// user id), so a slow SMTP answer for one user holds back no other.
    #[arg(long, env = "NOTIFIER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u32,

    /// First wait before an email that failed transiently comes again (the
    /// subscription's retry policy: the gateway holds it meanwhile), and
    /// before reconnecting to the gateway; it doubles (with jitter) up to
    /// --max-backoff.
    #[arg(long, env = "MIN_BACKOFF", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub min_backoff: Duration,

    /// Longest wait between retries (at most 600 s).
    #[arg(long, env = "MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
}

impl Config {
    /// Checks what clap's types cannot, naming the flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.gateway_url.starts_with("http://") || self.gateway_url.starts_with("https://")) {
            return Err(format!(
                "--gateway-url {:?} must start with http:// or https://",
                self.gateway_url
            ));
        }
        let https = self.gateway_url.starts_with("https://");
        if !https && (self.gateway_ca.is_some() || self.gateway_cert.is_some()) {
            return Err("--gateway-ca and --gateway-cert need an https:// --gateway-url".into());
        }
        if self.reload_interval.is_zero() {
            return Err("--reload-interval must be longer than zero".into());
        }
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err("--smtp-url must start with smtp:// or smtps://".into());
            }
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "--mail-from {:?} is not an email address",
                self.mail_from
            ));
        }
        if self.min_backoff.is_zero() || self.min_backoff > self.max_backoff {
            return Err("--min-backoff must be above zero and at most --max-backoff".into());
        }
        let longest = Duration::from_secs(600);
        if self.max_backoff > longest {
            return Err("--max-backoff must be at most 600s".into());
        }
        if self.ack_timeout < Duration::from_millis(100) || self.ack_timeout > longest {
            return Err("--ack-timeout must be 100ms to 600s".into());
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return Err("--concurrency must be 1 to 10000".into());
        }
        if self.topic.is_empty() || self.group.is_empty() {
            return Err("--topic and --group must not be empty".into());
        }
        if !eventgateway::bounds::is_topic_name(&self.topic) {
            return Err(format!(
                "--topic {:?} is not a Kafka topic name: 1 to {} bytes of ASCII letters, digits, '.', '_' and '-'",
                self.topic.chars().take(64).collect::<String>(),
                eventgateway::bounds::MAX_TOPIC_LEN
            ));
        }
        Ok(())
    }

    /// The defaults, whatever the environment says (tests and embedding).
    pub fn defaults() -> Self {
        eventgateway_runtime::config::defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_flag() {
        Config::defaults().validate().unwrap();
        let mut config = Config::defaults();
        config.smtp_url = Some("http://mail".into());
        assert!(config.validate().unwrap_err().contains("--smtp-url"));
        let mut config = Config::defaults();
        config.mail_from = "not an address".into();
        assert!(config.validate().unwrap_err().contains("--mail-from"));
        let mut config = Config::defaults();
        config.topic = "user registered".into();
        assert!(config.validate().unwrap_err().contains("--topic"));
    }
}
