//! W3C trace context (`traceparent`, `tracestate`) across the places an
//! event travels: gRPC metadata, and event attributes (which are Kafka record
//! headers on the wire, as in the CloudEvents distributed-tracing extension).

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;
use tonic::codegen::http::HeaderName;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

/// The attribute and metadata name of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";

struct MetadataExtractor<'a>(&'a MetadataMap);

/// [`TRACEPARENT`] as a header name, parsed once: every call is asked for
/// it (a name given as text is parsed on every lookup).
static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = if key == TRACEPARENT {
            self.0.as_ref().get(&TRACEPARENT_HEADER)
        } else {
            self.0.as_ref().get(key)
        };
        value.and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => Some(key.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct AttributesExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for AttributesExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct AttributesInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for AttributesInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The trace context a gRPC call carries.
pub fn from_metadata(metadata: &MetadataMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)))
}

/// Adds `context` to outgoing gRPC metadata.
pub fn into_metadata(context: &Context, metadata: &mut MetadataMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(context, &mut MetadataInjector(metadata))
    });
}

/// The trace context an event carries in its attributes.
pub fn from_attributes(attributes: &HashMap<String, String>) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&AttributesExtractor(attributes)))
}

/// Writes `context` into an event's attributes (replacing an older one).
pub fn into_attributes(context: &Context, attributes: &mut HashMap<String, String>) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(context, &mut AttributesInjector(attributes))
    });
}

/// Makes `parent` the parent of `span` (when spans are recorded) and names
/// the trace in the span's `trace_id` field, so that every log line within
/// the span carries it, whether or not spans are exported.
pub fn continue_trace(span: &tracing::Span, parent: Context) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let inherited = trace_id(&parent);
    let _ = span.set_parent(parent);
    if let Some(trace_id) = trace_id(&span.context()).or(inherited) {
        span.record("trace_id", trace_id.as_str());
    }
}

/// The CONSUMER span of handling one [`Delivery`](crate::v1::Delivery),
/// named and attributed by the OpenTelemetry messaging conventions
/// (`process <topic>`, destination, partition, offset, group, message id,
/// attempt), with an empty `trace_id` for [`continue_trace`] to fill: the
/// gateway's span of each delivery, and a subscriber's span of its handling.
///
/// `delivery_span!(target: TARGET, NAME, &delivery, group)`: `TARGET` and
/// `NAME` are constants as in `tracing::info_span!`, `group` an `&str`.
/// Like any span, its fields are only evaluated when it is enabled.
#[macro_export]
macro_rules! delivery_span {
    (target: $target:expr, $name:expr, $delivery:expr, $group:expr) => {{
        let delivery: &$crate::v1::Delivery = $delivery;
        let group: &str = $group;
        let id = delivery.event.as_ref().map_or("", |event| event.id.as_str());
        $crate::__tracing::info_span!(
            target: $target,
            $name,
            otel.name = format!("process {}", delivery.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %delivery.topic,
            messaging.destination.partition.id = delivery.partition,
            messaging.kafka.offset = delivery.offset,
            messaging.consumer.group.name = group,
            messaging.message.id = id,
            delivery.attempt = delivery.attempt,
            trace_id = $crate::__tracing::field::Empty,
        )
    }};
}

/// The trace id of a context, as 32 hex digits, when it has a valid one.
pub fn trace_id(context: &Context) -> Option<String> {
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_travels_through_metadata_and_attributes() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let mut metadata = MetadataMap::new();
        metadata.insert(TRACEPARENT, PARENT.parse().unwrap());
        let context = from_metadata(&metadata);
        assert_eq!(
            trace_id(&context).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );

        let mut attributes = HashMap::new();
        into_attributes(&context, &mut attributes);
        assert_eq!(attributes[TRACEPARENT], PARENT);
        let back = from_attributes(&attributes);
        assert_eq!(trace_id(&back), trace_id(&context));

        let mut outgoing = MetadataMap::new();
        into_metadata(&back, &mut outgoing);
        assert_eq!(outgoing.get(TRACEPARENT).unwrap(), PARENT);
        assert_eq!(trace_id(&from_attributes(&HashMap::new())), None);
    }
}
