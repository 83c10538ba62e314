//! The `file` transport: each message becomes one `.eml` file in `mail.file_dir`,
//! named after its Message-ID, so sending it again overwrites the same file rather
//! than adding a second one. Written to a temporary file in the same folder and
//! renamed, so a reader never sees half a message; mode 0600 (the folder 0700),
//! because the files hold personal data.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name for a Message-ID: its text without the angle brackets, anything
/// outside `[A-Za-z0-9._@-]` replaced by `_`, plus `.eml`.
pub(super) fn file_name(message_id: &str) -> String {
    let inner = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let mut name: String = inner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Never a hidden file or a path step.
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name.push_str(".eml");
    name
}

/// Writes the message; returns where it is.
pub(super) async fn write(dir: &Path, message_id: &str, raw: &[u8]) -> std::io::Result<PathBuf> {
    let dir = dir.to_path_buf();
    let path = dir.join(file_name(message_id));
    let raw = raw.to_vec();
    tokio::task::spawn_blocking(move || {
        create_private_dir(&dir)?;
        // tempfile creates the file with mode 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".writing-")
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        tmp.write_all(&raw)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_message_id() {
        assert_eq!(
            file_name("<kinlink.0a1b@example.gov.uk>"),
            "kinlink.0a1b@example.gov.uk.eml"
        );
        assert_eq!(file_name("<../../etc/passwd>"), "_.._.._etc_passwd.eml");
        assert_eq!(file_name("<>"), "_.eml");
    }

    #[tokio::test]
    async fn rewriting_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("outbox");
        let a = write(&out, "<m1@x.example>", b"first").await.unwrap();
        let b = write(&out, "<m1@x.example>", b"second").await.unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
