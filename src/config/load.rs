//! Reads the config file of docs/config.md into [`Settings`], then the jobs folder it
//! names, and reports every problem of both at once: file, line, what is wrong and
//! what would fix it. Unknown keys are errors, because a typo must not silently
//! switch a safeguard off. Secrets are only ever named (`*_env`, `*_file`); they are
//! read by [`check_secrets`] and by the code that uses them, never by [`load`].
//!
//! Layers: defaults, then the file, then `KINLINK__SECTION__KEY` environment
//! variables (`KINLINK__KEY` for a top-level key), which replace single keys of
//! the file's tables before it is checked, so an override is checked like a line
//! of the file and its problems name the variable.
//!
//! This file is the entry: [`load`], the layering and the top-level keys. Each
//! concern checks its own tables in a submodule, in the order `load` runs them:
//! `layers` (the environment overrides), `database`, `mail`, `sources`, `places`
//! (localities, schools, postcode prefixes), `rules` (with `[retention]`, which
//! is checked against what the rules read back) and `linkage`; `values` and
//! `secrets` hold the checks they share, and `summary` is what `check-config`
//! prints.

mod database;
#[cfg(test)]
mod fixture;
mod layers;
mod linkage;
mod mail;
mod places;
mod rules;
mod secrets;
mod sources;
mod summary;
mod values;

pub use layers::ENV_PREFIX;
pub use secrets::check_secrets;
pub use summary::summary;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{HttpListen, Settings};
pub use crate::domain::Problem;
use crate::jobs;
use crate::jobs::walk::{Section, Sink};

use values::non_empty_string;

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
    let env_overrides = layers::apply_overrides(&mut top, overrides, &mut sink);
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
    let database = database::database(&mut cx, &root, &state_dir);
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
    let mail = mail::mail(&mut cx, &root, &state_dir);
    let http = http(&mut cx, &root);
    let sources = sources::sources(&mut cx, &root);
    let localities = places::localities(&mut cx, &root);
    let schools = places::schools(&mut cx, &root, &localities);
    let rules = rules::rules(&mut cx, &root);
    let linkage = linkage::linkage(&mut cx, &root);
    let retention = rules::retention(&mut cx, &root, &rules);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::fixture::{find, Fixture, MINIMAL};
    use crate::config::{
        DatabaseUrl, DetailLevel, HttpAuth, LinkageSettings, MailTransport, SecretRef,
        TextEncoding, Transport,
    };
    use crate::domain::rules::RulesConfig;
    use crate::domain::{FeedKind, Format};

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
        assert_eq!(s.rules, RulesConfig::default());
        assert!(s.localities.is_empty() && s.schools.is_empty());
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
        assert_eq!(
            s.rules,
            RulesConfig::default(),
            "the example spells out the defaults"
        );
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
}
