//! The set of contracts and domains a federation agrees on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::contract::{parse_data_type, Column, ContractFile, Role};
use crate::domain::{Domain, DomainsFile};
use crate::{Contract, ContractError};

/// The contract files built into Tessera (the `contracts/` folder of this crate).
const BUILTIN_FILES: &[(&str, &str)] = &[
    ("domains.toml", include_str!("../contracts/domains.toml")),
    ("apc_episodes.toml", include_str!("../contracts/apc_episodes.toml")),
    ("ec_attendances.toml", include_str!("../contracts/ec_attendances.toml")),
    (
        "op_appointments.toml",
        include_str!("../contracts/op_appointments.toml"),
    ),
    (
        "workforce_finance_monthly.toml",
        include_str!("../contracts/workforce_finance_monthly.toml"),
    ),
    ("ref_unit_costs.toml", include_str!("../contracts/ref_unit_costs.toml")),
    ("ref_unit_costs.csv", include_str!("../contracts/ref_unit_costs.csv")),
];

/// All table contracts and value domains, keyed by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    contracts: BTreeMap<String, Contract>,
    domains: BTreeMap<String, Domain>,
    /// Rows of public reference tables, as CSV text, keyed by table name.
    public_data: BTreeMap<String, String>,
}

impl Catalog {
    /// The contracts compiled into this build of Tessera.
    pub fn builtin() -> Catalog {
        let files = BUILTIN_FILES
            .iter()
            .map(|(name, text)| (PathBuf::from(format!("schemas/contracts/{name}")), text.to_string()))
            .collect::<Vec<_>>();
        Catalog::from_files(&files).expect("built-in contracts are valid (checked by tests)")
    }

