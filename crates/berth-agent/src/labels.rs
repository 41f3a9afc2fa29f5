//! CRI labels and annotations the agent sets on sandboxes and containers.
//!
//! They are the kubelet's keys, so tools that know Kubernetes nodes (crictl, a containerd CRI
//! plugin) show berth's Pods the same way, and every part of the agent (pod workers, the node
//! server for logs/exec, recovery after a restart) finds a Pod's sandbox and containers by
//! filtering `ListPodSandbox` / `ListContainers` on them.

/// Sandbox and container label: the Pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Sandbox and container label: the Pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Sandbox and container label: the Pod's UID (distinguishes a re-created Pod of the same name).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container label: the container's name in the Pod spec.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotation: how many times this container had been restarted when this instance was
/// created (0 for the first). The instance with the highest value is the current one; the agent
/// keeps the one before it (exited) so `logs --previous` can read it.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Container annotation: the termination grace period of the Pod, in seconds.
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
