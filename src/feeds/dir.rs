//! The `dir` transport: files another job (SFTP, an agent) drops into an inbox folder.
//!
//! [`scan`] lists what is waiting, [`take`] copies one file into the raw folder
//! (hashing as it copies), and after ingest [`settle`] moves the inbox file to
//! `archive/` or `rejected/` so it is not offered again. The inbox file is never
//! modified or deleted: it stays where the dropping job put it until it is settled.
//!
//! **Invariant:** only regular files are read. An entry that is a symlink, FIFO,
//! device or socket is refused from its `symlink_metadata` without being opened, and
//! the file opened is checked to be the same regular file (device and inode) that
//! was listed, so a symlink swapped in between is not followed either.
//!
//! **Invariant:** a file is taken only once it is complete as far as kinlink can
//! tell: not modified for `settle_secs` ([`scan`]), unchanged while it was copied
//! ([`take`]), and still unchanged when its rows are about to be committed
//! ([`unchanged`]). A file that changed is never stored in part.
//!
//! Everything kinlink writes here is private to the service user: raw copies and
//! reason files 0600, the folders it creates 0700.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{
    create_private_dir, create_private_file, raw_name, sync_parent, FeedError, FetchedFile, Origin,
    PartFile,
};

/// Sub-folder of the inbox for files ingested successfully.
pub const ARCHIVE_DIR: &str = "archive";
/// Sub-folder of the inbox for files rejected whole.
pub const REJECTED_DIR: &str = "rejected";

/// Name endings of files still being written by the dropping job.
const IN_PROGRESS: [&str; 3] = [".tmp", ".part", ".partial"];

/// How an inbox file leaves the inbox after ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle<'a> {
    Archived,
    Rejected { reason: &'a str },
}

/// What identifies one version of an inbox file: which file (device, inode) and
/// its size and modification time. Appending, truncating or replacing the file
/// changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        Stamp {
            dev,
            ino,
            size: meta.len(),
            mtime: meta.modified().ok(),
        }
    }

    /// How `now` differs from `self`, in words without content.
    fn difference(&self, now: &Stamp) -> Option<String> {
        if (self.dev, self.ino) != (now.dev, now.ino) {
            Some("it was replaced by another file".to_string())
        } else if self.size != now.size {
            Some(format!(
                "its size went from {} to {} bytes",
                self.size, now.size
            ))
        } else if self.mtime != now.mtime {
            Some("its modification time changed".to_string())
        } else {
            None
        }
    }
}

/// An inbox entry refused without being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    /// What it is instead of a regular file: "a symlink", "a FIFO", …
    pub what: &'static str,
}

/// What an inbox holds, as [`scan`] found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Regular files not modified for the settle time: ready to take, oldest first
    /// (by mtime then name).
    pub ready: Vec<PathBuf>,
    /// Regular files modified within the settle time (or dated in the future):
    /// left for a later run.
    pub unsettled: usize,
    /// Entries that are not regular files, refused unread, by name.
    pub refused: Vec<Refused>,
}

/// Files waiting in the inbox folder, oldest first, with no settle time: see
/// [`scan`] for what is skipped and refused.
pub fn pending(inbox: &Path) -> Result<Vec<PathBuf>, FeedError> {
    scan(inbox, Duration::ZERO, file_clock()).map(|i| i.ready)
}

/// The time to measure a file's age against. Not [`crate::clock::Clock`]: file
/// modification times come from the real clock, so a settle time must be measured
/// against it too, also under `--as-of` (a fixed "now" in the past would make every
/// file look modified in the future, and none would ever settle).
#[allow(clippy::disallowed_methods)]
pub fn file_clock() -> SystemTime {
    SystemTime::now()
}

