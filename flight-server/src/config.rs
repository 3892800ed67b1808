//! `node.toml`: where a trust's data lives, who may ask what, and where the audit log goes.
//!
//! ```toml
//! [node]
//! name = "RRK"                 # the trust's ODS code
//! listen = "127.0.0.1:50051"
//! audit_log = "audit.jsonl"    # relative paths are relative to this file
//!
//! [[tables]]
//! name = "apc_episodes"
//! location = "apc_episodes.parquet"   # a path, a directory, file:// or s3://bucket/key
//! format = "parquet"                  # or "csv"
//!
//! [policy]
//! max_groups = 10000
//!
//! [tls]                               # a node serves only over TLS
//! cert = "certs/RRK.pem"              # this node's certificate and key
//! key = "certs/RRK-key.pem"
//! client_ca = "certs/ca.pem"          # client certificates must chain to this CA
//!
//! [access]
//! coordinator_subject = "CN=tessera-coordinator, O=Tessera development"  # the only coordinator
//! users = "users.toml"                # this trust's analysts (`tessera user add`)
//! projects = "projects.toml"          # projects the coordinator may ask for
//! record_key_secret = "…"             # 64 hex digits: this trust's secret for record keys (never shared)
//!
//! [disclosure]                        # what analysts' answers pass (the coordinator's rules)
//! threshold = 10
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_disclosure::DisclosureConfig;
use tessera_policy::NodePolicy;
use tessera_schemas::toml_file::{read_toml, ConfigFileError};

/// Memory one query may use in the configuration `tessera gen` writes, in MiB.
pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 1024;

/// Default time a node spends on one query.
pub const DEFAULT_QUERY_TIMEOUT_SECS: u64 = 120;

/// A trust node's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub tables: Vec<TableSource>,
    #[serde(default)]
    pub policy: NodePolicy,
    /// TLS: required; a node never serves plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NodeTls>,
    #[serde(default)]
    pub access: AccessSection,
    /// Disclosure control on analysts' answers (the same rules a coordinator applies; never off).
    #[serde(default)]
    pub disclosure: DisclosureConfig,
    /// Differential privacy at this trust (`mode = "dp"`), or exact partials to the coordinator.
    #[serde(default)]
    pub privacy: crate::node::dp::PrivacyConfig,
    /// Folder the config file is in; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the config was read from (for messages).
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The trust's ODS code, e.g. `RRK`.
    pub name: String,
    /// Address to serve Flight SQL on.
    pub listen: String,
    /// The audit log (JSON lines, hash-chained).
    pub audit_log: PathBuf,
    /// Longest a query may run, in seconds.
    #[serde(default = "default_timeout")]
    pub query_timeout_secs: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP; counts and timings only),
    /// e.g. `127.0.0.1:9464`. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The date the trust's extract is as at (`YYYY-MM-DD`), reported with every answer; by
    /// default the date the newest local table file was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_as_at: Option<String>,
    /// Memory DataFusion may use for one query, in MiB (0: unlimited); a query that needs more
    /// fails alone, and the others keep running. The central work of analysts' questions shares
    /// one pool of this size.
    #[serde(default = "default_memory")]
    pub memory_limit_mb: u64,
}

/// `[tls]`: the node's certificate and the CA its clients' certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// `[access]`: who the node recognises.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// The subject of the federation coordinator's client certificate (e.g. `CN=…, O=…`). Only a
    /// caller presenting a certificate that chains to `[tls] client_ca` with exactly this subject
    /// gets exact partial aggregates; without it, no caller does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_subject: Option<String>,
    /// This trust's analysts (argon2id hashes; `tessera user add`), relative to this file. Without
    /// it, no one signs in with a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<PathBuf>,
    /// The projects this trust has approved, relative to this file: the coordinator's questions
    /// for any other project are refused. Without it, any project may be asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<PathBuf>,
    /// This trust's secret for record keys (64 hex digits), from which the cell keys that
    /// perturbation needs are made. It never leaves the trust; keep it stable, since a new secret
    /// gives every cell new noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_key_secret: Option<String>,
}

fn default_memory() -> u64 {
    DEFAULT_MEMORY_LIMIT_MB
}

fn default_timeout() -> u64 {
    DEFAULT_QUERY_TIMEOUT_SECS
}

/// The file format of a table's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Parquet,
    Csv,
}

/// `[[tables]]`: one contract table and where its data is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSource {
    pub name: String,
    /// A local path (file or directory), `file://…` or `s3://bucket/prefix`.
    pub location: String,
    pub format: TableFormat,
}

/// A configuration problem, naming the file and the key.
pub type ConfigError = ConfigFileError;

