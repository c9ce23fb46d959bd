//! The monitor's library: everything the `monitor` binary does, so that tests
//! and benchmarks drive the same code.

pub mod alert;
pub mod cli;
pub mod cmd;
pub mod counters;
pub mod dns;
pub mod engine;
pub mod falco;
pub mod firewall;
pub mod fleet;
pub mod flow;
pub mod graph;
pub mod host_paths;
pub mod import;
pub mod inventory;
pub mod kernel;
pub mod learn;
pub mod live;
pub mod matrix;
pub mod ocsf;
pub mod probe;
pub mod replay;
pub mod report;
pub mod siem;
pub mod top;
pub mod verdict;
pub mod yaml_limits;
