//! The serving loop: an acceptor, a fixed pool of worker threads, and graceful shutdown.
//!
//! On SIGTERM (or SIGINT) the signal thread sets `stopping` and wakes the acceptor with a
//! connection to itself; the acceptor closes the listening socket (new connections are refused),
//! the workers finish every connection already accepted, and `run` returns so the process exits 0.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::http::{self, ReadError, Response};
use crate::log::{self, Level};
use crate::metrics::path_label;
use crate::model::Model;
use crate::signals::Termination;

/// Worker threads (requests served at once).
const WORKERS: usize = 8;
/// A client that stalls longer than this mid-request is dropped (so shutdown cannot hang).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server needs from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port on all addresses.
    pub port: u16,
    /// The weights file.
    pub model_path: PathBuf,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Blocking the termination signals failed.
    #[error("setting up signal handling: {0}")]
    Signals(std::io::Error),
    /// The port could not be bound.
    #[error("listening on port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    /// A thread could not be started.
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
}

/// Serves until SIGTERM/SIGINT, then drains in-flight requests and returns.
pub fn run(config: Config) -> Result<(), ServerError> {
    // Before any thread exists, so that every thread inherits the blocked mask.
    let termination = Termination::block().map_err(ServerError::Signals)?;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, config.port)).map_err(|source| {
        ServerError::Bind {
            port: config.port,
            source,
        }
    })?;
    let app = Arc::new(App::default());
    let stopping = Arc::new(AtomicBool::new(false));
    log::event(
        Level::Info,
        "listening",
        &[("addr", &format!("0.0.0.0:{}", config.port))],
    );

    spawn("model-loader", {
        let app = app.clone();
        move || load_model(&app, &config.model_path)
    })?;
    spawn("signals", {
        let stopping = stopping.clone();
        move || wait_for_termination(termination, &stopping, config.port)
    })?;
    let (jobs, queue) = mpsc::channel::<TcpStream>();
    let queue = Arc::new(Mutex::new(queue));
    let workers = (0..WORKERS)
        .map(|i| {
            let (app, queue) = (app.clone(), queue.clone());
            spawn(&format!("worker-{i}"), move || work(&app, &queue))
        })
        .collect::<Result<Vec<_>, _>>()?;

    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            // Workers only stop after `jobs` is dropped, so sending cannot fail here.
            Ok(stream) => {
                if log::enabled(Level::Debug) {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    log::event(Level::Debug, "accepted connection", &[("peer", &peer)]);
                }
                drop(jobs.send(stream));
            }
            Err(e) => log::event(Level::Warn, "accept failed", &[("error", &e)]),
        }
    }
    drop(listener);
    log::event(
        Level::Info,
        "stopped accepting; finishing in-flight requests",
        &[],
    );
    drop(jobs);
    for w in workers {
        if w.join().is_err() {
            log::event(Level::Error, "a worker thread panicked", &[]);
        }
    }
    log::event(Level::Info, "shut down cleanly", &[]);
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, ServerError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(ServerError::Thread)
}

/// Loads the model in the background, so /health answers while a big model loads. A model that
/// cannot be loaded is fatal: exit 1 so the orchestrator shows the failure and restarts.
fn load_model(app: &App, path: &std::path::Path) {
    let started = Instant::now();
    match Model::load(path) {
        Ok(model) => {
            let name = model.name.clone();
            app.set_model(model);
            let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
            log::event(
                Level::Info,
                "model loaded; ready",
                &[
                    ("model", &name),
                    ("path", &path.display()),
                    ("load_ms", &ms),
                ],
            );
        }
        Err(e) => {
            log::event(Level::Error, "cannot load model", &[("error", &e)]);
            std::process::exit(1);
        }
    }
}

/// Waits for SIGTERM/SIGINT, then stops the acceptor.
fn wait_for_termination(termination: Termination, stopping: &AtomicBool, port: u16) {
    match termination.wait() {
        Ok(signal) => log::event(
            Level::Info,
            "received signal; shutting down",
            &[("signal", &signal)],
        ),
        Err(e) => log::event(
            Level::Error,
            "waiting for signals failed; shutting down",
            &[("error", &e)],
        ),
    }
    stopping.store(true, Ordering::SeqCst);
    // The acceptor sits in accept(); one connection to ourselves wakes it to see `stopping`.
    let wake = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(2)) {
        log::event(Level::Warn, "could not wake the acceptor", &[("error", &e)]);
    }
}

/// A worker: serves connections until the queue is closed and empty.
fn work(app: &App, queue: &Mutex<Receiver<TcpStream>>) {
    loop {
        // Hold the lock only while taking a job, not while serving it.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match next {
            Ok(stream) => serve(app, stream),
            Err(_) => return,
        }
    }
}

/// Serves one connection (one request).
fn serve(app: &App, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (method, path, resp, started) = match http::read_request(&mut stream) {
        Ok(req) => {
            let started = Instant::now();
            let resp = app.handle(&req);
            (req.method, req.path, resp, started)
        }
        // The wake-up connection at shutdown, health checkers that only connect, …
        Err(ReadError::Closed) => return,
        Err(ReadError::Malformed(status, msg)) => (
            String::new(),
            String::new(),
            Response::error(status, &msg),
            Instant::now(),
        ),
        Err(e) => {
            log::event(Level::Debug, "dropping connection", &[("error", &e)]);
            return;
        }
    };
    if let Err(e) = http::write_response(&mut stream, &resp) {
        log::event(Level::Debug, "writing response failed", &[("error", &e)]);
    }
    let took = started.elapsed();
    app.metrics.record(&path, resp.status, took);
    log_request(&method, &path, resp.status, took);
}

/// Probe and scrape traffic is logged at debug so it does not drown the interesting lines.
fn log_request(method: &str, path: &str, status: u16, took: Duration) {
    let level = match (status, path_label(path)) {
        (500.., _) => Level::Error,
        (_, "/health" | "/ready" | "/metrics") => Level::Debug,
        _ => Level::Info,
    };
    let ms = format!("{:.3}", took.as_secs_f64() * 1000.0);
    log::event(
        level,
        "request",
        &[
            ("method", &method),
            ("path", &path),
            ("status", &status),
            ("duration_ms", &ms),
        ],
    );
}
