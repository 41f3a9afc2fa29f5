//! Masquerading: pod traffic from this node's pod CIDR to anywhere outside the cluster CIDR
//! leaves with the node's address, so the outside world needs no route back to pod networks.
//!
//! The rule lives in a chain of berth's own in the nat table ([`CHAIN`]), jumped to from
//! `POSTROUTING`. The chain is rewritten whole with `iptables-restore --noflush` (which
//! flushes a chain it declares and leaves every other chain alone), so applying is atomic and
//! idempotent, and a changed pod CIDR leaves no stale rule.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use berth_net::Ipv4Cidr;

/// berth's chain in the nat table.
pub const CHAIN: &str = "BERTH-POSTROUTING";

/// Why masquerading could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MasqueradeError {
    /// `iptables` (or `iptables-restore`) is not installed.
    #[error("{0} is not installed")]
    Missing(&'static str),
    /// Running the command failed.
    #[error("{command}: {source}")]
    Io {
        /// The command.
        command: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("{command} failed: {stderr}")]
    Failed {
        /// The command.
        command: &'static str,
        /// What it said.
        stderr: String,
    },
}

/// The `iptables-restore` input that makes [`CHAIN`] masquerade `pod_cidr` -> not `cluster`.
pub fn restore_input(pod_cidr: Ipv4Cidr, cluster: Ipv4Cidr) -> String {
    format!(
        "*nat\n:{CHAIN} - [0:0]\n-A {CHAIN} -s {pod_cidr} ! -d {cluster} -j MASQUERADE\nCOMMIT\n"
    )
}

/// Makes the calling thread's netns masquerade traffic from `pod_cidr` to outside `cluster`.
pub fn ensure(pod_cidr: Ipv4Cidr, cluster: Ipv4Cidr) -> Result<(), MasqueradeError> {
    let input = restore_input(pod_cidr, cluster);
    // `-w`: wait for the xtables lock rather than fail beside another writer (kube-proxy's way).
    run("iptables-restore", &["-w", "5", "--noflush"], Some(&input))?;
    let jump = |op| ["-w", "5", "-t", "nat", op, "POSTROUTING", "-j", CHAIN];
    if run("iptables", &jump("-C"), None).is_err() {
        run("iptables", &jump("-A"), None)?;
    }
    Ok(())
}

fn run(command: &'static str, args: &[&str], stdin: Option<&str>) -> Result<(), MasqueradeError> {
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => MasqueradeError::Missing(command),
        _ => MasqueradeError::Io { command, source },
    };
    let mut child = Command::new(command)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(io)?;
    }
    let Output { status, stderr, .. } = child.wait_with_output().map_err(io)?;
    if status.success() {
        Ok(())
    } else {
        Err(MasqueradeError::Failed {
            command,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerades_the_pod_cidr_to_outside_the_cluster_only() {
        let input = restore_input(
            "10.88.1.0/24".parse().unwrap(),
            "10.88.0.0/16".parse().unwrap(),
        );
        assert_eq!(
            input,
            "*nat\n:BERTH-POSTROUTING - [0:0]\n\
             -A BERTH-POSTROUTING -s 10.88.1.0/24 ! -d 10.88.0.0/16 -j MASQUERADE\nCOMMIT\n"
        );
    }
}
