//! Field sets: which fields of an object a manager owns, and their `fieldsV1` encoding
//! (`f:<name>` map fields, `k:{...}` keyed list items, `v:<json>` set members, `i:<n>` positions,
//! `".": {}` for ownership of a list item itself).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::keys::ListType;

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// A map field.
    Field(String),
    /// A keyed list item, identified by its key fields (JSON of a sorted map).
    Key(String),
    /// A member of a set list (its JSON).
    Value(String),
    /// A position in an atomic list.
    Index(usize),
}

/// A path from the object root, e.g. `.spec.containers[name="a"].image`.
pub type FieldPath = Vec<PathElement>;

/// A set of owned field paths, as a tree. A node with no children is an owned leaf; `me` marks
/// ownership of a node that also has children (keyed list items: `".": {}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    me: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

/// Top-level bookkeeping fields that nobody owns (server-managed or identity).
const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

impl FieldSet {
    /// The fields set in `obj` (minus apiVersion, kind and server-managed metadata), with lists
    /// described by `list_type`.
    pub fn of(obj: &Value, list_type: &dyn Fn(&FieldPath) -> ListType) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(map) = obj.as_object() else {
            return set;
        };
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let mut path = vec![PathElement::Field(k.clone())];
            let child = if k == "metadata" {
                let mut meta = v.clone();
                if let Some(m) = meta.as_object_mut() {
                    m.retain(|k, _| !STRIPPED_METADATA.contains(&k.as_str()));
                    if m.is_empty() {
                        continue;
                    }
                }
                walk(&meta, &mut path, list_type)
            } else {
                walk(v, &mut path, list_type)
            };
            set.children.insert(PathElement::Field(k.clone()), child);
        }
        set
    }

    /// Whether the set owns nothing.
    pub fn is_empty(&self) -> bool {
        !self.me && self.children.is_empty()
    }

    /// Every owned path: leaves, and nodes marked `".": {}`.
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        if !prefix.is_empty() && (self.me || self.children.is_empty()) {
            out.push(prefix.clone());
        }
        for (k, child) in &self.children {
            prefix.push(k.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Whether `path` is owned: it is a member, or lies under an owned leaf (an atomic value).
    pub fn owns(&self, path: &[PathElement]) -> bool {
        let mut node = self;
        for (depth, seg) in path.iter().enumerate() {
            if depth > 0 && node.children.is_empty() {
                return true;
            }
            match node.children.get(seg) {
                Some(next) => node = next,
                None => return false,
            }
        }
        node.me || node.children.is_empty()
    }

    /// Whether some member lies at or below `path`.
    pub fn touches(&self, path: &[PathElement]) -> bool {
        let mut node = self;
        for seg in path {
            match node.children.get(seg) {
                Some(next) => node = next,
                None => return false,
            }
        }
        true
    }

    /// Adds `path` as a member.
    pub fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for seg in path {
            node = node.children.entry(seg.clone()).or_default();
        }
        if !node.children.is_empty() {
            node.me = true;
        }
    }

    /// Removes `path` and everything below it, pruning parents left empty.
    pub fn remove(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            *self = FieldSet::default();
            return;
        };
        if rest.is_empty() {
            self.children.remove(first);
            return;
        }
        if let Some(child) = self.children.get_mut(first) {
            // A leaf child stands for ownership of a whole value: removing part of it drops it.
            if child.children.is_empty() {
                self.children.remove(first);
                return;
            }
            child.remove(rest);
            if child.is_empty() {
                self.children.remove(first);
            }
        }
    }

    /// The `fieldsV1` JSON encoding.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.me {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &self.children {
            m.insert(encode(k), child.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Parses a `fieldsV1` JSON tree; unknown keys are ignored.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        for (k, child) in v.as_object().into_iter().flatten() {
            if k == "." {
                set.me = true;
            } else if let Some(seg) = decode(k) {
                set.children.insert(seg, FieldSet::from_fields_v1(child));
            }
        }
        // `".": {}` on a node without children is just a leaf.
        if set.children.is_empty() {
            set.me = false;
        }
        set
    }
}

fn walk(v: &Value, path: &mut FieldPath, list_type: &dyn Fn(&FieldPath) -> ListType) -> FieldSet {
    let mut set = FieldSet::default();
    match v {
        // Empty maps are owned as leaves, like upstream.
        Value::Object(m) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                set.children
                    .insert(PathElement::Field(k.clone()), walk(child, path, list_type));
                path.pop();
            }
        }
        Value::Array(items) => match list_type(path) {
            ListType::Atomic => {}
            ListType::Set => {
                for item in items {
                    set.children
                        .insert(PathElement::Value(item.to_string()), FieldSet::default());
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    let Some(seg) = key_of(item, &keys) else {
                        continue;
                    };
                    path.push(seg.clone());
                    let mut child = walk(item, path, list_type);
                    path.pop();
                    child.me = !child.children.is_empty();
                    set.children.insert(seg, child);
                }
            }
        },
        _ => {}
    }
    set
}

