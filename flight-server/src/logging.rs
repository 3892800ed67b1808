//! The node's own log (not its audit log): to standard error, filtered by `TESSERA_LOG`
//! (default `warn`), the same wherever a node runs (`tessera node`, the demo, the benchmarks).

/// The environment variable that filters the node's log, e.g. `TESSERA_LOG=info`.
pub const LOG_ENV: &str = "TESSERA_LOG";

/// Sends the node's log to standard error; does nothing if a logger is already installed.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
