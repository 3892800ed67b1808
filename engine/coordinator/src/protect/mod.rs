//! Step 6: disclosure control around every merged value, in two halves.
//!
//! - [`values`], while planning: a merged row of too few records is dropped (labels included)
//!   before anything else sees it, and each statistic of a kept row passes its protecting
//!   function (`tessera_disclosure::ProtectUdf`), which notes the sets of records and values it
//!   releases in the question's ledger;
//! - [`released`]: the line above which only released rows exist, which the optimizer may not
//!   move anything across;
//! - [`releases`], around running: the question is refused before it runs if it asks about too
//!   many sets of records or the project has had its budget, and a result about people is
//!   returned only once it is logged.

pub mod released;
pub mod releases;
pub mod values;
