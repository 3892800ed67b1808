//! Tessera's engine.
//!
//! - [`cells`]: the cell model — what any aggregate over records of people may compute — checked
//!   by the coordinator on the researcher's query and by every node on its fragment;
//! - [`disclosure`]: thresholds, dominance, perturbation by the cell key method, the release log;
//! - [`coordinator`]: plans SQL over federated tables, fans fragments out to every trust, merges
//!   the partial aggregates exactly, protects them and reports which trusts answered;
//! - [`policy`]: the checker every trust node runs on each query's logical plan;
//! - [`protocol`]: the fragment request and the client that sends it;
//! - [`catalog`], [`session`]: the tables and DataFusion configuration both sides share.

pub mod auth;
pub mod catalog;
pub mod cells;
pub mod config_file;
pub mod coordinator;
pub mod disclosure;
mod expr_util;
pub mod policy;
pub mod protocol;
pub mod reference;
pub mod refusal;
pub mod session;
pub mod tour;

pub use policy::{NodePolicy, PolicyChecker, Profile, Refusal};
