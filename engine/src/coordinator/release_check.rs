//! The release check: every protected aggregate's cells are compared with the project's earlier
//! releases, and with the query's other aggregates, by exact cross-tabulations at the trusts
//! (see [`super::differencing`]); cells that would difference with them are denied.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use datafusion::physical_plan::collect;
use futures::{StreamExt, TryStreamExt};

use super::differencing::{CrossTab, CrossTabQuery};
use super::population::Population;
use super::rewrite::Tracked;
use super::{failure_of, provenance_of, Coordinator, ErrorKind, Provenance, QueryError};
use crate::disclosure::releases::VariantRelease;
use crate::disclosure::{Ledger, Release, ReleaseLog};

impl Coordinator {
    /// Compares every tracked aggregate's cells with the project's earlier releases and with the
    /// query's earlier aggregates, and denies the cells that would difference with them (see
    /// [`differencing`]). Returns the earlier releases.
    pub(super) async fn check_releases(
        &self,
        tracked: &[Tracked],
        ledger: &Ledger,
    ) -> Result<Vec<Release>, QueryError> {
        let Some(log) = self.release_log.as_ref().filter(|_| !tracked.is_empty()) else {
            return Ok(Vec::new());
        };
        let earlier = log.load().map_err(|message| QueryError {
            kind: ErrorKind::Query,
            message: format!("{message} (results are released only after this check)"),
        })?;
        let threshold = self.config.disclosure.threshold as i64;
        // The fewest records a released cell can have (a smaller one is suppressed or redacted).
        let released_from = threshold.max(self.config.disclosure.redact_at_or_below as i64 + 1);
        // What each aggregate is compared with: earlier releases of its table, the query's earlier
        // aggregates over it, and (between its own variants) itself. One scan each.
        // Only statistics of the same quantity are compared, and never a variant with itself.
        let mut jobs = Vec::new();
        for (f, family) in tracked.iter().enumerate() {
            for old in earlier.iter().filter(|r| r.table == family.population.table) {
                let same_cells = population_of(old) == family.population;
                let worth_it = family.variants.iter().any(|v| {
                    old.variants
                        .iter()
                        .any(|o| o.measure == v.measure && !(same_cells && o.condition == v.condition))
                });
                if worth_it {
                    jobs.push((f, Earlier::Logged(old)));
                }
            }
            for g in (0..f).filter(|&g| tracked[g].population.table == family.population.table) {
                let worth_it = family
                    .variants
                    .iter()
                    .any(|v| tracked[g].variants.iter().any(|o| o.measure == v.measure));
                if worth_it {
                    jobs.push((f, Earlier::InQuery(g)));
                }
            }
            let variants = &family.variants;
            if (1..variants.len()).any(|i| variants[..i].iter().any(|o| o.measure == variants[i].measure)) {
                jobs.push((f, Earlier::InQuery(f)));
            }
        }
        let tabs = futures::stream::iter(jobs.iter().map(|(f, earlier)| {
            let (old, old_conditions) = match earlier {
                Earlier::Logged(release) => (
                    population_of(release),
                    release.variants.iter().map(|v| v.condition.clone()).collect(),
                ),
                Earlier::InQuery(g) => (tracked[*g].population.clone(), conditions_of(&tracked[*g])),
            };
            self.cross_tab(
                &tracked[*f].population,
                conditions_of(&tracked[*f]),
                old,
                old_conditions,
            )
        }))
        .buffered(CONCURRENT_CHECKS)
        .try_collect::<Vec<_>>()
        .await?;
        ledger.compared_with.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        for (f, family) in tracked.iter().enumerate() {
            for (i, variant) in family.variants.iter().enumerate() {
                let mut denied = HashSet::new();
                for ((_, earlier), tab) in jobs.iter().zip(&tabs).filter(|((g, _), _)| *g == f) {
                    match earlier {
                        Earlier::Logged(old) => {
                            let same_cells = population_of(old) == family.population;
                            for (j, old_variant) in old.variants.iter().enumerate() {
                                if old_variant.measure != variant.measure
                                    || (same_cells && old_variant.condition == variant.condition)
                                {
                                    continue;
                                }
                                tab[i][j].deny(
                                    |o| old_variant.released.contains(o),
                                    |o| old_variant.withheld.contains(o),
                                    released_from,
                                    &mut denied,
                                );
                            }
                        }
                        // Cells of the query's earlier aggregates (or variants) with enough records
                        // will be released unless already denied (an over-estimate, which only
                        // suppresses more).
                        Earlier::InQuery(g) => {
                            let before = &tracked[*g];
                            let decided = if *g == f { i } else { before.variants.len() };
                            for (j, before_variant) in before.variants[..decided].iter().enumerate() {
                                if before_variant.measure != variant.measure {
                                    continue;
                                }
                                let before_denied = before_variant.guard.denied();
                                let t = &tab[i][j];
                                t.deny(
                                    |o| t.old_size(o) >= released_from && !before_denied.contains(o),
                                    |_| false,
                                    released_from,
                                    &mut denied,
                                );
                            }
                        }
                    }
                }
                variant.guard.deny(denied);
            }
        }
        Ok(earlier)
    }

