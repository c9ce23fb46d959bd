//! Ansible inventories: which hosts exist, which groups they belong to, and
//! the addresses the monitor can attribute their traffic to.
//!
//! Three input forms are read: the INI format, the YAML format, and the JSON
//! that `ansible-inventory --list` prints (the way to feed a dynamic inventory
//! in). The semantics are Ansible's own (ansible-core 2.19: the `ini` and
//! `yaml` inventory plugins and `InventoryData`), checked against the real
//! `ansible-inventory` by tests/inventory_oracle.rs:
//! - every group other than `all` without a parent becomes a child of `all`;
//! - a host whose only group is `all` is put in `ungrouped`, and a host
//!   declared before any INI section leaves `ungrouped` if another group names it;
//! - a host's variables are `all`'s, then its groups' ordered by (depth,
//!   `ansible_group_priority`, name), then its own, later ones replacing.
//!
//! Not read: `group_vars/` and `host_vars/` directories (a warning says so
//! when they sit next to the file), inventory plugins and scripts, vaults.

mod address;
mod builder;
mod ini;
mod list_json;
mod pattern;
mod pyliteral;
mod shlex;
mod yaml;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub hosts: BTreeMap<String, Host>,
    pub groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    /// Every group the host is in, including ancestors via children, and "all".
    pub groups: BTreeSet<String>,
    /// The effective `ansible_host` (from the host or any of its groups).
    pub ansible_host: Option<String>,
    /// `ansible_host` if it parses as an IP address, else the host name if it
    /// is an IP literal; empty otherwise (names are not resolved).
    pub addresses: Vec<IpAddr>,
    /// The merged variables, as `ansible-inventory --list` shows them.
    pub vars: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// Hosts named directly in this group (not through children).
    pub hosts: BTreeSet<String>,
    pub children: BTreeSet<String>,
    /// The group's own variables (not inherited ones).
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// A variable with the line that set it, so that warnings about it can point
/// there. Here, not in `builder`, so that `address` (which `builder` calls)
/// can read it without importing `builder` back.
#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub value: serde_json::Value,
    pub line: Option<usize>,
}

/// Something in the inventory that was skipped or that the monitor cannot use.
#[derive(Debug, Clone)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", Location::new(&self.file, self.line, None), self.message)
    }
}

/// `file`, `file:line` or `file:line:column`, for messages.
struct Location<'a> {
    file: &'a Path,
    line: Option<usize>,
    column: Option<usize>,
}

impl<'a> Location<'a> {
    fn new(file: &'a Path, line: Option<usize>, column: Option<usize>) -> Self {
        Location { file, line, column }
    }
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{}: cannot read the inventory: {source}; check the path and its permissions", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not a well-formed inventory.
    #[error("{}: {message}; {hint}", Location::new(file, *line, *column))]
    Syntax { file: PathBuf, line: Option<usize>, column: Option<usize>, message: String, hint: String },
    /// `:children` (or YAML `children:`) entries that make a group its own descendant.
    #[error("{}: group {:?} cannot be a child of {:?}: that closes the loop {}; remove one of these children entries",
        Location::new(file, *line, None), .cycle[0], .cycle[.cycle.len() - 2], .cycle.join(" -> "))]
    Cycle {
        file: PathBuf,
        line: Option<usize>,
        /// The loop, starting and ending with the same group.
        cycle: Vec<String>,
    },
    /// An INI section refers to a group that no `[group]` or `[group:children]` declares.
    #[error("{}: section [{section}] refers to group {group:?}, which is never declared; add a [{group}] section (it may be empty) or fix the name",
        Location::new(file, Some(*line), None))]
    UndefinedGroup { file: PathBuf, line: usize, section: String, group: String },
    /// The inventory stands for more hosts than [`LoadOptions::max_hosts`]
    /// allows; found before the names were written out.
    #[error("{}: {what}; if the inventory really is that large, raise the limit with --max-inventory-hosts N (docs/inventory.md), otherwise {fix}",
        Location::new(file, *line, None))]
    TooManyHosts {
        file: PathBuf,
        line: Option<usize>,
        /// What goes over, e.g. `host range "h[0:999999]" stands for
        /// 1,000,000 hosts, more than the limit of 65,536 hosts per inventory`.
        what: String,
        /// What to do when the inventory is not meant to be that large.
        fix: &'static str,
        /// The host limit in force.
        limit: usize,
    },
}

/// How many hosts an inventory may hold unless told otherwise: a /16 full
/// of hosts, far more than one cluster's inventory, and little enough to
/// load and compile in under a second (docs/inventory.md has the figures).
pub const DEFAULT_MAX_HOSTS: usize = 65_536;

