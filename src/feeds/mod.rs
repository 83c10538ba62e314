//! Fetching raw files: the only module that knows HTTP.
//!
//! A source delivers files either into an inbox folder ([`dir`]) or from an HTTP(S)
//! endpoint ([`http`]). Either way the bytes end up as one file inside the state dir's
//! raw folder, named `<sha256>.<ext>` so the same content is stored once, and described
//! by a [`FetchedFile`] that ingest reads.
//!
//! **Invariant:** a failed fetch leaves nothing behind in the raw folder: bodies are
//! written to a temporary name and renamed only once complete and hashed.
//!
//! **Invariant:** no error message or log line carries a credential or a body; URLs
//! are shown without user info or query string (see [`display_url`]).

pub mod dir;
pub mod http;

use std::path::{Path, PathBuf};

use crate::config::SecretError;

/// A raw file now held in the state dir, ready to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedFile {
    /// The source's name from config.
    pub source: String,
    /// The copy inside the raw folder (ingest reads this).
    pub path: PathBuf,
    /// The file name as delivered (dir) or derived from the URL (http).
    pub original_name: String,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    pub size: u64,
    pub origin: Origin,
}

/// Where a fetched file came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Taken from an inbox folder; settle it with [`dir::settle`] after ingest, once
    /// [`dir::unchanged`] says it is still the file that was copied.
    Dir {
        inbox_file: PathBuf,
        /// The inbox file as it was copied.
        stamp: dir::Stamp,
    },
    /// Downloaded; keep `validators` for the next conditional GET. `url` is the
    /// configured URL in its [`display_url`] form (no user info or query).
    Http { url: String, validators: Validators },
}

/// HTTP cache validators from the last successful download, sent back as
/// `If-None-Match` / `If-Modified-Since` so an unchanged feed costs a 304.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Why a fetch failed. Variants are what the caller acts on; every message names the
/// source and URL (never credentials) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Network failure, timeout, 5xx or 429 that outlasted every retry.
    #[error("source {feed}: {url} is unavailable after {attempts} attempt(s) ({last}); it will be tried again on the next run")]
    Unavailable {
        feed: String,
        url: String,
        attempts: u32,
        last: String,
    },
    /// 401 or 403: the credentials are wrong or lack access.
    #[error("source {feed}: {url} refused access (HTTP {status}); check the source's bearer/basic credentials and that the account may read this feed")]
    Unauthorized {
        feed: String,
        url: String,
        status: u16,
    },
    /// 404.
    #[error("source {feed}: {url} was not found (HTTP 404); check the source's transport.url")]
    NotFound { feed: String, url: String },
    /// Any other 4xx (or an unexpected status): retrying will not help.
    #[error("source {feed}: {url} rejected the request (HTTP {status}); check the source's transport settings with the feed's provider")]
    Rejected {
        feed: String,
        url: String,
        status: u16,
    },
    /// The body is larger than `max_body_bytes`.
    #[error("source {feed}: {url} sent more than the {limit}-byte limit; raise transport.max_body_bytes if the feed really is this large")]
    TooLarge {
        feed: String,
        url: String,
        limit: u64,
    },
    /// The connection closed before the whole body arrived, on every attempt.
    #[error("source {feed}: {url} closed the connection after {received} of {expected} bytes; it will be tried again on the next run")]
    Truncated {
        feed: String,
        url: String,
        received: u64,
        /// The announced length, or `"an unknown number of"`.
        expected: String,
    },
    /// A credential named in config could not be read.
    #[error("source {feed}: cannot read its credential: {error}; set it or correct the source's *_env/*_file entry")]
    Secret {
        feed: String,
        #[source]
        error: SecretError,
    },
    /// A credential was read but cannot be sent in an HTTP header.
    #[error("source {feed}: its bearer token contains characters not allowed in an HTTP header (a stray newline or control character?); correct the secret")]
    BadCredential { feed: String },
    /// An inbox entry is a symlink, FIFO, device, socket or otherwise not a regular
    /// file: it was refused without being read.
    #[error("inbox entry {} is {what}, not a regular file; kinlink did not read it. Put the file itself in the inbox (symlinks, FIFOs and devices are never followed or read)", path.display())]
    NotRegularFile { path: PathBuf, what: &'static str },
    /// An inbox file is larger than the dir transport's `max_file_bytes`.
    #[error("source {feed}: {} is {size} bytes, more than the {limit}-byte limit; nothing was read. Raise transport.max_file_bytes if the feed really is this large", path.display())]
    FileTooLarge {
        feed: String,
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// An inbox file changed after (or while) it was copied: it is still being
    /// written. Nothing from it may be stored.
    #[error("source {feed}: {} changed while kinlink was reading it ({detail}), so it is still being written; nothing from it was stored and it stays in the inbox for the next run. If this repeats, have the sender write to a .part name and rename the file when it is complete, or raise transport.settle_secs", path.display())]
    Changed {
        feed: String,
        path: PathBuf,
        detail: String,
    },
    /// Shutdown began while fetching; nothing of the file was kept.
    #[error("stopped by shutdown while fetching; nothing of the file was kept")]
    Stopped,
    /// The inbox folder of a dir source is missing.
    #[error("inbox folder {} does not exist; create it or correct the source's transport.path in the config", path.display())]
    InboxMissing { path: PathBuf },
    /// A local file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON page could not be read as the source's config describes.
    #[error(
        "source {feed}: page {page} from {url} {detail}; check the source's records_path/next_path"
    )]
    BadJson {
        feed: String,
        url: String,
        page: usize,
        detail: String,
    },
    /// Following next-page links went wrong (a loop, too many pages, a bad link).
    #[error("source {feed}: pagination of {url} stopped: {detail}")]
    Pagination {
        feed: String,
        url: String,
        detail: String,
    },
    /// The configured URL (or a next-page link) is not a usable http(s) URL.
    #[error("source {feed}: {url} is not a usable http(s) URL ({detail}); correct the source's transport.url")]
    BadUrl {
        feed: String,
        url: String,
        detail: String,
    },
    /// The HTTP client itself could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl FeedError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> FeedError {
        FeedError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The raw copy's file name: content-addressed, so the same bytes are stored once.
