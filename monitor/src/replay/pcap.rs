//! Reading capture files (pcap and pcapng) into the flow tracker.
//!
//! Damage to the file itself (a garbage header, a record cut short, a block
//! that does not parse, a link type we cannot decode) stops the replay with
//! an error naming the file, the packet number and the byte offset: a
//! half-read capture would give a verdict on traffic that was never looked
//! at. Damage inside one packet is the tracker's business: it is counted by
//! reason (see [`super::track::Stats`]) and the replay goes on.

use std::{
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
};

use pcap_parser::{
    traits::PcapReaderIterator, Block, LegacyPcapReader, PcapBlockOwned, PcapError as RawError, PcapNGReader,
};
use thiserror::Error;

use super::track::{LinkKind, Tracker};

/// The read buffer starts here and doubles for larger blocks up to
/// [`MAX_BLOCK`]: a pcapng block can be as large as its writer wants.
const INITIAL_BUFFER: usize = 256 << 10;
/// No real capture has records this large (libpcap's largest snaplen is
/// 256 KiB); a larger length field means the file is corrupt.
const MAX_BLOCK: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum PcapError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: not a pcap or pcapng file (the first bytes are {magic}): \
         give a capture written by tcpdump -w, dumpcap or tshark -w, not a text dump"
    )]
    NotPcap { path: PathBuf, magic: String },
    #[error("{path}: the file ends inside the capture header: it is empty or was cut short")]
    ShortHeader { path: PathBuf },
    #[error(
        "{path}: packet {packet} at byte offset {offset} is cut short by the end of the file: \
         the capture was interrupted; drop the last record (editcap -r {path} fixed.pcap 1-{last}) \
         or capture again"
    , last = .packet.saturating_sub(1))]
    Truncated { path: PathBuf, packet: u64, offset: u64 },
    #[error(
        "{path}: packet {packet} at byte offset {offset}: malformed {what}: \
         the file is corrupt from here on; check it with `capinfos` or capture again"
    )]
    Malformed { path: PathBuf, packet: u64, offset: u64, what: String },
    #[error(
        "{path}: packet {packet} at byte offset {offset}: link type {linktype} is not supported \
         (supported: Ethernet 1, Linux cooked 113 and 276, raw IP 101, 228, 229): \
         capture on an Ethernet interface or with `tcpdump -i any`"
    )]
    UnsupportedLink { path: PathBuf, packet: u64, offset: u64, linktype: i32 },
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Record<'a> {
    /// 1-based packet number, as Wireshark numbers frames.
    pub number: u64,
    /// Capture timestamp, Unix-epoch nanoseconds.
    pub ts_ns: u64,
    pub link: LinkKind,
    pub data: &'a [u8],
    /// Length on the wire; larger than `data` when the snaplen cut it.
    pub orig_len: u64,
}

/// What a replay read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub packets: u64,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    pub format: Format,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Pcap,
    PcapNg,
}

/// An interface of a pcapng section: its link and timestamp scale.
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    resolution: u64,
    offset_s: i64,
}

/// Reads every packet of `path` and feeds it to `tracker`.
pub fn replay(path: &Path, tracker: &mut Tracker) -> Result<ReadSummary, PcapError> {
    for_each_packet(path, |r| tracker.push_captured(r.ts_ns, r.link, r.data, r.orig_len))
}

/// Calls `f` on every packet of the pcap or pcapng file at `path`, in file order.
pub fn for_each_packet(path: &Path, f: impl FnMut(&Record<'_>)) -> Result<ReadSummary, PcapError> {
    let file = File::open(path).map_err(|source| PcapError::Io { path: path.to_owned(), source })?;
    read(path, file, f)
}

/// Like [`for_each_packet`], from any reader; `path` only names it in errors.
pub fn read(
    path: &Path,
    mut input: impl Read,
    mut f: impl FnMut(&Record<'_>),
) -> Result<ReadSummary, PcapError> {
    let io_err = |source| PcapError::Io { path: path.to_owned(), source };
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut magic[got..]) {
            Ok(0) => return Err(PcapError::ShortHeader { path: path.to_owned() }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let chained = FillingReader(io::Cursor::new(magic).chain(input));
    let header_err = |e: RawError<&[u8]>| match e {
        RawError::Incomplete(_) | RawError::UnexpectedEof | RawError::Eof => {
            PcapError::ShortHeader { path: path.to_owned() }
        }
        _ => PcapError::NotPcap { path: path.to_owned(), magic: hex(&magic) },
    };
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let reader = PcapNGReader::new(INITIAL_BUFFER, chained).map_err(header_err)?;
            Walker::new(path, Format::PcapNg).run(reader, &mut f)
        }
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x34, 0xcd, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xcd, 0x34] => {
            let reader = LegacyPcapReader::new(INITIAL_BUFFER, chained).map_err(header_err)?;
            Walker::new(path, Format::Pcap).run(reader, &mut f)
        }
        _ => Err(PcapError::NotPcap { path: path.to_owned(), magic: hex(&magic) }),
    }
}

/// Fills every read as far as the input allows: the parsers read the file
/// header with a single `read` call and take a short one for a short file.
struct FillingReader<R>(R);

impl<R: Read> Read for FillingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Walks the blocks of either format, keeping what the packets need to be
/// decoded (link type, timestamp scale) and where in the file we are.
struct Walker<'p> {
    path: &'p Path,
    summary: ReadSummary,
    /// Byte offset of the block being read.
    offset: u64,
    /// Legacy pcap: the file's link type and timestamp resolution.
    legacy: Option<Interface>,
    /// pcapng: the interfaces of the current section.
    interfaces: Vec<Interface>,
}

