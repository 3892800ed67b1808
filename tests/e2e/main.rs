//! End-to-end tests: real nodes on real ports, queried over Arrow Flight.

mod node_battery;
