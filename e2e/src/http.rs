//! A minimal HTTP/1.0 client for tests that talk to model servers through a service port (plain
//! TCP, one request per connection, so every request is a new connection through the proxy).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A minimal HTTP/1.0 request to 127.0.0.1:`port`; returns (status, body).
pub fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    request_to(([127, 0, 0, 1], port).into(), method, path, body)
}

/// A minimal HTTP/1.0 request to `addr` (e.g. a node's service port); returns (status, body).
pub fn request_to(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    conn.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {out:?}")))?;
    // CGI scripts end their headers with bare newlines, which busybox httpd passes through.
    let end = [("\r\n\r\n", 4), ("\n\n", 2)]
        .iter()
        .filter_map(|(sep, len)| out.find(sep).map(|i| i + len))
        .min();
    let body = end.map(|i| out[i..].to_string()).unwrap_or_default();
    Ok((status, body))
}
