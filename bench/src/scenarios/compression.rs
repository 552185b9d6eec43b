//! Compression: a compressible JSON payload of about 1 KB published through
//! PublishEvents, through one gateway per Kafka codec (none, lz4, zstd), and
//! through the plain gateway with each gRPC message encoding (gzip, zstd).
//! Per event: the gateway's CPU time, and the bytes that crossed the
//! loopback interface in all (`/proc/net/dev`: load generator to gateway,
//! gateway to broker, and their answers; the benchmark is the only one
//! talking there, or close to it).

use crate::clients::Target;
use crate::cpu::Processes;
use crate::scenarios::publish::{self, Shape};
use crate::tally::{on_cpu, Throughput};

/// The JSON payload's size, about.
pub(crate) const PAYLOAD_BYTES: usize = 1024;

/// One codec's run.
pub(crate) struct Codec {
    /// Which codec, as the table and the JSON name it.
    pub(crate) name: &'static str,
    pub(crate) run: Throughput,
    /// Bytes over loopback per event, every hop.
    pub(crate) wire: f64,
}

/// A gateway to publish through, with the processes whose CPU counts.
pub(crate) struct Through<'a> {
    pub(crate) name: &'static str,
    pub(crate) target: &'a Target,
    pub(crate) processes: &'a Processes,
    pub(crate) encoding: Option<tonic::codec::CompressionEncoding>,
}

/// Publishes `events` events to `topic` through each of `gateways` on
/// `streams` streams.
pub(crate) async fn codecs(
    gateways: &[Through<'_>],
    topic: &str,
    events: u64,
    streams: usize,
) -> Result<Vec<Codec>, String> {
    let mut codecs = Vec::new();
    for through in gateways {
        let channels = through.target.connect(streams.max(1)).await?;
        let shape = Shape {
            batch: 1,
            json: true,
            encoding: through.encoding,
        };
        let before = loopback_bytes();
        let run = publish::stream(&channels, topic, (events, PAYLOAD_BYTES), streams, shape);
        let run = on_cpu(through.processes, run).await;
        let after = loopback_bytes();
        codecs.push(Codec {
            name: through.name,
            run: Throughput {
                name: through.name,
                ..run
            },
            wire: after.saturating_sub(before) as f64 / events.max(1) as f64,
        });
    }
    Ok(codecs)
}

/// Bytes received on the loopback interface so far (on loopback each byte
/// sent is received once).
fn loopback_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix("lo:"))
        .and_then(|fields| fields.split_whitespace().next())
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(0)
}
