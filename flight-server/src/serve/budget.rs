//! A researcher's view of their project's privacy budget through the service: the coordinator
//! asks every trust's ledger ([`BUDGET_ACTION`]) on the signed-in user's behalf.

use tessera_protocol::names::BUDGET_ACTION;
use tessera_protocol::TrustBudget;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::{Asked, Service};
use crate::access::Caller;
use crate::audit::Decision;

/// The audit line's call of a budget read.
const CALL: &str = "DoAction";

impl Service {
    /// Answers Flight action `kind` for `caller`: only [`BUDGET_ACTION`], for the project of the
    /// `x-tessera-project` header (else the caller's first), audited.
    pub(super) async fn act(
        &self,
        caller: &Caller,
        kind: &str,
        metadata: &MetadataMap,
    ) -> Result<Vec<TrustBudget>, Status> {
        if kind != BUDGET_ACTION {
            let why = format!(
                "this service has no action {:?}; it answers {BUDGET_ACTION:?}",
                kind.chars().take(64).collect::<String>()
            );
            return Err(self.unanswered(caller, CALL, why).await);
        }
        let asked = self.asked_by(caller, metadata, CALL).await?;
        self.budget_lines(caller, &asked, CALL).await
    }

    /// What `asked`'s project has spent and may still spend at each trust, for `caller`; audited
    /// as `call`.
    pub async fn budget_lines(&self, caller: &Caller, asked: &Asked, call: &str) -> Result<Vec<TrustBudget>, Status> {
        let context = self.context(caller, asked);
        // A read asks every trust: it counts against the caller's questions running, as a
        // question does, so that reads cannot be used to flood the trusts.
        let Some(_running) = self.running.start(&caller.name) else {
            return Err(self.unanswered(caller, call, self.too_many_running()).await);
        };
        let coordinator = self.coordinator(&context, caller, call, "").await?;
        let lines = coordinator
            .budget(&context)
            .await
            .into_iter()
            // A trust's error in a few words: a line must stay within what a client decodes.
            .map(|(trust, answer)| {
                let answer = answer.map_err(|e| e.chars().take(300).collect());
                TrustBudget::of(&context.project, trust, answer)
            })
            .collect::<Vec<_>>();
        let reason = format!("privacy budget read at {} trusts", lines.len());
        let record = self.record(
            &context,
            caller,
            call,
            "",
            Decision::Allowed,
            Some(reason),
            lines.len() as u64,
        );
        self.audit.record(record).await?;
        Ok(lines)
    }
}
