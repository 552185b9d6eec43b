//! Which Kafka cluster and how: brokers, librdkafka properties (flags and
//! a file), topic creation, compression, delivery and health timing, and
//! the consumer group protocol.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::kafka::GroupProtocol;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaFlags {
    /// Kafka bootstrap servers, comma-separated host:port. When unset, the
    /// gateway starts an embedded, in-memory Kafka: for development only,
    /// nothing survives a restart.
    #[arg(long = "brokers", env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Extra librdkafka client property as KEY=VALUE, applied to every Kafka
    /// client of the gateway (e.g. security.protocol=SASL_SSL,
    /// sasl.mechanism=PLAIN, sasl.username=..., sasl.password=...). Repeat the
    /// flag, or separate entries with ';' in the environment variable (a value
    /// that holds ';' goes in --kafka-properties-file). The producer's
    /// acks=all and enable.idempotence=true cannot be overridden. Values are
    /// never shown, in logs or errors, for secret properties.
    #[arg(
        long = "kafka-property",
        env = "KAFKA_PROPERTIES",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub kafka_properties: Vec<KafkaProperty>,

    /// A file of librdkafka client properties, one KEY=VALUE per line (blank
    /// lines and lines starting with '#' aside; a value is everything after
    /// the first '=', ';' included): for secrets kept out of the environment
    /// and the command line. --kafka-property entries apply after it.
    #[arg(long, env = "KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<PathBuf>,

    /// Create topics that do not exist when they are first published to or
    /// subscribed to (through the Kafka admin API). Off: such calls get
    /// NOT_FOUND. Always on for the embedded Kafka.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = false)]
    pub create_topics: bool,

    /// Partition count of topics the gateway creates.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,

    /// Replication factor of topics the gateway creates; -1 takes the
    /// broker's default.
    #[arg(long, env = "TOPIC_REPLICATION", default_value_t = -1, allow_hyphen_values = true)]
    pub topic_replication: i32,

    /// How the records the gateway writes to Kafka are compressed (librdkafka
    /// compression.type; a --kafka-property compression.type wins).
    #[arg(long, env = "KAFKA_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub kafka_compression: Compression,

    /// Longest time Kafka gets to store a published event (librdkafka
    /// message.timeout.ms). A client's shorter gRPC deadline wins.
    #[arg(long, env = "DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// How often the gateway checks that Kafka answers (health checks follow).
    #[arg(long, env = "HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// The consumer group protocol of subscriptions with a group: `classic`
    /// (any Kafka; partitions move incrementally, by the cooperative-sticky
    /// assignor) or `consumer` (KIP-848, Kafka 4.0 or later: the broker
    /// assigns partitions and sets session and heartbeat times). A group
    /// whose members used librdkafka's eager assignors (range, roundrobin)
    /// takes no cooperative member: stop those before starting these.
    #[arg(
        long,
        env = "KAFKA_GROUP_PROTOCOL",
        value_enum,
        default_value = "classic"
    )]
    pub group_protocol: GroupProtocol,
}

impl KafkaFlags {
    /// Checks what clap's types cannot, and reads the properties: the
    /// file's, then the flags'. `revoke_grace` must stay within the
    /// group's rebalance timeout.
    pub(super) fn check(&self, revoke_grace: Duration) -> Result<Vec<(String, String)>, String> {
        if matches!(&self.brokers, Some(b) if b.trim().is_empty()) {
            return Err(
                "KAFKA_BROKERS / --brokers is set but empty; unset it for the embedded Kafka"
                    .into(),
            );
        }
        if self.topic_partitions < 1 {
            return Err("--topic-partitions must be at least 1".into());
        }
        if self.topic_replication == 0 || self.topic_replication < -1 {
            return Err("--topic-replication must be -1 (broker default) or at least 1".into());
        }
        super::positive(&[
            ("--delivery-timeout", self.delivery_timeout),
            ("--health-interval", self.health_interval),
        ])?;
        let properties = self.properties()?;
        self.check_group_protocol(&properties, revoke_grace)?;
        Ok(properties)
    }

    /// Every librdkafka property to set, as KEY and VALUE: the properties
    /// file's, then the flags'. Reads the file; errors never repeat a line.
    fn properties(&self) -> Result<Vec<(String, String)>, String> {
        let mut all = match &self.kafka_properties_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    format!(
                        "cannot read --kafka-properties-file {}: {error}",
                        path.display()
                    )
                })?;
                parse_properties_file(&text)?
            }
            None => Vec::new(),
        };
        if let Some(at) = self.kafka_properties.iter().position(|p| p.key.is_empty()) {
            return Err(format!(
                "--kafka-property / KAFKA_PROPERTIES entry {} is not KEY=VALUE (its text is not shown: it may hold a secret; a value with ';' goes in --kafka-properties-file)",
                at + 1
            ));
        }
        all.extend(self.kafka_properties.iter().cloned());
        Ok(all.into_iter().map(|p| (p.key, p.value)).collect())
    }

    /// Checks that the Kafka properties leave the group protocol to
    /// `--group-protocol`, what the protocol owns to the broker, and the
    /// revoke grace within the group's rebalance timeout.
    fn check_group_protocol(
        &self,
        properties: &[(String, String)],
        revoke_grace: Duration,
    ) -> Result<(), String> {
        for (key, value) in properties {
            if key == "group.protocol" {
                return Err(
                    "set the group protocol with --group-protocol / KAFKA_GROUP_PROTOCOL, not as a Kafka property"
                        .into(),
                );
            }
            if self.group_protocol == GroupProtocol::Consumer
                && BROKER_OWNED_UNDER_CONSUMER.contains(&key.as_str())
            {
                return Err(format!(
                    "{key} cannot be set with --group-protocol consumer: the broker sets it for the group \
                     (group.consumer.* broker settings, or the group's own configuration)"
                ));
            }
            if key == "max.poll.interval.ms" {
                let limit = value.parse::<u64>().map(Duration::from_millis);
                if limit.is_ok_and(|limit| revoke_grace >= limit) {
                    return Err(
                        "--revoke-grace must be shorter than max.poll.interval.ms (the group drops a member that takes longer)"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// One librdkafka property as a flag gives it: KEY=VALUE. Anything can be
/// given (an entry without a key is refused by [`Config::validate`], which
/// never repeats its text: it may hold a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    /// The property's name; empty when the entry had none.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl KafkaProperty {
    /// The property `key` set to `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl std::str::FromStr for KafkaProperty {
    type Err = std::convert::Infallible;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        Ok(match entry.split_once('=') {
            Some((key, value)) => Self::new(key.trim(), value.trim()),
            None => Self::new("", ""),
        })
    }
}

/// The properties of a properties file's text; `Err` names the first line
/// that is not KEY=VALUE, by number only.
pub(super) fn parse_properties_file(text: &str) -> Result<Vec<KafkaProperty>, String> {
    text.lines()
        .enumerate()
        .map(|(number, line)| (number + 1, line.trim_start()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(KafkaProperty::new(key.trim(), value.trim_end_matches(['\r', '\n'])))
            }
            _ => Err(format!(
                "line {number} of --kafka-properties-file is not KEY=VALUE (its text is not shown: it may hold a secret)"
            )),
        })
        .collect()
}

/// Consumer properties the broker owns under the consumer group protocol
/// (librdkafka refuses a consumer that sets them), or that
/// `--group-protocol` sets.
pub(super) const BROKER_OWNED_UNDER_CONSUMER: [&str; 4] = [
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
];

/// A compression codec of Kafka records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's name of the codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}
