//! Configuration: command-line flags, each with an environment variable
//! fallback, validated once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub use crate::kafka::GroupProtocol;
use crate::subscribe::{MAX_ACK_TIMEOUT, MAX_UNACKED, MIN_ACK_TIMEOUT};

/// What `--help` says after the flags.
const AFTER_HELP: &str =
    "Logging follows RUST_LOG (default: info), e.g. RUST_LOG=gateway=debug,rdkafka=warn.";

/// The most slack accepted on a token's exp and nbf.
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);
/// `--connection-overrides`: addresses and the connections each may hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionOverrides(pub Vec<(std::net::IpAddr, usize)>);

/// Reads `--connection-overrides`: `address=connections` entries, comma
/// separated (`10.0.0.5=20000,127.0.0.1=50000`).
fn parse_connection_overrides(text: &str) -> Result<ConnectionOverrides, String> {
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || format!("{entry:?} is not address=connections (e.g. 10.0.0.5=20000)");
        let (address, count) = entry.split_once('=').ok_or_else(bad)?;
        let address = address.trim().parse().map_err(|_| bad())?;
        let connections: usize = count.trim().parse().map_err(|_| bad())?;
        if connections == 0 {
            return Err(bad());
        }
        entries.push((address, connections));
    }
    Ok(ConnectionOverrides(entries))
}

