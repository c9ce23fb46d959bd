use std::path::{Path, PathBuf};

use super::Selection;
use super::*;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rp-pam")
}

fn load(yaml: &str) -> Result<(Matrix, Vec<Warning>), MatrixError> {
    Matrix::from_str(yaml, "t.yaml", &example_dir())
}

/// The single error of a bad file, as (line, col, message).
fn error_of(yaml: &str) -> (usize, usize, String) {
    match load(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(MatrixError::Invalid(d)) => {
            assert_eq!(d.len(), 1, "expected exactly one error, got: {d:#?}");
            let d = &d[0];
            assert_eq!(&*d.pos.file, "t.yaml");
            (d.pos.line, d.pos.col, d.message.clone())
        }
        Err(e) => panic!("expected a positioned error, got {e}"),
    }
}

const HEAD: &str = "version: 1\nservices:\n  web: { group: web }\n  db: { group: db }\n";

fn sel(profiles: &[&str], vars: &[(&str, &str)]) -> Selection {
    Selection {
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[test]
fn the_rp_pam_example_loads_without_warnings() {
    let (m, w) = Matrix::load(&example_dir().join("matrix.yaml")).expect("example must load");
    assert!(w.is_empty(), "example must lint clean: {w:#?}");
    assert_eq!(m.rules.len(), 21);
    assert_eq!(m.exposures.len(), 4);
    let graph = &m.services["microsoft-graph"];
    let nets: Vec<_> = graph
        .placements
        .iter()
        .filter_map(|p| match &p.kind {
            PlacementKind::Prefixes { nets, .. } => Some(nets.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(nets.len(), 4, "the AzureActiveDirectory tag has four prefixes in the fixture");
    assert!(nets.contains(&"2603:1006:2000::/48".parse().unwrap()));
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let (line, col, msg) = error_of("version: 1\nrules:\n  - from: [a, b\n    to: c\n");
    assert_eq!(line, 4, "{msg}");
    assert!(col >= 1);
    assert!(msg.starts_with("invalid YAML"), "{msg}");
    let (line, _, msg) = error_of("version: 1\nversion: 2\n");
    assert_eq!(line, 2);
    assert!(msg.contains("duplicated key"), "{msg}");
}

#[test]
fn unknown_service_in_a_rule_points_at_the_name() {
    let (line, col, msg) =
        error_of(&format!("{HEAD}rules:\n  - from: web\n    to: [db, dbb]\n    port: 5432\n"));
    assert_eq!((line, col), (7, 14), "{msg}");
    assert!(msg.contains("unknown service or zone `dbb`"), "{msg}");
    assert!(msg.contains("define it under `services:`"), "{msg}");
}

#[test]
fn reversed_port_range_is_an_error_with_the_fix() {
    let (line, col, msg) =
        error_of(&format!("{HEAD}rules:\n  - from: web\n    to: db\n    ports: 7012-7001\n"));
    assert_eq!((line, col), (8, 12), "{msg}");
    assert!(msg.contains("bad port range 7012-7001") && msg.contains("write 7001-7012"), "{msg}");
}

#[test]
fn out_of_range_port_is_an_error() {
    let (line, _, msg) =
        error_of(&format!("{HEAD}rules:\n  - from: web\n    to: db\n    ports: [22, 70000]\n"));
    assert_eq!(line, 8);
    assert!(msg.contains("\"70000\" is not a number from 1 to 65535"), "{msg}");
}

#[test]
fn undefined_variable_is_an_error() {
    let (line, col, msg) = error_of(&format!(
        "{HEAD}rules:\n  - from: web\n    to: db\n    ports: \"${{base}}-${{base+11}}\"\n"
    ));
    assert_eq!((line, col), (8, 12), "{msg}");
    assert!(msg.contains("undefined variable `base`"), "{msg}");
}

#[test]
fn unknown_profile_in_when_is_an_error() {
    let yaml = format!(
        "{HEAD}profiles:\n  ha: {{}}\nrules:\n  - from: web\n    to: db\n    port: 5432\n    when: hha\n"
    );
    let (line, col, msg) = error_of(&yaml);
    assert_eq!((line, col), (11, 11), "{msg}");
    assert!(msg.contains("unknown profile or variable `hha`") && msg.contains("profiles: ha"), "{msg}");
}

#[test]
fn unknown_keys_list_the_allowed_ones() {
    let (line, col, msg) =
        error_of(&format!("{HEAD}rules:\n  - from: web\n    to: db\n    port: 1\n    prot: udp\n"));
    assert_eq!((line, col), (9, 5), "{msg}");
    assert!(msg.contains("unknown key `prot`") && msg.contains("proto"), "{msg}");
}

#[test]
fn missing_version_and_bad_proto() {
    let (line, _, msg) = error_of("rules: []\n");
    assert_eq!(line, 1);
    assert!(msg.contains("missing `version: 1`"), "{msg}");
    let (line, col, msg) =
        error_of(&format!("{HEAD}rules:\n  - from: web\n    to: db\n    port: 1\n    proto: sctp\n"));
    assert_eq!((line, col), (9, 12), "{msg}");
    assert!(msg.contains("use tcp, udp, both or icmp"), "{msg}");
}

#[test]
fn icmp_takes_no_ports_and_tcp_needs_them() {
    let (line, _, msg) =
        error_of(&format!("{HEAD}rules:\n  - from: web\n    to: db\n    proto: icmp\n    port: 1\n"));
    assert_eq!(line, 9);
    assert!(msg.contains("icmp has no ports"), "{msg}");
    let (line, col, msg) = error_of(&format!("{HEAD}rules:\n  - from: web\n    to: db\n"));
    assert_eq!((line, col), (6, 5), "{msg}");
    assert!(msg.contains("needs `ports:`"), "{msg}");
}

#[test]
fn bad_cidr_and_host_bits() {
    let (line, col, msg) = error_of(&format!("{HEAD}zones:\n  lan: [10.0.0.0/33]\nrules: []\n"));
    assert_eq!((line, col), (6, 9), "{msg}");
    assert!(msg.contains("not a CIDR"), "{msg}");
    let (_, _, msg) = error_of(&format!("{HEAD}zones:\n  lan: [10.0.1.5/24]\nrules: []\n"));
    assert!(msg.contains("did you mean 10.0.1.0/24"), "{msg}");
}

#[test]
fn duplicate_ids_are_errors() {
    let yaml = format!(
        "{HEAD}rules:\n  - {{ id: a, from: web, to: db, port: 1 }}\n  - {{ id: a, from: web, to: db, port: 2 }}\n"
    );
    let (line, _, msg) = error_of(&yaml);
    assert_eq!(line, 7);
    assert!(msg.contains("duplicate id `a` (first used at t.yaml:6:"), "{msg}");
}

#[test]
fn condition_syntax_errors_point_at_the_condition() {
    let yaml = format!(
        "{HEAD}profiles:\n  ha: {{}}\nrules:\n  - {{ from: web, to: db, port: 1, when: \"ha &&\" }}\n"
    );
    let (line, col, msg) = error_of(&yaml);
    assert_eq!((line, col), (8, 41), "{msg}");
    assert!(msg.contains("ends early"), "{msg}");
}

#[test]
fn prefixes_errors_point_at_file_or_path() {
    let svc = |file: &str, path: &str| {
        format!(
            "version: 1\nservices:\n  az:\n    prefixes:\n      file: {file}\n      path: \"{path}\"\nrules:\n  - {{ from: az, to: az, port: 1 }}\n"
        )
    };
    let (line, _, msg) = error_of(&svc("missing.json", "$.values"));
    assert_eq!(line, 5);
    assert!(msg.contains("cannot read prefixes file"), "{msg}");
    let (line, _, msg) = error_of(&svc("azure-service-tags.json", "$.values[?@.name=="));
    assert_eq!(line, 6);
    assert!(msg.contains("bad JSONPath"), "{msg}");
    let (line, _, msg) =
        error_of(&svc("azure-service-tags.json", "$.values[?@.name=='Nope'].properties.addressPrefixes"));
    assert_eq!(line, 6);
    assert!(msg.contains("selects nothing"), "{msg}");
    let (_, _, msg) = error_of(&svc("azure-service-tags.json", "$.values[*].properties.networkFeatures"));
    assert!(msg.contains("\"API\"") && msg.contains("not a CIDR"), "{msg}");
}

#[test]
fn all_errors_are_reported_at_once() {
    let yaml = format!("{HEAD}rules:\n  - {{ from: nope, to: db, port: 1 }}\n  - {{ from: web, to: db, port: 2, when: x }}\n");
    match load(&yaml) {
        Err(MatrixError::Invalid(d)) => {
            assert_eq!(d.len(), 2, "{d:#?}");
            assert_eq!((d[0].pos.line, d[1].pos.line), (6, 7));
            assert_eq!(d[0].to_string().split(": error: ").count(), 2, "file:line:col: error: message");
        }
        other => panic!("expected two errors, got {other:?}"),
    }
}

#[test]
fn grpc_port_base_shifts_the_whole_range() {
    let (m, _) = Matrix::load(&example_dir().join("matrix.yaml")).unwrap();
    let ports_of = |s: &Selection, id: &str| {
        let a = m.activate(s).unwrap();
        m.expand_rules(&a, false).unwrap().into_iter().find(|r| r.id == id).unwrap().ports
    };
    assert_eq!(ports_of(&sel(&[], &[]), "grpc-local"), vec![(7001, 7012)]);
    assert_eq!(ports_of(&sel(&[], &[("grpcPortBase", "8001")]), "grpc-local"), vec![(8001, 8012)]);
    let a = m.activate(&sel(&["ha"], &[("grpcPortBase", "8001")])).unwrap();
    let x = m.expand_exposures(&a, true).unwrap();
    let grpc = x.iter().find(|x| x.id == "grpc-cluster-only").unwrap();
    assert_eq!(grpc.ports, vec![(8001, 8012)], "exposures shift too");
    let e = m
        .activate(&sel(&[], &[("grpcPortBase", "65530")]))
        .and_then(|a| m.expand_rules(&a, true))
        .unwrap_err();
    assert!(e.to_string().contains("matrix.yaml:164:12: error: port \"65541\""), "{e}");
}

#[test]
fn profiles_and_variables_select_rules() {
    let (m, _) = Matrix::load(&example_dir().join("matrix.yaml")).unwrap();
    let ids = |s: Selection| -> Vec<String> {
        let a = m.activate(&s).unwrap();
        m.expand_rules(&a, true).unwrap().into_iter().map(|r| r.rule_id).collect()
    };
    let single = ids(sel(&[], &[]));
    assert!(single.contains(&"db-postgres-local".into()) && !single.contains(&"redis".into()));
    assert!(single.contains(&"lvs-checkin".into()) && !single.contains(&"ldaps".into()));
    let ha = ids(sel(&["ha", "ad"], &[("db", "mssql")]));
    for want in ["redis", "heartbeat", "grpc-inter-node", "db-mssql", "ldaps", "lb-to-nodes"] {
        assert!(ha.contains(&want.to_string()), "{want} missing under ha: {ha:?}");
    }
    assert!(!ha.contains(&"db-postgres".into()) && !ha.contains(&"db-mssql-local".into()));
    let gapped = ids(sel(&["air-gapped", "ai", "entra"], &[]));
    assert!(gapped.contains(&"ai-ollama".into()));
    for gone in ["lvs-checkin", "ai-provider", "entra-graph"] {
        assert!(!gapped.contains(&gone.to_string()), "{gone} must be off when air-gapped");
    }
}

#[test]
fn selection_errors_name_what_exists() {
    let (m, _) = Matrix::load(&example_dir().join("matrix.yaml")).unwrap();
    let e = m.activate(&sel(&["hha"], &[])).unwrap_err().to_string();
    assert!(e.contains("unknown profile `hha`") && e.contains("air-gapped"), "{e}");
    let e = m.activate(&sel(&[], &[("grpcBase", "1")])).unwrap_err().to_string();
    assert!(e.contains("--set grpcBase: no such variable") && e.contains("grpcPortBase"), "{e}");
    let e = m.activate(&sel(&[], &[("bind:lvs.ravenphyre.net", "x")])).unwrap_err().to_string();
    assert!(e.contains("not an IP address"), "{e}");
    let a = m.activate(&sel(&[], &[("bind:LVS.ravenphyre.net.", "192.0.2.1, 192.0.2.2")])).unwrap();
    assert_eq!(a.bindings["lvs.ravenphyre.net"].len(), 2);
}

#[test]
fn profiles_set_variables_and_set_overrides_them() {
    let yaml = format!(
        "{HEAD}variables:\n  db: postgres\nprofiles:\n  legacy:\n    set: {{ db: mssql }}\n  modern:\n    set: {{ db: postgres }}\nrules:\n  - {{ id: pg, from: web, to: db, port: 5432, when: db == postgres }}\n  - {{ id: ms, from: web, to: db, port: 1433, when: db == mssql }}\n"
    );
    let (m, w) = load(&yaml).unwrap();
    assert!(w.is_empty(), "{w:#?}");
    let ids = |s: Selection| -> Vec<String> {
        m.expand_rules(&m.activate(&s).unwrap(), true).unwrap().into_iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(sel(&[], &[])), vec!["pg"]);
    assert_eq!(ids(sel(&["legacy"], &[])), vec!["ms"]);
    assert_eq!(ids(sel(&["legacy"], &[("db", "postgres")])), vec!["pg"], "--set wins over profiles");
    let e = m.activate(&sel(&["legacy", "modern"], &[])).unwrap_err().to_string();
    assert!(e.contains("profiles `legacy` and `modern` set `db`"), "{e}");
}

#[test]
fn generated_ids_and_expansion_suffixes() {
    let yaml = format!(
        "{HEAD}zones:\n  lan: [10.0.0.0/8]\nrules:\n  - {{ from: [web, lan], to: db, ports: [5432, 1433] }}\n  - {{ from: web, to: db, port: 53, proto: both }}\n  - {{ from: lan, to: db, proto: icmp }}\n  - {{ from: lan, to: web, port: 80 }}\n  - {{ from: db, to: web, port: 80 }}\n"
    );
    let (m, w) = load(&yaml).unwrap();
    let ids: Vec<&str> = m.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["db-1433,5432", "db-53-both", "db-icmp", "web-80", "web-80-2"]);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].message.contains("generated id `web-80` is taken") && w[0].pos.line == 12, "{:?}", w[0]);
    let ex = m.expand_rules(&m.activate(&Selection::default()).unwrap(), false).unwrap();
    let ex_ids: Vec<&str> = ex.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ex_ids,
        vec![
            "db-1433,5432/web",
            "db-1433,5432/lan",
            "db-53-both/tcp",
            "db-53-both/udp",
            "db-icmp",
            "web-80",
            "web-80-2"
        ]
    );
    assert_eq!(ex[0].ports, vec![(1433, 1433), (5432, 5432)]);
    assert!(ex[4].ports.is_empty());
    assert_eq!(ex[0].provenance, "t.yaml:8");
}

#[test]
fn duplicates_overlaps_and_contradictions_are_warnings() {
    let yaml = format!(
        "{HEAD}profiles:\n  ha: {{}}\nrules:\n  - {{ id: a, from: web, to: db, port: 5432 }}\n  - {{ id: b, from: web, to: db, port: 5432 }}\n  - {{ id: c, from: web, to: db, ports: 5000-5500 }}\n  - {{ id: d, from: web, to: db, port: 5432, when: ha }}\n  - {{ id: e, from: web, to: db, port: 7001, when: ha }}\nexposure:\n  - {{ id: x, to: db, ports: 7000-7010, only_from: [loopback], when: ha }}\n"
    );
    let (_, w) = load(&yaml).unwrap();
    let msgs: Vec<String> = w.iter().map(|d| format!("{}: {}", d.pos.line, d.message)).collect();
    assert_eq!(w.len(), 3, "{msgs:#?}");
    assert!(msgs[0].starts_with("9: rule `b` duplicates rule `a` (t.yaml:8)"), "{msgs:#?}");
    assert!(
        msgs[1].starts_with("10: rule `c` overlaps rule `a`") && msgs[1].contains("port(s) 5432"),
        "{msgs:#?}"
    );
    assert!(
        msgs[2].starts_with("12: rule `e` documents web -> port(s) 7001, but exposure `x` (t.yaml:14) allows them only from loopback (with profile(s) ha)"),
        "{msgs:#?}"
    );
    assert!(w.iter().all(|d| d.severity == Severity::Warning));
}

#[test]
fn unused_definitions_are_warnings() {
    let yaml = "version: 1\nvariables:\n  unused: 1\nprofiles:\n  idle: {}\nservices:\n  lonely: { cidr: 10.0.0.0/8 }\nrules: []\n";
    let (_, w) = load(yaml).unwrap();
    let lines: Vec<usize> = w.iter().map(|d| d.pos.line).collect();
    assert_eq!(lines, vec![3, 5, 7], "{w:#?}");
}

#[test]
fn builtin_names_cannot_be_redefined() {
    let (line, col, msg) = error_of("version: 1\nzones:\n  loopback: [127.0.0.0/8]\nrules: []\n");
    assert_eq!((line, col), (3, 3));
    assert!(msg.contains("built in"), "{msg}");
}

#[test]
fn fqdn_patterns_match_names_below_a_wildcard() {
    let p = FqdnPattern::new("*.microsoft.com").unwrap();
    assert!(p.matches("graph.microsoft.com") && p.matches("a.b.Microsoft.com."));
    assert!(!p.matches("microsoft.com") && !p.matches("evilmicrosoft.com"));
    assert!(FqdnPattern::new("bad name").is_err());
}

#[test]
fn the_json_schema_knows_every_key_the_parser_accepts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/matrix.schema.json");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sorted = |k: &[&str]| {
        let mut v: Vec<String> = k.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(keys(&s), sorted(parse::TOP_KEYS));
    assert_eq!(keys(&s["$defs"]["service"]), sorted(parse::SERVICE_KEYS));
    assert_eq!(keys(&s["$defs"]["rule"]), sorted(parse::RULE_KEYS));
    assert_eq!(keys(&s["$defs"]["exposure"]), sorted(parse::EXPOSURE_KEYS));
}

