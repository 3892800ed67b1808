//! Tessera's engine.
//!
//! Today it holds what a trust node needs to judge a query: the [`policy`] checker that walks a
//! DataFusion logical plan and refuses anything that could expose patient-level rows, and the
//! [`session`] builder that gives every node the same DataFusion configuration. The coordinator's
//! federated planner will live here too, so both sides share one reading of the rules.

pub mod catalog;
pub mod coordinator;
pub mod policy;
pub mod protocol;
pub mod session;

pub use policy::{NodePolicy, PolicyChecker, Refusal};
