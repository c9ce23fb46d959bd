//! The inventory being built, with the rules of Ansible's `InventoryData`,
//! `Group` and `Host` (ansible/inventory/*.py): the readers for each format
//! only say "add this host to that group", "set this variable", "make this a
//! child of that", and `finish` applies what Ansible's `reconcile_inventory`
//! and variable manager do.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

use serde_json::Value;

use super::{
    address, pattern, thousands, Group, Host, Inventory, InventoryError, LoadOptions, Loaded, Var, Warning,
    LISTINGS_PER_HOST,
};

#[derive(Debug, Default)]
struct GroupState {
    hosts: BTreeSet<String>,
    children: BTreeSet<String>,
    parents: BTreeSet<String>,
    vars: BTreeMap<String, Var>,
    priority: i64,
}

#[derive(Debug)]
struct HostState {
    line: Option<usize>,
    vars: BTreeMap<String, Var>,
}

pub(crate) struct Builder<'f> {
    file: &'f Path,
    groups: BTreeMap<String, GroupState>,
    hosts: BTreeMap<String, HostState>,
    warnings: Vec<Warning>,
    max_hosts: usize,
    /// Hosts named so far, once per group naming them (repeats included).
    listed: usize,
}

pub(crate) const ALL: &str = "all";
pub(crate) const UNGROUPED: &str = "ungrouped";

impl<'f> Builder<'f> {
    pub fn new(file: &'f Path, opts: &LoadOptions) -> Self {
        let mut b = Builder {
            file,
            groups: BTreeMap::new(),
            hosts: BTreeMap::new(),
            warnings: Vec::new(),
            max_hosts: opts.max_hosts,
            listed: 0,
        };
        for g in [ALL, UNGROUPED] {
            b.groups.insert(g.into(), GroupState { priority: 1, ..Default::default() });
        }
        b.link(ALL, UNGROUPED);
        b
    }

