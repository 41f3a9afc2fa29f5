//! Parsing request paths into what they address.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api` (core versions).
    CoreRoot,
    /// `/apis` (group list).
    GroupsRoot,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>` (resource list).
    GroupVersion { group: String, version: String },
    /// A resource collection, object, or subresource.
    Resource(ResourcePath),
}

/// The coordinates of a resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the URL, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `binding`, ...), if any.
    pub subresource: Option<String>,
}

/// Parses a request path (without the query). `None` if it is not an API path.
pub fn parse(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["api"] => Some(ApiPath::CoreRoot),
        ["apis"] => Some(ApiPath::GroupsRoot),
        ["api", v] => Some(ApiPath::GroupVersion {
            group: String::new(),
            version: v.to_string(),
        }),
        ["apis", g] => Some(ApiPath::Group(g.to_string())),
        ["apis", g, v] => Some(ApiPath::GroupVersion {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => None,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Option<ApiPath> {
    let mk = |ns: Option<&str>, res: &str, name: Option<&str>, sub: Option<&str>| {
        Some(ApiPath::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: ns.map(String::from),
            resource: res.to_string(),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        }))
    };
    match rest {
        [res] => mk(None, res, None, None),
        ["namespaces", name] => mk(None, "namespaces", Some(name), None),
        // Namespaces' own subresources look like a namespaced collection; these names are reserved.
        ["namespaces", name, sub @ ("status" | "finalize")] => {
            mk(None, "namespaces", Some(name), Some(sub))
        }
        ["namespaces", ns, res] => mk(Some(ns), res, None, None),
        ["namespaces", ns, res, name] => mk(Some(ns), res, Some(name), None),
        ["namespaces", ns, res, name, sub] => mk(Some(ns), res, Some(name), Some(sub)),
        [res, name] => mk(None, res, Some(name), None),
        [res, name, sub] => mk(None, res, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(p: &str) -> ResourcePath {
        match parse(p) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn parses_all_shapes() {
        assert_eq!(parse("/api"), Some(ApiPath::CoreRoot));
        assert_eq!(
            parse("/apis/berth.dev/v1alpha1"),
            Some(ApiPath::GroupVersion {
                group: "berth.dev".into(),
                version: "v1alpha1".into()
            })
        );
        let r = rp("/api/v1/namespaces/default/pods/web/binding");
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            (Some("default"), "pods", Some("web"), Some("binding"))
        );
        let r = rp("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("kube-system"))
        );
        let r = rp("/api/v1/namespaces/x/status");
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("x"), Some("status"))
        );
        let r = rp("/apis/berth.dev/v1alpha1/modelservices");
        assert_eq!((r.namespace, r.name), (None, None));
        let r = rp("/api/v1/nodes/n1/status");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("nodes", Some("status"))
        );
        assert_eq!(parse("/healthz"), None);
    }
}
