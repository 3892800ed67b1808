//! The grid of cells a private answer releases: every combination of its group keys' public
//! values, whether or not any record falls in it. Which cells exist is decided from the
//! contracts alone, never from the data, so a released row tells nothing by being there.
//!
//! Each key is a function of one contract column (the cell model enforces it); its possible
//! values come from evaluating it on that column's public *witnesses*: a dimension's domain,
//! a date's months in the federation's public period, a measure's bounds and band edges (a
//! band's value changes only at an edge). Conditions on a key's own column narrow its values.
//! A grid too large to release whole is released in part, by a noisy threshold on each cell's
//! count of records ([`Cells::Selected`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{ArrayRef, Date32Array, Float64Array, StringArray};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use tessera_policy::Refusal;
use tessera_schemas::{Contract, Role};

use super::plan::PrivatePlan;
use super::public::{BaseColumn, PublicValues};

/// The public values a grid is made from, beyond the contracts.
#[derive(Debug, Clone)]
pub struct Witnesses {
    /// Domain name → its codes.
    pub domains: BTreeMap<String, Vec<String>>,
    /// The first day of the first and of the last month of the federation's public period.
    pub period: (NaiveDate, NaiveDate),
    /// This trust's own ODS code: its records' `provider_code`.
    pub trust: String,
}

/// The cells a private answer may release.
#[derive(Debug, Clone, PartialEq)]
pub enum Cells {
    /// Every cell of the public grid, one row of key values each (typed as the aggregate
    /// outputs them), released whatever the data.
    Grid(Vec<Vec<ScalarValue>>),
    /// The grid has more than `max_cells` cells: only cells whose noisy count of records passes
    /// a threshold are released ([`tessera_privacy::selection`]), and only with key values the
    /// contracts list (one set per column the keys read).
    Selected(Vec<KeyValues>),
}

/// The public values of the keys on one column, as a cell's key must have them.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValues {
    /// The keys' positions among the group keys.
    positions: Vec<usize>,
    /// Their public value tuples.
    values: std::collections::HashSet<Vec<ScalarValue>>,
}

impl KeyValues {
    /// Whether the cell with group key values `key` has public values on this column.
    pub fn admits(&self, key: &[ScalarValue]) -> bool {
        let tuple = self
            .positions
            .iter()
            .map(|&i| key.get(i).cloned().unwrap_or(ScalarValue::Null))
            .collect::<Vec<_>>();
        self.values.contains(&tuple)
    }
}

impl Cells {
    /// Whether no cell can be released: the question's conditions leave its grid no public
    /// value (which the contracts alone decide).
    pub fn is_empty(&self) -> bool {
        matches!(self, Cells::Grid(cells) if cells.is_empty())
    }
}

/// The cells of `plan`'s answer: its whole grid, from public values alone, or (when that has
/// more than `max_cells` cells) the cells a noisy threshold selects. Every key must have public
/// values either way.
pub fn grid(
    plan: &PrivatePlan,
    contracts: &BTreeMap<String, Contract>,
    witnesses: &Witnesses,
    max_cells: u64,
    state: &SessionState,
) -> Result<Cells, Refusal> {
    let schema = plan.input.schema();
    let mut by_column: BTreeMap<Option<BaseColumn>, Vec<(usize, Expr)>> = BTreeMap::new();
    for (i, group) in plan.groups.iter().enumerate() {
        let key = tessera_policy::cells::resolve(group, schema, &plan.lineage.defs)?;
        let column = single_column(&key)?;
        by_column.entry(column).or_default().push((i, key));
    }
    // A key's own conditions narrow its values below; the other columns' are checked here.
    if contradicted(plan, contracts, witnesses, state, |c| {
        by_column.contains_key(&Some(c.clone()))
    })? {
        return Ok(Cells::Grid(Vec::new()));
    }
    let output = plan.aggregate.schema();
    // Every key's public values first: one left with none empties the grid, whatever the others.
    let mut columns = Vec::new();
    for (column, keys) in by_column {
        columns.push(key_values(
            column.as_ref(),
            &keys,
            plan,
            contracts,
            witnesses,
            output,
            state,
        )?);
    }
    if columns.iter().any(Vec::is_empty) {
        return Ok(Cells::Grid(Vec::new()));
    }
    let mut rows: Vec<Vec<(usize, ScalarValue)>> = vec![Vec::new()];
    let mut too_many = false;
    for values in &columns {
        too_many |= rows.len() as u64 * values.len() as u64 > max_cells;
        if too_many {
            rows.clear();
            continue;
        }
        rows = rows
            .into_iter()
            .flat_map(|row| {
                values.iter().map(move |v| {
                    let mut row = row.clone();
                    row.extend(v.iter().cloned());
                    row
                })
            })
            .collect();
    }
    if too_many {
        let public = columns
            .iter()
            .map(|values| KeyValues {
                positions: values[0].iter().map(|(i, _)| *i).collect(),
                values: values
                    .iter()
                    .map(|v| v.iter().map(|(_, value)| value.clone()).collect())
                    .collect(),
            })
            .collect();
        return Ok(Cells::Selected(public));
    }
    Ok(Cells::Grid(
        rows.into_iter()
            .map(|mut row| {
                row.sort_by_key(|(i, _)| *i);
                row.into_iter().map(|(_, v)| v).collect()
            })
            .collect(),
    ))
}