    /// The exact sizes of the cells of `new`'s and `old`'s variants and of their intersections,
    /// from every trust, in one scan: `[new variant][old variant]`.
    async fn cross_tab(
        &self,
        new: &Population,
        new_conditions: Vec<Option<String>>,
        old: Population,
        old_conditions: Vec<Option<String>>,
    ) -> Result<Vec<Vec<CrossTab>>, QueryError> {
        let query = CrossTabQuery::new(new, &new_conditions, &old, &old_conditions);
        let checked = async {
            let (plan, _) = self.plan_tracked(&query.sql, None).await?;
            let physical = self.ctx.state().create_physical_plan(&plan).await?;
            let batches = collect(physical.clone(), self.ctx.task_ctx()).await?;
            if let Some(failure) = failure_of(&provenance_of(&physical)) {
                return Err(QueryError {
                    kind: ErrorKind::Connection,
                    message: failure,
                });
            }
            Ok::<_, QueryError>(CrossTab::from_batches(&batches, &query)?)
        };
        checked.await.map_err(|e| QueryError {
            kind: e.kind,
            message: format!(
                "this result could not be checked against the project's earlier releases, so it is not released: {}",
                e.message
            ),
        })
    }
}

/// Comparisons with the release log asked of the trusts at once.
const CONCURRENT_CHECKS: usize = 8;

/// What an aggregate's cells are compared with.
enum Earlier<'a> {
    /// A release from the project's log.
    Logged(&'a Release),
    /// An aggregate of the same query (by its index; its own index: between its variants).
    InQuery(usize),
}

/// The conditions of an aggregate's variants, in order.
fn conditions_of(tracked: &Tracked) -> Vec<Option<String>> {
    tracked.variants.iter().map(|v| v.condition.clone()).collect()
}

/// The population of cells a logged release describes.
fn population_of(release: &Release) -> Population {
    Population {
        table: release.table.clone(),
        predicate: release.predicate.clone(),
        groups: release.groups.clone(),
    }
}

/// What a query will add to the release log once its result is ready.
pub(super) struct Releases {
    pub(super) log: ReleaseLog,
    pub(super) tracked: Vec<Tracked>,
    pub(super) earlier: Vec<Release>,
    /// Held from the check until the release is logged.
    pub(super) _lock: Option<std::fs::File>,
}

impl Releases {
    /// Logs the cells released; a result that cannot be logged is not returned, and neither is a
    /// partial one (it could be subtracted from a complete answer to the same question).
    pub(super) fn record(&self, provenance: &Provenance) -> Result<(), QueryError> {
        if !self.tracked.is_empty() {
            if let Some(failure) = failure_of(provenance) {
                return Err(QueryError {
                    kind: ErrorKind::Connection,
                    message: format!(
                        "{failure}; with disclosure control on, a partial answer about people is not released (it could \
                         be subtracted from a complete one). Retry when every trust answers"
                    ),
                });
            }
        }
        let new = self
            .tracked
            .iter()
            .map(|t| Release {
                table: t.population.table.clone(),
                predicate: t.population.predicate.clone(),
                groups: t.population.groups.clone(),
                variants: t
                    .variants
                    .iter()
                    .map(|v| VariantRelease {
                        condition: v.condition.clone(),
                        measure: v.measure.clone(),
                        released: v.guard.released(),
                        withheld: v.guard.withheld(),
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        self.log.append(&new, &self.earlier).map_err(|message| QueryError {
            kind: ErrorKind::Query,
            message: format!("{message} (a result is returned only once its release is logged)"),
        })
    }
}
