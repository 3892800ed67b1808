//! Walks a logical plan bottom-up and decides whether a node may run it.

use std::collections::BTreeMap;

use datafusion::common::{Column, DFSchema, JoinType};
use datafusion::logical_expr::{Distinct, LogicalPlan};
use tessera_schemas::{Contract, Role};

use super::exprs::{self, bare_column, check_aggregate_expr, check_group_expr, check_uses, value_taint};
use super::lineage::{NodeInfo, Taint};
use super::{NodePolicy, Profile, Refusal};
use crate::cells::{CellRules, Origin};

/// Checks plans against one node's policy and the contracts of the tables it serves.
pub struct PolicyChecker<'a> {
    policy: &'a NodePolicy,
    tables: &'a BTreeMap<String, Contract>,
    coordinator: bool,
    noised: bool,
}

impl<'a> PolicyChecker<'a> {
    /// A checker for a node serving `tables` (table name → contract) under `policy`.
    pub fn new(policy: &'a NodePolicy, tables: &'a BTreeMap<String, Contract>) -> Self {
        PolicyChecker {
            policy,
            tables,
            coordinator: false,
            noised: false,
        }
    }

    /// Checks for a trust that noises every statistic (see [`CellRules::noised`]).
    pub fn noised(mut self, noised: bool) -> Self {
        self.noised = noised;
        self
    }

    /// Checks requests that proved they come from this trust's coordinator (its pinned client certificate).
    pub fn for_coordinator(mut self, coordinator: bool) -> Self {
        self.coordinator = coordinator;
        self
    }

    /// Accepts the plan or says why not.
    pub fn check(&self, plan: &LogicalPlan) -> Result<(), Refusal> {
        let info = self.visit(plan)?;
        if let Some(table) = info.exposes_rows_of {
            return Err(Refusal::new(format!(
                "the query returns individual rows of {table}; a trust node answers only aggregate queries (e.g. SELECT age_band, count(*), avg(…) FROM {table} GROUP BY age_band)"
            )));
        }
        for taint in info.columns {
            if let Taint::Identifier { name } = taint {
                return Err(Refusal::new(format!(
                    "column {name} is an identifier and cannot appear in the output"
                )));
            }
        }
        Ok(())
    }

