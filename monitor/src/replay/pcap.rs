//! Reading capture files (pcap and pcapng) into the flow tracker.
//!
//! Damage to the file itself (a garbage header, a record cut short, a block
//! that does not parse, a link type we cannot decode) stops the replay with
//! an error naming the file, the packet number and the byte offset: a
//! half-read capture would give a verdict on traffic that was never looked
//! at. Damage inside one packet is the tracker's business: it is counted by
//! reason (see [`super::track::Stats`]) and the replay goes on.
//!
//! A regular file is mapped into memory and its records are parsed where
//! they lie: no read copies, no buffer shifts. Pages already replayed are
//! given back to the kernel as the replay goes ([`super::pages`]), so that
//! the process's resident memory does not grow with the capture; several
//! threads can walk one map at once ([`SharedWalk`]). Pipes and other
//! readers go through a growing buffer ([`read`]).

use std::{
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
};

use memmap2::{Advice, Mmap};
use pcap_parser::{
    nom,
    pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header},
    pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock},
    traits::PcapReaderIterator,
    Block, LegacyPcapReader, PcapBlockOwned, PcapError as RawError, PcapNGReader,
};
use thiserror::Error;

use super::{
    pages::{Cursor, Residency},
    track::{LinkKind, Tracker},
};

/// The read buffer starts here and doubles for larger blocks up to
/// [`MAX_BLOCK`]: a pcapng block can be as large as its writer wants.
const INITIAL_BUFFER: usize = 256 << 10;
/// No real capture has records this large (libpcap's largest snaplen is
/// 256 KiB); a larger length field means the file is corrupt.
const MAX_BLOCK: usize = 64 << 20;

/// The first four bytes of a pcapng file (a section header block).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// The first four bytes of a classic pcap file: microsecond, nanosecond
/// (0x4d3c), and Kuznetzov's modified (0x34cd) formats, in either byte order.
const LEGACY_MAGICS: [[u8; 4]; 6] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x34, 0xcd, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xcd, 0x34],
];

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

/// Calls `f` on every packet of the pcap or pcapng file at `path`, in file
/// order: mapped into memory when it is a regular file, read otherwise.
pub fn for_each_packet(path: &Path, f: impl FnMut(&Record<'_>)) -> Result<ReadSummary, PcapError> {
    Capture::open(path)?.for_each_packet(f)
}

/// A capture opened for a replay: mapped into memory when it is a regular
/// file, so that several threads can walk its records at once
/// ([`Capture::shared`]).
pub struct Capture {
    path: PathBuf,
    source: Source,
}

enum Source {
    Mapped(Mmap),
    Stream(File),
}

impl Capture {
    pub fn open(path: &Path) -> Result<Capture, PcapError> {
        let io_err = |source| PcapError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        let source = if !meta.is_file() || meta.len() == 0 {
            Source::Stream(file)
        } else {
            // SAFETY: the map is read-only and private to this capture; a
            // file that another process truncates while it is replayed ends
            // the process (SIGBUS), as it would end a reader that trusted
            // its length.
            let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
            let _ = map.advise(Advice::Sequential);
            Source::Mapped(map)
        };
        Ok(Capture { path: path.to_owned(), source })
    }

    /// Calls `f` on every packet, in file order.
    pub fn for_each_packet(&self, f: impl FnMut(&Record<'_>)) -> Result<ReadSummary, PcapError> {
        match &self.source {
            Source::Mapped(map) => walk_slice(&self.path, map, Residency::new(map, 1).cursor(0), f),
            Source::Stream(file) => read(&self.path, file, f),
        }
    }

    /// The capture walked by `walkers` threads at once, each over every
    /// record; `None` when it is not mapped (a pipe: its bytes can be read
    /// only once).
    pub fn shared(&self, walkers: usize) -> Option<SharedWalk<'_>> {
        match &self.source {
            Source::Mapped(map) => {
                Some(SharedWalk { path: &self.path, map, pages: Residency::new(map, walkers) })
            }
            Source::Stream(_) => None,
        }
    }
}

/// A mapped capture that several threads walk at once, each over every
/// record: the pages are populated once ahead of the fastest walker and
/// dropped behind the slowest, which the others wait for when they get
/// too far ahead (see [`super::pages`]).
pub struct SharedWalk<'c> {
    path: &'c Path,
    map: &'c Mmap,
    pages: Residency<'c>,
}