/// The least `--max-header-bytes`: a token's 16 KiB and the rest of a
/// call's metadata.
const MIN_HEADER_BYTES: u32 = 20 * 1024;
/// The smallest byte buffer of a subscription.
const MIN_BUFFER_BYTES: usize = 64 * 1024;
/// The shortest stall timeout.
const MIN_STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// gRPC gateway in front of Apache Kafka: publish and subscribe to topics without a Kafka client
#[derive(Debug, Clone, Parser)]
#[command(version, after_help = AFTER_HELP)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long = "listen", env = "GATEWAY_ADDR", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Web origins whose pages may call the gateway with gRPC-Web
    /// (comma-separated, each scheme://host[:port], or * for any): CORS.
    /// None by default, so browsers keep pages of other origins out;
    /// gRPC-Web clients outside a browser need no origin.
    #[arg(long, env = "GRPC_WEB_ORIGINS", value_delimiter = ',', value_parser = web_origin)]
    pub grpc_web_origins: Vec<String>,

    /// Serves the live event viewer, a web page that subscribes, shows
    /// events as they arrive and publishes test events, at / on the
    /// gateway's port (open http://HOST:PORT/). Its calls are gRPC-Web
    /// calls like any other: tokens and the policy apply.
    #[arg(long, env = "VIEWER")]
    pub viewer: bool,

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

    /// Largest event payload accepted by PublishEvent, in bytes; larger ones
    /// get INVALID_ARGUMENT. The producer takes records up to this plus 64
    /// KiB (key and headers); the broker's message.max.bytes (1 MiB by
    /// default) must take them too.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 1_000_000)]
    pub max_payload_bytes: usize,

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

    /// Upper bound on any unary call, whatever deadline the client sent.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Most unary calls (PublishEvent, Acknowledge) handled at once across
    /// all connections, counted once a call's request has arrived; further
    /// calls get RESOURCE_EXHAUSTED at once instead of queueing. Streams
    /// have limits of their own; health checks have none.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Most Subscribe and StreamingSubscribe streams open at once; further
    /// ones get RESOURCE_EXHAUSTED. Streams never count against
    /// --max-concurrent-requests.
    #[arg(long, env = "MAX_SUBSCRIPTIONS", default_value_t = 50_000)]
    pub max_subscriptions: usize,

    /// Most Kafka consumers at once: one per subscription with a group,
    /// MANUAL acks or a replay, one per live tail. A subscription that would
    /// need another gets RESOURCE_EXHAUSTED (each consumer takes threads and
    /// connections of its own).
    #[arg(long, env = "MAX_CONSUMERS", default_value_t = 256)]
    pub max_consumers: usize,

    /// Most PublishEvents streams open at once; further ones get
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_PUBLISH_STREAMS", default_value_t = 1_000)]
    pub max_publish_streams: usize,

    /// The percent of each global cap (--max-publish-streams,
    /// --max-subscriptions, --max-consumers) one principal may hold, or one
    /// connection when calls carry no principal; a policy grant's
    /// `quota.max_share_percent` overrides it for its principals.
    #[arg(long, env = "MAX_SHARE_PERCENT", default_value_t = 25)]
    pub max_share_percent: u32,

    /// Longest a PublishEvents stream may send nothing: then it is ended
    /// (DEADLINE_EXCEEDED, saying so), and its place is free.
    #[arg(long, env = "PUBLISH_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5m")]
    pub publish_idle_timeout: Duration,

    /// Most client connections at once; a connection beyond it is closed as
    /// soon as it is accepted (and logged).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most client connections from one address open at once (Kafka's
    /// `max.connections.per.ip`); more are closed as soon as accepted.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,

    /// Most new connections from one address a second (a second's worth at
    /// once); faster ones are closed as soon as accepted.
    #[arg(long, env = "MAX_CONNECTION_RATE_PER_IP", default_value_t = 200.0)]
    pub max_connection_rate_per_ip: f64,

    /// Addresses with limits of their own, `address=connections` comma
    /// separated (a load balancer, a benchmark host): each may hold that
    /// many connections and open as many a second.
    #[arg(long, env = "CONNECTION_OVERRIDES", default_value = "", value_parser = parse_connection_overrides)]
    pub connection_overrides: ConnectionOverrides,

    /// Most streams (calls) open at once on one HTTP/2 connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 1_000)]
    pub max_streams_per_connection: u32,

    /// Most bytes of headers (metadata) one call may send over HTTP/2
    /// (SETTINGS_MAX_HEADER_LIST_SIZE): within it, a call with a token
    /// over its own limit gets UNAUTHENTICATED; past it, HTTP/2 refuses the
    /// call (431) or, far past it, closes the connection (its header
    /// compression state is shared by every call on it).
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: u32,

    /// Longest a unary or server-streaming call's request may take to
    /// arrive, from its headers to the end of its body; a slower one gets
    /// DEADLINE_EXCEEDED.
    #[arg(long, env = "REQUEST_ARRIVAL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_arrival_timeout: Duration,

    /// Longest a new connection may go without starting a call; then it is
    /// closed.
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Longest a connection may stay open with no call in progress; then it
    /// is closed.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How often the gateway pings a client over HTTP/2 (and probes its TCP
    /// connection) to find it is still there.
    #[arg(long, env = "KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Duration,

    /// How long a client has to answer a ping; a connection that does not
    /// is closed, and its streams end (a frozen subscriber's partitions go
    /// to the rest of its group).
    #[arg(long, env = "KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Deliveries a subscription buffers for a slow client before its Kafka
    /// consumer is paused.
    #[arg(long, env = "SUBSCRIPTION_BUFFER", default_value_t = 64)]
    pub subscription_buffer: usize,

    /// Bytes of deliveries a subscription buffers for a slow client before
    /// its Kafka consumer is paused (a delivery larger than this still goes,
    /// alone).
    #[arg(long, env = "SUBSCRIPTION_BUFFER_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub subscription_buffer_bytes: usize,

    /// Bytes of deliveries all subscriptions together buffer for their
    /// clients; a subscription that finds none free waits (its consumer
    /// paused). Also bounds what the Kafka consumers prefetch: each new one
    /// gets this divided by the consumers open, at most half of
    /// --subscription-buffer-bytes (1 to 16 MiB).
    #[arg(long, env = "TOTAL_BUFFER_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub total_buffer_bytes: usize,

    /// How long a subscription's client may read nothing while deliveries
    /// wait for it; then its stream ends with RESOURCE_EXHAUSTED, freeing
    /// its buffer (as Kafka's max.poll.interval.ms removes a consumer that
    /// stops polling).
    #[arg(long, env = "STALL_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,

    /// ACK_MODE_MANUAL: how long a delivery may stay unacknowledged before it
    /// is delivered again, unless the subscription asks otherwise.
    #[arg(long, env = "ACK_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// ACK_MODE_MANUAL: the most deliveries a subscription has out and
    /// unacknowledged, unless it asks otherwise (max_unacked).
    #[arg(long, env = "MAX_UNACKED", default_value_t = 100)]
    pub max_unacked: u32,

    /// Where Prometheus metrics are served (GET /metrics); 0 or empty turns
    /// them off. Loopback unless an operator opens it to other hosts.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: eventgateway_runtime::metrics::MetricsAddr,

    /// Serve the metrics over HTTPS, with --tls-cert and --tls-key (no
    /// client certificate is asked for).
    #[arg(long, env = "METRICS_TLS", default_value_t = false)]
    pub metrics_tls: bool,

    /// How often the gateway checks that Kafka answers (health checks follow).
    #[arg(long, env = "HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// How often a subscription with a consumer group commits its offsets
    /// (what was settled in ACK_MODE_MANUAL, what was handed over in AUTO):
    /// after a gateway crash, what was settled since the last commit is
    /// delivered again.
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,

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

    /// On a rebalance, how long a subscription losing partitions waits for
    /// the acks of its deliveries out on them (sending nothing new of them)
    /// before it hands them on with what was settled committed; the group's
    /// rebalance waits as long. 0 hands them on at once (the deliveries out
    /// come again to the next owner).
    #[arg(long, env = "REVOKE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub revoke_grace: Duration,

    /// At shutdown, how long an ACK_MODE_MANUAL stream with deliveries out
    /// keeps taking their acks (on a StreamingSubscribe stream) before it
    /// ends, sending nothing new meanwhile: what is settled then is
    /// committed, so a client that keeps acking gets nothing twice after a
    /// rolling restart. 0 ends streams at once. Within --shutdown-grace.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Longest time shutdown waits for in-flight calls and for the producer
    /// to flush.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
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