    /// Loads `domains.toml`, every other `*.toml` contract and the public tables' CSV files from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Catalog, ContractError> {
        let io = |file: &Path, e: std::io::Error| ContractError::Io {
            file: file.to_path_buf(),
            message: e.to_string(),
        };
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        let mut paths = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("toml" | "csv")))
            .collect::<Vec<_>>();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            files.push((path, text));
        }
        Catalog::from_files(&files)
    }

    /// Builds a catalog from `(path, text)` pairs; `domains.toml` holds the domains.
    pub fn from_files(files: &[(PathBuf, String)]) -> Result<Catalog, ContractError> {
        let file_name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let domains_file = files
            .iter()
            .find(|(p, _)| file_name(p) == "domains.toml")
            .ok_or_else(|| ContractError::Parse {
                file: PathBuf::from("domains.toml"),
                message: "domains.toml is missing from the contracts folder".into(),
            })?;
        let domains: DomainsFile = toml::from_str(&domains_file.1).map_err(|e| ContractError::Parse {
            file: domains_file.0.clone(),
            message: e.message().to_string(),
        })?;
        let mut catalog = Catalog {
            contracts: BTreeMap::new(),
            domains: domains.domains,
            public_data: BTreeMap::new(),
        };
        let csv_texts: BTreeMap<String, &String> = files
            .iter()
            .filter(|(p, _)| p.extension().and_then(|x| x.to_str()) == Some("csv"))
            .map(|(p, t)| (file_name(p), t))
            .collect();
        for (path, text) in files {
            if file_name(path) == "domains.toml" || path.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let contract = catalog.parse_contract(path, text)?;
            if let Some(data) = &contract.data {
                let csv = csv_texts.get(data).ok_or_else(|| ContractError::Parse {
                    file: path.clone(),
                    message: format!("public data file `{data}` is missing beside the contract"),
                })?;
                catalog.public_data.insert(contract.name.clone(), (*csv).clone());
            }
            if catalog.contracts.contains_key(&contract.name) {
                return Err(ContractError::Parse {
                    file: path.clone(),
                    message: format!("table `{}` is defined twice", contract.name),
                });
            }
            catalog.contracts.insert(contract.name.clone(), contract);
        }
        Ok(catalog)
    }

    fn parse_contract(&self, path: &Path, text: &str) -> Result<Contract, ContractError> {
        let raw: ContractFile = toml::from_str(text).map_err(|e| ContractError::Parse {
            file: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let invalid = |column: &str, message: String| ContractError::InvalidColumn {
            file: path.to_path_buf(),
            column: column.to_string(),
            message,
        };
        let mut columns = Vec::with_capacity(raw.columns.len());
        for c in raw.columns {
            let data_type = parse_data_type(&c.data_type).ok_or_else(|| ContractError::UnknownType {
                file: path.to_path_buf(),
                column: c.name.clone(),
                found: c.data_type.clone(),
            })?;
            if columns.iter().any(|x: &Column| x.name == c.name) {
                return Err(invalid(&c.name, "is defined twice".into()));
            }
            if let Some(domain) = &c.domain {
                if c.role != Role::Dimension {
                    return Err(invalid(
                        &c.name,
                        format!("only dimensions have a domain, this column is a {}", c.role),
                    ));
                }
                if !self.domains.contains_key(domain) {
                    return Err(ContractError::UnknownDomain {
                        file: path.to_path_buf(),
                        column: c.name.clone(),
                        domain: domain.clone(),
                    });
                }
            }
            if c.role != Role::Measure && (c.bounds.is_some() || c.sensitive) {
                return Err(invalid(
                    &c.name,
                    format!("only measures have bounds or `sensitive`, this column is a {}", c.role),
                ));
            }
            if c.role != Role::Measure && !c.bands.is_empty() {
                return Err(invalid(
                    &c.name,
                    format!("only measures have bands, this column is a {}", c.role),
                ));
            }
            if !c.bands.windows(2).all(|w| w[0] < w[1]) || c.bands.iter().any(|e| !e.is_finite()) {
                return Err(invalid(&c.name, "bands must be finite and increasing".into()));
            }
            if c.role != Role::Date && c.grain.is_some() {
                return Err(invalid(
                    &c.name,
                    format!("only dates have a grain, this column is a {}", c.role),
                ));
            }
            if let Some((lo, hi)) = c.bounds {
                if lo > hi {
                    return Err(invalid(&c.name, format!("bounds [{lo}, {hi}] are reversed")));
                }
            }
            columns.push(Column {
                name: c.name,
                data_type,
                role: c.role,
                nullable: c.nullable,
                domain: c.domain,
                bounds: c.bounds,
                sensitive: c.sensitive,
                bands: c.bands,
                grain: c.grain.unwrap_or_default(),
                description: c.description,
            });
        }
        if raw.table.public && columns.iter().any(|c| c.role == Role::Identifier) {
            return Err(ContractError::Parse {
                file: path.to_path_buf(),
                message: "a public table cannot have identifier columns".into(),
            });
        }
        if let Some(missing) = raw.table.key.iter().find(|k| !columns.iter().any(|c| &c.name == *k)) {
            return Err(ContractError::Parse {
                file: path.to_path_buf(),
                message: format!("key column `{missing}` is not a column of the table"),
            });
        }
        if !raw.table.key.is_empty() && !raw.table.public {
            return Err(ContractError::Parse {
                file: path.to_path_buf(),
                message: "only public tables declare a key".into(),
            });
        }
        Ok(Contract {
            name: raw.table.name,
            version: raw.table.version,
            description: raw.table.description,
            public: raw.table.public,
            data: raw.table.data,
            key: raw.table.key,
            columns,
        })
    }

    /// The contract of `table`.
    pub fn contract(&self, table: &str) -> Result<&Contract, ContractError> {
        self.contracts
            .get(table)
            .ok_or_else(|| ContractError::UnknownTable(table.to_string()))
    }

    /// Every contract, by table name.
    pub fn contracts(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.values()
    }

    /// The domain called `name`.
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.get(name)
    }

    /// Every domain, by name.
    pub fn domains(&self) -> impl Iterator<Item = (&String, &Domain)> {
        self.domains.iter()
    }

    /// The domain of a dimension column, if it has one.
    pub fn column_domain(&self, column: &Column) -> Option<&Domain> {
        column.domain.as_deref().and_then(|d| self.domains.get(d))
    }

    /// The rows of a public reference table, as CSV text with a header line.
    pub fn public_data(&self, table: &str) -> Option<&str> {
        self.public_data.get(table).map(String::as_str)
    }
}
