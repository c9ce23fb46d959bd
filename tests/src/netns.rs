//! Network namespaces made by a test and removed when it ends.
//!
//! Names are unique per process and per test (`mt-<role>-<pid>-<n>`), so tests
//! run in parallel without seeing each other's interfaces, addresses or
//! traffic. A namespace is created with `ip netns add` (so that `ip netns
//! exec` works for the tools and the monitor binary) and code runs inside it
//! on a thread that entered it with `setns(2)`.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use crate::cmd;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    name: String,
    /// `/run/netns/<name>`, held open for `setns`.
    file: File,
}

impl NetNs {
    /// Creates a namespace whose name starts with `role` (a short word such
    /// as "a" or "srv"), brings its loopback up and allows ping sockets.
    pub fn new(role: &str) -> NetNs {
        let name = format!("mt-{role}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        cmd::run_args("ip", &["netns", "add", &name]);
        let path = format!("/run/netns/{name}");
        let file = File::open(&path).unwrap_or_else(|e| {
            // Do not leak the namespace we just made.
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            panic!("open {path}: {e}")
        });
        let ns = NetNs { name, file };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        // ICMP echo without raw sockets: ping sockets for every group.
        ns.sysctl("net/ipv4/ping_group_range", "0 2147483647");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args[0] args[1..]` inside the namespace; returns stdout and
    /// panics with the command line and stderr on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("exec needs a program");
        cmd::run(self.command(program).args(rest))
    }

    /// Writes `/proc/sys/<key>` as seen from inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.run(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("sysctl {path} = {value:?} in netns {}: {e}", self.name));
    }

    /// Runs `f` on a thread inside the namespace and returns its result.
    /// Sockets made there stay in the namespace and may be used from any
    /// thread afterwards.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let fd = self.file.as_raw_fd();
        let name = &self.name;
        thread::scope(|s| {
            s.spawn(move || {
                enter(fd, name);
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Starts `f` on a background thread inside the namespace.
    pub fn spawn<F, R>(&self, f: F) -> thread::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.file.try_clone().unwrap_or_else(|e| panic!("dup netns fd of {}: {e}", self.name));
        let name = self.name.clone();
        thread::spawn(move || {
            enter(file.as_raw_fd(), &name);
            f()
        })
    }

    /// The interface index of `ifname` inside the namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let c = std::ffi::CString::new(ifname).expect("interface name without NUL");
        // SAFETY: a valid NUL-terminated string.
        let idx = self.run(|| unsafe { libc::if_nametoindex(c.as_ptr()) });
        assert_ne!(idx, 0, "no interface {ifname} in netns {}", self.name);
        idx
    }

    /// A counter of `/proc/net/snmp` in this namespace, e.g. ("Tcp",
    /// "OutSegs"): the stack's own count, GSO super-packets counted as the
    /// segments they carry.
    pub fn snmp(&self, proto: &str, field: &str) -> u64 {
        let text = self.exec(&["cat", "/proc/net/snmp"]);
        let prefix = format!("{proto}:");
        let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = match (rows.next(), rows.next()) {
            (Some(n), Some(v)) => (n, v),
            _ => panic!("/proc/net/snmp in {} has no {proto} rows:\n{text}", self.name),
        };
        let col = names
            .split_whitespace()
            .position(|n| n == field)
            .unwrap_or_else(|| panic!("/proc/net/snmp has no {proto} {field}: {names}"));
        let v = values.split_whitespace().nth(col).expect("value row as long as the name row");
        v.parse().unwrap_or_else(|e| panic!("/proc/net/snmp {proto} {field} = {v:?}: {e}"))
    }

    /// A link counter of `dev` (`ip -s -j link`'s `stats64`): `dir` is "rx"
    /// or "tx", `field` e.g. "packets" or "dropped".
    pub fn link_stat(&self, dev: &str, dir: &str, field: &str) -> u64 {
        let text = self.exec(&["ip", "-s", "-j", "link", "show", "dev", dev]);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("`ip -s -j link show {dev}`: {e}: {text}"));
        v[0]["stats64"][dir][field].as_u64().unwrap_or_else(|| {
            panic!("`ip -s -j link show {dev}` in {} has no {dir}.{field}: {text}", self.name)
        })
    }

    /// Process ids of everything running in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        cmd::run_args("ip", &["netns", "pids", &self.name])
            .split_whitespace()
            .map(|p| p.parse().unwrap_or_else(|e| panic!("`ip netns pids` printed {p:?}: {e}")))
            .collect()
    }
}

fn enter(fd: i32, name: &str) {
    // SAFETY: fd is an open /run/netns file; setns only affects this thread.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        panic!("setns into netns {name}: {}", std::io::Error::last_os_error());
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Whatever a test started in here (monitor, tcpdump) is ours to end.
        let pids = Command::new("ip").args(["netns", "pids", &self.name]).output();
        if let Ok(out) = pids {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) on a process inside our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let out = Command::new("ip").args(["netns", "del", &self.name]).output();
        let failed = match &out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(err) = failed {
            let msg = format!("`ip netns del {}` failed: {err}", self.name);
            if thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}
