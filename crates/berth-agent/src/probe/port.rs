//! A probe's port: a number, or the name of one of the container's ports.

use k8s_openapi::api::core::v1::ContainerPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Why a probe's port does not name a usable port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The container declares no port of that name.
    #[error("no container port named {0:?}")]
    UnknownName(String),
    /// The number is not a TCP port.
    #[error("invalid port {0}")]
    OutOfRange(i32),
}

/// Resolves `port` against the container's declared `ports`.
pub fn resolve(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, PortError> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match ports.iter().find(|p| p.name.as_deref() == Some(name)) {
            Some(p) => p.container_port,
            // The API accepts a number written as a string; the kubelet does too.
            None => name
                .parse()
                .map_err(|_| PortError::UnknownName(name.clone()))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|&p| p != 0)
        .ok_or(PortError::OutOfRange(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<ContainerPort> {
        vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: 9090,
                ..Default::default()
            },
            ContainerPort {
                name: None,
                container_port: 7000,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn named_ports_resolve_through_the_container_ports() {
        assert_eq!(
            resolve(&IntOrString::String("metrics".into()), &ports()),
            Ok(9090)
        );
        assert_eq!(
            resolve(&IntOrString::String("http".into()), &ports()),
            Ok(8080)
        );
    }

    #[test]
    fn numbers_need_no_declared_port() {
        assert_eq!(resolve(&IntOrString::Int(1234), &ports()), Ok(1234));
        assert_eq!(resolve(&IntOrString::String("5678".into()), &[]), Ok(5678));
    }

    #[test]
    fn unknown_names_and_bad_numbers_are_errors() {
        assert_eq!(
            resolve(&IntOrString::String("grpc".into()), &ports()),
            Err(PortError::UnknownName("grpc".into()))
        );
        assert_eq!(
            resolve(&IntOrString::Int(0), &ports()),
            Err(PortError::OutOfRange(0))
        );
        assert_eq!(
            resolve(&IntOrString::Int(70000), &ports()),
            Err(PortError::OutOfRange(70000))
        );
    }
}
