//! The fleet: every node's agent, as the engines that watch many nodes see
//! it. The monitor builds no aggregator of its own; Prometheus scrapes each
//! agent and Alertmanager routes what the fleet rules find
//! (docs/fleet.md). This module gives those engines what they need from
//! the files the monitor already reads: [`targets`] turns the inventory
//! that places the services into the list of agents to scrape; and it reads
//! back what they gathered: [`report`] is the whole cluster's conformance
//! over a window, from Prometheus's HTTP API ([`prometheus`]).

pub mod prometheus;
pub mod report;
pub mod targets;
