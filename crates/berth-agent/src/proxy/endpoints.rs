//! Which addresses a ModelService's traffic goes to: its Ready Pods' IPs and the target port.
//!
//! Pure functions over the watched objects, so the rules (Ready, not deleting, same namespace,
//! named target ports) are unit-tested without a cluster.

use std::net::{IpAddr, SocketAddr};

use berth_api::ModelService;
use berth_api::labels::MODELSERVICE_LABEL;
use k8s_openapi::api::core::v1::{ContainerPort, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// Where a ModelService's connections go inside a Pod, as written in its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port name, resolved per Pod (then through the ModelService's `spec.ports`).
    Name(String),
}

/// The port a ModelService is served on (`spec.service.port`), if it has a valid one.
pub fn service_port(ms: &ModelService) -> Option<u16> {
    let port = ms.spec.service.as_ref()?.port;
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// The target port of a ModelService: `service.targetPort`, else the first of `spec.ports`, else
/// `service.port`. `None` when the service has no (valid) port at all.
pub fn target_port(ms: &ModelService) -> Option<TargetPort> {
    let service = ms.spec.service.as_ref()?;
    match &service.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n)
            .ok()
            .filter(|p| *p != 0)
            .map(TargetPort::Number),
        Some(IntOrString::String(s)) => Some(match s.parse::<u16>() {
            // A quoted number ("8080") is a number, as Kubernetes reads IntOrString.
            Ok(n) if n != 0 => TargetPort::Number(n),
            _ => TargetPort::Name(s.clone()),
        }),
        None => match ms.spec.ports.first() {
            Some(p) => port_number(p.container_port).map(TargetPort::Number),
            None => service_port(ms).map(TargetPort::Number),
        },
    }
}

/// Whether `pod` should receive new connections: it has condition Ready=True, has not finished
/// and is not being deleted (a Pod leaves the set before its containers get SIGTERM).
pub fn is_serving(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    // A finished Pod's last Ready condition may linger; its containers are gone.
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return false;
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether `pod` belongs to `ms`: same namespace and the ModelService label naming it.
pub fn belongs_to(pod: &Pod, ms: &ModelService) -> bool {
    pod.namespace() == ms.namespace()
        && pod.labels().get(MODELSERVICE_LABEL).map(String::as_str) == Some(ms.name_any().as_str())
}

/// The address of one Pod for `target`, if the Pod is serving, has an IP and the port resolves.
pub fn pod_endpoint(pod: &Pod, ms: &ModelService, target: &TargetPort) -> Option<SocketAddr> {
    if !is_serving(pod) {
        return None;
    }
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = match target {
        TargetPort::Number(n) => *n,
        TargetPort::Name(name) => {
            named_port(pod, name).or_else(|| find_named(&ms.spec.ports, name))?
        }
    };
    Some(SocketAddr::new(ip, port))
}

/// The endpoints of `ms` among `pods`, sorted (so an unchanged set compares equal).
pub fn endpoints<'a>(
    ms: &ModelService,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<SocketAddr> {
    let Some(target) = target_port(ms) else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = pods
        .into_iter()
        .filter(|p| belongs_to(p, ms))
        .filter_map(|p| pod_endpoint(p, ms, &target))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A named port of the Pod's own containers: Pods of an older revision keep the port they were
/// created with, as Kubernetes resolves a Service's named targetPort per Pod.
fn named_port(pod: &Pod, name: &str) -> Option<u16> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .find_map(|c| find_named(c.ports.as_deref().unwrap_or_default(), name))
}

fn find_named(ports: &[ContainerPort], name: &str) -> Option<u16> {
    ports
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| port_number(p.container_port))
}

