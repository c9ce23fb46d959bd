//! Helpers shared by the integration tests (`mod common;` in each).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use monitor::{
    alert::{Alert, Kind, Names},
    flow::{addr_key, EpochClock, Flow, NoHint},
};
use monitor_common::{initiator_how, proto, side, tcp_flag, FlowKey, FlowValue, DIR_A_TO_B};

/// Alert number `i` of `kind`: an unanswered SYN 10.200.2.50:(40000+i) ->
/// 10.200.1.20:5432, so its client port says which one it is.
pub fn alert(i: u16, kind: Kind) -> Alert {
    let (key, dir) = FlowKey::canonical(
        addr_key(IpAddr::V4(Ipv4Addr::new(10, 200, 2, 50))),
        40_000 + i,
        addr_key(IpAddr::V4(Ipv4Addr::new(10, 200, 1, 20))),
        5432,
        proto::TCP,
    );
    let t0 = 1_775_469_600_000_000_000;
    let mut v = FlowValue {
        first_seen_ns: t0,
        last_seen_ns: t0 + 1_000_000,
        initiator: if dir == DIR_A_TO_B { side::A } else { side::B },
        initiator_how: initiator_how::TCP_SYN,
        ..FlowValue::default()
    };
    v.packets[dir] = 3;
    v.bytes[dir] = 180;
    v.tcp_flags[dir] = tcp_flag::SYN;
    let flow = Flow::from_entry(&key, &v, &EpochClock { now_ns: t0 }, &NoHint, Duration::from_secs(3))
        .expect("a TCP flow");
    Alert::new(kind, &flow, Names::default(), Names::default(), None, format!("test alert {i}"))
}
