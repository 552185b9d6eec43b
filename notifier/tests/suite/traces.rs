//! One trace from publisher to email: with OTEL_EXPORTER_OTLP_ENDPOINT set,
//! the gateway and the notifier binaries export their spans to a real
//! OTLP/gRPC receiver run by this test. A registration published with a known
//! `traceparent` shows up as one trace: the gateway's RPC, its Kafka send and
//! its delivery, then the notifier's handling and its SMTP send, each the
//! child of the one before. The gateway's log line names the trace too. A
//! CloudEvent POSTed over plain HTTP continues its `traceparent` as well.

use std::sync::{Arc, Mutex};

use crate::support::*;
use eventgateway::v1::PublishEventRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use testkit::*;

/// A span as received, with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
}

/// The OTLP/gRPC trace receiver: keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The trace of the caller of the plain HTTP publish.
const HTTP_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_one_trace_from_publish_to_email() {
    // The receiver.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let broker = Broker::start().await;
    let topic = topic("traced");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(&format!("{topic}.dlq"), 1).await;
    let port = free_port();
    let bin_dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_notifier"))
        .parent()
        .unwrap()
        .to_owned();
    let (mut gateway, mut log) = gateway_process(
        &bin_dir.join("gateway"),
        port,
        &broker.brokers(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("RUST_LOG", "info,gateway=debug,rdkafka=off,librdkafka=off"),
        ],
        &[],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_serving(addr).await;

    let smtp = SmtpServer::start(&[]);
    let state = state_dir();
    let _notifier = Notifier::start_with(
        addr,
        &topic,
        &smtp.url(),
        &state,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
        ],
    );

    let mut client = client(addr).await;
    let mut request = tonic::Request::new(PublishEventRequest {
        topic: topic.clone(),
        key: "7".into(),
        event: Some(json_event(user(7))),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-01").parse().unwrap(),
    );
    client.publish_event(request).await.expect("publish");
    smtp.wait_for_recipients(1).await;

    // Every hop reports a span of the trace, each the child of the last.
    let find = |service: &str, kind: SpanKind| -> Option<Received> {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.trace_id == TRACE_ID && s.service == service && s.kind == kind as i32)
            .cloned()
    };
    eventually(
        "both services exported their spans of the trace",
        || async {
            find("gateway", SpanKind::Server).is_some()
                && find("gateway", SpanKind::Producer).is_some()
                && find("gateway", SpanKind::Consumer).is_some()
                && find("notifier", SpanKind::Consumer).is_some()
                && find("notifier", SpanKind::Client).is_some()
        },
    )
    .await;
    let rpc = find("gateway", SpanKind::Server).unwrap();
    let send = find("gateway", SpanKind::Producer).unwrap();
    let deliver = find("gateway", SpanKind::Consumer).unwrap();
    let handle = find("notifier", SpanKind::Consumer).unwrap();
    let smtp_send = find("notifier", SpanKind::Client).unwrap();
    assert_eq!(rpc.name, "eventgateway.v1.EventGateway/PublishEvent");
    assert_eq!(
        rpc.parent_span_id, CALLER_SPAN,
        "the RPC continues the caller's span"
    );
    assert_eq!(send.name, format!("send {topic}"));
    assert_eq!(send.parent_span_id, rpc.span_id);
    assert_eq!(deliver.name, format!("process {topic}"));
    assert_eq!(
        deliver.parent_span_id, send.span_id,
        "the delivery continues the record's trace"
    );
    assert_eq!(
        handle.parent_span_id, deliver.span_id,
        "the notifier continues the delivery"
    );
    assert_eq!(smtp_send.name, "smtp send");
    assert_eq!(smtp_send.parent_span_id, handle.span_id);

    // A CloudEvent POSTed over plain HTTP continues its caller's trace
    // the same way.
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            &format!("http://{addr}/v1/topics/{topic}/events"),
            "-H",
            "ce-specversion: 1.0",
            "-H",
            "ce-id: http-8",
            "-H",
            "ce-source: /tests",
            "-H",
            "ce-type: user.registered",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("traceparent: 00-{HTTP_TRACE_ID}-{CALLER_SPAN}-01"),
            "-d",
            &user(8).to_string(),
        ])
        .output()
        .await
        .expect("curl runs");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("\"eventId\":\"http-8\""),
        "{output:?}"
    );
    let traced = |kind: SpanKind| -> Option<Received> {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                s.trace_id == HTTP_TRACE_ID && s.service == "gateway" && s.kind == kind as i32
            })
            .cloned()
    };
    eventually("the HTTP publish's spans are exported", || async {
        traced(SpanKind::Server).is_some() && traced(SpanKind::Producer).is_some()
    })
    .await;
    let (http_rpc, http_send) = (
        traced(SpanKind::Server).unwrap(),
        traced(SpanKind::Producer).unwrap(),
    );
    assert_eq!(http_rpc.parent_span_id, CALLER_SPAN, "{http_rpc:?}");
    assert_eq!(http_send.parent_span_id, http_rpc.span_id, "{http_send:?}");

    // The gateway's log line of the publish names the trace.
    let logged = log.so_far();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("publish received")
                && l.contains(&format!("trace_id=\"{TRACE_ID}\""))),
        "{logged:#?}"
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
    server.abort();
}
