//! Why a question got no answer, in words for the researcher, and what kind of failure it was.

use datafusion::error::DataFusionError;

use crate::fanout::links::TrustError;

/// What kind of failure a query met (decides the CLI's exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query is not valid or not allowed (including a trust's refusal).
    Query,
    /// A trust could not be reached or failed.
    Connection,
}

/// A query failed; the message is for the researcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl QueryError {
    /// The query is not valid or not allowed.
    pub fn query(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::Query,
            message: message.into(),
        }
    }

    /// A trust could not be reached or failed.
    pub fn connection(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::Connection,
            message: message.into(),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> QueryError {
        let root = error.find_root();
        if let DataFusionError::External(inner) = root {
            if let Some(trust) = inner.downcast_ref::<TrustError>() {
                return match trust.refused {
                    true => QueryError::query(trust.to_string()),
                    false => QueryError::connection(trust.to_string()),
                };
            }
        }
        QueryError::query(match root {
            DataFusionError::SQL(parser, _) => format!("syntax error: {parser}"),
            DataFusionError::Plan(message) => message.clone(),
            other => other.strip_backtrace(),
        })
    }
}
