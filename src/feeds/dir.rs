//! The `dir` transport: files another job (SFTP, an agent) drops into an inbox folder.
//!
//! [`pending`] lists what is waiting, [`take`] copies one file into the raw folder
//! (hashing as it copies), and after ingest [`settle`] moves the inbox file to
//! `archive/` or `rejected/` so it is not offered again. The inbox file is never
//! modified or deleted: it stays where the dropping job put it until it is settled.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{raw_name, sync_parent, FeedError, FetchedFile, Origin, PartFile};

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

/// Files waiting in the inbox folder, oldest first (by mtime then name). Skips
/// sub-folders (archive/, rejected/), hidden files (leading '.'), and names ending in
/// .tmp/.part/.partial (still being written).
pub fn pending(inbox: &Path) -> Result<Vec<PathBuf>, FeedError> {
    let entries = fs::read_dir(inbox).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FeedError::InboxMissing {
            path: inbox.to_path_buf(),
        },
        _ => FeedError::io("list inbox folder", inbox, e),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FeedError::io("list inbox folder", inbox, e))?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.starts_with('.') || IN_PROGRESS.iter().any(|end| name.ends_with(end)) {
            continue;
        }
        let path = entry.path();
        // `fs::metadata` follows symlinks, so a link to a file counts as a file. A
        // file that vanished between listing and here was taken by someone else.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FeedError::io("read details of", path, e)),
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        files.push((mtime, entry.file_name(), path));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, _, path)| path).collect())
}

/// Copies one inbox file into `raw_dir` (written to a temp name then renamed; fsync),
/// hashing as it copies. The raw copy is named `<sha256>.<ext>` (the inbox file's own
/// extension, lower case) so the same content is stored once.
pub fn take(source: &str, inbox_file: &Path, raw_dir: &Path) -> Result<FetchedFile, FeedError> {
    let original_name = inbox_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::create_dir_all(raw_dir).map_err(|e| FeedError::io("create raw folder", raw_dir, e))?;
    let mut input = File::open(inbox_file).map_err(|e| FeedError::io("open", inbox_file, e))?;

    let part = PartFile::new(raw_dir);
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part.path)
        .map_err(|e| FeedError::io("create", &part.path, e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FeedError::io("read", inbox_file, e)),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        output
            .write_all(chunk)
            .map_err(|e| FeedError::io("write", &part.path, e))?;
        size += n as u64;
    }
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
        },
    })
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
    fs::create_dir_all(&folder).map_err(|e| FeedError::io("create folder", &folder, e))?;
    // Fail before choosing a name if the file itself is gone.
    fs::metadata(inbox_file).map_err(|e| FeedError::io("settle", inbox_file, e))?;

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
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&reason_path)
        {
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

    #[test]
    fn reason_file_sits_beside() {
        assert_eq!(
            reason_path(Path::new("/in/rejected/a.csv")),
            Path::new("/in/rejected/a.csv.reason.txt")
        );
    }
}
