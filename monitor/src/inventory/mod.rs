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
}

impl InventoryError {
    pub fn line(&self) -> Option<usize> {
        match self {
            InventoryError::Read { .. } => None,
            InventoryError::Syntax { line, .. } | InventoryError::Cycle { line, .. } => *line,
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
        let text = std::fs::read_to_string(path)
            .map_err(|source| InventoryError::Read { file: path.to_path_buf(), source })?;
        let (inventory, mut warnings) = match detect_format(path, &text) {
            Format::Ini => Self::from_ini(&text, path)?,
            Format::Yaml => Self::from_yaml(&text, path)?,
            Format::ListJson => Self::from_list_json(&text, path)?,
        };
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

    pub fn from_ini(text: &str, file: &Path) -> Result<Loaded, InventoryError> {
        ini::parse(text, file)
    }

    pub fn from_yaml(text: &str, file: &Path) -> Result<Loaded, InventoryError> {
        yaml::parse(text, file)
    }

    pub fn from_list_json(text: &str, file: &Path) -> Result<Loaded, InventoryError> {
        list_json::parse(text, file)
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
}
