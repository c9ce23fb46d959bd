//! `monitor matrix lint|show|import|firewall`: check a matrix file, list its rules as a
//! selection of profiles and variables expands them, draft one from a document,
//! write a host's firewall from it.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;

use super::sources::{parse_key_value, HostArgs, InventoryLimits, SelectionArgs};
use crate::{
    engine::Engine,
    firewall,
    inventory::Inventory,
    matrix::{format_ports, Matrix, MatrixError, RuleProto, Warning},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a matrix: print `file:line:col: warning|error: message` lines; exit 1 on errors.
    Lint(LintArgs),
    /// Print the rules a selection of profiles and variables expands to.
    Show(ShowArgs),
    /// Turn a vendor's ports/firewall document into a draft matrix (docs/import.md).
    Import(ImportArgs),
    /// Write one inventory host's firewall (nft, firewalld or Windows) from its documented paths (docs/firewall.md).
    Firewall(FirewallArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirewallFormat {
    /// An nftables script: one `table inet monitor_fw`, loadable with `nft -f` (again and again).
    Nft,
    /// `firewall-cmd --permanent` rich rules and port commands, then a reload.
    Firewalld,
    /// PowerShell `New-NetFirewallRule` lines.
    Windows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultPolicy {
    Drop,
    Reject,
    Accept,
}

#[derive(Debug, clap::Args)]
pub struct FirewallArgs {
    /// The matrix file.
    #[arg(value_name = "MATRIX")]
    pub file: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
    #[arg(long, value_enum)]
    pub format: FirewallFormat,
    /// What happens to traffic that no documented path allows (nft: `reject` is a final reject rule under policy drop; Windows blocks for both drop and reject).
    #[arg(long = "default", value_enum, default_value_t = DefaultPolicy::Drop)]
    pub default: DefaultPolicy,
    /// Also filter outbound traffic: allow only the host's documented outbound paths.
    #[arg(long)]
    pub egress: bool,
    /// Resolve DNS names at the other end of a path now, with the system resolver; without it they are commented placeholders.
    #[arg(long)]
    pub resolve: bool,
}

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    pub file: PathBuf,
    /// Also compile against this Ansible inventory and report groups
    /// without hosts, hosts without addresses and unbound names.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub inventory_limits: InventoryLimits,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// `text`: aligned tables; `json`: one object per expanded rule per protocol.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_to(args, &mut stdout.lock(), &mut stderr.lock())
}

/// `run`, writing to the given streams (for tests).
pub fn run_to(args: Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Lint(a) => lint(&a, out),
        Command::Show(a) => show(&a, out, err),
        Command::Import(a) => import(&a, out, err),
        Command::Firewall(a) => firewall(&a, out, err),
    }
}

/// Loads a matrix, printing its errors as `file:line:col: error: ...`.
fn load(path: &Path, out: &mut dyn Write) -> anyhow::Result<Option<(Matrix, Vec<Warning>)>> {
    match Matrix::load(path) {
        Ok(m) => Ok(Some(m)),
        Err(MatrixError::Invalid(diags)) => {
            for d in diags {
                writeln!(out, "{d}")?;
            }
            Ok(None)
        }
        Err(e @ MatrixError::Io { .. }) => {
            writeln!(out, "{}: error: {e}", path.display())?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn lint(a: &LintArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let Some((m, warnings)) = load(&a.file, out)? else { return Ok(ExitCode::from(1)) };
    for w in &warnings {
        writeln!(out, "{w}")?;
    }
    let mut n_warn = warnings.len();
    let sel = a.selection.selection()?;
    let active = match m.activate(&sel) {
        Ok(act) => act,
        Err(e) => {
            writeln!(out, "{}: error: {e}", a.file.display())?;
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(inv_path) = &a.inventory {
        let (inv, _) = Inventory::load_with(inv_path, &a.inventory_limits.options())
            .with_context(|| format!("cannot load inventory {}", inv_path.display()))?;
        let engine = match Engine::new(&m, Some(&inv), &sel) {
            Ok(e) => e,
            Err(e) => {
                writeln!(out, "{e}")?;
                return Ok(ExitCode::from(1));
            }
        };
        for w in engine.warnings() {
            match &w.pos {
                Some(_) => writeln!(out, "{w}")?,
                None => writeln!(out, "{}: warning: {}", inv_path.display(), w.message)?,
            }
        }
        n_warn += engine.warnings().len();
    } else if let Err(e) = m.expand_rules(&active, true) {
        writeln!(out, "{e}")?;
        return Ok(ExitCode::from(1));
    }
    writeln!(
        out,
        "{}: {} rules, {} exposure constraints, {} profiles, {n_warn} warning{}",
        a.file.display(),
        m.rules.len(),
        m.exposures.len(),
        m.profiles.len(),
        if n_warn == 1 { "" } else { "s" }
    )?;
    Ok(if a.deny_warnings && n_warn > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn show(a: &ShowArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let Some((m, warnings)) = load(&a.file, err)? else { return Ok(ExitCode::from(1)) };
    for w in &warnings {
        writeln!(err, "{w}")?;
    }
    let active = m.activate(&a.selection.selection()?)?;
    // Without a selection every rule is listed, whatever its conditions.
    let only_active = !a.selection.is_empty();
    let rules = m.expand_rules(&active, only_active)?;
    let exposures = m.expand_exposures(&active, only_active)?;
    match a.format {
        Format::Json => {
            for r in &rules {
                let j = serde_json::json!({
                    "id": r.id,
                    "source": r.source,
                    "target": r.target,
                    "ports": r.ports.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>(),
                    "proto": r.proto,
                    "when": r.when,
                    "purpose": r.purpose,
                    "provenance": r.provenance,
                    "active": r.active,
                });
                writeln!(out, "{j}")?;
            }
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = rules
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.source.clone(),
                        r.target.clone(),
                        ports_text(&r.ports, r.proto),
                        r.proto.as_str().to_string(),
                        r.when.join(" && "),
                        r.provenance.clone(),
                        r.purpose.clone(),
                    ]
                })
                .collect();
            table(out, &["ID", "FROM", "TO", "PORTS", "PROTO", "WHEN", "WHERE", "PURPOSE"], &rows)?;
            if !exposures.is_empty() {
                writeln!(out)?;
                let rows: Vec<Vec<String>> = exposures
                    .iter()
                    .map(|x| {
                        vec![
                            x.id.clone(),
                            x.target.clone(),
                            ports_text(&x.ports, x.proto),
                            x.proto.as_str().to_string(),
                            x.only_from.join(", "),
                            x.when.join(" && "),
                            x.provenance.clone(),
                        ]
                    })
                    .collect();
                table(out, &["EXPOSURE", "TO", "PORTS", "PROTO", "ONLY FROM", "WHEN", "WHERE"], &rows)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ports_text(p: &[(u16, u16)], proto: RuleProto) -> String {
    if proto == RuleProto::Icmp {
        "-".into()
    } else {
        format_ports(p)
    }
}

/// Left-aligned columns; the last column is not padded.
fn table(out: &mut dyn Write, head: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.to_string() } else { format!("{c:<width$}", width = w[i]) })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The vendor's document: Markdown, HTML, text copied from a page, or a Mermaid flowchart.
    pub doc: PathBuf,
    /// The document's format (the review's is --review).
    #[arg(long, value_enum, default_value_t = crate::import::Format::Auto)]
    pub format: crate::import::Format,
    /// Write the draft here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Place the service the document names NAME on inventory group GROUP
    /// (repeatable), unless the document's own mapping table places it.
    #[arg(long = "group", value_name = "NAME=GROUP", value_parser = parse_key_value)]
    pub groups: Vec<(String, String)>,
    /// The product the document is about, as it writes it (e.g. RP-PAM); found in the document when not given.
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// Check the draft against this Ansible inventory: groups that are
    /// missing or empty, and hosts no service is placed on, are warnings.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub inventory_limits: super::sources::InventoryLimits,
    /// The review summary on standard error: `text` after the warnings, or
    /// `json`: one JSON object holding the warnings too, and nothing else.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub review: Format,
}

/// `monitor matrix import`: the draft goes to `-o` or stdout; warnings
/// (`doc:line: warning: ...`), the review and a count line to stderr, or
/// with `--review json` the review as one JSON object holding the warnings.
fn import(a: &ImportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.doc).with_context(|| format!("cannot read {}", a.doc.display()))?;
    let opts = crate::import::Options {
        doc_name: a.doc.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        format: Some(a.format),
        groups: a.groups.clone(),
        product: a.product.clone(),
        inventory: match &a.inventory {
            Some(p) => {
                let (inv, _) = Inventory::load_with(p, &a.inventory_limits.options())
                    .with_context(|| format!("cannot load inventory {}", p.display()))?;
                Some((inv, p.display().to_string()))
            }
            None => None,
        },
    };
    let imported = crate::import::import(&text, Some(&a.doc), &opts)?;
    if a.review == Format::Text {
        for w in &imported.draft.warnings {
            match w.line {
                0 => writeln!(err, "{}: warning: {}", a.doc.display(), w.message)?,
                l => writeln!(err, "{}:{l}: warning: {}", a.doc.display(), w.message)?,
            }
        }
    }
    // The draft must load; a failure here is the importer's bug, so say so.
    let dir = a.output.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
    if let Err(e) = Matrix::from_str(&imported.yaml, "draft", dir) {
        anyhow::bail!("the draft does not load as a matrix (an importer bug, please report it):\n{e}");
    }
    match &a.output {
        Some(p) => {
            std::fs::write(p, &imported.yaml).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => out.write_all(imported.yaml.as_bytes())?,
    }
    if a.review == Format::Json {
        writeln!(err, "{}", serde_json::to_string_pretty(&imported.review)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    write!(err, "{}", imported.review.text())?;
    writeln!(
        err,
        "{}: imported as {}: {} rules, {} exposure constraints, {} profiles, {} warnings",
        a.doc.display(),
        imported.format.as_str(),
        imported.draft.rules.len(),
        imported.draft.exposures.len(),
        imported.draft.profiles.len(),
        imported.draft.warnings.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn firewall(a: &FirewallArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let Some((m, warnings)) = load(&a.file, err)? else { return Ok(ExitCode::from(1)) };
    for w in &warnings {
        writeln!(err, "{w}")?;
    }
    let (mut hp, sel) = a.host.host_paths(&m, err)?;
    if a.resolve {
        for w in firewall::resolve_names(&mut hp, &mut system_resolve) {
            writeln!(err, "warning: {w}")?;
        }
    }
    let mut header = vec![format!("matrix: {}, inventory: {}", a.file.display(), a.host.inventory.display())];
    if !sel.profiles.is_empty() || !sel.vars.is_empty() {
        let mut s: Vec<String> = sel.profiles.iter().map(|p| format!("--profile {p}")).collect();
        s.extend(sel.vars.iter().map(|(k, v)| format!("--set {k}={v}")));
        header.push(format!("selection: {}", s.join(" ")));
    }
    let opts = firewall::Options {
        format: match a.format {
            FirewallFormat::Nft => firewall::Format::Nft,
            FirewallFormat::Firewalld => firewall::Format::Firewalld,
            FirewallFormat::Windows => firewall::Format::Windows,
        },
        policy: match a.default {
            DefaultPolicy::Drop => firewall::Policy::Drop,
            DefaultPolicy::Reject => firewall::Policy::Reject,
            DefaultPolicy::Accept => firewall::Policy::Accept,
        },
        egress: a.egress,
        header,
    };
    let g = firewall::generate(&hp, &opts);
    for w in &g.warnings {
        writeln!(err, "{w}")?;
    }
    out.write_all(g.text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The system resolver (getaddrinfo), at generation time.
fn system_resolve(name: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::ToSocketAddrs;
    (name, 0u16).to_socket_addrs().map(|it| it.map(|s| s.ip()).collect()).map_err(|e| e.to_string())
}
