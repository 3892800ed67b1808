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
