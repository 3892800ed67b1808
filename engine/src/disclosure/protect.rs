//! The protecting functions the rewrite wraps around every merged value, and the ledger that
//! counts what they did.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use datafusion::arrow::compute::kernels::nullif::nullif;
use datafusion::arrow::compute::{cast, is_not_null};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::config::{DisclosureConfig, Zeros};
use super::releases::{key_at, CellGuard, Key};
use super::top2::TopTwo;

/// Counts of what disclosure control did to one query's result.
#[derive(Debug, Default)]
pub struct Ledger {
    pub threshold: AtomicU64,
    pub zeros: AtomicU64,
    pub redacted: AtomicU64,
    pub residual_df: AtomicU64,
    pub dominance: AtomicU64,
    pub differencing: AtomicU64,
    pub rounded: AtomicU64,
    /// Totals (ROLLUP, CUBE, GROUPING SETS) were computed from released cells only.
    pub margins_from_released: AtomicBool,
    /// Cross-tabulations run against earlier releases (or the query's other aggregates).
    pub compared_with: AtomicU64,
}

impl Ledger {
    /// One line for the researcher naming the rules in force, e.g. `groups of fewer than 10
    /// records withheld; counts rounded to 5`. It never counts what was withheld: a count of
    /// withheld rows or cells, or their reasons, would tell an empty cell from a small one.
    pub fn summary(&self, config: &DisclosureConfig) -> String {
        if !config.is_on() {
            return "WARNING: disclosure control is OFF (allow_unsafe_output): exact counts, small cells included"
                .into();
        }
        let t = config.threshold;
        let mut rules = vec![format!(
            "groups of fewer than {t} records withheld; statistics with a class of fewer than {t} records shown as NULL"
        )];
        if config.redact_at_or_below > 0 {
            rules.push(format!("counts ≤ {} redacted", config.redact_at_or_below));
        }
        if config.round_to > 1 {
            rules.push(format!("counts rounded to {}", config.round_to));
        }
        if config.checks_dominance() {
            rules.push(format!(
                "sums of sensitive measures checked for dominance (NK k = {}, p = {})",
                config.nk_k, config.p_percent
            ));
        }
        if self.margins_from_released.load(Ordering::Relaxed) {
            rules.push("totals computed from released cells".into());
        }
        match self.compared_with.load(Ordering::Relaxed) {
            0 => {}
            1 => rules.push("1 differencing check".into()),
            n => rules.push(format!("{n} differencing checks")),
        }
        rules.join("; ")
    }
}

/// What kind of value is being protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtectKind {
    /// A count: zeros, threshold (on the group's support and on the count itself), redaction, then
    /// rounding. Arguments: (count, support).
    Count,
    /// Any other statistic: threshold. Arguments: (value, support).
    Statistic,
    /// Correlation, covariance, regression: threshold and residual df. Arguments: (value, support, n).
    Model,
    /// A sum or mean of a sensitive measure: threshold and dominance. Arguments: (value, support,
    /// two largest contributions, total).
    Magnitude,
}

impl ProtectKind {
    /// Arguments before the cell's grouping columns (which come last, when the cell is guarded).
    fn fixed_args(self) -> usize {
        match self {
            ProtectKind::Count | ProtectKind::Statistic => 2,
            ProtectKind::Model => 3,
            ProtectKind::Magnitude => 4,
        }
    }
}

/// `tessera_protect_*(value, support[, n | top2, total][, group columns…])`: the value, or NULL
/// where a rule suppresses it.
#[derive(Debug)]
pub struct ProtectUdf {
    kind: ProtectKind,
    config: DisclosureConfig,
    ledger: Arc<Ledger>,
    /// The cell's guards against differencing with earlier releases, one per set of records the
    /// statistic is built from (the group columns are the last arguments).
    guards: Vec<Arc<CellGuard>>,
    signature: Signature,
    name: String,
}

impl ProtectUdf {
    pub fn new(kind: ProtectKind, config: &DisclosureConfig, ledger: Arc<Ledger>) -> ProtectUdf {
        let name = match kind {
            ProtectKind::Count => "tessera_protect_count",
            ProtectKind::Statistic => "tessera_protect",
            ProtectKind::Model => "tessera_protect_model",
            ProtectKind::Magnitude => "tessera_protect_magnitude",
        };
        ProtectUdf {
            kind,
            config: config.clone(),
            ledger,
            guards: Vec::new(),
            // Volatile: the optimizer must neither fold nor duplicate it (each call is counted).
            signature: Signature::variadic_any(Volatility::Volatile),
            name: name.to_string(),
        }
    }

    /// Checks cells against `guards` (their group columns must follow the fixed arguments).
    pub fn with_guards(mut self, guards: Vec<Arc<CellGuard>>) -> ProtectUdf {
        self.guards = guards;
        self
    }
}

impl PartialEq for ProtectUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && Arc::ptr_eq(&self.ledger, &other.ledger)
            && self.guards.len() == other.guards.len()
            && self.guards.iter().zip(&other.guards).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for ProtectUdf {}

