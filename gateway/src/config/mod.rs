//! Configuration: command-line flags, each with an environment variable
//! fallback, in groups (the listener, TLS, tokens, the policy, Kafka,
//! limits, subscriptions, shutdown), each checking its own values; checked
//! once at start-up into [`Settings`], what the files they name hold, which
//! the server uses as they are.

mod edge;
mod kafka;
mod limits;
mod route;
mod security;

use std::time::Duration;

use clap::Parser;
use eventgateway_runtime::reload;

pub use self::edge::{ConnectionOverrides, EdgeFlags};
pub use self::kafka::{Compression, KafkaFlags, KafkaProperty};
pub use self::limits::{LimitFlags, ShutdownFlags, SubscriptionFlags};
pub use self::route::RouteFlags;
pub use self::security::{PolicyFlags, TlsFlags, TokenFlags};
use crate::auth::policy::{self, Policy};
pub use crate::kafka::GroupProtocol;

/// What `--help` says after the flags.
const AFTER_HELP: &str =
    "Logging follows RUST_LOG (default: info), e.g. RUST_LOG=gateway=debug,rdkafka=warn.";

/// gRPC gateway in front of Apache Kafka: publish and subscribe to topics without a Kafka client
#[derive(Debug, Clone, Parser)]
#[command(version, after_help = AFTER_HELP)]
pub struct Config {
    /// The listener.
    #[command(flatten)]
    pub edge: EdgeFlags,
    /// The listener's TLS.
    #[command(flatten)]
    pub tls: TlsFlags,
    /// Bearer tokens.
    #[command(flatten)]
    pub tokens: TokenFlags,
    /// The policy file.
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// The Kafka cluster.
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// What calls and streams may hold.
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Subscriptions.
    #[command(flatten)]
    pub subscriptions: SubscriptionFlags,
    /// The shutdown.
    #[command(flatten)]
    pub shutdown: ShutdownFlags,
    /// Acks at any replica.
    #[command(flatten)]
    pub route: RouteFlags,
}

/// What the flags name, read and checked once: the server uses it as it
/// is (no file is read twice).
#[derive(Debug)]
pub struct Settings {
    /// Every librdkafka property to set: the properties file's, then the
    /// flags'.
    pub(crate) kafka_properties: Vec<(String, String)>,
    /// The policy file as first loaded, when there is one.
    pub(crate) policy: Option<reload::Loaded<Policy>>,
    /// The keys of --route-key-file, when acks at any replica are on.
    pub(crate) route_keys: Option<Vec<Vec<u8>>>,
}

impl Config {
    /// Checks the values that clap's types cannot, with a message that says
    /// which flag to fix, and reads the files the flags name.
    pub fn validate(&self) -> Result<Settings, String> {
        let kafka_properties = self.kafka.check(self.subscriptions.revoke_grace)?;
        self.edge.check()?;
        self.tls.check()?;
        self.tokens.check()?;
        self.policy.check(self.authenticates())?;
        self.limits.check()?;
        self.subscriptions.check()?;
        self.shutdown.check()?;
        let route_keys = self.route.check(self.tls.tls_cert.is_some())?;
        let policy = match &self.policy.policy_file {
            Some(path) => Some(
                reload::load(std::slice::from_ref(path), policy::load)
                    .map_err(|error| format!("--policy-file {}: {error}", path.display()))?,
            ),
            None => None,
        };
        Ok(Settings {
            kafka_properties,
            policy,
            route_keys,
        })
    }

    /// Whether callers are authenticated (mTLS or bearer tokens).
    pub(crate) fn authenticates(&self) -> bool {
        self.tls.tls_client_ca.is_some() || self.tokens.on()
    }

    /// The defaults, whatever the environment says, for a gateway that
    /// talks to `brokers` (tests and embedding build their configuration
    /// from this).
    pub fn for_brokers(brokers: Option<String>) -> Self {
        let mut config: Config = eventgateway_runtime::config::defaults();
        config.kafka.brokers = brokers;
        config
    }
}

