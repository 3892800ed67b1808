//! Differential privacy as each trust applies it before anything leaves the trust.
//!
//! - [`sampler`]: exact integer noise (the discrete Gaussian of Canonne, Kamath and Steinke);
//! - [`accounting`]: zero-concentrated DP: the noise a statistic needs for its sensitivity and
//!   its share of a question's spend, composition, and the (ε, δ) shown to users;
//! - [`ledger`]: the budget each trust keeps per project, reserved durably before a question runs.
//!
//! No DataFusion here: a trust's reviewer can read the whole guarantee in these files.

pub mod accounting;
pub mod ledger;
pub mod sampler;

pub use accounting::{Calibration, NoiseError, Rho, REPORTED_DELTA};
pub use ledger::{Account, BudgetLedger, LedgerError, Reserved};
