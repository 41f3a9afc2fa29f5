//! Resolution of the container user against the rootfs' `/etc/passwd` and `/etc/group`.
//!
//! Kubernetes semantics: `run_as_user` / `run_as_username` / `run_as_group` from the CRI security
//! context override the image `USER`; names are resolved inside the image, never on the host.

use std::path::Path;

use super::OciError;

/// What the caller asked for; every field optional, the image `USER` is the fallback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRequest {
    /// CRI `run_as_user`.
    pub run_as_user: Option<u32>,
    /// CRI `run_as_username` (used when `run_as_user` is unset).
    pub run_as_username: Option<String>,
    /// CRI `run_as_group`.
    pub run_as_group: Option<u32>,
    /// CRI `supplemental_groups`, added to the groups found in `/etc/group`.
    pub supplemental_groups: Vec<u32>,
}

/// The resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups, deduplicated, without the primary group.
    pub additional_gids: Vec<u32>,
}

/// One `/etc/passwd` entry (the fields berth needs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the user for a container whose root filesystem is `rootfs`.
pub fn resolve_user(
    rootfs: &Path,
    image_user: Option<&str>,
    request: &UserRequest,
) -> Result<ResolvedUser, OciError> {
    let passwd = parse_passwd(&read_etc(rootfs, "passwd")?);
    let groups = parse_group(&read_etc(rootfs, "group")?);
    // The user part: CRI uid > CRI username > image USER (user[:group]).
    let (image_user_part, image_group_part) = match image_user.filter(|u| !u.is_empty()) {
        Some(spec) => match spec.split_once(':') {
            Some((u, g)) => (Some(u), Some(g)),
            None => (Some(spec), None),
        },
        None => (None, None),
    };
    let (uid, entry) = if let Some(uid) = request.run_as_user {
        (uid, passwd.iter().find(|p| p.uid == uid).cloned())
    } else if let Some(name) = request.run_as_username.as_deref().filter(|n| !n.is_empty()) {
        let entry = lookup_user(&passwd, name)?;
        (entry.uid, Some(entry))
    } else if let Some(spec) = image_user_part {
        let entry = lookup_user(&passwd, spec)?;
        (entry.uid, Some(entry))
    } else {
        (0, passwd.iter().find(|p| p.uid == 0).cloned())
    };
    let gid = match (request.run_as_group, image_group_part) {
        (Some(gid), _) => gid,
        // The image's explicit group only applies when the image's user is used.
        (None, Some(g)) if request.run_as_user.is_none() && request.run_as_username.is_none() => {
            lookup_group(&groups, g)?
        }
        _ => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    let mut additional: Vec<u32> = Vec::new();
    if let Some(name) = entry.as_ref().map(|e| e.name.as_str()) {
        for g in groups.iter().filter(|g| g.members.iter().any(|m| m == name)) {
            additional.push(g.gid);
        }
    }
    additional.extend(request.supplemental_groups.iter().copied());
    additional.sort_unstable();
    additional.dedup();
    additional.retain(|g| *g != gid);
    Ok(ResolvedUser { uid, gid, additional_gids: additional })
}

/// Finds a user by name, or accepts a numeric uid even without a passwd entry.
fn lookup_user(passwd: &[PasswdEntry], spec: &str) -> Result<PasswdEntry, OciError> {
    if let Some(e) = passwd.iter().find(|p| p.name == spec) {
        return Ok(e.clone());
    }
    match spec.parse::<u32>() {
        Ok(uid) => Ok(passwd
            .iter()
            .find(|p| p.uid == uid)
            .cloned()
            .unwrap_or(PasswdEntry { name: String::new(), uid, gid: 0 })),
        Err(_) => Err(OciError::UnknownUser(spec.to_string())),
    }
}

/// Finds a group by name or numeric gid.
fn lookup_group(groups: &[GroupEntry], spec: &str) -> Result<u32, OciError> {
    if let Some(g) = groups.iter().find(|g| g.name == spec) {
        return Ok(g.gid);
    }
    spec.parse::<u32>().map_err(|_| OciError::UnknownGroup(spec.to_string()))
}

/// Reads `<rootfs>/etc/<name>`; a missing file is empty. Symlinks are refused so a hostile
/// image cannot make the runtime read host files.
fn read_etc(rootfs: &Path, name: &str) -> Result<String, OciError> {
    let path = rootfs.join("etc").join(name);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(OciError::Io { path, source: e }),
        Ok(m) if !m.file_type().is_file() => return Ok(String::new()),
        Ok(_) => {}
    }
    let bytes = std::fs::read(&path).map_err(|e| OciError::Io { path, source: e })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses `name:x:uid:gid:...` lines, skipping malformed ones.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry { name: f[0].to_string(), uid: f[2].parse().ok()?, gid: f[3].parse().ok()? })
        })
        .collect()
}

/// Parses `name:x:gid:member,member` lines, skipping malformed ones.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            Some(GroupEntry { name: f[0].to_string(), gid: f[2].parse().ok()?, members })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbroken\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\napp:x:1001:\nvideo:x:44:app,other\nstaff:x:50:app\n")
            .unwrap();
        dir
    }

    #[test]
    fn image_user_name_resolves_uid_gid_and_groups() {
        let r = rootfs();
        let u = resolve_user(r.path(), Some("app"), &UserRequest::default()).unwrap();
        assert_eq!(u, ResolvedUser { uid: 1000, gid: 1001, additional_gids: vec![44, 50] });
    }

    #[test]
    fn image_user_with_group_part() {
        let r = rootfs();
        let u = resolve_user(r.path(), Some("app:video"), &UserRequest::default()).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 44));
        assert_eq!(u.additional_gids, vec![50]);
        let u = resolve_user(r.path(), Some("4242:77"), &UserRequest::default()).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 77));
    }

    #[test]
    fn cri_overrides_image_user() {
        let r = rootfs();
        let req = UserRequest { run_as_user: Some(1000), run_as_group: Some(5), supplemental_groups: vec![9], ..Default::default() };
        let u = resolve_user(r.path(), Some("root"), &req).unwrap();
        assert_eq!(u, ResolvedUser { uid: 1000, gid: 5, additional_gids: vec![9, 44, 50] });
        let req = UserRequest { run_as_username: Some("app".into()), ..Default::default() };
        let u = resolve_user(r.path(), None, &req).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
    }

    #[test]
    fn unknown_names_are_errors_and_default_is_root() {
        let r = rootfs();
        assert!(matches!(resolve_user(r.path(), Some("nobody"), &UserRequest::default()), Err(OciError::UnknownUser(_))));
        assert!(matches!(resolve_user(r.path(), Some("app:nogroup"), &UserRequest::default()), Err(OciError::UnknownGroup(_))));
        let u = resolve_user(r.path(), None, &UserRequest::default()).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn missing_etc_files_allow_numeric_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve_user(dir.path(), Some("65534"), &UserRequest::default()).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 0));
        assert!(resolve_user(dir.path(), Some("app"), &UserRequest::default()).is_err());
    }
}
