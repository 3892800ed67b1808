//! Exit codes, like psql's: 0 ok, 1 a query or data error, 2 a connection or start-up error, 3 a script error.

/// A command failed: what to print and which exit code to use.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

/// A query or data error.
pub const QUERY_ERROR: u8 = 1;
/// A connection, configuration or start-up error.
pub const CONNECTION_ERROR: u8 = 2;
/// A statement of a `-f` script failed, or the script could not be read.
pub const SCRIPT_ERROR: u8 = 3;

impl Failure {
    pub fn query(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: QUERY_ERROR,
        }
    }

    pub fn connection(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: CONNECTION_ERROR,
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// A tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::connection(format!("cannot start the async runtime: {e}")))
}
