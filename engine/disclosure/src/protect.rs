//! The protecting functions the rewrite wraps around every merged value, and the ledger that
//! says which rules a result went through.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::config::{DisclosureConfig, Zeros};
use super::perturb::Noise;
use super::top2::Contributions;

/// What one query's result went through.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Totals (ROLLUP, CUBE, GROUPING SETS) were computed from released cells only.
    pub margins_from_released: AtomicBool,
    /// The result holds statistics about people (it is logged and counts against the budget).
    pub about_people: AtomicBool,
    /// The sets of records it releases statistics about (see [`super::releases`]).
    pub sets: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The values it releases, by identity: a statistic's set of records and its cell's labels.
    pub values: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl Ledger {
    /// One line for the researcher naming the rules in force, e.g. `groups of fewer than 10
    /// records withheld; …`. It never counts what was withheld: a count of withheld rows or
    /// cells, or their reasons, would tell an empty cell from a small one.
    pub fn summary(&self, config: &DisclosureConfig) -> String {
        if config.is_dp() {
            return "differential privacy: every value carries noise added at each trust, within the project's budget there".into();
        }
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
        if config.perturbs() {
            rules.push(format!(
                "values perturbed by the cell key method (counts by at most ±{})",
                config.noise_max
            ));
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
        rules.join("; ")
    }
}

/// What kind of value is being protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtectKind {
    /// A count: zeros, threshold (on the group's support and on the count itself), redaction,
    /// noise, rounding. Arguments: (count, support[, key]).
    Count,
    /// Variances and other statistics of a measure: threshold, noise. Arguments: (value, support[, key]).
    Statistic,
    /// Correlation, covariance, regression: threshold, residual df, noise. Arguments: (value,
    /// support, n[, key]).
    Model,
    /// A sum or mean of a measure: threshold, dominance (sensitive measures), noise scaled to the
    /// largest contribution. Arguments: (value, support, two largest, total[, key[, records,
    /// records' key]]).
    Magnitude,
}

/// How a [`ProtectUdf`] judges its value beyond its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Judged {
    /// The value is perturbed (its cell key follows the fixed arguments).
    pub perturbed: bool,
    /// The measure is sensitive: the dominance rules apply.
    pub sensitive: bool,
    /// A mean of a measure: released as the perturbed total over the perturbed record count.
    pub mean: bool,
    /// The noise scales the value (variances, models) rather than adding to it (sums).
    pub scaled: bool,
}

/// `tessera_protect_*(…)`: the value, or NULL where a rule withholds it, perturbed when released.
#[derive(Debug)]
pub struct ProtectUdf {
    kind: ProtectKind,
    judged: Judged,
    /// The identity of the statistic's set of records; the cell's labels are the last
    /// `labels` arguments. Released values are noted in the ledger by set and labels.
    set: u64,
    labels: usize,
    config: DisclosureConfig,
    ledger: Arc<Ledger>,
    signature: Signature,
    name: String,
}

impl ProtectUdf {
    pub fn new(kind: ProtectKind, judged: Judged, config: &DisclosureConfig, ledger: Arc<Ledger>) -> ProtectUdf {
        let name = match kind {
            ProtectKind::Count => "tessera_protect_count",
            ProtectKind::Statistic => "tessera_protect",
            ProtectKind::Model => "tessera_protect_model",
            ProtectKind::Magnitude => "tessera_protect_magnitude",
        };
        ProtectUdf {
            kind,
            judged,
            set: 0,
            labels: 0,
            config: config.clone(),
            ledger,
            // Volatile: the optimizer must neither fold nor duplicate it.
            signature: Signature::variadic_any(Volatility::Volatile),
            name: name.to_string(),
        }
    }

    /// Notes each released value in the ledger as `set` plus its cell's labels, which follow the
    /// other arguments (`labels` of them).
    pub fn noting(mut self, set: &str, labels: usize) -> ProtectUdf {
        self.set = identity(set.as_bytes());
        self.labels = labels;
        self
    }

    /// Notes the released rows of `out` (non-NULL) in the ledger.
    fn note(&self, out: &ArrayRef, arrays: &[ArrayRef]) -> Result<()> {
        let labels = &arrays[arrays.len() - self.labels.min(arrays.len())..];
        let mut values = self.ledger.values.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = Vec::new();
        for i in (0..out.len()).filter(|i| out.is_valid(*i)) {
            text.clear();
            text.extend_from_slice(&self.set.to_le_bytes());
            for label in labels {
                text.extend_from_slice(ScalarValue::try_from_array(label, i)?.to_string().as_bytes());
                text.push(0x1f);
            }
            values.insert(identity(&text));
        }
        Ok(())
    }

    fn noise(&self) -> Noise {
        Noise {
            threshold: self.config.threshold as i64,
            max: self.config.noise_max as i64,
            stay: self.config.noise_stay,
            magnitude: self.config.noise_magnitude,
        }
    }

    /// Where the cell key is among the arguments.
    fn key_position(&self) -> usize {
        match self.kind {
            ProtectKind::Count | ProtectKind::Statistic => 2,
            ProtectKind::Model => 3,
            ProtectKind::Magnitude => 4,
        }
    }
}

impl PartialEq for ProtectUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.judged == other.judged
            && self.set == other.set
            && Arc::ptr_eq(&self.ledger, &other.ledger)
    }
}

impl Eq for ProtectUdf {}

