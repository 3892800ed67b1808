//! End-to-end tests: real nodes on real ports, queried over Arrow Flight.

mod access;
mod attacks;
mod audit_log;
mod cell_model;
mod cell_selection;
mod coordinator;
mod dashboard;
mod disclosure;
mod dominance;
mod exactness;
mod faults;
mod federation;
mod flight_sql;
mod hostile_input;
mod limits;
mod node_battery;
mod node_startup;
mod noise_reported;
mod operations;
mod perturbation;
mod privacy;
mod private_costs;
mod private_statistics;
mod serve;
mod statements;
mod units;

/// The demo's tour, from the file the demo asks it from.
#[path = "../../cli/src/commands/demo/tour.rs"]
mod tour;
