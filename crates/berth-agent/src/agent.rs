//! Runs the agent's parts together. (Filled in by the agent-core work.)

use crate::AgentConfig;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Placeholder until the agent core lands.
    #[error("the agent is not implemented yet")]
    NotImplemented,
}

/// Runs the node agent until the returned future is dropped.
pub async fn run(_client: kube::Client, _config: AgentConfig) -> Result<(), AgentError> {
    Err(AgentError::NotImplemented)
}
