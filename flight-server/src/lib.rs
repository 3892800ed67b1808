//! Tessera's Arrow Flight SQL services.
//!
//! - [`node`]: the trust node (`tessera node`): a Flight SQL server over one trust's tables that
//!   checks every query against the trust's own policy and answers only with aggregates.
//! - [`audit`]: the node's tamper-evident, hash-chained JSON-lines audit log.
//! - [`config`]: the node configuration file, `node.toml`.
//! - [`tables`]: the trust's files registered as the contracts' tables.
//! - [`logging`]: the node's own log on standard error (`TESSERA_LOG`).
//!
//! The node links the protocol (`tessera_protocol`), the policy it enforces (`tessera_policy`)
//! and the disclosure-control library (`tessera_disclosure`, for the functions only its
//! coordinator may call) — and no coordinator code: `cargo tree -p tessera-node` shows it.

pub mod audit;
pub mod config;
pub mod logging;
pub mod node;
pub mod tables;

pub use config::NodeConfig;
