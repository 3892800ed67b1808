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

/// The query that cross-tabulates `new` against `old` (both over the same table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTabQuery {
    pub sql: String,
    /// For each grouping expression of `new`, then of `old`: its column in the answer (an
    /// expression both group by is asked once).
    new_columns: Vec<usize>,
    old_columns: Vec<usize>,
}

impl CrossTabQuery {
    pub fn new(new: &Population, old: &Population) -> CrossTabQuery {
        let predicate = |p: &Option<String>| p.clone().unwrap_or_else(|| "TRUE".into());
        let (in_new, in_old) = (predicate(&new.predicate), predicate(&old.predicate));
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
        let keys = groups.iter().enumerate().map(|(i, g)| format!("{g} AS k{i}"));
        let counts = [
            format!("count(*) FILTER (WHERE {in_new}) AS n_new"),
            format!("count(*) FILTER (WHERE {in_old}) AS n_old"),
            format!("count(*) FILTER (WHERE ({in_new}) AND ({in_old})) AS n_both"),
        ];
        let columns = keys.chain(counts).collect::<Vec<_>>().join(", ");
        let mut sql = format!("SELECT {columns} FROM {}", new.table);
        if new.predicate.is_some() && old.predicate.is_some() {
            sql.push_str(&format!(" WHERE ({in_new}) OR ({in_old})"));
        }
        if !groups.is_empty() {
            let positions = (1..=groups.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            sql.push_str(&format!(" GROUP BY {positions}"));
        }
        CrossTabQuery {
            sql,
            new_columns,
            old_columns,
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
    /// Reads the answer to `query`.
    pub fn from_batches(batches: &[RecordBatch], query: &CrossTabQuery) -> Result<CrossTab> {
        let mut tab = CrossTab::default();
        for batch in batches {
            let columns = batch.columns();
            let pick = |indices: &[usize]| indices.iter().map(|&i| columns[i].clone()).collect::<Vec<_>>();
            let (new_cols, old_cols) = (pick(&query.new_columns), pick(&query.old_columns));
            let counts = &columns[query.width()..];
            let counts = counts
                .iter()
                .map(|c| Ok(cast(c, &DataType::Int64)?.as_primitive::<Int64Type>().clone()))
                .collect::<Result<Vec<_>>>()?;
            for i in 0..batch.num_rows() {
                let (k, o) = (key_at(&new_cols, i), key_at(&old_cols, i));
                let n = |c: usize| if counts[c].is_null(i) { 0 } else { counts[c].value(i) };
                *tab.new.entry(k.clone()).or_default() += n(0);
                *tab.old.entry(o.clone()).or_default() += n(1);
                *tab.both.entry((k, o)).or_default() += n(2);
            }
        }
        tab.new.retain(|_, n| *n > 0);
        tab.old.retain(|_, n| *n > 0);
        Ok(tab)
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
