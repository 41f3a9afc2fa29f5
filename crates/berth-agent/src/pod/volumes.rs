//! A container's volume mounts as CRI mounts: `hostPath` volumes are honoured (with the
//! kubelet's type checks on the node, creating what `DirectoryOrCreate`/`FileOrCreate` ask for);
//! every other volume kind, and mount features berth does not implement, are refused with a
//! clear message, so that a Pod never runs without something its spec asks for.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, Pod, Volume, VolumeMount};

/// The CRI mounts of `container`, or why the Pod's volumes cannot be honoured on this node.
/// Every volume of the Pod is checked, mounted or not, as the kubelet sets up all of them.
pub fn mounts(pod: &Pod, container: &Container) -> Result<Vec<cri::Mount>, String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        if v.host_path.is_none() {
            return Err(format!(
                "volume {:?}: {} volumes are not supported by berth yet",
                v.name,
                kind(v)
            ));
        }
    }
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| mount(&volumes, m))
        .collect()
}

/// The volume kind as the API names it (`emptyDir`, `configMap`, ...).
fn kind(v: &Volume) -> String {
    let json = serde_json::to_value(v).unwrap_or_default();
    json.as_object()
        .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// One volume mount of a `hostPath` volume.
fn mount(volumes: &[Volume], m: &VolumeMount) -> Result<cri::Mount, String> {
    let Some(volume) = volumes.iter().find(|v| v.name == m.name) else {
        return Err(format!("volumeMount {:?}: no volume of that name", m.name));
    };
    if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
        || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
    {
        return Err(format!(
            "volumeMount {:?}: subPath is not supported by berth yet",
            m.name
        ));
    }
    if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
        return Err(format!(
            "volumeMount {:?}: mountPropagation {:?} is not supported by berth yet",
            m.name,
            m.mount_propagation.as_deref().unwrap_or_default()
        ));
    }
    let Some(source) = volume.host_path.as_ref() else {
        return Err(format!("volume {:?}: not a hostPath volume", volume.name));
    };
    check_host_path(source).map_err(|e| format!("volume {:?}: {e}", volume.name))?;
    Ok(cri::Mount {
        container_path: m.mount_path.clone(),
        host_path: source.path.clone(),
        readonly: m.read_only.unwrap_or(false),
        ..Default::default()
    })
}

/// The kubelet's `hostPath.type` checks; the `OrCreate` types create a missing directory
/// (0755) or empty file (0644).
fn check_host_path(source: &HostPathVolumeSource) -> Result<(), String> {
    let path = Path::new(&source.path);
    if !path.is_absolute() {
        return Err(format!(
            "hostPath {:?} is not an absolute path",
            source.path
        ));
    }
    let type_ = source.type_.as_deref().unwrap_or_default();
    let meta = std::fs::metadata(path);
    let ft = meta.as_ref().map(|m| m.file_type());
    let ok = match type_ {
        "" => return Ok(()),
        "DirectoryOrCreate" if meta.is_err() => {
            return std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| format!("creating hostPath {:?}: {e}", source.path));
        }
        "FileOrCreate" if meta.is_err() => {
            return std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(|e| format!("creating hostPath {:?}: {e}", source.path));
        }
        "Directory" | "DirectoryOrCreate" => ft.is_ok_and(|t| t.is_dir()),
        "File" | "FileOrCreate" => ft.is_ok_and(|t| t.is_file()),
        "Socket" => ft.is_ok_and(|t| t.is_socket()),
        "CharDevice" => ft.is_ok_and(|t| t.is_char_device()),
        "BlockDevice" => ft.is_ok_and(|t| t.is_block_device()),
        other => return Err(format!("hostPath type {other:?} is not a valid type")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "hostPath type check failed: {} is not a {type_}",
            source.path
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"volumes": volumes,
                     "containers": [{"name": "c", "image": "i", "volumeMounts": mounts}]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    #[test]
    fn host_paths_become_bind_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (p, c) = pod(
            json!([{"name": "d", "hostPath": {"path": data, "type": "DirectoryOrCreate"}}]),
            json!([{"name": "d", "mountPath": "/data", "readOnly": true}]),
        );
        let m = mounts(&p, &c).unwrap();
        assert_eq!(
            (
                m[0].host_path.as_str(),
                m[0].container_path.as_str(),
                m[0].readonly
            ),
            (data.to_str().unwrap(), "/data", true)
        );
        assert!(data.is_dir(), "DirectoryOrCreate made the directory");
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let check = |path: &Path, t: &str| {
            check_host_path(&HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some(t.into()),
            })
        };
        assert!(check(&file, "File").is_ok());
        let err = check(&file, "Directory").unwrap_err();
        assert!(err.contains("is not a Directory"), "{err}");
        assert!(check(&dir.path().join("missing"), "File").is_err());
        assert!(check(&file, "Socket").is_err());
        check(&dir.path().join("new"), "FileOrCreate").unwrap();
        assert!(dir.path().join("new").is_file());
        assert!(check(Path::new("relative"), "").is_err());
    }

    #[test]
    fn what_berth_cannot_honour_is_refused() {
        let (p, c) = pod(
            json!([{"name": "scratch", "emptyDir": {}}]),
            json!([{"name": "scratch", "mountPath": "/s"}]),
        );
        let err = mounts(&p, &c).unwrap_err();
        assert_eq!(
            err,
            "volume \"scratch\": emptyDir volumes are not supported by berth yet"
        );
        let (p, c) = pod(json!([]), json!([{"name": "ghost", "mountPath": "/g"}]));
        assert!(mounts(&p, &c).unwrap_err().contains("no volume"));
        let (p, c) = pod(
            json!([{"name": "h", "hostPath": {"path": "/tmp"}}]),
            json!([{"name": "h", "mountPath": "/h", "subPath": "x"}]),
        );
        assert!(mounts(&p, &c).unwrap_err().contains("subPath"));
    }
}