    pub fn file(&self) -> &'f Path {
        self.file
    }

    pub fn warn(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.warnings.push(Warning { file: self.file.to_path_buf(), line, message: message.into() });
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    pub fn has_host(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
    }

    fn too_many(&self, line: Option<usize>, what: String, fix: &'static str) -> InventoryError {
        InventoryError::TooManyHosts { file: self.file.to_path_buf(), line, what, fix, limit: self.max_hosts }
    }

    fn limit_text(&self) -> String {
        format!("the limit of {} hosts per inventory", thousands(self.max_hosts as u128))
    }

    fn max_listings(&self) -> usize {
        self.max_hosts.saturating_mul(LISTINGS_PER_HOST)
    }

    /// The hosts a pattern written on `line` stands for, and its port. The
    /// names are counted first: a pattern standing for more hosts than the
    /// limit, or for more listings than are left, is an error before any
    /// name is written out.
    pub fn expand_hosts(
        &self,
        host_pattern: &str,
        line: Option<usize>,
    ) -> Result<(Vec<String>, Option<u64>), InventoryError> {
        let room = self.max_hosts.min(self.max_listings().saturating_sub(self.listed));
        pattern::expand_hostpattern(host_pattern, room).map_err(|e| match e {
            pattern::PatternError::Malformed { message, hint } => {
                InventoryError::syntax(self.file, line, message, hint)
            }
            pattern::PatternError::TooMany { names } if names > self.max_hosts as u128 => self.too_many(
                line,
                format!(
                    "host range {host_pattern:?} stands for {} hosts, more than {}",
                    thousands(names),
                    self.limit_text()
                ),
                "fix the range",
            ),
            pattern::PatternError::TooMany { names } => {
                self.listings_exceeded(line, self.listed as u128 + names)
            }
        })
    }

    fn listings_exceeded(&self, line: Option<usize>, listed: u128) -> InventoryError {
        self.too_many(
            line,
            format!(
                "hosts are listed {} times by here (once per group naming them), more than the {} listings \
                 ({LISTINGS_PER_HOST} per host) that {} allows",
                thousands(listed),
                thousands(self.max_listings() as u128),
                self.limit_text()
            ),
            "name each host in fewer groups (a [group:children] section adds a group's hosts to another)",
        )
    }

    pub fn add_group(&mut self, name: &str, line: Option<usize>) -> Result<(), InventoryError> {
        if name.is_empty() {
            return Err(InventoryError::syntax(self.file, line, "empty group name", "give the group a name"));
        }
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| GroupState { priority: 1, ..Default::default() });
        Ok(())
    }

    /// Adds `name` to `group`. As in Ansible, the port of a host pattern
    /// (`web1:2222`) becomes `ansible_port` only where the host is first seen.
    pub fn add_host(
        &mut self,
        name: &str,
        group: &str,
        port: Option<u64>,
        line: Option<usize>,
    ) -> Result<(), InventoryError> {
        if name.is_empty() {
            return Err(InventoryError::syntax(
                self.file,
                line,
                "empty host name",
                "remove the empty entry or name the host",
            ));
        }
        if self.listed >= self.max_listings() {
            return Err(self.listings_exceeded(line, self.listed as u128 + 1));
        }
        self.listed += 1;
        let port = port.filter(|p| *p != 0);
        match self.hosts.get(name) {
            None => {
                if self.hosts.len() >= self.max_hosts {
                    return Err(self.too_many(
                        line,
                        format!(
                            "host {name:?} would be host number {} of the inventory, more than {}",
                            thousands(self.hosts.len() as u128 + 1),
                            self.limit_text()
                        ),
                        "fix the host ranges",
                    ));
                }
                let mut vars = BTreeMap::new();
                if let Some(port) = port {
                    vars.insert("ansible_port".to_string(), Var { value: Value::from(port), line });
                }
                self.hosts.insert(name.to_string(), HostState { line, vars });
            }
            Some(first) => {
                if let Some(port) = port {
                    let first = first.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                    self.warn(
                        line,
                        format!("port {port} of host {name:?} is ignored: as in Ansible, the port comes from the line that first names the host{first}; set ansible_port instead"),
                    );
                }
            }
        }
        self.groups
            .get_mut(group)
            .expect("readers add a group before adding hosts to it")
            .hosts
            .insert(name.to_string());
        Ok(())
    }

    /// Ansible's `set_variable` looks the name up among groups first: a
    /// variable given to host `web` goes to group `web` when there is one.
    pub fn set_host_var(
        &mut self,
        host: &str,
        key: &str,
        value: Value,
        line: Option<usize>,
    ) -> Result<(), InventoryError> {
        if self.groups.contains_key(host) {
            self.warn(
                line,
                format!("variable {key} of host {host:?} goes to group {host:?}, as in Ansible, because a group has that name; rename the host or the group"),
            );
            return self.set_group_var(host, key, value, line);
        }
        let h = self.hosts.get_mut(host).expect("readers add a host before setting its vars");
        h.vars.insert(key.to_string(), Var { value, line });
        Ok(())
    }

    /// `ansible_group_priority` is not a variable in Ansible but the group's
    /// rank among groups of the same depth when their variables are merged.
    pub fn set_group_var(
        &mut self,
        group: &str,
        key: &str,
        value: Value,
        line: Option<usize>,
    ) -> Result<(), InventoryError> {
        let file = self.file;
        let g = self.groups.get_mut(group).expect("readers add a group before setting its vars");
        if key != "ansible_group_priority" {
            g.vars.insert(key.to_string(), Var { value, line });
            return Ok(());
        }
        // Python's int(): numbers and numeric strings; int(None), int([]) are
        // TypeErrors that Ansible ignores; other strings are errors.
        let priority = match &value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::String(s) => Some(s.trim().replace('_', "").parse::<i64>().map_err(|_| {
                InventoryError::syntax(
                    file,
                    line,
                    format!("ansible_group_priority of group {group:?} is {s:?}, not a whole number"),
                    "set it to a whole number such as 10 (higher wins among groups at the same depth)",
                )
            })?),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        };
        match priority {
            Some(p) => g.priority = p,
            None => self.warn(
                line,
                format!(
                    "ansible_group_priority of group {group:?} is not a number; ignored, as Ansible does"
                ),
            ),
        }
        Ok(())
    }

    fn link(&mut self, parent: &str, child: &str) {
        self.groups.get_mut(parent).expect("parent exists").children.insert(child.into());
        self.groups.get_mut(child).expect("child exists").parents.insert(parent.into());
    }

    /// Makes group `child` a child of `parent`, refusing loops as Ansible does.
    pub fn add_child(
        &mut self,
        parent: &str,
        child: &str,
        line: Option<usize>,
    ) -> Result<(), InventoryError> {
        if self.groups[parent].children.contains(child) {
            return Ok(());
        }
        if let Some(path) = self.path_down(child, parent) {
            let mut cycle = path;
            cycle.push(child.to_string());
            return Err(InventoryError::Cycle { file: self.file.to_path_buf(), line, cycle });
        }
        self.link(parent, child);
        Ok(())
    }

    /// Ansible's `add_child` also accepts a host name in place of a group.
    pub fn add_child_group_or_host(
        &mut self,
        parent: &str,
        child: &str,
        line: Option<usize>,
    ) -> Result<(), InventoryError> {
        if self.has_group(child) {
            self.add_child(parent, child, line)
        } else if self.has_host(child) {
            self.add_host(child, parent, None, line)
        } else {
            Err(InventoryError::syntax(
                self.file,
                line,
                format!("{child:?} is neither a known group nor a known host"),
                "define it as a group (a mapping or null value) before using it as a child",
            ))
        }
    }

    /// The groups from `from` down to `to` through children, both included.
    fn path_down(&self, from: &str, to: &str) -> Option<Vec<String>> {
        if from == to {
            return Some(vec![from.to_string()]);
        }
        let mut came_from: HashMap<&str, &str> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(g) = queue.pop_front() {
            for c in &self.groups[g].children {
                if c == from || came_from.contains_key(c.as_str()) {
                    continue;
                }
                came_from.insert(c, g);
                if c == to {
                    let mut path = vec![to.to_string()];
                    let mut at = to;
                    while at != from {
                        at = came_from[at];
                        path.push(at.to_string());
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(c);
            }
        }
        None
    }

    fn ancestors(&self, group: &str, memo: &mut HashMap<String, BTreeSet<String>>) -> BTreeSet<String> {
        if let Some(a) = memo.get(group) {
            return a.clone();
        }
        let mut out = BTreeSet::new();
        for p in &self.groups[group].parents {
            out.insert(p.clone());
            out.extend(self.ancestors(p, memo));
        }
        memo.insert(group.to_string(), out.clone());
        out
    }

    fn host_group_sets(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut memo = HashMap::new();
        let mut out: BTreeMap<String, BTreeSet<String>> =
            self.hosts.keys().map(|h| (h.clone(), BTreeSet::new())).collect();
        for (g, state) in &self.groups {
            let mut with_ancestors = self.ancestors(g, &mut memo);
            with_ancestors.insert(g.clone());
            for h in &state.hosts {
                out.get_mut(h).expect("group hosts are known hosts").extend(with_ancestors.iter().cloned());
            }
        }
        out
    }

    /// Longest path from `all`, which is how Ansible's Group.depth ends up.
    fn depth(&self, group: &str, memo: &mut HashMap<String, usize>) -> usize {
        if let Some(d) = memo.get(group) {
            return *d;
        }
        let d = self.groups[group].parents.iter().map(|p| self.depth(p, memo) + 1).max().unwrap_or(0);
        memo.insert(group.to_string(), d);
        d
    }

    /// Ansible adds a host that is only in `all` to `ungrouped` with
    /// `add_child`, which prefers a *group* of the same name: then that group,
    /// not the host, goes under `ungrouped`.
    fn put_in_ungrouped(&mut self, host: &str) -> Result<(), InventoryError> {
        if !self.groups.contains_key(host) {
            self.groups.get_mut(UNGROUPED).expect("always there").hosts.insert(host.to_string());
            return Ok(());
        }
        let line = self.hosts[host].line;
        self.add_child(UNGROUPED, host, line).map_err(|_| {
            InventoryError::syntax(
                self.file,
                line,
                format!("host {host:?} is in no group but all, and group {host:?} exists: Ansible would make that group a child of ungrouped, which is a loop"),
                "rename the host or put it in a group",
            )
        })?;
        self.warn(
            line,
            format!("host {host:?} is in no group but all and a group has its name: as in Ansible, the group (not the host) is put in ungrouped; rename one of them"),
        );
        Ok(())
    }

    /// Applies `reconcile_inventory` and merges variables per host.
    pub fn finish(mut self) -> Result<Loaded, InventoryError> {
        let roots: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, g)| *name != ALL && g.parents.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for g in roots {
            self.add_child(ALL, &g, None)?;
        }

        let sets = self.host_group_sets();
        for (host, groups) in &sets {
            if groups.contains(UNGROUPED) {
                if groups.iter().any(|g| g != ALL && g != UNGROUPED) {
                    self.groups.get_mut(UNGROUPED).expect("always there").hosts.remove(host);
                }
            } else if groups.iter().all(|g| g == ALL) {
                self.put_in_ungrouped(host)?;
            }
        }
        let sets = self.host_group_sets();

        for name in self.hosts.keys().filter(|h| self.groups.contains_key(*h)).cloned().collect::<Vec<_>>() {
            let line = self.hosts[&name].line;
            self.warn(
                line,
                format!("{name:?} is both a group and a host; Ansible resolves the name to the group (it warns too); rename one of them"),
            );
        }

        let mut depths = HashMap::new();
        let mut rank: Vec<(usize, i64, &str)> = self
            .groups
            .keys()
            .filter(|g| *g != ALL)
            .map(|g| (self.depth(g, &mut depths), self.groups[g].priority, g.as_str()))
            .collect();
        rank.sort();

        let mut warnings = std::mem::take(&mut self.warnings);
        let mut hosts = BTreeMap::new();
        let mut unaddressed = Vec::new();
        for (name, state) in &self.hosts {
            let groups = &sets[name];
            let mut merged: BTreeMap<String, Var> = self.groups[ALL].vars.clone();
            for (_, _, g) in rank.iter().filter(|(_, _, g)| groups.contains(*g)) {
                merged.extend(self.groups[*g].vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            merged.extend(state.vars.iter().map(|(k, v)| (k.clone(), v.clone())));

            let resolved = address::resolve(name, merged.get("ansible_host"));
            match resolved.warning {
                Some((line, message)) => warnings.push(Warning {
                    file: self.file.to_path_buf(),
                    line: line.or(state.line),
                    message,
                }),
                None if resolved.addresses.is_empty() => unaddressed.push((name.clone(), state.line)),
                None => {}
            }
            let mut groups = groups.clone();
            groups.insert(ALL.to_string());
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    groups,
                    ansible_host: resolved.ansible_host,
                    addresses: resolved.addresses,
                    vars: merged.into_iter().map(|(k, v)| (k, v.value)).collect(),
                },
            );
        }
        if let Some(w) = address::unaddressed_warning(self.file, &unaddressed) {
            warnings.push(w);
        }
        let definitions =
            self.groups.values().flat_map(|g| &g.vars).chain(self.hosts.values().flat_map(|h| &h.vars));
        warnings.extend(address::address_like_vars(self.file, definitions));

        let groups = self
            .groups
            .into_iter()
            .map(|(name, g)| {
                let group = Group {
                    name: name.clone(),
                    hosts: g.hosts,
                    children: g.children,
                    vars: g.vars.into_iter().map(|(k, v)| (k, v.value)).collect(),
                };
                (name, group)
            })
            .collect();
        Ok((Inventory { hosts, groups }, warnings))
    }
}
