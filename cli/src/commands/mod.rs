//! One module per `tessera` subcommand.

pub mod ask;
pub mod audit;
pub mod budget;
pub mod certs;
pub mod demo;
pub mod gen;
pub mod node;
pub mod query;
pub mod serve;
pub mod service;
pub mod user;
