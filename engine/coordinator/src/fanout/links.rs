//! The trusts a coordinator asks: one pooled connection each, and how their failures read.

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use tonic::Code;

use crate::config::{FederationConfig, OnNodeFailure};
use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::StreamExt;
use tessera_protocol::client::{ClientError, NodeClient};
use tessera_protocol::{BudgetNote, FragmentRequest};

/// A trust's answers to fragments, batch by batch.
pub type FragmentStream = BoxStream<'static, std::result::Result<RecordBatch, ClientError>>;

/// A node's answer batch by batch; an answer of no rows is one empty batch with the schema the
/// node sent, so that what the trust said beside it (its privacy note: what the question cost)
/// is read as for any answer.
fn with_empty_answer(flight: arrow_flight::decode::FlightRecordBatchStream) -> FragmentStream {
    futures::stream::unfold((flight, false, false), |(mut flight, any, done)| async move {
        if done {
            return None;
        }
        match flight.next().await {
            Some(Ok(batch)) => Some((Ok(batch), (flight, true, false))),
            Some(Err(e)) => Some((Err(ClientError::from(e)), (flight, any, true))),
            None if any => None,
            None => {
                let schema = flight.schema().cloned()?;
                Some((Ok(RecordBatch::new_empty(schema)), (flight, true, true)))
            }
        }
    })
    .boxed()
}

/// Where a trust's fragments go: its node over Flight, or a node in the same process (a trust's
/// own analysts are answered through this pipeline by their node).
#[async_trait]
pub trait FragmentService: Send + Sync {
    /// Sends one fragment; the answer arrives as a stream.
    async fn stream(&self, request: &FragmentRequest) -> std::result::Result<FragmentStream, ClientError>;

    /// Runs a Flight action about one fragment (see [`tessera_protocol::names::RESERVE_ACTION`]);
    /// a link that keeps no budget has nothing to do.
    async fn act(&self, _kind: &str, _request: &FragmentRequest) -> std::result::Result<(), ClientError> {
        Ok(())
    }

    /// The project's privacy budget at the trust (`None`: it keeps none).
    async fn budget(&self, _request: &FragmentRequest) -> std::result::Result<Option<BudgetNote>, ClientError> {
        Ok(None)
    }
}

#[async_trait]
impl FragmentService for NodeClient {
    async fn stream(&self, request: &FragmentRequest) -> std::result::Result<FragmentStream, ClientError> {
        let flight = NodeClient::stream(self, request).await?;
        Ok(with_empty_answer(flight))
    }

    async fn act(&self, kind: &str, request: &FragmentRequest) -> std::result::Result<(), ClientError> {
        NodeClient::act(self, kind, request).await
    }

    async fn budget(&self, request: &FragmentRequest) -> std::result::Result<Option<BudgetNote>, ClientError> {
        NodeClient::budget(self, request).await
    }
}

/// The coordinator's link to one trust.
#[derive(Clone)]
pub struct TrustLink {
    pub name: String,
    pub service: Arc<dyn FragmentService>,
}

/// Every trust of the federation, with the per-node deadline and failure policy.
pub struct NodeSet {
    nodes: Vec<Arc<TrustLink>>,
    timeout: Duration,
    on_failure: OnNodeFailure,
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.nodes.iter().map(|n| &n.name)).finish()
    }
}

impl NodeSet {
    /// Links to the nodes in `config`, over TLS when `[tls]` is set. Channels are opened lazily,
    /// so an unreachable trust surfaces as that trust's failure.
    pub fn from_config(config: &FederationConfig) -> std::result::Result<NodeSet, String> {
        tessera_protocol::tls::install_crypto_provider();
        let tls = config.tls.as_ref().map(|t| t.load()).transpose()?;
        let links = config
            .nodes
            .iter()
            .map(|n| {
                Ok(TrustLink {
                    name: n.name.clone(),
                    service: Arc::new(NodeClient::lazy(&n.url, tls.as_ref())?),
                })
            })
            .collect::<std::result::Result<Vec<_>, ClientError>>()
            .map_err(|e| e.to_string())?;
        Ok(NodeSet::new(links, config))
    }

