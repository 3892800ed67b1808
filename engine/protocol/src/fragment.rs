//! The fragment request: what a node is asked to run, and on whose behalf.
//!
//! It travels as JSON inside `TicketStatementQuery.statement_handle` (the coordinator's one-round-trip
//! `DoGet`) and inside prepared-statement handles. The handle comes from the client, so the node
//! re-plans and re-checks the SQL every time it sees one.

use serde::{Deserialize, Serialize};

use crate::context::RequestContext;

/// Version of the node protocol this build speaks; nodes announce it in `GetSqlInfo`.
pub const PROTOCOL_VERSION: &str = "tessera-node/3";

/// Largest fragment request a node will decode.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One query for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentRequest {
    /// The SQL to run: an aggregate query over this trust's tables.
    pub sql: String,
    /// Who asks, for which project, the query id and the deadline.
    #[serde(default)]
    pub context: RequestContext,
    /// Set by the node, never by the sender: the caller presented the coordinator's pinned certificate.
    #[serde(skip)]
    pub from_coordinator: bool,
}

impl FragmentRequest {
    /// A request for `sql` with no identity attached.
    pub fn new(sql: impl Into<String>) -> FragmentRequest {
        FragmentRequest::with_context(sql, RequestContext::default())
    }

    /// A request for `sql` on behalf of `context`.
    pub fn with_context(sql: impl Into<String>, context: RequestContext) -> FragmentRequest {
        FragmentRequest {
            sql: sql.into(),
            context,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_encoding() {
        let context = RequestContext::new("ana@uni.ac.uk", "los-2024")
            .with_query_id("q-1")
            .with_timeout_ms(Some(1500));
        let request = FragmentRequest::with_context("SELECT count(*) FROM apc_episodes", context);
        assert_eq!(FragmentRequest::decode(&request.encode()), Ok(request));
    }

    #[test]
    fn decoding_hostile_payloads() {
        // (payload, what the error must say; None: decodes)
        let oversized = format!(r#"{{"sql":"{}"}}"#, "x".repeat(MAX_REQUEST_BYTES));
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"sql":"SELECT 1"}"#, None),
            (r#"{"sql":"SELECT 1","context":{"requester":"a"}}"#, None),
            (
                r#"{"sql":"SELECT 1","from_coordinator":true}"#,
                Some("unknown field `from_coordinator`"),
            ),
            (
                r#"{"sql":"SELECT 1","timeout_ms":5}"#,
                Some("unknown field `timeout_ms`"),
            ),
            (
                r#"{"sql":"SELECT 1","context":{"from_coordinator":true}}"#,
                Some("unknown field `from_coordinator`"),
            ),
            (r#"{"context":{}}"#, Some("missing field `sql`")),
            ("not json", Some("not a Tessera fragment request")),
            ("", Some("not a Tessera fragment request")),
            (oversized.as_str(), Some("the limit is")),
        ];
        for (payload, expected) in cases {
            let decoded = FragmentRequest::decode(payload.as_bytes());
            match expected {
                None => assert!(decoded.is_ok(), "{payload}: {decoded:?}"),
                Some(text) => {
                    let error = decoded.expect_err(payload);
                    assert!(error.contains(text), "{payload}: {error}");
                }
            }
        }
    }

    #[test]
    fn the_coordinator_flag_never_comes_from_the_wire() {
        let mut request = FragmentRequest::new("SELECT 1");
        request.from_coordinator = true;
        let decoded = FragmentRequest::decode(&request.encode()).unwrap();
        assert!(!decoded.from_coordinator);
    }
}
