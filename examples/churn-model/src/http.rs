//! Just enough HTTP/1.1 for a model server: one request per connection, bodies sized by
//! `Content-Length`, and hard limits so a bad client cannot make the server buffer without bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or timed out.
    #[error("reading request: {0}")]
    Io(#[from] std::io::Error),
    /// The client closed the connection before sending a request.
    #[error("connection closed before a request")]
    Closed,
    /// The bytes are not an HTTP/1.x request we accept (answered with the given status).
    #[error("{1}")]
    Malformed(u16, String),
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: format!("{value}\n").into_bytes(),
        }
    }

    /// A JSON error body `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// A plain-text response.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
        }
    }
}

/// Reads one request from `stream`.
pub fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if read_line(&mut reader, &mut line, MAX_HEAD)? == 0 {
        return Err(ReadError::Closed);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(400, "malformed request line".into()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed(
            505,
            format!("unsupported protocol {version}"),
        ));
    }
    let method = method.to_string();
    let path = target.split('?').next().unwrap_or(target).to_string();
    let length = read_headers(&mut reader, MAX_HEAD.saturating_sub(line.len()))?;
    if length > MAX_BODY {
        return Err(ReadError::Malformed(
            413,
            format!("body larger than {MAX_BODY} bytes"),
        ));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Request { method, path, body })
}

/// Reads the headers up to the blank line; returns the Content-Length (0 if absent).
fn read_headers(reader: &mut impl BufRead, mut budget: usize) -> Result<usize, ReadError> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        let n = read_line(reader, &mut line, budget)?;
        if n == 0 {
            return Err(ReadError::Malformed(
                400,
                "connection closed inside the headers".into(),
            ));
        }
        budget = budget.saturating_sub(n);
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(length);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed(
                400,
                format!("malformed header {line:?}"),
            ));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| ReadError::Malformed(400, "bad Content-Length".into()))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Malformed(
                411,
                "chunked bodies are not supported; send Content-Length".into(),
            ));
        }
    }
}

/// Reads one line of at most `limit` bytes.
fn read_line(
    reader: &mut impl BufRead,
    line: &mut String,
    limit: usize,
) -> Result<usize, ReadError> {
    let n = reader.take(limit as u64 + 1).read_line(line)?;
    if n > limit {
        return Err(ReadError::Malformed(431, "request head too large".into()));
    }
    Ok(n)
}

/// Writes `resp` and closes the exchange (`Connection: close`).
pub fn write_response(stream: &mut TcpStream, resp: &Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&resp.body)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request, ReadError> {
        read_request(&mut raw.as_bytes())
    }

    #[test]
    fn parses_method_path_and_sized_body() {
        let r =
            parse("POST /predict?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\n{}{}extra")
                .unwrap();
        assert_eq!(
            r,
            Request {
                method: "POST".into(),
                path: "/predict".into(),
                body: b"{}{}".to_vec()
            }
        );
        let r = parse("GET /health HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.body.len()),
            ("GET", "/health", 0)
        );
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        let status = |raw: &str| match parse(raw) {
            Err(ReadError::Malformed(s, _)) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(status("garbage\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2\r\n\r\n"), 505);
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status(&format!(
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )),
            413
        );
        assert_eq!(
            status(&format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD))),
            431
        );
        assert!(matches!(parse(""), Err(ReadError::Closed)));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"),
            Err(ReadError::Io(_))
        ));
    }
}