/// Lists the inbox. Skips sub-folders (archive/, rejected/), hidden files (leading
/// '.') and names ending in .tmp/.part/.partial (still being written); refuses
/// anything else that is not a regular file (symlinks are not followed); and counts
/// as unsettled a file whose modification time is less than `settle` before `now`.
pub fn scan(inbox: &Path, settle: Duration, now: SystemTime) -> Result<Inbox, FeedError> {
    let entries = fs::read_dir(inbox).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FeedError::InboxMissing {
            path: inbox.to_path_buf(),
        },
        _ => FeedError::io("list inbox folder", inbox, e),
    })?;
    let mut out = Inbox::default();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FeedError::io("list inbox folder", inbox, e))?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.starts_with('.') || IN_PROGRESS.iter().any(|end| name.ends_with(end)) {
            continue;
        }
        let path = entry.path();
        // Not followed: a symlink is reported as one. A file that vanished between
        // listing and here was taken by someone else.
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FeedError::io("read details of", path, e)),
        };
        if meta.is_dir() {
            continue;
        }
        if let Some(what) = not_regular(&meta) {
            out.refused.push(Refused { path, what });
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let settled = now.duration_since(mtime).is_ok_and(|age| age >= settle);
        if !settled {
            out.unsettled += 1;
            continue;
        }
        files.push((mtime, entry.file_name(), path));
    }
    files.sort();
    out.ready = files.into_iter().map(|(_, _, path)| path).collect();
    out.refused.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// What an entry is when it is not a regular file.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_symlink() {
        return Some("a symlink");
    }
    if t.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_socket() {
            return Some("a socket");
        }
        if t.is_block_device() || t.is_char_device() {
            return Some("a device");
        }
    }
    Some("not a regular file")
}

