//! Server-side apply and `metadata.managedFields` bookkeeping.
//!
//! [`apply`] merges a manager's partial object into the live one, reports conflicts with other
//! managers (unless forced), removes fields the manager stopped applying that nobody else owns,
//! and records the manager's `Apply` entry. [`record_update`] does the bookkeeping of PUT and
//! non-apply PATCH: the writer's `Update` entry gains the fields it changed, others lose them.

use serde_json::{Map, Value, json};

use super::fields::{
    FieldPath, FieldSet, PathElement, display, key_of, matches_item, remove_at, value_at,
};
use super::keys::ListType;

/// The operation a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (POST, PUT, non-apply PATCH).
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry; entries are identified by (manager, operation, subresource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldManagerEntry {
    /// The field manager's name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The API version the fields were written with.
    pub api_version: String,
    /// RFC 3339 time of the last write.
    pub time: String,
    /// `status`/`scale` when written through a subresource.
    pub subresource: Option<String>,
    /// The owned fields.
    pub fields: FieldSet,
}

impl FieldManagerEntry {
    /// Parses an entry; entries that are not FieldsV1 or lack a manager are skipped.
    fn from_json(v: &Value) -> Option<Self> {
        let operation = match v.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            _ => Operation::Update,
        };
        Some(FieldManagerEntry {
            manager: v.get("manager")?.as_str()?.to_string(),
            operation,
            api_version: v
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            time: v
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subresource: v
                .get("subresource")
                .and_then(Value::as_str)
                .map(String::from),
            fields: FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"manager": self.manager, "operation": self.operation.as_str(), "apiVersion": self.api_version,
            "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": self.fields.to_fields_v1()});
        if let Some(s) = &self.subresource {
            v["subresource"] = json!(s);
        }
        v
    }

    fn is(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// Who writes, and how.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager (`?fieldManager=`, or derived from the user agent for updates).
    pub manager: &'a str,
    /// The API version of the endpoint.
    pub api_version: &'a str,
    /// The write's time (RFC 3339).
    pub time: &'a str,
    /// `Some("status")` for writes through the status subresource.
    pub subresource: Option<&'a str>,
}

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The API version it wrote with.
    pub api_version: String,
    /// Its write time, for Update managers (kube-apiserver mentions it).
    pub time: Option<String>,
    /// The field, e.g. `.spec.replicas`.
    pub field: String,
}

impl Conflict {
    /// `conflict with "m" using v1` (plus ` at <time>` for Update managers).
    pub fn message(&self) -> String {
        let at = self
            .time
            .as_ref()
            .map(|t| format!(" at {t}"))
            .unwrap_or_default();
        format!(
            "conflict with \"{}\" using {}{at}",
            self.manager, self.api_version
        )
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the applied config changes (409, reason Conflict, one cause
    /// `FieldManagerConflict` per [`Conflict`]).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not acceptable (400).
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// The HTTP status code.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(_) => 400,
        }
    }

    /// metav1.Status `details.causes` (reason, message, field) for conflicts.
    pub fn causes(&self) -> Vec<Value> {
        match self {
            ApplyError::Conflicts(cs) => {
                cs.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": c.message(), "field": c.field})).collect()
            }
            ApplyError::Invalid(_) => Vec::new(),
        }
    }
}

fn conflicts_message(cs: &[Conflict]) -> String {
    let lines: Vec<String> = cs
        .iter()
        .map(|c| format!("{}: {}", c.message(), c.field))
        .collect();
    match lines.as_slice() {
        [one] => format!("Apply failed with 1 conflict: {one}"),
        _ => format!(
            "Apply failed with {} conflicts: {}",
            lines.len(),
            lines.join("\n")
        ),
    }
}

