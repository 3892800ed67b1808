//! Helpers for Tessera's end-to-end tests, one concern per module:
//!
//! - [`nodes`]: generated data for some trusts, and real nodes on real ports serving it;
//! - [`federation`]: nodes plus a coordinator over them, and the reference session;
//! - [`reference`]: single-node DataFusion over the union of the trusts' files, the answer every
//!   federated query must equal (test-only code: a real federation never holds the union);
//! - [`oracle`]: the generated Parquet files read as plain Rust values, for expectations
//!   computed without DataFusion or SQL;
//! - [`service`]: `tessera serve` over protected nodes, with test users and projects;
//! - [`cells`]: results as rows of cells, and their comparison;
//! - [`cases`]: disclosure tests as tables of cases (rules, SQL, expected cells and footer).

pub mod cases;
pub mod cells;
pub mod federation;
pub mod nodes;
pub mod oracle;
pub mod reference;
pub mod service;

pub use cases::{check_cases, null, Case, Expect, Footer};
pub use cells::{close, compare, rows_of, Cell};
pub use federation::Federation;
pub use nodes::{
    anonymous_tls, configure_test_node, coordinator_tls, presenting, tls_section, TestData, TestNode, ANALYST,
    ANALYST_PASSWORD, TEST_AS_AT,
};
pub use oracle::{correlation, fsum, group_by, variance, Apc, Ec, Op, Oracle, Workforce};
pub use service::{TestService, USER_PASSWORD};