    fn visit(&self, plan: &LogicalPlan) -> Result<NodeInfo, Refusal> {
        match plan {
            LogicalPlan::Projection(p) => {
                let input = self.visit(&p.input)?;
                let columns = {
                    let resolve = resolver(&input, p.input.schema());
                    p.expr
                        .iter()
                        .map(|e| value_taint(e, &resolve))
                        .collect::<Result<Vec<_>, _>>()?
                };
                Ok(NodeInfo {
                    columns,
                    exposes_rows_of: input.exposes_rows_of,
                })
            }
            LogicalPlan::Filter(f) => {
                let input = self.visit(&f.input)?;
                check_uses(&f.predicate, &resolver(&input, f.input.schema()))?;
                Ok(input)
            }
            LogicalPlan::Window(_) => Err(exprs::window()),
            LogicalPlan::Aggregate(a) => {
                let input = self.visit(&a.input)?;
                let resolve = resolver(&input, a.input.schema());
                let mut columns = a
                    .group_expr
                    .iter()
                    .map(|e| check_group_expr(e, &resolve))
                    .collect::<Result<Vec<_>, _>>()?;
                for e in &a.aggr_expr {
                    check_aggregate_expr(e, &resolve, self.policy, self.coordinator)?;
                    columns.push(Taint::Plain);
                }
                if self.policy.profile == Profile::Default {
                    CellRules::new(self.tables, Origin::Fragment)
                        .noised(self.noised)
                        .check(a)?;
                }
                same_width(columns, a.schema.fields().len())
            }
            LogicalPlan::Sort(s) => {
                let input = self.visit(&s.input)?;
                if let (Some(_), Some(table)) = (s.fetch, &input.exposes_rows_of) {
                    return Err(limit_over_rows(table));
                }
                {
                    let resolve = resolver(&input, s.input.schema());
                    for sort in s.expr.iter().filter(|sort| bare_column(&sort.expr).is_none()) {
                        check_uses(&sort.expr, &resolve)?;
                    }
                }
                Ok(input)
            }
            LogicalPlan::Join(j) => {
                let left = self.visit(&j.left)?;
                let right = self.visit(&j.right)?;
                self.check_join_keys(j, &left, &right)?;
                let both = left.columns.iter().chain(&right.columns).cloned().collect::<Vec<_>>();
                let both_schema = j
                    .left
                    .schema()
                    .join(j.right.schema())
                    .map_err(|e| Refusal::new(format!("cannot check join: {e}")))?;
                let both_info = NodeInfo {
                    columns: both.clone(),
                    exposes_rows_of: None,
                };
                if let Some(filter) = &j.filter {
                    check_uses(filter, &resolver(&both_info, &both_schema))?;
                }
                let exposes_rows_of = left.exposes_rows_of.clone().or(right.exposes_rows_of.clone());
                let columns = match j.join_type {
                    JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => both,
                    JoinType::LeftSemi | JoinType::LeftAnti => left.columns,
                    JoinType::RightSemi | JoinType::RightAnti => right.columns,
                    JoinType::LeftMark => [left.columns, vec![Taint::Plain]].concat(),
                    JoinType::RightMark => [right.columns, vec![Taint::Plain]].concat(),
                };
                same_width(columns, j.schema.fields().len()).map(|info| NodeInfo {
                    exposes_rows_of,
                    ..info
                })
            }
            LogicalPlan::Repartition(r) => self.visit(&r.input),
            LogicalPlan::Union(u) => {
                let inputs = u.inputs.iter().map(|i| self.visit(i)).collect::<Result<Vec<_>, _>>()?;
                let width = u.schema.fields().len();
                let mut columns = vec![Taint::Plain; width];
                for input in &inputs {
                    for (slot, taint) in columns.iter_mut().zip(&input.columns) {
                        if rank(taint) > rank(slot) {
                            *slot = taint.clone();
                        }
                    }
                }
                let exposes_rows_of = inputs.iter().find_map(|i| i.exposes_rows_of.clone());
                Ok(NodeInfo {
                    columns,
                    exposes_rows_of,
                })
            }
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                if let Some(function) = name.strip_suffix("()") {
                    return Err(Refusal::new(format!(
                        "table function {function} is not allowed at a node"
                    )));
                }
                let contract = self
                    .tables
                    .get(name)
                    .ok_or_else(|| Refusal::new(format!("table {name} is not served by this trust")))?;
                if !self.policy.allowed_tables.is_empty() && !self.policy.allowed_tables.contains(name) {
                    return Err(Refusal::new(format!(
                        "table {name} is not shared by this trust's policy"
                    )));
                }
                let columns = scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| self.column_taint(contract, f.name()))
                    .collect::<Vec<_>>();
                let info = NodeInfo {
                    columns,
                    exposes_rows_of: (!contract.public).then(|| name.to_string()),
                };
                if scan.fetch.is_some() && !contract.public {
                    return Err(limit_over_rows(name));
                }
                {
                    let resolve = resolver(&info, &scan.projected_schema);
                    for filter in &scan.filters {
                        check_uses(filter, &resolve)?;
                    }
                }
                Ok(info)
            }
            LogicalPlan::EmptyRelation(e) => Ok(NodeInfo::plain(e.schema.fields().len())),
            LogicalPlan::Values(v) => Ok(NodeInfo::plain(v.schema.fields().len())),
            LogicalPlan::Subquery(_) => Err(exprs::subquery()),
            LogicalPlan::SubqueryAlias(s) => self.visit(&s.input),
            LogicalPlan::Limit(l) => {
                let input = self.visit(&l.input)?;
                if let Some(table) = &input.exposes_rows_of {
                    return Err(limit_over_rows(table));
                }
                Ok(input)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let info = self.visit(input)?;
                if let Some(Taint::Identifier { name }) =
                    info.columns.iter().find(|t| matches!(t, Taint::Identifier { .. }))
                {
                    return Err(Refusal::new(format!(
                        "column {name} is an identifier and cannot appear in SELECT DISTINCT"
                    )));
                }
                if self.policy.profile == Profile::Default {
                    // Its rows are groups of every column: the same rules as a GROUP BY.
                    let groups = input
                        .schema()
                        .columns()
                        .into_iter()
                        .map(datafusion::prelude::Expr::Column)
                        .collect();
                    let aggregate = datafusion::logical_expr::Aggregate::try_new(input.clone(), groups, Vec::new())
                        .map_err(|e| Refusal::new(format!("cannot check SELECT DISTINCT: {e}")))?;
                    CellRules::new(self.tables, Origin::Fragment)
                        .noised(self.noised)
                        .check(&aggregate)?;
                }
                Ok(info)
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(Refusal::new("DISTINCT ON is not allowed at a node")),
            LogicalPlan::Statement(_) => Err(not_a_query("a statement")),
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Err(not_a_query("EXPLAIN")),
            LogicalPlan::Extension(_) => Err(not_a_query("an extension plan")),
            LogicalPlan::Dml(_) => Err(not_a_query("INSERT/UPDATE/DELETE")),
            LogicalPlan::Ddl(_) => Err(not_a_query("DDL")),
            LogicalPlan::Copy(_) => Err(not_a_query("COPY")),
            LogicalPlan::DescribeTable(_) => Err(not_a_query("DESCRIBE")),
            LogicalPlan::Unnest(_) => Err(Refusal::new("UNNEST is not allowed at a node")),
            LogicalPlan::RecursiveQuery(_) => Err(Refusal::new("recursive queries are not allowed at a node")),
        }
    }

    /// Join keys: identifiers may only be matched with identifiers (a person joined to themself).
    fn check_join_keys(
        &self,
        j: &datafusion::logical_expr::Join,
        left: &NodeInfo,
        right: &NodeInfo,
    ) -> Result<(), Refusal> {
        let resolve_left = resolver(left, j.left.schema());
        let resolve_right = resolver(right, j.right.schema());
        for (l, r) in &j.on {
            let lt = bare_column(l).map(&resolve_left).transpose()?;
            let rt = bare_column(r).map(&resolve_right).transpose()?;
            match (lt, rt) {
                (Some(Taint::Identifier { .. }), Some(Taint::Identifier { .. })) => {}
                (Some(Taint::Identifier { name }), _) | (_, Some(Taint::Identifier { name })) => {
                    return Err(exprs::compared(&name));
                }
                _ => {
                    check_uses(l, &resolve_left)?;
                    check_uses(r, &resolve_right)?;
                }
            }
        }
        Ok(())
    }

    fn column_taint(&self, contract: &Contract, name: &str) -> Taint {
        if self
            .policy
            .denied_columns
            .contains(&format!("{}.{name}", contract.name))
        {
            return Taint::Denied {
                table: contract.name.clone(),
                name: name.to_string(),
            };
        }
        match contract.column(name) {
            Some(c) if c.role == Role::Identifier => Taint::Identifier { name: name.to_string() },
            Some(c) if c.sensitive => Taint::SensitiveRaw { name: name.to_string() },
            Some(_) => Taint::Plain,
            // A column the contract does not know cannot be judged: treat it as withheld.
            None => Taint::Denied {
                table: contract.name.clone(),
                name: name.to_string(),
            },
        }
    }
}