impl SharedWalk<'_> {
    /// Walker `me` (of the `walkers` of [`Capture::shared`]; each walker
    /// once) calls `f` on every packet, in file order, and gets what
    /// [`Capture::for_each_packet`] would: the same packets, the same
    /// summary or error. A walk that [`SharedWalk::stop`] ended early
    /// returns what it had read.
    pub fn walk(&self, me: usize, f: impl FnMut(&Record<'_>)) -> Result<ReadSummary, PcapError> {
        walk_slice(self.path, self.map, self.pages.cursor(me), f)
    }

    /// Ends every walk soon: the thread that wanted them gave up.
    pub fn stop(&self) {
        self.pages.stop();
    }
}

/// Walks a whole mapped capture, telling `cursor` where the walk is after
/// every record (it maps the pages ahead and drops those behind).
fn walk_slice(
    path: &Path,
    map: &Mmap,
    mut cursor: Cursor<'_, '_>,
    mut f: impl FnMut(&Record<'_>),
) -> Result<ReadSummary, PcapError> {
    let data: &[u8] = map;
    let magic: [u8; 4] = match data.get(..4) {
        Some(m) => m.try_into().expect("four bytes"),
        None => return Err(PcapError::ShortHeader { path: path.to_owned() }),
    };
    let header_err = |e: nom::Err<RawError<&[u8]>>| match e {
        nom::Err::Incomplete(_) => PcapError::ShortHeader { path: path.to_owned() },
        _ => PcapError::NotPcap { path: path.to_owned(), magic: hex(&magic) },
    };
    let summary = |format| ReadSummary { format, ..ReadSummary::default() };
    match magic {
        PCAPNG_MAGIC => {
            if !cursor.reached(0) {
                return Ok(summary(Format::PcapNg));
            }
            parse_sectionheaderblock(data).map_err(header_err)?;
            let mut big_endian = false;
            let parse = |i| ng_block(&mut big_endian, i);
            Walker::new(path, Format::PcapNg).run_slice(data, 0, parse, &mut f, &mut cursor)
        }
        m if LEGACY_MAGICS.contains(&m) => {
            if !cursor.reached(0) {
                return Ok(summary(Format::Pcap));
            }
            let (_, header) = parse_pcap_header(data).map_err(header_err)?;
            let frame: LegacyFrame = if header.is_modified_format() {
                parse_pcap_frame_modified
            } else if header.is_bigendian() {
                parse_pcap_frame_be
            } else {
                parse_pcap_frame
            };
            let (modified, big_endian) = (header.is_modified_format(), header.is_bigendian());
            let mut walker = Walker::new(path, Format::Pcap);
            let at = header.size();
            walker.block(PcapBlockOwned::from(header), &mut f)?;
            walker.offset = at as u64;
            if let Some(link) = walker.legacy.and_then(|i| LinkKind::from_linktype(i.linktype)) {
                if !modified {
                    return walker.run_legacy(data, at, big_endian, link, &mut f, &mut cursor);
                }
            }
            let parse = |i| legacy_block(frame, i);
            walker.run_slice(data, at, parse, &mut f, &mut cursor)
        }
        _ => Err(PcapError::NotPcap { path: path.to_owned(), magic: hex(&magic) }),
    }
}

const PREFETCH_AHEAD: usize = 8 << 10;

/// Software prefetch of every cache line up to [`PREFETCH_AHEAD`] bytes past
/// `at`, from `prefetched` (where the last call stopped) on: the page cache
/// is cold to the CPU, and records of irregular length defeat the hardware
/// prefetcher; read() would have streamed the bytes through the cache in its
/// copy.
#[inline(always)]
fn prefetch_ahead(data: &[u8], at: usize, prefetched: &mut usize) {
    let ahead = (at + PREFETCH_AHEAD).min(data.len());
    while *prefetched < ahead {
        prefetch(data[*prefetched..].as_ptr());
        *prefetched += 64;
    }
}

#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

type Parsed<'d> = nom::IResult<&'d [u8], PcapBlockOwned<'d>, RawError<&'d [u8]>>;

/// One pcapng block, in the byte order of its section (as [`PcapNGReader`] reads them).
fn ng_block<'d>(big_endian: &mut bool, i: &'d [u8]) -> Parsed<'d> {
    let r = if *big_endian { parse_block_be(i) } else { parse_block_le(i) };
    if let Ok((_, Block::SectionHeader(shb))) = &r {
        *big_endian = shb.big_endian();
    }
    r.map(|(rem, b)| (rem, PcapBlockOwned::from(b)))
}