fn entries_of(obj: &Value) -> Vec<FieldManagerEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(FieldManagerEntry::from_json).collect())
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, entries: &[FieldManagerEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(FieldManagerEntry::to_json)
        .collect();
    if let Some(root) = obj.as_object_mut() {
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Whether `path` names a keyed list item (owned with `".": {}`) rather than a value.
fn is_item(path: &[PathElement]) -> bool {
    matches!(path.last(), Some(PathElement::Key(_)))
}

/// Server-side apply of `applied` by `w` onto `live` (`None`: the object is created). With
/// `force`, conflicting fields are taken from their owners instead of failing. The caller has
/// already dropped parts the endpoint ignores (e.g. `status` on the main resource).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    w: Writer<'_>,
    force: bool,
    list_type: &dyn Fn(&FieldPath) -> ListType,
) -> Result<Value, ApplyError> {
    if applied.pointer("/metadata/managedFields").is_some() {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let applied_set = FieldSet::of(applied, list_type);
    let mine = FieldManagerEntry {
        manager: w.manager.to_string(),
        operation: Operation::Apply,
        api_version: w.api_version.to_string(),
        time: w.time.to_string(),
        subresource: w.subresource.map(String::from),
        fields: applied_set.clone(),
    };
    let Some(live) = live else {
        let mut obj = applied.clone();
        store_entries(&mut obj, &[mine]);
        return Ok(obj);
    };
    let mut entries = entries_of(live);
    let is_mine = |e: &FieldManagerEntry| e.is(w.manager, Operation::Apply, w.subresource);
    let conflicts = find_conflicts(
        live,
        applied,
        &applied_set,
        entries.iter().filter(|e| !is_mine(e)),
    );
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(
            conflicts.into_iter().map(|(c, _)| c).collect(),
        ));
    }
    for (_, path) in &conflicts {
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            e.fields.remove(path);
        }
    }
    let mut out = live.clone();
    if let Some(prev) = entries.iter().find(|e| is_mine(e)) {
        let others: Vec<&FieldSet> = entries
            .iter()
            .filter(|e| !is_mine(e))
            .map(|e| &e.fields)
            .collect();
        for path in prev.fields.paths() {
            let kept = applied_set.touches(&path)
                || others.iter().any(|o| o.touches(&path) || o.owns(&path));
            if !kept {
                remove_at(&mut out, &path);
            }
        }
    }
    merge_applied(&mut out, applied, &mut Vec::new(), list_type);
    entries.retain(|e| !is_mine(e));
    entries.push(mine);
    store_entries(&mut out, &entries);
    Ok(out)
}

/// Applied paths whose value differs from live and that another manager owns.
fn find_conflicts<'a>(
    live: &Value,
    applied: &Value,
    applied_set: &FieldSet,
    others: impl Iterator<Item = &'a FieldManagerEntry> + Clone,
) -> Vec<(Conflict, FieldPath)> {
    let mut out = Vec::new();
    for path in applied_set.paths().into_iter().filter(|p| !is_item(p)) {
        if value_at(live, &path) == value_at(applied, &path) {
            continue;
        }
        for e in others.clone() {
            if e.fields.owns(&path) {
                out.push((
                    Conflict {
                        manager: e.manager.clone(),
                        api_version: e.api_version.clone(),
                        time: (e.operation == Operation::Update).then(|| e.time.clone()),
                        field: display(&path),
                    },
                    path.clone(),
                ));
            }
        }
    }
    out
}

