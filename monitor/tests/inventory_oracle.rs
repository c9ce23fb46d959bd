//! The inventory reader checked against the real thing: for every fixture in
//! tests/fixtures/inventory, `ansible-inventory -i FILE --list` (ansible-core,
//! installed with pip when missing) must agree with `Inventory::load` on the
//! hosts, each host's groups (transitively, with "all"), each group's direct
//! hosts and children, and each host's merged variables (so `ansible_host`
//! too). Its JSON output is then read back with the `--list` reader and must
//! give the same inventory. Malformed fixtures must be refused by both, ours
//! naming the right line.
//!
//! One `ansible-inventory` run per fixture (about a second each); the test
//! harness runs them in parallel.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use monitor::inventory::{detect_format, Format, Inventory, InventoryError};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory").join(name)
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// `ansible-inventory`, installed with `python3 -m pip install ansible-core`
/// when it is not on PATH. A failed install fails the tests: they must not
/// pass without the oracle.
fn ansible_inventory() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(find_or_install) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn find_or_install() -> Result<PathBuf, String> {
    if let Some(p) = on_path("ansible-inventory") {
        return Ok(p);
    }
    let out =
        Command::new("python3").args(["-m", "pip", "install", "--quiet", "ansible-core"]).output().map_err(
            |e| format!("ansible-inventory is not on PATH and python3 could not be run to install it: {e}"),
        )?;
    if !out.status.success() {
        return Err(format!(
            "ansible-inventory is not on PATH and `python3 -m pip install --quiet ansible-core` failed ({}):\n{}\n\
             install ansible-core so that ansible-inventory is on PATH and run the tests again",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if let Some(p) = on_path("ansible-inventory") {
        return Ok(p);
    }
    // pip may have put the script in a directory that is not on PATH.
    let script = "import sysconfig, os; print(sysconfig.get_path('scripts')); print(sysconfig.get_path('scripts', os.name + '_user'))";
    let dirs = Command::new("python3").args(["-c", script]).output().map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&dirs.stdout)
        .lines()
        .map(|d| Path::new(d.trim()).join("ansible-inventory"))
        .find(|p| p.is_file())
        .ok_or_else(|| "pip installed ansible-core but ansible-inventory is nowhere to be found; add pip's script directory to PATH".into())
}

/// The result of one `ansible-inventory --list` run.
enum AnsibleSays {
    Parsed { json: Value, stdout: String },
    Refused { stderr: String },
}

fn run_ansible(file: &Path) -> AnsibleSays {
    let plugin = match file.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml") => "yaml",
        Some(_) => "ini",
        // Ansible tries YAML first, then INI, on a file without extension.
        None => "yaml,ini",
    };
    let home = tempfile::tempdir().expect("temp dir");
    let config = home.path().join("ansible.cfg");
    std::fs::write(&config, "").expect("write empty ansible.cfg");
    let out = Command::new(ansible_inventory())
        .arg("-i")
        .arg(file)
        .arg("--list")
        // Only the plugin for this format, a parse failure is a failure, and
        // nothing from the user's configuration.
        .env("ANSIBLE_INVENTORY_ENABLED", plugin)
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
        .env("ANSIBLE_CONFIG", &config)
        .env("ANSIBLE_HOME", home.path())
        .env("ANSIBLE_LOCAL_TEMP", home.path())
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ansible_inventory().display()));
    if !out.status.success() {
        return AnsibleSays::Refused { stderr: String::from_utf8_lossy(&out.stderr).into_owned() };
    }
    let stdout = String::from_utf8(out.stdout).expect("ansible-inventory prints UTF-8");
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("ansible-inventory printed something that is not JSON ({e}):\n{stdout}"));
    AnsibleSays::Parsed { json, stdout }
}

/// What `ansible-inventory --list` says, in comparable form.
#[derive(Debug)]
struct Oracle {
    host_groups: BTreeMap<String, BTreeSet<String>>,
    direct_hosts: BTreeMap<String, BTreeSet<String>>,
    children: BTreeMap<String, BTreeSet<String>>,
    hostvars: BTreeMap<String, serde_json::Map<String, Value>>,
}

/// ansible-inventory writes `!unsafe` strings as `{"__ansible_unsafe": s}`;
/// the inventory keeps them as plain strings.
fn untag(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("__ansible_unsafe") => {
            o["__ansible_unsafe"].clone()
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), untag(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(untag).collect()),
        other => other.clone(),
    }
}

fn names(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(|s| s.as_str().expect("names are strings").to_string()).collect())
        .unwrap_or_default()
}

