//! Compression: a compressible JSON payload of about 1 KB published through
//! PublishEvents, through one gateway per Kafka codec (none, lz4, zstd), and
//! through the plain gateway with each gRPC message encoding (gzip, zstd).
//! Per event: the gateway's CPU time, and the bytes that crossed the
//! loopback interface in all (`/proc/net/dev`: load generator to gateway,
//! gateway to broker, and their answers; the benchmark is the only one
//! talking there, or close to it).

use crate::clients::Target;
use crate::cpu::Processes;
use crate::options::Options;
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
struct Through<'a> {
    name: &'static str,
    target: &'a Target,
    processes: &'a Processes,
    encoding: Option<tonic::codec::CompressionEncoding>,
}

/// Publishes `--events` events to `topic` on `--publish-streams` streams
/// through the plain gateway, each of the gateways with a Kafka codec
/// (`compressed`), and the plain gateway with each gRPC encoding.
pub(crate) async fn codecs(
    (plain, processes): (&Target, &Processes),
    compressed: &[(&'static str, Target, Processes)],
    topic: &str,
    o: &Options,
) -> Result<Vec<Codec>, String> {
    let mut gateways = vec![Through {
        name: "Kafka none",
        target: plain,
        processes,
        encoding: None,
    }];
    for (name, target, processes) in compressed {
        gateways.push(Through {
            name,
            target,
            processes,
            encoding: None,
        });
    }
    for (name, encoding) in [
        ("gRPC gzip", tonic::codec::CompressionEncoding::Gzip),
        ("gRPC zstd", tonic::codec::CompressionEncoding::Zstd),
    ] {
        gateways.push(Through {
            name,
            target: plain,
            processes,
            encoding: Some(encoding),
        });
    }
    let (events, streams) = (o.events, o.publish_streams);
    let mut codecs = Vec::new();
    for through in &gateways {
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
