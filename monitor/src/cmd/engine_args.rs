//! The options that choose what a run checks against (matrix, inventory,
//! profiles, variables), shared by `check` and `run`, and the one place that
//! turns them into an [`Engine`] (also on SIGHUP).

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{bail, Context};

use crate::{
    engine::{Engine, Selection},
    inventory::{Inventory, LoadOptions, DEFAULT_MAX_HOSTS},
    matrix::Matrix,
};

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
    /// Matrix profile to activate; repeat for several, applied in order.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Matrix variable, `NAME=VALUE`; `bind:FQDN=IP[,IP]` gives a DNS name its addresses.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

/// A compiled engine and the warnings met on the way, each naming its file.
pub struct Compiled {
    pub engine: Engine,
    pub warnings: Vec<String>,
    /// What the engine was compiled from, kept to recompile it when DNS
    /// answers bind names (see `dns::live`).
    pub matrix: Matrix,
    pub inventory: Option<Inventory>,
    pub selection: Selection,
}

impl EngineArgs {
    /// Loads the matrix and the inventory and compiles them for the selected
    /// profiles and variables. Errors name the file, line and column.
    pub fn compile(&self) -> anyhow::Result<Compiled> {
        let (matrix, matrix_warnings) = Matrix::load(&self.matrix)?;
        let mut warnings: Vec<String> = matrix_warnings.iter().map(|w| w.to_string()).collect();
        let inventory = match &self.inventory {
            Some(path) => {
                let (inv, inv_warnings) = Inventory::load_with(path, &self.inventory_limits.options())?;
                warnings.extend(inv_warnings.iter().map(|w| format!("warning: {w}")));
                Some(inv)
            }
            None => None,
        };
        let mut vars = BTreeMap::new();
        for (k, v) in &self.vars {
            if vars.insert(k.clone(), v.clone()).is_some() {
                bail!("--set {k} is given twice: give each variable once");
            }
        }
        let selection = Selection { profiles: self.profiles.clone(), vars };
        let engine = Engine::new(&matrix, inventory.as_ref(), &selection)
            .with_context(|| format!("{}: cannot compile the matrix", self.matrix.display()))?;
        warnings.extend(engine.warnings().iter().map(|w| format!("warning: {w}")));
        Ok(Compiled { engine, warnings, matrix, inventory, selection })
    }
}

pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
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
