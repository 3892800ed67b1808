//! Differentially private answers, made at the trust: nothing exact about the trust's patients
//! leaves the node in this mode, to anyone.
//!
//! For one question the node
//! 1. splits the checked fragment into its aggregate ([`plan`]): counts and sums of measures
//!    only, each person's records bounded to `records_per_person`, each summed measure clamped
//!    to its contract's bounds and rounded to whole units;
//! 2. lists the cells to release from public values alone ([`grid`]);
//! 3. reserves the question's spend in this trust's ledger for the project, durably, before
//!    reading a record (an overspend is refused here, whatever the coordinator says);
//! 4. runs the aggregate, fills every cell of the grid (zeros too) and adds discrete Gaussian
//!    noise to every value ([`release`]), each statistic calibrated to its sensitivity and an
//!    equal share of the spend;
//! 5. keeps the answer: the same question on the same data gets the same answer, at no cost,
//!    so asking again cannot average the noise away.

mod bounds;
pub mod config;
mod grid;
mod plan;
mod release;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use rand::SeedableRng;
use sha2::Digest;
use tessera_policy::Refusal;
use tessera_privacy::{BudgetLedger, Calibration, Rho};
use tessera_protocol::names::PRIVACY_METADATA;
use tessera_protocol::{FragmentRequest, PrivacyNote};

use super::query::{with_metadata, Answer, Unanswered};
use super::Core;
pub use config::{PrivacyConfig, PrivacyMode, Settings};
pub use grid::Witnesses;

/// A trust's differential privacy: its settings, ledger and the answers it has given.
pub struct Private {
    settings: Settings,
    ledger: BudgetLedger,
    witnesses: Witnesses,
    /// Answers given, by (project, SQL, spend, data version).
    answers: Mutex<HashMap<String, Answer>>,
}

impl Private {
    /// The privacy of a node with `settings`, its ledger at `ledger`.
    pub fn open(settings: Settings, ledger: &std::path::Path, witnesses: Witnesses) -> Result<Private, String> {
        let ledger = BudgetLedger::open(ledger).map_err(|e| e.to_string())?;
        Ok(Private {
            settings,
            ledger,
            witnesses,
            answers: Mutex::new(HashMap::new()),
        })
    }

    /// The ledger (for `tessera audit` and tests).
    pub fn ledger(&self) -> &BudgetLedger {
        &self.ledger
    }

    fn cached(&self, key: &str) -> Option<Answer> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn keep(&self, key: String, answer: &Answer) {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, answer.clone());
    }

    /// `schema` with this trust's privacy note on an answer that cost `spent`.
    fn with_note(&self, schema: &SchemaRef, spent: u64, project_spent: u64, cached: bool) -> SchemaRef {
        let note = PrivacyNote {
            spent,
            project_spent,
            budget: self.settings.project_budget.0,
            records_per_person: self.settings.records_per_person,
            cached,
        };
        with_metadata(schema, PRIVACY_METADATA, note.encode())
    }
}

impl Core {
    /// Answers a checked plan with differential privacy (see the module's steps).
    pub(super) async fn execute_private(
        &self,
        private: &Private,
        request: &FragmentRequest,
        plan: LogicalPlan,
        timeout: Duration,
    ) -> Result<Answer, Unanswered> {
        let settings = &private.settings;
        let Some(private_plan) =
            plan::private_plan(&plan, &self.tables, settings.records_per_person).map_err(Unanswered::Refused)?
        else {
            // Organisational data (no person in it) is answered exactly.
            return self.execute(&request.sql, plan, timeout).await;
        };
        let context = &request.context;
        let spend = settings
            .spend(context.privacy_spend.map(|r| Rho(r).as_f64()))
            .map_err(|e| Unanswered::Refused(Refusal::new(e)))?;
        let key = answer_key(&context.project, &request.sql, spend, &self.as_at);
        if let Some(mut answer) = private.cached(&key) {
            let account = private.ledger.account(&context.project);
            answer.schema = private.with_note(&answer.schema, 0, account.spent.0, true);
            return Ok(answer);
        }
        let cells = grid::grid(&private_plan, &self.tables, &private.witnesses, settings.max_cells)
            .await
            .map_err(Unanswered::Refused)?;
        let share = spend.share(private_plan.statistics.len());
        let noise = private_plan
            .statistics
            .iter()
            .map(|s| {
                Calibration::new(s.sensitivity(settings.records_per_person), share)
                    .map_err(|e| Unanswered::Refused(Refusal::new(format!("{}: {e}", s.describe()))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One reservation per fragment: a question of two fragments pays for both.
        let reservation = format!("{}#{}", context.query_id, &key[..16]);
        let reserved = private
            .ledger
            .reserve(
                &context.project,
                &reservation,
                &context.requester,
                spend,
                settings.project_budget,
            )
            .map_err(|e| match e {
                tessera_privacy::LedgerError::Io(m) => Unanswered::Internal(m),
                overspend => Unanswered::Refused(Refusal::new(overspend.to_string())),
            })?;
        if !reserved.new {
            // Charged before (a retry after a lost reply or a restart) but not kept: fresh noise
            // would be a second release for one charge.
            return Err(Unanswered::Refused(Refusal::new(format!(
                "question {} was answered before under this id; ask it under a new id",
                context.query_id
            ))));
        }
        // No group limit on the exact answer: how many cells hold records would tell through a
        // refusal. What is released is bounded by the grid, from public values (`max_cells`).
        let exact = self.run(private_plan.aggregate.clone(), timeout, u64::MAX).await?;
        let layout = release::Layout {
            keys: private_plan.groups.len(),
            noise: &noise,
            units: &private_plan.statistics.iter().map(|s| s.unit()).collect::<Vec<_>>(),
            output: &private_plan.output,
            types: &private_plan
                .aggregate
                .schema()
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect::<Vec<_>>(),
        };
        let mut rng = rand_chacha::ChaCha20Rng::from_os_rng();
        let batch = release::release(&exact.batches, &cells, &layout, &mut rng).map_err(Unanswered::Internal)?;
        let account = private.ledger.account(&context.project);
        let schema = private.with_note(&self.with_as_at(&batch.schema()), spend.0, account.spent.0, false);
        let batch = batch
            .with_schema(schema.clone())
            .map_err(|e| Unanswered::Internal(e.to_string()))?;
        let answer = Answer {
            schema,
            rows: batch.num_rows() as u64,
            batches: vec![batch],
        };
        private.keep(key, &answer);
        Ok(answer)
    }
}

/// The identity of an answer: who it was given to, what was asked, at what spend, of which data.
fn answer_key(project: &str, sql: &str, spend: Rho, data_version: &str) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in [project, sql, &spend.0.to_string(), data_version] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}
