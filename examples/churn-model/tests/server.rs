//! The churn-model binary as a user (or kubelet) sees it: HTTP routes, status codes, metrics,
//! the --healthcheck mode, and graceful shutdown on SIGTERM with a request in flight.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const RISKY: &str = r#"{"tenure_months": 2, "monthly_charges": 95.5, "support_tickets": 5,
    "contract_monthly": true, "paperless_billing": 1, "num_products": 1}"#;
const LOYAL: &str = r#"{"tenure_months": 60, "monthly_charges": 40, "support_tickets": 0,
    "contract_monthly": false, "paperless_billing": 0, "num_products": 3}"#;

/// A running server on a free port, logging to a file; killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("stdout.log");
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/churn.json");
        let child = Command::new(env!("CARGO_BIN_EXE_churn-model"))
            .env("PORT", port.to_string())
            .env("MODEL_PATH", model)
            .env("LOG_LEVEL", "debug")
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_until(
            || request(server.port, "GET", "/ready", "").is_some_and(|(s, _)| s == 200),
            "ready",
        );
        server
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` (bounded, so a broken server fails the test instead of hanging it).
    fn wait_until(&self, mut cond: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "not {what}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP exchange; `None` if the server could not be reached.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    read_response(&mut s)
}

fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn serves_predictions_probes_and_metrics() {
    let server = Server::start();
    let port = server.port;

    let (status, body) = request(port, "POST", "/predict", RISKY).unwrap();
    assert_eq!(status, 200, "{body}");
    let risky = json(&body);
    let p = risky["churn_probability"].as_f64().unwrap();
    assert!(p > 0.5 && p < 1.0, "{body}");
    assert_eq!(risky["churn"], true);
    let loyal = json(&request(port, "POST", "/predict", LOYAL).unwrap().1);
    assert!(loyal["churn_probability"].as_f64().unwrap() < 0.5);
    assert_eq!(loyal["churn"], false);

    let (status, body) = request(port, "POST", "/predict", r#"{"tenure_months": 3}"#).unwrap();
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("missing feature"),
        "{body}"
    );
    let (status, body) = request(port, "POST", "/predict", "not json").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("not valid JSON"), "{body}");
    assert_eq!(request(port, "GET", "/predict", "").unwrap().0, 405);
    assert_eq!(request(port, "GET", "/nope", "").unwrap().0, 404);

    let (status, body) = request(port, "GET", "/health", "").unwrap();
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("ok")));
    let (status, body) = request(port, "GET", "/ready", "").unwrap();
    assert_eq!(
        (status, json(&body)["model"].as_str()),
        (200, Some("churn-logreg"))
    );

    let (status, metrics) = request(port, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("churn_http_requests_total{path=\"/predict\",status=\"200\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("churn_http_requests_total{path=\"/predict\",status=\"400\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("churn_http_request_duration_seconds_count{path=\"/predict\"} 5\n"),
        "{metrics}"
    );
    assert!(metrics.contains("churn_model_loaded 1\n"));

    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("level=info") && l.contains("model loaded")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("path=/predict") && l.contains("status=400")),
        "{logs}"
    );
}

#[test]
fn healthcheck_mode_reports_the_server_state() {
    let server = Server::start();
    let probe = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_churn-model"))
            .arg("--healthcheck")
            .env("PORT", port.to_string())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(probe(server.port).success());
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(probe(closed).code(), Some(1));
}

#[test]
fn sigterm_finishes_the_in_flight_request_then_exits_zero() {
    let mut server = Server::start();
    // Start a request and send only half its body: the server is now busy with it.
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let local = slow.local_addr().unwrap().to_string();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        RISKY.len()
    );
    let (first, rest) = RISKY.split_at(RISKY.len() / 2);
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(first.as_bytes()).unwrap();
    server.wait_until(
        || server.logs().contains(&format!("peer={local}")),
        "accepted",
    );

    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) },
        0
    );
    server.wait_until(|| server.logs().contains("stopped accepting"), "stopping");
    assert!(
        TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "new connections must be refused"
    );

    slow.write_all(rest.as_bytes()).unwrap();
    let (status, body) = read_response(&mut slow).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["churn"], true);
    let exit = server.wait_exit();
    assert_eq!(exit.code(), Some(0), "log:\n{}", server.logs());
    assert!(server.logs().contains("shut down cleanly"));
}

#[test]
fn a_missing_model_is_fatal_and_says_why() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_churn-model"))
        .env("PORT", port.to_string())
        .env("MODEL_PATH", "/nonexistent/model.json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("level=error") && stdout.contains("/nonexistent/model.json"),
        "{stdout}"
    );
}
