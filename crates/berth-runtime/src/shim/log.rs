//! The CRI container log format: `<RFC3339Nano> <stream> <F|P> <content>\n`, one record per
//! line, lines longer than [`MAX_LINE`] split into partial (`P`) records ending with a full one.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Longest content of one log record; longer lines are split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// The shared log file all of a container's streams write to; reopenable for log rotation.
#[derive(Clone)]
pub struct LogSink {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogSink {
    /// Opens (creating, appending) the log file.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    /// Reopens the path (after a rotation moved the old file away).
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        let mut guard = self
            .file
            .lock()
            .map_err(|_| io::Error::other("log lock poisoned"))?;
        *guard = fresh;
        Ok(())
    }

    /// Writes one record; the whole record in one write so streams never interleave mid-line.
    fn record(&self, stream: &str, partial: bool, content: &[u8]) -> io::Result<()> {
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut line = Vec::with_capacity(content.len() + 48);
        line.extend_from_slice(
            format!("{ts} {stream} {} ", if partial { "P" } else { "F" }).as_bytes(),
        );
        line.extend_from_slice(content);
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .map_err(|_| io::Error::other("log lock poisoned"))?;
        guard.write_all(&line)
    }
}

/// Emits every complete line (and every over-long chunk as a partial) from the front of `pending`.
fn drain_records(pending: &mut Vec<u8>, sink: &LogSink, stream: &str) -> io::Result<()> {
    loop {
        match pending.iter().take(MAX_LINE + 1).position(|b| *b == b'\n') {
            Some(pos) => {
                sink.record(stream, false, &pending[..pos])?;
                pending.drain(..=pos);
            }
            None if pending.len() > MAX_LINE => {
                sink.record(stream, true, &pending[..MAX_LINE])?;
                pending.drain(..MAX_LINE);
            }
            None => return Ok(()),
        }
    }
}

/// Copies `reader` (a container stream) into `sink` as CRI records until EOF.
pub fn pump(mut reader: impl Read, sink: &LogSink, stream: &str) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[..n]);
        drain_records(&mut pending, sink, stream)?;
    }
    if !pending.is_empty() {
        sink.record(stream, false, &pending)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().expect("ts");
                assert!(
                    chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                    "timestamp {ts}"
                );
                (
                    it.next().expect("stream").into(),
                    it.next().expect("tag").into(),
                    it.next().unwrap_or("").into(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_become_full_records_and_long_ones_partials() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.log");
        let sink = LogSink::open(&path).expect("open");
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("hello\n\nworld\n{long}\ntail");
        pump(input.as_bytes(), &sink, "stdout").expect("pump");
        pump(&b"oops\n"[..], &sink, "stderr").expect("pump");
        let r = records(&std::fs::read_to_string(&path).expect("read"));
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(r[0], s("stdout", "F", "hello"));
        assert_eq!(r[1], s("stdout", "F", ""));
        assert_eq!(r[2], s("stdout", "F", "world"));
        assert_eq!(r[3], s("stdout", "P", &"x".repeat(MAX_LINE)));
        assert_eq!(r[4], s("stdout", "F", "xxxxxxxxxx"));
        assert_eq!(r[5], s("stdout", "F", "tail"));
        assert_eq!(r[6], s("stderr", "F", "oops"));
        assert_eq!(r.len(), 7);
    }

    #[test]
    fn reopen_writes_to_the_new_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.log");
        let sink = LogSink::open(&path).expect("open");
        pump(&b"one\n"[..], &sink, "stdout").expect("pump");
        std::fs::rename(&path, dir.path().join("c.log.1")).expect("rotate");
        sink.reopen().expect("reopen");
        pump(&b"two\n"[..], &sink, "stdout").expect("pump");
        assert!(
            std::fs::read_to_string(&path)
                .expect("new")
                .ends_with(" stdout F two\n")
        );
        assert!(
            std::fs::read_to_string(dir.path().join("c.log.1"))
                .expect("old")
                .ends_with(" stdout F one\n")
        );
    }
}
