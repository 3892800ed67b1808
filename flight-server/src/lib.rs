//! Tessera's Arrow Flight SQL services.
//!
//! - [`node`]: the trust node (`tessera node`): a Flight SQL server over one trust's tables that
//!   checks every query against the trust's own policy and answers only with aggregates.
//! - [`access`]: who is asking — the federation's coordinator (mutual TLS, pinned subject), a
//!   trust analyst (user name and password, argon2id), or no one the node answers.
//! - [`audit`]: the node's tamper-evident, hash-chained JSON-lines audit log.
//! - [`audit_summary`]: who asked what, allowed and refused (`tessera audit show`).
//! - [`config`]: the node configuration file, `node.toml`.
//! - [`operations`]: Prometheus metrics and the node's log lines per request.
//! - [`tables`]: the trust's files registered as the contracts' tables.
//! - [`logging`]: the node's own log on standard error (`TESSERA_LOG`).
//!
//! The node links the protocol (`tessera_protocol`), the policy it enforces (`tessera_policy`),
//! the disclosure-control library (`tessera_disclosure`) and the coordinator's pipeline
//! (`tessera_coordinator`): a trust's analysts are answered through the very rewrite, merge and
//! protection steps a researcher's question goes through, with this node as the only trust.

pub mod access;
pub mod audit;
pub mod audit_summary;
pub mod config;
pub mod gate;
pub mod handles;
pub mod listener;
pub mod logging;
pub mod metadata;
pub mod node;
pub mod operations;
pub mod responses;
pub mod running;
pub mod serve;
pub mod sql_info;
pub mod tables;
pub mod web;

pub use config::NodeConfig;
