//! Which kinds the server serves, from legacy discovery (`/api/v1`, `/apis/G/V`), with the
//! singular and short names kubectl resolves (`ms`, `modelservice`, `modelservices`,
//! `ModelService`, `modelservices.berth.dev`).

use kube::core::ApiResource;
use serde_json::Value;

/// One served kind.
#[derive(Debug, Clone)]
pub struct Kind {
    /// Group, version, kind and plural, for kube-rs's dynamic API.
    pub ar: ApiResource,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Lowercase singular name.
    pub singular: String,
    /// Short names, e.g. `ms`.
    pub short_names: Vec<String>,
    /// Subresources, e.g. `status`, `scale`.
    pub subresources: Vec<String>,
    /// Categories, e.g. `all` (so `get all` lists this kind).
    pub categories: Vec<String>,
    /// Whether this is the group's preferred version (only those resolve by name).
    pub preferred: bool,
}

impl Kind {
    /// `kind.group` in lowercase (or `kind` for core), as kubectl prints objects:
    /// `modelservice.berth.dev/churn-model created`.
    pub fn object_prefix(&self) -> String {
        qualify(&self.ar.kind.to_lowercase(), &self.ar.group)
    }

    fn matches(&self, name: &str) -> bool {
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b, Some(g)),
            None => (name, None),
        };
        let group_ok = group.is_none_or(|g| g == self.ar.group);
        let lower = base.to_lowercase();
        group_ok
            && (lower == self.ar.plural
                || lower == self.singular
                || lower == self.ar.kind.to_lowercase()
                || self.short_names.contains(&lower))
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// Why a kind could not be resolved.
#[derive(Debug)]
pub enum DiscoveryError {
    /// No served kind has this name.
    UnknownName(String),
    /// No served kind has this apiVersion/kind.
    UnknownKind {
        /// The manifest's apiVersion.
        api_version: String,
        /// The manifest's kind.
        kind: String,
    },
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::UnknownName(name) => {
                write!(f, "the server doesn't have a resource type \"{name}\"")
            }
            DiscoveryError::UnknownKind { api_version, kind } => {
                write!(
                    f,
                    "no matches for kind \"{kind}\" in version \"{api_version}\""
                )
            }
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// Every kind the server serves, core first (kubectl's priority when names collide).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    kinds: Vec<Kind>,
}

impl Catalog {
    /// Asks the server.
    pub async fn load(client: &kube::Client) -> anyhow::Result<Catalog> {
        let mut kinds = Vec::new();
        let core = get_json(client, "/api/v1").await?;
        kinds.extend(parse_resource_list(&core, "", "v1", true));
        let groups = get_json(client, "/apis").await?;
        for group in groups["groups"].as_array().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or_default();
            let preferred = group["preferredVersion"]["version"]
                .as_str()
                .unwrap_or_default();
            for version in group["versions"].as_array().into_iter().flatten() {
                let Some(v) = version["version"].as_str() else {
                    continue;
                };
                let list = get_json(client, &format!("/apis/{name}/{v}")).await?;
                kinds.extend(parse_resource_list(&list, name, v, v == preferred));
            }
        }
        Ok(Catalog { kinds })
    }

    /// A catalog of the given kinds (for tests).
    #[cfg(test)]
    pub fn from_kinds(kinds: Vec<Kind>) -> Catalog {
        Catalog { kinds }
    }

    /// Resolves a name as typed on the command line.
    pub fn find(&self, name: &str) -> Result<&Kind, DiscoveryError> {
        self.kinds
            .iter()
            .filter(|k| k.preferred)
            .find(|k| k.matches(name))
            .ok_or_else(|| DiscoveryError::UnknownName(name.to_string()))
    }

    /// Resolves a kind name, or a category (`all`) to every kind in it.
    pub fn find_many(&self, name: &str) -> Result<Vec<&Kind>, DiscoveryError> {
        if let Ok(kind) = self.find(name) {
            return Ok(vec![kind]);
        }
        let members: Vec<&Kind> = self
            .kinds
            .iter()
            .filter(|k| k.preferred && k.categories.iter().any(|c| c == name))
            .collect();
        if members.is_empty() {
            Err(DiscoveryError::UnknownName(name.to_string()))
        } else {
            Ok(members)
        }
    }

    /// Resolves a manifest's `apiVersion` and `kind`.
    pub fn by_gvk(&self, api_version: &str, kind: &str) -> Result<&Kind, DiscoveryError> {
        self.kinds
            .iter()
            .find(|k| k.ar.api_version == api_version && k.ar.kind == kind)
            .ok_or_else(|| DiscoveryError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
    }
}

