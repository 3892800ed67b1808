//! The fragment request: what a node is asked to run, and on whose behalf.
//!
//! It travels as JSON inside `TicketStatementQuery.statement_handle` (the coordinator's one-round-trip
//! `DoGet`) and inside prepared-statement handles. The handle comes from the client, so the node
//! re-plans and re-checks the SQL every time it sees one.

use serde::{Deserialize, Serialize};

/// Version of the node protocol this build speaks; nodes announce it in `GetSqlInfo`.
pub const PROTOCOL_VERSION: &str = "tessera-node/1";

/// Largest fragment request a node will decode.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One query for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentRequest {
    /// Identifier chosen by the sender; recorded in the audit log.
    #[serde(default)]
    pub query_id: String,
    /// The SQL to run: an aggregate query over this trust's tables.
    pub sql: String,
    /// Who asked (a person or service); recorded in the audit log.
    #[serde(default)]
    pub requester: String,
    /// The approved project the question belongs to; recorded in the audit log.
    #[serde(default)]
    pub project: String,
    /// Milliseconds the sender will wait; the node stops work after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Set by the node, never by the sender: the request carried this trust's coordinator token.
    #[serde(skip)]
    pub from_coordinator: bool,
}

impl FragmentRequest {
    /// A request for `sql` with no identity attached.
    pub fn new(sql: impl Into<String>) -> FragmentRequest {
        FragmentRequest {
            query_id: String::new(),
            sql: sql.into(),
            requester: String::new(),
            project: String::new(),
            timeout_ms: None,
            from_coordinator: false,
        }
    }

    /// Encodes the request as a ticket or handle payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a fragment request always serialises")
    }

    /// Decodes a payload received from a client.
    pub fn decode(bytes: &[u8]) -> Result<FragmentRequest, String> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(format!(
                "the request is {} bytes; the limit is {MAX_REQUEST_BYTES}",
                bytes.len()
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("the ticket is not a Tessera fragment request: {e}"))
    }
}
