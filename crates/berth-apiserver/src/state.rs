//! The shared state of a running API server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_store::Store;
use serde_json::Value;

use crate::auth::Authenticator;
use crate::error::Cause;
use crate::resources::Registry;

/// Extra validation of one kind (e.g. ModelService from berth-api): returns every problem found.
pub type Validator = Arc<dyn Fn(&Value) -> Vec<Cause> + Send + Sync>;

/// Tunables of the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Answer discovery only in the legacy format (APIVersions/APIGroupList/APIResourceList).
    pub legacy_discovery: bool,
    /// How often an idle watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// How often history is compacted (to the revision seen one interval earlier, like
    /// kube-apiserver) and the store vacuumed; `None` disables both. `berth server
    /// --compaction-interval`.
    pub compact_interval: Option<Duration>,
    /// Compact all history once at start (after one marker write), so every older
    /// resourceVersion is expired: for tests of client relisting, and for operators.
    pub compact_on_start: bool,
    /// How often the garbage collector sweeps the whole store for objects whose owners are gone
    /// (it also sweeps at start and follows deletions as they happen).
    pub gc_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            legacy_discovery: false,
            bookmark_interval: Duration::from_secs(30),
            compact_interval: Some(Duration::from_secs(300)),
            compact_on_start: false,
            gc_interval: Duration::from_secs(30),
        }
    }
}

/// Everything a request handler needs.
pub struct ApiServer {
    /// The object store.
    pub store: Arc<dyn Store>,
    /// Served resources.
    pub registry: Arc<Registry>,
    /// Token table.
    pub auth: Authenticator,
    /// Extra validators keyed by `group/Kind`.
    pub validators: HashMap<String, Validator>,
    /// Tunables.
    pub options: Options,
    /// Per-namespace locks of ResourceQuota admission (check and write of a create as one step).
    pub quota_locks: crate::quota::Locks,
}

impl ApiServer {
    /// The validator of a kind, if one was registered.
    pub fn validator(&self, group: &str, kind: &str) -> Option<&Validator> {
        self.validators.get(&format!("{group}/{kind}"))
    }
}