/// The policy in a policy file's bytes.
pub(crate) fn parse_policy(bytes: &[u8]) -> Result<crate::auth::policy::Policy, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())?;
    crate::auth::policy::Policy::parse(text)
}

/// The properties of a properties file's text; `Err` names the first line
/// that is not KEY=VALUE, by number only.
fn parse_properties_file(text: &str) -> Result<Vec<KafkaProperty>, String> {
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
const BROKER_OWNED_UNDER_CONSUMER: [&str; 4] = [
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
];

/// The longest revoke grace accepted: well within the classic protocol's
/// rebalance timeout (`max.poll.interval.ms`, 300 s by default), past which
/// the group would drop the member.
pub(crate) const MAX_REVOKE_GRACE: Duration = Duration::from_secs(120);

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

/// The longest web origin accepted.
const MAX_ORIGIN_LEN: usize = 256;

/// A web origin as browsers send it (scheme://host[:port], lower case), or
/// `*`.
fn web_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    let shape = "an origin is scheme://host[:port], e.g. https://app.example.com, or *";
    if text.len() > MAX_ORIGIN_LEN {
        return Err(format!("at most {MAX_ORIGIN_LEN} bytes; {shape}"));
    }
    let uri: http::Uri = text.parse().map_err(|_| shape.to_owned())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/") && !text.ends_with('/');
    match uri.authority() {
        Some(authority) if scheme_ok && bare && !authority.as_str().contains('@') => Ok(format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            authority.as_str().to_ascii_lowercase()
        )),
        _ => Err(shape.to_owned()),
    }
}

