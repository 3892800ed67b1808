//! The node protocol shared by trust nodes and the coordinator: the fragment request carried in a
//! `DoGet` ticket, and the client that sends it.

pub mod client;
pub mod fragment;
