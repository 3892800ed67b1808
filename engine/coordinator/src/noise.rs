//! The noise in each released value under differential privacy, merged across trusts.
//!
//! Each trust states, per released column, the standard deviation of the noise it added and
//! the sensitivity it was calibrated to (field metadata). A merged count or sum is the sum of
//! the trusts' noisy values, so its noise has variance Σ σ²; when the question groups by trust,
//! each row is one trust's value and carries that trust's σ. A mean, variance or standard
//! deviation is computed from several merged sums: its noise is stated as theirs.
//!
//! At planning, [`shapes`] marks each output column with what it is made of
//! (`tessera.noise_from`, internal); once the trusts have answered, [`resolve`] replaces the mark
//! with the merged figures (`tessera.noise_sd`, `tessera.noise`) and a line for the footer.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::{Expr, LogicalPlan};
use tessera_protocol::names::{NOISE_METADATA, NOISE_SD_METADATA, SENSITIVITY_METADATA};

use crate::decompose::Decomposition;
use crate::fanout::FederatedScan;

/// Field metadata key, internal to the coordinator: what an output column's noise is made of.
pub const NOISE_FROM_METADATA: &str = "tessera.noise_from";

/// Separates the parts of a [`NOISE_FROM_METADATA`] value (taken out of every label).
const SEPARATOR: char = '\u{1f}';

/// The noise one trust stated for one column of its answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Standard deviation, in the column's units.
    pub sd: f64,
    /// What one person can change the exact value by, as the trust calibrated it.
    pub sensitivity: Option<f64>,
}