impl Hash for ProtectUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.judged.hash(state);
        self.set.hash(state);
        Arc::as_ptr(&self.ledger).hash(state);
    }
}

fn as_i64(array: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

fn as_f64(array: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(array, &DataType::Float64)?.as_primitive::<Float64Type>().clone())
}

fn as_u64(array: &ArrayRef) -> Result<UInt64Array> {
    Ok(cast(array, &DataType::UInt64)?.as_primitive::<UInt64Type>().clone())
}

fn at<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    array: &datafusion::arrow::array::PrimitiveArray<T>,
    i: usize,
) -> Option<T::Native> {
    (!array.is_null(i)).then(|| array.value(i))
}

impl ScalarUDFImpl for ProtectUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            ProtectKind::Count => DataType::Int64,
            _ => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let support = as_i64(&arrays[1])?;
        let threshold = self.config.threshold as i64;
        let key_at = self.key_position();
        let keys = match self.judged.perturbed {
            true => Some(as_u64(&arrays[key_at])?),
            false => None,
        };
        let noise = self.noise();
        // A perturbed value needs its cell's key; without one it is withheld.
        let key = |i: usize| keys.as_ref().map(|k| at(k, i));
        let out: ArrayRef = match self.kind {
            ProtectKind::Count => {
                let counts = as_i64(&arrays[0])?;
                let base = self.config.round_to.max(1) as i64;
                Arc::new(
                    (0..rows)
                        .map(|i| {
                            let v = at(&counts, i)?;
                            let s = at(&support, i).unwrap_or(0);
                            if v == 0 {
                                return (self.config.zeros == Zeros::Release).then_some(0);
                            }
                            // A count is its own support too: count(CASE WHEN … THEN 1 END) counts a subset.
                            if s < threshold || v < threshold || v <= self.config.redact_at_or_below as i64 {
                                return None;
                            }
                            let v = match key(i) {
                                None => v,
                                Some(None) => return None,
                                Some(Some(k)) => v + noise.count(v, k),
                            };
                            Some(v.saturating_add(base / 2).div_euclid(base).saturating_mul(base))
                        })
                        .collect::<Int64Array>(),
                )
            }
            ProtectKind::Statistic | ProtectKind::Model | ProtectKind::Magnitude => {
                let values = as_f64(&arrays[0])?;
                let n = match self.kind {
                    ProtectKind::Model => Some(as_f64(&arrays[2])?),
                    _ => None,
                };
                let magnitude = match self.kind {
                    ProtectKind::Magnitude => Some((arrays[2].as_list::<i32>().clone(), as_f64(&arrays[3])?)),
                    _ => None,
                };
                let records = match (self.kind, self.judged.mean && self.judged.perturbed) {
                    (ProtectKind::Magnitude, true) => {
                        Some((as_i64(&arrays[key_at + 1])?, as_u64(&arrays[key_at + 2])?))
                    }
                    _ => None,
                };
                Arc::new(
                    (0..rows)
                        .map(|i| {
                            let value = at(&values, i)?;
                            let s = at(&support, i).unwrap_or(0);
                            if s < threshold {
                                return None;
                            }
                            if let Some(n) = &n {
                                let n = at(n, i)?;
                                if n - 2.0 < self.config.min_residual_df as f64 {
                                    return None;
                                }
                            }
                            let largest = match &magnitude {
                                Some((top2, total)) => Some(self.largest(top2, total, i)?),
                                None => None,
                            };
                            let k = match key(i) {
                                None => return value.is_finite().then_some(value),
                                Some(None) => return None,
                                Some(Some(k)) => k,
                            };
                            // A sum moves like the count of its contributors (so a sum of equal values
                            // is exactly as protected as their count) and by a share of its largest one.
                            let sum = |total: f64, largest: f64| {
                                total + total / s as f64 * noise.count(s, k) as f64 + noise.sum(largest, k)
                            };
                            let released = match (&magnitude, &records, largest) {
                                (Some((_, total)), Some((counts, keys)), Some(largest)) => {
                                    // A mean: the perturbed total over the perturbed count.
                                    let total = sum(at(total, i)?, largest);
                                    let count = at(counts, i)?;
                                    let count = count + noise.count(count, at(keys, i)?);
                                    (count > 0).then(|| total / count as f64)?
                                }
                                (Some(_), None, Some(largest)) if !self.judged.scaled => sum(value, largest),
                                _ => value * noise.scale(s as f64, k),
                            };
                            // Nothing infinite or undefined is released: it would mark a line crossed.
                            released.is_finite().then_some(released)
                        })
                        .collect::<Float64Array>(),
                )
            }
        };
        self.note(&out, &arrays)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// A stable 64-bit identity of some bytes (the release log keeps them across versions).
fn identity(bytes: &[u8]) -> u64 {
    let hash = blake3::hash(bytes);
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("a BLAKE3 hash has 32 bytes"))
}

impl ProtectUdf {
    /// The largest contribution of row `i`, or `None` when the cell is dominated (a sensitive
    /// measure) or its contributions cannot be read.
    fn largest(&self, top2: &ListArray, total: &Float64Array, i: usize) -> Option<f64> {
        if top2.is_null(i) || total.is_null(i) {
            return None;
        }
        let top = Contributions::from_list(Some(top2.value(i))).ok()?;
        let (first, second) = (top.first.unwrap_or(0.0), top.second.unwrap_or(0.0));
        if self.judged.sensitive && self.config.dominated(total.value(i), first, second) {
            return None;
        }
        Some(first)
    }
}
