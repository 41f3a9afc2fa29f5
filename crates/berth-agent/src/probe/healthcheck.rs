//! An image's Docker `HEALTHCHECK` as an exec liveness probe.
//!
//! The runtime's verbose `ImageStatus` carries the image config as pulled under
//! `info["info"] = {"imageSpec": <config>}` (containerd's shape, and berth's runtime's). Docker
//! records the HEALTHCHECK as `config.Healthcheck`: `Test` (`["CMD", argv...]`,
//! `["CMD-SHELL", "script"]`, `["NONE"]`, or empty to inherit), `Interval`, `Timeout`,
//! `StartPeriod` in nanoseconds and `Retries`, with 0 meaning Docker's default.

use std::time::Duration;

use berth_cri::v1::ImageStatusResponse;
use k8s_openapi::api::core::v1::{ExecAction, Probe};
use serde::Deserialize;

/// Docker's default interval and timeout.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Docker's default timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's default retries.
const DEFAULT_RETRIES: i32 = 3;

/// Docker's `config.Healthcheck`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Healthcheck {
    #[serde(rename = "Test", alias = "test")]
    test: Vec<String>,
    #[serde(rename = "Interval", alias = "interval")]
    interval: i64,
    #[serde(rename = "Timeout", alias = "timeout")]
    timeout: i64,
    #[serde(rename = "StartPeriod", alias = "start_period", alias = "startPeriod")]
    start_period: i64,
    #[serde(rename = "Retries", alias = "retries")]
    retries: i32,
}

/// The image's HEALTHCHECK (Docker's `config.Healthcheck`: Test ["CMD", ...] | ["CMD-SHELL", "..."]
/// | ["NONE"], Interval/Timeout/StartPeriod in ns, Retries) as an exec liveness Probe, from a CRI
/// ImageStatus response requested with verbose=true.
pub fn healthcheck_probe(status: &ImageStatusResponse) -> Option<Probe> {
    let info: serde_json::Value = serde_json::from_str(status.info.get("info")?).ok()?;
    let config = info.get("imageSpec")?.get("config")?;
    let raw = config
        .get("Healthcheck")
        .or_else(|| config.get("healthcheck"))?;
    let check: Healthcheck = serde_json::from_value(raw.clone()).ok()?;
    probe_of(&check)
}

fn probe_of(check: &Healthcheck) -> Option<Probe> {
    let command = match check.test.split_first()? {
        (kind, argv) if kind == "CMD" && !argv.is_empty() => argv.to_vec(),
        (kind, [script]) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), script.clone()]
        }
        // "NONE" disables the check; anything else is malformed.
        _ => return None,
    };
    Some(Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        initial_delay_seconds: Some(seconds(check.start_period, Duration::ZERO)),
        period_seconds: Some(seconds(check.interval, DEFAULT_INTERVAL).max(1)),
        timeout_seconds: Some(seconds(check.timeout, DEFAULT_TIMEOUT).max(1)),
        failure_threshold: Some(if check.retries > 0 {
            check.retries
        } else {
            DEFAULT_RETRIES
        }),
        success_threshold: Some(1),
        ..Default::default()
    })
}

/// Whole seconds (rounded up) of a nanosecond duration; 0 or negative means `default`.
fn seconds(ns: i64, default: Duration) -> i32 {
    let d = u64::try_from(ns)
        .ok()
        .filter(|&n| n > 0)
        .map_or(default, Duration::from_nanos);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn status(config: serde_json::Value) -> ImageStatusResponse {
        let info =
            serde_json::json!({ "imageSpec": { "architecture": "amd64", "config": config } });
        ImageStatusResponse {
            image: None,
            info: HashMap::from([("info".to_string(), info.to_string())]),
        }
    }

    fn command(p: &Probe) -> Vec<String> {
        p.exec
            .as_ref()
            .and_then(|e| e.command.clone())
            .unwrap_or_default()
    }

    #[test]
    fn cmd_with_all_settings() {
        let p = healthcheck_probe(&status(serde_json::json!({ "Healthcheck": {
            "Test": ["CMD", "curl", "-f", "http://localhost/"],
            "Interval": 5_000_000_000i64, "Timeout": 2_500_000_000i64,
            "StartPeriod": 10_000_000_000i64, "Retries": 5,
        }})))
        .expect("a probe");
        assert_eq!(command(&p), ["curl", "-f", "http://localhost/"]);
        assert_eq!(p.period_seconds, Some(5));
        assert_eq!(p.timeout_seconds, Some(3));
        assert_eq!(p.initial_delay_seconds, Some(10));
        assert_eq!(p.failure_threshold, Some(5));
        assert_eq!(p.success_threshold, Some(1));
    }

    #[test]
    fn cmd_shell_runs_through_sh_with_docker_defaults() {
        let p = healthcheck_probe(&status(serde_json::json!({ "Healthcheck": {
            "Test": ["CMD-SHELL", "wget -q -O- localhost:8000/health || exit 1"],
        }})))
        .expect("a probe");
        assert_eq!(
            command(&p),
            [
                "/bin/sh",
                "-c",
                "wget -q -O- localhost:8000/health || exit 1"
            ]
        );
        assert_eq!(
            (
                p.period_seconds,
                p.timeout_seconds,
                p.initial_delay_seconds,
                p.failure_threshold
            ),
            (Some(30), Some(30), Some(0), Some(3))
        );
    }

    #[test]
    fn none_empty_or_missing_healthchecks_give_no_probe() {
        for config in [
            serde_json::json!({ "Healthcheck": { "Test": ["NONE"] } }),
            serde_json::json!({ "Healthcheck": { "Test": [] } }),
            serde_json::json!({ "Healthcheck": { "Test": ["CMD"] } }),
            serde_json::json!({ "Cmd": ["sh"] }),
        ] {
            assert_eq!(healthcheck_probe(&status(config.clone())), None, "{config}");
        }
        let not_verbose = ImageStatusResponse::default();
        assert_eq!(healthcheck_probe(&not_verbose), None);
    }
}
