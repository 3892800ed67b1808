//! Differential privacy as each trust applies it before anything leaves the trust.
//!
//! - [`sampler`]: exact integer noise (the discrete Gaussian of Canonne, Kamath and Steinke);
//! - [`accounting`]: zero-concentrated DP: the noise a statistic needs for its sensitivity and
//!   its share of a question's spend, composition, and the (ε, δ) shown to users;
//! - [`ledger`]: the budget each trust keeps per project, reserved durably before a question runs;
//! - [`selection`]: the noisy threshold a cell must pass when a grid is too large to release whole;
//! - [`spending`]: who spent what, read from a ledger file without touching it.
//!
//! No DataFusion here: a trust's reviewer can read the whole guarantee in these files.

pub mod accounting;
pub mod ledger;
pub mod sampler;
pub mod selection;
pub mod spending;

pub use accounting::{Calibration, NoiseError, Rho, REPORTED_DELTA};
pub use ledger::{Account, BudgetLedger, LedgerError, Limits, Reserved};