impl Oracle {
    /// Walks the groups from "all" through children. The JSON lists each
    /// host only in its most specific groups, so membership is made
    /// transitive here, the same way `Host::groups` is defined.
    fn from_list(json: &Value) -> Oracle {
        let top = json.as_object().expect("--list prints an object");
        let mut direct_hosts = BTreeMap::new();
        let mut children = BTreeMap::new();
        let mut pending = vec!["all".to_string()];
        while let Some(g) = pending.pop() {
            if children.contains_key(&g) {
                continue;
            }
            // Empty groups are left out of the JSON but still named as children.
            let entry = top.get(&g);
            let kids = names(entry.and_then(|e| e.get("children")));
            pending.extend(kids.iter().cloned());
            direct_hosts.insert(g.clone(), names(entry.and_then(|e| e.get("hosts"))));
            children.insert(g, kids);
        }
        fn hosts_under(
            g: &str,
            d: &BTreeMap<String, BTreeSet<String>>,
            c: &BTreeMap<String, BTreeSet<String>>,
        ) -> BTreeSet<String> {
            let mut out = d[g].clone();
            for k in &c[g] {
                out.extend(hosts_under(k, d, c));
            }
            out
        }
        let hostvars: BTreeMap<String, serde_json::Map<String, Value>> = json["_meta"]["hostvars"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(h, v)| match untag(v) {
                        Value::Object(vars) => (h.clone(), vars),
                        other => panic!("hostvars of {h} is {other}, not an object"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut host_groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for g in children.keys() {
            for h in hosts_under(g, &direct_hosts, &children) {
                host_groups.entry(h).or_default().insert(g.clone());
            }
        }
        for h in hostvars.keys() {
            host_groups.entry(h.clone()).or_default().insert("all".into());
        }
        Oracle { host_groups, direct_hosts, children, hostvars }
    }

    /// Asserts that `inv` says what ansible-inventory said. `what` names the side.
    fn assert_agrees(&self, inv: &Inventory, what: &str) {
        assert_eq!(
            inv.host_groups(),
            self.host_groups,
            "{what}: host -> groups differ from ansible-inventory"
        );
        let ours: BTreeSet<&String> = inv.groups.keys().collect();
        let theirs: BTreeSet<&String> = self.children.keys().collect();
        assert_eq!(ours, theirs, "{what}: the set of groups differs from ansible-inventory");
        for (name, g) in &inv.groups {
            // --list never prints the hosts written directly under "all"
            // (they are in "ungrouped" as well, which is compared).
            if name != "all" {
                assert_eq!(g.hosts, self.direct_hosts[name], "{what}: direct hosts of group {name:?}");
            }
            assert_eq!(g.children, self.children[name], "{what}: children of group {name:?}");
        }
        for (name, host) in &inv.hosts {
            let theirs = self.hostvars.get(name).cloned().unwrap_or_default();
            let ours: serde_json::Map<String, Value> = host.vars.clone().into_iter().collect();
            assert_eq!(ours, theirs, "{what}: variables of host {name:?}");
            let their_ah = theirs
                .get("ansible_host")
                .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
            assert_eq!(host.ansible_host, their_ah, "{what}: ansible_host of {name:?}");
        }
    }
}

fn load(file: &Path) -> (Inventory, Vec<monitor::inventory::Warning>) {
    Inventory::load(file).unwrap_or_else(|e| panic!("{} should load: {e}", file.display()))
}

fn check_against_ansible(name: &str) {
    let file = fixture(name);
    let (ours, _) = load(&file);
    let (json, stdout) = match run_ansible(&file) {
        AnsibleSays::Parsed { json, stdout } => (json, stdout),
        AnsibleSays::Refused { stderr } => {
            panic!("ansible-inventory refused {name}, which we accept:\n{stderr}")
        }
    };
    let oracle = Oracle::from_list(&json);
    assert!(!oracle.host_groups.is_empty(), "{name}: the fixture should define hosts");
    oracle.assert_agrees(&ours, name);

    // ansible-inventory's own output, read back with the --list reader.
    let listed = Path::new("inventory.json");
    assert_eq!(detect_format(listed, &stdout), Format::ListJson, "{name}: --list output not recognised");
    let (from_list, _) = Inventory::from_list_json(&stdout, listed)
        .unwrap_or_else(|e| panic!("{name}: ansible-inventory's own JSON should load: {e}"));
    oracle.assert_agrees(&from_list, &format!("{name} via --list JSON"));
    assert_eq!(from_list.host_groups(), ours.host_groups(), "{name}: --list JSON and direct read differ");
    for (h, host) in &ours.hosts {
        assert_eq!(from_list.hosts[h].addresses, host.addresses, "{name}: addresses of {h}");
    }
}

macro_rules! agrees_with_ansible {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            check_against_ansible($file);
        }
    )*};
}

agrees_with_ansible! {
    ini_basic => "basic.ini",
    ini_ranges => "ranges.ini",
    ini_children_chain_and_var_precedence => "children.ini",
    ini_value_types => "vars_types.ini",
    ini_ungrouped_and_all => "ungrouped.ini",
    ini_ports_and_ipv6 => "ports_ipv6.ini",
    ini_group_named_like_a_host => "edge_names.ini",
    ini_rp_pam_ha_cluster => "rp-pam-ha.ini",
    yaml_basic => "basic.yml",
    yaml_nested_children => "nested.yml",
    yaml_1_1_scalars_anchors_merges => "yaml11.yml",
    yaml_ungrouped_and_top_level => "ungrouped.yml",
    yaml_rp_pam_cluster => "rp-pam.yml",
    no_extension_ini => "hosts",
    no_extension_yaml => "cluster",
}

