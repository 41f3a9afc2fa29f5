//! `grpc` probes: the standard gRPC health check (`grpc.health.v1.Health/Check`) over plain
//! HTTP/2, as the kubelet runs it: `SERVING` succeeds, any other status or error fails.
//!
//! The two messages are declared here by hand (one field each) rather than generated, so the
//! agent needs no protobuf build step for them.

use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::transport::Endpoint;

use super::action::{AttemptError, error_chain, host_port};

/// The method the probe calls.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
pub const SERVING: i32 = 1;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service to check; empty means the server as a whole.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// The name of a `ServingStatus` value (for failure messages).
fn status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// A prepared `grpc` probe.
#[derive(Debug, Clone)]
pub struct GrpcCheck {
    endpoint: Endpoint,
    address: String,
    service: String,
}

impl GrpcCheck {
    /// Prepares a health check of `service` on `host:port`.
    pub fn new(
        host: &str,
        port: u16,
        service: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let address = host_port(host, port);
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("invalid grpc probe address {address:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("kube-probe/", "1.33"))
            .map_err(|e| format!("invalid user agent: {e}"))?;
        Ok(GrpcCheck {
            endpoint,
            address,
            service: service.unwrap_or_default().to_string(),
        })
    }

    /// One health check on a fresh connection, bounded by `timeout` as a whole.
    pub async fn attempt(&self, timeout: Duration) -> Result<(), AttemptError> {
        let what = format!(
            "grpc health check of {:?} at {}",
            self.service, self.address
        );
        match tokio::time::timeout(timeout, self.check()).await {
            Err(_) => Err(AttemptError::Timeout { what, timeout }),
            Ok(Err(message)) => Err(AttemptError::Failed(format!("{what}: {message}"))),
            Ok(Ok(SERVING)) => Ok(()),
            Ok(Ok(status)) => Err(AttemptError::Failed(format!(
                "{what}: service unhealthy (responded with {:?})",
                status_name(status)
            ))),
        }
    }

    /// The serving status the server answers.
    async fn check(&self) -> Result<i32, String> {
        let channel = self.endpoint.connect().await.map_err(|e| error_chain(&e))?;
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.map_err(|e| error_chain(&e))?;
        let request = tonic::Request::new(HealthCheckRequest {
            service: self.service.clone(),
        });
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let response = client
            .unary(request, PathAndQuery::from_static(CHECK_PATH), codec)
            .await
            .map_err(|status| {
                format!(
                    "rpc error: code = {:?} desc = {}",
                    status.code(),
                    status.message()
                )
            })?;
        Ok(response.into_inner().status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn messages_have_the_health_protocol_wire_format() {
        // field 1, length-delimited, "db"
        let bytes = HealthCheckRequest {
            service: "db".into(),
        }
        .encode_to_vec();
        assert_eq!(bytes, [0x0a, 2, b'd', b'b']);
        // field 1, varint, 2 (NOT_SERVING)
        let decoded = HealthCheckResponse::decode(&[0x08, 2][..]).expect("decode");
        assert_eq!(decoded.status, 2);
        assert_eq!(status_name(decoded.status), "NOT_SERVING");
    }
}
