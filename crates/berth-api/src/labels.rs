//! Label keys more than one berth crate reads or writes: the controllers set them on the Pods
//! they create; the agent's service proxy, the CLI and the tests select Pods by them.

/// Label carrying the owning ModelService's name on every Pod it creates.
pub const MODELSERVICE_LABEL: &str = "berth.dev/modelservice";
/// Label carrying the hash of the Pod template a Pod was created from.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
