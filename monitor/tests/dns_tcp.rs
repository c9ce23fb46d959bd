//! DNS over TCP: the server's stream cut into segments, put back into
//! messages, across retransmissions, loss and segments copied cut short.

use monitor::dns::Reassembler;
use monitor_common::{proto, FlowKey};

fn key() -> FlowKey {
    FlowKey::canonical([1; 16], 53, [2; 16], 40000, proto::TCP).0
}

/// Two DNS messages, length-prefixed, as one stream.
fn stream(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    for m in [a, b] {
        s.extend_from_slice(&(m.len() as u16).to_be_bytes());
        s.extend_from_slice(m);
    }
    s
}

const ISN: u32 = 0xffff_fff0; // wraps within the stream

#[test]
fn segments_in_order_give_each_message_once() {
    let (a, b) = (vec![0xa; 40], vec![0xb; 30]);
    let s = stream(&a, &b);
    let mut r = Reassembler::new(16);
    let mut got = Vec::new();
    for (i, chunk) in s.chunks(7).enumerate() {
        let seq = ISN.wrapping_add((i * 7) as u32);
        got.extend(r.push(key(), 1, seq, chunk, chunk.len() as u32, 0));
    }
    assert_eq!(got, vec![a, b]);
    assert_eq!((r.stats.tcp_messages, r.stats.tcp_gaps), (2, 0));
}

#[test]
fn retransmissions_and_overlaps_are_skipped() {
    let (a, b) = (vec![0xa; 40], vec![0xb; 30]);
    let s = stream(&a, &b);
    let mut r = Reassembler::new(16);
    let mut got = r.push(key(), 1, ISN, &s[..20], 20, 0);
    got.extend(r.push(key(), 1, ISN, &s[..20], 20, 0)); // the same again
    got.extend(r.push(key(), 1, ISN.wrapping_add(10), &s[10..50], 40, 0)); // overlaps 10
    got.extend(r.push(key(), 1, ISN.wrapping_add(50), &s[50..], (s.len() - 50) as u32, 0));
    assert_eq!(got, vec![a, b]);
    assert_eq!(r.stats.tcp_retransmits, 1);
}

#[test]
fn a_lost_segment_drops_the_partial_message_and_the_next_one_resyncs() {
    let (a, b) = (vec![0xa; 40], vec![0xb; 30]);
    let s = stream(&a, &b);
    let mut r = Reassembler::new(16);
    let mut got = r.push(key(), 1, ISN, &s[..20], 20, 0);
    // s[20..42] is lost; the next segment starts the second message.
    got.extend(r.push(key(), 1, ISN.wrapping_add(42), &s[42..], (s.len() - 42) as u32, 0));
    assert_eq!(got, vec![b]);
    assert_eq!(r.stats.tcp_gaps, 1);
}

#[test]
fn a_segment_copied_cut_short_yields_what_completed_before_the_cut() {
    let (a, b) = (vec![0xa; 40], vec![0xb; 30]);
    let s = stream(&a, &b);
    let mut r = Reassembler::new(16);
    // The whole stream in one segment, of which only 60 bytes were copied.
    let got = r.push(key(), 1, ISN, &s[..60], s.len() as u32, 0);
    assert_eq!(got, vec![a], "the first message is whole, the second is cut");
    assert_eq!(r.stats.tcp_gaps, 1);
    // The stream goes on after the cut segment.
    let c = vec![0xc; 5];
    let mut next = (c.len() as u16).to_be_bytes().to_vec();
    next.extend_from_slice(&c);
    let got = r.push(key(), 1, ISN.wrapping_add(s.len() as u32), &next, next.len() as u32, 0);
    assert_eq!(got, vec![c]);
}

#[test]
fn streams_are_bounded_and_expire() {
    let mut r = Reassembler::new(2);
    for port in 0..3u16 {
        let k = FlowKey::canonical([1; 16], 53, [2; 16], 40000 + port, proto::TCP).0;
        assert!(r.push(k, 1, 0, &[0, 9, 1], 3, u64::from(port)).is_empty());
    }
    assert_eq!((r.len(), r.stats.tcp_streams_dropped), (2, 1));
    r.expire(10);
    assert!(r.is_empty());
}

#[test]
fn unfinished_streams_stay_within_the_buffer_bound_and_a_real_message_still_completes() {
    use monitor::dns::tcp::MAX_BUFFERED;
    // Streams "from port 53" that announce a 65,535-byte message and never
    // finish it: 4,096 of them could hold 256 MiB without the bound.
    let mut r = Reassembler::new(4096);
    let seg = vec![0x5a; 1200];
    let mut most = 0;
    for port in 0..4096u16 {
        let k = FlowKey::canonical([1; 16], 53, [3; 16], 10_000 + port, proto::TCP).0;
        let mut first = vec![0xff, 0xff];
        first.extend_from_slice(&seg[2..]);
        r.push(k, 1, 0, &first, first.len() as u32, u64::from(port));
        for i in 1..20u32 {
            r.push(k, 1, i * 1200, &seg, 1200, u64::from(port));
            most = most.max(r.buffered());
        }
    }
    assert!(most <= MAX_BUFFERED, "buffers held {most} bytes, over {MAX_BUFFERED}");
    assert!(r.stats.tcp_buffers_dropped > 0);
    // A real answer, cut in two segments, still comes through.
    let msg = vec![0xab; 300];
    let s = stream(&msg, &[]);
    let k = key();
    let mut got = r.push(k, 1, ISN, &s[..100], 100, 5000);
    got.extend(r.push(k, 1, ISN.wrapping_add(100), &s[100..302], 202, 5000));
    assert_eq!(got, vec![msg]);
}

#[test]
fn an_emptied_buffer_is_freed() {
    let mut r = Reassembler::new(16);
    let big = vec![0x11; 60_000];
    let s = stream(&big, &[]);
    for (i, chunk) in s[..60_002].chunks(1200).enumerate() {
        r.push(key(), 1, (i * 1200) as u32, chunk, chunk.len() as u32, 0);
    }
    assert_eq!(r.buffered(), 0, "the message completed; its buffer is returned");
}