/// Checks that every named duration is longer than zero.
fn positive(durations: &[(&str, Duration)]) -> Result<(), String> {
    match durations.iter().find(|(_, duration)| duration.is_zero()) {
        Some((name, _)) => Err(format!("{name} must be longer than zero")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::MAX_REVOKE_GRACE;

    #[test]
    fn connection_overrides_name_addresses_and_counts() {
        let parsed = edge::parse_connection_overrides("10.0.0.5=20000, ::1=3,").unwrap();
        assert_eq!(
            parsed.0,
            [
                ("10.0.0.5".parse().unwrap(), 20_000),
                ("::1".parse().unwrap(), 3)
            ]
        );
        assert_eq!(edge::parse_connection_overrides("").unwrap().0, []);
        for bad in ["10.0.0.5", "host=5", "10.0.0.5=0", "10.0.0.5=-1"] {
            assert!(edge::parse_connection_overrides(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn web_origins_are_bare_origins_in_lower_case_or_any() {
        for (given, origin) in [
            ("https://App.Example.com", "https://app.example.com"),
            ("http://localhost:8080", "http://localhost:8080"),
            (" https://a.example ", "https://a.example"),
            ("*", "*"),
        ] {
            assert_eq!(edge::web_origin(given).as_deref(), Ok(origin), "{given}");
        }
        for bad in [
            "app.example.com",
            "ftp://a.example",
            "https://a.example/",
            "https://a.example/page",
            "https://a.example?x=1",
            "https://user@a.example",
            "",
        ] {
            let error = edge::web_origin(bad).unwrap_err();
            assert!(error.contains("scheme://host[:port]"), "{bad}: {error}");
        }
        assert!(edge::web_origin(&format!("https://{}.example", "a".repeat(300))).is_err());
        let config = Config::try_parse_from([
            "gateway",
            "--grpc-web-origins",
            "https://a.example,http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(
            config.edge.grpc_web_origins,
            ["https://a.example", "http://localhost:3000"]
        );
        assert!(Config::try_parse_from(["gateway"])
            .unwrap()
            .edge
            .grpc_web_origins
            .is_empty());
    }

    #[test]
    fn flags_parse_and_validate() {
        let config = Config::try_parse_from([
            "gateway",
            "--brokers",
            "k1:9092,k2:9092",
            "--kafka-property",
            "security.protocol=SASL_SSL",
            "--kafka-property",
            "sasl.password=a=b",
            "--delivery-timeout",
            "5s",
            "--topic-replication",
            "-1",
        ])
        .unwrap();
        assert_eq!(config.kafka.brokers.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(
            config.validate().unwrap().kafka_properties,
            vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.password".into(), "a=b".into())
            ]
        );
        assert_eq!(config.kafka.delivery_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.max_payload_bytes, 1_000_000);
        // Metrics stay on this host unless opened explicitly.
        let metrics = config.edge.metrics_addr.0.expect("metrics on by default");
        assert!(metrics.ip().is_loopback(), "{metrics}");
        config.validate().unwrap();
    }

    #[test]
    fn property_entries_that_are_not_key_value_are_refused_without_their_text() {
        let config = Config::try_parse_from([
            "gateway",
            "--kafka-property",
            "sasl.password=abc;def-hunter2",
        ])
        .unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.contains("entry 2"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let file = "# comment\n\nsasl.password = a;b=c \nclient.id=x\n";
        assert_eq!(
            kafka::parse_properties_file(file).unwrap(),
            [
                KafkaProperty::new("sasl.password", " a;b=c "),
                KafkaProperty::new("client.id", "x")
            ]
        );
        let error = kafka::parse_properties_file("a=1\nhunter2\n").unwrap_err();
        assert!(
            error.contains("line 2") && !error.contains("hunter2"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_to_fix() {
        let mut config = Config::for_brokers(None);
        config.limits.max_payload_bytes = 0;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("--max-payload-bytes"));
        let mut config = Config::for_brokers(Some(" ".into()));
        config.limits.max_payload_bytes = 10;
        assert!(config.validate().unwrap_err().contains("KAFKA_BROKERS"));
        let mut config = Config::for_brokers(None);
        config.shutdown.drain_timeout = config.shutdown.shutdown_grace;
        assert!(config.validate().unwrap_err().contains("--drain-timeout"));
        config.shutdown.drain_timeout = Duration::ZERO;
        config.subscriptions.commit_interval = Duration::ZERO;
        assert!(config.validate().unwrap_err().contains("--commit-interval"));
        let mut config = Config::for_brokers(None);
        config.subscriptions.total_buffer_bytes =
            config.subscriptions.subscription_buffer_bytes - 1;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("--total-buffer-bytes"));
        let mut config = Config::for_brokers(None);
        config.subscriptions.subscription_buffer_bytes = 1024;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("--subscription-buffer-bytes"));
        let mut config = Config::for_brokers(None);
        config.subscriptions.stall_timeout = Duration::from_millis(500);
        assert!(config.validate().unwrap_err().contains("--stall-timeout"));
    }

    #[test]
    fn the_group_protocol_is_the_flag_s_and_the_consumer_protocol_leaves_the_broker_its_settings() {
        let with = |protocol: GroupProtocol, key: &str, value: &str| {
            let mut config = Config::for_brokers(None);
            config.kafka.group_protocol = protocol;
            config.kafka.kafka_properties = vec![KafkaProperty::new(key, value)];
            config.validate()
        };
        for key in kafka::BROKER_OWNED_UNDER_CONSUMER {
            let error = with(GroupProtocol::Consumer, key, "1").unwrap_err();
            assert!(error.contains(key) && error.contains("broker"), "{error}");
            assert!(with(GroupProtocol::Classic, key, "1").is_ok(), "{key}");
        }
        let error = with(GroupProtocol::Classic, "group.protocol", "consumer").unwrap_err();
        assert!(error.contains("--group-protocol"), "{error}");
        // The grace stays within the classic rebalance timeout.
        let error = with(GroupProtocol::Classic, "max.poll.interval.ms", "5000").unwrap_err();
        assert!(error.contains("--revoke-grace"), "{error}");
        let mut config = Config::for_brokers(None);
        config.subscriptions.revoke_grace = MAX_REVOKE_GRACE + Duration::from_secs(1);
        assert!(config.validate().unwrap_err().contains("--revoke-grace"));
        let config = Config::try_parse_from(["gateway", "--group-protocol", "consumer"]).unwrap();
        assert_eq!(config.kafka.group_protocol, GroupProtocol::Consumer);
    }
}