impl Noise {
    /// The noise a trust stated in `field`'s metadata, when it is a number (a node's bytes are
    /// hostile: anything that is not a finite, non-negative number is ignored).
    pub fn of(field: &Field) -> Option<Noise> {
        let number = |key: &str| {
            field
                .metadata()
                .get(key)?
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        Some(Noise {
            sd: number(NOISE_SD_METADATA)?,
            sensitivity: number(SENSITIVITY_METADATA),
        })
    }
}

/// Per fragment (by its SQL), per trust, per partial column: the noise stated.
pub type StatedNoise = BTreeMap<String, BTreeMap<String, BTreeMap<String, Noise>>>;

/// A short, stable name for a fragment within this process.
fn fragment_id(sql: &str) -> String {
    let mut hasher = DefaultHasher::new();
    sql.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// How a partial column is named to a researcher, e.g. `sum(los_days)`.
fn label(partial: &Expr) -> String {
    partial
        .human_display()
        .to_string()
        .replace("count(Int64(1))", "count(*)")
        // A literal in the question could hold the separator: it must not split the mark.
        .replace(SEPARATOR, " ")
}

/// Per user aggregate of `parts`, its noise mark: the partial columns it is computed from, with
/// their labels. `per_trust` when every merged row is one trust's.
pub(crate) fn shapes(parts: &Decomposition, scan: &LogicalPlan, per_trust: bool) -> Vec<Option<String>> {
    let Some(fragment) = FederatedScan::of(scan) else {
        return vec![None; parts.finals.len()];
    };
    parts
        .finals
        .iter()
        .map(|last| {
            let mut partials = Vec::new();
            for m in numbered(last, 'm') {
                for p in numbered(parts.merges.get(m)?, 'p') {
                    if !partials.contains(&p) {
                        partials.push(p);
                    }
                }
            }
            if partials.is_empty() {
                return None;
            }
            let mut mark = vec![fragment_id(&fragment.sql), u8::from(per_trust).to_string()];
            for p in partials {
                mark.push(format!("p{p}"));
                mark.push(label(parts.partials.get(p)?));
            }
            Some(mark.join(&SEPARATOR.to_string()))
        })
        .collect()
}

/// The numbers of the columns `prefix{k}` that `expr` reads (`m0`, `p3`), in order.
fn numbered(expr: &Expr, prefix: char) -> Vec<usize> {
    let mut numbers = expr
        .column_refs()
        .into_iter()
        .filter_map(|c| c.name.strip_prefix(prefix)?.parse().ok())
        .collect::<Vec<_>>();
    numbers.sort_unstable();
    numbers
}

/// `schema` without the internal noise marks (a schema shown before the trusts answer).
pub fn unmarked(schema: &SchemaRef) -> SchemaRef {
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            let mut metadata = f.metadata().clone();
            metadata.remove(NOISE_FROM_METADATA);
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The answer's schema with each marked column's merged noise, and the footer's line (`None`
/// when no column carries noise).
pub fn resolve(schema: &SchemaRef, stated: &StatedNoise) -> (SchemaRef, Option<String>) {
    let by_id = stated
        .iter()
        .map(|(sql, trusts)| (fragment_id(sql), trusts))
        .collect::<HashMap<_, _>>();
    let mut lines = Vec::new();
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            let mut metadata = f.metadata().clone();
            let Some(mark) = metadata.remove(NOISE_FROM_METADATA) else {
                return f.as_ref().clone();
            };
            let mut parts = mark.split(SEPARATOR);
            let (Some(id), Some(per_trust)) = (parts.next(), parts.next()) else {
                return f.as_ref().clone().with_metadata(metadata);
            };
            let trusts = by_id.get(id);
            let partials = parts.collect::<Vec<_>>();
            let merged = partials
                .chunks(2)
                .filter_map(|pair| {
                    let [column, label] = pair else { return None };
                    let noise = trusts?
                        .values()
                        .filter_map(|columns| columns.get(*column))
                        .collect::<Vec<_>>();
                    merge(&noise, per_trust == "1").map(|n| (label.to_string(), n))
                })
                .collect::<Vec<_>>();
            if merged.is_empty() || merged.len() * 2 != partials.len() {
                return f.as_ref().clone().with_metadata(metadata);
            }
            let text = describe(&merged, per_trust == "1");
            if let [(_, single)] = merged.as_slice() {
                metadata.insert(NOISE_SD_METADATA.to_string(), single.sd.to_string());
                if let Some(sensitivity) = single.sensitivity {
                    metadata.insert(SENSITIVITY_METADATA.to_string(), sensitivity.to_string());
                }
            }
            lines.push(format!("{} {text}", f.name()));
            metadata.insert(NOISE_METADATA.to_string(), text);
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect::<Vec<_>>();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let line = (!lines.is_empty()).then(|| format!("noise: {}", lines.join("; ")));
    (schema, line)
}

/// The noise of one merged partial: Σ σ² over the trusts, or the largest trust's σ when each
/// row is one trust's (equal at trusts with the same settings).
fn merge(noise: &[&Noise], per_trust: bool) -> Option<Noise> {
    if noise.is_empty() {
        return None;
    }
    let sd = match per_trust {
        true => noise.iter().map(|n| n.sd).fold(0.0, f64::max),
        false => noise.iter().map(|n| n.sd * n.sd).sum::<f64>().sqrt(),
    };
    let sensitivity = noise.iter().map(|n| n.sensitivity).collect::<Option<Vec<_>>>();
    Some(Noise {
        sd,
        sensitivity: sensitivity.map(|s| s.into_iter().fold(0.0, f64::max)),
    })
}

/// E.g. `sd 12.2 (sensitivity 10)`, or `from noisy sum(los_days) (sd 310, sensitivity 300) and
/// count(los_days) (sd 12.2, sensitivity 10)`.
fn describe(merged: &[(String, Noise)], per_trust: bool) -> String {
    let sd = |n: &Noise, open: &str, close: &str| match n.sensitivity {
        Some(s) => format!("sd {}{open}sensitivity {}{close}", figure(n.sd), figure(s)),
        None => format!("sd {}", figure(n.sd)),
    };
    let each = if per_trust { " in each trust's row" } else { "" };
    match merged {
        [(_, single)] => format!("{}{each}", sd(single, " (", ")")),
        _ => {
            let parts = merged
                .iter()
                .map(|(label, n)| format!("{label} ({})", sd(n, ", ", "")))
                .collect::<Vec<_>>();
            format!("from noisy {}{each}", parts.join(" and "))
        }
    }
}

/// Three significant figures, without a trailing `.0`.
fn figure(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let digits = (2 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.digits$}");
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(sd: f64) -> Noise {
        Noise {
            sd,
            sensitivity: Some(10.0),
        }
    }

    #[test]
    fn merged_noise_adds_variances_or_keeps_one_trusts() {
        let three = [&noise(3.0), &noise(4.0), &noise(12.0)];
        let cases: [(&[&Noise], bool, f64); 3] =
            [(&three, false, 13.0), (&three, true, 12.0), (&three[..1], false, 3.0)];
        for (noise, per_trust, sd) in cases {
            assert_eq!(merge(noise, per_trust).unwrap().sd, sd, "{per_trust}");
        }
        assert_eq!(merge(&[], false), None);
    }

    #[test]
    fn figures_keep_three_significant_digits() {
        for (value, text) in [
            (12.247, "12.2"),
            (310.4, "310"),
            (0.0123456, "0.0123"),
            (1.5, "1.5"),
            (2000.0, "2000"),
        ] {
            assert_eq!(figure(value), text);
        }
    }

    #[test]
    fn a_label_never_holds_the_separator() {
        let literal = datafusion::logical_expr::lit(format!("a{SEPARATOR}p1{SEPARATOR}b"));
        assert!(!label(&literal).contains(SEPARATOR), "{}", label(&literal));
    }

    #[test]
    fn a_hostile_statement_is_ignored() {
        let field = |sd: &str| {
            Field::new("p0", datafusion::arrow::datatypes::DataType::Int64, false)
                .with_metadata(HashMap::from([(NOISE_SD_METADATA.to_string(), sd.to_string())]))
        };
        for bad in ["-1", "NaN", "inf", "lots"] {
            assert_eq!(Noise::of(&field(bad)), None, "{bad}");
        }
        assert_eq!(Noise::of(&field("2.5")).map(|n| n.sd), Some(2.5));
    }
}
