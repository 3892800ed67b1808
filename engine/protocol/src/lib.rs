//! Tessera's node protocol: every detail of the wire between a coordinator (or any client) and a
//! trust node, in one place, with no query engine attached.
//!
//! - [`fragment`]: the request a node is asked to run, carried in a `DoGet` ticket or a
//!   prepared-statement handle, and the protocol version;
//! - [`context`]: who asks, for which project, under which query id and deadline — made once
//!   where a question starts and carried unchanged to every node's audit line;
//! - [`tls`]: certificates, what a client presents and trusts, and a peer's subject (a node
//!   recognises its coordinator by the subject of its client certificate);
//! - [`credentials`]: the `authorization` header (Basic and Bearer) and random secrets;
//! - [`names`]: catalog and schema names, request headers, the functions only a coordinator may
//!   call, and the metadata keys a result carries;
//! - [`client`]: the client that sends a fragment and reads the answer;
//! - [`service_client`]: the client of `tessera serve` (sign in, ask in a project).

pub mod client;
pub mod context;
pub mod credentials;
#[cfg(feature = "dev-certs")]
pub mod dev_certs;
pub mod fragment;
pub mod names;
pub mod privacy;
pub mod service_client;
pub mod tls;

pub use client::{ClientError, NodeAnswer, NodeClient};
pub use context::RequestContext;
pub use fragment::{FragmentRequest, PROTOCOL_VERSION};
pub use privacy::{BudgetNote, PrivacyNote, TrustBudget};