    /// The given links, with `config`'s deadline and failure policy.
    pub fn new(links: Vec<TrustLink>, config: &FederationConfig) -> NodeSet {
        NodeSet {
            nodes: links.into_iter().map(Arc::new).collect(),
            timeout: Duration::from_secs(config.federation.node_timeout_secs),
            on_failure: config.federation.on_node_failure,
        }
    }

    /// Every trust's link, in the federation's order.
    pub fn links(&self) -> impl Iterator<Item = &Arc<TrustLink>> {
        self.nodes.iter()
    }

    /// How many trusts the federation has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, i: usize) -> Result<Arc<TrustLink>> {
        self.nodes
            .get(i)
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("no trust at partition {i}")))
    }

    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.iter().map(|n| n.name.clone())
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn on_failure(&self) -> OnNodeFailure {
        self.on_failure
    }
}

/// `call` to trust `name` within `timeout`; its failure in words for the researcher.
pub async fn within<T>(
    name: &str,
    timeout: Duration,
    call: impl std::future::Future<Output = std::result::Result<T, ClientError>>,
) -> std::result::Result<T, TrustError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(TrustError::from_client(name, e)),
        Err(_) => Err(TrustError::timed_out(name, timeout)),
    }
}

/// A trust that did not answer, and why, in words for the researcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{trust} {reason}")]
pub struct TrustError {
    pub trust: String,
    /// e.g. `unreachable (connection refused)`, `refused: column person_id is …`.
    pub reason: String,
    /// The trust's policy refused the fragment (never hidden by `on_node_failure = "partial"`).
    pub refused: bool,
}

impl TrustError {
    pub fn failed(trust: &str, why: impl std::fmt::Display) -> TrustError {
        TrustError {
            trust: trust.to_string(),
            reason: format!("failed: {why}"),
            refused: false,
        }
    }

    pub fn timed_out(trust: &str, after: Duration) -> TrustError {
        TrustError {
            trust: trust.to_string(),
            reason: format!("did not answer within {} s", after.as_secs_f64()),
            refused: false,
        }
    }

    /// Reads a client error: a refusal is passed on verbatim, with the trust's name.
    pub fn from_client(trust: &str, error: ClientError) -> TrustError {
        let make = |reason: String, refused| TrustError {
            trust: trust.to_string(),
            reason,
            refused,
        };
        match error {
            ClientError::Status(status) => match status.code() {
                Code::PermissionDenied => make(status.message().to_string(), true),
                Code::Unavailable => make(format!("unreachable ({})", root_cause(&with_causes(&status))), false),
                Code::DeadlineExceeded => make(format!("timed out: {}", status.message()), false),
                Code::InvalidArgument => make(format!("rejected the fragment: {}", status.message()), false),
                Code::Cancelled => make("cancelled".into(), false),
                Code::Unauthenticated => make(format!("turned this coordinator away: {}", status.message()), true),
                _ => make(format!("failed: {}", status.message()), false),
            },
            ClientError::Connect { message, .. } => make(format!("unreachable ({})", root_cause(&message)), false),
            ClientError::Decode(message) => make(format!("sent an unreadable answer: {message}"), false),
        }
    }
}

/// A status's message followed by its chain of causes.
fn with_causes(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The innermost cause of a transport error, e.g. `connection refused`.
fn root_cause(message: &str) -> String {
    let lower = message.to_lowercase();
    for known in [
        "connection refused",
        "connection reset",
        "no route to host",
        "timed out",
        "dns error",
    ] {
        if lower.contains(known) {
            return known.to_string();
        }
    }
    message.rsplit(": ").next().unwrap_or(message).trim().to_string()
}