/// The `Key` element of a keyed list item (key fields it lacks are left out, as upstream does
/// for defaulted keys such as `protocol`); `None` if it has none of them.
pub fn key_of(item: &Value, keys: &[String]) -> Option<PathElement> {
    let mut sorted: BTreeMap<&str, &Value> = BTreeMap::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            sorted.insert(k, v);
        }
    }
    if sorted.is_empty() {
        return None;
    }
    let fields: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String((*k).into()), v))
        .collect();
    Some(PathElement::Key(format!("{{{}}}", fields.join(","))))
}

fn encode(seg: &PathElement) -> String {
    match seg {
        PathElement::Field(f) => format!("f:{f}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

fn decode(k: &str) -> Option<PathElement> {
    let (tag, rest) = k.split_at_checked(2)?;
    match tag {
        "f:" => Some(PathElement::Field(rest.into())),
        // Re-serialize so keys written by other servers compare equal to ours.
        "k:" => {
            let m: Map<String, Value> = serde_json::from_str(rest).ok()?;
            let keys: Vec<String> = m.keys().cloned().collect();
            key_of(&Value::Object(m), &keys)
        }
        "v:" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(|v| PathElement::Value(v.to_string())),
        "i:" => rest.parse().ok().map(PathElement::Index),
        _ => None,
    }
}

/// The value at `path` in `obj`, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, seg| match seg {
        PathElement::Field(f) => cur.get(f),
        PathElement::Index(i) => cur.get(i),
        PathElement::Key(_) | PathElement::Value(_) => {
            cur.as_array()?.iter().find(|item| matches_item(item, seg))
        }
    })
}

/// Whether a list item is the one `seg` (a `Key` or `Value` element) names.
pub fn matches_item(item: &Value, seg: &PathElement) -> bool {
    match seg {
        PathElement::Value(v) => &item.to_string() == v,
        PathElement::Key(k) => {
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(k) else {
                return false;
            };
            keys.iter().all(|(name, want)| item.get(name) == Some(want))
        }
        _ => false,
    }
}

/// Removes the value at `path` from `obj` (a map field or a list item).
pub fn remove_at(obj: &mut Value, path: &[PathElement]) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in init {
        let next = match seg {
            PathElement::Field(f) => cur.get_mut(f),
            PathElement::Index(i) => cur.get_mut(i),
            _ => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| matches_item(item, seg))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        PathElement::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        PathElement::Index(_) => {}
        seg => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|item| !matches_item(item, seg));
            }
        }
    }
}

/// Renders a path the way conflict messages do: `.spec.containers[name="a"].image`.
pub fn display(path: &[PathElement]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathElement::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            PathElement::Key(k) => {
                let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => s.push_str(&format!("[={v}]")),
            PathElement::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::keys::builtin_list_type;
    use serde_json::json;

    fn pod_lists(p: &FieldPath) -> ListType {
        let names: Vec<&str> = p
            .iter()
            .filter_map(|s| {
                if let PathElement::Field(f) = s {
                    Some(f.as_str())
                } else {
                    None
                }
            })
            .collect();
        builtin_list_type("Pod", &names)
    }

    #[test]
    fn fields_v1_encoding_matches_upstream_shape() {
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1"},"finalizers":["x"]},
            "spec":{"containers":[{"name":"c","image":"i","args":["1"]}]}});
        let set = FieldSet::of(&pod, &pod_lists);
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:metadata":{"f:labels":{"f:a":{}},"f:finalizers":{"v:\"x\"":{}}},
                "f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:args":{},"f:image":{},"f:name":{}}}}})
        );
        assert_eq!(
            FieldSet::from_fields_v1(&set.to_fields_v1()),
            set,
            "round trip"
        );
    }

    #[test]
    fn ownership_covers_atomic_descendants_and_removal_prunes() {
        let mut set = FieldSet::from_fields_v1(&json!({"f:spec":{"f:args":{},"f:replicas":{}}}));
        let args = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("args".into()),
        ];
        assert!(set.owns(&args));
        assert!(set.owns(&[args[0].clone(), args[1].clone(), PathElement::Index(0)]));
        assert!(!set.owns(&[
            PathElement::Field("spec".into()),
            PathElement::Field("image".into())
        ]));
        set.remove(&args);
        set.remove(&[
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into()),
        ]);
        assert!(set.is_empty());
    }

    #[test]
    fn values_are_found_and_removed_by_key() {
        let mut pod =
            json!({"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"2"}]}});
        let b = key_of(&json!({"name":"b"}), &["name".into()]).unwrap();
        let path = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            b,
        ];
        assert_eq!(value_at(&pod, &path).unwrap()["image"], "2");
        assert_eq!(display(&path), ".spec.containers[name=\"b\"]");
        remove_at(&mut pod, &path);
        assert_eq!(pod["spec"]["containers"], json!([{"name":"a","image":"1"}]));
    }
}
