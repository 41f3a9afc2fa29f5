//! The Node authorizer and NodeRestriction admission: what a node credential
//! ([`Identity::Node`]) may do, after Kubernetes' rules for kubelets, reduced to what the berth
//! agent does.
//!
//! A node may:
//! - read (get, list, watch) Nodes, Pods, Services, Endpoints, EndpointSlices, Namespaces,
//!   Events, Leases and ModelServices (the service proxy routes every ModelService's port). Lists
//!   of Pods are not narrowed to the node's own: the agent asks for those with a field selector,
//!   but the proxy needs every Ready Pod behind a service, as kube-proxy does;
//! - get a Secret, ConfigMap or PersistentVolumeClaim by name only when a Pod bound to it
//!   (`spec.nodeName`) refers to it; list or watch them never;
//! - create its own Node and patch or update it and its status; create, update and patch its own
//!   Lease in `kube-node-lease`;
//! - update or patch the status of Pods bound to it, and delete those Pods (finishing a graceful
//!   deletion);
//! - create, update and patch Events.
//!
//! Everything else answers 403 with Kubernetes' wording. The name of a created Node or Lease is
//! in the body, so [`admit_create`] checks it once the body is read.

use berth_store::RangeOptions;
use serde_json::Value;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::ApiServer;

/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What a request asks to do.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The HTTP method.
    pub method: &'a http::Method,
    /// Whether a GET is a watch.
    pub watch: bool,
    /// The API group (`""` for core).
    pub group: &'a str,
    /// The resource (plural).
    pub resource: &'a str,
    /// The namespace, for namespaced resources.
    pub namespace: Option<&'a str>,
    /// The object's name, if the path names one.
    pub name: Option<&'a str>,
    /// The subresource, if any.
    pub subresource: Option<&'a str>,
}

impl Attributes<'_> {
    /// The Kubernetes verb.
    pub fn verb(&self) -> &'static str {
        match (self.method.as_str(), self.name.is_some()) {
            ("GET" | "HEAD", true) => "get",
            ("GET" | "HEAD", false) if self.watch => "watch",
            ("GET" | "HEAD", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        }
    }

    fn read(&self) -> bool {
        matches!(self.verb(), "get" | "list" | "watch")
    }

    fn modify(&self) -> bool {
        matches!(self.verb(), "update" | "patch")
    }
}

/// Allows the request, or answers 403.
pub async fn authorize(srv: &ApiServer, identity: &Identity, a: &Attributes<'_>) -> ApiResult<()> {
    let Identity::Node(node) = identity else {
        return Ok(());
    };
    match decide(srv, node, a).await? {
        Ok(()) => Ok(()),
        Err(reason) => Err(forbidden(identity, a, reason.as_deref())),
    }
}

/// `Ok(())` to allow; `Err(Some(reason))` or `Err(None)` to deny.
type Decision = Result<(), Option<String>>;

async fn decide(srv: &ApiServer, node: &str, a: &Attributes<'_>) -> ApiResult<Decision> {
    let sub = a.subresource;
    let own_name = a.name == Some(node);
    let deny_other = |what: &str| Err(Some(format!("node '{node}' cannot modify {what}")));
    Ok(match (a.group, a.resource) {
        ("", "nodes" | "pods" | "services" | "endpoints" | "namespaces" | "events")
        | ("coordination.k8s.io", "leases")
        | ("events.k8s.io", "events")
        | ("discovery.k8s.io", "endpointslices")
        | ("berth.dev", "modelservices")
            if a.read() && matches!(sub, None | Some("status")) =>
        {
            Ok(())
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims") if a.read() => {
            referenced(srv, node, a).await?
        }
        ("", "nodes") if a.verb() == "create" && sub.is_none() => Ok(()),
        ("", "nodes") if a.modify() && matches!(sub, None | Some("status")) => {
            if own_name {
                Ok(())
            } else {
                deny_other(&format!("node '{}'", a.name.unwrap_or_default()))
            }
        }
        ("coordination.k8s.io", "leases") if a.namespace == Some(LEASE_NAMESPACE) => {
            match a.verb() {
                "create" => Ok(()),
                "update" | "patch" if own_name => Ok(()),
                _ => deny_other("this lease"),
            }
        }
        ("", "pods") if (a.modify() && sub == Some("status")) || a.verb() == "delete" => {
            if bound_here(srv, node, a).await? {
                Ok(())
            } else {
                deny_other("pods not bound to it")
            }
        }
        ("", "events") | ("events.k8s.io", "events")
            if matches!(a.verb(), "create" | "update" | "patch") =>
        {
            Ok(())
        }
        _ => Err(None),
    })
}

/// NodeRestriction for creates: a node creates only its own Node and its own Lease.
pub fn admit_create(
    identity: &Identity,
    group: &str,
    resource: &str,
    obj: &Value,
) -> ApiResult<()> {
    let Identity::Node(node) = identity else {
        return Ok(());
    };
    let name = crate::object::name(obj).unwrap_or_default();
    let what = match (group, resource) {
        ("", "nodes") => "node",
        ("coordination.k8s.io", "leases") => "lease",
        _ => return Ok(()),
    };
    if name == node {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "{resource} \"{name}\" is forbidden: node '{node}' cannot create {what} '{name}'"
    )))
}

