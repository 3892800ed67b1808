//! `tessera node --config node.toml`.

use std::path::Path;

use tessera_node::node::TrustNode;
use tessera_node::NodeConfig;
use tessera_schemas::Catalog;
use tokio::net::TcpListener;

use crate::exit::{runtime, Failure, Outcome};

pub fn run(config_path: &Path) -> Outcome {
    tessera_node::logging::init();
    let config = NodeConfig::load(config_path).map_err(Failure::connection)?;
    runtime()?.block_on(async {
        let node = TrustNode::start(&config, &Catalog::builtin())
            .await
            .map_err(|e| Failure::connection(format!("the node did not start: {e}")))?;
        let listener = TcpListener::bind(&config.node.listen).await.map_err(|e| {
            Failure::connection(format!(
                "{}: [node] listen = \"{}\": {e}",
                config_path.display(),
                config.node.listen
            ))
        })?;
        let tables = node.tables().map(|t| t.name.clone()).collect::<Vec<_>>().join(", ");
        println!(
            "tessera node {} serving Flight SQL over TLS on {} (tables: {tables}; audit log: {})",
            node.name(),
            config.node.listen,
            config.audit_path().display()
        );
        if config.access.projects.is_none() {
            eprintln!(
                "warning: {}: no [access] projects file, so the coordinator may ask for any project",
                config_path.display()
            );
        }
        if let Some(addr) = &config.node.metrics_listen {
            let addr = addr
                .parse()
                .map_err(|_| Failure::connection(format!("[node] metrics_listen: {addr}")))?;
            let bound = tessera_node::operations::serve_metrics(addr)
                .await
                .map_err(|e| Failure::connection(format!("{}: {e}", config_path.display())))?;
            println!("metrics on http://{bound}/metrics");
        }
        node.serve(listener, async {
            stop_signal().await;
            eprintln!("stopping: no new requests; finishing the ones in flight");
        })
        .await
        .map_err(|e| Failure::connection(format!("the node stopped: {e}")))
    })
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (how service managers stop a node).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
