//! End-to-end tests: real nodes on real ports, queried over Arrow Flight.

mod attacks;
mod audit_log;
mod cell_model;
mod coordinator;
mod disclosure;
mod dominance;
mod exactness;
mod federation;
mod flight_sql;
mod node_battery;
mod node_startup;
mod perturbation;
mod units;
