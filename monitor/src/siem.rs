//! What the alert encodings for other engines ([`crate::ocsf`] for SIEMs,
//! [`crate::falco`] for falcosidekick) share: the agent that reports, and how
//! severe each finding is. One ladder for both, so that an alert routed
//! through falcosidekick into a SIEM lands at the severity the OCSF encoding
//! gives it directly (falcosidekick maps Falco priorities to OCSF severities
//! as Notice → Low, Warning → Medium, Error → High; [`Severity::falco`] is
//! the inverse).

use crate::{
    alert::{Alert, Kind},
    flow::FlowState,
};

/// The agent that emits the alert: its node's name goes into OCSF
/// `device.hostname` and Falco `hostname`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reporter {
    /// The node name (`--node`, by default the host name).
    pub hostname: String,
}

impl Reporter {
    pub fn new(hostname: impl Into<String>) -> Reporter {
        Reporter { hostname: hostname.into() }
    }

    /// This host, by its name (`/proc/sys/kernel/hostname`; a DaemonSet pod
    /// on the host network has the node's). `localhost` when unreadable.
    pub fn local() -> Reporter {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name = name.trim();
        Reporter::new(if name.is_empty() { "localhost" } else { name })
    }
}

/// How urgent a finding is, on OCSF's scale (`severity_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// An undocumented attempt that got nowhere: refused, dropped, rejected
    /// or still awaiting its answer. Scans and stray clients; worth a look,
    /// no path is open.
    Low,
    /// A documented path that fails (the product breaks there), an
    /// undocumented connection that works (the matrix is incomplete, or
    /// something talks that should not), or the de-duplication budget is full
    /// (findings are no longer reported one by one).
    Medium,
    /// A port that must stay internal answered a client outside its rule: an
    /// open path the vendor says must not exist.
    High,
}

impl Severity {
    /// The severity of a finding, from its kind and, for `unexpected`,
    /// whether the flow worked.
    pub fn of(alert: &Alert) -> Severity {
        match alert.kind {
            Kind::Exposed => Severity::High,
            Kind::Blocked | Kind::Overflow => Severity::Medium,
            Kind::Unexpected if worked(alert.state) => Severity::Medium,
            Kind::Unexpected => Severity::Low,
        }
    }

    /// OCSF `severity_id`.
    pub fn ocsf_id(self) -> u8 {
        match self {
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
        }
    }

    /// OCSF `severity`, the caption of the id.
    pub fn ocsf_name(self) -> &'static str {
        match self {
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
        }
    }

    /// Falco's priority word (Emergency, Alert, Critical, Error, Warning,
    /// Notice, Informational, Debug).
    pub fn falco(self) -> &'static str {
        match self {
            Severity::Low => "Notice",
            Severity::Medium => "Warning",
            Severity::High => "Error",
        }
    }
}

/// Whether the flow carried traffic both ways: a handshake or an answer.
pub fn worked(state: FlowState) -> bool {
    matches!(state, FlowState::Established | FlowState::Closed | FlowState::Answered)
}