impl NodeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let mut config: NodeConfig = read_toml(path)?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.source = path.to_path_buf();
        config.check().map_err(|message| ConfigFileError::new(path, message))?;
        Ok(config)
    }

    /// Checks values that TOML types alone cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.node.name.trim().is_empty() {
            return Err("[node] name: must be the trust's ODS code, e.g. \"RRK\"".into());
        }
        self.node.listen.parse::<SocketAddr>().map_err(|_| {
            format!(
                "[node] listen: `{}` is not an address like 127.0.0.1:50051",
                self.node.listen
            )
        })?;
        if let Some(addr) = &self.node.metrics_listen {
            addr.parse::<SocketAddr>()
                .map_err(|_| format!("[node] metrics_listen: `{addr}` is not an address like 127.0.0.1:9464"))?;
        }
        if let Some(date) = &self.node.data_as_at {
            chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| format!("[node] data_as_at: `{date}` is not a date like 2024-03-31"))?;
        }
        if self.tables.is_empty() {
            return Err("[[tables]]: no tables configured; a node needs at least one".into());
        }
        for (i, t) in self.tables.iter().enumerate() {
            if self.tables[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("[[tables]] `{}` is configured twice", t.name));
            }
        }
        if self.policy.max_groups == 0 {
            return Err("[policy] max_groups: must be at least 1".into());
        }
        if self.node.query_timeout_secs == 0 {
            return Err("[node] query_timeout_secs: must be at least 1".into());
        }
        if let Some(secret) = &self.access.record_key_secret {
            if tessera_disclosure::RecordKeySecret::from_hex(secret).is_none() {
                return Err(
                    "[access] record_key_secret: must be 64 hex digits (`tessera gen` writes one; or \
                            `openssl rand -hex 32`)"
                        .into(),
                );
            }
        }
        if self.tls.is_none() {
            return Err(
                "[tls]: a node serves only over TLS; set cert, key and client_ca (`tessera certs dev` \
                        makes development ones)"
                    .into(),
            );
        }
        if self
            .access
            .coordinator_subject
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(
                "[access] coordinator_subject: empty (write the coordinator certificate's subject, \
                        e.g. \"CN=tessera-coordinator, O=Tessera development\")"
                    .into(),
            );
        }
        if self.disclosure.mode == tessera_disclosure::Mode::Off {
            return Err("[disclosure] mode: a node never answers its analysts without disclosure control".into());
        }
        self.disclosure.check().map_err(|e| format!("[disclosure] {e}"))?;
        Ok(())
    }

    /// `path` resolved against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// `[tls]` with paths resolved against the config file's folder.
    pub fn tls_files(&self) -> Option<NodeTls> {
        self.tls.as_ref().map(|t| NodeTls {
            cert: self.resolve(&t.cert),
            key: self.resolve(&t.key),
            client_ca: self.resolve(&t.client_ca),
        })
    }

    /// The users file's path, when analysts may sign in.
    pub fn users_path(&self) -> Option<PathBuf> {
        self.access.users.as_ref().map(|p| self.resolve(p))
    }

    /// The approved-projects file's path, when there is one.
    pub fn projects_path(&self) -> Option<PathBuf> {
        self.access.projects.as_ref().map(|p| self.resolve(p))
    }

    /// Where analysts' releases are logged (relative to this file unless absolute).
    pub fn analyst_release_log(&self) -> PathBuf {
        self.resolve(
            self.disclosure
                .release_log
                .as_deref()
                .unwrap_or(Path::new("analyst-releases.jsonl")),
        )
    }

    /// The as-at date of the trust's data: `[node] data_as_at`, else the day the newest local
    /// table file was written (UTC), else `unknown`.
    pub fn data_as_at(&self) -> String {
        if let Some(date) = &self.node.data_as_at {
            return date.clone();
        }
        let newest = self
            .tables
            .iter()
            .filter(|t| !t.location.contains("://") || t.location.starts_with("file://"))
            .map(|t| self.resolve(Path::new(t.location.trim_start_matches("file://"))))
            .filter_map(|path| newest_write(&path))
            .max();
        newest.map_or_else(
            || "unknown".to_string(),
            |time| {
                chrono::DateTime::<chrono::Utc>::from(time)
                    .format("%Y-%m-%d")
                    .to_string()
            },
        )
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> PathBuf {
        self.resolve(&self.node.audit_log)
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a node config always serialises")
    }
}

impl NodeConfig {
    /// The configuration `tessera gen` writes for a trust, as if read from `dir/node.toml`.
    pub fn for_trust_dir(provider: &str, dir: &Path, listen: &str, tables: &[String]) -> NodeConfig {
        NodeConfig {
            base_dir: dir.to_path_buf(),
            source: dir.join("node.toml"),
            ..NodeConfig::for_generated(provider, listen, tables)
        }
    }

    /// A ready configuration for a trust whose Parquet files sit beside the config file.
    pub fn for_generated(provider: &str, listen: &str, tables: &[String]) -> NodeConfig {
        NodeConfig {
            node: NodeSection {
                name: provider.to_string(),
                listen: listen.to_string(),
                audit_log: PathBuf::from("audit.jsonl"),
                query_timeout_secs: DEFAULT_QUERY_TIMEOUT_SECS,
                memory_limit_mb: DEFAULT_MEMORY_LIMIT_MB,
                data_as_at: None,
                metrics_listen: None,
            },
            tables: tables
                .iter()
                .map(|t| TableSource {
                    name: t.clone(),
                    location: format!("{t}.parquet"),
                    format: TableFormat::Parquet,
                })
                .collect(),
            policy: NodePolicy::default(),
            tls: None,
            disclosure: DisclosureConfig::default(),
            privacy: crate::node::dp::PrivacyConfig::default(),
            access: AccessSection {
                record_key_secret: Some(tessera_disclosure::RecordKeySecret::generate_hex()),
                ..AccessSection::default()
            },
            base_dir: PathBuf::new(),
            source: PathBuf::new(),
        }
    }
}

/// When the file, or the newest file in the folder, at `path` was last written.
fn newest_write(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok()?.metadata().ok()?.modified().ok())
        .max()
}