fn port_number(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(service: serde_json::Value, ports: serde_json::Value) -> ModelService {
        serde_json::from_value(json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
            "metadata": {"name": "churn", "namespace": "ml"},
            "spec": {"image": "x", "ports": ports, "service": service}
        }))
        .unwrap()
    }

    fn pod(name: &str, ns: &str, service: &str, ip: &str, ready: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": {MODELSERVICE_LABEL: service, "pod-template-hash": "abc"}},
            "spec": {"containers": [{"name": "model", "image": "x"}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_ready_pods_of_the_service_in_its_namespace_are_endpoints() {
        let ms = ms(json!({"port": 8000, "targetPort": 9000}), json!([]));
        let mut deleting = pod("d", "ml", "churn", "10.0.0.4", "True");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut no_ip = pod("n", "ml", "churn", "", "True");
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let pods = [
            pod("b", "ml", "churn", "10.0.0.2", "True"),
            pod("a", "ml", "churn", "10.0.0.1", "True"),
            pod("nr", "ml", "churn", "10.0.0.3", "False"),
            deleting,
            no_ip,
            pod("other-ns", "default", "churn", "10.0.0.5", "True"),
            pod("other-svc", "ml", "fraud", "10.0.0.6", "True"),
        ];
        assert_eq!(
            endpoints(&ms, &pods),
            vec![addr("10.0.0.1:9000"), addr("10.0.0.2:9000")]
        );
    }

    #[test]
    fn a_finished_pod_is_not_an_endpoint_even_if_its_ready_condition_lingers() {
        let ms = ms(json!({"port": 8000}), json!([]));
        let mut p = pod("a", "ml", "churn", "10.0.0.1", "True");
        p.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(endpoints(&ms, [&p]).is_empty());
        p.status.as_mut().unwrap().phase = Some("Running".into());
        assert_eq!(endpoints(&ms, [&p]), vec![addr("10.0.0.1:8000")]);
    }

    #[test]
    fn a_pod_without_a_ready_condition_is_not_an_endpoint() {
        let ms = ms(json!({"port": 8000}), json!([]));
        let mut p = pod("a", "ml", "churn", "10.0.0.1", "True");
        p.status.as_mut().unwrap().conditions = None;
        assert!(endpoints(&ms, [&p]).is_empty());
    }

    #[test]
    fn target_port_defaults_to_the_first_container_port_then_the_service_port() {
        let with_ports = ms(
            json!({"port": 8000}),
            json!([{"containerPort": 7000, "name": "http"}, {"containerPort": 7001}]),
        );
        assert_eq!(target_port(&with_ports), Some(TargetPort::Number(7000)));
        let without = ms(json!({"port": 8000}), json!([]));
        assert_eq!(target_port(&without), Some(TargetPort::Number(8000)));
        let quoted = ms(json!({"port": 8000, "targetPort": "9100"}), json!([]));
        assert_eq!(target_port(&quoted), Some(TargetPort::Number(9100)));
        let named = ms(json!({"port": 8000, "targetPort": "http"}), json!([]));
        assert_eq!(target_port(&named), Some(TargetPort::Name("http".into())));
    }

    #[test]
    fn no_service_means_no_port_and_no_endpoints() {
        let mut m = ms(json!({"port": 8000}), json!([]));
        m.spec.service = None;
        assert_eq!(service_port(&m), None);
        assert_eq!(target_port(&m), None);
        assert!(endpoints(&m, [&pod("a", "ml", "churn", "10.0.0.1", "True")]).is_empty());
    }

    #[test]
    fn named_target_port_resolves_per_pod_then_through_the_service_ports() {
        let ms = ms(
            json!({"port": 8000, "targetPort": "http"}),
            json!([{"containerPort": 7000, "name": "http"}]),
        );
        let mut own = pod("own", "ml", "churn", "10.0.0.1", "True");
        own.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 7100,
            ..Default::default()
        }]);
        let plain = pod("plain", "ml", "churn", "10.0.0.2", "True");
        assert_eq!(
            endpoints(&ms, [&own, &plain]),
            vec![addr("10.0.0.1:7100"), addr("10.0.0.2:7000")]
        );
    }

    #[test]
    fn an_unresolvable_port_name_skips_the_pod() {
        let ms = ms(
            json!({"port": 8000, "targetPort": "grpc"}),
            json!([{"containerPort": 7000, "name": "http"}]),
        );
        assert!(endpoints(&ms, [&pod("a", "ml", "churn", "10.0.0.1", "True")]).is_empty());
    }
}
