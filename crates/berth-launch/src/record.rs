//! `DIR/launch.json`: everything a launch made or is about to make. Each entry is saved before the
//! thing it names is created, so a launcher that dies half-way leaves a record [`crate::down`] can
//! act on; `down` treats every entry as "may exist".

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LaunchError;

/// The record's file name under the data dir.
pub const FILE: &str = "launch.json";

/// What one launch made.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The cluster's tag.
    pub tag: String,
    /// The bridge on the host (`bu-<tag>`), once about to be made.
    pub bridge: Option<String>,
    /// The server's address on the bridge.
    pub server_ip: Option<Ipv4Addr>,
    /// The server's pid, once started.
    pub server_pid: Option<u32>,
    /// The nodes, each added before its namespace is made.
    pub nodes: Vec<NodeRecord>,
    /// Routes added in the host's namespace (`ip route` destinations).
    pub host_routes: Vec<String>,
}

/// What one node made.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    /// The Node's name.
    pub name: String,
    /// Its network namespace (pinned at /run/netns/<netns>).
    pub netns: String,
    /// The host end of its veth.
    pub veth: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// The cgroup parents its runtime puts containers under (`<hash>` of `/berth/<hash>`).
    pub cgroup_parents: Vec<String>,
    /// Pids of its daemons (agent, and a separate runtime if any), latest start.
    pub pids: Vec<u32>,
}

impl Record {
    /// The record at `data_dir`, if there is one.
    pub fn load(data_dir: &Path) -> Result<Option<Record>, LaunchError> {
        let path = data_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::io_at(&path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LaunchError::Record {
                path,
                message: e.to_string(),
            })
    }

    /// Writes the record to `data_dir` atomically (a crash leaves the old or the new one).
    pub fn save(&self, data_dir: &Path) -> Result<(), LaunchError> {
        let path = data_dir.join(FILE);
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|e| LaunchError::Record {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(crate::error::io_at(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(crate::error::io_at(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_record_loads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), None);
        let record = Record {
            tag: "t1".into(),
            bridge: Some("bu-t1".into()),
            server_ip: Some(Ipv4Addr::new(10, 99, 0, 1)),
            server_pid: Some(42),
            nodes: vec![NodeRecord {
                name: "t1-n1".into(),
                netns: "berth-t1-1".into(),
                veth: "but1v1".into(),
                data_dir: dir.path().join("nodes/t1-n1"),
                cgroup_parents: vec!["0123456789ab".into()],
                pids: vec![7],
            }],
            host_routes: vec!["10.88.1.0/24".into()],
        };
        record.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), Some(record));
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(Record::load(dir.path()).is_err());
    }
}
