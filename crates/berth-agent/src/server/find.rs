//! Finding a Pod's container through CRI by the kubelet's labels, and the query parameters of
//! node endpoint requests.

use std::collections::HashMap;

use berth_cri::CriClient;
use berth_cri::v1 as cri;

use crate::labels;

/// A container of a Pod, as named in a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id {
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub pod: String,
    /// The container's name in the Pod spec.
    pub container: String,
    /// The Pod's UID when the caller knows it (the API server sends `podUID`): tells a re-created
    /// Pod of the same name from the old one while the old one's containers are still there.
    pub uid: Option<String>,
}

/// Which instance of a container (a restarted container is a new CRI container).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// The newest one (highest restart count).
    Current,
    /// The one before it (`previous=true`).
    Previous,
}

/// Why a container could not be found.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// No CRI container carries the labels (not created yet, or the Pod is not on this node).
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")]
    NotStarted {
        /// The container's name.
        container: String,
        /// The Pod's name.
        pod: String,
    },
    /// `previous` asked for, but the container has not been restarted.
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious {
        /// The container's name.
        container: String,
        /// The Pod's name.
        pod: String,
    },
    /// The runtime failed.
    #[error("container runtime: {0}")]
    Cri(#[from] tonic::Status),
}

/// The restart count a CRI container was created with (its annotation; 0 when absent).
fn restart_count(c: &cri::Container) -> u32 {
    c.annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Finds the CRI container id of `id`'s `instance`.
pub async fn container(
    cri: &mut CriClient,
    id: &Id,
    instance: Instance,
) -> Result<String, FindError> {
    let mut selector = HashMap::from([
        (labels::POD_NAMESPACE.to_string(), id.namespace.clone()),
        (labels::POD_NAME.to_string(), id.pod.clone()),
        (labels::CONTAINER_NAME.to_string(), id.container.clone()),
    ]);
    if let Some(uid) = &id.uid {
        selector.insert(labels::POD_UID.to_string(), uid.clone());
    }
    let filter = cri::ContainerFilter {
        label_selector: selector,
        ..Default::default()
    };
    let mut found = cri
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .containers;
    // Newest first: by restart count, then creation time (a re-created Pod starts again at 0).
    found.sort_by_key(|c| std::cmp::Reverse((restart_count(c), c.created_at)));
    let index = match instance {
        Instance::Current => 0,
        Instance::Previous => 1,
    };
    match found.into_iter().nth(index) {
        Some(c) => Ok(c.id),
        None if instance == Instance::Previous => Err(FindError::NoPrevious {
            container: id.container.clone(),
            pod: id.pod.clone(),
        }),
        None => Err(FindError::NotStarted {
            container: id.container.clone(),
            pod: id.pod.clone(),
        }),
    }
}

/// Query parameters (repeated keys kept in order).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = url_decode_pairs(raw.unwrap_or_default());
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    /// A non-negative integer parameter; `Err` names the parameter when it does not parse.
    pub fn int(&self, key: &str) -> Result<Option<u64>, String> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("invalid value for {key}: {v:?}"))
            })
            .transpose()
    }
}

/// Splits `a=b&c=d` and percent-decodes keys and values (`+` is a space).
fn url_decode_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeated_keys_and_decodes() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo%20a%2Bb+c&stdin=true&tailLines=5&x=%zz",
        ));
        assert_eq!(q.all("command"), vec!["sh", "-c", "echo a+b c"]);
        assert!(q.flag("stdin"));
        assert!(!q.flag("tty"));
        assert_eq!(q.int("tailLines"), Ok(Some(5)));
        assert!(q.int("command").is_err());
        assert_eq!(q.get("x"), Some("%zz"));
    }
}