/// Flags for opening an inbox file: never follow a symlink (`O_NOFOLLOW`), and never
/// wait on a FIFO swapped in after the listing (`O_NONBLOCK`; it changes nothing for
/// a regular file).
#[cfg(unix)]
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// Opens an inbox entry for reading only if it is a regular file, without following
/// a symlink, and checks that what was opened is the entry that was looked at.
fn open_regular(path: &Path) -> Result<(File, Metadata), FeedError> {
    let listed = fs::symlink_metadata(path).map_err(|e| FeedError::io("open", path, e))?;
    if let Some(what) = not_regular(&listed) {
        return Err(FeedError::NotRegularFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(OPEN_FLAGS);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        // ELOOP from O_NOFOLLOW: a symlink was put there after the look.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FeedError::NotRegularFile {
                path: path.to_path_buf(),
                what: "a symlink",
            })
        }
        Err(e) => return Err(FeedError::io("open", path, e)),
    };
    let opened = file
        .metadata()
        .map_err(|e| FeedError::io("read details of", path, e))?;
    if let Some(what) = not_regular(&opened) {
        return Err(FeedError::NotRegularFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let (a, b) = (Stamp::of(&listed), Stamp::of(&opened));
    if (a.dev, a.ino) != (b.dev, b.ino) {
        return Err(FeedError::NotRegularFile {
            path: path.to_path_buf(),
            what: "replaced while it was being opened",
        });
    }
    Ok((file, opened))
}

/// Copies one inbox file into `raw_dir` (written to a private temp name then
/// renamed; fsync), hashing as it copies. The raw copy is named `<sha256>.<ext>`
/// (the inbox file's own extension, lower case) so the same content is stored once.
///
/// Refuses, without reading, an entry that is not a regular file and a file larger
/// than `max_bytes`; fails with [`FeedError::Changed`] if the file changed while it
/// was copied, and with [`FeedError::Stopped`] once `stop` is cancelled. Either way
/// nothing is left in `raw_dir`.
pub fn take(
    source: &str,
    inbox_file: &Path,
    raw_dir: &Path,
    max_bytes: u64,
    stop: &CancellationToken,
) -> Result<FetchedFile, FeedError> {
    let original_name = inbox_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut input, meta) = open_regular(inbox_file)?;
    let stamp = Stamp::of(&meta);
    if stamp.size > max_bytes {
        return Err(FeedError::FileTooLarge {
            feed: source.to_string(),
            path: inbox_file.to_path_buf(),
            size: stamp.size,
            limit: max_bytes,
        });
    }
    create_private_dir(raw_dir).map_err(|e| FeedError::io("create raw folder", raw_dir, e))?;
    let changed = |detail: String| FeedError::Changed {
        feed: source.to_string(),
        path: inbox_file.to_path_buf(),
        detail,
    };

    let part = PartFile::new(raw_dir);
    let mut output =
        create_private_file(&part.path).map_err(|e| FeedError::io("create", &part.path, e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stop.is_cancelled() {
            return Err(FeedError::Stopped);
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FeedError::io("read", inbox_file, e)),
        };
        size += n as u64;
        if size > stamp.size {
            return Err(changed(format!(
                "it grew past the {} bytes it had when it was opened",
                stamp.size
            )));
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        output
            .write_all(chunk)
            .map_err(|e| FeedError::io("write", &part.path, e))?;
    }
    if size != stamp.size {
        return Err(changed(format!(
            "{size} bytes could be read of the {} it had when it was opened",
            stamp.size
        )));
    }
    // The open file, and the name in the inbox, must both still be what was read.
    let after = input
        .metadata()
        .map_err(|e| FeedError::io("read details of", inbox_file, e))?;
    if let Some(detail) = stamp.difference(&Stamp::of(&after)) {
        return Err(changed(detail));
    }
    unchanged(source, inbox_file, &stamp)?;
    output
        .sync_all()
        .map_err(|e| FeedError::io("sync", &part.path, e))?;
    drop(output);

    let sha256 = hex::encode(hasher.finalize());
    let path = raw_dir.join(raw_name(&sha256, extension(inbox_file).as_deref()));
    part.keep(&path)?;
    Ok(FetchedFile {
        source: source.to_string(),
        path,
        original_name,
        sha256,
        size,
        origin: Origin::Dir {
            inbox_file: inbox_file.to_path_buf(),
            stamp,
        },
    })
}

/// Whether the inbox file is still the one [`take`] copied (same file, size and
/// modification time, not followed through a symlink). Called again just before
/// its rows are committed and before it is archived: a file that changed is still
/// being written, and must not be stored or moved.
pub fn unchanged(source: &str, inbox_file: &Path, stamp: &Stamp) -> Result<(), FeedError> {
    let changed = |detail: String| FeedError::Changed {
        feed: source.to_string(),
        path: inbox_file.to_path_buf(),
        detail,
    };
    let now = match fs::symlink_metadata(inbox_file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(changed("it was removed or renamed".to_string()))
        }
        Err(e) => return Err(FeedError::io("read details of", inbox_file, e)),
    };
    match stamp.difference(&Stamp::of(&now)) {
        Some(detail) => Err(changed(detail)),
        None => Ok(()),
    }
}

