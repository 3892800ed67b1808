//! The cell model: what any aggregate over records of people may compute, checked by the
//! coordinator on the researcher's query and by every node on its fragment, from the same
//! contracts and the same code.
//!
//! Every row an aggregate returns is a **cell**: group keys × statistics over the records the
//! conditions select. Protection holds by construction when
//! - **group keys come from public domains**: each key is a function of one contract column —
//!   a dimension, a date truncated to its grain or coarser, or a measure banded at its declared
//!   edges ([`columns`]);
//! - **conditions select boxes**: WHERE, FILTER and the tests inside a statistic are
//!   conjunctions of conditions each about one column, so no condition can carve one record
//!   out of a group across dimensions (`NOT (day AND sex AND age)`, `OR` across columns);
//! - **statistics come from a whitelist**, classified by the records they are built from, not
//!   their spelling ([`statistics`]): each has classes of records that disclosure control
//!   checks against the threshold one by one.
//!
//! Joins keep one row per record: a public table only on its whole key, two tables of people
//! only person to person. Organisational tables (no identifier column) are not person data.

mod columns;
mod fold;
mod lineage;
mod statistics;
mod total;

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::logical_expr::{Aggregate, Expr, Operator};
use tessera_schemas::{Contract, Role};

pub use lineage::{base_column, lineage, resolve, Lineage};
pub use statistics::{StatisticKind, StatisticShape};

use crate::expr_util::strip_alias;
use crate::refusal::Refusal;
use columns::{check_use, ColumnInfo};

/// Who wrote the aggregate being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A researcher's query, checked at the coordinator.
    Query,
    /// A fragment a trust receives: it may also select the classes of records a statistic's
    /// support is counted on (`x <> 0`, `x = 1`), which a researcher may not write as filters.
    Fragment,
}

/// The rules, over the contracts of the tables involved.
pub struct CellRules<'a> {
    contracts: &'a BTreeMap<String, Contract>,
    origin: Origin,
    noised: bool,
}

/// What the rules found about one aggregate over person data.
#[derive(Debug, Clone)]
pub struct AggregateCells {
    /// One per aggregate expression, in order.
    pub statistics: Vec<StatisticShape>,
}

impl<'a> CellRules<'a> {
    /// Rules over `contracts` (table name → contract) for aggregates written by `origin`.
    pub fn new(contracts: &'a BTreeMap<String, Contract>, origin: Origin) -> CellRules<'a> {
        CellRules {
            contracts,
            origin,
            noised: false,
        }
    }

    /// Rules for a trust that adds calibrated noise to every statistic (differential privacy):
    /// arithmetic on floating-point numbers, which cannot fail, is allowed too, since a
    /// statistic's sensitivity comes from its bounds, not from its shape.
    pub fn noised(mut self, noised: bool) -> Self {
        self.noised = noised;
        self
    }

    /// Whether any of `tables` holds records of people (it has an identifier column).
    pub fn about_people<'t>(&self, mut tables: impl Iterator<Item = &'t String>) -> bool {
        tables.any(|t| {
            self.contracts
                .get(t)
                .is_some_and(|c| c.columns.iter().any(|c| c.role == Role::Identifier))
        })
    }

