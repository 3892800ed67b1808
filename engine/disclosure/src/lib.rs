//! Statistical disclosure control as a library: the rules that decide what of a merged answer
//! may be released. The coordinator applies them today; a trust's node registers only the
//! functions it answers to its coordinator ([`CellKey`], [`Top2`]) and still answers other
//! callers with exact aggregates checked by its policy alone, until it applies these rules to
//! them too (the trust-boundary work).
//!
//! Rules (configured in `[disclosure]`), on top of the cell model of `tessera_policy::cells`:
//! - **threshold**: a group of fewer than `threshold` records is not released at all; a
//!   statistic with a class of fewer records is NULL;
//! - **dominance**: a sum or mean of a sensitive measure is NULL when its two largest
//!   contributions are more than `nk_k` of the total (NK rule, n = 2), or when the rest is less
//!   than `p_percent` of the largest (p-percent rule). The contributions come from
//!   [`top2::Top2`], which trusts answer only to their authenticated coordinator;
//! - **models**: correlation, covariance and regression need `min_residual_df` residual df;
//! - **perturbation** by the cell key method ([`cell_key`], [`perturb`]): the same records always
//!   get the same noise; then optional redaction and rounding of counts;
//! - **release log and budget** ([`releases`]): each result about people is logged with the sets
//!   of records and the values it released; a question may hold `max_sets_per_question` sets and
//!   a project may be given `release_budget` distinct values.
//!
//! [`ProtectUdf`] applies the rules to one merged value; [`Ledger`] collects what they did for
//! the result's disclosure line.

pub mod cell_key;
pub mod config;
pub mod perturb;
mod protect;
pub mod releases;
pub mod top2;

pub use cell_key::{CellKey, RecordKeySecret, CELL_KEY, KEY_SUM};
pub use config::{DisclosureConfig, Mode, Perturbation, Zeros};
pub use protect::{Judged, Ledger, ProtectKind, ProtectUdf};
pub use releases::{Release, ReleaseLog};
pub use top2::{Top2, TOP2};
