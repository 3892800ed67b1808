//! `tessera serve --config federation.toml`: the coordinator as a Flight SQL service.

use std::path::Path;
use std::sync::Arc;

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
        let bind = |addr: String, key: &'static str| async move {
            TcpListener::bind(&addr).await.map_err(|e| {
                Failure::connection(format!("{}: [server] {key} = \"{addr}\": {e}", config_path.display()))
            })
        };
        let listener = bind(server.listen.clone(), "listen").await?;
        let web = match &server.http {
            Some(http) => Some(bind(http.clone(), "http").await?),
            None => None,
        };
        let scheme = if server.tls.is_some() {
            ("grpc+tls", "https")
        } else {
            ("grpc", "http")
        };
        println!(
            "tessera serve: Flight SQL on {}://{} for the trusts {} (users: {}; audit log: {})",
            scheme.0,
            server.listen,
            service.trusts().join(", "),
            server.users.display(),
            server.state.join("audit.jsonl").display()
        );
        if let Some(http) = &server.http {
            println!("dashboard on {}://{http}/", scheme.1);
        }
        let service = Arc::new(service);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tokio::spawn(async move {
            stop_signal().await;
            eprintln!("stopping: no new requests; finishing the ones in flight");
            let _ = stop.send(true);
        });
        let dashboard = async {
            match web {
                Some(listener) => tessera_node::web::serve(service.clone(), listener, until(stopped.clone()))
                    .await
                    .map_err(|e| Failure::connection(format!("the dashboard stopped: {e}"))),
                None => Ok(()),
            }
        };
        let flight = async {
            service
                .clone()
                .serve(listener, until(stopped.clone()))
                .await
                .map_err(|e| Failure::connection(format!("the service stopped: {e}")))
        };
        let (flight, dashboard) = tokio::join!(flight, dashboard);
        flight.and(dashboard)
    })
}
