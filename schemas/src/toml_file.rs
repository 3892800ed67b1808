//! Reading TOML configuration files (`node.toml`, `federation.toml`) with messages that name the
//! file and the line.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigFileError {
    pub file: PathBuf,
    pub message: String,
}

impl ConfigFileError {
    pub fn new(file: &Path, message: impl Into<String>) -> ConfigFileError {
        ConfigFileError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Reads `path` and parses it as `T`; a parse error names the line and the key.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::new(path, format!("cannot read: {e}")))?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(" (line {})", text[..s.start.min(text.len())].matches('\n').count() + 1))
            .unwrap_or_default();
        ConfigFileError::new(path, format!("invalid configuration{line}: {}", e.message()))
    })
}
