//! Statistical disclosure control, applied at the coordinator the moment partial answers are
//! merged, so no operator above (HAVING, ORDER BY, LIMIT, joins, windows) and no output path ever
//! sees an unprotected value.
//!
//! Rules in force (configured in `[disclosure]` of `federation.toml`):
//! - **threshold**: a cell whose support (records contributing) is below `threshold` is NULL, for
//!   every statistic;
//! - **rounding**: released counts are rounded to the nearest `round_to` (default 5); with
//!   `redact_at_or_below = 7` counts of 7 or fewer are NULL first (OpenSAFELY style);
//! - **zeros**: a zero count is suppressed (default) or released (`zeros = "release"`);
//! - **models**: correlation, covariance and regression need residual degrees of freedom
//!   (n - 2) of at least `min_residual_df`;
//! - **dominance**: a sum or mean of a sensitive measure is NULL when its two largest
//!   contributions are more than `nk_k` of the total (NK rule, n = 2), or when the rest is less
//!   than `p_percent` of the largest (p-percent rule). The contributions come from
//!   [`top2::Top2`], which trusts answer only to their authenticated coordinator;
//! - **differencing**: a cell that, with cells released earlier in the project (the
//!   [`releases::ReleaseLog`]) or by the same query, would leave a small group is NULL (see
//!   `coordinator::differencing`).

pub mod config;
mod protect;
pub mod releases;
pub mod top2;

pub use config::{DisclosureConfig, Mode, Zeros};
pub use protect::{Ledger, ProtectKind, ProtectUdf};
pub use releases::{CellGuard, Release, ReleaseLog};
pub use top2::{Top2, TOP2};
