//! The Kafka side of the gateway: one shared producer, topic checks, consumer
//! subscriptions, health probes, and the embedded development cluster.

pub mod embedded;
pub mod producer;
pub mod subscription;
pub mod topics;

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::Error;

/// How long one metadata request (topic check or health probe) may take.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Properties the gateway sets on every client unless the operator sets them
/// through `--kafka-property`.
const CLIENT_DEFAULTS: &[(&str, &str)] = &[
    // Notice a broker that came back within a second, not ten.
    ("reconnect.backoff.max.ms", "1000"),
    ("client.id", "event-gateway"),
];

/// Builds a client configuration: the gateway's defaults, then the
/// operator's properties, then the settings a guarantee depends on.
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
    enforced: &[(&str, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in CLIENT_DEFAULTS.iter().chain(defaults) {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    for (key, value) in enforced {
        config.set(*key, value);
    }
    config
}

/// Runs a blocking librdkafka call off the async runtime.
pub async fn blocking<T, F>(call: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|join| Error::Kafka(format!("a Kafka call failed: {join}")))?
}

/// Property names whose values are secrets and never logged.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "key.pem", "private"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_properties_override_defaults_but_not_enforced_settings() {
        let config = client_config(
            "k:9092",
            &[("linger.ms", "5")],
            &[
                ("linger.ms".into(), "20".into()),
                ("acks".into(), "1".into()),
            ],
            &[("acks", "all".into())],
        );
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret("sasl.password"));
        assert!(is_secret("ssl.key.password"));
        assert!(!is_secret("security.protocol"));
    }
}
