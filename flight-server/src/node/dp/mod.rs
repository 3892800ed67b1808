//! Differentially private answers, made at the trust: nothing exact about the trust's patients
//! leaves the node in this mode, to anyone.
//!
//! For one question the node
//! 1. splits the checked fragment into its aggregate ([`plan`]): counts and sums of measures
//!    only, each person's records bounded to `records_per_person`, each summed measure clamped
//!    to its contract's bounds and rounded to whole units;
//! 2. lists the cells to release from public values alone ([`grid`]), or, when there are more
//!    than `max_cells`, selects cells by a noisy count of records against a threshold far above
//!    what one person's records can make (paid from the question's spend);
//! 3. reserves the question's spend in this trust's ledger for the project, durably, before
//!    reading a record (an overspend is refused here, whatever the coordinator says);
//! 4. runs the aggregate, fills every cell of the grid (zeros too) and adds discrete Gaussian
//!    noise to every value ([`release`]), each statistic calibrated to its sensitivity and an
//!    equal share of the spend;
//! 5. keeps the answer: the same question on the same data gets the same answer, at no cost,
//!    so asking again cannot average the noise away.

mod bounds;
pub mod cap;
pub mod config;
mod contributions;
mod grid;
mod kept;
mod plan;
mod public;
mod release;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::LogicalPlan;
use rand::SeedableRng;
use sha2::Digest;
use tessera_policy::Refusal;
use tessera_privacy::selection::SELECTION_DELTA;
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
    kept: kept::Kept,
    /// Reservations made ahead of their question (by the coordinator's first phase), not yet
    /// answered or cancelled. Lost on a restart: the question is then refused, never re-noised.
    pending: Mutex<HashMap<String, Box<Ready>>>,
}