impl Hash for ProtectUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        Arc::as_ptr(&self.ledger).hash(state);
        for guard in &self.guards {
            Arc::as_ptr(guard).hash(state);
        }
    }
}

fn as_i64(array: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

impl ProtectUdf {
    /// Whether row `i` is dominated by its largest contributions; a cell whose contributions
    /// cannot be read is treated as dominated.
    fn dominated(&self, top2: &ListArray, total: &ArrayRef, i: usize) -> bool {
        let total = total.as_primitive::<Float64Type>();
        if top2.is_null(i) || total.is_null(i) {
            return true;
        }
        match TopTwo::from_list(Some(top2.value(i))) {
            Ok(top) => self
                .config
                .dominated(total.value(i), top.first.unwrap_or(0.0), top.second.unwrap_or(0.0)),
            Err(_) => true,
        }
    }
}

impl ScalarUDFImpl for ProtectUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            ProtectKind::Count => DataType::Int64,
            _ => arg_types[0].clone(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let value = &arrays[0];
        let support = as_i64(&arrays[1])?;
        let keys = arrays.get(self.kind.fixed_args()..).unwrap_or_default();
        let threshold = self.config.threshold as i64;
        let count = |c: &AtomicU64, suppress: bool| {
            if suppress {
                c.fetch_add(1, Ordering::Relaxed);
            }
            suppress
        };
        // Earlier releases: a denied cell is suppressed; released and withheld ones are recorded
        // for the log. Each row's cell key is computed once.
        let cells: Vec<Key> = match self.guards.is_empty() {
            true => Vec::new(),
            false => (0..rows).map(|i| key_at(keys, i)).collect(),
        };
        let differencing = |i: usize| {
            !self.guards.is_empty()
                && count(
                    &self.ledger.differencing,
                    self.guards.iter().any(|g| g.is_denied(&cells[i])),
                )
        };
        let note = |i: usize, record: fn(&CellGuard, Key)| {
            for guard in &self.guards {
                record(guard, cells[i].clone());
            }
        };
        let released = |i: usize| note(i, CellGuard::record_release);
        let withheld = |i: usize| note(i, CellGuard::record_withheld);
        let present = is_not_null(value)?;
        match self.kind {
            ProtectKind::Count => {
                let counts = as_i64(value)?;
                let base = self.config.round_to.max(1) as i64;
                let out = (0..rows)
                    .map(|i| {
                        if counts.is_null(i) {
                            return None;
                        }
                        let (v, s) = (counts.value(i), if support.is_null(i) { 0 } else { support.value(i) });
                        if v == 0 {
                            return match self.config.zeros {
                                Zeros::Release if !differencing(i) => {
                                    released(i);
                                    Some(0)
                                }
                                Zeros::Release => None,
                                Zeros::Suppress => {
                                    self.ledger.zeros.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                            };
                        }
                        // A count is its own support too: count(CASE WHEN … THEN 1 END) counts a subset of the group.
                        if count(&self.ledger.threshold, s < threshold || v < threshold) {
                            return None;
                        }
                        if count(&self.ledger.redacted, v <= self.config.redact_at_or_below as i64) {
                            return None;
                        }
                        if differencing(i) {
                            return None;
                        }
                        released(i);
                        let rounded = v.saturating_add(base / 2).div_euclid(base).saturating_mul(base);
                        if base > 1 {
                            self.ledger.rounded.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(rounded)
                    })
                    .collect::<Int64Array>();
                Ok(ColumnarValue::Array(std::sync::Arc::new(out)))
            }
            ProtectKind::Statistic | ProtectKind::Model | ProtectKind::Magnitude => {
                let n = match self.kind {
                    ProtectKind::Model => Some(cast(&arrays[2], &DataType::Float64)?),
                    _ => None,
                };
                let dominance = match self.kind {
                    ProtectKind::Magnitude => Some((
                        arrays[2].as_list::<i32>().clone(),
                        cast(&arrays[3], &DataType::Float64)?,
                    )),
                    _ => None,
                };
                let suppress = (0..rows)
                    .map(|i| {
                        if !present.value(i) {
                            return Some(false);
                        }
                        let s = if support.is_null(i) { 0 } else { support.value(i) };
                        if count(&self.ledger.threshold, s < threshold) {
                            return Some(true);
                        }
                        let df_short = n.as_ref().is_some_and(|n| {
                            let n = n.as_primitive::<Float64Type>();
                            n.is_null(i) || n.value(i) - 2.0 < self.config.min_residual_df as f64
                        });
                        let dominated = match &dominance {
                            Some((top2, total)) => self.dominated(top2, total, i),
                            None => false,
                        };
                        if count(&self.ledger.residual_df, df_short) || count(&self.ledger.dominance, dominated) {
                            // Hidden although large enough: a later total must not give it away.
                            withheld(i);
                            return Some(true);
                        }
                        if differencing(i) {
                            return Some(true);
                        }
                        released(i);
                        Some(false)
                    })
                    .collect::<BooleanArray>();
                Ok(ColumnarValue::Array(nullif(value, &suppress)?))
            }
        }
    }
}
