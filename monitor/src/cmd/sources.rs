//! The options that choose what a command checks against (matrix,
//! inventory, profiles, variables), as clap sees them, and their one
//! conversion into the domain's [`Sources`] and [`Selection`]: `check`,
//! `run`, `matrix show` and `matrix lint` flatten the same
//! [`SelectionArgs`], so `--profile` and `--set` mean the same everywhere.

use std::{collections::BTreeMap, io::Write, path::PathBuf};

use anyhow::{bail, Context};

use crate::{
    engine::Sources,
    host_paths::HostPaths,
    inventory::{Inventory, LoadOptions, DEFAULT_MAX_HOSTS},
    matrix::{Matrix, Selection},
};

/// The matrix, the inventory and the selection of `check` and `run`.
#[derive(Clone, Debug, clap::Args)]
pub struct EngineArgs {
    /// The port matrix (YAML; docs/matrix.md).
    #[arg(long, value_name = "FILE")]
    pub matrix: PathBuf,
    /// Ansible inventory (INI, YAML or `ansible-inventory --list` JSON) placing services on hosts.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub inventory_limits: InventoryLimits,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

impl EngineArgs {
    /// What to compile; an error for a variable given twice.
    pub fn sources(&self) -> anyhow::Result<Sources> {
        Ok(Sources {
            matrix: self.matrix.clone(),
            inventory: self.inventory.clone(),
            inventory_limits: self.inventory_limits.options(),
            selection: self.selection.selection()?,
        })
    }
}

/// [`EngineArgs`] with the matrix optional, for a command that only draws
/// with it (`monitor report --format html`).
#[derive(Clone, Debug, clap::Args)]
pub struct OptionalEngineArgs {
    /// The port matrix (YAML; docs/matrix.md).
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
    /// Ansible inventory (INI, YAML or `ansible-inventory --list` JSON) placing services on hosts.
    #[arg(long, value_name = "FILE", requires = "matrix")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub inventory_limits: InventoryLimits,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

impl OptionalEngineArgs {
    /// What to compile, when a matrix is given.
    pub fn sources(&self) -> anyhow::Result<Option<Sources>> {
        let Some(matrix) = &self.matrix else { return Ok(None) };
        EngineArgs {
            matrix: matrix.clone(),
            inventory: self.inventory.clone(),
            inventory_limits: self.inventory_limits,
            selection: self.selection.clone(),
        }
        .sources()
        .map(Some)
    }
}

/// Profiles and variables.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SelectionArgs {
    /// Matrix profile to activate (repeatable, applied in order), e.g. --profile ha.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Matrix variable (repeatable, each once), e.g. --set grpcPortBase=8001; `bind:FQDN=IP[,IP]`
    /// gives a DNS name its addresses.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub sets: Vec<(String, String)>,
}

impl SelectionArgs {
    /// The selection; a variable set twice is an error (which one was meant?).
    pub fn selection(&self) -> anyhow::Result<Selection> {
        let mut vars = BTreeMap::new();
        for (k, v) in &self.sets {
            if vars.insert(k.clone(), v.clone()).is_some() {
                bail!("--set {k} is given twice: give each variable once");
            }
        }
        Ok(Selection { profiles: self.profiles.clone(), vars })
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.sets.is_empty()
    }
}

/// `NAME=VALUE`, both trimmed; the name may not be empty.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// The inventory host a command is about (`matrix firewall`, `firewall
/// audit`, `probe`), with the inventory and the selection its documented
/// paths come from.
#[derive(Clone, Debug, clap::Args)]
pub struct HostArgs {
    /// Ansible inventory (INI, YAML or `ansible-inventory --list` JSON) placing services on hosts.
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    #[command(flatten)]
    pub inventory_limits: InventoryLimits,
    /// The inventory host: whose firewall is written or audited, or that probes.
    #[arg(long, value_name = "NAME")]
    pub host: String,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

impl HostArgs {
    /// The documented paths to and from the host under `matrix`; the
    /// inventory's warnings go to `err`.
    pub fn host_paths(&self, matrix: &Matrix, err: &mut dyn Write) -> anyhow::Result<(HostPaths, Selection)> {
        let sel = self.selection.selection()?;
        let (inventory, warnings) =
            Inventory::load_with(&self.inventory, &self.inventory_limits.options())
                .with_context(|| format!("cannot load inventory {}", self.inventory.display()))?;
        for w in &warnings {
            writeln!(err, "warning: {w}")?;
        }
        let origin = self.inventory.display().to_string();
        Ok((HostPaths::compute(matrix, &inventory, &origin, &sel, &self.host)?, sel))
    }
}

/// The limits on what an inventory may expand to, for every command that
/// loads one (docs/inventory.md).
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct InventoryLimits {
    /// Most hosts an inventory may hold (a host range may not stand for more); raise it for a larger inventory.
    #[arg(long = "max-inventory-hosts", value_name = "N", default_value_t = DEFAULT_MAX_HOSTS)]
    pub max_hosts: usize,
}

impl InventoryLimits {
    pub fn options(&self) -> LoadOptions {
        LoadOptions { max_hosts: self.max_hosts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_set_twice_is_an_error_and_values_are_trimmed() {
        let args = |sets: &[(&str, &str)]| SelectionArgs {
            profiles: vec!["ha".into()],
            sets: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let e = args(&[("db", "mssql"), ("db", "postgres")]).selection().unwrap_err().to_string();
        assert_eq!(e, "--set db is given twice: give each variable once");
        let s = args(&[("db", "mssql"), ("grpcPortBase", "8001")]).selection().unwrap();
        assert_eq!(s.profiles, ["ha"]);
        assert_eq!(s.vars.get("db").map(String::as_str), Some("mssql"));
        assert_eq!(parse_key_value(" db = mssql "), Ok(("db".into(), "mssql".into())));
        assert!(parse_key_value("novalue").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_key_value("=x").is_err());
    }
}
