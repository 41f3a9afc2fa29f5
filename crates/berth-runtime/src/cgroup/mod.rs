//! Container resource usage read from its cgroup (v1 controllers or the v2 unified tree).

use std::path::Path;

/// CPU and memory usage of one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use in bytes.
    pub memory_bytes: u64,
    /// Working set: usage minus inactive file cache (what kubelet evicts on).
    pub working_set_bytes: u64,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `key value` line of a stat file.
fn stat_value(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Reads usage for `cgroup_path` (as given to runc, e.g. `/berth/<id>`) under `mount`
/// (normally `/sys/fs/cgroup`); v1 when the per-controller dirs exist, else v2.
pub fn usage(mount: &Path, cgroup_path: &str) -> Option<Usage> {
    let rel = cgroup_path.trim_start_matches('/');
    let v1_mem = mount.join("memory").join(rel);
    if v1_mem.is_dir() {
        let cpu_ns = read_u64(&mount.join("cpuacct").join(rel).join("cpuacct.usage")).unwrap_or(0);
        let memory = read_u64(&v1_mem.join("memory.usage_in_bytes")).unwrap_or(0);
        let inactive = stat_value(&v1_mem.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        return Some(Usage {
            cpu_ns,
            memory_bytes: memory,
            working_set_bytes: memory.saturating_sub(inactive),
        });
    }
    let v2 = mount.join(rel);
    if v2.join("cgroup.controllers").exists() {
        let cpu_ns = stat_value(&v2.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
        let memory = read_u64(&v2.join("memory.current")).unwrap_or(0);
        let inactive = stat_value(&v2.join("memory.stat"), "inactive_file").unwrap_or(0);
        return Some(Usage {
            cpu_ns,
            memory_bytes: memory,
            working_set_bytes: memory.saturating_sub(inactive),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, s).expect("write");
    }

    #[test]
    fn reads_v1_and_v2_layouts() {
        let v1 = tempfile::tempdir().expect("tmp");
        write(
            &v1.path().join("memory/berth/c/memory.usage_in_bytes"),
            "1000\n",
        );
        write(
            &v1.path().join("memory/berth/c/memory.stat"),
            "cache 5\ntotal_inactive_file 300\n",
        );
        write(&v1.path().join("cpuacct/berth/c/cpuacct.usage"), "123456\n");
        assert_eq!(
            usage(v1.path(), "/berth/c"),
            Some(Usage {
                cpu_ns: 123456,
                memory_bytes: 1000,
                working_set_bytes: 700
            })
        );

        let v2 = tempfile::tempdir().expect("tmp");
        write(
            &v2.path().join("berth/c/cgroup.controllers"),
            "cpu memory\n",
        );
        write(
            &v2.path().join("berth/c/cpu.stat"),
            "usage_usec 42\nuser_usec 40\n",
        );
        write(&v2.path().join("berth/c/memory.current"), "2048\n");
        write(
            &v2.path().join("berth/c/memory.stat"),
            "anon 1\ninactive_file 48\n",
        );
        assert_eq!(
            usage(v2.path(), "/berth/c"),
            Some(Usage {
                cpu_ns: 42_000,
                memory_bytes: 2048,
                working_set_bytes: 2000
            })
        );
        assert_eq!(usage(v2.path(), "/berth/missing"), None);
    }
}