/// Writes the applied values into `out`: maps merge, keyed lists merge item by item, sets gain
/// members, atomic lists and scalars are replaced.
fn merge_applied(
    out: &mut Value,
    applied: &Value,
    path: &mut FieldPath,
    list_type: &dyn Fn(&FieldPath) -> ListType,
) {
    match (out, applied) {
        (Value::Object(o), Value::Object(a)) => {
            for (k, v) in a {
                path.push(PathElement::Field(k.clone()));
                match o.get_mut(k) {
                    Some(existing) => merge_applied(existing, v, path, list_type),
                    None => {
                        o.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(o), Value::Array(a)) => match list_type(path) {
            ListType::Atomic => *o = a.clone(),
            ListType::Set => {
                for item in a {
                    if !o.contains(item) {
                        o.push(item.clone());
                    }
                }
            }
            ListType::Map(keys) => {
                for item in a {
                    let Some(seg) = key_of(item, &keys) else {
                        continue;
                    };
                    // Matching on the applied item's keys lets a live item whose optional key
                    // was defaulted (ports' protocol) still match.
                    let pos = o.iter().position(|c| matches_item(c, &seg));
                    path.push(seg);
                    match pos {
                        Some(i) => merge_applied(&mut o[i], item, path, list_type),
                        None => o.push(item.clone()),
                    }
                    path.pop();
                }
            }
        },
        (slot, v) => *slot = v.clone(),
    }
}

/// Records a non-apply write (`old` -> `new`) by `w` in `new`'s managedFields: the writer's
/// `Update` entry gains every field whose value changed and other managers lose those fields;
/// removed fields leave every entry. A managedFields list in `new` that differs from `old`'s is
/// taken as given (that is how clients reset or migrate ownership, `[]` clears it).
pub fn record_update(
    old: &Value,
    new: &mut Value,
    w: Writer<'_>,
    list_type: &dyn Fn(&FieldPath) -> ListType,
) {
    let given = new.pointer("/metadata/managedFields");
    if given.is_some() && given != old.pointer("/metadata/managedFields") {
        return;
    }
    let mut entries = entries_of(old);
    let new_set = FieldSet::of(new, list_type);
    let changed: Vec<FieldPath> = new_set
        .paths()
        .into_iter()
        .filter(|p| {
            value_at(old, p) != value_at(new, p) && !(is_item(p) && value_at(old, p).is_some())
        })
        .collect();
    let removed: Vec<FieldPath> = FieldSet::of(old, list_type)
        .paths()
        .into_iter()
        .filter(|p| value_at(new, p).is_none())
        .collect();
    if changed.is_empty() && removed.is_empty() {
        store_entries(new, &entries);
        return;
    }
    let pos = match entries
        .iter()
        .position(|e| e.is(w.manager, Operation::Update, w.subresource))
    {
        Some(i) => i,
        None => {
            entries.push(FieldManagerEntry {
                manager: w.manager.to_string(),
                operation: Operation::Update,
                api_version: String::new(),
                time: String::new(),
                subresource: w.subresource.map(String::from),
                fields: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    for e in entries.iter_mut() {
        for p in changed.iter().chain(&removed) {
            e.fields.remove(p);
        }
    }
    let mine = &mut entries[pos];
    for p in &changed {
        mine.fields.insert(p);
    }
    mine.api_version = w.api_version.to_string();
    mine.time = w.time.to_string();
    store_entries(new, &entries);
}

/// Whether a write result equals the live object apart from managedFields timestamps, i.e. the
/// server should not write (kubectl prints `unchanged`, resourceVersion stays).
pub fn unchanged(live: &Value, result: &Value) -> bool {
    without_times(live) == without_times(result)
}

fn without_times(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(Value::Array(entries)) = v.pointer_mut("/metadata/managedFields") {
        for e in entries.iter_mut().filter_map(Value::as_object_mut) {
            e.remove("time");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::keys::builtin_list_type;

    fn lists(p: &FieldPath) -> ListType {
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

    fn w(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "berth.dev/v1alpha1",
            time: "2026-01-01T00:00:00Z",
            subresource: None,
        }
    }

    fn ms(spec: Value) -> Value {
        json!({"apiVersion":"berth.dev/v1alpha1","kind":"ModelService","metadata":{"name":"m","namespace":"default"},"spec":spec})
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries_of(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation.as_str().to_string()))
            .collect()
    }

    #[test]
    fn apply_creates_and_records_the_managers_fields() {
        let obj = apply(
            None,
            &ms(json!({"replicas":2,"image":"x"})),
            w("kubectl"),
            false,
            &lists,
        )
        .unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        let mf = &obj["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "kubectl");
        assert_eq!(mf["operation"], "Apply");
        assert_eq!(mf["fieldsType"], "FieldsV1");
        assert_eq!(
            mf["fieldsV1"],
            json!({"f:spec":{"f:image":{},"f:replicas":{}}})
        );
    }

    #[test]
    fn dropped_fields_are_removed_unless_someone_else_owns_them() {
        let live = apply(
            None,
            &ms(json!({"replicas":2,"image":"x","port":80})),
            w("kubectl"),
            false,
            &lists,
        )
        .unwrap();
        let live = apply(
            Some(&live),
            &ms(json!({"port":80})),
            w("other"),
            false,
            &lists,
        )
        .unwrap();
        let out = apply(
            Some(&live),
            &ms(json!({"image":"x"})),
            w("kubectl"),
            false,
            &lists,
        )
        .unwrap();
        assert!(
            out["spec"].get("replicas").is_none(),
            "replicas was only kubectl's"
        );
        assert_eq!(out["spec"]["port"], 80, "port is shared with 'other'");
        assert_eq!(out["spec"]["image"], "x");
    }

    #[test]
    fn update_then_apply_conflicts_like_kubectl_scale() {
        let live = apply(
            None,
            &ms(json!({"replicas":1,"image":"x"})),
            w("kubectl"),
            false,
            &lists,
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(&live, &mut scaled, w("kubectl-client-side-apply"), &lists);
        assert_eq!(
            managers(&scaled),
            vec![
                ("kubectl".into(), "Apply".into()),
                ("kubectl-client-side-apply".into(), "Update".into())
            ]
        );
        let err = apply(
            Some(&scaled),
            &ms(json!({"replicas":1,"image":"x"})),
            w("kubectl"),
            false,
            &lists,
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 409);
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using berth.dev/v1alpha1 at 2026-01-01T00:00:00Z: .spec.replicas"
        );
        assert_eq!(err.causes()[0]["field"], ".spec.replicas");
        assert_eq!(err.causes()[0]["reason"], "FieldManagerConflict");
        // Re-applying the value the updater set is no conflict.
        assert!(
            apply(
                Some(&scaled),
                &ms(json!({"replicas":3,"image":"x"})),
                w("kubectl"),
                false,
                &lists
            )
            .is_ok()
        );
        // Force takes ownership: the updater's now-empty entry goes away.
        let forced = apply(
            Some(&scaled),
            &ms(json!({"replicas":1,"image":"x"})),
            w("kubectl"),
            true,
            &lists,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        assert_eq!(managers(&forced), vec![("kubectl".into(), "Apply".into())]);
    }

    #[test]
    fn two_appliers_conflict_and_list_every_field() {
        let live = apply(
            None,
            &ms(json!({"replicas":1,"image":"x"})),
            w("a"),
            false,
            &lists,
        )
        .unwrap();
        let err = apply(
            Some(&live),
            &ms(json!({"replicas":2,"image":"y"})),
            w("b"),
            false,
            &lists,
        )
        .unwrap_err();
        let ApplyError::Conflicts(cs) = &err else {
            panic!("{err}")
        };
        let fields: Vec<&str> = cs.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec![".spec.image", ".spec.replicas"]);
        assert!(err.to_string().starts_with("Apply failed with 2 conflicts: conflict with \"a\" using berth.dev/v1alpha1: .spec.image\n"));
    }

    #[test]
    fn keyed_lists_merge_per_item_and_items_are_owned_separately() {
        let pod = |containers: Value| json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":containers}});
        let live = apply(
            None,
            &pod(json!([{"name":"a","image":"1"}])),
            w("one"),
            false,
            &lists,
        )
        .unwrap();
        let live = apply(
            Some(&live),
            &pod(json!([{"name":"b","image":"2"}])),
            w("two"),
            false,
            &lists,
        )
        .unwrap();
        assert_eq!(
            live["spec"]["containers"],
            json!([{"name":"a","image":"1"},{"name":"b","image":"2"}])
        );
        // "one" changing its own container is no conflict; "two" changing a's image is.
        let live = apply(
            Some(&live),
            &pod(json!([{"name":"a","image":"3"}])),
            w("one"),
            false,
            &lists,
        )
        .unwrap();
        let err = apply(
            Some(&live),
            &pod(json!([{"name":"b","image":"2"},{"name":"a","image":"4"}])),
            w("two"),
            false,
            &lists,
        )
        .unwrap_err();
        assert_eq!(
            err.causes()[0]["field"],
            ".spec.containers[name=\"a\"].image"
        );
        // "one" dropping its container removes the item.
        let out = apply(Some(&live), &pod(json!([])), w("one"), false, &lists).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name":"b","image":"2"}]));
    }

    #[test]
    fn applied_ports_match_live_items_with_a_defaulted_protocol() {
        let pod = |ports: Value| json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","ports":ports}]}});
        let mut live = apply(
            None,
            &pod(json!([{"containerPort":80}])),
            w("m"),
            false,
            &lists,
        )
        .unwrap();
        live["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let out = apply(
            Some(&live),
            &pod(json!([{"containerPort":80,"name":"http"}])),
            w("m"),
            false,
            &lists,
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort":80,"protocol":"TCP","name":"http"}])
        );
    }

    #[test]
    fn atomic_lists_are_replaced_and_sets_unioned() {
        let live = apply(None, &ms(json!({"args":["a","b"]})), w("m"), false, &lists).unwrap();
        let out = apply(
            Some(&live),
            &ms(json!({"args":["c"]})),
            w("m"),
            false,
            &lists,
        )
        .unwrap();
        assert_eq!(out["spec"]["args"], json!(["c"]));
        let obj = |f: Value| json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":f}});
        let live = apply(None, &obj(json!(["x"])), w("m1"), false, &lists).unwrap();
        let out = apply(Some(&live), &obj(json!(["y"])), w("m2"), false, &lists).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
    }

    #[test]
    fn apply_of_the_same_config_is_unchanged() {
        let live = apply(None, &ms(json!({"replicas":1})), w("m"), false, &lists).unwrap();
        let later = Writer {
            time: "2026-02-02T00:00:00Z",
            ..w("m")
        };
        let again = apply(
            Some(&live),
            &ms(json!({"replicas":1})),
            later,
            false,
            &lists,
        )
        .unwrap();
        assert!(unchanged(&live, &again));
        let changed = apply(
            Some(&live),
            &ms(json!({"replicas":2})),
            later,
            false,
            &lists,
        )
        .unwrap();
        assert!(!unchanged(&live, &changed));
    }

    #[test]
    fn managed_fields_in_an_applied_config_are_rejected() {
        let mut bad = ms(json!({}));
        bad["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            apply(None, &bad, w("m"), false, &lists)
                .unwrap_err()
                .status_code(),
            400
        );
    }

    #[test]
    fn update_removals_and_explicit_reset() {
        let live = apply(
            None,
            &ms(json!({"replicas":1,"image":"x"})),
            w("kubectl"),
            false,
            &lists,
        )
        .unwrap();
        let mut edited = live.clone();
        edited["spec"].as_object_mut().unwrap().remove("image");
        record_update(&live, &mut edited, w("kubectl-edit"), &lists);
        assert_eq!(
            entries_of(&edited)[0].fields.to_fields_v1(),
            json!({"f:spec":{"f:replicas":{}}})
        );
        assert_eq!(
            managers(&edited),
            vec![("kubectl".into(), "Apply".into())],
            "a pure removal owns nothing"
        );
        let mut reset = edited.clone();
        reset["metadata"]["managedFields"] = json!([]);
        reset["spec"]["replicas"] = json!(5);
        record_update(&edited, &mut reset, w("kube-rs"), &lists);
        assert_eq!(reset["metadata"]["managedFields"], json!([]));
    }
}
