//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log from its CRI log file.
//!
//! The runtime writes one record per line, `<RFC3339Nano> <stdout|stderr> <P|F> <text>`, where `P`
//! marks a partial line continued by the next record; joining partials up to the `F` record gives
//! the container's own lines. `follow` keeps reading the file until the container has exited and
//! the file is drained, or the client goes away (the body's receiver is dropped).

use std::io::SeekFrom;
use std::time::Duration;

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::find::{self, FindError, Id, Instance, Query};
use super::{Body, status};

/// How often a followed log file is checked for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// What the client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming until the container exits.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<u64>,
    /// Prefix each line with its RFC 3339 timestamp and a space.
    pub timestamps: bool,
    /// The previous instance of the container.
    pub previous: bool,
    /// Only lines at or after this time (`sinceSeconds` / `sinceTime`).
    pub since: Option<DateTime<FixedOffset>>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the options from the query; `Err` is the message of a 400.
    pub fn from_query(q: &Query) -> Result<Self, String> {
        let since = match (q.int("sinceSeconds")?, q.get("sinceTime")) {
            (Some(secs), _) => {
                Some((Utc::now() - chrono::Duration::seconds(secs as i64)).fixed_offset())
            }
            (None, Some(t)) if !t.is_empty() => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| format!("invalid value for sinceTime: {e}"))?,
            ),
            _ => None,
        };
        Ok(LogOptions {
            follow: q.flag("follow"),
            tail: q.int("tailLines")?,
            timestamps: q.flag("timestamps"),
            previous: q.flag("previous"),
            since,
            limit_bytes: q.int("limitBytes")?,
        })
    }
}

/// One line of the container's output (partials joined), with the time of its first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The record's timestamp as written by the runtime.
    pub time: String,
    /// The text, ending in `\n` unless the container's output ended without one.
    pub text: Vec<u8>,
}

impl Line {
    fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 36);
        if timestamps {
            out.extend_from_slice(self.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.text);
        out
    }

    fn after(&self, since: Option<DateTime<FixedOffset>>) -> bool {
        let Some(since) = since else { return true };
        DateTime::parse_from_rfc3339(&self.time)
            .map(|t| t >= since)
            .unwrap_or(true)
    }
}

/// Turns log file bytes into [`Line`]s, keeping an unfinished record or partial line for the next
/// call (the file may be read while the runtime writes it).
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    partial: Option<Line>,
}

impl Parser {
    /// Feeds bytes; returns the lines they complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Line> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let record = self.pending[start..start + nl].to_vec();
            start += nl + 1;
            if let Some(line) = self.record(&record) {
                lines.push(line);
            }
        }
        self.pending.drain(..start);
        lines
    }

    /// What is left when the container has ended: a partial line without its final record.
    pub fn finish(&mut self) -> Option<Line> {
        self.partial.take()
    }

    fn record(&mut self, record: &[u8]) -> Option<Line> {
        let mut fields = record.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(fields.next()?).ok()?.to_string();
        let _stream = fields.next()?;
        let tag = fields.next()?;
        let text = fields.next().unwrap_or_default();
        let line = self.partial.get_or_insert_with(|| Line {
            time,
            text: Vec::new(),
        });
        line.text.extend_from_slice(text);
        if tag == b"P" {
            return None;
        }
        let mut done = self.partial.take()?;
        done.text.push(b'\n');
        Some(done)
    }
}

/// Serves one log request.
pub async fn serve(mut cri: CriClient, id: &Id, query: &Query) -> Response<Body> {
    let opts = match LogOptions::from_query(query) {
        Ok(o) => o,
        Err(msg) => return status(StatusCode::BAD_REQUEST, "BadRequest", &msg),
    };
    let instance = if opts.previous {
        Instance::Previous
    } else {
        Instance::Current
    };
    let container_id = match find::container(&mut cri, id, instance).await {
        Ok(c) => c,
        Err(e @ (FindError::NotStarted { .. } | FindError::NoPrevious { .. })) => {
            return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            );
        }
    };
    let path = match container_status(&mut cri, &container_id).await {
        Ok(s) => s.log_path,
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("container runtime: {e}"),
            );
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut out = Sender {
            tx,
            left: opts.limit_bytes,
        };
        if let Err(e) = stream(&mut cri, &container_id, &path, &opts, &mut out).await {
            tracing::debug!(container = %container_id, error = %e, "log stream ended early");
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx)).boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// The receiving half as a `Stream` (without pulling in tokio-stream for one adapter).
fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn container_status(
    cri: &mut CriClient,
    id: &str,
) -> Result<cri::ContainerStatus, tonic::Status> {
    cri.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .ok_or_else(|| tonic::Status::not_found("no container status"))
}

/// Why streaming stopped before the end.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("the client went away")]
    Gone,
    #[error("the byte limit is reached")]
    Limit,
    #[error("reading the log: {0}")]
    Io(#[from] std::io::Error),
}