impl<'p> Walker<'p> {
    fn new(path: &'p Path, format: Format) -> Walker<'p> {
        Walker {
            path,
            summary: ReadSummary { format, ..ReadSummary::default() },
            offset: 0,
            legacy: None,
            interfaces: Vec::new(),
        }
    }

    fn run(
        mut self,
        mut reader: impl PcapReaderIterator,
        f: &mut impl FnMut(&Record<'_>),
    ) -> Result<ReadSummary, PcapError> {
        let mut capacity = INITIAL_BUFFER;
        loop {
            match reader.next() {
                Ok((len, block)) => {
                    self.block(block, f)?;
                    self.offset += len as u64;
                    reader.consume(len);
                }
                Err(RawError::Eof) => return Ok(self.summary),
                Err(RawError::Incomplete(_)) => {
                    reader.refill().map_err(|_| self.io_error())?;
                }
                Err(RawError::BufferTooSmall) => {
                    if capacity >= MAX_BLOCK {
                        return Err(self.malformed(format!("block longer than {} MiB", MAX_BLOCK >> 20)));
                    }
                    capacity *= 2;
                    reader.grow(capacity);
                    reader.refill().map_err(|_| self.io_error())?;
                }
                Err(RawError::UnexpectedEof) => return Err(self.truncated()),
                Err(RawError::ReadError) => return Err(self.io_error()),
                Err(RawError::NomError(_, kind)) | Err(RawError::OwnedNomError(_, kind)) => {
                    return Err(self.malformed(format!("block ({})", kind.description())));
                }
                Err(RawError::HeaderNotRecognized) => return Err(self.malformed("section header".into())),
            }
        }
    }

    fn next_number(&self) -> u64 {
        self.summary.packets + 1
    }

    fn truncated(&self) -> PcapError {
        PcapError::Truncated { path: self.path.to_owned(), packet: self.next_number(), offset: self.offset }
    }

    fn malformed(&self, what: String) -> PcapError {
        PcapError::Malformed {
            path: self.path.to_owned(),
            packet: self.next_number(),
            offset: self.offset,
            what,
        }
    }

    fn io_error(&self) -> PcapError {
        PcapError::Io { path: self.path.to_owned(), source: io::Error::other("read failed") }
    }

    fn block(&mut self, block: PcapBlockOwned<'_>, f: &mut impl FnMut(&Record<'_>)) -> Result<(), PcapError> {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                let resolution = if h.is_nanosecond_precision() { 1_000_000_000 } else { 1_000_000 };
                self.legacy = Some(Interface { linktype: h.network.0, resolution, offset_s: 0 });
            }
            PcapBlockOwned::Legacy(b) => {
                let iface =
                    self.legacy.ok_or_else(|| self.malformed("record before the file header".into()))?;
                let ts = scale(b.ts_sec as u64, b.ts_usec as u64, iface.resolution);
                self.packet(iface, ts, b.data, b.origlen, f)?;
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => self.interfaces.clear(),
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                let resolution = idb.ts_resolution().ok_or_else(|| {
                    self.malformed(format!("interface description (if_tsresol {})", idb.if_tsresol))
                })?;
                self.interfaces.push(Interface {
                    linktype: idb.linktype.0,
                    resolution,
                    offset_s: idb.ts_offset(),
                });
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let iface = *self.interfaces.get(epb.if_id as usize).ok_or_else(|| {
                    self.malformed(format!(
                        "packet block for interface {} that was never described",
                        epb.if_id
                    ))
                })?;
                let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let ts = scale(raw / iface.resolution, raw % iface.resolution, iface.resolution);
                let ts = ts.saturating_add_signed(iface.offset_s.saturating_mul(1_000_000_000));
                self.packet(iface, ts, epb.data, epb.origlen, f)?;
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                // No timestamp: the packet is placed at the previous one's time.
                let iface = *self
                    .interfaces
                    .first()
                    .ok_or_else(|| self.malformed("simple packet block before any interface".into()))?;
                let ts = self.summary.last_ts_ns.unwrap_or(0);
                let data = &spb.data[..spb.data.len().min(spb.origlen as usize)];
                self.packet(iface, ts, data, spb.origlen, f)?;
            }
            // Statistics, name resolution, comments, custom blocks: nothing to replay.
            PcapBlockOwned::NG(_) => {}
        }
        Ok(())
    }

    fn packet(
        &mut self,
        iface: Interface,
        ts_ns: u64,
        data: &[u8],
        orig_len: u32,
        f: &mut impl FnMut(&Record<'_>),
    ) -> Result<(), PcapError> {
        let link = LinkKind::from_linktype(iface.linktype).ok_or_else(|| PcapError::UnsupportedLink {
            path: self.path.to_owned(),
            packet: self.next_number(),
            offset: self.offset,
            linktype: iface.linktype,
        })?;
        self.summary.packets += 1;
        self.summary.first_ts_ns.get_or_insert(ts_ns);
        self.summary.last_ts_ns = Some(ts_ns);
        f(&Record { number: self.summary.packets, ts_ns, link, data, orig_len: orig_len as u64 });
        Ok(())
    }
}

/// Seconds and a fraction in `resolution` units per second, to nanoseconds.
fn scale(secs: u64, frac: u64, resolution: u64) -> u64 {
    let frac_ns = (frac as u128 * 1_000_000_000 / resolution as u128) as u64;
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}
