//! `monitor check --threads N` prints what `--threads 1` prints, byte for
//! byte: on the example captures, and on a generated one long enough for
//! flows to expire and keys to be reused, with DNS answers that bind a
//! matrix name between flows and ICMP errors from a router; as pcap and
//! pcapng, from a file (every shard walks the map) and from a pipe (one
//! reader hands the shards their packets); whole, cut short or corrupt.

mod pcap_writer;

use pcap_writer::Pcap;
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use etherparse::{icmpv4::DestUnreachableHeader, Icmpv4Type, PacketBuilder};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam")
}

/// How `monitor check` gets the capture.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Input {
    /// `--pcap FILE`: mapped.
    File,
    /// `--pcap /dev/stdin` with the file as stdin: still a regular file, mapped.
    StdinFile,
    /// `--pcap /dev/stdin` from a pipe: read, no map.
    Pipe,
}

/// Status, stdout and stderr of `monitor check` on the RP-PAM example
/// (`--profile ha --profile entra`).
fn run(pcap: &Path, format: &str, threads: u32, input: Input) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let e = example();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor"));
    cmd.arg("check")
        .arg("--matrix")
        .arg(e.join("matrix.yaml"))
        .arg("--inventory")
        .arg(e.join("inventory.ini"))
        .args(["--profile", "ha", "--profile", "entra", "--format", format, "--threads"])
        .arg(threads.to_string())
        .arg("--pcap")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match input {
        Input::File => {
            cmd.arg(pcap);
        }
        Input::StdinFile => {
            cmd.arg("/dev/stdin").stdin(Stdio::from(std::fs::File::open(pcap).unwrap()));
        }
        Input::Pipe => {
            cmd.arg("/dev/stdin").stdin(Stdio::piped());
        }
    }
    let mut child = cmd.spawn().unwrap();
    let writer = child.stdin.take().map(|mut stdin| {
        let bytes = std::fs::read(pcap).unwrap();
        // The child may stop reading early (a damaged capture): a broken pipe is no failure.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        w.join().unwrap();
    }
    (out.status.code(), out.stdout, out.stderr)
}

/// Status and stdout of a run that must succeed (findings or none).
fn check(pcap: &Path, format: &str, threads: u32, input: Input) -> (Option<i32>, Vec<u8>) {
    let (code, stdout, stderr) = run(pcap, format, threads, input);
    assert!(matches!(code, Some(0 | 1)), "{}", String::from_utf8_lossy(&stderr));
    (code, stdout)
}

fn assert_same_for_any_threads(pcap: &Path) {
    for format in ["json", "text"] {
        for (threads, input) in [(2, Input::File), (4, Input::File), (3, Input::StdinFile), (2, Input::Pipe)]
        {
            // The summary names the capture: a pipe's run against a pipe's.
            let one = check(pcap, format, 1, input);
            assert!(!one.1.is_empty());
            let many = check(pcap, format, threads, input);
            assert!(
                one == many,
                "{} --format {format}: --threads {threads} ({input:?}) differs from --threads 1:\n{}\n---\n{}",
                pcap.display(),
                String::from_utf8_lossy(&one.1),
                String::from_utf8_lossy(&many.1)
            );
        }
    }
}

#[test]
fn the_example_captures_come_out_the_same_on_any_number_of_threads() {
    let mut n = 0;
    for entry in std::fs::read_dir(example().join("pcaps")).unwrap() {
        assert_same_for_any_threads(&entry.unwrap().path());
        n += 1;
    }
    assert!(n >= 4, "the example captures are missing");
}

/// graph.microsoft.com, which the matrix's `microsoft-graph` service names.
const GRAPH_IP: [u8; 4] = [20, 190, 151, 7];

fn dns_answer(id: u16, name: &str, ip: [u8; 4], ttl: u32) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&[0, 4]);
    m.extend_from_slice(&ip);
    m
}

/// Ten minutes of capture: short TCP connections to the portal and the
/// database (some left unanswered or refused), UDP flows the matrix does
/// not document, a source port reused after its flow expired, a router's
/// port-unreachable errors, and DNS answers for graph.microsoft.com now
/// and then, each followed by connections to its address.
fn capture() -> Vec<u8> {
    generated(0)
}

