//! Tessera's Arrow Flight SQL services.
//!
//! - [`node`]: the trust node (`tessera node`): a Flight SQL server over one trust's tables that
//!   checks every query against the trust's own policy and answers only with aggregates.
//! - [`audit`]: the node's tamper-evident, hash-chained JSON-lines audit log.
//! - [`config`]: the node configuration file, `node.toml`.
//! - [`fragment`]: the request the coordinator sends in a single `DoGet` ticket.

pub mod audit;
pub mod config;
pub mod node;
pub mod tables;

pub use config::NodeConfig;
pub use fragment::FragmentRequest;
pub use tessera_engine::protocol::{client, fragment};
