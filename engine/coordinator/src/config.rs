//! `federation.toml`: the trusts a coordinator asks, and how it behaves when one does not answer.
//!
//! ```toml
//! [federation]
//! requester = "analyst@university.ac.uk"   # recorded in every trust's audit log
//! project = "los-variation-2024"
//! on_node_failure = "fail"                 # or "partial"
//! node_timeout_secs = 60
//!
//! [tls]                                    # relative paths are relative to this file
//! ca = "certs/ca.pem"                      # the CA the nodes' certificates chain to
//! cert = "certs/coordinator.pem"           # presented to every node (mutual TLS): each trust
//! key = "certs/coordinator-key.pem"        # pins this certificate's subject
//!
//! [[nodes]]
//! name = "RRK"                             # the trust's ODS code
//! url = "https://10.0.0.5:50051"
//! ```
//!
//! This is the coordinator operator's file: whoever holds the key in `[tls]` is the federation's
//! coordinator to every trust.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tessera_disclosure::DisclosureConfig;
use tessera_protocol::tls::ClientTls;
use tessera_schemas::toml_file::{read_toml, ConfigFileError};

/// What to do when a trust cannot be reached or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnNodeFailure {
    /// Any failing trust fails the query (the default: answers are always complete).
    #[default]
    Fail,
    /// Answer from the trusts that responded, and say which did not.
    Partial,
}

/// The coordinator's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    #[serde(default)]
    pub federation: FederationSection,
    pub nodes: Vec<NodeEntry>,
    /// Statistical disclosure control (on unless explicitly turned off).
    #[serde(default)]
    pub disclosure: DisclosureConfig,
    /// TLS to the nodes; without it, links are plaintext and no trust recognises this coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// `tessera serve`: the coordinator as a service users sign in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSection>,
}

/// `[server]`: where `tessera serve` listens, whom it lets in, and where it keeps its state.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:50060"      # Flight SQL (ADBC, JDBC, SQLAlchemy, `tessera query --server`)
/// users = "users.toml"            # `tessera user add --file users.toml NAME --projects a,b`
/// http = "127.0.0.1:8080"         # the dashboard (same users and projects)
/// dashboards = "dashboards"       # more dashboard files, beside the built-in one
/// state = "service"               # per-project release logs and the service's audit log
/// max_running_per_user = 2
/// max_running = 16
///
/// [server.tls]                    # the certificate users see; without it, loopback only
/// cert = "certs/coordinator.pem"
/// key = "certs/coordinator-key.pem"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: String,
    pub users: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default = "default_state")]
    pub state: PathBuf,
    #[serde(default = "default_max_running_per_user")]
    pub max_running_per_user: usize,
    #[serde(default = "default_max_running")]
    pub max_running: usize,
    /// Memory for one question's central plan, in MiB.
    #[serde(default = "default_memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// A folder of dashboard files (`*.toml`) shown beside the built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboards: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
}

/// `[server.tls]`: the service's own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_state() -> PathBuf {
    PathBuf::from("service")
}

fn default_max_running_per_user() -> usize {
    2
}

fn default_max_running() -> usize {
    16
}

fn default_memory_limit_mb() -> u64 {
    1024
}

impl ServerSection {
    /// A section listening on `listen` for the users in `users`, with the defaults.
    pub fn new(listen: &str, users: &Path) -> ServerSection {
        ServerSection {
            listen: listen.to_string(),
            users: users.to_path_buf(),
            http: None,
            state: default_state(),
            max_running_per_user: default_max_running_per_user(),
            max_running: default_max_running(),
            memory_limit_mb: default_memory_limit_mb(),
            dashboards: None,
            tls: None,
        }
    }

    /// Checks what TOML types alone cannot.
    fn check(&self) -> Result<(), String> {
        let listen: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "[server] listen: `{}` is not an address such as 127.0.0.1:50060",
                self.listen
            )
        })?;
        if self.tls.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "[server] listen: `{}` is reachable from other machines, so passwords would cross the network in \
                 clear; add [server.tls] (cert, key) or listen on 127.0.0.1",
                self.listen
            ));
        }
        if let Some(http) = &self.http {
            http.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("[server] http: `{http}` is not an address such as 127.0.0.1:8080"))?;
        }
        if self.max_running_per_user == 0 || self.max_running == 0 {
            return Err("[server] max_running and max_running_per_user: must be at least 1".into());
        }
        Ok(())
    }
}

