//! `tessera serve --config federation.toml`: the coordinator as a Flight SQL service.

use std::path::Path;

use tessera_coordinator::FederationConfig;
use tessera_node::serve::Service;
use tessera_schemas::Catalog;
use tokio::net::TcpListener;

use crate::commands::node::stop_signal;
use crate::exit::{runtime, Failure, Outcome};

pub fn run(config_path: &Path) -> Outcome {
    tessera_node::logging::init();
    let config = FederationConfig::load(config_path).map_err(Failure::connection)?;
    let service = Service::start(config.clone(), config_path, Catalog::builtin())
        .map_err(|e| Failure::connection(format!("the service did not start: {e}")))?;
    let server = tessera_node::serve::server_section(&config, config_path).map_err(Failure::connection)?;
    runtime()?.block_on(async {
        let listener = TcpListener::bind(&server.listen).await.map_err(|e| {
            Failure::connection(format!(
                "{}: [server] listen = \"{}\": {e}",
                config_path.display(),
                server.listen
            ))
        })?;
        let scheme = if server.tls.is_some() { "grpc+tls" } else { "grpc" };
        println!(
            "tessera serve: Flight SQL on {scheme}://{} for the trusts {} (users: {}; audit log: {})",
            server.listen,
            service.trusts().join(", "),
            server.users.display(),
            server.state.join("audit.jsonl").display()
        );
        service
            .serve(listener, async {
                stop_signal().await;
                eprintln!("stopping: no new requests; finishing the ones in flight");
            })
            .await
            .map_err(|e| Failure::connection(format!("the service stopped: {e}")))
    })
}