fn check_rejected(name: &str, line: usize, needle: &str) {
    let file = fixture(&format!("bad/{name}"));
    let err: InventoryError = match Inventory::load(&file) {
        Ok((inv, _)) => panic!("{name} should be refused, got {} hosts", inv.hosts.len()),
        Err(e) => e,
    };
    let shown = err.to_string();
    assert_eq!(err.line(), Some(line), "{name}: wrong line in {shown:?}");
    assert!(
        shown.starts_with(&format!("{}:{line}", file.display())),
        "{name}: {shown:?} should start with file:line"
    );
    assert!(shown.contains(needle), "{name}: {shown:?} should mention {needle:?}");
    if let AnsibleSays::Parsed { stdout, .. } = run_ansible(&file) {
        panic!("{name}: we refuse it but ansible-inventory accepts it:\n{stdout}");
    }
}

macro_rules! refused_by_both {
    ($($test:ident => $file:literal, $line:literal, $needle:literal;)*) => {$(
        #[test]
        fn $test() {
            check_rejected($file, $line, $needle);
        }
    )*};
}

refused_by_both! {
    bad_unterminated_range_ini => "unterminated_range.ini", 3, "no closing ']'";
    bad_section_suffix => "bad_suffix.ini", 4, "[web:badsuffix] has unknown type";
    bad_children_cycle_ini => "cycle.ini", 6, "a -> b -> c -> a";
    bad_undefined_child => "undefined_child.ini", 4, "refers to group \"missing\"";
    bad_vars_for_undefined_group => "undefined_vars.ini", 3, "[ghost:vars]";
    bad_unclosed_quote => "unclosed_quote.ini", 3, "never closed";
    bad_range_width => "width_mismatch.ini", 2, "different width";
    bad_semicolon_after_host => "semicolon_after_host.ini", 2, "expected key=value";
    bad_yaml_hosts_as_list => "hosts_list.yml", 5, "hosts of group \"web\" is a list";
    bad_children_cycle_yaml => "cycle.yml", 3, "b -> c -> a -> b";
    bad_yaml_numeric_host => "host_number.yml", 4, "not a string";
    bad_unterminated_range_yaml => "unterminated_range.yml", 3, "no closing ']'";
    bad_yaml_syntax => "syntax.yml", 4, "YAML syntax error";
}

/// Warnings that must point at the line of what they are about.
#[test]
fn skipped_and_unusable_entries_are_warned_about_with_their_line() {
    let expect: &[(&str, usize, &str)] = &[
        ("ranges.ini", 11, "expands to no hosts"),
        ("ports_ipv6.ini", 10, "Jinja template"),
        ("ports_ipv6.ini", 11, "CIDR"),
        ("ports_ipv6.ini", 14, "ansible_ssh_host is the old name"),
        ("ports_ipv6.ini", 14, "private_ip"),
        ("ports_ipv6.ini", 7, "no IP address"),
        ("ports_ipv6.ini", 8, "port 9022 of host \"web.example.com\" is ignored"),
        ("ungrouped.ini", 1, "both a group and a host"),
        ("edge_names.ini", 5, "both a group and a host"),
        ("edge_names.ini", 5, "variable role of host \"servers\" goes to group \"servers\""),
    ];
    for (name, line, needle) in expect {
        let (_, warnings) = load(&fixture(name));
        assert!(
            warnings.iter().any(|w| w.line == Some(*line) && w.message.contains(needle)),
            "{name}: expected a warning at line {line} about {needle:?}, got:\n{}",
            warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("\n")
        );
    }
}

/// The fields the engine reads, on the RP-PAM cluster inventory.
#[test]
fn rp_pam_cluster_addresses_and_groups() {
    let (inv, _) = load(&fixture("rp-pam.yml"));
    let nodes: Vec<(&str, Vec<std::net::IpAddr>)> =
        inv.hosts_in_group("rppam").map(|h| (h.name.as_str(), h.addresses.clone())).collect();
    let ip = |s: &str| vec![s.parse::<std::net::IpAddr>().expect("test address")];
    assert_eq!(
        nodes,
        vec![
            ("db1", ip("10.200.1.20")),
            ("redis1", ip("10.200.1.21")),
            ("rppam-vip", ip("10.200.1.10")),
            ("rppam1", ip("10.200.1.11")),
            ("rppam2", ip("10.200.1.12")),
            ("rppam3", ip("10.200.1.13")),
        ]
    );
    assert_eq!(inv.hosts["redis1"].vars["ansible_port"], serde_json::json!(6379));
    assert!(inv.hosts["ws01"].groups.contains("workstations") && !inv.hosts["ws01"].groups.contains("rppam"));
}
