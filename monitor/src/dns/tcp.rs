//! DNS over TCP: the server's byte stream back into messages. Each message
//! is prefixed with its 2-byte length (RFC 1035 4.2.2); the kernel sends the
//! stream one segment at a time, with its sequence number.
//!
//! Loss is tolerated, not repaired: after a gap (a segment missed, or one
//! copied cut short) the partial message is dropped and counted, and the
//! next segment is taken to start a message, which is how servers write
//! (one message per write). A wrong guess decodes as garbage and is counted
//! by the parser.

use std::collections::HashMap;

use monitor_common::FlowKey;

/// Most bytes buffered per stream: one largest message and its prefix.
const MAX_BUFFER: usize = 2 + 65_535;
/// Most bytes buffered over all streams. Any sender can open streams "from
/// port 53" and never finish a message: without this bound 4,096 streams
/// could hold 256 MiB. Real DNS messages over TCP are a few KiB.
pub const MAX_BUFFERED: usize = 4 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Messages put back together.
    pub tcp_messages: u64,
    /// Partial messages dropped at a gap in the stream (loss, or a segment cut short).
    pub tcp_gaps: u64,
    /// Segments (or parts of them) seen before: retransmissions.
    pub tcp_retransmits: u64,
    /// Streams forgotten to stay within the stream bound, or idle.
    pub tcp_streams_dropped: u64,
    /// Partial messages dropped, the largest first, to keep all buffers
    /// within `MAX_BUFFERED`.
    pub tcp_buffers_dropped: u64,
}

struct Stream {
    /// The sequence number the next byte must carry.
    next: u32,
    buf: Vec<u8>,
    last_ns: u64,
}

/// Reassembles the DNS streams of many TCP connections, bounded.
pub struct Reassembler {
    streams: HashMap<(FlowKey, u32), Stream>,
    max_streams: usize,
    /// Bytes held in all streams' buffers.
    buffered: usize,
    pub stats: TcpStats,
}

impl Reassembler {
    pub fn new(max_streams: usize) -> Reassembler {
        Reassembler {
            streams: HashMap::new(),
            max_streams: max_streams.max(1),
            buffered: 0,
            stats: TcpStats::default(),
        }
    }

    /// Takes one segment sent by `sender` on `key`: `data` holds its first
    /// bytes, of `orig_len` it carried. Returns the messages it completes.
    pub fn push(
        &mut self,
        key: FlowKey,
        sender: u32,
        seq: u32,
        data: &[u8],
        orig_len: u32,
        now_ns: u64,
    ) -> Vec<Vec<u8>> {
        if data.is_empty() {
            return Vec::new();
        }
        if !self.streams.contains_key(&(key, sender)) && self.streams.len() >= self.max_streams {
            self.drop_oldest();
        }
        let s = self.streams.entry((key, sender)).or_insert_with(|| Stream {
            next: seq,
            buf: Vec::new(),
            last_ns: now_ns,
        });
        // Memory is what the buffers hold, not what they use: an emptied
        // buffer is freed, and the bound counts capacity.
        let before = s.buf.capacity();
        let out = Self::take(s, &mut self.stats, seq, data, orig_len, now_ns);
        if s.buf.is_empty() {
            s.buf = Vec::new();
        }
        self.buffered = self.buffered + s.buf.capacity() - before;
        while self.buffered > MAX_BUFFERED {
            let Some(largest) = self.streams.values_mut().max_by_key(|s| s.buf.capacity()) else { break };
            self.buffered -= largest.buf.capacity();
            largest.buf = Vec::new();
            self.stats.tcp_buffers_dropped += 1;
        }
        out
    }

    /// Bytes the streams' buffers hold (their capacity).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    fn take(
        s: &mut Stream,
        stats: &mut TcpStats,
        seq: u32,
        data: &[u8],
        orig_len: u32,
        now_ns: u64,
    ) -> Vec<Vec<u8>> {
        s.last_ns = now_ns;
        let ahead = seq.wrapping_sub(s.next) as i32;
        let mut data = data;
        if ahead > 0 {
            // Bytes between were missed: what was buffered cannot complete.
            if !s.buf.is_empty() {
                stats.tcp_gaps += 1;
                s.buf.clear();
            }
            s.next = seq;
        } else if ahead < 0 {
            let old = ahead.unsigned_abs() as usize;
            if old >= orig_len as usize {
                stats.tcp_retransmits += 1;
                return Vec::new();
            }
            if old >= data.len() {
                // The new part of the segment is in its uncopied tail.
                stats.tcp_retransmits += 1;
                stats.tcp_gaps += u64::from(!s.buf.is_empty());
                s.buf.clear();
                s.next = seq.wrapping_add(orig_len);
                return Vec::new();
            }
            data = &data[old..];
        }
        s.buf.extend_from_slice(data);
        let copied_end = s.next.wrapping_add(data.len() as u32);
        let mut out = Vec::new();
        while s.buf.len() >= 2 {
            let len = u16::from_be_bytes([s.buf[0], s.buf[1]]) as usize;
            if s.buf.len() < 2 + len {
                break;
            }
            out.push(s.buf[2..2 + len].to_vec());
            s.buf.drain(..2 + len);
            stats.tcp_messages += 1;
        }
        let full_end = seq.wrapping_add(orig_len);
        if copied_end != full_end {
            // The segment was copied cut short: its tail is a gap.
            stats.tcp_gaps += u64::from(!s.buf.is_empty());
            s.buf.clear();
            s.next = full_end;
        } else {
            s.next = copied_end;
        }
        if s.buf.len() > MAX_BUFFER {
            stats.tcp_gaps += 1;
            s.buf.clear();
        }
        out
    }

    /// Forgets streams idle since `before_ns` (a closed connection leaves no trace).
    pub fn expire(&mut self, before_ns: u64) {
        let n = self.streams.len();
        let buffered = &mut self.buffered;
        self.streams.retain(|_, s| {
            let keep = s.last_ns >= before_ns;
            if !keep {
                *buffered -= s.buf.capacity();
            }
            keep
        });
        self.stats.tcp_streams_dropped += (n - self.streams.len()) as u64;
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    fn drop_oldest(&mut self) {
        if let Some(k) = self.streams.iter().min_by_key(|(_, s)| s.last_ns).map(|(k, _)| *k) {
            if let Some(s) = self.streams.remove(&k) {
                self.buffered -= s.buf.capacity();
            }
            self.stats.tcp_streams_dropped += 1;
        }
    }
}
