//! Which interfaces to watch, and how to attach to each.

use std::{fs, path::Path};

use super::KernelError;

/// `--attach`: how the ingress program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP on physical NICs whose driver supports it; TC ingress on
    /// virtual interfaces (veth, bridges), where native XDP defeats GSO.
    Auto,
    /// XDP for ingress (native where the driver supports it, else generic).
    Xdp,
    /// TC (TCX, or clsact on kernels before 6.6) for ingress.
    Tc,
}

/// What the ingress hook of one interface ended up being.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressHook {
    XdpNative,
    XdpGeneric,
    Tc,
}

impl IngressHook {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressHook::XdpNative => "xdp-native",
            IngressHook::XdpGeneric => "xdp-generic",
            IngressHook::Tc => "tc",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    /// Backed by a device (a physical NIC), as opposed to veth, bridge, tun...
    pub physical: bool,
}

const SYS_NET: &str = "/sys/class/net";
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Looks up one interface by name.
pub fn by_name(name: &str) -> Result<Iface, KernelError> {
    let dir = Path::new(SYS_NET).join(name);
    let index = read_trim(&dir.join("ifindex"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| KernelError::NoSuchInterface(name.to_string()))?;
    Ok(Iface { name: name.to_string(), index, physical: is_physical(name) })
}

/// Whether `name` is backed by a device (see [`Iface::physical`]).
pub fn is_physical(name: &str) -> bool {
    Path::new(SYS_NET).join(name).join("device").exists()
}

/// An interface as it is now, with its state.
#[derive(Clone, Debug)]
pub struct Present {
    pub iface: Iface,
    pub up: bool,
    pub loopback: bool,
}

/// Every interface of this network namespace, by ifindex. One that
/// vanishes while it is being read is left out.
pub fn present() -> Result<Vec<Present>, KernelError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(SYS_NET).map_err(|e| KernelError::Sysfs(SYS_NET.into(), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(flags) = read_trim(&entry.path().join("flags")).and_then(|s| parse_hex(&s)) else {
            continue;
        };
        let Ok(iface) = by_name(&name) else { continue };
        out.push(Present { iface, up: flags & IFF_UP != 0, loopback: flags & IFF_LOOPBACK != 0 });
    }
    out.sort_by_key(|p| p.iface.index);
    Ok(out)
}

/// Every interface that is up and not loopback: the default set.
pub fn all_up() -> Result<Vec<Iface>, KernelError> {
    let out: Vec<Iface> = present()?.into_iter().filter(|p| p.up && !p.loopback).map(|p| p.iface).collect();
    if out.is_empty() {
        return Err(KernelError::NoInterfaces);
    }
    Ok(out)
}
