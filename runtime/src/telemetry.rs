//! Telemetry for both binaries.
//!
//! - Logs: lines on stderr filtered by `RUST_LOG` (default `info`), as text
//!   (coloured only on a terminal, never with `NO_COLOR`) or, with
//!   `LOG_FORMAT=json`, one JSON object per line. Spans name their fields in
//!   every line, so a line within a request carries its `trace_id`.
//! - Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are exported
//!   over OTLP/gRPC (the standard `OTEL_*` variables apply; the service name
//!   is `OTEL_SERVICE_NAME`, else the binary's). Unset: no exporter, no
//!   OpenTelemetry layer, no cost.
//! - Context propagation is W3C trace context (`traceparent`, `tracestate`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The installed telemetry; [`Telemetry::shutdown`] flushes what is pending.
#[derive(Debug)]
pub struct Telemetry {
    /// The span exporter's provider, when traces are exported.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "could not flush the last spans");
            }
        }
    }
}

/// Whether [`init`] installed trace export.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: spans whose attributes only an exported
/// trace shows can then be made lean when it is off.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The target of spans made once per record (a Kafka send, a delivery):
/// exported as traces when export is on, never kept by the log layer, so
/// that without export they cost nothing.
pub const RECORD_SPANS: &str = "record_spans";

/// Installs logging and (when configured) trace export. Call it once, inside
/// the tokio runtime; `default_service_name` names the service when
/// `OTEL_SERVICE_NAME` does not.
pub fn init(default_service_name: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            format!("{RECORD_SPANS}=off")
                .parse()
                .expect("a valid directive"),
        );
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed()
    };
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .ok()
        .filter(|e| !e.trim().is_empty());
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_service_name.to_owned());
    let mut export_error = None;
    let provider = endpoint.and_then(|_| match tracer_provider(&service_name) {
        Ok(provider) => Some(provider),
        Err(error) => {
            export_error = Some(error);
            None
        }
    });
    // RUST_LOG filters what is logged; exported spans are every span at
    // INFO and above, whatever the log level.
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name.clone()))
            .with_filter(LevelFilter::INFO)
    });
    // No `Option` layer when export is off: a `None` layer still declares
    // an interest in every span, and the per-record spans would be built
    // for nobody.
    let logging = tracing_subscriber::registry().with(fmt.with_filter(filter));
    let installed = match otel {
        Some(otel) => logging.with(otel).try_init(),
        None => logging.try_init(),
    };
    if installed.is_ok() && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    if let Some(error) = export_error {
        tracing::error!(%error, "cannot export traces; continuing without");
    } else if provider.is_some() {
        tracing::info!(service = service_name, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// The tracer provider exporting over OTLP/gRPC to the endpoint the
/// `OTEL_EXPORTER_OTLP_*` variables name.
fn tracer_provider(
    service_name: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}
