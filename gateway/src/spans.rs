//! The gateway's spans, shaped by the OpenTelemetry conventions for RPC and
//! messaging: a SERVER span per call (its parent from the call's
//! `traceparent`), a PRODUCER span per Kafka send whose context travels in
//! the record's `traceparent` header, and a CONSUMER span per delivery that
//! continues the record's trace and hands its own context on to the
//! subscriber in the event's `traceparent` attribute.
//!
//! Every span has a `trace_id` field, so that each log line within it names
//! the trace, whether or not spans are exported. The per-record spans
//! (produce, deliver) are for export only: the log layer never keeps them,
//! so without export they are not even created.

use eventgateway::v1::Delivery;
use eventgateway::{delivery_span, trace_context};
use eventgateway_runtime::telemetry::{self, RECORD_SPANS};
use opentelemetry::Context;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The SERVER span of one call of `method`, continuing the trace of the
/// call's context, `caller` (taken from the call's metadata once).
/// Without trace export it carries only what log lines show (the method and
/// the trace id): the log layer formats every field of every span it keeps,
/// once per call.
pub(crate) fn rpc_server(method: &'static str, caller: &Context) -> Span {
    let span = if telemetry::exporting() {
        tracing::info_span!(
            "rpc",
            otel.name = format!("{}/{method}", eventgateway::SERVICE_NAME),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = eventgateway::SERVICE_NAME,
            rpc.method = method,
            trace_id = Empty,
        )
    } else {
        tracing::info_span!("rpc", rpc.method = method, trace_id = Empty)
    };
    trace_context::continue_trace(&span, caller.clone());
    span
}

/// The PRODUCER span of one send to `topic`.
pub(crate) fn produce(topic: &str) -> Span {
    tracing::info_span!(
        target: RECORD_SPANS,
        "produce",
        otel.name = format!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        messaging.destination.partition.id = Empty,
        messaging.kafka.offset = Empty,
        trace_id = Empty,
    )
}

/// The context to hand downstream from `span`: its own when spans are
/// recorded, else the one it continues (so a trace is never cut).
pub(crate) fn downstream_context(span: &Span, continued: &Context) -> Context {
    let own = span.context();
    if trace_context::trace_id(&own).is_some() {
        own
    } else {
        continued.clone()
    }
}

/// Records one delivery as a CONSUMER span continuing its record's trace,
/// and puts that span's context into the event for the subscriber.
pub(crate) fn deliver(delivery: &mut Delivery, group: Option<&str>) {
    let span = delivery_span!(target: RECORD_SPANS, "deliver", delivery, group.unwrap_or(""));
    let Some(event) = delivery.event.as_mut() else {
        return;
    };
    let record = trace_context::from_attributes(&event.attributes);
    trace_context::continue_trace(&span, record.clone());
    let context = downstream_context(&span, &record);
    if trace_context::trace_id(&context).is_some() {
        trace_context::into_attributes(&context, &mut event.attributes);
    }
}
