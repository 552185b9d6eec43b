//! Kafka plumbing shared by publishing and subscriptions: client
//! configuration, blocking calls off the runtime, secret property names,
//! the producer handle (replaced when it fails for good), topic checks, why
//! a topic cannot take writes, and the embedded development cluster.
//! Nothing here knows about gRPC.

pub(crate) mod embedded;
pub(crate) mod producer;
pub(crate) mod publisher;
pub(crate) mod topics;
pub(crate) mod writable;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use crate::error::Error;

/// A Kafka consumer group protocol (librdkafka's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupProtocol {
    /// The classic protocol, with the cooperative-sticky assignor.
    Classic,
    /// The consumer protocol of KIP-848 (Kafka 4.0 or later).
    Consumer,
}

impl GroupProtocol {
    /// librdkafka's name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// How long one metadata request (topic check or health probe) may take.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Properties the gateway sets on every client unless the operator sets them
/// through `--kafka-property`.
const CLIENT_DEFAULTS: &[(&str, &str)] = &[
    // Notice a broker that came back within a second, not ten.
    ("reconnect.backoff.max.ms", "1000"),
    ("client.id", "event-gateway"),
];

/// The client for metadata and admin requests: see [`Cluster::admin`].
pub(crate) type Admin = Arc<AdminClient<DefaultClientContext>>;

/// The Kafka cluster the gateway talks to, and how: its bootstrap servers
/// and the operator's librdkafka properties. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// Bootstrap servers, `host:port,...`.
    brokers: Arc<str>,
    /// The operator's properties (`--kafka-property`), for every client.
    properties: Arc<[(String, String)]>,
}

impl Cluster {
    /// The cluster at `brokers`, reached with `properties`.
    pub(crate) fn new(brokers: &str, properties: &[(String, String)]) -> Self {
        Self {
            brokers: brokers.into(),
            properties: properties.into(),
        }
    }

    /// A client configuration: the gateway's defaults, then `defaults` of
    /// this kind of client, then the operator's properties, then the
    /// settings a guarantee depends on (`enforced`), which nothing overrides.
    pub(crate) fn client_config(
        &self,
        defaults: &[(&str, &str)],
        enforced: &[(&str, String)],
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &*self.brokers);
        for (key, value) in CLIENT_DEFAULTS.iter().chain(defaults) {
            config.set(*key, *value);
        }
        for (key, value) in self.properties.iter() {
            config.set(key, value);
        }
        for (key, value) in enforced {
            config.set(*key, value);
        }
        config
    }

    /// The client for metadata and admin requests (cloning shares it):
    /// apart from the producer, whose connections a broker holds while it
    /// waits to replicate a produce (a request behind one would wait as
    /// long, and a health probe would see an outage that is not there).
    /// `create_topics_on_metadata` lets its metadata requests create
    /// missing topics (the embedded cluster's behaviour).
    pub(crate) fn admin(&self, create_topics_on_metadata: bool) -> Result<Admin, KafkaError> {
        let client = self
            .client_config(
                &[],
                &[(
                    "allow.auto.create.topics",
                    create_topics_on_metadata.to_string(),
                )],
            )
            .create()
            .map_err(redacted)?;
        Ok(Arc::new(client))
    }

    /// What to log of the connection: the brokers, and the properties with
    /// secret values masked.
    pub(crate) fn describe(&self) -> (String, Vec<String>) {
        let shown = self
            .properties
            .iter()
            .map(|(k, v)| {
                if is_secret(k) {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        (self.brokers.to_string(), shown)
    }
}

/// Runs a blocking librdkafka call off the async runtime.
pub(crate) async fn blocking<T, F>(call: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|join| Error::Kafka(format!("a Kafka call failed: {join}")))?
}

/// Property names whose values are secrets and never logged.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "token",
        "key.pem",
        "private",
        "oauthbearer.config",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// The error of creating a client, with the value of the property
/// librdkafka refused taken out (librdkafka's error repeats it, and it may
/// be a secret): what is left names the property and says what is wrong.
pub(crate) fn redacted(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, description, key, value) => {
            let description = if value.is_empty() {
                description
            } else {
                description.replace(&value, "***")
            };
            KafkaError::ClientConfig(code, description, key, "(not shown)".into())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_properties_override_defaults_but_not_enforced_settings() {
        let cluster = Cluster::new(
            "k:9092",
            &[
                ("linger.ms".into(), "20".into()),
                ("acks".into(), "1".into()),
            ],
        );
        let config = cluster.client_config(&[("linger.ms", "5")], &[("acks", "all".into())]);
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
    }

    #[test]
    fn secrets_are_recognised_and_masked() {
        assert!(is_secret("sasl.password"));
        assert!(is_secret("ssl.key.password"));
        assert!(!is_secret("security.protocol"));
        let cluster = Cluster::new(
            "k:9092",
            &[
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.password".into(), "hunter2".into()),
            ],
        );
        let (brokers, shown) = cluster.describe();
        assert_eq!(brokers, "k:9092");
        assert_eq!(shown, ["security.protocol=SASL_SSL", "sasl.password=***"]);
        assert!(is_secret("sasl.oauthbearer.config"));
        assert!(is_secret("sasl.oauthbearer.client.secret"));
    }

    #[test]
    fn a_refused_property_is_named_without_its_value() {
        let cluster = Cluster::new("k:9092", &[("no.such.property".into(), "hunter2".into())]);
        let error = cluster
            .client_config(&[], &[])
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .expect("librdkafka refuses the property");
        assert!(
            error.to_string().contains("hunter2"),
            "librdkafka repeats it"
        );
        let shown = redacted(error).to_string();
        assert!(shown.contains("no.such.property"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