type LegacyFrame = fn(&[u8]) -> nom::IResult<&[u8], pcap_parser::LegacyPcapBlock<'_>, RawError<&[u8]>>;

fn legacy_block(frame: LegacyFrame, i: &[u8]) -> Parsed<'_> {
    frame(i).map(|(rem, b)| (rem, PcapBlockOwned::from(b)))
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
        PCAPNG_MAGIC => {
            let reader = PcapNGReader::new(INITIAL_BUFFER, chained).map_err(header_err)?;
            Walker::new(path, Format::PcapNg).run(reader, &mut f)
        }
        m if LEGACY_MAGICS.contains(&m) => {
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

    /// Walks the blocks of `data` from `at` to its end with `parse` (or
    /// until `cursor` says stop).
    fn run_slice<'d>(
        mut self,
        data: &'d [u8],
        mut at: usize,
        mut parse: impl FnMut(&'d [u8]) -> Parsed<'d>,
        f: &mut impl FnMut(&Record<'_>),
        cursor: &mut Cursor<'_, '_>,
    ) -> Result<ReadSummary, PcapError> {
        let mut prefetched = at;
        while at < data.len() {
            prefetch_ahead(data, at, &mut prefetched);
            let rest = &data[at..];
            match parse(rest) {
                Ok((rem, block)) => {
                    let len = rest.len() - rem.len();
                    self.block(block, f)?;
                    at += len;
                    self.offset += len as u64;
                    if !cursor.reached(at) {
                        break;
                    }
                }
                // The file ends inside a record: the reader path's UnexpectedEof.
                Err(nom::Err::Incomplete(_)) => return Err(self.truncated()),
                Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => return Err(self.raw_error(e)),
            }
        }
        Ok(self.summary)
    }

    /// [`Walker::run_slice`] for the records of a legacy pcap file of a
    /// supported link (16-byte record headers in the byte order of the
    /// file), read without the parser's block types: the same packets, the
    /// same errors, in fewer instructions per packet.
    fn run_legacy(
        mut self,
        data: &[u8],
        mut at: usize,
        big_endian: bool,
        link: LinkKind,
        f: &mut impl FnMut(&Record<'_>),
        cursor: &mut Cursor<'_, '_>,
    ) -> Result<ReadSummary, PcapError> {
        let resolution = self.legacy.expect("the file header was read").resolution;
        let mut prefetched = at;
        while at < data.len() {
            prefetch_ahead(data, at, &mut prefetched);
            let rest = &data[at..];
            let Some(head) = rest.get(..16) else { return Err(self.truncated()) };
            let word = |i: usize| {
                let b = [head[i], head[i + 1], head[i + 2], head[i + 3]];
                if big_endian {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            let (secs, frac, caplen, orig_len) = (word(0), word(4), word(8), word(12));
            let Some(frame) = rest.get(16..16 + caplen as usize) else { return Err(self.truncated()) };
            let ts_ns = scale(secs as u64, frac as u64, resolution);
            self.summary.packets += 1;
            self.summary.first_ts_ns.get_or_insert(ts_ns);
            self.summary.last_ts_ns = Some(ts_ns);
            f(&Record { number: self.summary.packets, ts_ns, link, data: frame, orig_len: orig_len as u64 });
            let len = 16 + frame.len();
            at += len;
            self.offset += len as u64;
            if !cursor.reached(at) {
                break;
            }
        }
        Ok(self.summary)
    }

    /// A parse error of a block that is all there, as the reader path reports it.
    fn raw_error(&self, e: RawError<&[u8]>) -> PcapError {
        match e {
            RawError::NomError(_, kind) | RawError::OwnedNomError(_, kind) => {
                self.malformed(format!("block ({})", kind.description()))
            }
            RawError::HeaderNotRecognized => self.malformed("section header".into()),
            RawError::UnexpectedEof | RawError::Incomplete(_) => self.truncated(),
            RawError::BufferTooSmall => self.malformed(format!("block longer than {} MiB", MAX_BLOCK >> 20)),
            RawError::Eof | RawError::ReadError => self.io_error(),
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
    // The two resolutions of almost every capture without a 128-bit division.
    let frac_ns = match resolution {
        1_000_000 => frac * 1_000,
        1_000_000_000 => frac,
        _ => (frac as u128 * 1_000_000_000 / resolution as u128) as u64,
    };
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}
