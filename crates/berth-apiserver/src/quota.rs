//! ResourceQuota admission, as Kubernetes' ResourceQuota admission plugin and quota controller
//! enforce and report it.
//!
//! A namespace's ResourceQuotas cap, in `spec.hard`, what the namespace's objects may take.
//! Enforced keys: `pods` (Pods not in a terminal phase), `requests.cpu` and `requests.memory`
//! (with `cpu` and `memory` as their aliases) and `limits.cpu` and `limits.memory`, summed over
//! those Pods' containers (an init container counts when it alone needs more than the others
//! together), and object counts `count/<resource>` (core) or `count/<resource>.<group>` of any
//! namespaced resource, e.g. `count/pods` or `count/modelservices.berth.dev`. Other keys are
//! accepted and shown, but not enforced.
//!
//! Only creates are checked. A create that would take a quota past a hard limit is refused with
//! 403 Forbidden in Kubernetes' words (`pods "web" is forbidden: exceeded quota: q, requested:
//! pods=1, used: pods=20, limited: pods=20`), naming only the keys that would be exceeded. Like
//! Kubernetes, a Pod with a container that states no cpu (or memory) request or limit is refused
//! when a quota caps that resource (`failed quota: q: must specify requests.cpu for: app`).
//!
//! Usage is counted afresh from the store at every check, under a per-namespace lock held from
//! the check until the object is stored ([`Admitted`]), so two parallel creates can never both
//! take the last unit. Each quota's `status.hard` and `status.used` (what `kubectl describe
//! quota` shows) are written when the quota is created, after every create admitted against it,
//! and every few seconds by [`run`], which also notices deletions and Pods that finished.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::quantity::parse_quantity;
use berth_store::RangeOptions;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::OwnedMutexGuard;

use crate::error::{ApiError, ApiResult, Cause};
use crate::object;
use crate::resources::ResourceInfo;
use crate::rest::Ctx;
use crate::state::ApiServer;

/// How often [`run`] recomputes every quota's `status.used`.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Keys that require every container to state the amount (Kubernetes' backward-compatible
/// "validation set"; no other resource ever joins it).
const MUST_SPECIFY: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Whether a Pod is charged under `key`: its count, or one of the compute amounts above.
fn pod_key(key: &str) -> bool {
    key == "pods" || key == "count/pods" || MUST_SPECIFY.contains(&key)
}

/// Amounts per quota key, in thousandths of the unit (millicores, millibytes, milli-objects),
/// which keeps sums of Pod requests exact.
pub type Usage = BTreeMap<String, i128>;

/// One `spec.hard` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Hard {
    /// The limit in thousandths of the unit.
    pub amount: i128,
    /// Whether the limit was written with a binary suffix (`Gi`), so amounts print the same way.
    pub binary: bool,
}

/// The hard limits of a quota object, by key; values that are not quantities are skipped
/// (validation refuses them on writes).
pub fn hard_limits(quota: &Value) -> BTreeMap<String, Hard> {
    let Some(hard) = quota["spec"]["hard"].as_object() else {
        return BTreeMap::new();
    };
    hard.iter()
        .filter_map(|(k, v)| {
            let text = quantity_text(v)?;
            let amount = milli(&text)?;
            let binary = text.ends_with('i');
            Some((k.clone(), Hard { amount, binary }))
        })
        .collect()
}

/// A quantity as JSON: a string, or a bare number (YAML `pods: 20`).
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A quantity in thousandths of its unit.
fn milli(text: &str) -> Option<i128> {
    let v = parse_quantity(text).ok()?;
    // Rounded to whole thousandths: finer amounts (nanocores) do not occur in Pod specs.
    Some((v * 1000.0).round() as i128)
}