/// After ingest: move the inbox file to `<inbox>/archive/`, or to `<inbox>/rejected/`
/// plus `<name>.reason.txt` holding the reason. Name clashes get a suffix
/// (`report-1.csv`), never overwrite. Returns the new path.
pub fn settle(inbox_file: &Path, outcome: Settle<'_>) -> Result<PathBuf, FeedError> {
    let inbox = match inbox_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = inbox_file
        .file_name()
        .ok_or_else(|| {
            FeedError::io(
                "settle",
                inbox_file,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let folder = inbox.join(match outcome {
        Settle::Archived => ARCHIVE_DIR,
        Settle::Rejected { .. } => REJECTED_DIR,
    });
    create_private_dir(&folder).map_err(|e| FeedError::io("create folder", &folder, e))?;
    // Fail before choosing a name if the file itself is gone (a symlink is moved
    // as the link, never followed).
    fs::symlink_metadata(inbox_file).map_err(|e| FeedError::io("settle", inbox_file, e))?;

    let reason = match outcome {
        Settle::Archived => None,
        Settle::Rejected { reason } => Some(reason),
    };
    for n in 0..10_000u32 {
        let candidate = folder.join(suffixed(&name, n));
        if exists(&candidate)? {
            continue;
        }
        let Some(reason) = reason else {
            rename(inbox_file, &candidate)?;
            return Ok(candidate);
        };
        let reason_path = reason_path(&candidate);
        // `create_new` claims the reason file's name; if it is taken, try the next suffix.
        let mut file = match create_private_file(&reason_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(FeedError::io("create", reason_path, e)),
        };
        let written = file
            .write_all(format!("{}\n", reason.trim_end()).as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&reason_path);
            return Err(FeedError::io("write", reason_path, e));
        }
        if let Err(e) = rename(inbox_file, &candidate) {
            let _ = fs::remove_file(&reason_path);
            return Err(e);
        }
        return Ok(candidate);
    }
    Err(FeedError::io(
        "find a free name in",
        folder,
        io::Error::new(io::ErrorKind::AlreadyExists, "10000 files of the same name"),
    ))
}

/// The reason file beside a rejected file: `<name>.reason.txt`.
pub fn reason_path(rejected_file: &Path) -> PathBuf {
    let mut name = rejected_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".reason.txt");
    rejected_file.with_file_name(name)
}

/// `report.csv` with suffix n: `report.csv`, `report-1.csv`, `report-2.csv`, …
fn suffixed(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{n}{}", &name[..dot], &name[dot..]),
        _ => format!("{name}-{n}"),
    }
}

fn exists(path: &Path) -> Result<bool, FeedError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FeedError::io("check", path, e)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), FeedError> {
    fs::rename(from, to).map_err(|e| FeedError::io("move", from, e))?;
    sync_parent(to);
    sync_parent(from);
    Ok(())
}

/// The file's extension, lower case, when it looks like one (short, alphanumeric).
fn extension(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    (!ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn suffixes_keep_the_extension() {
        assert_eq!(suffixed("report.csv", 0), "report.csv");
        assert_eq!(suffixed("report.csv", 2), "report-2.csv");
        assert_eq!(suffixed("README", 1), "README-1");
        assert_eq!(suffixed(".hidden", 1), ".hidden-1");
    }

    #[test]
    fn extensions_are_lowercased_and_sane() {
        assert_eq!(extension(Path::new("a/B.CSV")).as_deref(), Some("csv"));
        assert_eq!(extension(Path::new("noext")), None);
        assert_eq!(extension(Path::new("x.with space")), None);
    }

    /// O_NOFOLLOW | O_NONBLOCK refuse a symlink and do not wait on a FIFO.
    #[cfg(all(unix, target_os = "linux"))]
    #[test]
    fn opening_refuses_symlinks_and_fifos() {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("private.txt");
        fs::write(&target, "secret").unwrap();
        let link = tmp.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = OpenOptions::new()
            .read(true)
            .custom_flags(OPEN_FLAGS)
            .open(&link)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        let err = open_regular(&link).unwrap_err();
        assert!(
            matches!(
                err,
                FeedError::NotRegularFile {
                    what: "a symlink",
                    ..
                }
            ),
            "{err:?}"
        );
        let fifo = tmp.path().join("pipe.csv");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // With O_NONBLOCK the open returns at once even though no one writes.
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(OPEN_FLAGS)
                .open(&fifo)
                .unwrap();
            assert!(f.metadata().unwrap().file_type().is_fifo());
            let err = open_regular(&fifo).unwrap_err();
            assert!(
                matches!(
                    err,
                    FeedError::NotRegularFile {
                        what: "a FIFO (named pipe)",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        let (_, meta) = open_regular(&target).unwrap();
        assert_eq!(meta.len(), 6);
    }

    #[test]
    fn reason_file_sits_beside() {
        assert_eq!(
            reason_path(Path::new("/in/rejected/a.csv")),
            Path::new("/in/rejected/a.csv.reason.txt")
        );
    }
}