/// [`capture`] with `bulk` more segments of 1,400 bytes from the server in
/// every answered connection.
fn generated(bulk: u64) -> Vec<u8> {
    let mut pcap = Pcap::new(1_775_469_600_000_000);
    let mut record = |usec: u64, frame: Vec<u8>| pcap.record(usec, &frame);
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let data = |src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16| {
        let mut f = Vec::new();
        eth().ipv4(src, dst, 64).tcp(sp, dp, 7, 64240).ack(8).write(&mut f, &[0x42; 1400]).unwrap();
        f
    };
    let tcp = |src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, kind: u8| {
        let b = eth().ipv4(src, dst, 64).tcp(sp, dp, 7, 64240);
        let b = match kind {
            0 => b.syn(),
            1 => b.syn().ack(8),
            2 => b.ack(8),
            3 => b.fin().ack(8),
            _ => b.rst().ack(8),
        };
        let mut f = Vec::new();
        b.write(&mut f, &[0x17; 100][..if kind == 2 { 100 } else { 0 }]).unwrap();
        f
    };
    let nodes = [[10, 200, 1, 11], [10, 200, 1, 12], [10, 200, 1, 13]];
    let ws = [10, 200, 2, 50];
    let (db, dc, router) = ([10, 200, 1, 20], [10, 200, 4, 10], [10, 200, 9, 1]);
    // 3,000 connections, one every 200 ms, each lasting up to 3 s: several
    // open at once, sweeps and expiries all along.
    for i in 0..3000u64 {
        let t = i * 200_000;
        let sport = 20_000 + (i % 700) as u16; // reused every 140 s, after expiry
        let node = nodes[(i % 3) as usize];
        let (c, s, dp) = match i % 5 {
            0 => (ws, nodes[(i % 3) as usize], 7101),
            1 | 2 => (node, db, 5432),
            3 => (node, GRAPH_IP, 443),
            _ => (node, [10, 200, 3, 20], 22),
        };
        record(t, tcp(c, sport, s, dp, 0));
        match i % 13 {
            // Unanswered: the SYN alone.
            7 => continue,
            // Refused.
            11 => {
                record(t + 500, tcp(s, dp, c, sport, 4));
                continue;
            }
            _ => {}
        }
        record(t + 400, tcp(s, dp, c, sport, 1));
        record(t + 800, tcp(c, sport, s, dp, 2));
        for j in 0..bulk {
            record(t + 900 + j * 40_000, data(s, dp, c, sport));
        }
        record(t + 1_000_000 + (i % 7) * 200_000, tcp(s, dp, c, sport, 2));
        record(t + 2_500_000, tcp(c, sport, s, dp, 3));
        record(t + 2_600_000, tcp(s, dp, c, sport, 3));
        if i % 4 == 0 {
            // Undocumented UDP, answered by a router's port unreachable.
            let mut q = Vec::new();
            eth().ipv4(node, dc, 64).udp(40_000 + (i % 900) as u16, 161).write(&mut q, &[1; 30]).unwrap();
            let quoted = q[14..14 + 28].to_vec();
            record(t + 900, q);
            let mut e = Vec::new();
            eth()
                .ipv4(router, node, 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port))
                .write(&mut e, &quoted)
                .unwrap();
            record(t + 1_200, e);
        }
        if i % 50 == 0 {
            // The DC answers a node's query for graph.microsoft.com (TTL 30 s).
            let mut a = Vec::new();
            let answer = dns_answer(i as u16, "graph.microsoft.com", GRAPH_IP, 30);
            eth().ipv4(dc, node, 64).udp(53, 50_000 + (i % 1000) as u16).write(&mut a, &answer).unwrap();
            record(t + 100, a);
        }
    }
    pcap.into_bytes()
}

