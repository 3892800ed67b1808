//! Step 2, the federated rewrite: every aggregate over trust data becomes a fragment for the trusts plus
//! a merge at the centre.
//!
//! Bottom-up, each `Aggregate` whose input reads only federated tables (through projections,
//! filters, unions and joins within a trust) and public reference tables is replaced by
//!
//! ```text
//! Projection   final values, cast and named exactly as the original aggregate's output
//!   Aggregate  merge of the partial states, grouped by g0…
//!     FederatedScan  fragment: SELECT <groups> AS g0…, <partials> AS p0… FROM … GROUP BY …
//! ```
//!
//! Everything above (HAVING, ORDER BY, LIMIT, window functions, joins between aggregates, UNION
//! of aggregates, CTEs) stays an ordinary DataFusion plan that runs centrally.

mod record_keys;

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    cast, Aggregate, BinaryExpr, Distinct, Expr, Extension, GroupingSet, LogicalPlan, Operator, Projection,
};
use datafusion::sql::unparser::Unparser;

use std::collections::BTreeMap;
use tessera_disclosure::{DisclosureConfig, Ledger};
use tessera_policy::aggregate_call;
use tessera_policy::cells::{CellRules, Origin};
use tessera_protocol::RequestContext;
use tessera_schemas::{Catalog, Contract, Role};

use crate::decompose::{Context, Decomposition, Dominance};
use crate::fanout::FederatedScan;
use crate::merge::merge;
use record_keys::with_record_columns;

/// The column every contract table uses for the trust's ODS code.
pub const TRUST_COLUMN: &str = "provider_code";

/// Rewrites one query's plan.
pub struct Rewriter<'a> {
    pub state: &'a SessionState,
    /// The contracts' tables and columns, by role.
    pub tables: &'a Tables,
    /// Who asks: stamped on every fragment, for the trusts' audit logs.
    pub context: RequestContext,
    /// Disclosure rules and the query's ledger; `None` when disclosure control is off.
    pub disclosure: Option<(&'a DisclosureConfig, Arc<Ledger>)>,
    /// Whether trusts will send contributions and cell keys.
    pub dominance: Dominance,
    /// Trusts answer with differential privacy (noisy sums only).
    pub private: bool,
}

/// What the rewrite needs to know about the contracts' tables and columns.
pub struct Tables {
    /// Tables whose rows stay at the trusts.
    pub federated: BTreeSet<String>,
    /// Reference tables that ship with Tessera.
    pub public: BTreeSet<String>,
    /// Identifier columns in any contract (`person_id`).
    pub identifiers: BTreeSet<String>,
    /// Federated tables that hold records about people (they have an identifier column).
    pub person_tables: BTreeSet<String>,
    /// Sensitive measures in any contract (`cost_gbp`).
    pub sensitive: BTreeSet<String>,
    /// Every contract, by table name (the cell model's rules read them).
    pub contracts: BTreeMap<String, Contract>,
}

impl Tables {
    /// The tables and columns of `catalog`'s contracts, by role.
    pub fn of(catalog: &Catalog) -> Tables {
        let names = |public: bool| {
            catalog
                .contracts()
                .filter(|c| c.public == public)
                .map(|c| c.name.clone())
                .collect()
        };
        let columns = |keep: fn(&tessera_schemas::Column) -> bool| {
            catalog
                .contracts()
                .flat_map(|c| c.columns.iter())
                .filter(|c| keep(c))
                .map(|c| c.name.clone())
                .collect()
        };
        Tables {
            federated: names(false),
            public: names(true),
            identifiers: columns(|c| c.role == Role::Identifier),
            sensitive: columns(|c| c.sensitive),
            person_tables: catalog
                .contracts()
                .filter(|c| c.identifiers().next().is_some())
                .map(|c| c.name.clone())
                .collect(),
            contracts: catalog.contracts().map(|c| (c.name.clone(), c.clone())).collect(),
        }
    }
}

/// What an aggregate's input reads.
#[derive(Debug)]
enum Scope {
    /// Trust data (the federated tables read), possibly joined with public tables.
    Federated(BTreeSet<String>),
    /// Only public reference data or constants: runs centrally as is.
    Public,
    /// Something that cannot run at a trust (an already merged aggregate, LIMIT, a window…).
    Central,
}

fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

impl Rewriter<'_> {
    /// Replaces every federatable aggregate, innermost first.
    pub fn federate(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let rewritten = plan.transform_up(|node| match node {
            LogicalPlan::Aggregate(aggregate) => self.rewrite_aggregate(aggregate),
            // SELECT DISTINCT is a GROUP BY of every column: its rows are cells too.
            LogicalPlan::Distinct(Distinct::All(input)) if matches!(self.scope(&input, &[])?, Scope::Federated(_)) => {
                let groups = input.schema().columns().into_iter().map(Expr::Column).collect();
                self.rewrite_aggregate(Aggregate::try_new(input, groups, Vec::new())?)
            }
            other => Ok(Transformed::no(other)),
        })?;
        let plan = rewritten.data;
        self.refuse_leftover_scans(&plan)?;
        Ok(plan)
    }

    /// A federated table still scanned after the rewrite is read without aggregation.
    fn refuse_leftover_scans(&self, plan: &LogicalPlan) -> Result<()> {
        let mut leftover = None;
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                if self.tables.federated.contains(scan.table_name.table()) {
                    leftover = Some(scan.table_name.table().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match leftover {
            Some(table) => Err(crate::catalog::rows_never_leave(&table)),
            None => Ok(()),
        }
    }

    fn rewrite_aggregate(&self, aggregate: Aggregate) -> Result<Transformed<LogicalPlan>> {
        let tables = match self.scope(&aggregate.input, &[])? {
            Scope::Federated(tables) => tables,
            Scope::Public | Scope::Central => return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
        };
        if let [Expr::GroupingSet(set)] = aggregate.group_expr.as_slice() {
            return self.rewrite_grouping_sets(&aggregate, set).map(Transformed::yes);
        }
        if aggregate.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Err(plan_error(
                "over federated data, ROLLUP, CUBE or GROUPING SETS must be the whole GROUP BY clause",
            ));
        }
        let grouped_by_trust = aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::Column(c) if c.name == TRUST_COLUMN));
        // Disclosure control protects statistics about people; organisational data (workforce and
        // finance returns) has no records of persons to protect.
        let about_people = tables.iter().any(|t| self.tables.person_tables.contains(t));
        let cells = match (&self.disclosure, about_people) {
            (Some(_), true) => CellRules::new(&self.tables.contracts, Origin::Query)
                .check(&aggregate)
                .map_err(|refusal| plan_error(refusal.reason))?,
            _ => None,
        };
        // Perturbation needs every record's whole row at the aggregate (for its key).
        let perturbs = cells.is_some() && self.disclosure.as_ref().is_some_and(|(c, _)| c.perturbs());
        let (aggregate, key_columns) = match perturbs {
            true => {
                let (input, keys) =
                    with_record_columns(Arc::unwrap_or_clone(aggregate.input), &self.tables.person_tables)?;
                let widened = Aggregate::try_new(Arc::new(input), aggregate.group_expr, aggregate.aggr_expr)?;
                (widened, Some(keys))
            }
            false => (aggregate, None),
        };
        let ctx = Context {
            state: self.state,
            identifiers: &self.tables.identifiers,
            sensitive: &self.tables.sensitive,
            grouped_by_trust,
            group_exprs: &aggregate.group_expr,
            dominance: self.dominance,
            dominance_rules: self.disclosure.as_ref().is_some_and(|(c, _)| c.checks_dominance()),
            key_columns,
            input_schema: aggregate.input.schema(),
            private: self.private,
        };
        let mut parts = Decomposition::default();
        if cells.is_some() {
            parts.count_rows(&ctx)?;
        }
        for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
            parts.add(&ctx, expr, cells.as_ref().map(|c| &c.statistics[i]))?;
        }
        let about_people = cells.is_some();
        let scan = self.fragment(&aggregate, &parts, tables)?;
        // Each private value says what its noise is made of, resolved once the trusts answer.
        let noise = match self.private {
            true => crate::noise::shapes(&parts, &scan, grouped_by_trust),
            false => Vec::new(),
        };
        let merged = merge(
            &aggregate,
            parts,
            scan,
            self.disclosure.as_ref().filter(|_| about_people),
            noise,
        )?;
        Ok(Transformed::yes(merged))
    }

    /// ROLLUP, CUBE and GROUPING SETS: the finest cells are federated and protected like any
    /// aggregate, then every margin is computed centrally *from the released cells only*, so no
    /// total can be used to subtract a suppressed cell back out.
    fn rewrite_grouping_sets(&self, aggregate: &Aggregate, set: &GroupingSet) -> Result<LogicalPlan> {
        let margin_function = |expr: &Expr| match expr {
            Expr::AggregateFunction(f) if !f.params.distinct => match f.func.name() {
                "count" | "sum" => Some("sum"),
                "min" => Some("min"),
                "max" => Some("max"),
                _ => None,
            },
            _ => None,
        };
        let margins = aggregate
            .aggr_expr
            .iter()
            .map(|e| {
                margin_function(e).ok_or_else(|| {
                    plan_error(format!(
                        "with ROLLUP, CUBE or GROUPING SETS over federated data only count, sum, min and max are supported \
                         (totals are computed from the released cells); `{e}` is not"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let finest = set.distinct_expr().into_iter().cloned().collect::<Vec<_>>();
        let cells = Aggregate::try_new(aggregate.input.clone(), finest.clone(), aggregate.aggr_expr.clone())?;
        let cell_columns = cells.schema.columns();
        let released = self.rewrite_aggregate(cells)?.data;
        let to_column = |e: &Expr| -> Result<Expr> {
            let i = finest
                .iter()
                .position(|f| f == e)
                .ok_or_else(|| plan_error("grouping expression not found"))?;
            Ok(Expr::Column(cell_columns[i].clone()))
        };
        let map_all = |exprs: &[Expr]| exprs.iter().map(to_column).collect::<Result<Vec<_>>>();
        let central_set = match set {
            GroupingSet::Rollup(exprs) => GroupingSet::Rollup(map_all(exprs)?),
            GroupingSet::Cube(exprs) => GroupingSet::Cube(map_all(exprs)?),
            GroupingSet::GroupingSets(sets) => {
                GroupingSet::GroupingSets(sets.iter().map(|s| map_all(s)).collect::<Result<Vec<_>>>()?)
            }
        };
        let margin_exprs = margins
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let cell = Expr::Column(cell_columns[finest.len() + j].clone());
                Ok(aggregate_call(self.state, name, vec![cell], false, None)?.alias(format!("margin{j}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let central = LogicalPlan::Aggregate(Aggregate::try_new(
            Arc::new(released),
            vec![Expr::GroupingSet(central_set)],
            margin_exprs,
        )?);
        if let Some((_, ledger)) = &self.disclosure {
            ledger
                .margins_from_released
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let projection = central
            .schema()
            .columns()
            .into_iter()
            .zip(aggregate.schema.iter())
            .map(|(column, (qualifier, field))| {
                cast(Expr::Column(column), field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name())
            })
            .collect::<Vec<_>>();
        Ok(LogicalPlan::Projection(Projection::try_new(
            projection,
            Arc::new(central),
        )?))
    }

    /// Builds the fragment every trust runs and wraps it in a [`FederatedScan`].
    fn fragment(&self, aggregate: &Aggregate, parts: &Decomposition, tables: BTreeSet<String>) -> Result<LogicalPlan> {
        let mut groups = aggregate.group_expr.clone();
        groups.extend(parts.distinct.clone());
        let partial = LogicalPlan::Aggregate(Aggregate::try_new(
            aggregate.input.clone(),
            groups.clone(),
            parts.partials.clone(),
        )?);
        let names = (0..aggregate.group_expr.len())
            .map(|i| format!("g{i}"))
            .chain(parts.distinct.iter().map(|_| "d0".to_string()))
            .chain((0..parts.partials.len()).map(|k| format!("p{k}")));
        let projection = partial
            .schema()
            .columns()
            .into_iter()
            .zip(names)
            .map(|(c, name)| Expr::Column(c).alias(name))
            .collect::<Vec<_>>();
        let fragment = LogicalPlan::Projection(Projection::try_new(projection, Arc::new(partial))?);
        let sql = Unparser::default()
            .plan_to_sql(&fragment)
            .map_err(|e| plan_error(format!("cannot express the fragment as SQL: {}", e.strip_backtrace())))?
            .to_string();
        let schema = Arc::new(DFSchema::try_from(fragment.schema().as_arrow().clone())?);
        let scan = FederatedScan {
            sql,
            tables: tables.into_iter().collect(),
            context: self.context.clone(),
            schema,
        };
        Ok(LogicalPlan::Extension(Extension { node: Arc::new(scan) }))
    }

    /// What `plan` reads; `conditions` are predicates from filters above it (for join checks).
    fn scope(&self, plan: &LogicalPlan, conditions: &[Expr]) -> Result<Scope> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                Ok(if self.tables.federated.contains(name) {
                    Scope::Federated(BTreeSet::from([name.to_string()]))
                } else if self.tables.public.contains(name) {
                    Scope::Public
                } else {
                    Scope::Central
                })
            }
            LogicalPlan::Projection(p) => {
                refuse_subqueries(&p.expr)?;
                self.scope(&p.input, conditions)
            }
            LogicalPlan::Filter(f) => {
                refuse_subqueries(std::slice::from_ref(&f.predicate))?;
                let mut more = conditions.to_vec();
                more.extend(split_conjunction(&f.predicate).into_iter().cloned());
                self.scope(&f.input, &more)
            }
            LogicalPlan::SubqueryAlias(s) => self.scope(&s.input, conditions),
            LogicalPlan::Union(u) => {
                let mut combined = Scope::Public;
                for input in &u.inputs {
                    combined = combine(combined, self.scope(input, &[])?);
                }
                Ok(combined)
            }
            LogicalPlan::Join(j) => {
                let left = self.scope(&j.left, &[])?;
                let right = self.scope(&j.right, &[])?;
                if let (Scope::Federated(l), Scope::Federated(r)) = (&left, &right) {
                    let mut predicates = conditions.to_vec();
                    predicates.extend(j.on.iter().map(|(l, r)| l.clone().eq(r.clone())));
                    predicates.extend(j.filter.iter().flat_map(|f| split_conjunction(f).into_iter().cloned()));
                    if !joins_within_trust(&predicates, j.left.schema(), j.right.schema()) {
                        return Err(plan_error(format!(
                            "joining {} with {} would match rows across trusts, which never meet. Add \
                             `… AND <left>.provider_code = <right>.provider_code` to the join condition to join \
                             each trust's own records",
                            l.iter().cloned().collect::<Vec<_>>().join(", "),
                            r.iter().cloned().collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
                Ok(combine(left, right))
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Ok(Scope::Public),
            _ => Ok(Scope::Central),
        }
    }
}

fn combine(a: Scope, b: Scope) -> Scope {
    match (a, b) {
        (Scope::Central, _) | (_, Scope::Central) => Scope::Central,
        (Scope::Federated(mut x), Scope::Federated(y)) => {
            x.extend(y);
            Scope::Federated(x)
        }
        (Scope::Federated(x), Scope::Public) | (Scope::Public, Scope::Federated(x)) => Scope::Federated(x),
        (Scope::Public, Scope::Public) => Scope::Public,
    }
}

/// Whether some predicate equates the trust column of the left input with that of the right.
fn joins_within_trust(predicates: &[Expr], left: &DFSchema, right: &DFSchema) -> bool {
    let trust_column = |e: &Expr, schema: &DFSchema| match e {
        Expr::Column(c) => c.name == TRUST_COLUMN && schema.has_column(c),
        _ => false,
    };
    predicates.iter().any(|p| match p {
        Expr::BinaryExpr(BinaryExpr {
            left: l,
            op: Operator::Eq,
            right: r,
        }) => (trust_column(l, left) && trust_column(r, right)) || (trust_column(l, right) && trust_column(r, left)),
        _ => false,
    })
}

/// Sub-queries inside expressions are not sent to trusts (their policy refuses them).
fn refuse_subqueries(exprs: &[Expr]) -> Result<()> {
    for expr in exprs {
        let mut found = false;
        expr.apply(|e| {
            found |= matches!(
                e,
                Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::SetComparison(_)
            );
            Ok(if found {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
        if found {
            return Err(plan_error(
                "sub-queries inside expressions (IN (SELECT …), EXISTS, scalar sub-queries) over federated data are not \
                 supported; use a JOIN, or compute the inner aggregate in a CTE and join it",
            ));
        }
    }
    Ok(())
}
