//! The configuration contract of docs/config.md as typed values.
//!
//! `load` reads one TOML file (and the jobs folder it names), resolves relative
//! paths against the file's folder, and reports every problem at once with file,
//! line and the fix. Secrets are never read from the file itself: a `*_env` or
//! `*_file` key becomes a [`SecretRef`], resolved when it is used.

mod load;

pub use load::{check_secrets, load, load_str, summary, Problem, Problems, ENV_PREFIX};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::domain::rules::RulesConfig;
use crate::domain::{FeedKind, Format, Urn};
use crate::jobs::JobSpec;

/// Everything kinlink runs on, parsed and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file this came from.
    pub config_path: PathBuf,
    /// Raw files, the SQLite database, the mail outbox.
    pub state_dir: PathBuf,
    pub database: DatabaseUrl,
    pub jobs_dir: PathBuf,
    pub timezone: chrono_tz::Tz,
    pub mail: MailSettings,
    /// Health and metrics listener; `None` turns them off.
    pub http: Option<HttpListen>,
    pub sources: Vec<SourceSettings>,
    pub localities: Vec<Locality>,
    pub schools: Vec<School>,
    /// `[rules.*]`, typed: docs/domain.md §9's defaults with every key the file sets.
    pub rules: RulesConfig,
    pub linkage: LinkageSettings,
    pub retention: RetentionSettings,
    pub jobs: Vec<JobSpec>,
    /// The `KINLINK__*` environment variables that set config keys (names only:
    /// `check-config` lists them, never their values).
    pub env_overrides: Vec<String>,
}

/// `[retention]`: how long each kind of raw data is kept, in days. The purge job
/// deletes what is older; alerts and the audit trail keep their ids and record
/// references, so "who was told what" stays answerable after the data is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Raw feed files in the state dir, and the quarantined rows read from them.
    pub raw_files_days: u32,
    /// Attendance marks, by school day.
    pub attendance_days: u32,
    /// Police notifications, by incident date.
    pub police_da_days: u32,
    /// Housing notices, by the later of the date served and the possession date.
    pub housing_days: u32,
    /// Case rows of closed cases, by closing date (open cases are never purged).
    pub cases_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            raw_files_days: 30,
            attendance_days: 730,
            police_da_days: 730,
            housing_days: 730,
            cases_days: 730,
        }
    }
}

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (relative paths are inside `state_dir`).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (may carry a password: never printed).
    Postgres(String),
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            DatabaseUrl::Postgres(url) => write!(f, "Postgres({})", redact_url(url)),
        }
    }
}

/// A URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A secret named in config: an environment variable or a file. The value itself
/// never appears in config, logs or `Debug` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `*_env = "NAME"`.
    Env(String),
    /// `*_file = "path"`: relative paths are looked up in `$CREDENTIALS_DIRECTORY`
    /// when it is set (systemd `LoadCredential`), else beside the config file.
    File(PathBuf),
}

/// A resolved secret value. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (or not UTF-8)")]
    EnvMissing(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Reads the secret now. A file's trailing newline is dropped.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| SecretError::EnvMissing(name.clone())),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// `[mail]`.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub transport: MailTransport,
    pub from: String,
    pub detail: DetailLevel,
    pub admin: Vec<String>,
    /// `retry_every_mins`: how often the daemon sends what is due in the outbox
    /// between scheduled sends (it also wakes when the next retry falls due).
    pub retry_every_mins: u32,
}

/// `[mail] retry_every_mins` when the file does not set it.
pub const DEFAULT_RETRY_EVERY_MINS: u32 = 5;

/// How mail leaves.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `.eml` files in this folder (inside `state_dir` when relative).
    File {
        dir: PathBuf,
    },
    Smtp(SmtpSettings),
}

/// SMTP connection settings.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<SecretRef>,
    pub password: Option<SecretRef>,
    /// `smtp_ca_file`: extra certificates (PEM) to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    Starttls,
    Tls,
    /// Plain text: only to a loopback host.
    None,
}

/// How much personal data an email carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DetailLevel {
    #[default]
    Minimal,
    Standard,
    Full,
}

impl DetailLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            DetailLevel::Minimal => "minimal",
            DetailLevel::Standard => "standard",
            DetailLevel::Full => "full",
        }
    }
}

/// `[http]`: where `/healthz` and `/metrics` listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListen {
    pub listen: std::net::SocketAddr,
}

/// One `[[source]]`.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub name: String,
    pub kind: FeedKind,
    pub format: Format,
    pub transport: Transport,
    /// Fraction of quarantined rows above which the whole file is rejected.
    pub max_bad_rows: f64,
    /// xlsx/xls/ods: which sheet (default: the first).
    pub sheet: Option<String>,
    /// csv only; default `,`.
    pub delimiter: u8,
    /// csv only; default UTF-8.
    pub encoding: TextEncoding,
    /// json only: dotted path to the records array (default: the document is the array).
    pub records_path: Option<String>,
    /// json only: dotted path to the next-page link.
    pub next_path: Option<String>,
    pub stale_after_hours: Option<u32>,
    /// canonical column → the source's own header.
    pub columns: BTreeMap<String, String>,
    /// What one file of the source may hold.
    pub limits: SourceLimits,
}

