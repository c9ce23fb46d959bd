//! A classic pcap (microsecond timestamps, Ethernet) written in memory, for
//! the tests that generate their captures (`mod pcap_writer;` in each).

/// The file so far: the global header, then one record per [`Pcap::record`].
pub struct Pcap {
    bytes: Vec<u8>,
    /// Unix time of the capture's start, in microseconds.
    base_usec: u64,
}

impl Pcap {
    pub fn new(base_usec: u64) -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&65535u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        Pcap { bytes, base_usec }
    }

    /// One whole frame, `usec` after the start.
    pub fn record(&mut self, usec: u64, frame: &[u8]) {
        let t = self.base_usec + usec;
        self.bytes.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
        self.bytes.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(frame);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
