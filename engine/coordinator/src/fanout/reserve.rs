//! The first phase of a question to trusts that keep privacy budgets: every fragment's spend is
//! reserved at every trust before any trust answers, so a question one trust would refuse for
//! its budget costs the others nothing and releases nothing. A refusal cancels the reservations
//! already made; each trust gives back only what it has not answered.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;
use futures::future::join_all;
use tessera_protocol::names::{CANCEL_ACTION, RESERVE_ACTION};
use tessera_protocol::FragmentRequest;

use super::links::{within, TrustError};
use super::{federated_scans, FederatedScanExec};
use crate::config::OnNodeFailure;

impl FederatedScanExec {
    /// Runs action `kind` for this fragment at the trusts numbered `which`, all at once.
    async fn act(&self, kind: &str, which: &[usize]) -> Vec<(usize, std::result::Result<(), TrustError>)> {
        let request = FragmentRequest::with_context(self.scan.sql.clone(), self.scan.context.clone());
        let timeout = self.nodes.timeout();
        let calls = which.iter().map(|&i| {
            let request = &request;
            async move {
                let node = match self.nodes.get(i) {
                    Ok(node) => node,
                    Err(e) => return (i, Err(TrustError::failed("?", e))),
                };
                (i, within(&node.name, timeout, node.service.act(kind, request)).await)
            }
        });
        join_all(calls).await
    }
}

/// Reserves every fragment of `plan` at every trust; on the first refusal, cancels what was
/// reserved and gives the refusal. Under `on_node_failure = "partial"` a trust that cannot be
/// reached is left out (it will not answer either); a refusal always stops the question.
pub async fn reserve_everywhere(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let mut reserved = Vec::new();
    let mut failure = None;
    for scan in federated_scans(plan) {
        let everyone = (0..scan.nodes.len()).collect::<Vec<_>>();
        let mut done = Vec::new();
        for (i, outcome) in scan.act(RESERVE_ACTION, &everyone).await {
            match outcome {
                Ok(()) => done.push(i),
                Err(e) if !e.refused && scan.nodes.on_failure() == OnNodeFailure::Partial => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        reserved.push((scan, done));
        if failure.is_some() {
            break;
        }
    }
    let Some(failure) = failure else {
        return Ok(());
    };
    for (scan, done) in reserved {
        // A cancellation that fails leaves the spend reserved: the safe side for the patients.
        let _ = scan.act(CANCEL_ACTION, &done).await;
    }
    Err(DataFusionError::External(Box::new(failure)))
}