/// `[tls]`: the CA the nodes' certificates chain to, and the coordinator's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsSection {
    /// Reads the files into a client's TLS settings.
    pub fn load(&self) -> Result<ClientTls, String> {
        ClientTls::load(&self.ca, Some((&self.cert, &self.key))).map_err(|e| format!("[tls] {e}"))
    }
}

/// `[federation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    pub requester: String,
    pub project: String,
    pub on_node_failure: OnNodeFailure,
    pub node_timeout_secs: u64,
}

impl Default for FederationSection {
    fn default() -> Self {
        FederationSection {
            requester: String::new(),
            project: String::new(),
            on_node_failure: OnNodeFailure::Fail,
            node_timeout_secs: 60,
        }
    }
}

/// `[[nodes]]`: one trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The trust's ODS code, e.g. `RRK`.
    pub name: String,
    /// The node's Flight SQL address, e.g. `http://127.0.0.1:50051`.
    pub url: String,
}

/// A problem with `federation.toml`, naming the file.
pub type FederationConfigError = ConfigFileError;

impl FederationConfig {
    /// A federation of `nodes` (name, url) asked on behalf of `requester` for `project`, with the
    /// default failure policy and disclosure control on.
    pub fn new(requester: &str, project: &str, nodes: impl IntoIterator<Item = (String, String)>) -> FederationConfig {
        FederationConfig {
            federation: FederationSection {
                requester: requester.to_string(),
                project: project.to_string(),
                ..FederationSection::default()
            },
            nodes: nodes.into_iter().map(|(name, url)| NodeEntry { name, url }).collect(),
            disclosure: DisclosureConfig::default(),
            tls: None,
            server: None,
        }
    }

    /// Reads and checks `path`; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<FederationConfig, FederationConfigError> {
        let mut config: FederationConfig = read_toml(path)?;
        if let Some(dir) = path.parent() {
            if let Some(log) = &config.disclosure.release_log {
                config.disclosure.release_log = Some(dir.join(log));
            }
            if let Some(tls) = &mut config.tls {
                for file in [&mut tls.ca, &mut tls.cert, &mut tls.key] {
                    *file = dir.join(&*file);
                }
            }
            if let Some(server) = &mut config.server {
                for file in [&mut server.users, &mut server.state] {
                    *file = dir.join(&*file);
                }
                if let Some(dashboards) = &mut server.dashboards {
                    *dashboards = dir.join(&*dashboards);
                }
                if let Some(tls) = &mut server.tls {
                    for file in [&mut tls.cert, &mut tls.key] {
                        *file = dir.join(&*file);
                    }
                }
            }
        }
        config.check().map_err(|message| ConfigFileError::new(path, message))?;
        Ok(config)
    }

    /// Checks what TOML types alone cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("[[nodes]]: list at least one trust node (name and url)".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.trim().is_empty() {
                return Err(format!("[[nodes]] #{}: name is empty", i + 1));
            }
            if !(node.url.starts_with("http://") || node.url.starts_with("https://")) {
                return Err(format!(
                    "[[nodes]] `{}`: url `{}` must start with http:// or https://",
                    node.name, node.url
                ));
            }
            if self.nodes[..i].iter().any(|n| n.name == node.name) {
                return Err(format!("[[nodes]] `{}` is listed twice", node.name));
            }
        }
        self.disclosure.check()?;
        for node in &self.nodes {
            match (&self.tls, node.url.starts_with("https://")) {
                (Some(_), false) => {
                    return Err(format!(
                        "[[nodes]] `{}`: url `{}` must start with https:// since [tls] is configured",
                        node.name, node.url
                    ))
                }
                (None, true) => {
                    return Err(format!(
                        "[[nodes]] `{}`: an https:// url needs a [tls] section (ca, cert, key)",
                        node.name
                    ))
                }
                _ => {}
            }
        }
        if let Some(server) = &self.server {
            server.check()?;
        }
        if self.federation.node_timeout_secs == 0 {
            return Err("[federation] node_timeout_secs: must be at least 1".into());
        }
        Ok(())
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a federation config always serialises")
    }
}
