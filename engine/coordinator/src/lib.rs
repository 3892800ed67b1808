//! Tessera's coordinator: ordinary SQL over every trust's tables, answered with protected,
//! exactly merged aggregates. One question goes through these steps, each one module:
//!
//! ```text
//! SQL ──▶ parse ──▶ rewrite ──▶ decompose ──▶ fan-out ──▶ merge ──▶ protect ──▶ result
//! ```
//!
//! 1. `parse`: DataFusion plans the SQL against the contracts' tables (`catalog`); a
//!    federated table cannot be scanned, so nothing reads rows by accident.
//! 2. `rewrite`: every aggregate over trust data is checked against the cell model
//!    (`tessera_policy::cells`) and replaced by a fragment for the trusts under a central merge;
//!    everything above it (HAVING, ORDER BY, joins of aggregates, windows) stays central.
//! 3. `decompose`: each statistic becomes the partial states a trust computes (counts, sums,
//!    moments, cell keys, the largest contributions) and the expression that merges them.
//! 4. `fanout`: a `FederatedScan` leaf sends the fragment to every trust in one `DoGet` each
//!    (`fanout/links.rs`), with the question's [`RequestContext`], and streams
//!    the partial batches into the merge.
//! 5. `merge`: the partial states are combined exactly (sums of sums, Chan's update for
//!    moments in [`moments`]).
//! 6. `protect`: before any operator above sees a value, groups of too few records are dropped
//!    and each statistic passes disclosure control (`tessera_disclosure`); the question is
//!    checked against the project's budget before it runs and logged before it is returned.
//! 7. [`result`]: the batches with what disclosure control did and which trusts answered, as
//!    schema metadata and as [`QueryResult`] fields.
//!
//! [`Coordinator`] holds a federation's configuration ([`config`]) and runs the steps; a
//! failure at any step is a [`QueryError`] ([`error`]) whose message is for the researcher;
//! `Coordinator::explain` shows the central plan and the fragment each trust receives.

mod catalog;
pub mod config;
mod coordinator;
mod decompose;
pub mod error;
mod fanout;
mod merge;
pub mod moments;
pub mod noise;
mod noisy_moments;
mod parse;
mod protect;
pub mod result;
mod rewrite;

pub use config::{FederationConfig, OnNodeFailure, ServerSection, ServerTls, TlsSection};
pub use coordinator::Coordinator;
pub use error::{ErrorKind, QueryError};
pub use fanout::links::{FragmentService, FragmentStream, TrustLink};
pub use fanout::NodeOutcome;
pub use result::{PreparedQuery, QueryResult, QueryWatch};
pub use tessera_protocol::names::{DISCLOSURE_METADATA, PROVENANCE_METADATA, STATUS_METADATA};
pub use tessera_protocol::RequestContext;
