//! Request counters and latency totals, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Paths that get their own label; anything else is counted as `other`, so random URLs from
/// scanners cannot grow the metric set without bound.
const KNOWN_PATHS: [&str; 4] = ["/predict", "/health", "/ready", "/metrics"];

/// Totals for one path label.
#[derive(Debug, Default)]
struct PathStats {
    by_status: BTreeMap<u16, u64>,
    seconds_sum: f64,
    count: u64,
}

/// Process-wide request metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    paths: Mutex<BTreeMap<&'static str, PathStats>>,
}

/// The label a request path is counted under.
pub fn path_label(path: &str) -> &'static str {
    KNOWN_PATHS
        .into_iter()
        .find(|p| *p == path)
        .unwrap_or("other")
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, path: &str, status: u16, took: Duration) {
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        let stats = paths.entry(path_label(path)).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        stats.seconds_sum += took.as_secs_f64();
        stats.count += 1;
    }

    /// The Prometheus text exposition; `model_loaded` is exported as a gauge.
    pub fn render(&self, model_loaded: bool) -> String {
        let paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP churn_http_requests_total HTTP requests answered, by path and status.\n",
        );
        out.push_str("# TYPE churn_http_requests_total counter\n");
        for (path, s) in paths.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "churn_http_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP churn_http_request_duration_seconds Time to handle requests, by path.\n",
        );
        out.push_str("# TYPE churn_http_request_duration_seconds summary\n");
        for (path, s) in paths.iter() {
            let _ = writeln!(
                out,
                "churn_http_request_duration_seconds_sum{{path=\"{path}\"}} {}",
                s.seconds_sum
            );
            let _ = writeln!(
                out,
                "churn_http_request_duration_seconds_count{{path=\"{path}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP churn_model_loaded Whether the model is loaded (1) or not yet (0).\n");
        out.push_str("# TYPE churn_model_loaded gauge\n");
        let _ = writeln!(out, "churn_model_loaded {}", u8::from(model_loaded));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_path_and_status_with_latency_totals() {
        let m = Metrics::default();
        m.record("/predict", 200, Duration::from_millis(2));
        m.record("/predict", 200, Duration::from_millis(3));
        m.record("/predict", 400, Duration::from_millis(1));
        m.record("/wp-admin", 404, Duration::ZERO);
        let text = m.render(true);
        assert!(
            text.contains("churn_http_requests_total{path=\"/predict\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("churn_http_requests_total{path=\"/predict\",status=\"400\"} 1\n"));
        assert!(text.contains("churn_http_requests_total{path=\"other\",status=\"404\"} 1\n"));
        assert!(text.contains("churn_http_request_duration_seconds_count{path=\"/predict\"} 3\n"));
        assert!(text.contains("churn_http_request_duration_seconds_sum{path=\"/predict\"} 0.006"));
        assert!(text.contains("churn_model_loaded 1\n"));
    }
}
