//! `monitor probe`: try every documented path whose source includes one
//! host, from that host, and say for each whether it is open (docs/firewall.md, "Probe").
//!
//! [`plan`] turns the host's outbound paths into probes (and the paths it
//! will not probe, with the reason); [`prober`] sends them within a rate
//! and a concurrency and classifies what comes back; [`report`] renders
//! the outcome per path as text or JSON.

pub mod plan;
pub mod prober;
pub mod report;
