//! Reads the config file of config.md into [`Settings`], then the jobs folder it
//! names, and reports every problem of both at once: file, line, what is wrong and
//! what would fix it. Unknown keys are errors, because a typo must not silently
//! switch a safeguard off. Secrets are only ever named (`*_env`, `*_file`); they are
//! read by [`check_secrets`] and by the code that uses them, never by [`load`].
//!
//! Layers: defaults, then the file, then `KINLINK__SECTION__KEY` environment
//! variables (`KINLINK__KEY` for a top-level key), which replace single keys of
//! the file's tables before it is checked, so an override is checked like a line
//! of the file and its problems name the variable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use toml_edit::{Item, Value};

use super::{
    redact_url, DatabaseUrl, DetailLevel, DirTransport, HttpAuth, HttpListen, HttpTransport,
    LinkageSettings, Locality, MailSettings, MailTransport, OtherOriginPages, RetentionSettings,
    School, SecretError, SecretRef, Settings, SmtpSettings, SmtpTls, SourceLimits, SourceSettings,
    TextEncoding, Transport,
};
pub use crate::domain::Problem;
use crate::domain::{FeedKind, Format, Urn};
use crate::ingest;
use crate::jobs;
use crate::jobs::walk::{closest, describe, looks_secret, Entry, Section, Sink};

/// Every problem found, sorted by file then line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl From<Vec<Problem>> for Problems {
    fn from(mut problems: Vec<Problem>) -> Problems {
        sort(&mut problems);
        Problems(problems)
    }
}

/// Sorts by file then line; problems on one line keep the order they were found in.
fn sort(problems: &mut [Problem]) {
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
}

const TOP_KEYS: &[&str] = &[
    "state_dir",
    "database_url",
    "database_url_env",
    "jobs_dir",
    "timezone",
    "mail",
    "http",
    "source",
    "locality",
    "school",
    "rules",
    "linkage",
    "retention",
];

const RETENTION_KEYS: &[&str] = &[
    "raw_files_days",
    "attendance_days",
    "police_da_days",
    "housing_days",
    "cases_days",
];

const MAIL_KEYS: &[&str] = &[
    "transport",
    "from",
    "file_dir",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_user_env",
    "smtp_user_file",
    "smtp_password_env",
    "smtp_password_file",
    "smtp_ca_file",
    "detail",
    "admin",
    "retry_every_mins",
];

const SOURCE_KEYS: &[&str] = &[
    "name",
    "kind",
    "format",
    "transport",
    "max_bad_rows",
    "sheet",
    "delimiter",
    "encoding",
    "records_path",
    "next_path",
    "stale_after_hours",
    "columns",
    "max_line_bytes",
    "max_field_bytes",
    "multiline_fields",
    "max_lengths",
];

/// Keys of an http transport besides `type`; none of them belongs on a dir one.
const HTTP_TRANSPORT_KEYS: &[&str] = &[
    "url",
    "bearer_env",
    "bearer_file",
    "basic_user_env",
    "basic_user_file",
    "basic_password_env",
    "basic_password_file",
    "connect_timeout_secs",
    "timeout_secs",
    "retries",
    "backoff_ms",
    "max_body_bytes",
    "other_origin_pages",
];

/// Keys of a dir transport besides `type` and `path`; none of them belongs on an
/// http one.
const DIR_TRANSPORT_KEYS: &[&str] = &["settle_secs", "max_file_bytes"];

const LOCALITY_KEYS: &[&str] = &["name", "postcodes", "dv_champions", "champions", "managers"];
const SCHOOL_KEYS: &[&str] = &["urn", "name", "locality", "ewos"];
const LINKAGE_KEYS: &[&str] = &[
    "auto_link",
    "review",
    "max_cluster_size",
    "max_block_size",
    "blocking",
    "m",
];

/// What a rule key holds.
#[derive(Clone, Copy)]
enum RuleValue {
    Flag,
    /// A positive whole number of days.
    Days,
    /// 0.0 to 1.0.
    Fraction,
    /// A whole number in this range.
    Count(i64, i64),
}

/// Keys every rule has.
const RULE_COMMON: &[(&str, RuleValue)] = &[
    ("enabled", RuleValue::Flag),
    ("lookback_days", RuleValue::Days),
    ("resolve_after_days", RuleValue::Days),
];

/// The shipped rules and their own keys (config.md; defaults in domain.md §9).
const RULES: &[(&str, &[(&str, RuleValue)])] = &[
    (
        "da_notification",
        &[("repeat_within_days", RuleValue::Days)],
    ),
    (
        "attendance_drop",
        &[
            // The store packs a window's session counts in 12 bits (≤ 4095).
            ("window_school_days", RuleValue::Count(1, 2000)),
            ("baseline_school_days", RuleValue::Count(1, 2000)),
            ("below", RuleValue::Fraction),
            ("drop", RuleValue::Fraction),
            ("severe_below", RuleValue::Fraction),
            ("min_possible_sessions", RuleValue::Count(1, 10_000)),
            ("unauthorised_sessions", RuleValue::Count(1, 10_000)),
        ],
    ),
    ("eviction_risk", &[("bailiff_within_days", RuleValue::Days)]),
    (
        "closed_too_early",
        &[
            ("within_days", RuleValue::Days),
            ("urgent_within_days", RuleValue::Days),
        ],
    ),
    (
        "emerging_risk",
        &[
            ("window_days", RuleValue::Days),
            // four signal kinds: attendance, police_da, housing, referral
            ("min_signal_kinds", RuleValue::Count(1, 4)),
        ],
    ),
];

/// The longest span of days a rule key may hold: beyond ten years it is a typo.
const MAX_DAYS: i64 = 3660;

/// Loads and checks a config file and its jobs folder.
pub fn load(path: &Path) -> Result<Settings, Problems> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(e) => Err(Problems(vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read the config file: {e}"),
            fix: "check the path given with --config or KINLINK_CONFIG".into(),
        }])),
    }
}

/// Loads config text as if read from `path` (used for messages and to resolve
/// relative paths), then the jobs folder it names. `KINLINK__*` variables of the
/// process environment override keys of the file.
pub fn load_str(text: &str, path: &Path) -> Result<Settings, Problems> {
    let overrides: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            name.starts_with(ENV_PREFIX)
                .then(|| (name, value.to_string_lossy().into_owned()))
        })
        .collect();
    load_layered(text, path, &|name| std::env::var(name).ok(), &overrides)
}

/// Environment variables named `KINLINK__SECTION__KEY` (or `KINLINK__KEY` at the
/// top level) override that key of the config file.
pub const ENV_PREFIX: &str = "KINLINK__";

