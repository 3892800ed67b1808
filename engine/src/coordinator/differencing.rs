//! Protection against differencing: no new cell may be subtracted from (or add up with) cells
//! released earlier so that the difference is a small group of records.
//!
//! For each protected aggregate over one table, and each earlier release over the same table
//! (from the project's release log, or an earlier aggregate of the same query), the trusts are
//! asked one cross-tabulation of the two populations: per (new cell, earlier cell), how many
//! records are in the new cell, in the earlier cell, and in both. From those exact sizes (never
//! released), with threshold `t`:
//!
//! - **a new cell containing earlier cells**: if the new cell less every released earlier cell it
//!   contains leaves 1 to `t - 1` records (a total after a table with a suppressed cell, or
//!   `WHERE x <> 'a'` after the total), the new cell is suppressed;
//! - **an earlier cell containing new cells**: if the earlier released cell less every new cell
//!   it contains leaves 1 to `t - 1` records (a table after its total, a query and its
//!   complement), the smallest of those new cells is suppressed too, until the rest is at least `t`.
//!
//! Cells that only overlap are not compared, and neither are populations over joins or unions.

use std::collections::{HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::error::Result;

use super::population::Population;
use crate::disclosure::releases::{key_at, Key};

/// Exact sizes of two populations' cells and of their intersections.
#[derive(Debug, Default)]
pub struct CrossTab {
    new: HashMap<Key, i64>,
    old: HashMap<Key, i64>,
    both: HashMap<(Key, Key), i64>,
}

/// The query that cross-tabulates the variants of `new` against those of `old` (both over the
/// same table) in one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTabQuery {
    pub sql: String,
    /// For each grouping expression of `new`, then of `old`: its column in the answer (an
    /// expression both group by is asked once).
    new_columns: Vec<usize>,
    old_columns: Vec<usize>,
    new_variants: usize,
    old_variants: usize,
}

/// `a AND b` of two optional conditions, as SQL (`TRUE` when neither is given).
fn and(a: &Option<String>, b: &Option<String>) -> String {
    match (a, b) {
        (None, None) => "TRUE".into(),
        (Some(x), None) | (None, Some(x)) => x.clone(),
        (Some(x), Some(y)) => format!("({x}) AND ({y})"),
    }
}

impl CrossTabQuery {
    pub fn new(
        new: &Population,
        new_conditions: &[Option<String>],
        old: &Population,
        old_conditions: &[Option<String>],
    ) -> CrossTabQuery {
        let mut groups: Vec<String> = Vec::new();
        let mut column = |g: &String| -> usize {
            match groups.iter().position(|known| known == g) {
                Some(i) => i,
                None => {
                    groups.push(g.clone());
                    groups.len() - 1
                }
            }
        };
        let new_columns = new.groups.iter().map(&mut column).collect::<Vec<_>>();
        let old_columns = old.groups.iter().map(&mut column).collect::<Vec<_>>();
        let in_new = new_conditions
            .iter()
            .map(|c| and(&new.predicate, c))
            .collect::<Vec<_>>();
        let in_old = old_conditions
            .iter()
            .map(|c| and(&old.predicate, c))
            .collect::<Vec<_>>();
        let keys = groups.iter().enumerate().map(|(i, g)| format!("{g} AS k{i}"));
        let counts = in_new
            .iter()
            .enumerate()
            .map(|(i, n)| format!("count(*) FILTER (WHERE {n}) AS n_new{i}"))
            .chain(
                in_old
                    .iter()
                    .enumerate()
                    .map(|(j, o)| format!("count(*) FILTER (WHERE {o}) AS n_old{j}")),
            )
            .chain(in_new.iter().enumerate().flat_map(|(i, n)| {
                in_old
                    .iter()
                    .enumerate()
                    .map(move |(j, o)| format!("count(*) FILTER (WHERE ({n}) AND ({o})) AS n_both{i}_{j}"))
            }));
        let columns = keys.chain(counts).collect::<Vec<_>>().join(", ");
        // No WHERE: an OR of the two filters would not select a box, which trusts refuse; each
        // count carries its own filter instead.
        let mut sql = format!("SELECT {columns} FROM {}", new.table);
        if !groups.is_empty() {
            let positions = (1..=groups.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            sql.push_str(&format!(" GROUP BY {positions}"));
        }
        CrossTabQuery {
            sql,
            new_columns,
            old_columns,
            new_variants: new_conditions.len(),
            old_variants: old_conditions.len(),
        }
    }

    /// Columns holding the grouping values.
    fn width(&self) -> usize {
        self.new_columns
            .iter()
            .chain(&self.old_columns)
            .max()
            .map_or(0, |m| m + 1)
    }
}

impl CrossTab {
    /// Reads the answer to `query`: one cross-tabulation per (new variant, old variant).
    pub fn from_batches(batches: &[RecordBatch], query: &CrossTabQuery) -> Result<Vec<Vec<CrossTab>>> {
        let (n, m) = (query.new_variants, query.old_variants);
        let mut tabs = (0..n)
            .map(|_| (0..m).map(|_| CrossTab::default()).collect::<Vec<_>>())
            .collect::<Vec<_>>();
        for batch in batches {
            let columns = batch.columns();
            let pick = |indices: &[usize]| indices.iter().map(|&i| columns[i].clone()).collect::<Vec<_>>();
            let (new_cols, old_cols) = (pick(&query.new_columns), pick(&query.old_columns));
            let counts = columns[query.width()..]
                .iter()
                .map(|c| Ok(cast(c, &DataType::Int64)?.as_primitive::<Int64Type>().clone()))
                .collect::<Result<Vec<_>>>()?;
            for row in 0..batch.num_rows() {
                let (k, o) = (key_at(&new_cols, row), key_at(&old_cols, row));
                let count = |c: usize| {
                    if counts[c].is_null(row) {
                        0
                    } else {
                        counts[c].value(row)
                    }
                };
                for (i, per_old) in tabs.iter_mut().enumerate() {
                    for (j, tab) in per_old.iter_mut().enumerate() {
                        *tab.new.entry(k.clone()).or_default() += count(i);
                        *tab.old.entry(o.clone()).or_default() += count(n + j);
                        *tab.both.entry((k.clone(), o.clone())).or_default() += count(n + m + i * m + j);
                    }
                }
            }
        }
        for tab in tabs.iter_mut().flatten() {
            tab.new.retain(|_, n| *n > 0);
            tab.old.retain(|_, n| *n > 0);
        }
        Ok(tabs)
    }

