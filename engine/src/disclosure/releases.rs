//! What a project has been shown: the release log, and the per-query guard that records released
//! cells and suppresses the cells an earlier release would let someone subtract.
//!
//! A release describes cells by their population, not their values: the table, the filter and
//! the grouping expressions (as SQL), and the labels of the cells that were released. Nothing in
//! it is secret (the researcher saw all of it); the sizes needed to compare populations are asked
//! of the trusts again when a later query is checked.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use datafusion::arrow::array::ArrayRef;
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

/// A cell's labels: one text per grouping expression (`None` for NULL).
pub type Key = Vec<Option<String>>;

/// The key of row `i` of the grouping columns `columns`.
pub fn key_at(columns: &[ArrayRef], i: usize) -> Key {
    columns
        .iter()
        .map(|c| match ScalarValue::try_from_array(c, i) {
            Ok(v) if !v.is_null() => Some(v.to_string()),
            _ => None,
        })
        .collect()
}

/// The cells of one aggregate that a project was shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The federated table the cells count records of.
    pub table: String,
    /// Which records: the query's filters, as SQL; `None` for all.
    pub predicate: Option<String>,
    /// How records were grouped into cells, as SQL expressions.
    pub groups: Vec<String>,
    /// Per set of records the statistics were built from, what was shown.
    pub variants: Vec<VariantRelease>,
}

/// The cells of the statistics built from the records meeting `condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantRelease {
    /// E.g. an aggregate's FILTER, `x <> 0` for a sum, `x IS NOT NULL` for `count(x)`; `None`:
    /// every record of the cell.
    pub condition: Option<String>,
    /// The quantity the statistics add up, e.g. `records` or `sum(los_days)`.
    pub measure: String,
    /// The labels of the cells released.
    pub released: BTreeSet<Key>,
    /// Cells hidden although they had enough records (dominance, residual df): a later result
    /// that is one of them plus released cells would give it away.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub withheld: BTreeSet<Key>,
}

impl Release {
    /// Whether `other` describes the same cells (same table, filter and grouping).
    pub fn same_cells(&self, other: &Release) -> bool {
        self.table == other.table && self.predicate == other.predicate && self.groups == other.groups
    }

    /// Adds what `other` (of the same cells) showed.
    fn absorb(&mut self, other: Release) {
        for variant in other.variants {
            match self
                .variants
                .iter_mut()
                .find(|v| v.condition == variant.condition && v.measure == variant.measure)
            {
                Some(known) => {
                    known.released.extend(variant.released);
                    known.withheld.extend(variant.withheld);
                }
                None => self.variants.push(variant),
            }
        }
    }

    /// The part of `self` that `known` (earlier releases) does not already hold.
    fn news(&self, known: &[Release]) -> Option<Release> {
        let earlier = known.iter().find(|k| k.same_cells(self));
        let variants = self
            .variants
            .iter()
            .filter(|v| !v.released.is_empty() || !v.withheld.is_empty())
            .filter(|v| {
                !earlier.is_some_and(|e| {
                    e.variants.iter().any(|k| {
                        k.condition == v.condition
                            && k.measure == v.measure
                            && v.released.is_subset(&k.released)
                            && v.withheld.is_subset(&k.withheld)
                    })
                })
            })
            .cloned()
            .collect::<Vec<_>>();
        (!variants.is_empty()).then(|| Release {
            variants,
            ..self.clone()
        })
    }
}

/// The append-only log of a project's releases (JSON lines).
#[derive(Debug, Clone)]
pub struct ReleaseLog {
    path: PathBuf,
}

impl ReleaseLog {
    pub fn new(path: PathBuf) -> ReleaseLog {
        ReleaseLog { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for, then holds, the project's lock: one query at a time goes from its check to its
    /// logged release, so two queries running at once cannot miss each other. Released on drop.
    pub async fn lock(&self) -> Result<std::fs::File, String> {
        let path = self.path.with_extension("lock");
        tokio::task::spawn_blocking(move || {
            let fail = |e: std::io::Error| format!("release log lock {}: {e}", path.display());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(fail)?;
            file.lock().map_err(fail)?;
            Ok(file)
        })
        .await
        .map_err(|e| format!("release log lock: {e}"))?
    }

    /// Every earlier release, releases of the same cells merged. A missing log is empty; a damaged
    /// one is an error (nothing is released without the check).
    pub fn load(&self) -> Result<Vec<Release>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("release log {}: {e}", self.path.display())),
        };
        let mut releases: Vec<Release> = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let release: Release = serde_json::from_str(line)
                .map_err(|e| format!("release log {}: line {}: {e}", self.path.display(), n + 1))?;
            match releases.iter_mut().find(|r| r.same_cells(&release)) {
                Some(known) => known.absorb(release),
                None => releases.push(release),
            }
        }
        Ok(releases)
    }

    /// Appends what `new` releases add to `known` ones.
    pub fn append(&self, new: &[Release], known: &[Release]) -> Result<(), String> {
        let fresh = new
            .iter()
            .filter_map(|r| r.news(known))
            .map(|r| serde_json::to_string(&r).expect("a release always serialises"))
            .collect::<Vec<_>>();
        if fresh.is_empty() {
            return Ok(());
        }
        let fail = |e: std::io::Error| format!("release log {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        file.write_all(format!("{}\n", fresh.join("\n")).as_bytes())
            .map_err(fail)?;
        file.sync_data().map_err(fail)
    }
}

/// One aggregate's cells during a query: which are denied because of earlier releases, and which
/// were released (for the log).
#[derive(Debug, Default)]
pub struct CellGuard {
    denied: Mutex<HashSet<Key>>,
    released: Mutex<BTreeSet<Key>>,
    withheld: Mutex<BTreeSet<Key>>,
}

impl CellGuard {
    /// Cells to suppress whatever their own statistics say.
    pub fn deny(&self, keys: impl IntoIterator<Item = Key>) {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).extend(keys);
    }

    pub fn is_denied(&self, key: &Key) -> bool {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }

    pub fn denied(&self) -> HashSet<Key> {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Notes that a statistic of cell `key` was released.
    pub fn record_release(&self, key: Key) {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    }

    /// Notes that a statistic of cell `key` was hidden although it had enough records.
    pub fn record_withheld(&self, key: Key) {
        self.withheld.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    }

    pub fn withheld(&self) -> BTreeSet<Key> {
        self.withheld.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn released(&self) -> BTreeSet<Key> {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
