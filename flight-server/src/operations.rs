//! Operations: what a node counts for Prometheus, the endpoint that serves it, and how requests
//! show in the node's own log. Metrics hold counts and timings only, never a value from the data.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;

use crate::audit::{AuditRecord, Decision};

/// Requests, by role and decision.
pub const REQUESTS: &str = "tessera_node_requests_total";
/// Refusals, by kind of reason.
pub const REFUSALS: &str = "tessera_node_refusals_total";
/// Time from a request's arrival to its answer, by role.
pub const QUERY_SECONDS: &str = "tessera_node_query_seconds";
/// Bytes of Flight data sent to callers.
pub const BYTES_OUT: &str = "tessera_node_bytes_out_total";

/// The kind of a refusal, as a metric label (a fixed, small set).
fn refusal_kind(record: &AuditRecord) -> &'static str {
    let reason = record.reason.as_deref().unwrap_or_default();
    if record.role == "unauthenticated" {
        "unauthenticated"
    } else if reason.contains("is not approved by this trust") {
        "project"
    } else if reason.contains("max_groups") {
        "max_groups"
    } else if reason.contains("IN list") {
        "limits"
    } else {
        "policy"
    }
}

/// Counts one audited request, and logs it with its query id.
pub fn count(record: &AuditRecord) {
    let decision = match record.decision {
        Decision::Allowed => "allowed",
        Decision::Refused => "refused",
        Decision::Error => "error",
    };
    metrics::counter!(REQUESTS, "role" => record.role.clone(), "decision" => decision).increment(1);
    if record.decision == Decision::Refused {
        metrics::counter!(REFUSALS, "reason" => refusal_kind(record)).increment(1);
    }
    tracing::info!(
        query_id = %record.context.query_id,
        role = %record.role,
        principal = %record.principal,
        project = %record.context.project,
        call = %record.call,
        decision,
        rows = record.rows,
        "request"
    );
}

/// Records how long a query took.
pub fn time(role: &str, elapsed: Duration) {
    metrics::histogram!(QUERY_SECONDS, "role" => role.to_string()).record(elapsed.as_secs_f64());
}

/// Counts bytes sent.
pub fn bytes_out(bytes: usize) {
    metrics::counter!(BYTES_OUT).increment(bytes as u64);
}

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr` in the background.
pub async fn serve_metrics(addr: SocketAddr) -> Result<SocketAddr, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("[node] metrics_listen = \"{addr}\": {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}
