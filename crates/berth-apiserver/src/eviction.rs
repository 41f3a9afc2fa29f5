//! `pods/<name>/eviction` (policy/v1 Eviction, v1beta1 bodies accepted): deletes the Pod with its
//! grace period unless that would take its ModelService below `replicas - maxUnavailable` Ready
//! Pods, which is refused with 429 as a PodDisruptionBudget would (`kubectl drain` retries).
//! Pods no ModelService controls, and Pods that are not Ready, are evicted freely.

use axum::response::Response;
use berth_store::RangeOptions;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::rest::delete::{DeleteOptions, delete_one};
use crate::rest::{Ctx, json_response, parse_body};

/// Seconds a refused client is told to wait (`Retry-After`, `details.retryAfterSeconds`).
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Kubernetes' message for an eviction a disruption budget refuses.
pub const REFUSED_MESSAGE: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// Check and delete happen under one lock, so concurrent evictions (drain sends them in
/// parallel) each see the Pods the earlier ones already set terminating.
static LOCK: Mutex<()> = Mutex::const_new(());

/// What the budget says about one eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delete the Pod.
    Allow,
    /// Refuse: the budget named `service` needs `needed` Ready Pods and has `ready`.
    Refuse {
        /// The ModelService's name.
        service: String,
        /// `replicas - maxUnavailable`.
        needed: i64,
        /// Ready, non-terminating Pods of the service now.
        ready: i64,
    },
}

/// Whether a Pod object counts as healthy: Ready and not terminating.
pub fn healthy(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The ModelService controlling the Pod, as (name, uid), if any.
pub fn controller(pod: &Value) -> Option<(&str, &str)> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true && o["kind"] == "ModelService")
        .and_then(|o| Some((o["name"].as_str()?, o["uid"].as_str()?)))
}

/// The verdict on evicting `pod`, owned by ModelService `service` with `spec`, given the Pods
/// of its namespace.
pub fn decide(
    pod: &Value,
    service: &str,
    spec: &berth_api::ModelServiceSpec,
    pods: &[Value],
) -> Verdict {
    if !healthy(pod) {
        // Its going leaves the Ready count as it is.
        return Verdict::Allow;
    }
    let uid = controller(pod).map(|(_, u)| u);
    let ready = pods
        .iter()
        .filter(|p| controller(p).map(|(_, u)| u) == uid && healthy(p))
        .count() as i64;
    // An unusable bound (validation refuses those) lets nothing go below replicas.
    let unavailable = spec.bounds().map(|b| b.max_unavailable).unwrap_or(0);
    let needed = i64::from(spec.replicas) - i64::from(unavailable);
    // Allowed while one fewer Ready Pod still meets the budget.
    if ready > needed {
        Verdict::Allow
    } else {
        Verdict::Refuse {
            service: service.to_string(),
            needed,
            ready,
        }
    }
}

/// POST `pods/<name>/eviction`.
pub async fn evict(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let eviction = parse_body(body)?;
    check_body(ctx, &eviction)?;
    let opts = delete_options(&eviction["deleteOptions"]);
    let _guard = LOCK.lock().await;
    let kv = ctx
        .srv
        .store
        .get(&ctx.key()?)
        .await?
        .ok_or_else(|| ApiError::not_found(&ctx.r, ctx.name()))?;
    let pod = object::decode(&kv, &ctx.r)?;
    if let Verdict::Refuse {
        service,
        needed,
        ready,
    } = verdict(ctx, &pod).await?
    {
        return Ok(refused(&service, needed, ready));
    }
    delete_one(ctx, ctx.name(), &opts).await?;
    let s = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201});
    Ok(json_response(201, &s, &[]))
}

fn check_body(ctx: &Ctx, eviction: &Value) -> ApiResult<()> {
    let av = eviction["apiVersion"].as_str().unwrap_or("policy/v1");
    let kind = eviction["kind"].as_str().unwrap_or("Eviction");
    if !matches!(av, "policy/v1" | "policy/v1beta1") || kind != "Eviction" {
        return Err(ApiError::bad_request(format!(
            "expected a policy/v1 Eviction, got {av} {kind}"
        )));
    }
    match object::name(eviction) {
        Some(n) if n != ctx.name() => Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {n} != {}",
            ctx.name()
        ))),
        _ => Ok(()),
    }
}