/// Prints an amount the way Kubernetes prints a quantity: `500m`, `2`, `20`, `1k`, `256Mi`.
pub fn format_amount(milli: i128, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if units == 0 {
        return "0".into();
    }
    let suffixes: &[(&str, i128)] = if binary {
        &[
            ("Ei", 1 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ]
    } else {
        &[
            ("E", 1_000_000_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("T", 1_000_000_000_000),
            ("G", 1_000_000_000),
            ("M", 1_000_000),
            ("k", 1_000),
        ]
    };
    suffixes
        .iter()
        .find(|(_, scale)| units % scale == 0)
        .map_or(units.to_string(), |(s, scale)| {
            format!("{}{s}", units / scale)
        })
}

/// Whether a Pod still counts against `pods` and the compute keys: not Succeeded or Failed, and
/// not past the end of its deletion grace period.
fn charged(pod: &Value, now: DateTime<Utc>) -> bool {
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let meta = &pod["metadata"];
    let deleted_at = meta["deletionTimestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    match (deleted_at, meta["deletionGracePeriodSeconds"].as_i64()) {
        (Some(at), Some(grace)) => now <= at + chrono::Duration::seconds(grace),
        _ => true,
    }
}

/// The containers and init containers of a Pod spec.
fn containers<'a>(spec: &'a Value, field: &str) -> &'a [Value] {
    spec[field].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A container's request (an unset request defaults to the limit, as Kubernetes' defaulting
/// does) or limit of `resource`.
fn container_amount(c: &Value, resource: &str, limit: bool) -> Option<i128> {
    let r = &c["resources"];
    let q = if limit {
        r["limits"].get(resource)
    } else {
        r["requests"]
            .get(resource)
            .or_else(|| r["limits"].get(resource))
    };
    milli(&quantity_text(q?)?)
}

/// A Pod's request or limit of `resource`: its containers together, or its largest init
/// container if that needs more (init containers run one at a time, before the others).
fn pod_amount(spec: &Value, resource: &str, limit: bool) -> i128 {
    let amount = |c: &Value| container_amount(c, resource, limit);
    let sum: i128 = containers(spec, "containers")
        .iter()
        .filter_map(amount)
        .sum();
    let init = containers(spec, "initContainers")
        .iter()
        .filter_map(amount)
        .max()
        .unwrap_or(0);
    sum.max(init)
}

/// What one Pod adds to its namespace's usage, at time `now`.
pub fn pod_usage(pod: &Value, now: DateTime<Utc>) -> Usage {
    let mut u = Usage::from([("count/pods".to_string(), 1000)]);
    if !charged(pod, now) {
        return u;
    }
    let spec = &pod["spec"];
    let (cpu, memory) = (
        pod_amount(spec, "cpu", false),
        pod_amount(spec, "memory", false),
    );
    for (key, amount) in [
        ("pods", 1000),
        ("cpu", cpu),
        ("requests.cpu", cpu),
        ("memory", memory),
        ("requests.memory", memory),
        ("limits.cpu", pod_amount(spec, "cpu", true)),
        ("limits.memory", pod_amount(spec, "memory", true)),
    ] {
        u.insert(key.to_string(), amount);
    }
    u
}

/// Whether container `c` states the amount quota key `key` counts.
fn states(c: &Value, key: &str) -> bool {
    let (resource, limit) = match key {
        "cpu" | "requests.cpu" => ("cpu", false),
        "memory" | "requests.memory" => ("memory", false),
        "limits.cpu" => ("cpu", true),
        _ => ("memory", true),
    };
    container_amount(c, resource, limit).is_some()
}

/// Kubernetes' refusal when a quota caps cpu or memory and containers do not say how much they
/// take: `must specify requests.cpu for: a,b; requests.memory for: b` (keys and names sorted).
pub fn missing_amounts<'a>(
    hard_keys: impl Iterator<Item = &'a str>,
    spec: &Value,
) -> Option<String> {
    let required: BTreeSet<&str> = hard_keys.filter(|k| MUST_SPECIFY.contains(k)).collect();
    let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let all = containers(spec, "containers")
        .iter()
        .chain(containers(spec, "initContainers"));
    for c in all {
        for key in required.iter().filter(|k| !states(c, k)) {
            let name = c["name"].as_str().unwrap_or_default();
            missing.entry(key).or_default().insert(name);
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(key, names)| {
            let names: Vec<&str> = names.iter().copied().collect();
            format!("{key} for: {}", names.join(","))
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// Kubernetes' refusal when `used + requested` passes a hard limit of quota `name`:
/// `exceeded quota: q, requested: pods=1, used: pods=20, limited: pods=20`, naming only the
/// keys exceeded, sorted.
pub fn exceeded(
    name: &str,
    hard: &BTreeMap<String, Hard>,
    used: &Usage,
    requested: &Usage,
) -> Option<String> {
    let used_of = |k: &str| used.get(k).copied().unwrap_or(0);
    let over: Vec<(&String, &Hard)> = requested
        .iter()
        .filter_map(|(k, r)| {
            hard.get(k)
                .filter(|h| used_of(k) + r > h.amount)
                .map(|h| (k, h))
        })
        .collect();
    if over.is_empty() {
        return None;
    }
    let list = |amount: &dyn Fn(&str, &Hard) -> i128| {
        over.iter()
            .map(|(k, h)| format!("{k}={}", format_amount(amount(k, h), h.binary)))
            .collect::<Vec<_>>()
            .join(",")
    };
    Some(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        list(&|k, _| requested.get(k).copied().unwrap_or(0)),
        list(&|k, _| used_of(k)),
        list(&|_, h| h.amount),
    ))
}

/// Problems with a ResourceQuota's `spec.hard` (validation of creates and updates).
pub fn validate(quota: &Value) -> Vec<Cause> {
    let Some(hard) = quota["spec"]["hard"].as_object() else {
        return Vec::new();
    };
    hard.iter()
        .filter_map(|(k, v)| {
            let text = quantity_text(v).unwrap_or_default();
            let problem = match parse_quantity(&text) {
                Err(e) => e.to_string(),
                Ok(n) if n < 0.0 => "must be greater than or equal to 0".to_string(),
                Ok(_) => return None,
            };
            Some(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {v}: {problem}"),
                field: format!("spec.hard[{k}]"),
            })
        })
        .collect()
}

/// One async lock per namespace that has quotas, held from a quota check until the object is
/// stored, so parallel creates see each other's usage. Entries stay (one small entry per
/// namespace ever checked).
#[derive(Debug, Default)]
pub struct Locks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Locks {
    /// Waits for namespace `ns`'s lock.
    pub async fn lock(&self, ns: &str) -> OwnedMutexGuard<()> {
        let lock = {
            // A poisoned map is still a consistent map (every change is one insert).
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(ns.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A stored ResourceQuota.
struct Quota {
    key: String,
    revision: i64,
    obj: Value,
    name: String,
    hard: BTreeMap<String, Hard>,
}

fn quota_resource(srv: &ApiServer) -> ApiResult<Arc<ResourceInfo>> {
    srv.registry
        .lookup("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("resourcequotas are not served"))
}

/// The quotas of namespace `ns`, in name order.
async fn quotas(srv: &ApiServer, ns: &str) -> ApiResult<Vec<Quota>> {
    let r = quota_resource(srv)?;
    let listed = srv
        .store
        .range(&r.collection_prefix(Some(ns)), RangeOptions::default())
        .await?;
    listed
        .kvs
        .into_iter()
        .map(|kv| {
            let obj = object::decode(&kv, &r)?;
            Ok(Quota {
                key: kv.key,
                revision: kv.mod_revision,
                name: object::name(&obj).unwrap_or_default().to_string(),
                hard: hard_limits(&obj),
                obj,
            })
        })
        .collect()
}

/// The namespaced resource a `count/<resource>[.<group>]` key counts.
fn counted(srv: &ApiServer, key: &str) -> Option<Arc<ResourceInfo>> {
    let resource = key.strip_prefix("count/")?;
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    srv.registry
        .all()
        .into_iter()
        .find(|r| r.namespaced && r.plural == plural && r.group == group)
}

/// Whether berth counts quota key `key`.
fn known(srv: &ApiServer, key: &str) -> bool {
    pod_key(key) || counted(srv, key).is_some()
}

/// Whether a create of resource `r` is charged under quota key `key`.
fn charges(r: &ResourceInfo, key: &str) -> bool {
    if is_pods(r) {
        pod_key(key)
    } else {
        key.strip_prefix("count/") == Some(r.qualified_plural().as_str())
    }
}

fn is_pods(r: &ResourceInfo) -> bool {
    r.builtin && r.group.is_empty() && r.plural == "pods"
}

/// What namespace `ns` uses now of the quota keys `keys`.
async fn usage(srv: &ApiServer, ns: &str, keys: &BTreeSet<&str>) -> ApiResult<Usage> {
    let mut used = Usage::new();
    if keys.iter().any(|k| pod_key(k)) {
        let pods = srv
            .registry
            .lookup("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not served"))?;
        let now = Utc::now();
        let listed = srv
            .store
            .range(&pods.collection_prefix(Some(ns)), RangeOptions::default())
            .await?;
        for kv in listed.kvs {
            let pod: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
            for (k, v) in pod_usage(&pod, now) {
                *used.entry(k).or_default() += v;
            }
        }
    }
    for key in keys.iter().filter(|k| !pod_key(k)) {
        if let Some(r) = counted(srv, key) {
            let one = RangeOptions {
                limit: Some(1),
                ..RangeOptions::default()
            };
            let n = srv
                .store
                .range(&r.collection_prefix(Some(ns)), one)
                .await?
                .count;
            used.insert(
                key.to_string(),
                i128::try_from(n).unwrap_or(i128::MAX) * 1000,
            );
        }
    }
    Ok(used)
}

/// The quota with `status.hard` (its spec) and `status.used` (of the keys berth counts).
fn with_status(srv: &ApiServer, q: &Quota, used: &Usage) -> Value {
    let mut obj = q.obj.clone();
    let used: Map<String, Value> = q
        .hard
        .iter()
        .filter(|(k, _)| known(srv, k))
        .map(|(k, h)| {
            let amount = used.get(k).copied().unwrap_or(0);
            (k.clone(), json!(format_amount(amount, h.binary)))
        })
        .collect();
    obj["status"] = json!({"hard": obj["spec"]["hard"].clone(), "used": used});
    obj
}

/// Writes a quota's status if it changed; a lost race is left to the next refresh.
async fn write_status(srv: &ApiServer, q: &Quota, next: &Value) {
    if q.obj["status"] == next["status"] {
        return;
    }
    let written = match quota_resource(srv).and_then(|r| object::encode(next, &r)) {
        Ok(bytes) => srv.store.update(&q.key, bytes, q.revision).await.err(),
        Err(e) => Some(berth_store::StoreError::Backend(e.to_string())),
    };
    if let Some(e) = written {
        tracing::debug!(quota = %q.key, error = %e, "quota status not written");
    }
}

/// A create admitted against the namespace's quotas: holds the namespace's lock until it is
/// stored, then [`Admitted::commit`] records the new usage in the quotas' status.
pub struct Admitted {
    _lock: OwnedMutexGuard<()>,
    statuses: Vec<(Quota, Value)>,
}

impl Admitted {
    /// Writes each charged quota's new `status.used`, then releases the namespace.
    pub async fn commit(self, srv: &ApiServer) {
        for (q, next) in &self.statuses {
            write_status(srv, q, next).await;
        }
    }
}

/// Checks the create of `obj` (named already) against its namespace's quotas. `None` when no
/// quota charges it; otherwise hold the answer until the object is stored.
pub async fn admit(ctx: &Ctx, obj: &Value) -> ApiResult<Option<Admitted>> {
    let srv = &ctx.srv;
    let Some(ns) = ctx.namespace() else {
        return Ok(None);
    };
    let charged_here = |q: &Quota| q.hard.keys().any(|k| charges(&ctx.r, k));
    if !quotas(srv, ns).await?.iter().any(charged_here) {
        return Ok(None);
    }
    let lock = srv.quota_locks.lock(ns).await;
    // Read again under the lock: this is the state every other create now waits behind.
    let relevant: Vec<Quota> = quotas(srv, ns)
        .await?
        .into_iter()
        .filter(charged_here)
        .collect();
    let name = object::name(obj).unwrap_or_default();
    let forbidden = |why: String| {
        let plural = ctx.r.qualified_plural();
        ApiError::forbidden(format!("{plural} \"{name}\" is forbidden: {why}"))
            .with_details(&ctx.r, name)
    };
    if is_pods(&ctx.r) {
        for q in &relevant {
            if let Some(m) = missing_amounts(q.hard.keys().map(String::as_str), &obj["spec"]) {
                return Err(forbidden(format!("failed quota: {}: {m}", q.name)));
            }
        }
    }
    let keys: BTreeSet<&str> = relevant
        .iter()
        .flat_map(|q| q.hard.keys().map(String::as_str))
        .filter(|k| charges(&ctx.r, k))
        .collect();
    let used = usage(srv, ns, &keys).await?;
    let delta = if is_pods(&ctx.r) {
        pod_usage(obj, Utc::now())
    } else {
        Usage::from([(format!("count/{}", ctx.r.qualified_plural()), 1000)])
    };
    let mut statuses = Vec::new();
    for q in relevant {
        let requested: Usage = delta
            .iter()
            .filter(|(k, v)| **v != 0 && q.hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if let Some(m) = exceeded(&q.name, &q.hard, &used, &requested) {
            return Err(forbidden(m));
        }
        let mut after = used.clone();
        for (k, v) in &requested {
            *after.entry(k.clone()).or_default() += v;
        }
        let next = with_status(srv, &q, &after);
        statuses.push((q, next));
    }
    Ok(Some(Admitted {
        _lock: lock,
        statuses,
    }))
}

/// Fills in the status of a ResourceQuota about to be created, from the namespace's usage now.
pub async fn initial_status(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let (Some(ns), true) = (ctx.namespace(), is_quotas(&ctx.r)) else {
        return Ok(());
    };
    let q = Quota {
        key: String::new(),
        revision: 0,
        name: String::new(),
        hard: hard_limits(obj),
        obj: obj.clone(),
    };
    let keys: BTreeSet<&str> = q.hard.keys().map(String::as_str).collect();
    let used = usage(&ctx.srv, ns, &keys).await?;
    *obj = with_status(&ctx.srv, &q, &used);
    Ok(())
}

/// Whether `r` is the built-in ResourceQuota resource.
pub fn is_quotas(r: &ResourceInfo) -> bool {
    r.builtin && r.group.is_empty() && r.plural == "resourcequotas"
}

/// Recomputes every quota's status every few seconds (deleted and finished Pods free their
/// share), until the server stops.
pub async fn run(srv: Arc<ApiServer>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        if let Err(e) = refresh_all(&srv).await {
            tracing::warn!(error = %e, "quota status refresh failed");
        }
    }
}

async fn refresh_all(srv: &ApiServer) -> ApiResult<()> {
    let r = quota_resource(srv)?;
    let all = srv
        .store
        .range(&r.collection_prefix(None), RangeOptions::default())
        .await?;
    let namespaces: BTreeSet<String> = all
        .kvs
        .iter()
        .filter_map(|kv| {
            let rest = kv.key.strip_prefix(&r.collection_prefix(None))?;
            Some(rest.split('/').next()?.to_string())
        })
        .collect();
    for ns in namespaces {
        let _lock = srv.quota_locks.lock(&ns).await;
        let qs = quotas(srv, &ns).await?;
        let keys: BTreeSet<&str> = qs
            .iter()
            .flat_map(|q| q.hard.keys().map(String::as_str))
            .collect();
        let used = usage(srv, &ns, &keys).await?;
        for q in &qs {
            write_status(srv, q, &with_status(srv, q, &used)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"containers": containers},
            "status": {"phase": "Pending"}})
    }

    fn hard(pairs: &[(&str, &str)]) -> BTreeMap<String, Hard> {
        let spec: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        hard_limits(&json!({"spec": {"hard": spec}}))
    }

    #[test]
    fn amounts_print_like_kubernetes_quantities() {
        assert_eq!(format_amount(20_000, false), "20");
        assert_eq!(format_amount(500, false), "500m");
        assert_eq!(format_amount(1500, false), "1500m");
        assert_eq!(format_amount(2000, false), "2");
        assert_eq!(format_amount(1_000_000, false), "1k");
        assert_eq!(format_amount(0, false), "0");
        assert_eq!(format_amount(256 * 1024 * 1024 * 1000, true), "256Mi");
        assert_eq!(format_amount(1000 * 1000, true), "1000");
        assert_eq!(format_amount(2_000_000_000_000, false), "2G");
    }

    #[test]
    fn a_pod_is_charged_its_containers_requests() {
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ]));
        let u = pod_usage(&p, Utc::now());
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        // b's requests default to its limits.
        assert_eq!(u["requests.cpu"], 1250);
        assert_eq!(u["cpu"], 1250);
        assert_eq!(u["requests.memory"], (64 + 1024) * 1024 * 1024 * 1000);
        assert_eq!(u["limits.cpu"], 1000);
    }

    #[test]
    fn a_large_init_container_sets_the_pods_request() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "i", "resources": {"requests": {"cpu": 2}}}]);
        assert_eq!(pod_usage(&p, Utc::now())["requests.cpu"], 2000);
    }

    #[test]
    fn finished_and_expired_pods_count_only_as_objects() {
        let mut done = pod(json!([{"name": "a"}]));
        done["status"]["phase"] = json!("Succeeded");
        let u = pod_usage(&done, Utc::now());
        assert_eq!(u.get("pods"), None);
        assert_eq!(u["count/pods"], 1000);

        let mut leaving = pod(json!([{"name": "a"}]));
        leaving["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        leaving["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert_eq!(pod_usage(&leaving, Utc::now()).get("pods"), None);
        leaving["metadata"]["deletionTimestamp"] = json!(object::now());
        assert_eq!(pod_usage(&leaving, Utc::now())["pods"], 1000);
    }

    #[test]
    fn the_21st_pod_exceeds_a_quota_of_20() {
        let h = hard(&[("pods", "20"), ("requests.cpu", "4")]);
        let used = Usage::from([
            ("pods".to_string(), 20_000),
            ("requests.cpu".to_string(), 2000),
        ]);
        let requested = Usage::from([
            ("pods".to_string(), 1000),
            ("requests.cpu".to_string(), 500),
        ]);
        assert_eq!(
            exceeded("q", &h, &used, &requested).as_deref(),
            Some("exceeded quota: q, requested: pods=1, used: pods=20, limited: pods=20")
        );
        let used = Usage::from([("pods".to_string(), 19_000)]);
        assert_eq!(exceeded("q", &h, &used, &requested), None);
    }

    #[test]
    fn every_exceeded_key_is_named_in_order() {
        let h = hard(&[("requests.memory", "1Gi"), ("requests.cpu", "1")]);
        let used = Usage::from([
            ("requests.cpu".to_string(), 800),
            ("requests.memory".to_string(), 768 * 1024 * 1024 * 1000),
        ]);
        let requested = Usage::from([
            ("requests.cpu".to_string(), 500),
            ("requests.memory".to_string(), 512 * 1024 * 1024 * 1000),
        ]);
        assert_eq!(
            exceeded("compute", &h, &used, &requested).as_deref(),
            Some(
                "exceeded quota: compute, requested: requests.cpu=500m,requests.memory=512Mi, \
                 used: requests.cpu=800m,requests.memory=768Mi, \
                 limited: requests.cpu=1,requests.memory=1Gi"
            )
        );
    }

    #[test]
    fn capped_resources_must_be_stated_by_every_container() {
        let p = pod(json!([
            {"name": "b", "resources": {"requests": {"memory": "1Mi"}}},
            {"name": "a"},
        ]));
        let keys = ["pods", "requests.cpu", "memory"];
        assert_eq!(
            missing_amounts(keys.into_iter(), &p["spec"]).as_deref(),
            Some("must specify memory for: a; requests.cpu for: a,b")
        );
        assert_eq!(missing_amounts(["pods"].into_iter(), &p["spec"]), None);
        let limited = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1"}}}]));
        assert_eq!(
            missing_amounts(["requests.cpu"].into_iter(), &limited["spec"]),
            None
        );
    }

    #[test]
    fn hard_values_must_be_non_negative_quantities() {
        let q = json!({"spec": {"hard": {"pods": "20", "cpu": "lots", "memory": "-1"}}});
        let causes = validate(&q);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.hard[cpu]", "spec.hard[memory]"]);
        assert!(
            causes[1]
                .message
                .contains("must be greater than or equal to 0")
        );
    }
}