    /// Size of an earlier cell (0 when it has no records now).
    pub fn old_size(&self, key: &Key) -> i64 {
        self.old.get(key).copied().unwrap_or(0)
    }

    /// The new cells to suppress, given which earlier cells were released and which were
    /// withheld although large (dominance, residual df). New cells with at least
    /// `released_from` records count as released unless in `denied`, which holds cells already
    /// suppressed for this reason. A difference of fewer than `released_from` records is small.
    pub fn deny(
        &self,
        old_released: impl Fn(&Key) -> bool,
        old_withheld: impl Fn(&Key) -> bool,
        released_from: i64,
        denied: &mut HashSet<Key>,
    ) {
        let small = |rest: i64| rest > 0 && rest < released_from;
        let both = |k: &Key, o: &Key| self.both.get(&(k.clone(), o.clone())).copied().unwrap_or(0);
        let released_old = self.old.iter().filter(|(o, _)| old_released(o)).collect::<Vec<_>>();
        // A new cell less the released earlier cells inside it: neither a few records, nor one
        // withheld earlier cell and a few records.
        for (k, &size) in &self.new {
            let inside = released_old
                .iter()
                .filter(|(o, &o_size)| both(k, o) == o_size)
                .map(|(_, &o_size)| o_size)
                .collect::<Vec<_>>();
            let rest = size - inside.iter().sum::<i64>();
            let withheld_inside = self
                .old
                .iter()
                .filter(|(o, &o_size)| old_withheld(o) && !old_released(o) && both(k, o) == o_size)
                .map(|(_, &o_size)| o_size)
                .collect::<Vec<_>>();
            let one_withheld = matches!(withheld_inside.as_slice(), [w] if rest - w < released_from);
            if (!inside.is_empty() && small(rest)) || one_withheld {
                denied.insert(k.clone());
            }
        }
        // A released earlier cell less the new cells inside it that will be released.
        for (o, &o_size) in &released_old {
            let mut inside = self
                .new
                .iter()
                .filter(|(k, &size)| size >= released_from && !denied.contains(*k) && both(k, o) == size)
                .map(|(k, &size)| (size, k.clone()))
                .collect::<Vec<_>>();
            inside.sort();
            let mut rest = o_size - inside.iter().map(|(size, _)| size).sum::<i64>();
            let mut smallest = inside.into_iter();
            while small(rest) {
                let Some((size, k)) = smallest.next() else { break };
                denied.insert(k);
                rest += size;
            }
        }
    }
}