impl Private {
    /// The privacy of a node with `settings`, its ledger at `ledger`.
    pub fn open(settings: Settings, ledger: &std::path::Path, witnesses: Witnesses) -> Result<Private, String> {
        let kept = kept::Kept::open(ledger)?;
        let ledger = BudgetLedger::open(ledger).map_err(|e| e.to_string())?;
        Ok(Private {
            settings,
            ledger,
            witnesses,
            kept,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The ledger (for `tessera audit` and tests).
    pub fn ledger(&self) -> &BudgetLedger {
        &self.ledger
    }

    /// `project`'s account here and this trust's limits.
    pub fn budget(&self, project: &str) -> tessera_protocol::BudgetNote {
        let account = self.ledger.account(project);
        tessera_protocol::BudgetNote {
            spent: account.spent.0,
            budget: self.settings.project_budget.0,
            questions: account.questions,
            question_spend: self.settings.question_spend.0,
            max_question_spend: self.settings.max_question_spend.0,
            records_per_person: self.settings.records_per_person,
        }
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Box<Ready>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, key: &str) -> Option<Answer> {
        self.kept.get(key)
    }

    /// This trust's privacy note on an answer that cost `spent`.
    fn note(&self, spent: u64, project_spent: u64, cached: bool) -> PrivacyNote {
        PrivacyNote {
            spent,
            project_spent,
            budget: self.settings.project_budget.0,
            records_per_person: self.settings.records_per_person,
            cached,
            threshold: None,
        }
    }
}

/// A private fragment made ready to run: its spend reserved, its grid and noise known.
struct Ready {
    plan: plan::PrivatePlan,
    key: String,
    spend: Rho,
    cells: grid::Cells,
    /// How cells are selected when the grid is too large to release whole.
    selection: Option<release::Selection>,
    noise: Vec<Calibration>,
    reservation: String,
}

/// How a private fragment will be answered.
enum Prepared {
    /// It reads no person data: organisational tables are answered exactly.
    Exact,
    /// The same question was answered before: the kept answer, at no cost.
    Kept(Answer),
    /// Its spend is reserved.
    Reserved(Box<Ready>),
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
        let started = std::time::Instant::now();
        let ready = match self.prepare_private(private, request, &plan).await? {
            Prepared::Exact => return self.execute(&request.sql, plan, timeout).await,
            Prepared::Kept(answer) => return Ok(answer),
            Prepared::Reserved(ready) => ready,
        };
        let prepared = started.elapsed();
        // No group limit on the exact answer: how many cells hold records would tell through a
        // refusal. What is released is bounded by the grid, from public values (`max_cells`).
        let exact = self.run(ready.plan.aggregate.clone(), timeout, u64::MAX).await?;
        let ran = started.elapsed();
        let layout = release::Layout {
            keys: ready.plan.groups.len(),
            noise: &ready.noise,
            units: &ready.plan.statistics.iter().map(|s| s.unit()).collect::<Vec<_>>(),
            sensitivities: &ready
                .plan
                .statistics
                .iter()
                .map(|s| s.sensitivity(private.settings.records_per_person))
                .collect::<Vec<_>>(),
            output: &ready.plan.output,
            types: &ready.plan.types,
            nullable: &ready.plan.nullable,
        };
        let mut rng = rand_chacha::ChaCha20Rng::from_os_rng();
        let selection = ready.selection.as_ref();
        let batch = release::release(&exact.batches, &ready.cells, selection, &layout, &mut rng)
            .map_err(Unanswered::Internal)?;
        let account = private.ledger.account(&request.context.project);
        let mut note = private.note(ready.spend.0, account.spent.0, false);
        note.threshold = selection.map(|s| s.threshold);
        let answer = Answer {
            schema: self.with_as_at(&batch.schema()),
            rows: batch.num_rows() as u64,
            batches: vec![batch],
        };
        let answer = with_note(answer, &note)?;
        // Kept durably before it leaves: a retry after a crash gets this answer, not new noise.
        let released = started.elapsed();
        private.kept.keep(&ready.key, &answer).map_err(Unanswered::Internal)?;
        tracing::debug!(
            query_id = %request.context.query_id,
            prepare_ms = prepared.as_secs_f64() * 1e3,
            run_ms = (ran - prepared).as_secs_f64() * 1e3,
            release_ms = (released - ran).as_secs_f64() * 1e3,
            keep_ms = (started.elapsed() - released).as_secs_f64() * 1e3,
            "private answer made"
        );
        Ok(answer)
    }

    /// Reserves a fragment's spend before any trust answers (the coordinator's first phase): the
    /// question is checked and its spend written to the ledger exactly as when it runs, and the
    /// reservation waits for the fragment's `DoGet` or its cancellation.
    pub(super) async fn reserve_private(
        &self,
        private: &Private,
        request: &FragmentRequest,
        plan: LogicalPlan,
    ) -> Result<(), Unanswered> {
        let started = std::time::Instant::now();
        let prepared = self.prepare_private(private, request, &plan).await?;
        tracing::debug!(
            query_id = %request.context.query_id,
            prepare_ms = started.elapsed().as_secs_f64() * 1e3,
            "private spend reserved"
        );
        if let Prepared::Reserved(ready) = prepared {
            private.pending_lock().insert(ready.reservation.clone(), ready);
        }
        Ok(())
    }

    /// Gives back a reservation that was never answered (another trust refused the question).
    pub(super) fn cancel_private(&self, private: &Private, request: &FragmentRequest) -> Result<(), Unanswered> {
        let (_, _, reservation) = reservation_of(private, request, &self.as_at)?;
        let pending = private.pending_lock().remove(&reservation);
        if pending.is_some_and(|ready| ready.spend.0 > 0) {
            let context = &request.context;
            private
                .ledger
                .refund(&context.project, &reservation, &context.requester)
                .map_err(|e| Unanswered::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// Steps 1–3 of the module: the plan, the grid, the noise, and the spend reserved.
    async fn prepare_private(
        &self,
        private: &Private,
        request: &FragmentRequest,
        plan: &LogicalPlan,
    ) -> Result<Prepared, Unanswered> {
        let settings = &private.settings;
        let Some(private_plan) =
            plan::private_plan(plan, &self.tables, settings.records_per_person).map_err(Unanswered::Refused)?
        else {
            return Ok(Prepared::Exact);
        };
        let context = &request.context;
        let (key, spend, reservation) = reservation_of(private, request, &self.as_at)?;
        if let Some(answer) = private.cached(&key) {
            let account = private.ledger.account(&context.project);
            // The kept note says how its cells were selected; only the cost is new.
            let kept = answer
                .schema
                .metadata()
                .get(PRIVACY_METADATA)
                .and_then(|t| PrivacyNote::decode(t));
            let mut note = private.note(0, account.spent.0, true);
            note.threshold = kept.and_then(|k| k.threshold);
            return Ok(Prepared::Kept(with_note(answer, &note)?));
        }
        // Reserved ahead by the coordinator's first phase: made ready then, charged once.
        if let Some(ready) = private.pending_lock().remove(&reservation) {
            return Ok(Prepared::Reserved(ready));
        }
        let mut private_plan = private_plan;
        let started = std::time::Instant::now();
        let state = self.ctx.state();
        let cells = grid::grid(
            &private_plan,
            &self.tables,
            &private.witnesses,
            settings.max_cells,
            &state,
        )
        .map_err(Unanswered::Refused)?;
        let listed = started.elapsed();
        let selecting = matches!(cells, grid::Cells::Selected(_));
        if selecting {
            private_plan.count_records().map_err(Unanswered::Refused)?;
        }
        // The selection count, when there is one, takes a share like any statistic.
        let share = spend.share(private_plan.statistics.len() + usize::from(selecting));
        let calibrate = |sensitivity: f64, what: String| {
            Calibration::new(sensitivity, share).map_err(|e| Unanswered::Refused(Refusal::new(format!("{what}: {e}"))))
        };
        let noise = private_plan
            .statistics
            .iter()
            .map(|s| calibrate(s.sensitivity(settings.records_per_person), s.describe()))
            .collect::<Result<Vec<_>, _>>()?;
        let records = settings.records_per_person;
        let selection = match selecting {
            false => None,
            true => {
                let noise = calibrate(records as f64, "the count that selects cells".into())?;
                let threshold = tessera_privacy::selection::threshold(records, noise.sd(), SELECTION_DELTA);
                Some(release::Selection { noise, threshold })
            }
        };
        // No cell to release (the conditions leave no public value): nothing about anyone
        // leaves, so nothing is charged.
        let charged = match cells.is_empty() {
            true => Rho(0),
            false => {
                self.charge(private, request, &reservation, spend)?;
                spend
            }
        };
        tracing::debug!(
            query_id = %context.query_id,
            grid_ms = listed.as_secs_f64() * 1e3,
            charge_ms = (started.elapsed() - listed).as_secs_f64() * 1e3,
            "private question prepared"
        );
        Ok(Prepared::Reserved(Box::new(Ready {
            plan: private_plan,
            key,
            spend: charged,
            cells,
            selection,
            noise,
            reservation,
        })))
    }

    /// Writes `spend` for `reservation` to the ledger, or refuses: an overspend, or an id
    /// charged before and not reserved for this run (a retry after a lost reply or a restart:
    /// fresh noise would be a second release for one charge).
    fn charge(
        &self,
        private: &Private,
        request: &FragmentRequest,
        reservation: &str,
        spend: Rho,
    ) -> Result<(), Unanswered> {
        let context = &request.context;
        let reserved = private
            .ledger
            .reserve(
                &context.project,
                reservation,
                &context.requester,
                spend,
                // A statement of several fragments (a UNION of aggregates) is one question: its
                // parts' reservations share the per-question cap.
                tessera_privacy::Limits {
                    budget: private.settings.project_budget,
                    per_question: Some(private.settings.max_question_spend),
                },
            )
            .map_err(|e| match e {
                tessera_privacy::LedgerError::Io(m) => Unanswered::Internal(m),
                overspend => Unanswered::Refused(Refusal::new(overspend.to_string())),
            })?;
        if !reserved.new {
            return Err(Unanswered::Refused(Refusal::new(format!(
                "question {} was answered before under this id; ask it under a new id",
                context.query_id
            ))));
        }
        Ok(())
    }
}

/// `answer` with `note` as its privacy note, in its schema and in its batches alike (a trust's
/// own analysts read it from the batches).
fn with_note(mut answer: Answer, note: &PrivacyNote) -> Result<Answer, Unanswered> {
    answer.schema = with_metadata(&answer.schema, PRIVACY_METADATA, note.encode());
    answer.batches = answer
        .batches
        .iter()
        .map(|b| RecordBatch::try_new(answer.schema.clone(), b.columns().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| Unanswered::Internal(e.to_string()))?;
    Ok(answer)
}

/// A fragment's answer key, spend and reservation id: one reservation per fragment, so a
/// question of two fragments pays for both.
fn reservation_of(
    private: &Private,
    request: &FragmentRequest,
    as_at: &str,
) -> Result<(String, Rho, String), Unanswered> {
    let context = &request.context;
    let spend = private
        .settings
        .spend(context.privacy_spend.map(Rho))
        .map_err(|e| Unanswered::Refused(Refusal::new(e)))?;
    let key = answer_key(&context.project, &request.sql, spend, as_at);
    let reservation = format!("{}#{}", context.query_id, &key[..16]);
    Ok((key, spend, reservation))
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
