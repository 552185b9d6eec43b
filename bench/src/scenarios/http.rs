//! Plain HTTP publish: the unary scenario's callers, each event POSTed over
//! pooled HTTP/1.1 keep-alive connections as a binary-mode CloudEvent
//! (`ce-*` headers, the payload as the body), as a webhook sender or a
//! script posts, or to the JSON API (`/v1/topics/{topic}:publish`, the
//! payload as the event's `text`); to set against unary PublishEvent in
//! the same run, by events a second and by the gateway's CPU time per
//! event.

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

/// The scenario's name, CloudEvents.
pub(crate) const HTTP_PUBLISH: &str = "HTTP POST (CloudEvent)";
/// The scenario's name, the JSON API.
pub(crate) const HTTP_JSON_PUBLISH: &str = "HTTP POST (JSON API)";

/// How the events are POSTed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// Binary-mode CloudEvents.
    CloudEvent,
    /// PublishEvent's request as JSON.
    Json,
}

/// `--events` events of `--size` bytes POSTed in `form` to a new topic
/// `topic` of the gateway `target`, from `--concurrency` callers; the CPU
/// time of `processes` counted.
pub(crate) async fn publish(
    target: &Target,
    (brokers, topic, form): (&str, &str, Form),
    processes: &Processes,
    o: &Options,
) -> Result<Throughput, String> {
    let name = match form {
        Form::CloudEvent => HTTP_PUBLISH,
        Form::Json => HTTP_JSON_PUBLISH,
    };
    step(name);
    testkit::create_topics(brokers, &[topic], o.partitions).await?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(o.concurrency)
        .build_http::<Full<Bytes>>();
    let url = match form {
        Form::CloudEvent => format!("{}/v1/topics/{topic}/events", target.url),
        Form::Json => format!("{}/v1/topics/{topic}:publish", target.url),
    };
    let payload = "x".repeat(o.size);
    let calls = closed_loop(name, o.events, o.concurrency, |_| {
        let (client, url, payload) = (client.clone(), url.clone(), payload.clone());
        move |index| {
            let request = match form {
                Form::CloudEvent => http::Request::post(&url)
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("bench-{index}"))
                    .header("ce-source", "/gateway-bench")
                    .header("ce-type", "bench.event")
                    .header("ce-partitionkey", index.to_string())
                    .header("content-type", "application/octet-stream")
                    .body(Full::new(Bytes::from(payload.clone()))),
                Form::Json => {
                    let body = serde_json::json!({
                        "key": index.to_string(),
                        "event": {
                            "id": format!("bench-{index}"),
                            "source": "/gateway-bench",
                            "type": "bench.event",
                            "text": payload,
                        },
                    });
                    http::Request::post(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                }
            };
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

/// Both forms, one after the other, each on a new topic named after
/// `topic`: CloudEvents, then the JSON API.
pub(crate) async fn both(
    target: &Target,
    (brokers, topic): (&str, &str),
    processes: &Processes,
    o: &Options,
) -> Result<(Throughput, Throughput), String> {
    let json = format!("{topic}-json");
    Ok((
        publish(target, (brokers, topic, Form::CloudEvent), processes, o).await?,
        publish(target, (brokers, &json, Form::Json), processes, o).await?,
    ))
}

/// Both forms, not run.
pub(crate) fn skipped() -> (Throughput, Throughput) {
    (
        Throughput::skipped(HTTP_PUBLISH),
        Throughput::skipped(HTTP_JSON_PUBLISH),
    )
}
