//! Taking a data dir's cluster down: from `DIR/launch.json` when a launch wrote one, else as well as
//! a single-node `berth up` dir allows (its processes, mounts, cgroups and pod bridge). Idempotent.

use std::path::{Path, PathBuf};

use crate::record::Record;
use crate::{LaunchError, cleanup, net};

/// What [`down`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Pids of the processes it killed (daemons, shims, container processes).
    pub processes: Vec<u32>,
    /// Mount points it unmounted.
    pub mounts: Vec<String>,
    /// Network namespaces it deleted.
    pub netns: Vec<String>,
    /// Links it deleted (veths, bridges).
    pub links: Vec<String>,
    /// Host routes it deleted.
    pub routes: Vec<String>,
    /// Cgroup directories it removed.
    pub cgroups: Vec<PathBuf>,
}

impl Report {
    /// Whether there was nothing to remove.
    pub fn is_empty(&self) -> bool {
        *self == Report::default()
    }
}

impl std::fmt::Display for Report {
    /// Counts for processes, mounts and cgroups (there are many); names for the network.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return writeln!(f, "nothing to remove");
        }
        let counts = [
            ("processes killed", self.processes.len()),
            ("mounts unmounted", self.mounts.len()),
            ("cgroups removed", self.cgroups.len()),
        ];
        for (what, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
            writeln!(f, "{what}: {n}")?;
        }
        let names = [
            ("network namespaces deleted", &self.netns),
            ("links deleted", &self.links),
            ("routes deleted", &self.routes),
        ];
        for (what, items) in names.into_iter().filter(|(_, v)| !v.is_empty()) {
            writeln!(f, "{what}: {}", items.join(" "))?;
        }
        Ok(())
    }
}

/// Stops everything running from `data_dir` and removes what it made: processes, mounts under
/// it, network namespaces, veths, bridges, host routes, container cgroups. Its state files stay
/// (a later start resumes from them). Fine to run twice and when nothing runs.
pub fn down(data_dir: &Path) -> Result<Report, LaunchError> {
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let record = Record::load(&data_dir)?;
    let mut parents: Vec<String> = match &record {
        Some(r) => r
            .nodes
            .iter()
            .flat_map(|n| n.cgroup_parents.iter().cloned())
            .collect(),
        None => Vec::new(),
    };
    // A single-node `berth up` (or `berth server`) keeps its runtime at DIR/runtime.
    parents.extend(cleanup::cgroup_parent(&data_dir.join("runtime")));
    let mut report = Report {
        processes: cleanup::kill_processes(&data_dir, &parents),
        mounts: cleanup::unmount_under(&data_dir),
        ..Report::default()
    };
    match &record {
        Some(r) => remove_network(r, &mut report),
        None => report.links = single_node_bridge(&data_dir),
    }
    for parent in &parents {
        report.cgroups.extend(cleanup::remove_cgroups(parent));
    }
    Ok(report)
}

/// Deletes a launch's routes, namespaces, veths and bridge.
fn remove_network(record: &Record, report: &mut Report) {
    for dest in &record.host_routes {
        if net::delete_route(dest) {
            report.routes.push(dest.clone());
        }
    }
    for node in &record.nodes {
        if net::delete_netns(&node.netns) {
            report.netns.push(node.netns.clone());
        }
        // Deleting the namespace deletes the pair; this catches a veth whose peer never moved.
        if net::delete_link(&node.veth) {
            report.links.push(node.veth.clone());
        }
    }
    if let Some(bridge) = &record.bridge {
        report.links.extend(net::delete_bridge(bridge));
    }
}

/// The pod bridge of a single-node data dir (the runtime saves `BRIDGE CIDR` in
/// `DIR/runtime/network/pod-network`), with its veths.
fn single_node_bridge(data_dir: &Path) -> Vec<String> {
    let saved = data_dir.join("runtime/network/pod-network");
    let text = std::fs::read_to_string(saved).unwrap_or_default();
    match text.split_whitespace().next() {
        Some(bridge) => net::delete_bridge(bridge),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_of_an_empty_dir_removes_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        assert!(down(dir.path()).unwrap().is_empty());
        assert!(down(dir.path()).unwrap().is_empty());
        assert_eq!(down(dir.path()).unwrap().to_string(), "nothing to remove\n");
    }

    #[test]
    fn the_report_lists_what_it_removed() {
        let report = Report {
            processes: vec![12, 13],
            netns: vec!["berth-t-1".into()],
            ..Report::default()
        };
        let text = report.to_string();
        assert!(text.contains("processes killed: 2"), "{text}");
        assert!(
            text.contains("network namespaces deleted: berth-t-1"),
            "{text}"
        );
        assert!(!text.contains("mounts"), "{text}");
    }
}
