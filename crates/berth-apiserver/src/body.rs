//! Request bodies: the one place they are read, with kube-apiserver's limits.
//!
//! * Size: at most [`MAX_BODY`] bytes (kube-apiserver's `MaxRequestBodyBytes`, 3 MiB). A declared
//!   `Content-Length` above it is answered 413 before a byte of the body is read; a chunked body
//!   is read only until it passes the limit. Either way the answer is sent without waiting for the
//!   rest of the body, so a client still writing gets a 413 rather than a reset: the unread rest
//!   is read and discarded in the background, within bounds ([`Rejected`]). Dropped at once,
//!   HTTP/2 resets the stream (`CANCEL`) and clients lose the answer.
//! * Nesting: JSON and YAML nested deeper than [`MAX_DEPTH`] levels are refused with 400 by a
//!   linear pre-scan over the bytes, before any recursive parser (serde_json, serde_yaml's libyaml,
//!   patch decoding) sees them. Without it a 200 KB body of `[[[[...` took libyaml seconds.
//!
//! The size of what is *stored* is limited separately, where objects are encoded
//! ([`crate::object::encode`]).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::{ApiError, ApiResult};

/// Largest accepted request body: kube-apiserver's `MaxRequestBodyBytes` (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Deepest accepted nesting of a JSON or YAML body (objects, arrays, block collections).
pub const MAX_DEPTH: usize = 100;

/// The 413 kube-apiserver answers for a body over the limit.
pub fn too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {MAX_BODY}"),
    )
}

/// A body refused as too large, with the part of it that was not read.
pub struct Rejected {
    /// The answer (413).
    pub error: ApiError,
    unread: Body,
}

/// How much of a refused body is still read (and discarded) after the answer, so the client can
/// finish sending and read the answer; beyond it the stream is reset.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// How long a refused body is drained at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

impl IntoResponse for Rejected {
    /// The error's Status, answered at once; the rest of the body is read and discarded in the
    /// background (up to [`DRAIN_LIMIT`] bytes or [`DRAIN_TIME`]), so the client's upload ends
    /// normally instead of with a reset stream.
    fn into_response(self) -> Response {
        tokio::spawn(drain(self.unread));
        self.error.into_response()
    }
}

/// Reads and discards what is left of a refused body, within the drain limits.
async fn drain(mut unread: Body) {
    let mut seen = 0;
    let discard = async {
        while let Some(Ok(frame)) = unread.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIME, discard).await.is_err() {
        tracing::debug!("stopped draining a refused request body after {DRAIN_TIME:?}");
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes (413 beyond). Nesting is checked
/// separately ([`check_depth`]), once the body is in its final form.
pub async fn read(headers: &http::HeaderMap, body: Body) -> Result<Bytes, Rejected> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(Rejected {
            error: too_large(),
            unread: body,
        });
    }
    read_bounded(body).await
}

