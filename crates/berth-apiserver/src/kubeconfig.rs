//! The kubeconfig written on start (`<data>/server/kubeconfig.yaml`), usable as-is by kubectl,
//! kube-rs and `berth`; joined agents write theirs with the same renderer.

use base64::Engine;
use serde_json::json;

/// Renders a kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) trusting `ca_pem` with `token`.
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    render_for("berth-admin", server, ca_pem, token)
}

/// [`render`] for the user named `user` (a joined agent's is `system:node:<name>`).
pub fn render_for(user: &str, server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "berth", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "berth", "context": {"cluster": "berth", "user": user, "namespace": "default"}}],
        "current-context": "berth",
        "preferences": {},
    });
    // serde_yaml cannot fail on a plain JSON tree; fall back to JSON (valid YAML) just in case.
    serde_yaml::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}
