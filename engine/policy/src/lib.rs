//! What a trust node allows, decided from the logical plan alone, before anything executes.
//!
//! - [`cells`]: the cell model — what any aggregate over records of people may compute — run
//!   by every node on its fragment and by the coordinator on the researcher's query, from the
//!   same contracts;
//! - [`PolicyChecker`]: the node's own checks on top of it, configured by `[policy]` in
//!   `node.toml`:
//!   - every read of patient-level data must end in an aggregate; rows never leave;
//!   - identifier columns may be counted or used as join keys, never grouped, returned, or
//!     compared with a value (`=`, `IN`, `LIKE`, `BETWEEN` …) and never used inside expressions;
//!   - sensitive measures may not be grouped on raw, and their `min`/`max` are refused;
//!   - aggregate functions come from an allow-list; window functions, sub-query expressions,
//!     grouping sets, `LIMIT` over rows, DDL/DML and anything else unusual are refused;
//!   - the number of groups returned is capped (`max_groups`, checked on the result);
//! - [`session`]: the DataFusion session both sides plan SQL with, so a fragment means the same
//!   thing at the coordinator and at the node.
//!
//! A node never trusts the coordinator: it plans every query against its own catalog and checks
//! it here. A refusal carries a reason written for a person: `refused: column person_id is an
//! identifier and cannot appear in GROUP BY`.

pub mod cells;
mod checker;
mod expr_util;
mod exprs;
mod lineage;
mod refusal;
pub mod session;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use checker::PolicyChecker;
pub use expr_util::{aggregate_call, strip_alias};
pub use refusal::Refusal;

/// Aggregate functions a node allows unless its configuration says otherwise (canonical DataFusion names).
pub const DEFAULT_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "var",
    "var_pop",
    "stddev",
    "stddev_pop",
    "corr",
    "covar_samp",
    "covar_pop",
    "regr_slope",
    "regr_intercept",
    "regr_r2",
    "regr_count",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "bool_and",
    "bool_or",
    "approx_distinct",
];

/// Aggregates that return one input value and so must never see a sensitive measure.
pub const EXTREMUM_AGGREGATES: &[&str] = &["min", "max"];

/// Aggregates that may take an identifier column as their argument (they only count).
pub const COUNTING_AGGREGATES: &[&str] = &["count", "approx_distinct"];

/// Default cap on the number of groups a node returns for one query.
pub const DEFAULT_MAX_GROUPS: usize = 10_000;

/// A trust's rules for what may be asked of its data (`[policy]` in `node.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodePolicy {
    /// Most groups one answer may contain.
    pub max_groups: usize,
    /// Aggregate functions that may be used.
    pub aggregate_functions: BTreeSet<String>,
    /// Tables that may be queried; empty means every table this node serves.
    pub allowed_tables: BTreeSet<String>,
    /// Columns, as `table.column`, that may not be referenced at all.
    pub denied_columns: BTreeSet<String>,
    /// Which rules apply beyond these (default: the cell model's, see [`crate::cells`]).
    pub profile: Profile,
}

/// A node's policy profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Profile {
    /// Group keys and conditions from public domains, statistics from the whitelist.
    #[default]
    #[serde(rename = "default")]
    Default,
    /// Only for Tessera's own exactness tests on synthetic data: any aggregate the node can
    /// run (identifiers, min/max of sensitive measures and row exposure are still refused).
    /// Every audit line says so; `tessera gen` and `tessera demo` never write it.
    #[serde(rename = "exactness-test")]
    ExactnessTest,
}

impl Profile {
    /// The name an audit line records, `None` for the default.
    pub fn audit_name(self) -> Option<String> {
        match self {
            Profile::Default => None,
            Profile::ExactnessTest => Some("exactness-test".into()),
        }
    }
}

impl Default for NodePolicy {
    fn default() -> Self {
        NodePolicy {
            max_groups: DEFAULT_MAX_GROUPS,
            aggregate_functions: DEFAULT_AGGREGATES.iter().map(|s| s.to_string()).collect(),
            allowed_tables: BTreeSet::new(),
            denied_columns: BTreeSet::new(),
            profile: Profile::Default,
        }
    }
}