/// The process environment as the loader sees it. Tests pass their own, because
/// environment variables are process-wide and tests run in parallel.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// State shared while one file is checked.
struct Cx<'e> {
    sink: Sink,
    /// The config file's folder: relative paths resolve against it.
    base: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`: relative `*_file` secrets resolve inside it.
    credentials: Option<PathBuf>,
    env: Env<'e>,
}

impl Cx<'_> {
    /// A path from the file: absolute as written, relative against the config folder.
    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text.trim());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

#[cfg(test)]
fn load_with_env(text: &str, path: &Path, env: Env<'_>) -> Result<Settings, Problems> {
    load_layered(text, path, env, &[])
}

/// Layers `KINLINK__*` overrides (name, value) over the file's keys, then checks
/// the result.
fn load_layered(
    text: &str,
    path: &Path,
    env: Env<'_>,
    overrides: &[(String, String)],
) -> Result<Settings, Problems> {
    let mut sink = Sink::new(path, text);
    let Ok(doc) = sink.parse(text) else {
        return Err(sink.problems.into());
    };
    let mut top = doc.as_table().clone();
    let env_overrides = apply_overrides(&mut top, overrides, &mut sink);
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    let credentials = env("CREDENTIALS_DIRECTORY")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let mut cx = Cx {
        sink,
        base,
        credentials,
        env,
    };

    let root = Section::new("the top level", &top, 1, &cx.sink);
    root.check_keys(&mut cx.sink, TOP_KEYS);

    // Without `state_dir`, state lives in a `state` folder beside the config file:
    // enough for `demo` and a first try; a service sets its StateDirectory here.
    let state_dir = match non_empty_string(&mut cx, &root, "state_dir") {
        Some((s, _)) => cx.path(&s),
        None => cx.base.join("state"),
    };
    let database = database(&mut cx, &root, &state_dir);
    let jobs_dir = match non_empty_string(&mut cx, &root, "jobs_dir") {
        Some((s, _)) => Some(cx.path(&s)),
        None if root.has("jobs_dir") => None,
        None => Some(cx.base.join("jobs")),
    };
    let timezone = match root.string(&mut cx.sink, "timezone") {
        Some((name, line)) => match name.trim().parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                cx.sink.push(
                    line,
                    format!("unknown timezone {name:?}"),
                    "use an IANA timezone name such as \"Europe/London\"",
                );
                chrono_tz::Europe::London
            }
        },
        None => chrono_tz::Europe::London,
    };
    let mail = mail(&mut cx, &root, &state_dir);
    let http = http(&mut cx, &root);
    let sources = sources(&mut cx, &root);
    let localities = localities(&mut cx, &root);
    let schools = schools(&mut cx, &root, &localities);
    let rules = rules(&mut cx, &root);
    let linkage = linkage(&mut cx, &root);
    let retention = retention(&mut cx, &root, &rules);

    let mut problems = std::mem::take(&mut cx.sink.problems);
    let mut job_specs = Vec::new();
    if let Some(jobs_dir) = &jobs_dir {
        if jobs_dir.is_dir() {
            let (specs, job_problems) = jobs::load_dir(jobs_dir);
            job_specs = specs;
            problems.extend(job_problems);
        } else {
            let (line, how) = if root.has("jobs_dir") {
                (root.line_of("jobs_dir"), "named by `jobs_dir`")
            } else {
                (0, "the default: `jobs` beside the config file")
            };
            problems.push(cx.sink.problem(
                line,
                format!(
                    "the jobs folder {} ({how}) does not exist",
                    jobs_dir.display()
                ),
                "create it with one TOML file per job, or set `jobs_dir` to the folder that holds the job files",
            ));
        }
    }

    if !problems.is_empty() {
        // The config file first, then the job files; each by line.
        problems.sort_by(|a, b| {
            (a.file != path, &a.file, a.line).cmp(&(b.file != path, &b.file, b.line))
        });
        return Err(Problems(problems));
    }
    Ok(Settings {
        config_path: path.to_path_buf(),
        state_dir,
        database,
        jobs_dir: jobs_dir.unwrap_or_default(),
        timezone,
        mail,
        http,
        sources,
        localities,
        schools,
        rules,
        linkage,
        retention,
        jobs: job_specs,
        env_overrides,
    })
}

/// Top-level lists of tables: an override cannot say which one it means.
const TABLE_LISTS: &[&str] = &["source", "locality", "school"];
const LISTS_FIX: &str = "overrides set keys of tables such as [mail] (KINLINK__MAIL__TRANSPORT); \
     change lists of tables such as [[source]] in the config file";

/// Sets each `KINLINK__SECTION__KEY` override (sorted by name) in `top`: the key
/// is replaced, or added with its table when the file has neither. The value is
/// read as a TOML value when it is one (`8025`, `true`, `["a", "b"]`), else as a
/// string. Secrets are refused: they come only through `*_env` and `*_file`.
/// Whether the key exists is left to the checks that follow, which then name the
/// variable. Returns the names of the variables applied.
fn apply_overrides(
    top: &mut toml_edit::Table,
    overrides: &[(String, String)],
    sink: &mut Sink,
) -> Vec<String> {
    let mut vars: Vec<&(String, String)> = overrides
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    'vars: for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let Some((key, sections)) = path
            .split_last()
            .filter(|_| path.iter().all(|p| !p.is_empty()))
        else {
            sink.push(
                0,
                format!("the environment variable {name} does not name a config key"),
                "name a key as KINLINK__SECTION__KEY (e.g. KINLINK__MAIL__TRANSPORT), or KINLINK__KEY for a top-level key (e.g. KINLINK__TIMEZONE)",
            );
            continue;
        };
        if looks_secret(key) {
            sink.push(
                0,
                format!("the environment variable {name} would pass a secret as a config value; it is not used"),
                format!(
                    "secrets are read only through `*_env` and `*_file` keys: unset {name}, put the secret in \
                     its own variable or credential file, and name it with `{key}_env` or \
                     `{key}_file` in the config (or with {name}_ENV / {name}_FILE)"
                ),
            );
            continue;
        }
        if sections
            .first()
            .is_some_and(|s| TABLE_LISTS.contains(&s.as_str()))
        {
            sink.push(
                0,
                format!(
                    "the environment variable {name} names a key inside [[{}]], a list of tables",
                    sections[0]
                ),
                LISTS_FIX,
            );
            continue;
        }
        let mut label = "the top level".to_string();
        let mut table: &mut dyn toml_edit::TableLike = top;
        for (depth, section) in sections.iter().enumerate() {
            if table.get(section).is_none() {
                let mut new = toml_edit::Table::new();
                new.set_implicit(true);
                table.insert(section, Item::Table(new));
                sink.env_key(&label, section, name);
            }
            if let Some(other) = table.get(section).filter(|i| !i.is_table_like()) {
                sink.push(
                    0,
                    format!(
                        "the environment variable {name} names a key inside `{section}` in {label}, which is {}, not a table",
                        describe(other)
                    ),
                    LISTS_FIX,
                );
                continue 'vars;
            }
            let Some(next) = table.get_mut(section).and_then(Item::as_table_like_mut) else {
                continue 'vars;
            };
            table = next;
            label = format!("[{}]", sections[..=depth].join("."));
        }
        let value = raw
            .trim()
            .parse::<Value>()
            .unwrap_or_else(|_| Value::from(raw.as_str()));
        table.remove(key);
        table.insert(key, Item::Value(value));
        sink.env_key(&label, key, name);
        applied.push(name.clone());
    }
    applied
}

/// A string that must not be blank.
fn non_empty_string(cx: &mut Cx<'_>, sec: &Section<'_>, key: &str) -> Option<(String, usize)> {
    let (s, line) = sec.string(&mut cx.sink, key)?;
    if s.trim().is_empty() {
        cx.sink.push(
            line,
            format!("`{key}` in {} is empty", sec.label),
            format!("give `{key}` a value, or remove the line to use the default"),
        );
        return None;
    }
    Some((s.trim().to_string(), line))
}

/// A string that must be one of `choices` (case-insensitive); returns the index.
fn choice(cx: &mut Cx<'_>, sec: &Section<'_>, key: &str, choices: &[&str]) -> Option<usize> {
    let (s, line) = sec.string(&mut cx.sink, key)?;
    let t = s.trim();
    if let Some(i) = choices.iter().position(|c| c.eq_ignore_ascii_case(t)) {
        return Some(i);
    }
    let list = choices
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let fix = match closest(t, choices.iter().copied()) {
        Some(best) => format!("did you mean \"{best}\"? `{key}` is one of: {list}"),
        None => format!("`{key}` is one of: {list}"),
    };
    cx.sink
        .push(line, format!("`{key}` in {} is {s:?}", sec.label), fix);
    None
}

fn database(cx: &mut Cx<'_>, root: &Section<'_>, state_dir: &Path) -> DatabaseUrl {
    let default = || DatabaseUrl::Sqlite(state_dir.join("kinlink.db"));
    if root.has("database_url") && root.has("database_url_env") {
        cx.sink.push(
            root.line_of("database_url_env"),
            "both `database_url` and `database_url_env` are set",
            "keep one: `database_url` for SQLite or a password-less URL, `database_url_env` for a URL with a password",
        );
        return default();
    }
    if let Some((url, line)) = non_empty_string(cx, root, "database_url") {
        return match parse_database_url(&url, state_dir, false) {
            Ok(db) => db,
            Err((message, fix)) => {
                cx.sink.push(line, message, fix);
                default()
            }
        };
    }
    if let Some((name, line)) = non_empty_string(cx, root, "database_url_env") {
        if !is_env_name(&name) {
            cx.sink.push(
                line,
                format!("`database_url_env` is {name:?}, not an environment variable name"),
                "name the variable, e.g. database_url_env = \"KINLINK_DATABASE_URL\"",
            );
            return default();
        }
        // Read now: the store needs a typed URL, and the daemon cannot start
        // without it anyway.
        return match (cx.env)(&name) {
            Some(url) => match parse_database_url(&url, state_dir, true) {
                Ok(db) => db,
                Err((message, fix)) => {
                    cx.sink
                        .push(line, format!("environment variable {name}: {message}"), fix);
                    default()
                }
            },
            None => {
                cx.sink.push(
                    line,
                    format!("environment variable {name} (named by `database_url_env`) is not set"),
                    format!("set {name} to the database URL in the service's environment (systemd Environment= or EnvironmentFile=)"),
                );
                default()
            }
        };
    }
    default()
}

/// Parses a database URL. The message never contains a password.
fn parse_database_url(
    url: &str,
    state_dir: &Path,
    password_allowed: bool,
) -> Result<DatabaseUrl, (String, String)> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest.is_empty() {
            return Err((
                "the SQLite URL names no file".into(),
                "write database_url = \"sqlite://kinlink.db\" (a file inside state_dir) or \"sqlite:///absolute/path.db\"".into(),
            ));
        }
        if rest.contains('?') {
            return Err((
                format!("SQLite URL {url:?} has query options"),
                "remove `?...`: kinlink opens SQLite in WAL mode and creates the file when it is missing".into(),
            ));
        }
        if rest == ":memory:" {
            return Err((
                "an in-memory SQLite database forgets everything at exit".into(),
                "use a file: database_url = \"sqlite://kinlink.db\"".into(),
            ));
        }
        let p = Path::new(rest);
        return Ok(DatabaseUrl::Sqlite(if p.is_absolute() {
            p.to_path_buf()
        } else {
            state_dir.join(p)
        }));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if !cfg!(feature = "postgres") {
            return Err((
                "this build of kinlink has no PostgreSQL support".into(),
                "build with the `postgres` feature (on by default), or use database_url = \"sqlite://kinlink.db\"".into(),
            ));
        }
        if !password_allowed && url_has_password(url) {
            return Err((
                format!("`database_url` {} carries a password", redact_url(url)),
                "remove the line and put the whole URL in an environment variable: database_url_env = \"KINLINK_DATABASE_URL\"".into(),
            ));
        }
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    Err((
        format!(
            "database URL {} is neither SQLite nor PostgreSQL",
            redact_url(url)
        ),
        "write \"sqlite://kinlink.db\" (a file inside state_dir) or \"postgres://host/dbname\""
            .into(),
    ))
}

/// The `user:password@` part of a URL's authority, if any.
fn url_userinfo(url: &str) -> Option<&str> {
    let after = &url[url.find("://")? + 3..];
    let authority = after.split(['/', '?', '#']).next().unwrap_or(after);
    authority.rfind('@').map(|at| &authority[..at])
}

fn url_has_password(url: &str) -> bool {
    url_userinfo(url).is_some_and(|u| u.contains(':'))
        || url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("password=")))
}

/// A plausible environment variable name.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A `<stem>_env` or `<stem>_file` secret; `None` when neither is given.
fn secret(cx: &mut Cx<'_>, sec: &Section<'_>, stem: &str) -> Option<SecretRef> {
    let env_key = format!("{stem}_env");
    let file_key = format!("{stem}_file");
    if sec.has(&env_key) && sec.has(&file_key) {
        cx.sink.push(
            sec.line_of(&file_key),
            format!("both `{env_key}` and `{file_key}` are set in {}", sec.label),
            "keep one of them",
        );
        return None;
    }
    if let Some((name, line)) = non_empty_string(cx, sec, &env_key) {
        if !is_env_name(&name) {
            cx.sink.push(
                line,
                format!(
                    "`{env_key}` in {} is {name:?}, not an environment variable name",
                    sec.label
                ),
                format!(
                    "name the variable that holds the secret (letters, digits, `_`), e.g. {env_key} = \"KINLINK_{}\"",
                    stem.to_ascii_uppercase()
                ),
            );
            return None;
        }
        return Some(SecretRef::Env(name));
    }
    let (file, _) = non_empty_string(cx, sec, &file_key)?;
    let p = Path::new(&file);
    let path = if p.is_absolute() {
        p.to_path_buf()
    } else {
        match &cx.credentials {
            Some(dir) => dir.join(p),
            None => cx.base.join(p),
        }
    };
    Some(SecretRef::File(path))
}

/// Simple email check: one `@`, no spaces, a dot inside the domain.
pub fn is_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// A list of email addresses; bad ones are reported and left out.
fn emails(cx: &mut Cx<'_>, sec: &Section<'_>, key: &str) -> Vec<String> {
    let Some(list) = sec.strings(&mut cx.sink, key) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for (address, line) in list {
        let t = address.trim();
        if is_email(t) {
            out.push(t.to_string());
        } else {
            cx.sink.push(
                line,
                format!(
                    "{address:?} in `{key}` of {} is not an email address",
                    sec.label
                ),
                "write one plain address per string, e.g. \"eh.north@example.gov.uk\"",
            );
        }
    }
    out
}

/// Whether a host name is this machine (where plain-text SMTP is acceptable).
fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Used when `[mail] from` is absent: the file transport needs a sender too.
const DEFAULT_FROM: &str = "kinlink <kinlink@localhost.localdomain>";

fn mail(cx: &mut Cx<'_>, root: &Section<'_>, state_dir: &Path) -> MailSettings {
    let default_outbox = state_dir.join("outbox");
    let mut settings = MailSettings {
        transport: MailTransport::File {
            dir: default_outbox.clone(),
        },
        from: DEFAULT_FROM.to_string(),
        detail: DetailLevel::Minimal,
        admin: Vec::new(),
        retry_every_mins: super::DEFAULT_RETRY_EVERY_MINS,
    };
    let Some(sec) = root.table(
        &mut cx.sink,
        "mail",
        "[mail]",
        "{ transport = \"file\" } (or a [mail] table)",
    ) else {
        return settings;
    };
    sec.check_keys(&mut cx.sink, MAIL_KEYS);

    if let Some((from, line)) = non_empty_string(cx, &sec, "from") {
        let address = match (from.find('<'), from.ends_with('>')) {
            (Some(open), true) => &from[open + 1..from.len() - 1],
            (None, _) => from.as_str(),
            _ => "",
        };
        if is_email(address.trim()) {
            settings.from = from;
        } else {
            cx.sink.push(
                line,
                format!("`from` in [mail] is {from:?}, not an address"),
                "write it as \"Early Help Alerts <eh-alerts@example.gov.uk>\" or a plain address",
            );
        }
    }
    if let Some(i) = choice(cx, &sec, "detail", &["minimal", "standard", "full"]) {
        settings.detail = [
            DetailLevel::Minimal,
            DetailLevel::Standard,
            DetailLevel::Full,
        ][i];
    }
    settings.admin = emails(cx, &sec, "admin");
    // Within minutes, not the next night; at most hourly, so a retry never waits
    // long for the daemon.
    if let Some((n, _)) = sec.integer_in(&mut cx.sink, "retry_every_mins", 1, 60) {
        settings.retry_every_mins = u32::try_from(n).unwrap_or(super::DEFAULT_RETRY_EVERY_MINS);
    }

    let transport = if sec.has("transport") {
        choice(cx, &sec, "transport", &["file", "smtp"])
    } else {
        Some(0)
    };
    let smtp_keys: Vec<&str> = MAIL_KEYS
        .iter()
        .copied()
        .filter(|k| k.starts_with("smtp_"))
        .collect();
    match transport {
        Some(0) => {
            for key in &smtp_keys {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    "is only used with transport = \"smtp\"",
                    "remove it, or set transport = \"smtp\"",
                );
            }
            // The outbox is state: it lives inside state_dir when relative.
            let dir = match non_empty_string(cx, &sec, "file_dir") {
                Some((d, _)) if Path::new(&d).is_absolute() => PathBuf::from(d),
                Some((d, _)) => state_dir.join(d),
                None => default_outbox,
            };
            settings.transport = MailTransport::File { dir };
        }
        Some(_) => {
            sec.forbid(
                &mut cx.sink,
                "file_dir",
                "is only used with transport = \"file\"",
                "remove it, or set transport = \"file\"",
            );
            if let Some(smtp) = smtp(cx, &sec) {
                settings.transport = MailTransport::Smtp(smtp);
            }
        }
        None => {}
    }
    settings
}

fn smtp(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<SmtpSettings> {
    let host = if sec.require(
        &mut cx.sink,
        "smtp_host",
        "the mail relay, e.g. \"smtp.example.gov.uk\"",
    ) {
        non_empty_string(cx, sec, "smtp_host").map(|(h, _)| h)
    } else {
        None
    };
    let tls = if sec.has("smtp_tls") {
        choice(cx, sec, "smtp_tls", &["starttls", "tls", "none"])
            .map(|i| [SmtpTls::Starttls, SmtpTls::Tls, SmtpTls::None][i])
    } else {
        Some(SmtpTls::Starttls)
    };
    let port = match sec.integer_in(&mut cx.sink, "smtp_port", 1, 65535) {
        Some((p, _)) => u16::try_from(p).ok(),
        None if sec.has("smtp_port") => None,
        // The usual port of each security mode.
        None => Some(match tls {
            Some(SmtpTls::Tls) => 465,
            Some(SmtpTls::None) => 25,
            _ => 587,
        }),
    };
    if let (Some(host), Some(SmtpTls::None)) = (&host, tls) {
        if !is_loopback(host) {
            cx.sink.push(
                sec.line_of("smtp_tls"),
                format!("smtp_tls = \"none\" would send personal data unencrypted to {host}"),
                "use smtp_tls = \"starttls\" or \"tls\"; \"none\" is only for a relay on this machine (localhost, 127.0.0.1, ::1)",
            );
        }
    }
    let user = secret(cx, sec, "smtp_user");
    let password = secret(cx, sec, "smtp_password");
    let user_given = sec.has("smtp_user_env") || sec.has("smtp_user_file");
    let password_given = sec.has("smtp_password_env") || sec.has("smtp_password_file");
    if user_given != password_given {
        cx.sink.push(
            sec.line,
            "[mail] has an SMTP user without a password, or a password without a user",
            "give both smtp_user_env/smtp_user_file and smtp_password_env/smtp_password_file, or neither",
        );
    }
    let ca_file = smtp_ca_file(cx, sec, tls);
    Some(SmtpSettings {
        host: host?,
        port: port?,
        tls: tls?,
        user,
        password,
        ca_file,
    })
}

/// `smtp_ca_file`: a PEM file of certificates to trust besides the public roots
/// (a council's own CA, or a test server's self-signed certificate). Checked now so
/// that a wrong path fails at startup rather than at the first night's send.
fn smtp_ca_file(cx: &mut Cx<'_>, sec: &Section<'_>, tls: Option<SmtpTls>) -> Option<PathBuf> {
    let (text, line) = non_empty_string(cx, sec, "smtp_ca_file")?;
    if tls == Some(SmtpTls::None) {
        cx.sink.push(
            line,
            "`smtp_ca_file` in [mail] is set but smtp_tls = \"none\" uses no certificates",
            "remove smtp_ca_file, or set smtp_tls = \"starttls\" or \"tls\"",
        );
        return None;
    }
    let path = cx.path(&text);
    match std::fs::read(&path) {
        Ok(bytes)
            if bytes
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----") =>
        {
            Some(path)
        }
        Ok(_) => {
            cx.sink.push(
                line,
                format!(
                    "`smtp_ca_file` in [mail] names {}, which holds no PEM certificate",
                    path.display()
                ),
                "point it at a PEM file with one or more -----BEGIN CERTIFICATE----- blocks",
            );
            None
        }
        Err(e) => {
            cx.sink.push(
                line,
                format!(
                    "`smtp_ca_file` in [mail] names {}, which cannot be read: {e}",
                    path.display()
                ),
                "give the path of a readable PEM file (relative paths are beside the config file), or remove the key to trust only the public roots",
            );
            None
        }
    }
}

fn http(cx: &mut Cx<'_>, root: &Section<'_>) -> Option<HttpListen> {
    let sec = root.table(
        &mut cx.sink,
        "http",
        "[http]",
        "{ listen = \"127.0.0.1:9187\" }",
    )?;
    sec.check_keys(&mut cx.sink, &["listen"]);
    if !sec.require(
        &mut cx.sink,
        "listen",
        "an address and port, e.g. \"127.0.0.1:9187\"; remove [http] to turn it off",
    ) {
        return None;
    }
    let (listen, line) = sec.string(&mut cx.sink, "listen")?;
    match listen.trim().parse::<SocketAddr>() {
        Ok(listen) => Some(HttpListen { listen }),
        Err(_) => {
            cx.sink.push(
                line,
                format!("`listen` in [http] is {listen:?}, not an address and port"),
                "write an IP address and port, e.g. \"127.0.0.1:9187\" or \"[::1]:9187\"",
            );
            None
        }
    }
}

fn sources(cx: &mut Cx<'_>, root: &Section<'_>) -> Vec<SourceSettings> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (table, line)) in root
        .array_of_tables(&mut cx.sink, "source")
        .into_iter()
        .enumerate()
    {
        let mut sec = Section::new(format!("[[source]] #{}", i + 1), table, line, &cx.sink);
        let name = if sec.require(
            &mut cx.sink,
            "name",
            "a short name, e.g. \"police-encompass\"",
        ) {
            sec.string(&mut cx.sink, "name")
        } else {
            None
        };
        let name = name.and_then(|(name, name_line)| {
            if !jobs::is_name(&name) {
                cx.sink.push(
                    name_line,
                    format!("source name {name:?} is not a usable name"),
                    "use letters, digits, `-` and `_` only, e.g. \"police-encompass\"",
                );
                return None;
            }
            if let Some(first) = names.get(&name) {
                cx.sink.push(
                    name_line,
                    format!("source name {name:?} is already used on line {first}"),
                    "give every [[source]] its own name",
                );
                return None;
            }
            names.insert(name.clone(), name_line);
            Some(name)
        });
        if let Some(name) = &name {
            sec.label = format!("[[source]] {name:?}");
        }
        if let Some(source) = source(cx, &sec, name) {
            out.push(source);
        }
    }
    out
}

fn source(cx: &mut Cx<'_>, sec: &Section<'_>, name: Option<String>) -> Option<SourceSettings> {
    sec.check_keys(&mut cx.sink, SOURCE_KEYS);
    let kind = if sec.require(
        &mut cx.sink,
        "kind",
        "attendance, police_da, housing or assessment",
    ) {
        let kinds: Vec<&str> = FeedKind::ALL.iter().map(|k| k.as_str()).collect();
        choice(cx, sec, "kind", &kinds).map(|i| FeedKind::ALL[i])
    } else {
        None
    };
    let format = if sec.require(&mut cx.sink, "format", "csv, xlsx, xls, ods or json") {
        let formats: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
        choice(cx, sec, "format", &formats).map(|i| Format::ALL[i])
    } else {
        None
    };
    let transport = if sec.require(
        &mut cx.sink,
        "transport",
        "where files come from, e.g. { type = \"dir\", path = \"inbox/police\" }",
    ) {
        let label = format!("the transport of {}", sec.label);
        sec.table(
            &mut cx.sink,
            "transport",
            label,
            "{ type = \"dir\", path = \"inbox/police\" }",
        )
        .and_then(|t| transport(cx, &t))
    } else {
        None
    };
    let max_bad_rows = sec
        .fraction(&mut cx.sink, "max_bad_rows")
        .map_or(0.05, |(f, _)| f);

    let mut source = SourceSettings {
        name: name.unwrap_or_default(),
        kind: kind.unwrap_or(FeedKind::Attendance),
        format: format.unwrap_or(Format::Csv),
        transport: transport
            .clone()
            .unwrap_or_else(|| Transport::Dir(DirTransport::new(PathBuf::new()))),
        max_bad_rows,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        columns: BTreeMap::new(),
        limits: SourceLimits::default(),
    };

    // Format-specific keys: each only where it means something.
    if let Some(format) = format {
        let is_sheet = matches!(format, Format::Xlsx | Format::Xls | Format::Ods);
        if is_sheet {
            source.sheet = non_empty_string(cx, sec, "sheet").map(|(s, _)| s);
        } else {
            sec.forbid(
                &mut cx.sink,
                "sheet",
                &format!("is only for xlsx, xls and ods, not {format}"),
                "remove it",
            );
        }
        if format == Format::Csv {
            if let Some((d, line)) = sec.string(&mut cx.sink, "delimiter") {
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii() && !matches!(c, '"' | '\n' | '\r') => {
                        source.delimiter = c as u8;
                    }
                    _ => cx.sink.push(
                        line,
                        format!(
                            "`delimiter` in {} is {d:?}, not a single character",
                            sec.label
                        ),
                        "use one ASCII character such as \";\", \"|\" or \"\\t\"",
                    ),
                }
            }
            if let Some(i) = choice(cx, sec, "encoding", &["utf-8", "windows-1252"]) {
                source.encoding = [TextEncoding::Utf8, TextEncoding::Windows1252][i];
            }
            csv_limits(cx, sec, &mut source.limits);
        } else {
            for key in [
                "delimiter",
                "encoding",
                "max_line_bytes",
                "max_field_bytes",
                "multiline_fields",
            ] {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    &format!("is only for csv, not {format}"),
                    "remove it",
                );
            }
        }
        if format == Format::Json {
            source.records_path = json_path(cx, sec, "records_path");
            source.next_path = json_path(cx, sec, "next_path");
        } else {
            for key in ["records_path", "next_path"] {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    &format!("is only for json, not {format}"),
                    "remove it",
                );
            }
        }
    }
    source.stale_after_hours = sec
        .integer_in(&mut cx.sink, "stale_after_hours", 1, i64::from(u32::MAX))
        .and_then(|(h, _)| u32::try_from(h).ok());

    let columns_label = format!("the columns of {}", sec.label);
    if let Some(columns) = sec.table(
        &mut cx.sink,
        "columns",
        columns_label,
        "a [source.columns] table: canonical = \"their header\"",
    ) {
        for entry in columns.entries() {
            if kind.is_some_and(|kind| !is_column_of(cx, entry, kind)) {
                continue;
            }
            match entry.item.as_str() {
                Some(header) if !header.trim().is_empty() => {
                    source
                        .columns
                        .insert(entry.key.clone(), header.trim().to_string());
                }
                _ => cx.sink.push(
                    entry.line,
                    format!(
                        "column `{}` in {} must name a header",
                        entry.key, columns.label
                    ),
                    format!("write {} = \"Their Header\"", entry.key),
                ),
            }
        }
    }

    if let Some(kind) = kind {
        source.limits.max_lengths = max_lengths(cx, sec, kind);
    }

    (kind.is_some() && format.is_some() && transport.is_some() && !source.name.is_empty())
        .then_some(source)
}

/// Whether a table key names a canonical column of `kind`; if not, a problem that
/// suggests the closest column.
fn is_column_of(cx: &mut Cx<'_>, entry: &Entry<'_>, kind: FeedKind) -> bool {
    let valid = ingest::canonical_columns(kind);
    if valid.contains(&entry.key.as_str()) {
        return true;
    }
    let list = valid.join(", ");
    let fix = match closest(&entry.key, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? the columns of {kind} are: {list}"),
        None => format!("the columns of {kind} are: {list}"),
    };
    cx.sink.push(
        entry.line,
        format!("`{}` is not a column of kind {kind}", entry.key),
        fix,
    );
    false
}

/// The largest `max_line_bytes` / `max_field_bytes` accepted: 64 MiB. The parser
/// holds a line in memory, so the limits are what bound a file's memory.
const MAX_CSV_LIMIT: i64 = 64 << 20;

/// `max_line_bytes`, `max_field_bytes` and `multiline_fields` of a csv source.
fn csv_limits(cx: &mut Cx<'_>, sec: &Section<'_>, limits: &mut SourceLimits) {
    let line = sec.integer_in(&mut cx.sink, "max_line_bytes", 64, MAX_CSV_LIMIT);
    let field = sec.integer_in(&mut cx.sink, "max_field_bytes", 16, MAX_CSV_LIMIT);
    if let Some((n, _)) = line {
        limits.max_line_bytes = n as usize;
    }
    if let Some((n, _)) = field {
        limits.max_field_bytes = n as usize;
    }
    if limits.max_field_bytes > limits.max_line_bytes {
        let at = field.or(line).map_or(sec.line, |(_, l)| l);
        cx.sink.push(
            at,
            format!(
                "`max_field_bytes` ({}) in {} is more than `max_line_bytes` ({}): a field is part of a line",
                limits.max_field_bytes, sec.label, limits.max_line_bytes
            ),
            "make max_field_bytes at most max_line_bytes",
        );
    }
    if let Some((on, _)) = sec.boolean(&mut cx.sink, "multiline_fields") {
        limits.multiline_fields = on;
    }
}

/// `[source.max_lengths]`: canonical column = the most characters its value may have.
fn max_lengths(cx: &mut Cx<'_>, sec: &Section<'_>, kind: FeedKind) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let label = format!("the max_lengths of {}", sec.label);
    let Some(table) = sec.table(
        &mut cx.sink,
        "max_lengths",
        label,
        "a [source.max_lengths] table: canonical column = characters, e.g. notification_id = 128",
    ) else {
        return out;
    };
    for entry in table.entries() {
        if !is_column_of(cx, entry, kind) {
            continue;
        }
        match entry.item.as_integer() {
            Some(n) if (1..=1_000_000).contains(&n) => {
                out.insert(entry.key.clone(), n as usize);
            }
            _ => cx.sink.push(
                entry.line,
                format!(
                    "`{}` in {} must be a number of characters from 1 to 1000000",
                    entry.key, table.label
                ),
                format!("write {} = 128", entry.key),
            ),
        }
    }
    out
}

/// A dotted path into a JSON document (`meta.pagination.next`).
fn json_path(cx: &mut Cx<'_>, sec: &Section<'_>, key: &str) -> Option<String> {
    let (path, line) = sec.string(&mut cx.sink, key)?;
    let path = path.trim();
    if path.is_empty()
        || path
            .split('.')
            .any(|part| part.is_empty() || part.chars().any(char::is_whitespace))
    {
        cx.sink.push(
            line,
            format!("`{key}` in {} is {path:?}, not a dotted path", sec.label),
            format!("name the JSON keys from the top, separated by dots, e.g. {key} = \"meta.pagination.next\""),
        );
        return None;
    }
    Some(path.to_string())
}

fn transport(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<Transport> {
    let mut known = vec!["type", "path"];
    known.extend_from_slice(HTTP_TRANSPORT_KEYS);
    known.extend_from_slice(DIR_TRANSPORT_KEYS);
    sec.check_keys(&mut cx.sink, &known);
    if !sec.require(&mut cx.sink, "type", "\"dir\" or \"http\"") {
        return None;
    }
    match choice(cx, sec, "type", &["dir", "http"])? {
        0 => {
            for key in HTTP_TRANSPORT_KEYS {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    "is only used with type = \"http\"",
                    "remove it, or make this an http transport",
                );
            }
            if !sec.require(
                &mut cx.sink,
                "path",
                "the folder files are dropped into, e.g. \"inbox/police\"",
            ) {
                return None;
            }
            let settle_secs = sec
                .integer_in(&mut cx.sink, "settle_secs", 0, 86_400)
                .map(|(n, _)| n);
            let max_file_bytes = sec
                .integer_in(&mut cx.sink, "max_file_bytes", 1, i64::MAX)
                .map(|(n, _)| n);
            let (path, _) = non_empty_string(cx, sec, "path")?;
            let mut dir = DirTransport::new(cx.path(&path));
            if let Some(n) = settle_secs {
                dir.settle_secs = u64::try_from(n).ok()?;
            }
            if let Some(n) = max_file_bytes {
                dir.max_file_bytes = u64::try_from(n).ok()?;
            }
            Some(Transport::Dir(dir))
        }
        _ => {
            sec.forbid(
                &mut cx.sink,
                "path",
                "is only used with type = \"dir\"",
                "remove it; an http transport has a `url`",
            );
            for key in DIR_TRANSPORT_KEYS {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    "is only used with type = \"dir\"",
                    "remove it, or make this a dir transport",
                );
            }
            http_transport(cx, sec).map(Transport::Http)
        }
    }
}

fn http_transport(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<HttpTransport> {
    let url = if sec.require(&mut cx.sink, "url", "the feed's https:// address") {
        non_empty_string(cx, sec, "url").and_then(|(url, line)| check_feed_url(cx, &url, line))
    } else {
        None
    };
    let bearer = secret(cx, sec, "bearer");
    let user = secret(cx, sec, "basic_user");
    let password = secret(cx, sec, "basic_password");
    let has = |stem: &str| sec.has(&format!("{stem}_env")) || sec.has(&format!("{stem}_file"));
    let mut auth_ok = true;
    if has("bearer") && (has("basic_user") || has("basic_password")) {
        cx.sink.push(
            sec.line,
            format!("{} has both bearer and basic authentication", sec.label),
            "keep one: bearer_env/bearer_file, or basic_user_* with basic_password_*",
        );
        auth_ok = false;
    }
    if has("basic_user") != has("basic_password") {
        cx.sink.push(
            sec.line,
            format!("{} has half of basic authentication", sec.label),
            "give both basic_user_env/basic_user_file and basic_password_env/basic_password_file",
        );
        auth_ok = false;
    }
    let auth = match (bearer, user, password) {
        (Some(token), None, None) => Some(HttpAuth::Bearer(token)),
        (None, Some(user), Some(password)) => Some(HttpAuth::Basic { user, password }),
        (None, None, None) => Some(HttpAuth::None),
        // Any other mix was reported above, or a secret key was malformed.
        _ => None,
    };
    let int = |cx: &mut Cx<'_>, key: &str, min: i64, max: i64, default: i64| {
        sec.integer_in(&mut cx.sink, key, min, max)
            .map_or(default, |(n, _)| n)
    };
    let connect_timeout_secs = int(cx, "connect_timeout_secs", 1, 3600, 10);
    let timeout_secs = int(cx, "timeout_secs", 1, 86_400, 300);
    let retries = int(cx, "retries", 0, 100, 3);
    let backoff_ms = int(cx, "backoff_ms", 0, 3_600_000, 1000);
    let max_body_bytes = int(cx, "max_body_bytes", 1, i64::MAX, 536_870_912);
    let other_origin_pages = if sec.has("other_origin_pages") {
        match choice(
            cx,
            sec,
            "other_origin_pages",
            &["refuse", "without_credentials"],
        ) {
            Some(0) => Some(OtherOriginPages::Refuse),
            Some(_) => Some(OtherOriginPages::WithoutCredentials),
            None => None,
        }
    } else {
        Some(OtherOriginPages::Refuse)
    };
    if !auth_ok {
        return None;
    }
    Some(HttpTransport {
        url: url?,
        auth: auth?,
        connect_timeout_secs: u64::try_from(connect_timeout_secs).ok()?,
        timeout_secs: u64::try_from(timeout_secs).ok()?,
        retries: u32::try_from(retries).ok()?,
        backoff_ms: u64::try_from(backoff_ms).ok()?,
        max_body_bytes: u64::try_from(max_body_bytes).ok()?,
        other_origin_pages: other_origin_pages?,
    })
}

/// A feed URL: https (plain http only to this machine), no credentials inside it.
fn check_feed_url(cx: &mut Cx<'_>, url: &str, line: usize) -> Option<String> {
    let shown = redact_url(url);
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        cx.sink.push(
            line,
            format!("`url` {shown:?} is not an http(s) address"),
            "write the full address, e.g. \"https://feeds.example.gov.uk/attendance\"",
        );
        return None;
    };
    if url_userinfo(url).is_some() {
        cx.sink.push(
            line,
            format!("`url` {shown:?} carries credentials, which would keep a secret in the config file"),
            "remove `user:password@` from the URL; use basic_user_env/basic_user_file with basic_password_env/basic_password_file (or bearer_env/bearer_file)",
        );
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    if host.is_empty() {
        cx.sink.push(
            line,
            format!("`url` {shown:?} has no host"),
            "write the full address, e.g. \"https://feeds.example.gov.uk/attendance\"",
        );
        return None;
    }
    if url.starts_with("http://") && !is_loopback(host) {
        cx.sink.push(
            line,
            format!("`url` {shown:?} is plain http: personal data would travel unencrypted"),
            "use https:// (plain http is only accepted to this machine, e.g. a test server)",
        );
        return None;
    }
    Some(url.to_string())
}

/// A postcode district (`M7`, `SW1A`) or sector (`M6 5`), upper case with one space.
fn postcode_prefix(text: &str) -> Option<String> {
    let norm = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    let (district, sector) = match norm.split_once(' ') {
        Some((d, s)) => (d, Some(s)),
        None => (norm.as_str(), None),
    };
    let b = district.as_bytes();
    let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let rest = &b[letters..];
    let district_ok = (1..=2).contains(&letters)
        && match rest {
            [d] => d.is_ascii_digit(),
            [d, e] => d.is_ascii_digit() && e.is_ascii_alphanumeric(),
            _ => false,
        };
    let sector_ok = match sector {
        None => true,
        Some(s) => s.len() == 1 && s.as_bytes()[0].is_ascii_digit(),
    };
    (district_ok && sector_ok).then_some(norm)
}

fn localities(cx: &mut Cx<'_>, root: &Section<'_>) -> Vec<Locality> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    // prefix → (locality name, line)
    let mut prefixes: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (i, (table, line)) in root
        .array_of_tables(&mut cx.sink, "locality")
        .into_iter()
        .enumerate()
    {
        let mut sec = Section::new(format!("[[locality]] #{}", i + 1), table, line, &cx.sink);
        sec.check_keys(&mut cx.sink, LOCALITY_KEYS);
        let name = if sec.require(&mut cx.sink, "name", "the locality's name, e.g. \"North\"") {
            non_empty_string(cx, &sec, "name")
        } else {
            None
        };
        let name = name.and_then(|(name, name_line)| match names.get(&name) {
            Some(first) => {
                cx.sink.push(
                    name_line,
                    format!("locality name {name:?} is already used on line {first}"),
                    "give every [[locality]] its own name",
                );
                None
            }
            None => {
                names.insert(name.clone(), name_line);
                Some(name)
            }
        });
        if let Some(name) = &name {
            sec.label = format!("[[locality]] {name:?}");
        }
        let shown_name = name.clone().unwrap_or_else(|| sec.label.clone());
        let mut postcodes = Vec::new();
        for (text, pc_line) in sec.strings(&mut cx.sink, "postcodes").unwrap_or_default() {
            let Some(prefix) = postcode_prefix(&text) else {
                cx.sink.push(
                    pc_line,
                    format!(
                        "{text:?} in `postcodes` of {} is not a postcode district or sector",
                        sec.label
                    ),
                    "write a district such as \"M7\" or a sector such as \"M6 5\"",
                );
                continue;
            };
            if let Some((other, other_line)) = prefixes.get(&prefix) {
                let message = if *other == shown_name {
                    format!(
                        "postcode prefix {prefix:?} is listed twice in {} (also line {other_line})",
                        sec.label
                    )
                } else {
                    format!(
                        "postcode prefix {prefix:?} is in both locality {other:?} (line {other_line}) and locality {shown_name:?}: routing would be ambiguous"
                    )
                };
                cx.sink.push(
                    pc_line,
                    message,
                    "keep each prefix in one locality; to split a district, list its sectors (\"M6 5\") in the other locality: the most specific match wins",
                );
                continue;
            }
            prefixes.insert(prefix.clone(), (shown_name.clone(), pc_line));
            postcodes.push(prefix);
        }
        let dv_champions = emails(cx, &sec, "dv_champions");
        let champions = emails(cx, &sec, "champions");
        let managers = emails(cx, &sec, "managers");
        if let Some(name) = name {
            out.push(Locality {
                name,
                postcodes,
                dv_champions,
                champions,
                managers,
            });
        }
    }
    out
}

fn schools(cx: &mut Cx<'_>, root: &Section<'_>, localities: &[Locality]) -> Vec<School> {
    let mut out = Vec::new();
    let mut urns: BTreeMap<Urn, usize> = BTreeMap::new();
    let locality_names: Vec<&str> = localities.iter().map(|l| l.name.as_str()).collect();
    for (i, (table, line)) in root
        .array_of_tables(&mut cx.sink, "school")
        .into_iter()
        .enumerate()
    {
        let mut sec = Section::new(format!("[[school]] #{}", i + 1), table, line, &cx.sink);
        sec.check_keys(&mut cx.sink, SCHOOL_KEYS);
        let urn = if sec.require(
            &mut cx.sink,
            "urn",
            "the school's six-digit URN, e.g. \"100001\"",
        ) {
            school_urn(cx, &sec)
        } else {
            None
        };
        let urn = urn.and_then(|(urn, urn_line)| match urns.get(&urn) {
            Some(first) => {
                cx.sink.push(
                    urn_line,
                    format!("school URN {urn} is already configured on line {first}"),
                    "list each school once",
                );
                None
            }
            None => {
                urns.insert(urn, urn_line);
                Some(urn)
            }
        });
        if let Some(urn) = urn {
            sec.label = format!("[[school]] {urn}");
        }
        let name = if sec.require(&mut cx.sink, "name", "the school's name") {
            non_empty_string(cx, &sec, "name").map(|(n, _)| n)
        } else {
            None
        };
        let locality = if sec.require(
            &mut cx.sink,
            "locality",
            "the name of the [[locality]] the school is in",
        ) {
            non_empty_string(cx, &sec, "locality").and_then(|(loc, loc_line)| {
                if locality_names.contains(&loc.as_str()) {
                    return Some(loc);
                }
                let list = if locality_names.is_empty() {
                    "none are configured: add a [[locality]]".to_string()
                } else {
                    locality_names.join(", ")
                };
                let fix = match closest(&loc, locality_names.iter().copied()) {
                    Some(best) => format!("did you mean {best:?}? the localities are: {list}"),
                    None => format!("use the name of a [[locality]]: {list}"),
                };
                cx.sink.push(
                    loc_line,
                    format!(
                        "{} names locality {loc:?}, which is not configured",
                        sec.label
                    ),
                    fix,
                );
                None
            })
        } else {
            None
        };
        let ewos = if sec.require(
            &mut cx.sink,
            "ewos",
            "the education welfare officers' addresses",
        ) {
            let given = sec.strings(&mut cx.sink, "ewos");
            let ewos = emails(cx, &sec, "ewos");
            if given.as_ref().is_some_and(Vec::is_empty) {
                cx.sink.push(
                    sec.line_of("ewos"),
                    format!("`ewos` of {} is empty: attendance alerts for its pupils would reach nobody", sec.label),
                    "list at least one education welfare officer, e.g. ewos = [\"ewo.north@example.gov.uk\"]",
                );
            }
            ewos
        } else {
            Vec::new()
        };
        if let (Some(urn), Some(name), Some(locality)) = (urn, name, locality) {
            out.push(School {
                urn,
                name,
                locality,
                ewos,
            });
        }
    }
    out
}

/// `urn` as a string (`"100001"`) or, forgivingly, an integer.
fn school_urn(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<(Urn, usize)> {
    let entry = sec.get("urn")?;
    let text = match entry.item.as_value() {
        Some(Value::String(s)) => s.value().clone(),
        Some(Value::Integer(i)) => i.value().to_string(),
        _ => {
            cx.sink.push(
                entry.line,
                format!("`urn` in {} must be a string", sec.label),
                "write it as urn = \"100001\"",
            );
            return None;
        }
    };
    match Urn::parse(&text) {
        Ok(urn) => Some((urn, entry.line)),
        Err(e) => {
            cx.sink.push(
                entry.line,
                format!("`urn` in {}: {e}", sec.label),
                "use the school's six-digit URN from Get Information About Schools",
            );
            None
        }
    }
}

fn rules(cx: &mut Cx<'_>, root: &Section<'_>) -> BTreeMap<String, toml_edit::Table> {
    let mut out = BTreeMap::new();
    let Some(sec) = root.table(
        &mut cx.sink,
        "rules",
        "[rules]",
        "a [rules.NAME] table per rule",
    ) else {
        return out;
    };
    let rule_names: Vec<&str> = RULES.iter().map(|(n, _)| *n).collect();
    for entry in sec.entries() {
        let Some(&(name, own_keys)) = RULES.iter().find(|(n, _)| *n == entry.key) else {
            let list = rule_names.join(", ");
            let fix = match closest(&entry.key, rule_names.iter().copied()) {
                Some(best) => format!("did you mean [rules.{best}]? the rules are: {list}"),
                None => format!("the rules are: {list}"),
            };
            cx.sink.push(
                entry.line,
                format!("unknown rule `{}` in [rules]", entry.key),
                fix,
            );
            continue;
        };
        let label = format!("[rules.{name}]");
        let Some(rule) = sec.table(&mut cx.sink, name, label, "a [rules.NAME] table") else {
            continue;
        };
        let keys: Vec<(&str, RuleValue)> =
            RULE_COMMON.iter().chain(own_keys.iter()).copied().collect();
        let key_names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        rule.check_keys(&mut cx.sink, &key_names);
        let mut numbers: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for (key, value) in keys {
            match value {
                RuleValue::Flag => {
                    rule.boolean(&mut cx.sink, key);
                }
                RuleValue::Days => {
                    if let Some((n, line)) = rule.integer_in(&mut cx.sink, key, 1, MAX_DAYS) {
                        // whole days, exact as f64
                        numbers.insert(key, (n as f64, line));
                    }
                }
                RuleValue::Fraction => {
                    if let Some(v) = rule.fraction(&mut cx.sink, key) {
                        numbers.insert(key, v);
                    }
                }
                RuleValue::Count(min, max) => {
                    rule.integer_in(&mut cx.sink, key, min, max);
                }
            }
        }
        // Pairs that only make sense one way round (checked when both are given).
        let ordered = [
            (
                "severe_below",
                "below",
                "severe absence must be a lower rate than the drop threshold",
            ),
            (
                "urgent_within_days",
                "within_days",
                "the urgent window must fit inside the re-referral window",
            ),
        ];
        for (small, large, why) in ordered {
            if let (Some(&(s, line)), Some(&(l, _))) = (numbers.get(small), numbers.get(large)) {
                if s > l {
                    cx.sink.push(
                        line,
                        format!("`{small}` ({s}) is above `{large}` ({l}) in [rules.{name}]"),
                        format!("{why}: make `{small}` at most `{large}`"),
                    );
                }
            }
        }
        let table = match entry.item {
            Item::Table(t) => t.clone(),
            Item::Value(Value::InlineTable(t)) => t.clone().into_table(),
            _ => continue,
        };
        out.insert(name.to_string(), table);
    }
    out
}

/// `[retention]`, checked against what the rules need: data a rule still reads
/// must not be purged (a notification kept less than the repeat window could not
/// make the next one a repeat).
fn retention(
    cx: &mut Cx<'_>,
    root: &Section<'_>,
    rules: &BTreeMap<String, toml_edit::Table>,
) -> RetentionSettings {
    let mut settings = RetentionSettings::default();
    let Some(sec) = root.table(
        &mut cx.sink,
        "retention",
        "[retention]",
        "{ raw_files_days = 30, attendance_days = 730 }",
    ) else {
        return settings;
    };
    sec.check_keys(&mut cx.sink, RETENTION_KEYS);
    let rc = super::rules_config_from(rules);
    let attendance_need = {
        // The windows are school days: allow for holidays (7 days a week, plus the
        // summer break).
        let a = &rc.attendance_drop;
        (a.window_school_days + a.baseline_school_days) * 7 / 5 + 60
    };
    let needs: [(&str, u32, String); 5] = [
        ("raw_files_days", 1, "a day".into()),
        (
            "attendance_days",
            attendance_need,
            "the attendance windows with holidays".into(),
        ),
        (
            "police_da_days",
            rc.da_notification.repeat_within_days + rc.da_notification.common.lookback_days,
            "[rules.da_notification] repeat_within_days + lookback_days".into(),
        ),
        (
            "housing_days",
            rc.eviction_risk
                .common
                .lookback_days
                .max(rc.emerging_risk.window_days),
            "[rules.eviction_risk] lookback_days and [rules.emerging_risk] window_days".into(),
        ),
        (
            "cases_days",
            rc.closed_too_early.within_days + rc.closed_too_early.common.lookback_days,
            "[rules.closed_too_early] within_days + lookback_days".into(),
        ),
    ];
    for (key, min, why) in needs {
        let Some((n, line)) = sec.integer_in(&mut cx.sink, key, 1, 36_600) else {
            continue;
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if n < min {
            cx.sink.push(
                line,
                format!("`{key}` in [retention] is {n} days, shorter than the rules read back ({min} days: {why})"),
                format!("keep at least {min} days, or shorten the rule's window"),
            );
            continue;
        }
        match key {
            "raw_files_days" => settings.raw_files_days = n,
            "attendance_days" => settings.attendance_days = n,
            "police_da_days" => settings.police_da_days = n,
            "housing_days" => settings.housing_days = n,
            _ => settings.cases_days = n,
        }
    }
    settings
}

fn linkage(cx: &mut Cx<'_>, root: &Section<'_>) -> LinkageSettings {
    let mut settings = LinkageSettings::default();
    let Some(sec) = root.table(
        &mut cx.sink,
        "linkage",
        "[linkage]",
        "{ auto_link = 0.95, review = 0.60 }",
    ) else {
        return settings;
    };
    sec.check_keys(&mut cx.sink, LINKAGE_KEYS);
    if let Some((v, _)) = sec.fraction(&mut cx.sink, "auto_link") {
        settings.auto_link = v;
    }
    if let Some((v, _)) = sec.fraction(&mut cx.sink, "review") {
        settings.review = v;
    }
    // Below 2 no person could ever hold two mentions; above a million a block is
    // the whole borough, which the cap exists to prevent.
    if let Some((v, _)) = sec.integer_in(&mut cx.sink, "max_cluster_size", 2, 1_000_000) {
        settings.max_cluster_size = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some((v, _)) = sec.integer_in(&mut cx.sink, "max_block_size", 2, 1_000_000) {
        settings.max_block_size = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some(rules) = sec.strings(&mut cx.sink, "blocking") {
        let parts = crate::domain::linkage::KEY_PARTS.join(", ");
        let mut blocking = Vec::new();
        for (rule, line) in rules {
            if crate::domain::linkage::blocking_rule_is_valid(&rule) {
                if !blocking.contains(&rule) {
                    blocking.push(rule);
                }
            } else {
                cx.sink.push(
                    line,
                    format!("[linkage] blocking rule `{rule}` is not key parts joined by `+`"),
                    format!("use each of {parts} at most once, e.g. \"dob+surname_code\""),
                );
            }
        }
        if blocking.is_empty() {
            cx.sink.push(
                sec.line_of("blocking"),
                "[linkage] blocking has no usable rule: nothing would ever be compared",
                "list at least one rule, e.g. blocking = [\"dob+surname_code\"], or remove the key for the defaults",
            );
        } else {
            settings.blocking = blocking;
        }
    }
    if let Some(m) = sec.table(
        &mut cx.sink,
        "m",
        "[linkage.m]",
        "{ forename = { exact = 0.9 } }",
    ) {
        let fields = crate::domain::linkage::FIELDS;
        for entry in m.entries() {
            let field = entry.key.as_str();
            let Some((_, levels)) = fields.iter().find(|(name, _)| *name == field) else {
                cx.sink.push(
                    entry.line,
                    format!("[linkage.m] has no field `{field}`"),
                    format!(
                        "use one of {}",
                        fields
                            .iter()
                            .map(|(f, _)| *f)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let Some(table) = m.table(
                &mut cx.sink,
                field,
                format!("[linkage.m.{field}]"),
                "{ exact = 0.9 }",
            ) else {
                continue;
            };
            let known = &levels[..levels.len() - 1];
            for level in table.entries() {
                if !known.contains(&level.key.as_str()) {
                    cx.sink.push(
                        level.line,
                        format!("[linkage.m.{field}] has no level `{}`", level.key),
                        format!("use one of {}", known.join(", ")),
                    );
                    continue;
                }
                if let Some((v, _)) = table.fraction(&mut cx.sink, &level.key) {
                    settings.m.push((field.to_owned(), level.key.clone(), v));
                }
            }
        }
    }
    if settings.review >= settings.auto_link {
        let line = if sec.has("review") {
            sec.line_of("review")
        } else {
            sec.line_of("auto_link")
        };
        cx.sink.push(
            line,
            format!(
                "[linkage] review ({}) is not below auto_link ({}): the review band would be empty",
                settings.review, settings.auto_link
            ),
            "make review lower than auto_link, e.g. auto_link = 0.95 and review = 0.60",
        );
    }
    settings
}

/// Tries to read every secret the settings name. A failure is a problem; the
/// value itself is never printed.
pub fn check_secrets(settings: &Settings) -> Vec<Problem> {
    let mut named: Vec<(String, &SecretRef)> = Vec::new();
    if let MailTransport::Smtp(smtp) = &settings.mail.transport {
        if let Some(user) = &smtp.user {
            named.push(("the SMTP user of [mail]".into(), user));
        }
        if let Some(password) = &smtp.password {
            named.push(("the SMTP password of [mail]".into(), password));
        }
    }
    for source in &settings.sources {
        if let Transport::Http(http) = &source.transport {
            match &http.auth {
                HttpAuth::None => {}
                HttpAuth::Bearer(token) => {
                    named.push((
                        format!("the bearer token of source {:?}", source.name),
                        token,
                    ));
                }
                HttpAuth::Basic { user, password } => {
                    named.push((
                        format!("the basic-auth user of source {:?}", source.name),
                        user,
                    ));
                    named.push((
                        format!("the basic-auth password of source {:?}", source.name),
                        password,
                    ));
                }
            }
        }
    }
    named
        .into_iter()
        .filter_map(|(what, secret)| {
            let (message, fix) = match secret.resolve() {
                Ok(value) if value.expose().trim().is_empty() => (
                    format!("{what} is empty"),
                    "put the secret in it".to_string(),
                ),
                Ok(_) => return None,
                Err(e @ SecretError::EnvMissing(_)) => (
                    format!("cannot read {what}: {e}"),
                    "set it in the service's environment (systemd Environment= or EnvironmentFile=), or use the `_file` form with LoadCredential=".to_string(),
                ),
                Err(e @ SecretError::File { .. }) => (
                    format!("cannot read {what}: {e}"),
                    "create the file readable by the kinlink user, or let systemd LoadCredential= put it in $CREDENTIALS_DIRECTORY".to_string(),
                ),
            };
            Some(Problem {
                file: settings.config_path.clone(),
                line: 0,
                message,
                fix,
            })
        })
        .collect()
}

/// The `check-config` summary: what would run, as aligned plain text.
pub fn summary(settings: &Settings) -> String {
    let mut out = String::new();
    let database = match &settings.database {
        DatabaseUrl::Sqlite(path) => format!("SQLite {}", path.display()),
        DatabaseUrl::Postgres(url) => format!("PostgreSQL {}", redact_url(url)),
    };
    let detail = match settings.mail.detail {
        DetailLevel::Minimal => "minimal",
        DetailLevel::Standard => "standard",
        DetailLevel::Full => "full",
    };
    let transport = match &settings.mail.transport {
        MailTransport::File { dir } => format!(".eml files in {}", dir.display()),
        MailTransport::Smtp(smtp) => {
            let tls = match smtp.tls {
                SmtpTls::Starttls => "starttls",
                SmtpTls::Tls => "tls",
                SmtpTls::None => "no tls",
            };
            let auth = if smtp.user.is_some() {
                ", with login"
            } else {
                ""
            };
            format!("SMTP {}:{} ({tls}{auth})", smtp.host, smtp.port)
        }
    };
    let rules: Vec<String> = RULES
        .iter()
        .map(|(name, _)| {
            let table = settings.rules.get(*name);
            let enabled = table
                .and_then(|t| t.get("enabled"))
                .and_then(Item::as_bool)
                .unwrap_or(true);
            if enabled {
                name.to_string()
            } else {
                format!("{name} (off)")
            }
        })
        .collect();
    let mut head = vec![
        ("config", settings.config_path.display().to_string()),
        ("database", database),
        ("state dir", settings.state_dir.display().to_string()),
        ("jobs dir", settings.jobs_dir.display().to_string()),
        ("timezone", settings.timezone.name().to_string()),
        ("mail", transport),
        ("mail from", settings.mail.from.clone()),
        ("mail detail", detail.to_string()),
        (
            "admin",
            format!("{} address(es)", settings.mail.admin.len()),
        ),
        (
            "http",
            settings.http.as_ref().map_or("off".to_string(), |h| {
                format!("/healthz and /metrics on {}", h.listen)
            }),
        ),
        (
            "linkage",
            format!(
                "auto_link {:.2} / review {:.2}",
                settings.linkage.auto_link, settings.linkage.review
            ),
        ),
        ("rules", rules.join(", ")),
    ];
    if !settings.env_overrides.is_empty() {
        // Names only: a value may be an address or a host nobody should read here.
        head.push(("env overrides", settings.env_overrides.join(", ")));
    }
    let width = head.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &head {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }

    let source_rows = settings
        .sources
        .iter()
        .map(|s| {
            let transport = match &s.transport {
                Transport::Dir(d) => format!("dir {}", d.path.display()),
                Transport::Http(h) => {
                    let auth = match h.auth {
                        HttpAuth::None => "",
                        HttpAuth::Bearer(_) => " (bearer)",
                        HttpAuth::Basic { .. } => " (basic)",
                    };
                    format!("http {}{auth}", redact_url(&h.url))
                }
            };
            vec![
                s.name.clone(),
                s.kind.to_string(),
                s.format.to_string(),
                transport,
            ]
        })
        .collect();
    section(
        &mut out,
        "sources",
        &["name", "kind", "format", "transport"],
        source_rows,
    );
    let locality_rows = settings
        .localities
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.postcodes.len().to_string(),
                l.dv_champions.len().to_string(),
                l.champions.len().to_string(),
                l.managers.len().to_string(),
            ]
        })
        .collect();
    section(
        &mut out,
        "localities",
        &["name", "prefixes", "dv_champions", "champions", "managers"],
        locality_rows,
    );
    let school_rows = settings
        .schools
        .iter()
        .map(|s| {
            vec![
                s.urn.to_string(),
                s.name.clone(),
                s.locality.clone(),
                s.ewos.len().to_string(),
            ]
        })
        .collect();
    section(
        &mut out,
        "schools",
        &["urn", "name", "locality", "ewos"],
        school_rows,
    );
    let job_rows = settings
        .jobs
        .iter()
        .map(|j| {
            vec![
                j.name.clone(),
                j.schedule.clone(),
                j.steps
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if j.catch_up { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    section(
        &mut out,
        "jobs",
        &["name", "schedule", "steps", "catch_up"],
        job_rows,
    );
    out
}

/// Appends a titled table with aligned columns.
fn section(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    out.push_str(&format!("\n{title} ({})\n", rows.len()));
    if rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::from(" ");
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            line.push(' ');
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w.saturating_sub(cell.chars().count()) + 1));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config folder with an empty `jobs` folder beside it.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("jobs")).unwrap();
            Fixture { dir }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("kinlink.toml")
        }

        fn job(&self, file: &str, text: &str) {
            std::fs::write(self.dir.path().join("jobs").join(file), text).unwrap();
        }

        /// Loads with an empty environment.
        fn load(&self, text: &str) -> Result<Settings, Problems> {
            load_with_env(text, &self.path(), &|_| None)
        }

        fn load_env(&self, text: &str, vars: &[(&str, &str)]) -> Result<Settings, Problems> {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            load_with_env(text, &self.path(), &move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        }

        /// Loads with `KINLINK__*` overrides (and nothing else) in the environment.
        fn load_overridden(&self, text: &str, vars: &[(&str, &str)]) -> Result<Settings, Problems> {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            load_layered(text, &self.path(), &|_| None, &vars)
        }

        fn problems(&self, text: &str) -> Vec<Problem> {
            match self.load(text) {
                Ok(_) => panic!("expected problems"),
                Err(p) => p.0,
            }
        }
    }

    const MINIMAL: &str = r#"
[[source]]
name = "police"
kind = "police_da"
format = "csv"
transport = { type = "dir", path = "inbox/police" }
"#;

    /// The one problem whose message contains `needle`.
    fn find<'a>(problems: &'a [Problem], needle: &str) -> &'a Problem {
        let found: Vec<&Problem> = problems
            .iter()
            .filter(|p| p.message.contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "{needle:?} in {problems:#?}");
        found[0]
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let fx = Fixture::new();
        let s = fx.load(MINIMAL).unwrap();
        let base = fx.dir.path();
        assert_eq!(s.state_dir, base.join("state"));
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite(base.join("state").join("kinlink.db"))
        );
        assert_eq!(s.jobs_dir, base.join("jobs"));
        assert_eq!(s.timezone, chrono_tz::Europe::London);
        assert!(
            matches!(&s.mail.transport, MailTransport::File { dir } if *dir == base.join("state").join("outbox"))
        );
        assert_eq!(s.mail.detail, DetailLevel::Minimal);
        assert!(s.mail.admin.is_empty());
        assert!(s.http.is_none());
        assert_eq!(s.linkage, LinkageSettings::default());
        assert!(s.rules.is_empty() && s.localities.is_empty() && s.schools.is_empty());
        assert!(s.jobs.is_empty());
        let src = &s.sources[0];
        assert_eq!(src.name, "police");
        assert_eq!(src.kind, FeedKind::PoliceDa);
        assert_eq!(src.format, Format::Csv);
        assert_eq!(src.max_bad_rows, 0.05);
        assert_eq!(src.delimiter, b',');
        assert_eq!(src.encoding, TextEncoding::Utf8);
        assert_eq!(src.stale_after_hours, None);
        assert!(src.columns.is_empty());
        assert!(matches!(&src.transport, Transport::Dir(d) if d.path == base.join("inbox/police")));
    }

    #[test]
    fn the_example_config_loads_clean() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kinlink.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let s = match load_with_env(&text, &path, &|_| None) {
            Ok(s) => s,
            Err(p) => panic!("{p}"),
        };
        assert_eq!(s.sources.len(), 4);
        let kinds: Vec<FeedKind> = s.sources.iter().map(|s| s.kind).collect();
        for kind in FeedKind::ALL {
            assert!(kinds.contains(kind), "no {kind} source");
        }
        let mis = s.source("schools-mis").unwrap();
        assert_eq!(mis.records_path.as_deref(), Some("data"));
        assert_eq!(mis.next_path.as_deref(), Some("meta.pagination.next"));
        let Transport::Http(http) = &mis.transport else {
            panic!("not http")
        };
        assert_eq!(
            http.auth,
            HttpAuth::Bearer(SecretRef::Env("KINLINK_MIS_TOKEN".into()))
        );
        assert_eq!(
            (http.connect_timeout_secs, http.timeout_secs, http.retries),
            (10, 600, 3)
        );
        assert_eq!((http.backoff_ms, http.max_body_bytes), (1000, 536_870_912));
        assert_eq!(s.localities.len(), 3);
        assert_eq!(s.schools.len(), 3);
        assert_eq!(s.rules.len(), 5);
        assert_eq!(s.jobs.len(), 4);
        assert!(matches!(s.mail.transport, MailTransport::File { .. }));
        // The summary names everything that would run, and no secret.
        let text = summary(&s);
        for needle in [
            "schools-mis",
            "North",
            "100002",
            "nightly",
            "0 0 7 * * MON-FRI",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn a_broken_config_reports_every_problem_on_its_line() {
        let fx = Fixture::new();
        let text = r#"state_dir = 7
timezone = "Europe/Lundon"
colour = "blue"

[mail]
transport = "smtp"
smtp_hots = "relay.example.gov.uk"
smtp_tls = "sometimes"
detail = "everything"
admin = ["not an address"]

[http]
listen = "localhost"

[[source]]
name = "police"
kind = "polic_da"
format = "csv"
transport = { type = "dir", path = "inbox" }
max_bad_rows = 1.5

[[source]]
name = "police"
kind = "housing"
format = "xlsx"
transport = { type = "ftp" }
delimiter = ";"
stale_after_hours = 0
[source.columns]
notice_idd = "Ref"

[linkage]
auto_link = 0.5
review = 0.7
"#;
        let problems = fx.problems(text);
        let at = |needle: &str| find(&problems, needle).line;
        assert_eq!(at("`state_dir` in the top level must be a string"), 1);
        assert_eq!(at("unknown timezone"), 2);
        assert_eq!(at("unknown key `colour`"), 3);
        assert_eq!(at("unknown key `smtp_hots`"), 7);
        assert_eq!(at("[mail] has no `smtp_host`"), 5);
        assert_eq!(at("`smtp_tls` in [mail]"), 8);
        assert_eq!(at("`detail` in [mail]"), 9);
        assert_eq!(at("\"not an address\""), 10);
        assert_eq!(at("`listen` in [http]"), 13);
        assert_eq!(at("`kind` in [[source]] \"police\" is \"polic_da\""), 17);
        assert_eq!(at("`max_bad_rows`"), 20);
        assert_eq!(at("source name \"police\" is already used on line 16"), 23);
        assert_eq!(at("`type` in the transport"), 26);
        assert_eq!(at("`delimiter` in [[source]] #2 is only for csv"), 27);
        assert_eq!(at("`stale_after_hours`"), 28);
        assert_eq!(at("`notice_idd` is not a column of kind housing"), 30);
        assert_eq!(at("review (0.7) is not below auto_link (0.5)"), 34);
        assert_eq!(problems.len(), 17, "{problems:#?}");
        // Sorted by line, each with a fix.
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
        assert!(problems.iter().all(|p| p.file == fx.path()));
        // The suggestions name the closest key or value.
        assert!(find(&problems, "smtp_hots").fix.contains("`smtp_host`"));
        assert!(find(&problems, "polic_da").fix.contains("\"police_da\""));
        assert!(find(&problems, "notice_idd").fix.contains("`notice_id`"));
        assert!(find(&problems, "notice_idd").fix.contains("tenant_surname"));
        // Display: one block per problem, file:line first.
        let shown = Problems(problems.clone()).to_string();
        assert!(shown.contains(&format!("{}:3: unknown key `colour`", fx.path().display())));
        assert!(shown.contains("\n    fix: "));
    }

    #[test]
    fn linkage_caps_are_read_and_checked() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}\n[linkage]\nmax_cluster_size = 50\nmax_block_size = 2000\n"
            ))
            .unwrap();
        assert_eq!(s.linkage.max_cluster_size, 50);
        assert_eq!(s.linkage.max_block_size, 2000);
        assert_eq!(s.linkage.auto_link, 0.95);
        let problems = fx.problems(&format!(
            "{MINIMAL}\n[linkage]\nmax_cluster_size = 1\nmax_block_size = \"big\"\n"
        ));
        assert!(find(&problems, "`max_cluster_size`").line > 0);
        assert!(find(&problems, "`max_block_size`").line > 0);
        assert_eq!(problems.len(), 2, "{problems:#?}");
    }

    #[test]
    fn blocking_rules_and_m_overrides_are_read_and_checked() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}\n[linkage]\nblocking = [\"dob+surname_code\", \"postcode+forename\"]\n\
                 [linkage.m.forename]\nexact = 0.9\n[linkage.m.dob]\nday_month_swapped = 0.02\n"
            ))
            .unwrap();
        assert_eq!(
            s.linkage.blocking,
            vec!["dob+surname_code", "postcode+forename"]
        );
        assert!(s
            .linkage
            .m
            .contains(&("forename".to_owned(), "exact".to_owned(), 0.9)));
        assert!(s
            .linkage
            .m
            .contains(&("dob".to_owned(), "day_month_swapped".to_owned(), 0.02)));
        // Defaults when absent.
        let s = fx.load(MINIMAL).unwrap();
        assert_eq!(
            s.linkage.blocking.len(),
            crate::domain::linkage::DEFAULT_BLOCKING.len()
        );
        assert!(s.linkage.m.is_empty());

        let problems = fx.problems(&format!(
            "{MINIMAL}\n[linkage]\nblocking = [\"dob+shoe_size\", \"dob+dob\"]\n\
             [linkage.m.forename]\nexactly = 0.9\n[linkage.m.height]\ntall = 0.5\n"
        ));
        let bad = find(&problems, "`dob+shoe_size`");
        assert!(bad.line > 0 && bad.fix.contains("surname_code"), "{bad:?}");
        assert!(find(&problems, "`dob+dob`").line > 0);
        assert!(find(&problems, "no usable rule").line > 0);
        assert!(find(&problems, "no level `exactly`")
            .fix
            .contains("nickname"));
        assert!(find(&problems, "no field `height`").line > 0);
    }

    #[test]
    fn source_limits_are_read_and_checked() {
        let fx = Fixture::new();
        let ok = fx
            .load(&format!(
                "{MINIMAL}max_line_bytes = 4096\nmax_field_bytes = 1024\nmultiline_fields = true\n\
                 [source.max_lengths]\nnotification_id = 128\n"
            ))
            .unwrap();
        let limits = &ok.sources[0].limits;
        assert_eq!(
            (
                limits.max_line_bytes,
                limits.max_field_bytes,
                limits.multiline_fields
            ),
            (4096, 1024, true)
        );
        assert_eq!(limits.max_lengths.get("notification_id"), Some(&128));
        let defaults = &fx.load(MINIMAL).unwrap().sources[0].limits;
        assert_eq!(*defaults, SourceLimits::default());

        let text = format!(
            "{MINIMAL}max_line_bytes = 100\nmax_field_bytes = 200\n[source.max_lengths]\nnotificaton_id = 9\nsurname = 0\n"
        );
        let problems = fx.problems(&text);
        assert!(
            find(&problems, "`max_field_bytes` (200)")
                .fix
                .contains("at most max_line_bytes"),
            "{problems:#?}"
        );
        assert!(find(
            &problems,
            "`notificaton_id` is not a column of kind police_da"
        )
        .fix
        .contains("`notification_id`"));
        assert_eq!(find(&problems, "`surname` in the max_lengths").line, 11);
        assert_eq!(problems.len(), 3, "{problems:#?}");

        let sheet = MINIMAL.replace("format = \"csv\"", "format = \"xlsx\"");
        let problems = fx.problems(&format!("{sheet}multiline_fields = true\n"));
        assert!(find(&problems, "`multiline_fields`")
            .message
            .contains("only for csv"));
    }

    #[test]
    fn unknown_keys_anywhere_name_the_table_and_suggest() {
        let fx = Fixture::new();
        let text = format!(
            "{MINIMAL}stale_after_hour = 5\n[source.columns]\nnotification_id = \"Ref\"\n\n[rules.attendance_drop]\nbelw = 0.9\n[rules.attendence_drop]\nenabled = true\n"
        );
        let problems = fx.problems(&text);
        let p = find(&problems, "stale_after_hour`");
        assert!(p.message.contains("[[source]] \"police\""), "{p}");
        assert!(p.fix.contains("`stale_after_hours`"), "{p}");
        let p = find(&problems, "`belw`");
        assert!(p.message.contains("[rules.attendance_drop]"), "{p}");
        assert!(p.fix.contains("`below`"), "{p}");
        let p = find(&problems, "unknown rule `attendence_drop`");
        assert!(p.fix.contains("[rules.attendance_drop]"), "{p}");
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }

    #[test]
    fn secrets_in_plain_keys_are_rejected() {
        let fx = Fixture::new();
        let text = r#"
database_url = "postgres://kin:hunter2@db.example.gov.uk/kinlink"
[mail]
transport = "smtp"
smtp_host = "smtp.example.gov.uk"
smtp_user_env = "SMTP_USER"
smtp_password = "hunter2"
[[source]]
name = "mis"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://feeds.example.gov.uk/a", bearer = "hunter2" }
[[source]]
name = "mis2"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://me:hunter2@feeds.example.gov.uk/a" }
"#;
        let problems = fx.problems(text);
        let shown = Problems(problems.clone()).to_string();
        assert!(!shown.contains("hunter2"), "a secret leaked:\n{shown}");
        let p = find(&problems, "`database_url`");
        assert_eq!(p.line, 2);
        assert!(
            p.fix
                .contains("database_url_env = \"KINLINK_DATABASE_URL\""),
            "{p}"
        );
        let p = find(&problems, "`smtp_password` in [mail] would keep a secret");
        assert_eq!(p.line, 7);
        assert!(p.fix.contains("smtp_password_env") && p.fix.contains("smtp_password_file"));
        let p = find(&problems, "`bearer` in the transport");
        assert_eq!(p.line, 12);
        assert!(p.fix.contains("bearer_env"), "{p}");
        let p = find(&problems, "carries credentials");
        assert_eq!(p.line, 17);
        assert!(p.fix.contains("basic_password_env"), "{p}");
        // The user without a password is its own problem.
        find(&problems, "SMTP user without a password");
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn database_url_env_is_read_and_may_carry_a_password() {
        let fx = Fixture::new();
        let text = format!("database_url_env = \"KINLINK_DATABASE_URL\"\n{MINIMAL}");
        let s = fx
            .load_env(
                &text,
                &[("KINLINK_DATABASE_URL", "postgres://kin:pw@db/kin")],
            )
            .unwrap();
        assert_eq!(
            s.database,
            DatabaseUrl::Postgres("postgres://kin:pw@db/kin".into())
        );
        assert!(summary(&s).contains("postgres://kin:***@db/kin"));
        let problems = fx.load(&text).unwrap_err().0;
        let p = find(&problems, "KINLINK_DATABASE_URL");
        assert_eq!(p.line, 1);
        assert!(p.message.contains("is not set"));
    }

    #[test]
    fn plain_smtp_only_to_loopback() {
        let fx = Fixture::new();
        let mail = |host: &str| {
            format!("[mail]\ntransport = \"smtp\"\nsmtp_host = \"{host}\"\nsmtp_tls = \"none\"\n{MINIMAL}")
        };
        let problems = fx.problems(&mail("smtp.example.gov.uk"));
        let p = find(&problems, "unencrypted");
        assert_eq!(p.line, 4);
        assert_eq!(problems.len(), 1);
        for host in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            let s = fx.load(&mail(host)).unwrap();
            let MailTransport::Smtp(smtp) = s.mail.transport else {
                panic!("not smtp")
            };
            assert_eq!((smtp.port, smtp.tls), (25, SmtpTls::None));
        }
    }

    #[test]
    fn transport_specific_mail_keys() {
        let fx = Fixture::new();
        let problems = fx.problems(&format!(
            "[mail]\ntransport = \"file\"\nsmtp_host = \"x.example\"\n{MINIMAL}"
        ));
        assert_eq!(find(&problems, "`smtp_host`").line, 3);
        let problems = fx.problems(&format!(
            "[mail]\ntransport = \"smtp\"\nsmtp_host = \"x.example\"\nfile_dir = \"o\"\n{MINIMAL}"
        ));
        assert_eq!(find(&problems, "`file_dir`").line, 4);
        let s = fx
            .load(&format!(
                "[mail]\ntransport = \"smtp\"\nsmtp_host = \"relay.example\"\nsmtp_tls = \"tls\"\nsmtp_user_env = \"U\"\nsmtp_password_env = \"P\"\n{MINIMAL}"
            ))
            .unwrap();
        let MailTransport::Smtp(smtp) = s.mail.transport else {
            panic!("not smtp")
        };
        assert_eq!(smtp.port, 465);
        assert_eq!(smtp.user, Some(SecretRef::Env("U".into())));
        assert_eq!(smtp.password, Some(SecretRef::Env("P".into())));
    }

    #[test]
    fn smtp_ca_file_is_checked() {
        let fx = Fixture::new();
        let mail = |tls: &str, ca: &str| {
            format!("[mail]\ntransport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\nsmtp_tls = \"{tls}\"\nsmtp_ca_file = \"{ca}\"\n{MINIMAL}")
        };
        let p = fx.problems(&mail("starttls", "missing.pem"));
        let p = find(&p, "cannot be read");
        assert_eq!(p.line, 5);
        assert!(p.fix.contains("PEM"));
        std::fs::write(fx.dir.path().join("not.pem"), "hello").unwrap();
        assert_eq!(
            find(&fx.problems(&mail("tls", "not.pem")), "no PEM certificate").line,
            5
        );
        std::fs::write(
            fx.dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(
            find(
                &fx.problems(&mail("none", "ca.pem")),
                "uses no certificates"
            )
            .line,
            5
        );
        let s = fx.load(&mail("starttls", "ca.pem")).unwrap();
        let MailTransport::Smtp(smtp) = s.mail.transport else {
            panic!("not smtp")
        };
        assert_eq!(smtp.ca_file, Some(fx.dir.path().join("ca.pem")));
        let problems = fx.problems(&format!(
            "[mail]\ntransport = \"file\"\nsmtp_ca_file = \"ca.pem\"\n{MINIMAL}"
        ));
        assert_eq!(find(&problems, "`smtp_ca_file`").line, 3);
    }

    #[test]
    fn locality_prefixes_must_not_overlap() {
        let fx = Fixture::new();
        let text = format!(
            r#"{MINIMAL}
[[locality]]
name = "North"
postcodes = ["M7", "m6  5"]

[[locality]]
name = "South"
postcodes = [
  "M6",
  "M7",
  "M6 5",
  "M999",
  "M6 55",
]
managers = ["mgr@example"]
"#
        );
        let problems = fx.problems(&text);
        let p = find(&problems, "\"M7\" is in both");
        assert_eq!(p.line, 16);
        assert!(p.message.contains("\"North\"") && p.message.contains("\"South\""));
        // "m6  5" was normalised to "M6 5" and collides with the South sector.
        assert_eq!(find(&problems, "\"M6 5\" is in both").line, 17);
        assert_eq!(find(&problems, "\"M999\"").line, 18);
        assert_eq!(find(&problems, "\"M6 55\"").line, 19);
        assert_eq!(find(&problems, "\"mgr@example\"").line, 21);
        // A district in one locality with a sector of it in another is fine.
        assert_eq!(problems.len(), 5, "{problems:#?}");

        let s = fx
            .load(&format!(
                "{MINIMAL}[[locality]]\nname = \"N\"\npostcodes = [\"m6 5\", \"sw1a\"]\n[[locality]]\nname = \"S\"\npostcodes = [\"M6\"]\n"
            ))
            .unwrap();
        assert_eq!(s.localities[0].postcodes, ["M6 5", "SW1A"]);
    }

    #[test]
    fn schools_need_ewos_and_a_known_locality() {
        let fx = Fixture::new();
        let text = format!(
            r#"{MINIMAL}
[[locality]]
name = "North"

[[school]]
urn = "100001"
name = "A"
locality = "North"
ewos = []

[[school]]
urn = "100002"
name = "B"
locality = "Nroth"
ewos = ["ewo@example.gov.uk"]

[[school]]
urn = "100001"
name = "C"
locality = "North"
ewos = ["ewo@example.gov.uk"]

[[school]]
urn = "12AB"
name = "D"
locality = "North"
"#
        );
        let problems = fx.problems(&text);
        assert_eq!(
            find(&problems, "`ewos` of [[school]] 100001 is empty").line,
            15
        );
        let p = find(&problems, "names locality \"Nroth\"");
        assert_eq!(p.line, 20);
        assert!(p.fix.contains("\"North\""), "{p}");
        assert_eq!(
            find(&problems, "URN 100001 is already configured on line 12").line,
            24
        );
        assert_eq!(find(&problems, "6-digit school URN").line, 30);
        assert_eq!(find(&problems, "has no `ewos`").line, 29);
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn rule_values_are_checked() {
        let fx = Fixture::new();
        let text = format!(
            r#"{MINIMAL}
[rules.attendance_drop]
enabled = "yes"
below = 90
severe_below = 0.6
window_school_days = 0
[rules.closed_too_early]
within_days = 60
urgent_within_days = 90
[rules.emerging_risk]
min_signal_kinds = 5
lookback_days = 2.5
"#
        );
        let problems = fx.problems(&text);
        assert_eq!(find(&problems, "`enabled`").line, 9);
        assert_eq!(find(&problems, "`below` in").line, 10);
        assert_eq!(find(&problems, "`window_school_days`").line, 12);
        assert_eq!(find(&problems, "`urgent_within_days` (90)").line, 15);
        assert_eq!(find(&problems, "`min_signal_kinds`").line, 17);
        assert_eq!(find(&problems, "`lookback_days`").line, 18);
        // below was rejected, so severe_below has nothing to be compared with.
        assert_eq!(problems.len(), 6, "{problems:#?}");

        let s = fx
            .load(&format!(
                "{MINIMAL}[rules.eviction_risk]\nenabled = false\nlookback_days = 30\n"
            ))
            .unwrap();
        let rule = &s.rules["eviction_risk"];
        assert_eq!(rule.get("enabled").and_then(Item::as_bool), Some(false));
        assert_eq!(
            rule.get("lookback_days").and_then(Item::as_integer),
            Some(30)
        );
        assert!(summary(&s).contains("eviction_risk (off)"));
    }

    #[test]
    fn retention_is_read_and_checked_against_what_the_rules_read() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}[retention]\nraw_files_days = 7\ncases_days = 400\n"
            ))
            .unwrap();
        assert_eq!(s.retention.raw_files_days, 7);
        assert_eq!(s.retention.cases_days, 400);
        assert_eq!(s.retention.attendance_days, 730, "default");
        let p = fx
            .load(&format!(
                "{MINIMAL}[retention]\npolice_da_days = 100\nkeep_forever = true\n\n\
                 [rules.closed_too_early]\nwithin_days = 500\n"
            ))
            .unwrap_err();
        let text = p.to_string();
        assert!(
            text.contains("`police_da_days` in [retention] is 100 days"),
            "{text}"
        );
        assert!(text.contains("keep at least 379 days"), "{text}");
        assert!(text.contains("keep_forever"), "{text}");
        // The default cases_days (730) still covers within_days 500 + lookback 30.
        assert!(!text.contains("`cases_days` in [retention]"), "{text}");
        let p = fx
            .load(&format!("{MINIMAL}[retention]\ncases_days = 500\n\n[rules.closed_too_early]\nwithin_days = 500\n"))
            .unwrap_err();
        assert!(p.to_string().contains("keep at least 530 days"), "{p}");
    }

    #[test]
    fn rules_are_typed_with_defaults_for_what_is_left_out() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}[rules.eviction_risk]\nenabled = false\nlookback_days = 30\nbailiff_within_days = 7\n\
                 [rules.attendance_drop]\nbelow = 0.85\ndrop = 1\nresolve_after_days = 10\nunauthorised_sessions = 6\n"
            ))
            .unwrap();
        let c = s.rules_config();
        let d = crate::domain::rules::RulesConfig::default();
        assert!(!c.eviction_risk.common.enabled);
        assert_eq!(c.eviction_risk.common.lookback_days, 30);
        assert_eq!(c.eviction_risk.bailiff_within_days, 7);
        assert_eq!(c.attendance_drop.below, 0.85);
        assert_eq!(c.attendance_drop.drop, 1.0, "an integer is a number too");
        assert_eq!(c.attendance_drop.common.resolve_after_days, 10);
        assert_eq!(c.attendance_drop.unauthorised_sessions, 6);
        assert_eq!(
            c.attendance_drop.window_school_days,
            d.attendance_drop.window_school_days
        );
        assert_eq!(c.da_notification, d.da_notification);
        assert_eq!(c.closed_too_early, d.closed_too_early);
        assert_eq!(c.emerging_risk, d.emerging_risk);
    }

    #[test]
    fn dir_settle_and_size_keys_and_the_other_origin_setting() {
        let fx = Fixture::new();
        let s = fx.load(MINIMAL).unwrap();
        let Transport::Dir(d) = &s.sources[0].transport else {
            panic!("not dir")
        };
        assert_eq!((d.settle_secs, d.max_file_bytes), (60, 536_870_912));
        let s = fx
            .load(
                r#"
[[source]]
name = "a"
kind = "housing"
format = "csv"
transport = { type = "dir", path = "in", settle_secs = 0, max_file_bytes = 1000 }

[[source]]
name = "b"
kind = "housing"
format = "json"
transport = { type = "http", url = "https://x.example/b", other_origin_pages = "without_credentials" }
"#,
            )
            .unwrap();
        let Transport::Dir(d) = &s.sources[0].transport else {
            panic!("not dir")
        };
        assert_eq!((d.settle_secs, d.max_file_bytes), (0, 1000));
        let Transport::Http(h) = &s.sources[1].transport else {
            panic!("not http")
        };
        assert_eq!(h.other_origin_pages, OtherOriginPages::WithoutCredentials);

        let problems = fx.problems(
            r#"
[[source]]
name = "a"
kind = "housing"
format = "csv"
transport = { type = "dir", path = "in", settle_secs = -1, max_file_bytes = "1G", other_origin_pages = "refuse" }

[[source]]
name = "b"
kind = "housing"
format = "json"
transport = { type = "http", url = "https://x.example/b", settle_secs = 5, max_file_bytes = 9, other_origin_pages = "anyone" }
"#,
        );
        let of =
            |key: &str, source: &str| format!("`{key}` in the transport of [[source]] {source:?}");
        assert_eq!(find(&problems, &of("settle_secs", "a")).line, 6);
        assert_eq!(find(&problems, &of("max_file_bytes", "a")).line, 6);
        let p = find(&problems, &of("other_origin_pages", "a"));
        assert!(p.fix.contains("http transport"), "{p:?}");
        let p = find(&problems, &of("settle_secs", "b"));
        assert_eq!(p.line, 12);
        assert!(p.fix.contains("dir transport"), "{p:?}");
        find(&problems, &of("max_file_bytes", "b"));
        let p = find(&problems, &of("other_origin_pages", "b"));
        assert_eq!(p.line, 12);
        assert!(p.fix.contains("without_credentials"), "{p:?}");
    }

    #[test]
    fn format_specific_source_keys() {
        let fx = Fixture::new();
        let text = r#"
[[source]]
name = "a"
kind = "attendance"
format = "json"
transport = { type = "dir", path = "in", url = "https://x.example" }
sheet = "One"
records_path = "data..items"

[[source]]
name = "b"
kind = "housing"
format = "csv"
transport = { type = "http", url = "http://feeds.example.gov.uk/h", path = "x" }
next_path = "next"
delimiter = ";;"
encoding = "latin1"

[[source]]
name = "bad name"
kind = "housing"
format = "ods"
transport = { type = "http", url = "http://127.0.0.1:8080/h", basic_user_env = "U" }
sheet = "Notices"
"#;
        let problems = fx.problems(text);
        assert_eq!(find(&problems, "`url` in the transport").line, 6);
        assert_eq!(find(&problems, "`sheet`").line, 7);
        assert_eq!(find(&problems, "not a dotted path").line, 8);
        assert_eq!(find(&problems, "plain http").line, 14);
        assert_eq!(find(&problems, "`path` in the transport").line, 14);
        assert_eq!(find(&problems, "`next_path`").line, 15);
        assert_eq!(find(&problems, "not a single character").line, 16);
        assert_eq!(find(&problems, "`encoding`").line, 17);
        assert_eq!(
            find(&problems, "\"bad name\" is not a usable name").line,
            20
        );
        assert_eq!(find(&problems, "half of basic authentication").line, 23);
        assert_eq!(problems.len(), 10, "{problems:#?}");
    }

    #[test]
    fn relative_paths_resolve_as_config_md_says() {
        let fx = Fixture::new();
        let base = fx.dir.path();
        std::fs::create_dir(base.join("myjobs")).unwrap();
        let text = r#"
state_dir = "var"
database_url = "sqlite://db/kin.db"
jobs_dir = "myjobs"
[mail]
file_dir = "mail-out"
[[source]]
name = "mis"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/a", basic_user_file = "mis-user", basic_password_file = "/etc/kinlink/mis-pass" }
[[source]]
name = "police"
kind = "police_da"
format = "csv"
transport = { type = "dir", path = "../inbox" }
"#;
        let s = fx.load(text).unwrap();
        assert_eq!(s.state_dir, base.join("var"));
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite(base.join("var").join("db/kin.db"))
        );
        assert_eq!(s.jobs_dir, base.join("myjobs"));
        assert!(
            matches!(&s.mail.transport, MailTransport::File { dir } if *dir == base.join("var").join("mail-out"))
        );
        assert!(
            matches!(&s.sources[1].transport, Transport::Dir(d) if d.path == base.join("../inbox"))
        );
        let Transport::Http(http) = &s.sources[0].transport else {
            panic!("not http")
        };
        assert_eq!(
            http.auth,
            HttpAuth::Basic {
                user: SecretRef::File(base.join("mis-user")),
                password: SecretRef::File(PathBuf::from("/etc/kinlink/mis-pass")),
            }
        );

        // With systemd's credentials folder, relative secret files are found there.
        let s = fx
            .load_env(
                text,
                &[("CREDENTIALS_DIRECTORY", "/run/credentials/kinlink.service")],
            )
            .unwrap();
        let Transport::Http(http) = &s.sources[0].transport else {
            panic!("not http")
        };
        assert_eq!(
            http.auth,
            HttpAuth::Basic {
                user: SecretRef::File(PathBuf::from("/run/credentials/kinlink.service/mis-user")),
                password: SecretRef::File(PathBuf::from("/etc/kinlink/mis-pass")),
            }
        );

        // An absolute SQLite path stays where it is.
        let s = fx
            .load(&format!(
                "database_url = \"sqlite:///srv/kin.db\"\n{MINIMAL}"
            ))
            .unwrap();
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite(PathBuf::from("/srv/kin.db"))
        );
    }

    #[test]
    fn job_problems_come_with_config_problems() {
        let fx = Fixture::new();
        fx.job(
            "nightly.toml",
            "name = \"nightly\"\nschedule = \"0 30 1 * * *\"\nsteps = [\"ingest\", \"lnk\"]\n",
        );
        fx.job(
            "weekly.toml",
            "name = \"weekly\"\nschedule = \"0 0 8 * * MONDAY\"\nsteps = [\"send\"]\n",
        );
        let problems = fx.problems(&format!("{MINIMAL}colour = 1\n"));
        assert_eq!(problems.len(), 3, "{problems:#?}");
        let jobs = fx.dir.path().join("jobs");
        let p = find(&problems, "\"lnk\"");
        assert_eq!((p.file.clone(), p.line), (jobs.join("nightly.toml"), 3));
        assert!(p.fix.contains("\"link\""));
        let p = find(&problems, "day of week");
        assert_eq!((p.file.clone(), p.line), (jobs.join("weekly.toml"), 2));
        // The config file comes first, then the job files.
        assert_eq!(problems[0].file, fx.path());
    }

    #[test]
    fn a_missing_jobs_folder_names_the_key() {
        let fx = Fixture::new();
        let problems = fx.problems(&format!("jobs_dir = \"nope\"\n{MINIMAL}"));
        let p = find(&problems, "jobs folder");
        assert_eq!(p.line, 1);
        assert!(p.fix.contains("`jobs_dir`"));
        std::fs::remove_dir(fx.dir.path().join("jobs")).unwrap();
        let problems = fx.problems(MINIMAL);
        let p = find(&problems, "jobs folder");
        assert!(p.message.contains("default"), "{p}");
    }

    #[test]
    fn invalid_toml_is_one_problem_with_its_line() {
        let fx = Fixture::new();
        let problems = fx.problems("timezone = \"Europe/London\"\n[mail\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2, "{problems:?}");
    }

    #[test]
    fn check_secrets_reports_unreadable_secrets_without_values() {
        let fx = Fixture::new();
        std::fs::write(fx.dir.path().join("token"), "s3cret-token\n").unwrap();
        std::fs::write(fx.dir.path().join("empty"), "\n").unwrap();
        let text = r#"
[[source]]
name = "a"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/a", bearer_file = "token" }
[[source]]
name = "b"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/b", bearer_file = "missing" }
[[source]]
name = "c"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/c", bearer_file = "empty" }
[[source]]
name = "d"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/d", bearer_env = "KINLINK_TEST_SURELY_UNSET_9F2C" }
"#;
        let s = fx.load(text).unwrap();
        let problems = check_secrets(&s);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].message.contains("source \"b\""));
        assert!(
            problems[1].message.contains("source \"c\"") && problems[1].message.contains("empty")
        );
        assert!(problems[2]
            .message
            .contains("KINLINK_TEST_SURELY_UNSET_9F2C"));
        let shown = Problems(problems).to_string();
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn postcode_prefixes() {
        assert_eq!(postcode_prefix("m7").as_deref(), Some("M7"));
        assert_eq!(postcode_prefix(" m6   5 ").as_deref(), Some("M6 5"));
        assert_eq!(postcode_prefix("SW1A").as_deref(), Some("SW1A"));
        assert_eq!(postcode_prefix("M27").as_deref(), Some("M27"));
        for bad in ["", "7M", "M", "MMM1", "M6 5A", "M6 X", "M123", "M6 5 1"] {
            assert_eq!(postcode_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_every_mins_defaults_to_five_and_is_checked_with_its_line() {
        let fx = Fixture::new();
        assert_eq!(fx.load(MINIMAL).unwrap().mail.retry_every_mins, 5);
        let s = fx
            .load(&format!("{MINIMAL}\n[mail]\nretry_every_mins = 2\n"))
            .unwrap();
        assert_eq!(s.mail.retry_every_mins, 2);
        for bad in ["0", "61", "\"5\""] {
            let problems = fx.problems(&format!("{MINIMAL}\n[mail]\nretry_every_mins = {bad}\n"));
            let p = find(&problems, "`retry_every_mins`");
            assert_eq!(p.line, 9, "{bad}: {p:?}");
            assert!(!p.fix.is_empty(), "{bad}: {p:?}");
        }
    }

    #[test]
    fn emails_are_checked_simply() {
        assert!(is_email("eh.north@example.gov.uk"));
        for bad in [
            "", "a@b", "a b@c.uk", "a@@c.uk", "@c.uk", "a@.uk", "a@c.", "a@c..uk",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn env_overrides_replace_and_add_keys_and_are_listed_by_name() {
        let fx = Fixture::new();
        let text = format!("{MINIMAL}\n[mail]\ntransport = \"file\"\ndetail = \"minimal\"\n");
        let s = fx
            .load_overridden(
                &text,
                &[
                    ("KINLINK__MAIL__DETAIL", "standard"),
                    ("KINLINK__MAIL__ADMIN", r#"["admin@example.gov.uk"]"#),
                    ("KINLINK__HTTP__LISTEN", "127.0.0.1:9187"),
                    ("KINLINK__TIMEZONE", "Europe/Paris"),
                    ("KINLINK__LINKAGE__AUTO_LINK", "0.97"),
                    ("KINLINK__RULES__ATTENDANCE_DROP__BELOW", "0.85"),
                    ("KINLINK_CONFIG", "not an override"),
                ],
            )
            .unwrap();
        assert_eq!(s.mail.detail, DetailLevel::Standard);
        assert_eq!(s.mail.admin, ["admin@example.gov.uk"]);
        assert_eq!(
            s.http.as_ref().map(|h| h.listen.to_string()).as_deref(),
            Some("127.0.0.1:9187")
        );
        assert_eq!(s.timezone, chrono_tz::Europe::Paris);
        assert_eq!(s.linkage.auto_link, 0.97);
        assert_eq!(s.rules["attendance_drop"]["below"].as_float(), Some(0.85));
        // What the file says and no variable touches stays.
        assert!(matches!(s.mail.transport, MailTransport::File { .. }));
        assert_eq!(s.sources[0].name, "police");
        assert_eq!(
            s.env_overrides,
            [
                "KINLINK__HTTP__LISTEN",
                "KINLINK__LINKAGE__AUTO_LINK",
                "KINLINK__MAIL__ADMIN",
                "KINLINK__MAIL__DETAIL",
                "KINLINK__RULES__ATTENDANCE_DROP__BELOW",
                "KINLINK__TIMEZONE",
            ]
        );
        let summary = summary(&s);
        assert!(
            summary.contains("KINLINK__MAIL__ADMIN, KINLINK__MAIL__DETAIL"),
            "{summary}"
        );
        assert!(!summary.contains("admin@example.gov.uk"), "{summary}");
    }

    #[test]
    fn a_bad_env_override_is_a_problem_that_names_the_variable() {
        let fx = Fixture::new();
        let text = format!("{MINIMAL}\n[http]\nlisten = \"127.0.0.1:9187\"\nbogus = 1\n");
        let problems = match fx.load_overridden(
            &text,
            &[
                ("KINLINK__MAIL__TRANSPRT", "smtp"),
                ("KINLINK__STORE__URL", "sqlite://x.db"),
                ("KINLINK__HTTP__LISTEN", "nowhere"),
                ("KINLINK__RETENTION__RAW_FILES_DAYS", "soon"),
                ("KINLINK__SOURCE__NAME", "police"),
                ("KINLINK__HTTP__LISTEN__PORT", "9187"),
                ("KINLINK__MAIL__SMTP_PASSWORD", "hunter2"),
                ("KINLINK__DATABASE_URL", "postgres://eh:sekrit@db/kinlink"),
                ("KINLINK____DETAIL", "full"),
            ],
        ) {
            Ok(_) => panic!("expected problems"),
            Err(p) => p.0,
        };
        let p = find(&problems, "unknown key `transprt` in [mail]");
        assert!(p.message.contains("KINLINK__MAIL__TRANSPRT"), "{p}");
        assert!(p.fix.contains("did you mean `transport`"), "{p}");
        assert_eq!(p.line, 0);
        let p = find(&problems, "unknown key `store` in the top level");
        assert!(p.message.contains("KINLINK__STORE__URL"), "{p}");
        let p = find(&problems, "`listen` in [http] is \"nowhere\"");
        assert!(p.message.contains("KINLINK__HTTP__LISTEN"), "{p}");
        assert_eq!(p.line, 0, "the value is the variable's, not line 9's");
        let p = find(
            &problems,
            "`raw_files_days` in [retention] must be an integer",
        );
        assert!(
            p.message.contains("KINLINK__RETENTION__RAW_FILES_DAYS"),
            "{p}"
        );
        let p = find(
            &problems,
            "KINLINK__SOURCE__NAME names a key inside [[source]]",
        );
        assert!(p.fix.contains("in the config file"), "{p}");
        find(
            &problems,
            "KINLINK__HTTP__LISTEN__PORT names a key inside `listen` in [http], which is a string",
        );
        let p = find(
            &problems,
            "KINLINK__MAIL__SMTP_PASSWORD would pass a secret",
        );
        assert!(p.fix.contains("smtp_password_env"), "{p}");
        let p = find(&problems, "KINLINK__DATABASE_URL");
        assert!(
            p.message.contains("password") || p.fix.contains("database_url_env"),
            "{p}"
        );
        find(&problems, "KINLINK____DETAIL does not name a config key");
        // The file's own problems keep their lines.
        assert_eq!(find(&problems, "unknown key `bogus` in [http]").line, 10);
        for p in &problems {
            let text = p.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("sekrit"),
                "{text}"
            );
        }
        assert_eq!(problems.len(), 10, "{problems:#?}");
    }
}
