//! The host firewall against the matrix: `audit` reads a loaded nftables
//! ruleset back and evaluates it for the host's documented paths.

pub mod audit;
