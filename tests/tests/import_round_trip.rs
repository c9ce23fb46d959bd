//! Import, then live traffic, then `monitor check`: the round trip of issue
//! 12. A page copied as text (monitor/tests/fixtures/import/
//! relay-copied-page.txt) is imported with `monitor matrix import`; a
//! namespace cluster is built from the inventory written from the page's
//! own service -> host group table (relay-inventory.ini), plus one host per
//! audience of its perimeter table; every documented flow is made over real
//! TCP while tcpdump captures the bridge; `monitor check` on the capture
//! must then find only the two off-matrix flows the test adds: with the
//! placements from the document's mapping there is no false alert. The
//! same page without its mapping table gives the false alerts issue 12
//! reported, on the same capture.
//!
//! NEEDS ROOT, tcpdump and the monitor binary (`cargo xtask build`, or
//! MONITOR_BIN; `monitor check` needs no eBPF object).

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use ::monitor::inventory::Inventory;
use monitor_tests::{
    capture::Capture,
    cluster::Cluster,
    monitor::{self, require_monitor_bin},
    traffic::{tcp_echo_client, TcpEchoServer},
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitor/tests/fixtures/import").join(name)
}

/// The audiences of the perimeter table, as hosts outside the inventory, and
/// the CIDR the user fills in for each placeholder zone.
const OPERATOR: (&str, Ipv4Addr, &str, &str) =
    ("op1", Ipv4Addr::new(10, 200, 8, 10), "operators", "10.200.8.0/24");
const SUPPORT: (&str, Ipv4Addr, &str, &str) =
    ("sup1", Ipv4Addr::new(10, 200, 9, 10), "support-staff", "10.200.9.0/24");

/// Replaces the `cidrs: []` placeholder of `zone` in the draft, as the
/// import's warning tells the user to.
fn fill_zone(yaml: &str, zone: &str, cidr: &str) -> String {
    let head = format!("\n  {zone}:\n");
    let at = yaml.find(&head).unwrap_or_else(|| panic!("no zone {zone} in the draft:\n{yaml}"));
    let start = at + yaml[at..].find("cidrs: []").expect("a cidrs placeholder after the zone");
    format!("{}cidrs: [{cidr}]{}", &yaml[..start], &yaml[start + "cidrs: []".len()..])
}

/// `monitor matrix import DOC --inventory relay-inventory.ini --group
/// "Log Collector=logs"` (the page does not place the Log Collector), with
/// the audience zones filled in; returns the draft and its stderr.
fn import_draft(doc: &Path, to: &Path) -> (String, String) {
    let out = Command::new(require_monitor_bin())
        .arg("matrix")
        .arg("import")
        .arg(doc)
        .arg("--inventory")
        .arg(fixture("relay-inventory.ini"))
        .args(["--group", "Log Collector=logs"])
        .output()
        .expect("run monitor matrix import");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import failed: {stderr}");
    let mut yaml = String::from_utf8(out.stdout).expect("UTF-8 draft");
    for (_, _, zone, cidr) in [OPERATOR, SUPPORT] {
        yaml = fill_zone(&yaml, zone, cidr);
    }
    std::fs::write(to, &yaml).unwrap();
    (yaml, stderr)
}