#[test]
fn an_unquoted_negation_is_explained() {
    let (line, _, msg) = error_of(&format!(
        "{HEAD}profiles:\n  ha: {{}}\nrules:\n  - from: web\n    to: db\n    port: 1\n    when: !ha\n"
    ));
    assert_eq!(line, 11);
    assert!(msg.contains("quote it"), "{msg}");
}

#[test]
fn one_cidr_in_two_zones_is_a_warning() {
    let yaml =
        "version: 1\nzones:\n  a: [10.0.0.0/8]\n  b: [10.0.0.0/8]\nrules:\n  - { from: a, to: b, port: 1 }\n";
    let (_, w) = load(yaml).unwrap();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].pos.line, 4);
    assert!(w[0].message.contains("10.0.0.0/8 is in zones `a` and `b`"), "{}", w[0].message);
}

#[test]
fn odd_inputs_give_positioned_errors_not_panics() {
    let cases = [
        "",
        "# only a comment\n",
        "version: 1\nrules: 5\n",
        "version: 1\nservices: { a: 5 }\n",
        "version: 1\nservices: { a: {} }\n",
        "version: 1\nservices: { a: { cidr: 10.0.0.1 } }\nrules:\n  - { from: [], to: a, port: 1 }\n",
        "version: 1\nservices: { a: { cidr: 10.0.0.1 } }\nrules:\n  - { from: a, to: a, ports: [] }\n",
        "version: 1\nservices: { a: { cidr: 10.0.0.1 } }\nrules:\n  - { from: a, to: a, ports: \"80-\" }\n",
        "version: 1\nservices: { a: { cidr: 10.0.0.1 } }\nrules:\n  - { from: a, to: a, ports: \"-80\" }\n",
        "version: 1\nvariables: { p: x }\nservices: { a: { cidr: 10.0.0.1 } }\nrules:\n  - { from: a, to: a, ports: \"${p+1}\" }\n",
        "version: 1\nservices: { a: { fqdn: \"bad name\" } }\n",
        "version: 1\nbindings: { lvs.example.net: [not-an-ip] }\n",
        "version: 1\nrules:\n  - 7\n",
        "version: 1\n---\nversion: 1\n",
        "- a\n- b\n",
    ];
    for yaml in cases {
        match load(yaml) {
            Err(MatrixError::Invalid(d)) => {
                assert!(!d.is_empty());
                for d in &d {
                    assert!(d.pos.line >= 1 && d.pos.col >= 1, "unpositioned {d:?} for {yaml:?}");
                    assert!(!d.message.is_empty());
                }
            }
            Ok(_) => panic!("{yaml:?} must not load"),
            Err(e) => panic!("{yaml:?}: expected positioned errors, got {e}"),
        }
    }
}

#[test]
fn yaml_anchors_and_aliases_are_followed() {
    let (m, _) = load("version: 1\nservices: { a: &x { cidr: 10.0.0.1 }, b: *x }\nrules: []\n").unwrap();
    assert_eq!(m.services["b"].placements.len(), 1);
}

#[test]
fn fqdn_patterns_list_what_a_dns_cache_should_watch() {
    let (m, _) = Matrix::load(&example_dir().join("matrix.yaml")).unwrap();
    let names: Vec<String> = m.fqdn_patterns().iter().map(|(s, f)| format!("{s}={f}")).collect();
    assert_eq!(
        names,
        vec![
            "ai-providers=api.openai.com",
            "ai-providers=api.anthropic.com",
            "ai-providers=api.x.ai",
            "lvs=lvs.ravenphyre.net",
            "microsoft-graph=graph.microsoft.com",
            "microsoft-graph=login.microsoftonline.com",
        ]
    );
}
