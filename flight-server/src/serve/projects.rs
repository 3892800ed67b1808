//! One coordinator per project: each project has its own release log and budget, kept in the
//! service's state folder, which no user can point anywhere else or start afresh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::execution::runtime_env::RuntimeEnv;
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_schemas::Catalog;

/// The coordinators of the projects asked so far.
pub struct Projects {
    config: FederationConfig,
    catalog: Catalog,
    runtime: Arc<RuntimeEnv>,
    releases: PathBuf,
    coordinators: Mutex<HashMap<String, Arc<Coordinator>>>,
}

/// Whether `project` is a project name (it becomes a file name).
pub fn check_project(project: &str) -> Result<(), String> {
    let ok = !project.is_empty()
        && project.len() <= 64
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !project.starts_with('.');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{project}` is not a project name: use up to 64 letters, digits, '-', '_' or '.'"
        )),
    }
}

impl Projects {
    /// Coordinators over the trusts of `config`, logging releases under `releases/`; their
    /// central plans share `runtime`.
    pub fn new(config: FederationConfig, catalog: Catalog, runtime: Arc<RuntimeEnv>, releases: PathBuf) -> Projects {
        Projects {
            config,
            catalog,
            runtime,
            releases,
            coordinators: Mutex::default(),
        }
    }

    /// The trusts, in configuration order.
    pub fn trusts(&self) -> Vec<String> {
        self.config.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The coordinator of `project` (made on first use).
    pub fn get(&self, project: &str) -> Result<Arc<Coordinator>, String> {
        check_project(project)?;
        let mut coordinators = self.coordinators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(coordinator) = coordinators.get(project) {
            return Ok(coordinator.clone());
        }
        let mut config = self.config.clone();
        config.federation.project = project.to_string();
        config.federation.requester = String::new();
        config.disclosure.release_log = Some(self.releases.join(format!("{project}.jsonl")));
        let coordinator = Coordinator::with_runtime(config, &self.catalog, self.runtime.clone())
            .map(Arc::new)
            .map_err(|e| e.message)?;
        coordinators.insert(project.to_string(), coordinator.clone());
        Ok(coordinator)
    }
}