/// Kubernetes' message: `<resource> "<name>" is forbidden: User "<user>" cannot <verb> resource
/// "<resource>[/<sub>]" in API group "<group>" <scope>[: <reason>]`.
fn forbidden(identity: &Identity, a: &Attributes<'_>, reason: Option<&str>) -> ApiError {
    let qualified = match a.group {
        "" => a.resource.to_string(),
        g => format!("{}.{g}", a.resource),
    };
    let target = match a.name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
    ApiError::forbidden(format!(
        "{target} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{reason}",
        identity.user(),
        a.verb(),
        a.group,
    ))
}

/// Whether the Pod the request names is bound to `node`.
async fn bound_here(srv: &ApiServer, node: &str, a: &Attributes<'_>) -> ApiResult<bool> {
    let (Some(r), Some(name)) = (srv.registry.lookup("", "v1", "pods"), a.name) else {
        return Ok(false);
    };
    let Some(kv) = srv.store.get(&r.key(a.namespace, name)).await? else {
        return Ok(false);
    };
    let pod: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
    Ok(pod["spec"]["nodeName"].as_str() == Some(node))
}

/// Allows a get of a Secret, ConfigMap or PVC that a Pod bound to `node` refers to.
async fn referenced(srv: &ApiServer, node: &str, a: &Attributes<'_>) -> ApiResult<Decision> {
    let no_relation = || {
        Err(Some(format!(
            "no relationship found between node '{node}' and this object"
        )))
    };
    let (Some(name), Some(ns), "get") = (a.name, a.namespace, a.verb()) else {
        return Ok(no_relation());
    };
    let Some(pods) = srv.registry.lookup("", "v1", "pods") else {
        return Ok(no_relation());
    };
    let prefix = format!("{}/{ns}/", pods.storage_prefix);
    let listed = srv.store.range(&prefix, RangeOptions::default()).await?;
    let found = listed.kvs.iter().any(|kv| {
        serde_json::from_slice::<Value>(&kv.value).is_ok_and(|pod| {
            pod["spec"]["nodeName"].as_str() == Some(node) && refers_to(&pod, a.resource, name)
        })
    });
    Ok(if found { Ok(()) } else { no_relation() })
}

/// Whether `pod` refers to the `resource` (secrets, configmaps, persistentvolumeclaims) `name`:
/// in volumes (also projected), env, envFrom and imagePullSecrets.
pub fn refers_to(pod: &Value, resource: &str, name: &str) -> bool {
    let keys: &[(&str, &str)] = match resource {
        "secrets" => &[
            ("secret", "secretName"),
            ("secretKeyRef", "name"),
            ("secretRef", "name"),
        ],
        "configmaps" => &[
            ("configMap", "name"),
            ("configMapKeyRef", "name"),
            ("configMapRef", "name"),
        ],
        "persistentvolumeclaims" => &[("persistentVolumeClaim", "claimName")],
        _ => return false,
    };
    let pull_secret = resource == "secrets"
        && pod["spec"]["imagePullSecrets"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r["name"].as_str() == Some(name)));
    pull_secret || mentions(&pod["spec"], keys, name)
}

