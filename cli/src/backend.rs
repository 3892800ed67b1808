//! Where `tessera query` sends a question: the coordinator in this process (the demo, or the
//! operator who holds the coordinator's certificate), or a `tessera serve` the user signed in to.

use std::io::IsTerminal;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use tessera_coordinator::{Coordinator, QueryError, RequestContext, DISCLOSURE_METADATA, PROVENANCE_METADATA};
use tessera_protocol::client::ClientError;
use tessera_protocol::service_client::ServiceClient;
use tonic::Code;

/// Where questions go.
pub enum Backend {
    /// The coordinator in this process, asking as `context`.
    Embedded {
        coordinator: Box<Coordinator>,
        context: RequestContext,
    },
    /// A signed-in `tessera serve`.
    Service { client: ServiceClient, url: String },
}

/// An answer and the lines that go with it.
pub enum Answer {
    /// An `EXPLAIN`'s text.
    Plan(String),
    /// A protected result.
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        provenance: String,
        disclosure: String,
    },
}

/// A service's error as the CLI reports it: refusals and invalid questions are query errors
/// (exit 1), anything else a connection error (exit 2).
pub(crate) fn from_service(error: ClientError) -> QueryError {
    match error.code() {
        Some(Code::PermissionDenied | Code::InvalidArgument | Code::Internal | Code::ResourceExhausted) => {
            QueryError::query(error.to_string())
        }
        Some(Code::Unauthenticated) => QueryError::connection(format!("the service refused the sign-in: {error}")),
        _ => QueryError::connection(error.to_string()),
    }
}

impl Backend {
    /// The first line of the interactive prompt.
    pub fn banner(&self) -> String {
        match self {
            Backend::Embedded { coordinator, .. } => format!(
                "tessera: federated SQL over {} trusts ({})",
                coordinator.trusts().len(),
                coordinator.trusts().join(", ")
            ),
            Backend::Service { url, .. } => format!("tessera: signed in to the Tessera service at {url}"),
        }
    }

    /// Answers one statement.
    pub async fn answer(&self, sql: &str) -> Result<Answer, QueryError> {
        match self {
            Backend::Embedded { coordinator, context } => {
                if Coordinator::is_explain(sql) {
                    return Ok(Answer::Plan(coordinator.explain(sql).await?));
                }
                let result = crate::progress::with_progress(coordinator, context, sql).await?;
                Ok(Answer::Rows {
                    provenance: result.provenance.summary(),
                    disclosure: result.disclosure,
                    schema: result.schema,
                    batches: result.batches,
                })
            }
            Backend::Service { client, .. } => {
                let answer = with_spinner(client.query(sql)).await.map_err(from_service)?;
                let metadata = answer.schema.metadata();
                let plan = Coordinator::is_explain(sql) && answer.schema.fields().len() == 1;
                if plan {
                    let text = answer
                        .batches
                        .iter()
                        .filter_map(|b| {
                            b.column(0)
                                .as_any()
                                .downcast_ref::<datafusion::arrow::array::StringArray>()
                        })
                        .flat_map(|a| a.iter().flatten().map(str::to_string))
                        .collect::<Vec<_>>()
                        .join("\n");
                    return Ok(Answer::Plan(text));
                }
                Ok(Answer::Rows {
                    provenance: metadata.get(PROVENANCE_METADATA).cloned().unwrap_or_default(),
                    disclosure: metadata.get(DISCLOSURE_METADATA).cloned().unwrap_or_default(),
                    schema: answer.schema,
                    batches: answer.batches,
                })
            }
        }
    }
}

/// Shows "waiting for the service…" on a terminal while a question takes longer than half a second.
async fn with_spinner<T>(work: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return done,
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message("waiting for the service (every trust answers, then disclosure control)…");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let done = work.await;
    spinner.finish_and_clear();
    done
}