/// (kind, server address, port) of each alert of `monitor check` on the capture.
fn findings(matrix: &Path, pcap: &Path) -> BTreeSet<(String, String, u64)> {
    let inventory = fixture("relay-inventory.ini");
    let stdout = monitor::check(&[
        "--format",
        "json",
        "--matrix",
        matrix.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
        "--profile",
        "push-dispatch",
        "--profile",
        "optional",
        "--pcap",
        pcap.to_str().unwrap(),
    ]);
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["type"] == "alert")
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or("?").to_string(),
                v["dst"]["ip"].as_str().unwrap_or("?").to_string(),
                v["dst"]["port"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn imported_draft_with_the_documents_mapping_gives_no_false_alert() {
    let dir = tempfile::tempdir().expect("tempdir");

    // 1. Import, checked against the inventory: no mismatch is left.
    let matrix = dir.path().join("relay.yaml");
    let (yaml, stderr) = import_draft(&fixture("relay-copied-page.txt"), &matrix);
    let mismatches: Vec<&str> =
        stderr.lines().filter(|l| l.contains("warning:") && l.contains("relay-inventory.ini")).collect();
    assert!(mismatches.is_empty(), "inventory mismatches left: {mismatches:#?}\n{stderr}");
    assert!(
        stderr.contains("against") && stderr.contains("relay-inventory.ini"),
        "the review names the inventory: {stderr}"
    );

    // 2. The cluster: every inventory host, plus one host per audience.
    let (inv, _) = Inventory::load(&fixture("relay-inventory.ini")).expect("the fixture inventory loads");
    let mut hosts: Vec<(&str, Ipv4Addr)> = inv
        .hosts
        .values()
        .map(|h| match h.addresses.first() {
            Some(std::net::IpAddr::V4(ip)) => (h.name.as_str(), *ip),
            other => panic!("{}: no IPv4 address ({other:?})", h.name),
        })
        .collect();
    hosts.extend([OPERATOR, SUPPORT].map(|(n, ip, _, _)| (n, ip)));
    let c = Cluster::of(&hosts);
    let cap = Capture::start(c.switch(), Cluster::BRIDGE);

    // 3. Every documented flow (client, server, port), by the page's lines.
    let documented = [
        ("web1", "sched1", 8080),  // 14: Front-End -> Scheduler
        ("work1", "sched1", 9000), // 15: Worker Node -> Scheduler
        ("sched1", "mq1", 5672),   // 16: Scheduler -> Broker
        ("work2", "mq1", 5672),    // 16: Worker Node -> Broker
        ("mq1", "work1", 7070),    // 17: Broker -> Worker Node (push-dispatch)
        ("mq1", "web2", 8443),     // 18: Broker -> Front-End (optional, push-dispatch)
        ("web2", "logs1", 5044),   // 19: Log Shipper (on `all`) -> Log Collector
        ("work1", "logs1", 5044),  // 19
        ("op1", "web1", 443),      // 23: Operators -> webtier
        ("sup1", "web2", 80),      // 24: Everyone -> webtier
        ("op1", "sched1", 22),     // 25: Operators -> scheduler
        ("sup1", "sched1", 22),    // 25: Support staff -> scheduler
        ("sup1", "mq1", 15672),    // 26: Support staff -> brokers (optional)
    ];
    // Two flows the page does not document: a worker to the web tier, and a
    // web host to the SSH port that only operators and support staff may reach.
    let off_matrix = [("work1", "web1", 8080), ("web1", "sched1", 22)];
    for (client, server, port) in documented.iter().chain(&off_matrix) {
        let s = TcpEchoServer::start(c.ns(server), c.addr(server, *port), 1);
        tcp_echo_client(c.ns(client), s.addr, 2, 64);
        s.join();
    }
    let pcap = dir.path().join("relay.pcap");
    cap.save(&pcap);

    // 4. `monitor check` on the capture, with the profiles the flows need.
    let found = findings(&matrix, &pcap);
    let want: BTreeSet<(String, String, u64)> = [
        ("unexpected".to_string(), c.ip("web1").to_string(), 8080),
        ("exposed".to_string(), c.ip("sched1").to_string(), 22),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, want, "findings of monitor check on the capture; draft:\n{yaml}");

    // 5. The same page without its mapping table (what the importer read
    //    before issue 12): services placed by their names miss the hosts of
    //    webtier, brokers and workers, and the same capture raises false
    //    alerts on documented flows. So the mapping is what makes the
    //    round trip quiet.
    let page = std::fs::read_to_string(fixture("relay-copied-page.txt")).unwrap();
    let start = page.find("Host groups¶").expect("the mapping table's heading");
    let end = page.find("Internal ports¶").expect("the next heading");
    let unmapped = dir.path().join("relay-unmapped.txt");
    std::fs::write(&unmapped, format!("{}{}", &page[..start], &page[end..])).unwrap();
    let by_name = dir.path().join("relay-by-name.yaml");
    let (_, stderr) = import_draft(&unmapped, &by_name);
    assert!(stderr.contains("placed by name only"), "{stderr}");
    let false_alerts: BTreeSet<_> = findings(&by_name, &pcap).difference(&want).cloned().collect();
    let unexpected = |host: &str, port: u64| ("unexpected".to_string(), c.ip(host).to_string(), port);
    assert_eq!(
        false_alerts,
        [
            unexpected("sched1", 8080), // Front-End on front_end, not webtier
            unexpected("sched1", 9000), // Worker Node on worker_node, not workers
            unexpected("mq1", 5672),    // Broker on broker, not brokers (from sched1 and work2)
            unexpected("work1", 7070),
            unexpected("web2", 8443),
            unexpected("logs1", 5044), // Log Shipper on log_shipper, not all
        ]
        .into_iter()
        .collect(),
        "without the mapping, documented flows look unexpected"
    );
}
