//! The request context: who asks, for which project, under which query id, and how long they
//! will wait.
//!
//! It is made where questions start (the CLI once per session from `federation.toml`, or a node
//! for a generic Flight SQL client) and travels as one value: the coordinator completes it for
//! each question (a query id, the deadline), puts it in every
//! [`FragmentRequest`](crate::FragmentRequest), and each node fills in what is still missing
//! (its own query id, `anonymous`) and writes it to its audit line.

use serde::{Deserialize, Serialize};

/// Longest identity field a node keeps, in characters (longer ones are cut, see [`RequestContext::bounded`]).
pub const MAX_FIELD_CHARS: usize = 200;

/// Who asks, for which project, under which query id, and the deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestContext {
    /// Identifier chosen by the sender; recorded in the audit log.
    #[serde(default)]
    pub query_id: String,
    /// Who asked (a person or service); recorded in the audit log.
    #[serde(default)]
    pub requester: String,
    /// The approved project the question belongs to; recorded in the audit log.
    #[serde(default)]
    pub project: String,
    /// The deadline, as milliseconds from when the request arrives; a node stops work after
    /// this (or its own limit, whichever is sooner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The privacy loss the researcher chose for this question at each trust, in millionths
    /// of ρ (trusts in differential privacy mode cap it; absent: each trust's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_spend: Option<u64>,
}

impl RequestContext {
    /// A context for `requester` in `project`, with no query id or deadline yet.
    pub fn new(requester: impl Into<String>, project: impl Into<String>) -> RequestContext {
        RequestContext {
            requester: requester.into(),
            project: project.into(),
            ..RequestContext::default()
        }
    }

    /// The same context under `query_id`.
    pub fn with_query_id(mut self, query_id: impl Into<String>) -> RequestContext {
        self.query_id = query_id.into();
        self
    }

    /// The same context with a deadline `timeout_ms` milliseconds away.
    pub fn with_timeout_ms(mut self, timeout_ms: Option<u64>) -> RequestContext {
        self.timeout_ms = timeout_ms;
        self
    }

    /// The context with every identity field cut to [`MAX_FIELD_CHARS`].
    pub fn bounded(mut self) -> RequestContext {
        for field in [&mut self.query_id, &mut self.requester, &mut self.project] {
            if field.chars().count() > MAX_FIELD_CHARS {
                *field = field.chars().take(MAX_FIELD_CHARS).collect();
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_each_identity_field_to_the_limit() {
        let long = "x".repeat(MAX_FIELD_CHARS + 50);
        let cases = [
            (RequestContext::new(long.clone(), "p"), MAX_FIELD_CHARS, 1),
            (RequestContext::new("a", long.clone()), 1, MAX_FIELD_CHARS),
            (
                RequestContext::new("é".repeat(MAX_FIELD_CHARS), "p"),
                MAX_FIELD_CHARS,
                1,
            ),
        ];
        for (context, requester, project) in cases {
            let bounded = context.bounded();
            assert_eq!(bounded.requester.chars().count(), requester);
            assert_eq!(bounded.project.chars().count(), project);
        }
    }
}