/// How many times, on average, each host may be listed (once per group
/// that names it) before the inventory is refused: bounds the work of a
/// file that repeats one large range under many groups.
pub const LISTINGS_PER_HOST: usize = 8;

/// Limits applied while an inventory is read, the same for every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Distinct hosts the inventory may hold; a single host range may not
    /// stand for more either, and hosts may be listed at most
    /// [`LISTINGS_PER_HOST`] times as often in all.
    pub max_hosts: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_hosts: DEFAULT_MAX_HOSTS }
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl InventoryError {
    pub fn line(&self) -> Option<usize> {
        match self {
            InventoryError::Read { .. } => None,
            InventoryError::Syntax { line, .. }
            | InventoryError::Cycle { line, .. }
            | InventoryError::TooManyHosts { line, .. } => *line,
            InventoryError::UndefinedGroup { line, .. } => Some(*line),
        }
    }

    pub(crate) fn syntax(
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        InventoryError::Syntax {
            file: file.to_path_buf(),
            line,
            column: None,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

pub type Loaded = (Inventory, Vec<Warning>);

/// The input forms `load` tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ini,
    Yaml,
    ListJson,
}

impl Inventory {
    /// Reads an inventory file in any of the three forms. `.yml`/`.yaml` are
    /// YAML, `.json` is `ansible-inventory --list` output (or a YAML
    /// inventory written as JSON), other extensions are INI; a file without
    /// extension is tried as YAML first and read as INI when it is not a YAML
    /// mapping, the order Ansible uses.
    pub fn load(path: &Path) -> Result<Loaded, InventoryError> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// [`Inventory::load`] with the given limits.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Loaded, InventoryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| InventoryError::Read { file: path.to_path_buf(), source })?;
        let (inventory, mut warnings) = Self::parse(detect_format(path, &text), &text, path, opts)?;
        if let Some(dir) = path.parent() {
            for sub in ["group_vars", "host_vars"] {
                let d = dir.join(sub);
                if d.is_dir() {
                    warnings.push(Warning {
                        file: d.clone(),
                        line: None,
                        message: format!(
                            "Ansible reads variables from {sub}/ next to the inventory, the monitor does not; \
                             if it sets ansible_host, run `ansible-inventory -i {} --list > inventory.json` and load that instead",
                            path.display()
                        ),
                    });
                }
            }
        }
        Ok((inventory, warnings))
    }

    /// Reads `text` (from `file`, for messages) in the given form.
    pub fn parse(
        format: Format,
        text: &str,
        file: &Path,
        opts: &LoadOptions,
    ) -> Result<Loaded, InventoryError> {
        match format {
            Format::Ini => ini::parse(text, file, opts),
            Format::Yaml => yaml::parse(text, file, opts),
            Format::ListJson => list_json::parse(text, file, opts),
        }
    }

    pub fn from_ini(text: &str, file: &Path) -> Result<Loaded, InventoryError> {
        Self::parse(Format::Ini, text, file, &LoadOptions::default())
    }

    pub fn from_yaml(text: &str, file: &Path) -> Result<Loaded, InventoryError> {
        Self::parse(Format::Yaml, text, file, &LoadOptions::default())
    }

    pub fn from_list_json(text: &str, file: &Path) -> Result<Loaded, InventoryError> {
        Self::parse(Format::ListJson, text, file, &LoadOptions::default())
    }

    /// Hosts in `group` directly or through its children.
    pub fn hosts_in_group<'a>(&'a self, group: &str) -> impl Iterator<Item = &'a Host> + 'a {
        let group = group.to_string();
        self.hosts.values().filter(move |h| h.groups.contains(&group))
    }

    /// host -> every group it is in (transitively, including "all").
    pub fn host_groups(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.hosts.values().map(|h| (h.name.clone(), h.groups.clone())).collect()
    }
}

