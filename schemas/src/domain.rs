//! Public value domains shared by the contracts (`contracts/domains.toml`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One allowed value of a dimension, with its public meaning.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DomainValue {
    pub code: String,
    #[serde(default)]
    pub label: Option<String>,
}

/// A named, public list of the values a dimension column may hold.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Domain {
    pub description: String,
    pub values: Vec<DomainValue>,
}

impl Domain {
    /// The codes of this domain, in file order.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|v| v.code.as_str())
    }

    /// Whether `code` is one of this domain's values.
    pub fn contains(&self, code: &str) -> bool {
        self.values.iter().any(|v| v.code == code)
    }

    /// The label of `code`, if it has one.
    pub fn label(&self, code: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|v| v.code == code)
            .and_then(|v| v.label.as_deref())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainsFile {
    pub domains: BTreeMap<String, Domain>,
}
