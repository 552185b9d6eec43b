//! Plain HTTP publish: the unary scenario's callers, each event POSTed as a
//! binary-mode CloudEvent (`ce-*` headers, the payload as the body) over
//! pooled HTTP/1.1 keep-alive connections, as a webhook sender or a script
//! posts; to set against unary PublishEvent in the same run, by events a
//! second and by the gateway's CPU time per event.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::publish::closed_loop;
use super::step;
use crate::clients::Target;
use crate::cpu::Processes;
use crate::options::Options;
use crate::tally::{on_cpu, Throughput};

/// The scenario's name.
pub(crate) const HTTP_PUBLISH: &str = "HTTP POST (CloudEvent)";

/// `--events` events of `--size` bytes POSTed to a new topic `topic` of
/// the gateway `target`, from `--concurrency` callers; the CPU time of
/// `processes` counted.
pub(crate) async fn publish(
    target: &Target,
    (brokers, topic): (&str, &str),
    processes: &Processes,
    o: &Options,
) -> Result<Throughput, String> {
    step("HTTP POST of a CloudEvent, the unary callers");
    testkit::create_topics(brokers, &[topic], o.partitions).await?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(o.concurrency)
        .build_http::<Full<Bytes>>();
    let url = format!("{}/v1/topics/{topic}/events", target.url);
    let body = Bytes::from(vec![b'x'; o.size]);
    let calls = closed_loop(HTTP_PUBLISH, o.events, o.concurrency, |_| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        move |index| {
            let request = http::Request::post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("bench-{index}"))
                .header("ce-source", "/gateway-bench")
                .header("ce-type", "bench.event")
                .header("ce-partitionkey", index.to_string())
                .header("content-type", "application/octet-stream")
                .body(Full::new(body.clone()));
            let client = client.clone();
            async move {
                let request = request.map_err(|error| format!("a request: {error}"))?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|error| format!("HTTP POST: {error}"))?;
                let status = response.status();
                let answer = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|error| format!("HTTP answer: {error}"))?
                    .to_bytes();
                match status.as_u16() {
                    200 => Ok(()),
                    other => Err(format!(
                        "HTTP {other}: {}",
                        String::from_utf8_lossy(&answer)
                    )),
                }
            }
        }
    });
    Ok(on_cpu(processes, calls).await)
}
