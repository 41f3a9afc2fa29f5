//! Resolving the container user (`name`, `uid`, `uid:gid`, `name:group`) against the rootfs'
//! /etc/passwd and /etc/group, as the image USER directive and CRI run_as_* fields require.

use std::path::Path;

use super::OciError;

/// The resolved identity the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary groups from /etc/group membership (the CRI ones are added by the caller).
    pub additional_gids: Vec<u32>,
}

/// One parsed line of /etc/passwd or /etc/group: name, id, gid (passwd) and members (group).
struct Entry {
    name: String,
    id: u32,
    gid: u32,
    members: Vec<String>,
}

/// Reads a passwd-format file inside the rootfs. A missing file (or a symlink, which could point
/// at the host's files) reads as empty: numeric users still work without one.
fn read_db(rootfs: &Path, rel: &str, group: bool) -> Vec<Entry> {
    let path = rootfs.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => {}
        _ => return Vec::new(),
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let id = f.get(2)?.parse().ok()?;
            let (gid, members) = if group {
                (
                    id,
                    f.get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            } else {
                (f.get(3)?.parse().ok()?, Vec::new())
            };
            Some(Entry {
                name: f.first()?.to_string(),
                id,
                gid,
                members,
            })
        })
        .collect()
}

/// Resolves `spec` (`user[:group]`, each a name or a number; empty = root) in `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, OciError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_db(rootfs, "etc/passwd", false);
    let groups = read_db(rootfs, "etc/group", true);
    let (uid, mut gid, name) = if user.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = user.parse::<u32>() {
        let e = passwd.iter().find(|e| e.id == uid);
        (
            uid,
            e.map(|e| e.gid).unwrap_or(0),
            e.map(|e| e.name.clone()),
        )
    } else {
        let e = passwd
            .iter()
            .find(|e| e.name == user)
            .ok_or_else(|| OciError::UnknownUser(user.to_string()))?;
        (e.id, e.gid, Some(e.name.clone()))
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| OciError::UnknownGroup(g.to_string()))?
                    .id
            }
        };
    }
    let additional_gids = match &name {
        Some(n) => groups
            .iter()
            .filter(|e| e.members.contains(n) && e.gid != gid)
            .map(|e| e.gid)
            .collect(),
        None => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}