/// Resolves columns of `schema` to the taints in `info`.
fn resolver<'i>(info: &'i NodeInfo, schema: &'i DFSchema) -> impl Fn(&Column) -> Result<Taint, Refusal> + 'i {
    move |column: &Column| info.taint_of(schema, column).cloned()
}

/// Most restrictive first, so a UNION column takes the strictest taint of its inputs.
fn rank(taint: &Taint) -> u8 {
    match taint {
        Taint::Plain => 0,
        Taint::SensitiveDerived { .. } => 1,
        Taint::SensitiveRaw { .. } => 2,
        Taint::Identifier { .. } => 3,
        Taint::Denied { .. } => 4,
    }
}

/// Fails closed when the policy's view of a node disagrees with the plan's own schema.
fn same_width(columns: Vec<Taint>, width: usize) -> Result<NodeInfo, Refusal> {
    if columns.len() != width {
        return Err(Refusal::new("the query's shape is not supported at a node"));
    }
    Ok(NodeInfo {
        columns,
        exposes_rows_of: None,
    })
}

fn limit_over_rows(table: &str) -> Refusal {
    Refusal::new(format!(
        "LIMIT over individual rows of {table} is not allowed (it selects particular records); apply LIMIT to aggregated groups"
    ))
}

fn not_a_query(what: &str) -> Refusal {
    Refusal::new(format!("only SELECT queries are allowed, not {what}"))
}
