//! The ModelServices end-to-end tests run, shared by the single-node and the cluster tests.

use serde_json::{Value, json};

/// The namespace test workloads live in.
pub const NS: &str = "default";

/// A busybox web server ModelService: `/` answers the pod's host name; `/cgi-bin/unready` makes the
/// answering pod fail its readiness probe, `/cgi-bin/sick` its liveness probe.
pub fn web_service(image: &str, name: &str, replicas: i32, service_port: u16) -> Value {
    let script = r#"mkdir -p /www/cgi-bin && hostname > /www/index.html && echo ok > /www/ready && echo ok > /www/alive &&
printf '#!/bin/sh\necho Content-Type: text/plain\necho\nrm -f /www/ready\nhostname\n' > /www/cgi-bin/unready &&
printf '#!/bin/sh\necho Content-Type: text/plain\necho\nrm -f /www/alive\nhostname\n' > /www/cgi-bin/sick &&
chmod +x /www/cgi-bin/unready /www/cgi-bin/sick && exec httpd -f -p 8080 -h /www"#;
    json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "image": image, "replicas": replicas,
            "command": ["sh", "-c", script],
            "ports": [{"name": "http", "containerPort": 8080}],
            "securityContext": {"runAsUser": 0},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            "livenessProbe": {"httpGet": {"path": "/alive", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2},
            "service": {"port": service_port, "targetPort": "http"}
        }
    })
}
