//! `monitor check --format html` as a person uses it: the page of an
//! RP-PAM example capture against its golden file (MONITOR_BLESS=1
//! rewrites it), and a page with findings of several kinds opened from a
//! file:// URL in a real headless Chromium (`MONITOR_CHROMIUM`, default
//! /usr/bin/chromium), driven through the DevTools protocol: every rule in
//! the table, a filter click that hides the other kinds, sorting by a
//! column, no console error; and a screenshot in
//! target/tmp/html-report/report.png to look at.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chromiumoxide::{
    browser::{Browser, BrowserConfig},
    cdp::{
        browser_protocol::{log::EventEntryAdded, page::CaptureScreenshotFormat},
        js_protocol::runtime::{ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown},
    },
    page::ScreenshotParams,
    Page,
};
use futures::StreamExt;
use pcap_file::{
    pcap::{PcapPacket, PcapReader, PcapWriter},
    pcapng::{Block, PcapNgReader},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the test leaves its page, capture and screenshot.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `monitor check --format html` against the RP-PAM matrix and HA
/// inventory, with paths as a user in the repository root writes them.
fn check_html(pcap: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .current_dir(root())
        .args(["check", "--matrix", "examples/rp-pam/matrix.yaml"])
        .args(["--inventory", "examples/rp-pam/inventory.ini", "--profile", "ha"])
        .args(["--pcap", pcap, "--format", "html"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "findings give status 1: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The page with its inline SVG cut out (Graphviz's layout differs between
/// its versions), and the SVG.
fn without_svg(page: &str) -> (String, String) {
    let start =
        page.find("<div class=\"graph\">\n").expect("the page has its graph (Graphviz `dot` is installed)");
    let body = start + "<div class=\"graph\">\n".len();
    let end = body + page[body..].find("</svg>").expect("the SVG ends") + "</svg>".len();
    (format!("{}<!-- the SVG -->{}", &page[..body], &page[end..]), page[body..end].to_string())
}

#[test]
fn the_page_of_the_blocked_example_matches_its_golden() {
    let (got, svg) = without_svg(&check_html("examples/rp-pam/pcaps/blocked.pcapng"));
    // The graph is `monitor graph`'s: well-formed SVG, the blocked rules drawn.
    let doc =
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("the inline SVG is not XML ({e}): {svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let text: String = doc.descendants().filter_map(|n| n.text()).collect();
    for rule in ["grpc-inter-node", "redis", "db-postgres"] {
        assert!(text.contains(rule), "the graph names the blocked rule {rule}: {text}");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/blocked.html");
    if std::env::var_os("MONITOR_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(got == want, "{} differs (MONITOR_BLESS=1 rewrites it); got:\n{got}", path.display());
}

/// The frames of an example capture (pcap or pcapng, Ethernet).
fn frames(name: &str) -> Vec<(Duration, Vec<u8>)> {
    let bytes = std::fs::read(root().join("examples/rp-pam/pcaps").join(name)).unwrap();
    let mut out = Vec::new();
    if name.ends_with(".pcapng") {
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        while let Some(block) = r.next_block() {
            if let Block::EnhancedPacket(p) = block.unwrap() {
                out.push((p.timestamp, p.data.to_vec()));
            }
        }
    } else {
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            out.push((p.timestamp, p.data.to_vec()));
        }
    }
    out
}

/// One capture holding the unexpected, blocked and exposed examples (their
/// flows have different ends), in time order: findings of every kind.
fn mixed_capture() -> PathBuf {
    let mut all = frames("unexpected.pcap");
    all.extend(frames("blocked.pcapng"));
    all.extend(frames("exposed-single-node.pcap"));
    all.sort_by_key(|(t, _)| *t);
    let path = out_dir().join("mixed.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    for (t, data) in &all {
        w.write_packet(&PcapPacket::new(*t, data.len() as u32, data)).unwrap();
    }
    path
}

/// The rule ids of the matrix in force, from the library (not the page).
fn rule_ids() -> Vec<String> {
    let sources = monitor::engine::Sources {
        matrix: root().join("examples/rp-pam/matrix.yaml"),
        inventory: Some(root().join("examples/rp-pam/inventory.ini")),
        inventory_limits: monitor::inventory::LoadOptions::default(),
        selection: monitor::matrix::Selection { profiles: vec!["ha".into()], ..Default::default() },
    };
    sources.compile().unwrap().engine.rules().iter().map(|r| r.id.clone()).collect()
}

/// The value of the expression `js` in the page.
async fn eval<T: serde::de::DeserializeOwned>(page: &Page, js: &str) -> T {
    let function = format!("() => ({js})");
    let result = page.evaluate_function(function).await.unwrap_or_else(|e| panic!("{js}: {e}"));
    result.into_value().unwrap_or_else(|e| panic!("{js}: {e}"))
}

/// What is visible of the findings: the kind of every shown finding row.
const SHOWN_KINDS: &str = "Array.from(document.querySelectorAll('tr.finding'))\
    .filter(r => r.offsetParent !== null).map(r => r.dataset.kind)";
const RULE_ORDER: &str =
    "Array.from(document.querySelectorAll('#rule-table tbody tr')).map(r => r.dataset.rule)";

/// The values of column `i` of the rule table, as numbers.
fn column(i: usize) -> String {
    format!("Array.from(document.querySelectorAll('#rule-table tbody tr')).map(r => Number(r.cells[{i}].textContent))")
}

/// Polls `f` until it is true, for at most 10 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_a_headless_browser() {
    let dir = out_dir();
    let html = check_html(mixed_capture().to_str().unwrap());
    let file = dir.join("report.html");
    std::fs::write(&file, &html).unwrap();

    let chromium = std::env::var_os("MONITOR_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(&chromium)
        .disable_default_args()
        .no_sandbox()
        .user_data_dir(profile.path())
        .args([
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        // A machine busy with builds can take a while to start a browser.
        .launch_timeout(Duration::from_secs(120))
        .request_timeout(Duration::from_secs(60))
        .window_size(1400, 1000)
        .viewport(None)
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config)
        .await
        .unwrap_or_else(|e| panic!("start {} (MONITOR_CHROMIUM names another): {e}", chromium.display()));
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let page = browser.new_page("about:blank").await.unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut console = page.event_listener::<EventConsoleApiCalled>().await.unwrap();
    let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
    let mut logged = page.event_listener::<EventEntryAdded>().await.unwrap();
    let sink = errors.clone();
    let listen = tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                Some(e) = console.next() => (e.r#type == ConsoleApiCalledType::Error)
                    .then(|| format!("console.error: {:?}", e.args.iter().map(|a| &a.value).collect::<Vec<_>>())),
                Some(e) = thrown.next() => Some(format!("exception: {:?}", e.exception_details)),
                Some(e) = logged.next() => (format!("{:?}", e.entry.level) == "Error")
                    .then(|| format!("log: {} {:?}", e.entry.text, e.entry.url)),
                else => break,
            };
            if let Some(line) = line {
                sink.lock().unwrap().push(line);
            }
        }
    });

    let url = format!("file://{}", file.display());
    page.goto(url.as_str()).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    page.save_screenshot(
        ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).full_page(true).build(),
        dir.join("report.png"),
    )
    .await
    .unwrap();

    // The graph is inline.
    assert!(
        eval::<bool>(&page, "document.querySelector('#graph svg g') !== null").await,
        "the graph is drawn"
    );
    // Every rule of the matrix in force has its row, in matrix order.
    let rows: Vec<String> = eval(&page, RULE_ORDER).await;
    assert_eq!(rows, rule_ids());

    // Every kind is shown; a click on `blocked` hides the others.
    let mut kinds: Vec<String> = eval(&page, SHOWN_KINDS).await;
    kinds.sort();
    assert_eq!(kinds, ["blocked", "blocked", "blocked", "exposed", "unexpected"]);
    page.find_element(".filter button[data-filter=blocked]").await.unwrap().click().await.unwrap();
    let kinds: Vec<String> = eval(&page, SHOWN_KINDS).await;
    assert_eq!(kinds, ["blocked", "blocked", "blocked"], "the filter shows the blocked findings only");
    page.find_element(".filter button[data-filter=unexpected]").await.unwrap().click().await.unwrap();
    let kinds: Vec<String> = eval(&page, SHOWN_KINDS).await;
    assert_eq!(kinds, ["unexpected"]);
    page.find_element(".filter button[data-filter=all]").await.unwrap().click().await.unwrap();
    assert_eq!(eval::<Vec<String>>(&page, SHOWN_KINDS).await.len(), 5);

    // A click on "Packets" sorts the rules by it, a second click reverses.
    let packets = column(4);
    let header = "#rule-table thead th:nth-child(5)";
    assert_eq!(
        eval::<String>(&page, &format!("document.querySelector('{header}').textContent")).await,
        "Packets"
    );
    let before: Vec<f64> = eval(&page, &packets).await;
    assert!(before.windows(2).any(|w| w[0] < w[1]), "the matrix order is not sorted already: {before:?}");
    page.find_element(header).await.unwrap().click().await.unwrap();
    let up: Vec<f64> = eval(&page, &packets).await;
    assert!(up.windows(2).all(|w| w[0] <= w[1]), "ascending: {up:?}");
    page.find_element(header).await.unwrap().click().await.unwrap();
    let down: Vec<f64> = eval(&page, &packets).await;
    assert!(down.windows(2).all(|w| w[0] >= w[1]), "descending: {down:?}");
    let mut sorted: Vec<String> = eval(&page, RULE_ORDER).await;
    sorted.sort();
    let mut want = rule_ids();
    want.sort();
    assert_eq!(sorted, want, "sorting keeps every row");

    // The listener hears errors: one made on purpose arrives.
    assert_eq!(*errors.lock().unwrap(), Vec::<String>::new(), "the page logged errors");
    assert!(eval::<bool>(&page, "console.error('probe'), true").await);
    until("the probe error", || errors.lock().unwrap().iter().any(|e| e.contains("probe"))).await;

    browser.close().await.unwrap();
    browser.wait().await.unwrap();
    events.abort();
    listen.abort();
}
