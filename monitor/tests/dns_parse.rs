//! DNS answers as dnsmasq sent them (tests/fixtures/dns, see its README):
//! query names, CNAME chains, TTLs, negative answers, and messages cut
//! short as the kernel copies them.

use std::net::IpAddr;

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{rdata::A, Name, RData, Record, RecordType},
};
use monitor::dns::parse::{parse, Binding, Parsed};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/dns/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bindings(payload: &[u8]) -> (Vec<Binding>, bool) {
    match parse(payload).expect("decodes") {
        Parsed::Answer { bindings, cut } => (bindings, cut),
        other => panic!("want an answer, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_cname_chain_binds_the_address_to_every_name_with_the_smallest_ttl() {
    let (b, cut) = bindings(&fixture("graph_a.bin"));
    assert!(!cut);
    assert_eq!(
        b,
        vec![Binding {
            addr: ip("203.0.113.21"),
            names: vec![
                "graph.microsoft.com".into(),
                "graph.ms-acdc.example.net".into(),
                "edge.graph.example.net".into()
            ],
            ttl: 30,
        }]
    );
}

#[test]
fn a_and_aaaa_answers_bind_the_query_name() {
    let (a, _) = bindings(&fixture("lvs_a.bin"));
    assert_eq!(
        a,
        vec![Binding { addr: ip("203.0.113.10"), names: vec!["lvs.ravenphyre.net".into()], ttl: 300 }]
    );
    let (aaaa, _) = bindings(&fixture("lvs_aaaa.bin"));
    assert_eq!(aaaa[0].addr, ip("2001:db8::10"));
    assert_eq!(aaaa[0].names, vec!["lvs.ravenphyre.net".to_string()]);
}

#[test]
fn an_error_response_binds_nothing() {
    assert_eq!(parse(&fixture("refused.bin")).unwrap(), Parsed::Negative(ResponseCode::Refused));
}

#[test]
fn a_query_is_not_an_answer_and_garbage_is_an_error() {
    let mut query = fixture("lvs_a.bin");
    query[2] &= 0x7f; // clear QR: a query
    assert_eq!(parse(&query).unwrap(), Parsed::NotAnswer);
    assert!(parse(&[0x12, 0x34, 0x81]).is_err(), "a 3-byte header must not decode");
}

#[test]
fn the_tcp_fixture_is_the_same_answer_behind_a_length_prefix() {
    let stream = fixture("graph_a_tcp.bin");
    let len = u16::from_be_bytes([stream[0], stream[1]]) as usize;
    assert_eq!(len + 2, stream.len());
    let (b, _) = bindings(&stream[2..]);
    assert_eq!(b[0].addr, ip("203.0.113.21"));
    assert_eq!(b[0].names.len(), 3);
}

/// An answer with `n` A records for `name`, each with TTL 60.
fn many_a(name: &str, n: u8) -> Vec<u8> {
    let qname = Name::from_ascii(name).unwrap();
    let mut m = Message::new(7, MessageType::Response, OpCode::Query);
    m.queries.push(Query::query(qname.clone(), RecordType::A));
    for i in 0..n {
        m.answers.push(Record::from_rdata(qname.clone(), 60, RData::A(A::new(192, 0, 2, i))));
    }
    m.to_vec().unwrap()
}

#[test]
fn a_message_cut_short_keeps_the_records_before_the_cut() {
    let full = many_a("api.example.com.", 10);
    let (all, cut) = bindings(&full);
    assert_eq!((all.len(), cut), (10, false));
    // Each A record is 16 bytes (compressed name, type, class, TTL, length, 4 bytes).
    let cut_msg = &full[..full.len() - 16 - 5];
    let (some, cut) = bindings(cut_msg);
    assert!(cut, "the cut must be reported");
    assert_eq!(some.len(), 8, "records before the cut are kept, the one it splits is not");
    assert_eq!(some[7].addr, ip("192.0.2.7"));
}

#[test]
fn records_no_query_leads_to_bind_nothing_and_cname_loops_end() {
    let q = Name::from_ascii("a.example.com.").unwrap();
    let b = Name::from_ascii("b.example.com.").unwrap();
    let mut m = Message::new(9, MessageType::Response, OpCode::Query);
    m.queries.push(Query::query(q.clone(), RecordType::A));
    m.answers.push(Record::from_rdata(
        q.clone(),
        60,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(b.clone())),
    ));
    m.answers.push(Record::from_rdata(
        b.clone(),
        60,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(q.clone())),
    ));
    let other = Name::from_ascii("unrelated.example.org.").unwrap();
    m.answers.push(Record::from_rdata(other, 60, RData::A(A::new(192, 0, 2, 99))));
    let (bound, _) = bindings(&m.to_vec().unwrap());
    assert_eq!(bound, vec![], "a loop binds nothing, and neither does an unasked name");
}