#[test]
fn a_generated_capture_comes_out_the_same_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("generated.pcap");
    std::fs::write(&pcap, capture()).unwrap();
    assert_same_for_any_threads(&pcap);
    // The capture reaches what the sharding must keep global.
    let (_, out) = check(&pcap, "json", 1, Input::File);
    let text = String::from_utf8(out).unwrap();
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(summary["flows"].as_u64().unwrap() > 3000, "{summary}");
    assert!(summary["icmp_errors_matched"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["blocked"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["unexpected"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["conforming"].as_u64().unwrap() > 0, "{summary}");
    assert!(!summary["dns"].as_object().unwrap().is_empty(), "passive DNS saw nothing: {summary}");
}

/// A capture cut short inside a record: every thread count prints the
/// findings judged before the damage, then the same error, with the same status.
#[test]
fn a_capture_cut_mid_frame_fails_alike_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let whole = capture();
    // Past the middle, inside a record (the header is 24 bytes, records
    // at least 16 + 54): cut at several places so that one falls in a frame.
    for cut in [whole.len() * 3 / 5, whole.len() * 3 / 5 + 37, whole.len() - 20] {
        let pcap = dir.path().join(format!("cut-{cut}.pcap"));
        std::fs::write(&pcap, &whole[..cut]).unwrap();
        for input in [Input::File, Input::Pipe] {
            let one = run(&pcap, "json", 1, input);
            assert!(!matches!(one.0, Some(0 | 1)), "a cut capture must fail: {one:?}");
            let stderr = String::from_utf8_lossy(&one.2);
            assert!(stderr.contains("cut short"), "{stderr}");
            assert!(!one.1.is_empty(), "findings before the cut come out");
            for threads in [2, 3] {
                let many = run(&pcap, "json", threads, input);
                assert!(
                    one == many,
                    "cut at {cut} ({input:?}): --threads {threads} differs from --threads 1:\n{}\n{}\n---\n{}\n{}",
                    String::from_utf8_lossy(&one.1),
                    stderr,
                    String::from_utf8_lossy(&many.1),
                    String::from_utf8_lossy(&many.2),
                );
            }
        }
    }
}

/// A capture several times larger than the lead a shard may take over the
/// slowest one (`--threads N` over a mapped file: every shard walks every
/// record, and the pages between the slowest and the fastest stay mapped),
/// whole and cut short near its end: the same output and the same error as
/// `--threads 1`.
#[test]
fn a_capture_larger_than_a_shards_lead_comes_out_the_same_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let whole = generated(20);
    assert!(whole.len() > 64 << 20, "only {} bytes", whole.len());
    let pcap = dir.path().join("large.pcap");
    std::fs::write(&pcap, &whole).unwrap();
    let one = check(&pcap, "json", 1, Input::File);
    for threads in [2, 3] {
        assert!(one == check(&pcap, "json", threads, Input::File), "--threads {threads} differs");
    }
    let cut = dir.path().join("large-cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() * 9 / 10 + 37]).unwrap();
    let one = run(&cut, "json", 1, Input::File);
    let stderr = String::from_utf8_lossy(&one.2);
    assert!(stderr.contains("cut short"), "{stderr}");
    for threads in [2, 3] {
        assert!(one == run(&cut, "json", threads, Input::File), "cut: --threads {threads} differs");
    }
}

/// The records of a legacy pcap (microseconds, Ethernet, as [`Pcap`]
/// writes them) as a pcapng section with one interface; the offsets of
/// the packet blocks, in order.
fn to_pcapng(legacy: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let word = |at: usize| u32::from_le_bytes(legacy[at..at + 4].try_into().unwrap());
    let mut ng = Vec::new();
    ng.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
    ng.extend_from_slice(&28u32.to_le_bytes());
    ng.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    ng.extend_from_slice(&[1, 0, 0, 0]);
    ng.extend_from_slice(&(-1i64).to_le_bytes());
    ng.extend_from_slice(&28u32.to_le_bytes());
    ng.extend_from_slice(&1u32.to_le_bytes());
    ng.extend_from_slice(&20u32.to_le_bytes());
    ng.extend_from_slice(&[1, 0, 0, 0]);
    ng.extend_from_slice(&65535u32.to_le_bytes());
    ng.extend_from_slice(&20u32.to_le_bytes());
    let mut blocks = Vec::new();
    let mut at = 24;
    while at < legacy.len() {
        let usec = word(at) as u64 * 1_000_000 + word(at + 4) as u64;
        let caplen = word(at + 8) as usize;
        let data = &legacy[at + 16..at + 16 + caplen];
        let len = 32 + caplen.div_ceil(4) * 4;
        blocks.push(ng.len());
        ng.extend_from_slice(&6u32.to_le_bytes());
        ng.extend_from_slice(&(len as u32).to_le_bytes());
        ng.extend_from_slice(&0u32.to_le_bytes());
        ng.extend_from_slice(&((usec >> 32) as u32).to_le_bytes());
        ng.extend_from_slice(&(usec as u32).to_le_bytes());
        ng.extend_from_slice(&(caplen as u32).to_le_bytes());
        ng.extend_from_slice(&legacy[at + 12..at + 16]);
        ng.extend_from_slice(data);
        ng.resize(ng.len() + (len - 32 - caplen), 0);
        ng.extend_from_slice(&(len as u32).to_le_bytes());
        at += 16 + caplen;
    }
    (ng, blocks)
}

/// The generated capture as pcapng, whole, and with a packet block past
/// its middle naming an interface that was never described (a corrupt
/// block): every thread count prints the same findings, then the same error.
#[test]
fn a_corrupt_pcapng_block_fails_alike_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, blocks) = to_pcapng(&capture());
    let pcap = dir.path().join("generated.pcapng");
    std::fs::write(&pcap, &whole).unwrap();
    assert_same_for_any_threads(&pcap);
    let mut corrupt = whole.clone();
    let at = blocks[blocks.len() * 3 / 5] + 8;
    corrupt[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let path = dir.path().join("corrupt.pcapng");
    std::fs::write(&path, &corrupt).unwrap();
    for input in [Input::File, Input::Pipe] {
        let one = run(&path, "json", 1, input);
        let stderr = String::from_utf8_lossy(&one.2);
        assert!(stderr.contains("malformed packet block for interface 99"), "{stderr}");
        assert!(!one.1.is_empty(), "findings before the corrupt block come out");
        for threads in [2, 3] {
            let many = run(&path, "json", threads, input);
            assert!(one == many, "{input:?}: --threads {threads} differs from --threads 1: {:?}", many.2);
        }
    }
}
