//! The live monitor: kernel flows to verdicts to alerts (`monitor run`),
//! with de-duplication, coverage, the control socket and the outputs.

pub mod agent;
pub mod control;
pub mod coverage;
pub mod dedup;
pub mod judge;
pub mod metrics;
pub mod pipeline;
pub mod serve;
pub mod sink;
pub mod state;
pub mod tally;
pub mod throttle;
pub mod webhook;

pub use agent::{run, run_to_end, Finished, RunOptions};
