//! `monitor learn`: matrix rules proposed for the undocumented flows seen,
//! in the matrix's own terms, so that a reviewer reads `rppam -> database
//! 5432/tcp` and not three addresses.
//!
//! The core ([`propose`]) takes a list of [`Observed`] flows, whatever
//! their source: [`capture`] judges pcaps with
//! [`crate::replay::judge::judge_capture`] and keeps the `unexpected`
//! ones; [`agent`] reads the `unexpected` findings of a running agent. It names each side
//! with [`cover`], folds the server ports ([`ports`]), and writes what it
//! proposes as matrix YAML ([`render`]) or into the matrix file itself,
//! keeping its text and comments ([`merge`]). Every proposed rule carries
//! a `learnt:` field with its evidence (flows, clients, servers, first and
//! last seen, window): docs/learn.md.

pub mod agent;
pub mod capture;
pub mod cover;
pub mod merge;
pub mod ports;
pub mod propose;
pub mod render;

use std::{net::IpAddr, time::SystemTime};

use crate::flow::{Flow, FlowState, Proto};
pub use propose::{propose, Evidence, Learnt, NewPlacement, NewService, Options, Proposal};

/// One undocumented flow (or several alike), oriented client -> server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub client: IpAddr,
    pub server: IpAddr,
    /// The server's port (0 for ICMP): the port a rule documents. The
    /// client's port is ephemeral and never proposed.
    pub port: u16,
    pub proto: Proto,
    /// How many flows this stands for.
    pub flows: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

/// Why a flow is not used to propose a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unused {
    /// The connection attempt failed (refused, unanswered, ICMP-rejected):
    /// nothing shows that the path is meant to work.
    Failed,
    /// Its start was not seen and no listening socket said which end is the
    /// server: the "server port" may be the client's ephemeral port.
    Guessed,
}

impl Observed {
    /// The observation of one flow, or why it cannot be one.
    pub fn from_flow(flow: &Flow) -> Result<Observed, Unused> {
        let sides_known = flow.initiator_seen || flow.initiator_how == "listening-port";
        usable(flow.proto, flow.state, sides_known)?;
        Ok(Observed {
            client: flow.client.ip.to_canonical(),
            server: flow.server.ip.to_canonical(),
            port: server_port(flow.proto, flow.server.port),
            proto: flow.proto,
            flows: 1,
            first_seen: flow.first_seen,
            last_seen: flow.last_seen,
        })
    }
}

/// The port a rule for a flow of `proto` to `port` documents: ICMP has
/// none (its "port" is an echo id or a type).
pub fn server_port(proto: Proto, port: u16) -> u16 {
    match proto {
        Proto::Tcp | Proto::Udp => port,
        Proto::Icmp | Proto::Icmpv6 => 0,
    }
}

/// Whether a flow of `proto` that came to `state` can stand for a rule:
/// its client and server known (`sides_known`: its start seen, or a
/// listening socket named the server), and the attempt not failed.
pub fn usable(proto: Proto, state: FlowState, sides_known: bool) -> Result<(), Unused> {
    if !sides_known {
        return Err(Unused::Guessed);
    }
    let failed = match proto {
        Proto::Tcp => state.is_failure() || state == FlowState::Awaiting,
        // A datagram without an answer proves nothing (syslog never
        // answers); an ICMP error does.
        _ => state == FlowState::IcmpUnreachable,
    };
    if failed {
        return Err(Unused::Failed);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
