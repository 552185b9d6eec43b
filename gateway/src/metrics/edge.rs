//! Before any call: client connections, authentication, the policy's
//! denials and quotas, settings files that did not reload, and the plain
//! HTTP routes' answers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{counter, registered};

/// Why a caller failed to authenticate.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Which operation the policy denied.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// Which quota a call went over, and the grant it comes from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    limit: &'static str,
    grant: String,
}

/// The HTTP status a plain HTTP route answered with.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    status: u16,
}

/// Which settings file did not load.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: &'static str,
}

/// Connections, authentication, the policy and reloads.
pub(crate) struct EdgeMetrics {
    open_connections: Gauge,
    refused_connections: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    denials: Family<OperationLabels, Counter>,
    throttled: Family<QuotaLabels, Counter>,
    reload_failures: Family<FileLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
}

impl EdgeMetrics {
    /// The families, registered in `registry`.
    pub(super) fn new(registry: &mut Registry) -> Self {
        Self {
            open_connections: registered(
                registry,
                "gateway_open_connections",
                "Client connections open",
                Gauge::default(),
            ),
            refused_connections: counter(
                registry,
                "gateway_refused_connections",
                "Client connections closed at once: --max-connections were open",
            ),
            auth_failures: registered(
                registry,
                "gateway_auth_failures",
                "Callers that failed to authenticate, by reason",
                Family::default(),
            ),
            denials: registered(
                registry,
                "gateway_denied",
                "Calls the policy denied, by operation",
                Family::default(),
            ),
            throttled: registered(
                registry,
                "gateway_throttled",
                "Calls over a quota, by limit and policy grant",
                Family::default(),
            ),
            reload_failures: registered(
                registry,
                "gateway_reload_failures",
                "Changed settings files that did not load (the previous settings stay)",
                Family::default(),
            ),
            http_requests: registered(
                registry,
                "gateway_http_requests",
                "Requests to the plain HTTP routes, by the HTTP status answered",
                Family::default(),
            ),
        }
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub(crate) fn connections(&self, change: i64) {
        self.open_connections.inc_by(change);
    }

    /// Counts a connection closed at once for `--max-connections`.
    pub(crate) fn connection_refused(&self) {
        self.refused_connections.inc();
    }

    /// Counts a caller that failed to authenticate.
    pub(crate) fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a call the policy denied.
    pub(crate) fn denied(&self, operation: &'static str) {
        self.denials
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Counts a call over a quota of the grant named by `grant`.
    pub(crate) fn throttled(&self, limit: &'static str, grant: &str) {
        let labels = QuotaLabels {
            limit,
            grant: grant.to_owned(),
        };
        self.throttled.get_or_create(&labels).inc();
    }

    /// Counts a request to the plain HTTP routes answered with `status`
    /// (one of the few the routes answer with).
    pub(crate) fn http_answered(&self, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels { status })
            .inc();
    }

    /// Counts a changed settings file that did not load.
    pub(crate) fn reload_failed(&self, file: &'static str) {
        self.reload_failures
            .get_or_create(&FileLabels { file })
            .inc();
    }
}
