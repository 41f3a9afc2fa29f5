//! `httpGet` probes: `GET scheme://host:port/path`, 200..=399 succeeds.
//!
//! As the kubelet does: HTTPS without certificate verification, redirects followed only on the
//! same host (a redirect elsewhere ends the attempt with its 3xx status, which counts as success),
//! no connection reuse between attempts, no proxy, and at most [`MAX_BODY`] bytes of a failing
//! response read for the message.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::HTTPGetAction;
use reqwest::redirect::Policy;

use super::action::{AttemptError, error_chain, host_port, truncate};

/// The most body bytes read from a response (for the failure message).
const MAX_BODY: usize = 10 * 1024;
/// The most redirects followed (on the same host).
const MAX_REDIRECTS: usize = 10;
/// The `User-Agent` unless the probe sets one (the kubelet's, so apps that special-case it work).
const USER_AGENT: &str = "kube-probe/1.33";

/// A prepared `httpGet` probe.
#[derive(Debug, Clone)]
pub struct HttpGet {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: http::HeaderMap,
}

impl HttpGet {
    /// Prepares a GET of `action.path` on `host:port`; an invalid probe yields the reason.
    pub fn new(
        action: &HTTPGetAction,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, String> {
        let scheme = match action.scheme.as_deref().unwrap_or("HTTP") {
            s if s.eq_ignore_ascii_case("HTTP") => "http",
            s if s.eq_ignore_ascii_case("HTTPS") => "https",
            other => return Err(format!("unsupported httpGet scheme {other:?}")),
        };
        let path = action.path.as_deref().unwrap_or("/");
        let slash = if path.starts_with('/') { "" } else { "/" };
        let url = format!("{scheme}://{}{slash}{path}", host_port(host, port));
        let url =
            reqwest::Url::parse(&url).map_err(|e| format!("invalid probe URL {url:?}: {e}"))?;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        // The probe's own headers replace the defaults (the kubelet lets them override).
        let mut overridden = std::collections::HashSet::new();
        for h in action.http_headers.iter().flatten() {
            let name = HeaderName::try_from(h.name.as_str())
                .map_err(|e| format!("invalid probe header name {:?}: {e}", h.name))?;
            let value = HeaderValue::try_from(h.value.as_str())
                .map_err(|e| format!("invalid probe header value for {:?}: {e}", h.name))?;
            if overridden.insert(name.clone()) {
                headers.remove(&name);
            }
            headers.append(name, value);
        }
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(same_host_redirects(&url))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpGet {
            client,
            url,
            headers,
        })
    }

    /// The URL probed.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// One GET, bounded by `timeout` as a whole (connect, headers, body).
    pub async fn attempt(&self, timeout: Duration) -> Result<(), AttemptError> {
        let what = format!("Get {:?}", self.url.as_str());
        match tokio::time::timeout(timeout, self.get()).await {
            Err(_) => Err(AttemptError::Timeout { what, timeout }),
            Ok(Err(e)) if e.is_timeout() => Err(AttemptError::Timeout { what, timeout }),
            Ok(Err(e)) => Err(AttemptError::Failed(format!("{what}: {}", error_chain(&e)))),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn get(&self) -> Result<(), GetError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await?;
        let status = response.status();
        if (200..400).contains(&status.as_u16()) {
            return Ok(());
        }
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            match response.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        Err(GetError::Status {
            code: status.as_u16(),
            body: truncate(&body),
        })
    }
}

/// A GET that did not succeed.
#[derive(Debug, thiserror::Error)]
enum GetError {
    /// No response (connection refused, reset, TLS, timeout, ...).
    #[error(transparent)]
    Request(#[from] reqwest::Error),
    /// A response outside 200..=399, with the start of its body.
    #[error("HTTP probe failed with statuscode: {code}{}", body_suffix(.body))]
    Status {
        /// The status code.
        code: u16,
        /// The start of the body, as text.
        body: String,
    },
}

/// `: <body>` when there is a body.
fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl GetError {
    fn is_timeout(&self) -> bool {
        matches!(self, GetError::Request(e) if e.is_timeout())
    }
}

/// Follows redirects that stay on `url`'s host and port; stops (keeping the 3xx) at others.
fn same_host_redirects(url: &reqwest::Url) -> Policy {
    let origin = (
        url.host_str().map(str::to_string),
        url.port_or_known_default(),
    );
    Policy::custom(move |attempt| {
        let next = (
            attempt.url().host_str().map(str::to_string),
            attempt.url().port_or_known_default(),
        );
        if next != origin || attempt.previous().len() > MAX_REDIRECTS {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::HTTPHeader;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn action(path: Option<&str>, scheme: Option<&str>) -> HTTPGetAction {
        HTTPGetAction {
            path: path.map(Into::into),
            scheme: scheme.map(Into::into),
            port: IntOrString::Int(80),
            ..Default::default()
        }
    }

    #[test]
    fn urls_are_built_from_scheme_host_port_and_path() {
        let t = Duration::from_secs(1);
        let get =
            HttpGet::new(&action(Some("healthz?x=1"), None), "10.0.0.2", 8080, t).expect("valid");
        assert_eq!(get.url().as_str(), "http://10.0.0.2:8080/healthz?x=1");
        let get = HttpGet::new(&action(None, Some("HTTPS")), "::1", 8443, t).expect("valid");
        assert_eq!(get.url().as_str(), "https://[::1]:8443/");
        assert!(HttpGet::new(&action(None, Some("FTP")), "h", 1, t).is_err());
    }

    #[test]
    fn probe_headers_override_the_defaults() {
        let mut a = action(None, None);
        a.http_headers = Some(vec![
            HTTPHeader {
                name: "User-Agent".into(),
                value: "mine".into(),
            },
            HTTPHeader {
                name: "X-Token".into(),
                value: "a".into(),
            },
            HTTPHeader {
                name: "X-Token".into(),
                value: "b".into(),
            },
        ]);
        let get = HttpGet::new(&a, "127.0.0.1", 80, Duration::from_secs(1)).expect("valid");
        assert_eq!(
            get.headers.get_all("user-agent").iter().collect::<Vec<_>>(),
            ["mine"]
        );
        assert_eq!(get.headers.get_all("x-token").iter().count(), 2);
        assert_eq!(
            get.headers.get("accept").map(|v| v.as_bytes()),
            Some(&b"*/*"[..])
        );
    }
}