fn raw_name(sha256: &str, ext: Option<&str>) -> String {
    match ext {
        Some(ext) => format!("{sha256}.{ext}"),
        None => sha256.to_string(),
    }
}

/// A partly written file inside the raw folder. It is removed when dropped unless
/// [`PartFile::keep`] was called, so an error or a cancelled fetch leaves nothing
/// behind. The name is hidden and ends in `.part`, so nothing mistakes it for a
/// finished file.
struct PartFile {
    path: PathBuf,
    armed: bool,
}

impl PartFile {
    fn new(raw_dir: &Path) -> PartFile {
        let tag: u64 = rand::random();
        PartFile {
            path: raw_dir.join(format!(".fetch-{tag:016x}.part")),
            armed: true,
        }
    }

    /// Renames the finished file to `target` (replacing an identical earlier copy) and
    /// makes the rename durable.
    fn keep(mut self, target: &Path) -> Result<(), FeedError> {
        std::fs::rename(&self.path, target)
            .map_err(|e| FeedError::io("rename into place", target, e))?;
        self.armed = false;
        sync_parent(target);
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            // Nothing more can be done if this fails; the name marks it as scrap.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates `dir` and any missing parents with mode 0700 (a folder kinlink makes
/// holds personal data: only the service user may list or read it).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates the raw folder (mode 0700), and makes an existing one 0700 too: it is
/// kinlink's own, inside the state dir, and older versions made it 0755.
pub fn create_raw_dir(raw_dir: &Path) -> Result<(), FeedError> {
    create_private_dir(raw_dir).map_err(|e| FeedError::io("create raw folder", raw_dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(raw_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| FeedError::io("make private", raw_dir, e))?;
    }
    Ok(())
}

/// Opens a new file for writing, failing if it exists; mode 0600.
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Flushes a directory entry change (rename, create) to disk. Best effort: some
/// platforms cannot open a directory, and the data itself is already synced.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// A URL as it may appear in messages and logs: scheme, host, port and path, without
/// user info, query or fragment (API keys often ride in the query string).
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(port) => format!("{}://{}:{}{}", u.scheme(), host, port, u.path()),
                None => format!("{}://{}{}", u.scheme(), host, u.path()),
            }
        }
        // Not a URL: show only what comes before any query or user info marker.
        Err(_) => {
            let cut = url.find(['?', '#', '@']).unwrap_or(url.len());
            url[..cut].to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_hides_credentials_and_query() {
        assert_eq!(
            display_url("https://user:pw@feeds.example/api/v1/att?key=abc#x"),
            "https://feeds.example/api/v1/att"
        );
        assert_eq!(
            display_url("http://127.0.0.1:8080/a"),
            "http://127.0.0.1:8080/a"
        );
        assert_eq!(display_url("not a url?token=1"), "not a url");
    }

    #[test]
    fn messages_name_source_and_fix() {
        let e = FeedError::Unauthorized {
            feed: "police".into(),
            url: "https://x/y".into(),
            status: 401,
        };
        let m = e.to_string();
        assert!(m.contains("police") && m.contains("https://x/y") && m.contains("401"));
        let e = FeedError::InboxMissing {
            path: "/in/box".into(),
        };
        assert!(e.to_string().contains("/in/box") && e.to_string().contains("transport.path"));
    }
}
