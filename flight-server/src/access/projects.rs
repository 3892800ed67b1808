//! The projects a trust has approved: the coordinator's questions for any other project are
//! refused (and audited). Removing a project from the file revokes it with the next request.
//!
//! ```toml
//! projects = ["los-variation-2024", "ae-performance"]
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The approved-projects file, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectsFile {
    #[serde(default)]
    pub projects: Vec<String>,
}

impl ProjectsFile {
    /// Reads `path`; a missing file is an error naming it.
    pub fn load(path: &Path) -> Result<ProjectsFile, String> {
        tessera_schemas::toml_file::read_toml(path).map_err(|e| e.to_string())
    }

    /// Writes the file (what `tessera gen` does for its own federation's project).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = format!(
            "# Projects this trust has approved; the coordinator's questions for any other are refused.\n\n{}",
            toml::to_string_pretty(self).map_err(|e| e.to_string())?
        );
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether `project` is approved.
    pub fn approves(&self, project: &str) -> bool {
        self.projects.iter().any(|p| p == project)
    }
}
