//! Blob upload sessions: a staging file, the bytes received so far and a running hash, so that
//! chunks are streamed to disk and the digest is known the moment the last chunk arrives.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, BufWriter};
use uuid::Uuid;

use crate::storage::lock;
use berth_oci::digest::{Algorithm, Hasher};
use berth_oci::reference::RepoName;

/// Sessions idle longer than this are dropped (with their staging file).
const IDLE_EXPIRY: Duration = Duration::from_secs(3600);

/// Write buffer for streamed bodies: large enough that tokio's blocking-pool writes are few.
const WRITE_BUFFER: usize = 1 << 20;

/// One upload in progress.
pub struct Session {
    /// Staging file.
    pub path: PathBuf,
    /// Bytes received so far.
    pub offset: u64,
    /// Hash of those bytes.
    pub hasher: Hasher,
    /// Set once the upload was completed or cancelled; requests that queued behind the one that
    /// closed it must not touch the (gone) staging file.
    pub closed: bool,
    last_used: Instant,
}

/// Why appending to a session failed; the session is rolled back to where it was.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Reading the request body failed (client went away, ...).
    #[error("reading request body: {0}")]
    Body(String),
    /// The body length disagreed with Content-Range/Content-Length.
    #[error("received {got} bytes, expected {want}")]
    Length {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// Writing the staging file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A session shared between the requests that touch it (one at a time).
pub type SharedSession = Arc<tokio::sync::Mutex<Session>>;

/// All live sessions.
#[derive(Default)]
pub struct Uploads {
    /// The owning repository is kept outside the session lock so it can be checked while another
    /// request holds the session.
    sessions: Mutex<HashMap<Uuid, (RepoName, SharedSession)>>,
}

impl Uploads {
    /// Starts a session for `repo` with an empty staging file at `path_for(id)`.
    pub async fn create(
        &self,
        repo: RepoName,
        alg: Algorithm,
        path_for: impl FnOnce(&Uuid) -> PathBuf,
    ) -> io::Result<Uuid> {
        self.expire().await;
        let id = Uuid::new_v4();
        let path = path_for(&id);
        tokio::fs::File::create(&path).await?;
        let session = Session {
            path,
            offset: 0,
            hasher: alg.hasher(),
            closed: false,
            last_used: Instant::now(),
        };
        lock(&self.sessions).insert(id, (repo, Arc::new(tokio::sync::Mutex::new(session))));
        Ok(id)
    }

    /// The session `id` if it exists and belongs to `repo`.
    pub fn get(&self, repo: &RepoName, id: &str) -> Option<SharedSession> {
        let id: Uuid = id.parse().ok()?;
        let sessions = lock(&self.sessions);
        let (owner, s) = sessions.get(&id)?;
        (owner == repo).then(|| s.clone())
    }

    /// Forgets session `id` (its staging file is the caller's business: committed or discarded).
    pub fn forget(&self, id: &str) {
        if let Ok(id) = id.parse::<Uuid>() {
            lock(&self.sessions).remove(&id);
        }
    }

    async fn expire(&self) {
        let now = Instant::now();
        let stale: Vec<(Uuid, SharedSession)> = lock(&self.sessions)
            .iter()
            .map(|(k, (_, v))| (*k, v.clone()))
            .collect();
        for (id, s) in stale {
            let Ok(g) = s.try_lock() else { continue };
            if now.duration_since(g.last_used) > IDLE_EXPIRY {
                let _ = tokio::fs::remove_file(&g.path).await;
                lock(&self.sessions).remove(&id);
                tracing::debug!(%id, "expired idle upload session");
            }
        }
    }
}

impl Session {
    /// Closes the session and deletes its staging file.
    pub async fn discard(&mut self) {
        self.closed = true;
        let _ = tokio::fs::remove_file(&self.path).await;
    }

    /// Streams `body` onto the end of the staging file, hashing as it goes. If the body fails or
    /// its length differs from `expected`, the file and hash are rolled back so the client can
    /// retry the chunk from the same offset.
    pub async fn append(&mut self, body: Body, expected: Option<u64>) -> Result<u64, AppendError> {
        self.last_used = Instant::now();
        let saved = (self.offset, self.hasher.clone());
        match self.write_body(body, expected).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.offset = saved.0;
                self.hasher = saved.1;
                let f = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .await?;
                f.set_len(self.offset).await?;
                Err(e)
            }
        }
    }

    async fn write_body(&mut self, body: Body, expected: Option<u64>) -> Result<u64, AppendError> {
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .await?;
        let mut w = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut stream = body.into_data_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| AppendError::Body(e.to_string()))?;
            self.hasher.update(&chunk);
            w.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        w.flush().await?;
        if let Some(want) = expected
            && want != n
        {
            return Err(AppendError::Length { got: n, want });
        }
        self.offset += n;
        Ok(n)
    }
}
