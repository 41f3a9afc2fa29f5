//! What berth derives from a container's image reference (parsed by [`berth_oci::reference`]).

use berth_oci::Reference;

use crate::PullPolicy;

/// The pull policy of a container that sets none, defaulted like Kubernetes: `Always` for
/// `:latest` or untagged images without digest, else `IfNotPresent`. A string that is not an
/// image reference gets `IfNotPresent` (validation rejects it; pulling it would fail anyway).
pub fn default_pull_policy(image: &str) -> PullPolicy {
    match Reference::parse(image) {
        Ok(r) if r.is_floating() => PullPolicy::Always,
        _ => PullPolicy::IfNotPresent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("busybox"), PullPolicy::Always);
        assert_eq!(
            default_pull_policy("reg:5000/busybox:latest"),
            PullPolicy::Always
        );
        assert_eq!(default_pull_policy("reg:5000/busybox"), PullPolicy::Always);
        assert_eq!(
            default_pull_policy("reg:5000/busybox:1.0"),
            PullPolicy::IfNotPresent
        );
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(default_pull_policy(&pinned), PullPolicy::IfNotPresent);
        assert_eq!(
            default_pull_policy("busybox@sha256:abc"),
            PullPolicy::IfNotPresent
        );
    }
}