/// Which reader `Inventory::load` uses for a file.
pub fn detect_format(path: &Path, text: &str) -> Format {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yml" | "yaml") => Format::Yaml,
        Some("json") => {
            if list_json::looks_like_list_output(text) {
                Format::ListJson
            } else {
                Format::Yaml
            }
        }
        Some(_) => Format::Ini,
        None => {
            if list_json::looks_like_list_output(text) {
                Format::ListJson
            } else if yaml::is_mapping_document(text) {
                Format::Yaml
            } else {
                Format::Ini
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_extension_then_content() {
        let ini = "[web]\nw1 ansible_host=10.0.0.1\n";
        let yaml = "all:\n  hosts:\n    w1:\n";
        let list = r#"{"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}}"#;
        let yaml_as_json = r#"{"all": {"hosts": {"w1": null}}}"#;
        let cases = [
            ("inv.yml", yaml, Format::Yaml),
            ("inv.YAML", yaml, Format::Yaml),
            ("inv.ini", ini, Format::Ini),
            ("inv.cfg", ini, Format::Ini),
            ("inv.json", list, Format::ListJson),
            ("inv.json", yaml_as_json, Format::Yaml),
            ("hosts", ini, Format::Ini),
            ("hosts", yaml, Format::Yaml),
            ("hosts", list, Format::ListJson),
        ];
        for (name, text, want) in cases {
            assert_eq!(detect_format(Path::new(name), text), want, "{name}: {text:?}");
        }
    }

    #[test]
    fn unreadable_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.ini");
        let e = Inventory::load(&missing).expect_err("missing file");
        assert!(matches!(e, InventoryError::Read { .. }), "{e:?}");
        assert!(e.to_string().starts_with(&format!("{}: cannot read", missing.display())), "{e}");
        assert!(Inventory::load(dir.path()).is_err(), "a directory is not an inventory file");
    }

    #[test]
    fn group_vars_next_to_the_file_are_reported_not_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("inv.ini");
        std::fs::write(&file, "[web]\nw1 ansible_host=10.0.0.1\n").expect("write inventory");
        std::fs::create_dir(dir.path().join("group_vars")).expect("mkdir");
        let (inv, warnings) = Inventory::load(&file).expect("loads");
        assert_eq!(inv.hosts_in_group("web").map(|h| h.name.as_str()).collect::<Vec<_>>(), ["w1"]);
        assert!(warnings.iter().any(|w| w.message.contains("group_vars/")), "{warnings:?}");
    }

    fn limited(max_hosts: usize) -> LoadOptions {
        LoadOptions { max_hosts }
    }

    fn too_many(format: Format, text: &str, opts: &LoadOptions) -> InventoryError {
        let file = Path::new("inv");
        match Inventory::parse(format, text, file, opts) {
            Err(e @ InventoryError::TooManyHosts { .. }) => e,
            other => panic!("{text:?} should be over the limit, got {other:?}"),
        }
    }

    #[test]
    fn a_range_over_the_limit_fails_at_once_naming_file_line_and_range() {
        let start = std::time::Instant::now();
        let e = too_many(Format::Ini, "[web]\nhost[0:9999999999]\n", &LoadOptions::default());
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
        assert_eq!(e.line(), Some(2));
        assert_eq!(
            e.to_string(),
            "inv:2: host range \"host[0:9999999999]\" stands for 10,000,000,000 hosts, more than the limit of \
             65,536 hosts per inventory; if the inventory really is that large, raise the limit with \
             --max-inventory-hosts N (docs/inventory.md), otherwise fix the range"
        );
        // Nested ranges in one pattern multiply; YAML goes through the same check.
        let e =
            too_many(Format::Yaml, "all:\n  hosts:\n    \"h[0:999]-[0:999]\":\n", &LoadOptions::default());
        assert_eq!(e.line(), Some(3), "{e}");
        assert!(e.to_string().contains("stands for 1,000,000 hosts"), "{e}");
    }

    #[test]
    fn many_ranges_summing_past_the_limit_fail_too() {
        let text = "[a]\na[1:40]\n[b]\nb[1:40]\n[c]\nc[1:40]\n";
        let e = too_many(Format::Ini, text, &limited(100));
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(e.to_string().contains("host \"c21\" would be host number 101 of the inventory"), "{e}");
        // ansible-inventory --list JSON names hosts one by one: same limit.
        let json = r#"{"_meta": {"hostvars": {}}, "web": {"hosts": ["a", "b", "c"]}}"#;
        let e = too_many(Format::ListJson, json, &limited(2));
        assert!(e.to_string().contains("host \"c\" would be host number 3"), "{e}");
    }

    #[test]
    fn exactly_the_limit_is_fine_and_repeats_count_once() {
        let text = "[a]\nh[1:50]\nh[51:100]\n[b]\nh[1:100]\n";
        let (inv, _) =
            Inventory::parse(Format::Ini, text, Path::new("inv"), &limited(100)).expect("at the limit");
        assert_eq!(inv.hosts.len(), 100);
        assert_eq!(inv.hosts_in_group("b").count(), 100);
    }

    #[test]
    fn one_range_repeated_under_many_groups_is_bounded_too() {
        let text: String = (0..=LISTINGS_PER_HOST).map(|g| format!("[g{g}]\nh[1:100]\n")).collect();
        let e = too_many(Format::Ini, &text, &limited(100));
        assert_eq!(e.line(), Some(2 * LISTINGS_PER_HOST + 2), "{e}");
        let listed = format!("listed {} times", thousands((LISTINGS_PER_HOST as u128 + 1) * 100));
        assert!(e.to_string().contains(&listed), "{e}");
    }
}