async fn get_json(client: &kube::Client, path: &str) -> anyhow::Result<Value> {
    // A list request with no parameters is a plain GET of `path`.
    let req = kube::core::Request::new(path).list(&Default::default())?;
    client
        .request::<Value>(req)
        .await
        .map_err(super::errors::explain)
}

/// The kinds in one APIResourceList; subresources (`name/sub`) attach to their parent.
pub fn parse_resource_list(list: &Value, group: &str, version: &str, preferred: bool) -> Vec<Kind> {
    let entries = list["resources"].as_array().cloned().unwrap_or_default();
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut kinds: Vec<Kind> = entries
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| !n.contains('/')))
        .map(|r| {
            let plural = r["name"].as_str().unwrap_or_default().to_string();
            let kind = r["kind"].as_str().unwrap_or_default().to_string();
            let singular = r["singularName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map_or_else(|| kind.to_lowercase(), String::from);
            let strings = |key: &str| -> Vec<String> {
                r[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            };
            Kind {
                ar: ApiResource {
                    group: group.into(),
                    version: version.into(),
                    api_version: api_version.clone(),
                    kind,
                    plural,
                },
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                singular,
                short_names: strings("shortNames"),
                subresources: Vec::new(),
                categories: strings("categories"),
                preferred,
            }
        })
        .collect();
    for r in &entries {
        if let Some((parent, sub)) = r["name"].as_str().and_then(|n| n.split_once('/'))
            && let Some(k) = kinds.iter_mut().find(|k| k.ar.plural == parent)
        {
            k.subresources.push(sub.to_string());
        }
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let core = json!({"resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"]},
            {"name": "pods/status", "namespaced": true, "kind": "Pod"},
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "shortNames": ["ev"]}]});
        let berth = json!({"resources": [
            {"name": "modelservices", "singularName": "modelservice", "namespaced": true, "kind": "ModelService", "shortNames": ["ms"], "categories": ["all"]},
            {"name": "modelservices/scale", "namespaced": true, "kind": "Scale"}]});
        let events = json!({"resources": [{"name": "events", "singularName": "event", "namespaced": true, "kind": "Event"}]});
        let mut kinds = parse_resource_list(&core, "", "v1", true);
        kinds.extend(parse_resource_list(&berth, "berth.dev", "v1alpha1", true));
        kinds.extend(parse_resource_list(&events, "events.k8s.io", "v1", true));
        Catalog::from_kinds(kinds)
    }

    #[test]
    fn resolves_every_spelling() {
        let c = catalog();
        for name in [
            "ms",
            "modelservice",
            "modelservices",
            "ModelService",
            "modelservices.berth.dev",
            "ms.berth.dev",
        ] {
            assert_eq!(c.find(name).unwrap().ar.kind, "ModelService", "{name}");
        }
        assert_eq!(
            c.find("po").unwrap().subresources,
            vec!["status".to_string()]
        );
        assert_eq!(
            c.find("ms").unwrap().subresources,
            vec!["scale".to_string()]
        );
    }

    #[test]
    fn core_wins_name_collisions_and_groups_disambiguate() {
        let c = catalog();
        assert_eq!(c.find("events").unwrap().ar.group, "");
        assert_eq!(
            c.find("events.events.k8s.io").unwrap().ar.group,
            "events.k8s.io"
        );
    }

    #[test]
    fn categories_expand() {
        let c = catalog();
        let all: Vec<&str> = c
            .find_many("all")
            .unwrap()
            .iter()
            .map(|k| k.ar.kind.as_str())
            .collect();
        assert_eq!(all, ["ModelService"]);
        assert_eq!(c.find_many("po").unwrap().len(), 1);
        assert!(c.find_many("nothing").is_err());
    }

    #[test]
    fn unknown_names_read_like_kubectl() {
        let err = catalog().find("widgets").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server doesn't have a resource type \"widgets\""
        );
        let err = catalog()
            .by_gvk("berth.dev/v1", "ModelService")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no matches for kind \"ModelService\" in version \"berth.dev/v1\""
        );
    }

    #[test]
    fn prefixes() {
        let c = catalog();
        assert_eq!(
            c.find("ms").unwrap().object_prefix(),
            "modelservice.berth.dev"
        );
        assert_eq!(c.find("pod").unwrap().object_prefix(), "pod");
    }
}