/// The base column a key reads (`None` for a constant key).
fn single_column(key: &Expr) -> Result<Option<(String, String)>, Refusal> {
    let columns = key.column_refs();
    match columns.into_iter().collect::<Vec<_>>().as_slice() {
        [] => Ok(None),
        [Column {
            relation: Some(table),
            name,
            ..
        }] => Ok(Some((table.table().to_string(), name.clone()))),
        _ => Err(Refusal::new(format!("group key {key} must read exactly one column"))),
    }
}

/// The distinct values of the keys on one column, each tagged with its group position.
fn key_values(
    column: Option<&BaseColumn>,
    keys: &[(usize, Expr)],
    plan: &PrivatePlan,
    contracts: &BTreeMap<String, Contract>,
    witnesses: &Witnesses,
    output: &DFSchema,
    state: &SessionState,
) -> Result<Vec<Vec<(usize, ScalarValue)>>, Refusal> {
    let mut values = PublicValues::of(column, contracts, witnesses)?;
    if let Some((table, name)) = column {
        if let Some(condition) = conjunction(own_conditions(plan, table, name)) {
            values = values.filter(state, condition)?;
        }
    }
    let exprs = keys
        .iter()
        .map(|(i, key)| (key.clone(), output.field(*i).data_type()))
        .collect::<Vec<_>>();
    let tuples = values.distinct(state, &exprs)?;
    Ok(tuples
        .into_iter()
        .map(|tuple| keys.iter().map(|(i, _)| *i).zip(tuple).collect())
        .collect())
}

/// The question's conditions that read only `table.name`.
fn own_conditions(plan: &PrivatePlan, table: &str, name: &str) -> Vec<Expr> {
    plan.lineage
        .conditions
        .iter()
        .filter(|c| {
            let refs = c.column_refs();
            !refs.is_empty()
                && refs
                    .iter()
                    .all(|r| r.name == name && r.relation.as_ref().map(|t| t.table()) == Some(table))
        })
        .cloned()
        .collect()
}

/// Whether the question's conditions on a dimension leave it no public value at this trust
/// (`WHERE provider_code = 'RRK'` at another trust, or a code no domain has): then no record
/// can be in any cell, which the contracts and the question alone decide.
fn contradicted(
    plan: &PrivatePlan,
    contracts: &BTreeMap<String, Contract>,
    witnesses: &Witnesses,
    state: &SessionState,
    is_key: impl Fn(&BaseColumn) -> bool,
) -> Result<bool, Refusal> {
    let mut columns = plan
        .lineage
        .conditions
        .iter()
        .filter_map(|c| match single_column(c) {
            Ok(Some(column)) => Some(column),
            _ => None,
        })
        .collect::<Vec<_>>();
    columns.sort();
    columns.dedup();
    for column in columns.into_iter().filter(|c| !is_key(c)) {
        let (table, name) = &column;
        let dimension = contracts
            .get(table)
            .and_then(|c| c.column(name))
            .is_some_and(|info| info.role == Role::Dimension);
        let Some(condition) = conjunction(own_conditions(plan, table, name)).filter(|_| dimension) else {
            continue;
        };
        // A dimension with no public list (a flag, say) cannot be contradicted by one.
        let Ok(values) = PublicValues::of(Some(&column), contracts, witnesses) else {
            continue;
        };
        if values.filter(state, condition)?.len() == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The public values a column can take, as text, dates or numbers (cast to its type after).
pub(super) fn witness_values(
    contract: &Contract,
    column: &tessera_schemas::Column,
    witnesses: &Witnesses,
) -> Result<ArrayRef, Refusal> {
    let nulls = usize::from(column.nullable);
    let refused = || {
        Refusal::new(format!(
            "{}.{} has no public list of values, so it cannot be a group key with differential privacy",
            contract.name, column.name
        ))
    };
    match column.role {
        Role::Dimension if column.name == "provider_code" => {
            Ok(Arc::new(StringArray::from(vec![Some(witnesses.trust.clone())])))
        }
        Role::Dimension => {
            let domain = column
                .domain
                .as_ref()
                .and_then(|d| witnesses.domains.get(d))
                .ok_or_else(refused)?;
            let values = domain
                .iter()
                .map(|c| Some(c.clone()))
                .chain(std::iter::repeat_n(None, nulls))
                .collect::<Vec<_>>();
            Ok(Arc::new(StringArray::from(values)))
        }
        Role::Date => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
            let (mut month, last) = witnesses.period;
            let mut days = Vec::new();
            while month <= last {
                days.push(Some((month - epoch).num_days() as i32));
                month = next_month(month);
            }
            days.extend(std::iter::repeat_n(None, nulls));
            Ok(Arc::new(Date32Array::from(days)))
        }
        Role::Measure => {
            let (low, high) = column.bounds.ok_or_else(refused)?;
            let mut points = vec![low, high];
            for edge in &column.bands {
                for delta in [-1.0, -0.5, 0.0, 0.5, 1.0] {
                    points.push((edge + delta).clamp(low, high));
                }
            }
            let values = points
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat_n(None, nulls))
                .collect::<Vec<_>>();
            Ok(Arc::new(Float64Array::from(values)))
        }
        Role::Identifier => Err(refused()),
    }
}

/// The first day of the month after `day`'s.
pub fn next_month(day: NaiveDate) -> NaiveDate {
    let (year, month) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).expect("a first day of a month")
}
