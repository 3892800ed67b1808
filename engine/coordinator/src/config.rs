//! `federation.toml`: the trusts a coordinator asks, and how it behaves when one does not answer.
//!
//! ```toml
//! [federation]
//! requester = "analyst@university.ac.uk"   # recorded in every trust's audit log
//! project = "los-variation-2024"
//! on_node_failure = "fail"                 # or "partial"
//! node_timeout_secs = 60
//! coordinator_token = "…"                  # proves to each trust that this is its coordinator
//!
//! [[nodes]]
//! name = "RRK"                             # the trust's ODS code
//! url = "http://10.0.0.5:50051"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use tessera_disclosure::DisclosureConfig;
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
}

/// `[federation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    pub requester: String,
    pub project: String,
    pub on_node_failure: OnNodeFailure,
    pub node_timeout_secs: u64,
    /// The secret whose SHA-256 each trust lists as `coordinator_token_sha256` in `[access]`;
    /// sent as a bearer token with every fragment. `TESSERA_COORDINATOR_TOKEN` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator_token: Option<String>,
}

impl Default for FederationSection {
    fn default() -> Self {
        FederationSection {
            requester: String::new(),
            project: String::new(),
            on_node_failure: OnNodeFailure::Fail,
            node_timeout_secs: 60,
            coordinator_token: None,
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
        }
    }

    /// Reads and checks `path`; `TESSERA_COORDINATOR_TOKEN`, when set, replaces the token.
    pub fn load(path: &Path) -> Result<FederationConfig, FederationConfigError> {
        let mut config: FederationConfig = read_toml(path)?;
        if let Ok(token) = std::env::var(tessera_protocol::token::TOKEN_ENV) {
            config.federation.coordinator_token = Some(token);
        }
        if let (Some(log), Some(dir)) = (&config.disclosure.release_log, path.parent()) {
            config.disclosure.release_log = Some(dir.join(log));
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
        if let Some(token) = &self.federation.coordinator_token {
            tessera_protocol::token::check_token(token).map_err(|e| format!("[federation] coordinator_token: {e}"))?;
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