/// Searches `v` for an object `{<key>: {<field>: name}}` of any of `keys`.
fn mentions(v: &Value, keys: &[(&str, &str)], name: &str) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, child)| {
            keys.iter()
                .any(|(key, field)| k == key && child[*field].as_str() == Some(name))
                || mentions(child, keys, name)
        }),
        Value::Array(items) => items.iter().any(|i| mentions(i, keys, name)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(
        method: &'a http::Method,
        resource: (&'a str, &'a str),
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        subresource: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            method,
            watch: false,
            group: resource.0,
            resource: resource.1,
            namespace,
            name,
            subresource,
        }
    }

    async fn server() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        ApiServer {
            store: std::sync::Arc::new(berth_store::MemStore::new()),
            registry: std::sync::Arc::new(crate::resources::Registry::with_builtins()),
            auth: crate::auth::Authenticator::load_or_create(dir.path(), "").unwrap(),
            validators: Default::default(),
            options: Default::default(),
            quota_locks: Default::default(),
        }
    }

    async fn put(srv: &ApiServer, resource: &str, ns: Option<&str>, obj: Value) {
        let r = srv.registry.lookup("", "v1", resource).unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        srv.store
            .create(&r.key(ns, &name), serde_json::to_vec(&obj).unwrap())
            .await
            .unwrap();
    }

    /// The authorizer table: (method, (group, resource), namespace, name, subresource, allowed).
    #[tokio::test]
    async fn a_node_touches_only_its_own_objects() {
        use http::Method as M;
        let srv = server().await;
        put(&srv, "pods", Some("default"), json!({"metadata": {"name": "mine"},
            "spec": {"nodeName": "n1", "volumes": [{"name": "v", "secret": {"secretName": "s1"}}]}}))
        .await;
        put(&srv, "pods", Some("default"), json!({"metadata": {"name": "theirs"},
            "spec": {"nodeName": "n2", "containers": [{"envFrom": [{"secretRef": {"name": "s2"}}]}]}}))
        .await;
        let node = Identity::Node("n1".into());
        let (get, post, patch, put_, delete) = (M::GET, M::POST, M::PATCH, M::PUT, M::DELETE);
        let table: Vec<(Attributes, bool)> = vec![
            (attrs(&get, ("", "nodes"), None, None, None), true),
            (attrs(&post, ("", "nodes"), None, None, None), true),
            (
                attrs(&patch, ("", "nodes"), None, Some("n1"), Some("status")),
                true,
            ),
            (attrs(&patch, ("", "nodes"), None, Some("n2"), None), false),
            (
                attrs(&patch, ("", "nodes"), None, Some("n2"), Some("status")),
                false,
            ),
            (attrs(&delete, ("", "nodes"), None, Some("n1"), None), false),
            (
                attrs(
                    &put_,
                    ("coordination.k8s.io", "leases"),
                    Some(LEASE_NAMESPACE),
                    Some("n1"),
                    None,
                ),
                true,
            ),
            (
                attrs(
                    &put_,
                    ("coordination.k8s.io", "leases"),
                    Some(LEASE_NAMESPACE),
                    Some("n2"),
                    None,
                ),
                false,
            ),
            (
                attrs(
                    &post,
                    ("coordination.k8s.io", "leases"),
                    Some("default"),
                    None,
                    None,
                ),
                false,
            ),
            (
                attrs(
                    &patch,
                    ("", "pods"),
                    Some("default"),
                    Some("mine"),
                    Some("status"),
                ),
                true,
            ),
            (
                attrs(
                    &patch,
                    ("", "pods"),
                    Some("default"),
                    Some("theirs"),
                    Some("status"),
                ),
                false,
            ),
            (
                attrs(&patch, ("", "pods"), Some("default"), Some("mine"), None),
                false,
            ),
            (
                attrs(&delete, ("", "pods"), Some("default"), Some("mine"), None),
                true,
            ),
            (
                attrs(&delete, ("", "pods"), Some("default"), Some("theirs"), None),
                false,
            ),
            (
                attrs(&post, ("", "pods"), Some("default"), None, None),
                false,
            ),
            (
                attrs(
                    &get,
                    ("", "pods"),
                    Some("default"),
                    Some("mine"),
                    Some("log"),
                ),
                false,
            ),
            (
                attrs(&get, ("", "secrets"), Some("default"), Some("s1"), None),
                true,
            ),
            (
                attrs(&get, ("", "secrets"), Some("default"), Some("s2"), None),
                false,
            ),
            (
                attrs(&get, ("", "secrets"), Some("default"), None, None),
                false,
            ),
            (
                attrs(&post, ("", "events"), Some("default"), None, None),
                true,
            ),
            (
                attrs(
                    &get,
                    ("berth.dev", "modelservices"),
                    Some("default"),
                    None,
                    None,
                ),
                true,
            ),
            (
                attrs(
                    &post,
                    ("berth.dev", "modelservices"),
                    Some("default"),
                    None,
                    None,
                ),
                false,
            ),
            (
                attrs(
                    &get,
                    ("apiextensions.k8s.io", "customresourcedefinitions"),
                    None,
                    None,
                    None,
                ),
                false,
            ),
            (attrs(&post, ("", "namespaces"), None, None, None), false),
        ];
        for (a, want) in table {
            let got = authorize(&srv, &node, &a).await;
            assert_eq!(got.is_ok(), want, "{a:?}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code, 403);
            }
            assert!(authorize(&srv, &Identity::Admin, &a).await.is_ok());
        }
    }

    #[tokio::test]
    async fn denials_use_kubernetes_wording() {
        let srv = server().await;
        let m = http::Method::PATCH;
        let a = attrs(&m, ("", "nodes"), None, Some("n2"), None);
        let err = authorize(&srv, &Identity::Node("n1".into()), &a)
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope: node 'n1' cannot modify node 'n2'"
        );
        let post = http::Method::POST;
        let a = attrs(
            &post,
            ("berth.dev", "modelservices"),
            Some("default"),
            None,
            None,
        );
        let err = authorize(&srv, &Identity::Node("n1".into()), &a)
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "modelservices.berth.dev is forbidden: User \"system:node:n1\" cannot create resource \"modelservices\" in API group \"berth.dev\" in the namespace \"default\""
        );
    }

    #[test]
    fn nodes_create_only_their_own_node_and_lease() {
        let n1 = Identity::Node("n1".into());
        let own = json!({"metadata": {"name": "n1"}});
        let other = json!({"metadata": {"name": "n2"}});
        assert!(admit_create(&n1, "", "nodes", &own).is_ok());
        assert_eq!(
            admit_create(&n1, "", "nodes", &other).unwrap_err().code,
            403
        );
        assert_eq!(
            admit_create(&n1, "coordination.k8s.io", "leases", &other)
                .unwrap_err()
                .code,
            403
        );
        assert!(admit_create(&n1, "", "events", &other).is_ok());
        assert!(admit_create(&Identity::Admin, "", "nodes", &other).is_ok());
    }
}