    /// Checks one aggregate; `None` when it reads no person data (no rules apply).
    pub fn check(&self, aggregate: &Aggregate) -> Result<Option<AggregateCells>, Refusal> {
        let lineage = lineage(&aggregate.input)?;
        if !self.about_people(lineage.tables.iter()) {
            return Ok(None);
        }
        let schema = aggregate.input.schema();
        let resolve = |e: &Expr| lineage::resolve(e, schema, &lineage.defs);
        self.check_joins(&lineage)?;
        for condition in &lineage.conditions {
            self.check_condition(condition)?;
        }
        for group in &aggregate.group_expr {
            if let Expr::GroupingSet(_) = group {
                return Err(Refusal::new(
                    "GROUPING SETS, ROLLUP and CUBE are computed by the coordinator from plain GROUP BY cells",
                ));
            }
            self.check_key(&resolve(group)?, group)?;
        }
        if self.noised {
            // Every statistic is noised to its bounds at the trust: it need only never fail.
            for expr in &aggregate.aggr_expr {
                self.check_noised(expr, &resolve)?;
            }
            return Ok(Some(AggregateCells { statistics: Vec::new() }));
        }
        let statistics = aggregate
            .aggr_expr
            .iter()
            .map(|e| match strip_alias(e) {
                Expr::AggregateFunction(f) if f.func.name() == tessera_protocol::names::CELL_KEY => {
                    self.check_cell_key(f, &resolve, &lineage)
                }
                _ => self.statistic(e, &resolve),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.check_spreads(aggregate, &lineage, &resolve)?;
        Ok(Some(AggregateCells { statistics }))
    }

    /// A spread (`var`/`stddev`, and a model's covariances) is of measures as recorded, over
    /// records chosen by other columns. Black-box attacks read exact values through a spread of
    /// `CASE WHEN box THEN 0 ELSE x END` (the plain spread's records and noise, so the difference
    /// isolates the box), and through a measure narrowed by its own values to a few (a spread of
    /// 0s and 1s is a count of each).
    fn check_spreads(
        &self,
        aggregate: &Aggregate,
        lineage: &Lineage,
        resolve: &dyn Fn(&Expr) -> Result<Expr, Refusal>,
    ) -> Result<(), Refusal> {
        let chosen_by_conditions: BTreeSet<String> = lineage
            .conditions
            .iter()
            .flat_map(|c| c.column_refs().into_iter().map(|c| c.name.clone()))
            .collect();
        for expr in &aggregate.aggr_expr {
            let Expr::AggregateFunction(f) = strip_alias(expr) else {
                continue;
            };
            let name = f.func.name();
            // Models (covariance, correlation, regression) are spreads of two measures: the same rule.
            let spread = matches!(
                name,
                "var" | "var_pop" | "var_samp" | "stddev" | "stddev_pop" | "stddev_samp"
            );
            if !spread && !statistics::is_model(name) {
                continue;
            }
            let mut chosen_by = chosen_by_conditions.clone();
            if let Some(filter) = &f.params.filter {
                chosen_by.extend(resolve(filter)?.column_refs().into_iter().map(|c| c.name.clone()));
            }
            for arg in &f.params.args {
                let arg = resolve(arg)?;
                let mut picked = false;
                arg.apply(|e| {
                    picked |= matches!(e, Expr::Case(_));
                    Ok(TreeNodeRecursion::Continue)
                })
                .map_err(|e| Refusal::new(e.strip_backtrace()))?;
                if picked {
                    return Err(Refusal::new(format!(
                        "{name}() of a measure picked by CASE is not available: choose the records with \
                         FILTER (WHERE …) or WHERE instead"
                    )));
                }
                if let Some(column) = arg.column_refs().into_iter().find(|c| chosen_by.contains(&c.name)) {
                    return Err(Refusal::new(format!(
                        "{name}() of {0} over records chosen by {0}'s own values is not available: narrowed to a \
                         few values, a spread is a count of each; choose the records by other columns",
                        column.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// `tessera_cell_key(…)` (fragments only): its arguments are every column of every table of
    /// people read, so that each record's key is a MAC of its whole row.
    fn check_cell_key(
        &self,
        f: &datafusion::logical_expr::expr::AggregateFunction,
        resolve: &dyn Fn(&Expr) -> Result<Expr, Refusal>,
        lineage: &Lineage,
    ) -> Result<StatisticShape, Refusal> {
        if self.origin != Origin::Fragment {
            return Err(Refusal::new(format!("{} is not available in queries", f.func.name())));
        }
        if let Some(filter) = &f.params.filter {
            self.check_box(&resolve(filter)?)?;
        }
        let mut covered = BTreeSet::new();
        for arg in &f.params.args {
            match resolve(arg)? {
                Expr::Column(c) => {
                    covered.insert((c.relation.map(|r| r.table().to_string()), c.name));
                }
                other => {
                    return Err(Refusal::new(format!(
                        "{} takes whole rows (columns), not `{other}`",
                        f.func.name()
                    )))
                }
            }
        }
        for table in lineage.tables.iter().filter(|t| self.about_people(std::iter::once(*t))) {
            let contract = &self.contracts[table];
            if let Some(missing) = contract
                .columns
                .iter()
                .find(|c| !covered.contains(&(Some(table.clone()), c.name.clone())))
            {
                return Err(Refusal::new(format!(
                    "{} must be given every column of {table} (a record's key covers its whole row); {} is missing",
                    f.func.name(),
                    missing.name
                )));
            }
        }
        Ok(StatisticShape {
            kind: StatisticKind::Count,
            classes: Vec::new(),
        })
    }

    /// The contract column behind a base column.
    fn info<'c>(&'c self, column: &'c Column) -> Option<ColumnInfo<'c>> {
        let table = column.relation.as_ref()?.table();
        let contract = self.contracts.get(table)?;
        Some(ColumnInfo {
            table: &contract.name,
            column: contract.column(&column.name)?,
        })
    }

    /// The one base column `expr` reads, `None` for a constant; refused when it reads several.
    fn single_column(&self, expr: &Expr, what: &str) -> Result<Option<Column>, Refusal> {
        let columns = expr.column_refs();
        let mut columns = columns.into_iter();
        match (columns.next(), columns.next()) {
            (None, _) => Ok(None),
            (Some(c), None) => Ok(Some(c.clone())),
            (Some(a), Some(b)) => Err(Refusal::new(format!(
                "{what} `{expr}` combines {} and {}: each must be about one column, so that it selects whole cells \
                 of public domains (combine conditions with AND; OR and NOT may only be used within one column)",
                a.name, b.name
            ))),
        }
    }

    /// A group key (resolved to base columns; `written` is what the query says).
    pub fn check_key(&self, key: &Expr, written: &Expr) -> Result<(), Refusal> {
        refuse_volatile(key)?;
        self.check_total(key)?;
        let Some(column) = self.single_column(key, "the group key")? else {
            return Ok(());
        };
        let info = self
            .info(&column)
            .ok_or_else(|| Refusal::new(format!("column {} is not in any contract", column.name)))?;
        check_use(key, &column, &info).map_err(|refusal| {
            Refusal::new(format!(
                "GROUP BY {}: {}. Group keys come from public domains: {}",
                strip_alias(written),
                refusal.reason,
                self.allowed_keys(info.table)
            ))
        })
    }

    /// What may be grouped on in `table`, for messages.
    fn allowed_keys(&self, table: &str) -> String {
        let Some(contract) = self.contracts.get(table) else {
            return "contract dimensions".into();
        };
        let dims = contract
            .columns
            .iter()
            .filter(|c| c.role == Role::Dimension)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>();
        let dates = contract
            .columns
            .iter()
            .filter(|c| c.role == Role::Date)
            .map(|c| format!("date_trunc('{}', {})", c.grain.name(), c.name))
            .collect::<Vec<_>>();
        let bands = contract
            .columns
            .iter()
            .filter(|c| c.role == Role::Measure && !c.bands.is_empty())
            .map(|c| format!("bands of {} (CASE WHEN … at its edges)", c.name))
            .collect::<Vec<_>>();
        [dims.join(", "), dates.join(", "), bands.join(", ")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One conjunct of a filter (resolved to base columns).
    pub fn check_condition(&self, condition: &Expr) -> Result<(), Refusal> {
        refuse_volatile(condition)?;
        self.check_total(condition)?;
        if self.is_pairing(condition) {
            return Ok(());
        }
        if self.origin == Origin::Fragment && self.is_support_class(condition) {
            return Ok(());
        }
        let Some(column) = self.single_column(condition, "the condition")? else {
            return Ok(());
        };
        let info = self
            .info(&column)
            .ok_or_else(|| Refusal::new(format!("column {} is not in any contract", column.name)))?;
        check_use(condition, &column, &info)
            .map_err(|refusal| Refusal::new(format!("the condition `{condition}`: {}", refusal.reason)))
    }

    /// A conjunction of per-column conditions (a box): a condition inside a statistic.
    fn check_box(&self, condition: &Expr) -> Result<(), Refusal> {
        for conjunct in lineage::conjuncts(condition) {
            self.check_condition(&conjunct)?;
        }
        Ok(())
    }

    /// `a.x = b.y` between columns of two different tables with the same role: it pairs records.
    fn is_pairing(&self, condition: &Expr) -> bool {
        let Expr::BinaryExpr(b) = condition else { return false };
        if !matches!(b.op, Operator::Eq | Operator::IsNotDistinctFrom) {
            return false;
        }
        self.pairs(&b.left, &b.right)
    }

    fn pairs(&self, left: &Expr, right: &Expr) -> bool {
        match (bare_column(left), bare_column(right)) {
            (Some(l), Some(r)) => match (self.info(l), self.info(r)) {
                (Some(a), Some(b)) => {
                    (a.table != b.table || l == r) && a.column.role == b.column.role && a.column.role != Role::Measure
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// `x = v`, `x <> 0`, `x IS NOT NULL`… where `x` is a statistic's argument: the classes of
    /// records a coordinator counts a statistic's support on.
    fn is_support_class(&self, condition: &Expr) -> bool {
        use statistics::Shape;
        match condition {
            Expr::BinaryExpr(b) if matches!(b.op, Operator::Eq | Operator::NotEq) => {
                let (arg, value) = match (fold::literal(&b.left), fold::literal(&b.right)) {
                    (None, Some(v)) => (&b.left, v),
                    (Some(v), None) => (&b.right, v),
                    _ => return false,
                };
                let as_number = |v: &datafusion::common::ScalarValue| fold::number(&Expr::Literal(v.clone(), None));
                match self.shape(arg) {
                    // The contributors of a sum (`x <> 0`): any other value would be a new boundary.
                    Ok(Shape::Measure { .. }) => as_number(value) == Some(0.0),
                    // One class of an indicator: one of the values it takes.
                    Ok(Shape::Classes(values)) => values.iter().any(|v| as_number(v) == as_number(value)),
                    _ => false,
                }
            }
            Expr::IsNotNull(arg) | Expr::IsTrue(arg) | Expr::IsFalse(arg) => self.shape(arg).is_ok(),
            _ => false,
        }
    }

    /// Joins keep one row per record: public tables joined on their whole key. Two tables of
    /// people are never joined record by record: a person's records meet each of their records in
    /// the other table, so a chain of such joins copies one record thousands of times, past the
    /// threshold and under the noise.
    fn check_joins(&self, lineage: &Lineage) -> Result<(), Refusal> {
        let mut pairs = lineage.join_pairs.clone();
        for condition in &lineage.conditions {
            if let Expr::BinaryExpr(b) = condition {
                if self.is_pairing(condition) {
                    pairs.push(((*b.left).clone(), (*b.right).clone()));
                }
            }
        }
        for (l, r) in &pairs {
            if !self.pairs(l, r) {
                return Err(Refusal::new(format!(
                    "the join condition `{l} = {r}` must equate columns of two tables with the same role (a person \
                     with the same person, a dimension with a dimension)"
                )));
            }
        }
        if lineage.scanned.len() < 2 {
            return Ok(());
        }
        let people = lineage
            .scanned
            .iter()
            .filter(|t| self.about_people(std::iter::once(*t)))
            .collect::<Vec<_>>();
        if let [first, second, ..] = people.as_slice() {
            return Err(Refusal::new(format!(
                "{first} and {second} cannot be joined record by record: each record would meet every record of \
                 the same person in the other table, and be counted as many times. Aggregate each table (e.g. in \
                 CTEs grouped by provider_code and month) and join the aggregates"
            )));
        }
        let matched = |table: &str| {
            pairs
                .iter()
                .flat_map(|(l, r)| [l, r])
                .filter_map(bare_column)
                .filter(|c| c.relation.as_ref().is_some_and(|t| t.table() == table))
                .map(|c| c.name.clone())
                .collect::<BTreeSet<_>>()
        };
        for table in &lineage.tables {
            let Some(contract) = self.contracts.get(table) else {
                continue;
            };
            let on = matched(table);
            if contract.public {
                if contract.key.is_empty() || !contract.key.iter().all(|k| on.contains(k)) {
                    return Err(Refusal::new(format!(
                        "a join with {table} must match its whole key ({}), so that each record meets at most one \
                         of its rows",
                        contract.key.join(", ")
                    )));
                }
            } else if contract.identifiers().next().is_none() {
                return Err(Refusal::new(format!(
                    "records of people cannot be joined with {table} row by row: its rows could meet a record more \
                     than once. Aggregate each table and join the aggregates (e.g. in CTEs)"
                )));
            }
        }
        Ok(())
    }
}

/// Whether `op` compares two values: `=`, `<>`, `<`, `<=`, `>`, `>=`, `IS [NOT] DISTINCT FROM`.
fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// The column behind `expr`, through casts.
fn bare_column(expr: &Expr) -> Option<&Column> {
    match strip_alias(expr) {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) => bare_column(&c.expr),
        Expr::TryCast(c) => bare_column(&c.expr),
        _ => None,
    }
}

/// Volatile functions (`random()`, `now()`) would make the same question select different records.
fn refuse_volatile(expr: &Expr) -> Result<(), Refusal> {
    match expr.is_volatile() {
        true => Err(Refusal::new(format!(
            "`{expr}` uses a volatile function (random(), now() …): a condition or group must select the same \
             records every time"
        ))),
        false => Ok(()),
    }
}