fn delete_options(d: &Value) -> DeleteOptions {
    DeleteOptions {
        grace: d["gracePeriodSeconds"].as_i64(),
        propagation: d["propagationPolicy"].as_str().map(String::from),
        uid: d["preconditions"]["uid"].as_str().map(String::from),
        resource_version: d["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
    }
}

/// Reads the Pod's ModelService and its namespace's Pods and decides.
async fn verdict(ctx: &Ctx, pod: &Value) -> ApiResult<Verdict> {
    let Some((service, uid)) = controller(pod) else {
        return Ok(Verdict::Allow);
    };
    let Some(ms_info) = ctx
        .srv
        .registry
        .lookup("berth.dev", "v1alpha1", "modelservices")
    else {
        return Ok(Verdict::Allow);
    };
    let Some(kv) = ctx
        .srv
        .store
        .get(&ms_info.key(ctx.namespace(), service))
        .await?
    else {
        return Ok(Verdict::Allow);
    };
    let ms = object::decode(&kv, &ms_info)?;
    if object::meta_str(&ms, "uid") != Some(uid) {
        // The owner named is gone (a new object took its name): no budget protects the Pod.
        return Ok(Verdict::Allow);
    }
    let spec: berth_api::ModelServiceSpec = serde_json::from_value(ms["spec"].clone())
        .map_err(|e| ApiError::internal(format!("stored ModelService {service}: {e}")))?;
    let listed = ctx
        .srv
        .store
        .range(
            &ctx.r.collection_prefix(ctx.namespace()),
            RangeOptions::default(),
        )
        .await?;
    let pods = listed
        .kvs
        .iter()
        .map(|kv| object::decode(kv, &ctx.r))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(decide(pod, service, &spec, &pods))
}

/// The 429 Kubernetes answers, with a `Retry-After` header.
fn refused(service: &str, needed: i64, ready: i64) -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": REFUSED_MESSAGE, "reason": "TooManyRequests", "code": 429,
        "details": {"causes": [{"reason": "DisruptionBudget", "message": format!(
            "The disruption budget {service} needs {needed} healthy pods and has {ready} currently")}],
            "retryAfterSeconds": RETRY_AFTER_SECONDS},
    });
    let mut resp = json_response(429, &status, &[]);
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(RETRY_AFTER_SECONDS),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pod(name: &str, owner: &str, ready: bool, terminating: bool) -> Value {
        let mut p = json!({"metadata":{"name":name,"ownerReferences":[
                {"kind":"ModelService","name":"m","uid":owner,"controller":true}]},
            "status":{"conditions":[{"type":"Ready","status": if ready {"True"} else {"False"}}]}});
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        p
    }

    fn spec(replicas: i32, unavailable: Option<i32>) -> berth_api::ModelServiceSpec {
        let mut s = berth_api::ModelServiceSpec {
            image: "m:1".into(),
            replicas,
            ..Default::default()
        };
        if let Some(u) = unavailable {
            s.strategy = Some(berth_api::Strategy {
                rolling_update: Some(berth_api::RollingUpdate {
                    max_surge: None,
                    max_unavailable: Some(IntOrString::Int(u)),
                }),
            });
        }
        s
    }

    #[test]
    fn one_may_go_of_three_with_max_unavailable_one() {
        let pods = [
            pod("a", "u", true, false),
            pod("b", "u", true, false),
            pod("c", "u", true, false),
        ];
        assert_eq!(
            decide(&pods[0], "m", &spec(3, Some(1)), &pods),
            Verdict::Allow
        );
        // a is terminating now: b may not follow until a replacement is Ready.
        let pods = [
            pod("a", "u", true, true),
            pod("b", "u", true, false),
            pod("c", "u", true, false),
        ];
        assert_eq!(
            decide(&pods[1], "m", &spec(3, Some(1)), &pods),
            Verdict::Refuse {
                service: "m".into(),
                needed: 2,
                ready: 2
            }
        );
        // Pods of another owner (same name, other uid) do not count.
        let mut more = pods.to_vec();
        more.push(pod("d", "other", true, false));
        assert!(matches!(
            decide(&pods[1], "m", &spec(3, Some(1)), &more),
            Verdict::Refuse { .. }
        ));
        more.push(pod("e", "u", true, false));
        assert_eq!(
            decide(&pods[1], "m", &spec(3, Some(1)), &more),
            Verdict::Allow
        );
    }

    #[test]
    fn unready_pods_go_freely_and_the_default_budget_keeps_all_of_three() {
        let pods = [
            pod("a", "u", false, false),
            pod("b", "u", true, false),
            pod("c", "u", true, false),
        ];
        assert_eq!(
            decide(&pods[0], "m", &spec(3, Some(1)), &pods),
            Verdict::Allow
        );
        // 25% of 3 rounds down to 0 (with maxSurge 1): no Ready replica may go.
        let all = [
            pod("a", "u", true, false),
            pod("b", "u", true, false),
            pod("c", "u", true, false),
        ];
        assert!(matches!(
            decide(&all[0], "m", &spec(3, None), &all),
            Verdict::Refuse { needed: 3, .. }
        ));
    }

    #[test]
    fn a_refusal_is_a_429_with_retry_after() {
        let r = refused("m", 2, 2);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "5");
    }

    #[test]
    fn the_owner_is_the_controlling_model_service() {
        assert_eq!(controller(&pod("a", "u", true, false)), Some(("m", "u")));
        assert_eq!(
            controller(
                &json!({"metadata":{"ownerReferences":[{"kind":"ReplicaSet","name":"r","uid":"x","controller":true}]}})
            ),
            None
        );
        assert_eq!(controller(&json!({"metadata":{}})), None);
    }
}