/// The body's sending half, enforcing `limitBytes`.
struct Sender {
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    left: Option<u64>,
}

impl Sender {
    async fn send(&mut self, mut data: Vec<u8>) -> Result<(), StreamError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut reached = false;
        if let Some(left) = self.left.as_mut() {
            if data.len() as u64 >= *left {
                data.truncate(*left as usize);
                reached = true;
            }
            *left -= data.len() as u64;
        }
        if !data.is_empty() {
            self.tx
                .send(Ok(Frame::data(Bytes::from(data))))
                .await
                .map_err(|_| StreamError::Gone)?;
        }
        if reached {
            Err(StreamError::Limit)
        } else {
            Ok(())
        }
    }
}

/// Writes the existing lines (since/tail applied), then follows the file when asked.
async fn stream(
    cri: &mut CriClient,
    container_id: &str,
    path: &str,
    opts: &LogOptions,
    out: &mut Sender,
) -> Result<(), StreamError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => Some(f),
        // No log yet (the container has not written anything) is an empty log.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut parser = Parser::default();
    let mut data = Vec::new();
    if let Some(f) = file.as_mut() {
        f.read_to_end(&mut data).await?;
    }
    let mut lines = parser.feed(&data);
    if !opts.follow {
        // A last partial record is the end of the output so far (e.g. no final newline).
        lines.extend(parser.finish());
    }
    lines.retain(|l| l.after(opts.since));
    if let Some(tail) = opts.tail {
        let skip = lines.len().saturating_sub(tail as usize);
        lines.drain(..skip);
    }
    out.send(
        lines
            .iter()
            .flat_map(|l| l.render(opts.timestamps))
            .collect(),
    )
    .await?;
    if !opts.follow {
        return Ok(());
    }
    let mut pos = data.len() as u64;
    loop {
        let exited = container_status(cri, container_id)
            .await
            .map(|s| {
                s.state() != cri::ContainerState::ContainerRunning
                    && s.state() != cri::ContainerState::ContainerCreated
            })
            .unwrap_or(true);
        if file.is_none() {
            file = tokio::fs::File::open(path).await.ok();
        }
        let mut chunk = Vec::new();
        if let Some(f) = file.as_mut() {
            f.seek(SeekFrom::Start(pos)).await?;
            f.read_to_end(&mut chunk).await?;
            pos += chunk.len() as u64;
        }
        let lines = parser.feed(&chunk);
        out.send(
            lines
                .iter()
                .filter(|l| l.after(opts.since))
                .flat_map(|l| l.render(opts.timestamps))
                .collect(),
        )
        .await?;
        // The state was read before the file, so everything written before the exit is sent.
        if exited {
            let rest = parser
                .finish()
                .map(|l| l.render(opts.timestamps))
                .unwrap_or_default();
            return out.send(rest).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = out.tx.closed() => return Err(StreamError::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    #[test]
    fn partial_records_are_joined_across_feeds() {
        let mut p = Parser::default();
        let first =
            p.feed(b"2026-01-01T00:00:00.1Z stdout F hello\n2026-01-01T00:00:00.2Z stdout P wor");
        assert_eq!(texts(&first), vec!["hello\n"]);
        assert_eq!(first[0].time, "2026-01-01T00:00:00.1Z");
        let second = p.feed(
            b"ld\n2026-01-01T00:00:00.3Z stderr F  and more\n2026-01-01T00:00:00.4Z stdout F \n",
        );
        assert_eq!(texts(&second), vec!["world and more\n", "\n"]);
        assert_eq!(second[0].time, "2026-01-01T00:00:00.2Z");
        assert_eq!(p.feed(b"2026-01-01T00:00:00.5Z stdout P tail\n"), vec![]);
        assert_eq!(p.finish().map(|l| l.text), Some(b"tail".to_vec()));
    }

    #[test]
    fn render_with_and_without_timestamps() {
        let l = Line {
            time: "2026-01-01T00:00:00.000000001Z".into(),
            text: b"x\n".to_vec(),
        };
        assert_eq!(l.render(false), b"x\n");
        assert_eq!(l.render(true), b"2026-01-01T00:00:00.000000001Z x\n");
    }

    #[test]
    fn since_filters_by_record_time() {
        let l = Line {
            time: "2026-01-01T00:00:10Z".into(),
            text: vec![],
        };
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap());
        assert!(l.after(at("2026-01-01T00:00:10Z")));
        assert!(!l.after(at("2026-01-01T00:00:11Z")));
        assert!(l.after(None));
    }

    #[test]
    fn options_from_query() {
        let q = Query::parse(Some(
            "follow=true&tailLines=3&timestamps=true&limitBytes=10",
        ));
        let o = LogOptions::from_query(&q).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail, o.limit_bytes), (Some(3), Some(10)));
        assert!(LogOptions::from_query(&Query::parse(Some("tailLines=x"))).is_err());
    }
}