/// Collects the body frame by frame, stopping (413) as soon as it passes [`MAX_BODY`].
async fn read_bounded(mut body: Body) -> Result<Bytes, Rejected> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => frame.into_data().unwrap_or_default(),
            Err(e) => {
                return Err(Rejected {
                    error: ApiError::bad_request(format!("reading body: {e}")),
                    unread: body,
                });
            }
        };
        if buf.len() + data.len() > MAX_BODY {
            return Err(Rejected {
                error: too_large(),
                unread: body,
            });
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// 400 when `body` nests deeper than [`MAX_DEPTH`].
pub fn check_depth(body: &[u8]) -> ApiResult<()> {
    if nesting_exceeds(body, MAX_DEPTH) {
        return Err(ApiError::bad_request(format!(
            "the request body is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

/// Whether `text` (JSON or YAML) nests deeper than `max`, in one pass without recursion.
///
/// Counts flow collections (`[`, `{` outside quoted strings and comments) and, outside flow
/// collections, YAML block nesting: the stack of indentation levels plus compact `- ` entries
/// (`- - - x`). Block scalar contents (`|`, `>`) are skipped. JSON is flow-only YAML, so one scan
/// serves both (the server parses a body as JSON first, then as YAML).
pub fn nesting_exceeds(text: &[u8], max: usize) -> bool {
    let mut scan = Scan::default();
    for line in text.split(|b| *b == b'\n') {
        if scan.line(line, max) {
            return true;
        }
    }
    false
}

/// State of [`nesting_exceeds`] between lines.
#[derive(Default)]
struct Scan {
    /// Open flow collections.
    flow: usize,
    /// Indentation of the open block collections (only outside flow collections).
    indents: Vec<usize>,
    /// Inside a quoted string spanning lines: its quote byte.
    quote: Option<u8>,
    /// Inside a block scalar: lines indented more than this belong to it.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Scans one line; true once the depth passes `max`.
    fn line(&mut self, line: &[u8], max: usize) -> bool {
        let indent = line.iter().take_while(|b| **b == b' ').count();
        let rest = &line[indent..];
        let blank = rest.iter().all(u8::is_ascii_whitespace) || rest.first() == Some(&b'#');
        if let Some(outer) = self.block_scalar {
            if blank || indent > outer {
                return false;
            }
            self.block_scalar = None;
        }
        let mut block = 0;
        let mut start = 0;
        if self.flow == 0 && self.quote.is_none() && !blank {
            while self.indents.last().is_some_and(|top| *top >= indent) {
                self.indents.pop();
            }
            self.indents.push(indent);
            // Compact sequences nest on one line: `- - - x`.
            while rest[start..].starts_with(b"- ") {
                start += 2;
                block += 1;
            }
        }
        // The line's own level is counted by its brackets (JSON) or its children (YAML).
        let depth = self.indents.len().saturating_sub(1) + block;
        if depth > max {
            return true;
        }
        let ends_with_indicator = self.tokens(&rest[start..], depth, max);
        match ends_with_indicator {
            Err(()) => true,
            Ok(true) if self.flow == 0 => {
                self.block_scalar = Some(indent);
                false
            }
            Ok(_) => false,
        }
    }

    /// Walks the tokens of a line: quotes, comments and flow brackets. `Err` once the depth passes
    /// `max`; `Ok(true)` if the line ends with a block scalar indicator (`|`, `>-`, ...).
    fn tokens(&mut self, text: &[u8], base: usize, max: usize) -> Result<bool, ()> {
        // The last byte before this one that is not blank (`None` at the start of the line).
        let mut last: Option<u8> = None;
        let mut prev = b' ';
        let mut i = 0;
        while i < text.len() {
            let b = text[i];
            if let Some(q) = self.quote {
                if q == b'"' && b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == q {
                    if q == b'\'' && text.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    self.quote = None;
                    last = Some(b);
                }
                i += 1;
                continue;
            }
            // A quote or bracket starts a token only where a value can start: at the start of
            // the line, after an indicator, or anywhere brackets are in flow context (`don't [x`
            // in block context is one plain scalar).
            let value_start = matches!(last, None | Some(b':' | b'-' | b'?' | b'[' | b'{' | b','));
            match b {
                b'"' | b'\'' if value_start => self.quote = Some(b),
                b'#' if prev == b' ' || prev == b'\t' || i == 0 => break,
                b'[' | b'{' if value_start || self.flow > 0 => {
                    self.flow += 1;
                    if base + self.flow > max {
                        return Err(());
                    }
                }
                b']' | b'}' if self.flow > 0 => self.flow -= 1,
                _ => {}
            }
            if !b.is_ascii_whitespace() {
                last = Some(b);
            }
            prev = b;
            i += 1;
        }
        Ok(self.quote.is_none() && self.flow == 0 && ends_with_block_indicator(text))
    }
}

/// Whether a line ends with a block scalar header: `|`, `>`, optionally with chomping and
/// indentation indicators (`|-`, `>+2`), after a space or at the start.
fn ends_with_block_indicator(text: &[u8]) -> bool {
    let trimmed = text.trim_ascii_end();
    let head = trimmed
        .iter()
        .rposition(|b| !matches!(b, b'-' | b'+' | b'0'..=b'9'))
        .map(|i| &trimmed[..=i])
        .unwrap_or_default();
    let Some((&last, before)) = head.split_last() else {
        return false;
    };
    (last == b'|' || last == b'>') && before.last().is_none_or(|b| *b == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep_json(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn json_depth_counts_brackets() {
        assert!(!nesting_exceeds(deep_json(100).as_bytes(), 100));
        assert!(nesting_exceeds(deep_json(101).as_bytes(), 100));
        let objects = format!("{}1{}", "{\"a\":".repeat(101), "}".repeat(101));
        assert!(nesting_exceeds(objects.as_bytes(), 100));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let s = format!(r#"{{"a": "{}", "b": "\"[[[[\\"}}"#, "[{".repeat(500));
        assert!(!nesting_exceeds(s.as_bytes(), 100));
        // An escaped quote does not end the string; the brackets after it are still inside it.
        let s = format!(r#"{{"a": "x\"{}"}}"#, "[".repeat(500));
        assert!(!nesting_exceeds(s.as_bytes(), 100));
        let s = format!(r#"{{"a": "\\", "b": {}}}"#, deep_json(200));
        assert!(nesting_exceeds(s.as_bytes(), 100), "\\\\ ends the string");
    }

    #[test]
    fn pretty_json_counts_brackets_not_indentation() {
        let mut s = String::new();
        for i in 0..60 {
            s.push_str(&format!("{}{{\"a\":\n", " ".repeat(i * 2)));
        }
        s.push_str(&"}".repeat(60));
        assert!(!nesting_exceeds(s.as_bytes(), 100));
    }

    #[test]
    fn yaml_block_nesting_counts_indentation_and_compact_sequences() {
        let mut s = String::new();
        for i in 0..102 {
            s.push_str(&format!("{}a{i}:\n", " ".repeat(i)));
        }
        assert!(nesting_exceeds(s.as_bytes(), 100));
        assert!(!nesting_exceeds(s.as_bytes(), 101));
        let seq = format!("{}x\n", "- ".repeat(150));
        assert!(nesting_exceeds(seq.as_bytes(), 100));
        let flow = format!("a: {}\n", deep_json(150));
        assert!(nesting_exceeds(flow.as_bytes(), 100));
    }

    #[test]
    fn ordinary_yaml_passes() {
        let doc = "apiVersion: v1\nkind: ConfigMap # a comment with [[[[\nmetadata:\n  name: it's\n  labels: {a: b}\ndata:\n  script: |\n    for x in [[[[ ; do\n          [[[[[[\n    done\n  other: don't [ stop\n  list:\n  - - a\n    - b\n";
        assert!(!nesting_exceeds(doc.as_bytes(), 5));
        let literal = format!("a: |-\n{}\nb: c\n", "  [[[[[[[[[[[[[[[[\n".repeat(20));
        assert!(!nesting_exceeds(literal.as_bytes(), 3));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, (MAX_BODY + 1).into());
        let err = read(&headers, Body::from("{}")).await.err().unwrap().error;
        assert_eq!((err.code, err.reason), (413, "RequestEntityTooLarge"));
        assert_eq!(err.message, "Request entity too large: limit is 3145728");

        let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024]));
        let streamed = Body::from_stream(futures::stream::iter(chunks));
        let err = read(&http::HeaderMap::new(), streamed)
            .await
            .err()
            .unwrap()
            .error;
        assert_eq!(err.code, 413);

        let Ok(ok) = read(&http::HeaderMap::new(), Body::from(vec![b' '; MAX_BODY])).await else {
            panic!("a body of exactly the limit is refused");
        };
        assert_eq!(ok.len(), MAX_BODY);
    }

    #[test]
    fn deep_bodies_are_400_quickly() {
        let body = deep_json(100_000);
        let started = std::time::Instant::now();
        let err = check_depth(body.as_bytes()).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