/// The limits of one `[[source]]`: how long a CSV line and field may be, whether a
/// quoted CSV field may span lines, and how long each canonical column's value may
/// be. A file over a line or field limit is rejected whole; a value over its
/// column's length quarantines its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimits {
    /// csv: bytes one line may hold (with `multiline_fields`, one record).
    pub max_line_bytes: usize,
    /// csv: bytes one field may hold, quotes included.
    pub max_field_bytes: usize,
    /// csv: whether a quoted field may hold line breaks (off by default: an
    /// unbalanced quote must not swallow the rows after it).
    pub multiline_fields: bool,
    /// canonical column → the most characters its value may have, where the
    /// source overrides ingest's defaults (`[source.max_lengths]`).
    pub max_lengths: BTreeMap<String, usize>,
}

impl SourceLimits {
    /// `max_line_bytes` unless configured: 32 MiB.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 32 << 20;
    /// `max_field_bytes` unless configured: 16 MiB. Far above any real value, so
    /// that a runaway cell reaches its column's length check and quarantines its
    /// row rather than rejecting the file; a line or field beyond these is what
    /// rejects a file, with memory bounded by them.
    pub const DEFAULT_MAX_FIELD_BYTES: usize = 16 << 20;
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
            max_field_bytes: Self::DEFAULT_MAX_FIELD_BYTES,
            multiline_fields: false,
            max_lengths: BTreeMap::new(),
        }
    }
}

/// CSV text encodings a source may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    #[default]
    Utf8,
    Windows1252,
}

/// Where a source's files come from.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A folder that another job drops files into.
    Dir(DirTransport),
    Http(HttpTransport),
}

/// An inbox folder that another job (SFTP, an agent) drops files into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirTransport {
    pub path: PathBuf,
    /// A file is taken only once it has not been modified for this long (its
    /// mtime is at least this old); default [`DirTransport::DEFAULT_SETTLE_SECS`].
    pub settle_secs: u64,
    /// A larger file is refused unread; default 512 MiB, as http's `max_body_bytes`.
    pub max_file_bytes: u64,
}

impl DirTransport {
    /// docs/config.md's default for `settle_secs`.
    pub const DEFAULT_SETTLE_SECS: u64 = 60;
    /// docs/config.md's default for `max_file_bytes` (512 MiB).
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 536_870_912;

    /// The inbox at `path` with the default settle time and size limit.
    pub fn new(path: impl Into<PathBuf>) -> DirTransport {
        DirTransport {
            path: path.into(),
            settle_secs: Self::DEFAULT_SETTLE_SECS,
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// An HTTP(S) feed endpoint.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    pub url: String,
    pub auth: HttpAuth,
    /// Default 10 s.
    pub connect_timeout_secs: u64,
    /// Whole request, default 300 s.
    pub timeout_secs: u64,
    /// Default 3 retries after the first try.
    pub retries: u32,
    /// First backoff step, default 1000 ms (doubles, with jitter).
    pub backoff_ms: u64,
    /// Largest body accepted, default 512 MiB.
    pub max_body_bytes: u64,
    /// What to do with a next-page link to another origin (scheme, host, port).
    pub other_origin_pages: OtherOriginPages,
}

/// `other_origin_pages` of an http transport: whether a next-page link may lead to
/// another origin. Credentials only ever go to the configured origin, and an https
/// feed never follows a link to plain http, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtherOriginPages {
    /// Such a link stops the fetch with an error (the default).
    #[default]
    Refuse,
    /// Such a page is fetched, without the source's credentials.
    WithoutCredentials,
}

/// How to authenticate to an HTTP feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    None,
    Bearer(SecretRef),
    Basic {
        user: SecretRef,
        password: SecretRef,
    },
}

/// One `[[locality]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    pub name: String,
    /// Districts (`M7`) or sectors (`M6 5`), upper case, one space.
    pub postcodes: Vec<String>,
    pub dv_champions: Vec<String>,
    pub champions: Vec<String>,
    pub managers: Vec<String>,
}

/// One `[[school]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct School {
    pub urn: Urn,
    pub name: String,
    pub locality: String,
    pub ewos: Vec<String>,
}

/// `[linkage]` thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkageSettings {
    pub auto_link: f64,
    pub review: f64,
    /// A person never grows past this many mentions by automatic linking.
    pub max_cluster_size: usize,
    /// Blocks larger than this are compared only within a sorted window.
    pub max_block_size: usize,
    /// Blocking rules, each key parts joined by `+` (`domain::linkage::KEY_PARTS`).
    pub blocking: Vec<String>,
    /// m probabilities fixed instead of estimated: (field, level, m).
    pub m: Vec<(String, String, f64)>,
}

impl Default for LinkageSettings {
    fn default() -> Self {
        LinkageSettings {
            auto_link: 0.95,
            review: 0.60,
            max_cluster_size: 200,
            max_block_size: 100,
            blocking: crate::domain::linkage::DEFAULT_BLOCKING
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            m: Vec::new(),
        }
    }
}

impl Settings {
    /// The source with this name.
    pub fn source(&self, name: &str) -> Option<&SourceSettings> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://kin:s3cret@db.example:5432/kin"),
            "postgres://kin:***@db.example:5432/kin"
        );
        assert_eq!(redact_url("postgres://db/kin"), "postgres://db/kin");
        let d = DatabaseUrl::Postgres("postgres://a:b@c/d".into());
        assert!(!format!("{d:?}").contains(":b@"));
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "***");
    }
}