impl Config {
    /// Every librdkafka property to set, as KEY and VALUE: the properties
    /// file's, then the flags'. Reads the file; errors never repeat a line.
    pub fn all_kafka_properties(&self) -> Result<Vec<(String, String)>, String> {
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

    /// Checks the values that clap's types cannot, with a message that says
    /// which flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        let properties = self.all_kafka_properties()?;
        self.validate_group_protocol(&properties)?;
        if self.max_payload_bytes == 0 {
            return Err("--max-payload-bytes must be at least 1".into());
        }
        for (name, limit) in [
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-subscriptions", self.max_subscriptions),
            ("--max-consumers", self.max_consumers),
            ("--max-publish-streams", self.max_publish_streams),
            ("--max-connections", self.max_connections),
            (
                "--max-streams-per-connection",
                self.max_streams_per_connection as usize,
            ),
        ] {
            if limit == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.max_connections_per_ip == 0 {
            return Err("--max-connections-per-ip must be at least 1".into());
        }
        if !(self.max_connection_rate_per_ip.is_finite() && self.max_connection_rate_per_ip > 0.0) {
            return Err("--max-connection-rate-per-ip must be above 0".into());
        }
        if !(1..=100).contains(&self.max_share_percent) {
            return Err("--max-share-percent must be 1 to 100".into());
        }
        if self.publish_idle_timeout.is_zero() {
            return Err("--publish-idle-timeout must be above 0".into());
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!(
                "--max-header-bytes must be at least {MIN_HEADER_BYTES} (a bearer token alone may take 16 KiB)"
            ));
        }
        if self.subscription_buffer == 0 {
            return Err("--subscription-buffer must be at least 1".into());
        }
        if self.subscription_buffer_bytes < MIN_BUFFER_BYTES {
            return Err(format!(
                "--subscription-buffer-bytes must be at least {MIN_BUFFER_BYTES}"
            ));
        }
        if self.total_buffer_bytes < self.subscription_buffer_bytes {
            return Err("--total-buffer-bytes must be at least --subscription-buffer-bytes".into());
        }
        if self.stall_timeout < MIN_STALL_TIMEOUT {
            return Err(format!(
                "--stall-timeout must be at least {MIN_STALL_TIMEOUT:?}"
            ));
        }
        if !(1..=MAX_UNACKED).contains(&self.max_unacked) {
            return Err(format!("--max-unacked must be 1 to {MAX_UNACKED}"));
        }
        if !(MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(&self.ack_timeout) {
            return Err(format!(
                "--ack-timeout must be {MIN_ACK_TIMEOUT:?} to {MAX_ACK_TIMEOUT:?}"
            ));
        }
        if self.topic_partitions < 1 {
            return Err("--topic-partitions must be at least 1".into());
        }
        if self.topic_replication == 0 || self.topic_replication < -1 {
            return Err("--topic-replication must be -1 (broker default) or at least 1".into());
        }
        for (name, duration) in [
            ("--delivery-timeout", self.delivery_timeout),
            ("--request-timeout", self.request_timeout),
            ("--health-interval", self.health_interval),
            ("--request-arrival-timeout", self.request_arrival_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
            ("--reload-interval", self.reload_interval),
            ("--jwks-refresh", self.jwks_refresh),
            ("--commit-interval", self.commit_interval),
        ] {
            if duration.is_zero() {
                return Err(format!("{name} must be longer than zero"));
            }
        }
        if self.drain_timeout >= self.shutdown_grace {
            return Err("--drain-timeout must be shorter than --shutdown-grace".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
        }
        if self.metrics_tls && self.tls_cert.is_none() {
            return Err("--metrics-tls needs --tls-cert and --tls-key".into());
        }
        if self.jwks_file.is_some() || self.jwks_url.is_some() {
            if self.jwt_issuer.as_deref().is_none_or(str::is_empty)
                || self.jwt_audience.as_deref().is_none_or(str::is_empty)
            {
                return Err("bearer tokens (--jwks-file or --jwks-url) need --jwt-issuer and --jwt-audience".into());
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
        }
        if let Some(path) = &self.policy_file {
            if !self.authenticates() {
                return Err("--policy-file needs client authentication (--tls-client-ca, --jwks-file or --jwks-url): a policy grants rights to principals".into());
            }
            let bytes = eventgateway_runtime::reload::read_file(path)
                .map_err(|error| format!("--policy-file: {error}"))?;
            parse_policy(&bytes)
                .map_err(|error| format!("--policy-file {}: {error}", path.display()))?;
        }
        if self.protect_reflection && !self.authenticates() {
            return Err("--protect-reflection needs client authentication (--tls-client-ca, --jwks-file or --jwks-url)".into());
        }
        if matches!(&self.brokers, Some(b) if b.trim().is_empty()) {
            return Err(
                "KAFKA_BROKERS / --brokers is set but empty; unset it for the embedded Kafka"
                    .into(),
            );
        }
        Ok(())
    }

    /// Checks that the Kafka properties leave the group protocol to
    /// `--group-protocol`, and what the protocol owns to the broker.
    fn validate_group_protocol(&self, properties: &[(String, String)]) -> Result<(), String> {
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
                if limit.is_ok_and(|limit| self.revoke_grace >= limit) {
                    return Err(
                        "--revoke-grace must be shorter than max.poll.interval.ms (the group drops a member that takes longer)"
                            .into(),
                    );
                }
            }
        }
        if self.revoke_grace > MAX_REVOKE_GRACE {
            return Err(format!(
                "--revoke-grace must be at most {MAX_REVOKE_GRACE:?}"
            ));
        }
        Ok(())
    }

    /// Whether callers are authenticated (mTLS or bearer tokens).
    pub(crate) fn authenticates(&self) -> bool {
        self.tls_client_ca.is_some() || self.jwks_file.is_some() || self.jwks_url.is_some()
    }

    /// Where token keys come from, when tokens are on.
    pub(crate) fn jwks_source(&self) -> Option<crate::auth::jwks::JwksSource> {
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

    /// The listener's TLS files, when TLS is on.
    pub(crate) fn tls_files(&self) -> Option<crate::edge::TlsFiles> {
        Some(crate::edge::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The defaults, whatever the environment says, for a gateway that
    /// talks to `brokers` (tests and embedding build their configuration
    /// from this).
    pub fn for_brokers(brokers: Option<String>) -> Self {
        let mut config: Config = eventgateway_runtime::config::defaults();
        config.brokers = brokers;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_overrides_name_addresses_and_counts() {
        let parsed = parse_connection_overrides("10.0.0.5=20000, ::1=3,").unwrap();
        assert_eq!(
            parsed.0,
            [
                ("10.0.0.5".parse().unwrap(), 20_000),
                ("::1".parse().unwrap(), 3)
            ]
        );
        assert_eq!(parse_connection_overrides("").unwrap().0, []);
        for bad in ["10.0.0.5", "host=5", "10.0.0.5=0", "10.0.0.5=-1"] {
            assert!(parse_connection_overrides(bad).is_err(), "{bad}");
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
            assert_eq!(web_origin(given).as_deref(), Ok(origin), "{given}");
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
            let error = web_origin(bad).unwrap_err();
            assert!(error.contains("scheme://host[:port]"), "{bad}: {error}");
        }
        assert!(web_origin(&format!("https://{}.example", "a".repeat(300))).is_err());
        let config = Config::try_parse_from([
            "gateway",
            "--grpc-web-origins",
            "https://a.example,http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(
            config.grpc_web_origins,
            ["https://a.example", "http://localhost:3000"]
        );
        assert!(Config::try_parse_from(["gateway"])
            .unwrap()
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
        assert_eq!(config.brokers.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(
            config.all_kafka_properties().unwrap(),
            vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.password".into(), "a=b".into())
            ]
        );
        assert_eq!(config.delivery_timeout, Duration::from_secs(5));
        assert_eq!(config.max_payload_bytes, 1_000_000);
        // Metrics stay on this host unless opened explicitly.
        let metrics = config.metrics_addr.0.expect("metrics on by default");
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
            parse_properties_file(file).unwrap(),
            [
                KafkaProperty::new("sasl.password", " a;b=c "),
                KafkaProperty::new("client.id", "x")
            ]
        );
        let error = parse_properties_file("a=1\nhunter2\n").unwrap_err();
        assert!(
            error.contains("line 2") && !error.contains("hunter2"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_to_fix() {
        let mut config = Config::for_brokers(None);
        config.max_payload_bytes = 0;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("--max-payload-bytes"));
        let mut config = Config::for_brokers(Some(" ".into()));
        config.max_payload_bytes = 10;
        assert!(config.validate().unwrap_err().contains("KAFKA_BROKERS"));
        let mut config = Config::for_brokers(None);
        config.drain_timeout = config.shutdown_grace;
        assert!(config.validate().unwrap_err().contains("--drain-timeout"));
        config.drain_timeout = Duration::ZERO;
        config.commit_interval = Duration::ZERO;
        assert!(config.validate().unwrap_err().contains("--commit-interval"));
        let mut config = Config::for_brokers(None);
        config.total_buffer_bytes = config.subscription_buffer_bytes - 1;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("--total-buffer-bytes"));
        let mut config = Config::for_brokers(None);
        config.subscription_buffer_bytes = 1024;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("--subscription-buffer-bytes"));
        let mut config = Config::for_brokers(None);
        config.stall_timeout = Duration::from_millis(500);
        assert!(config.validate().unwrap_err().contains("--stall-timeout"));
    }

    #[test]
    fn the_group_protocol_is_the_flag_s_and_the_consumer_protocol_leaves_the_broker_its_settings() {
        let with = |protocol: GroupProtocol, key: &str, value: &str| {
            let mut config = Config::for_brokers(None);
            config.group_protocol = protocol;
            config.kafka_properties = vec![KafkaProperty::new(key, value)];
            config.validate()
        };
        for key in BROKER_OWNED_UNDER_CONSUMER {
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
        config.revoke_grace = MAX_REVOKE_GRACE + Duration::from_secs(1);
        assert!(config.validate().unwrap_err().contains("--revoke-grace"));
        let config = Config::try_parse_from(["gateway", "--group-protocol", "consumer"]).unwrap();
        assert_eq!(config.group_protocol, GroupProtocol::Consumer);
    }
}
