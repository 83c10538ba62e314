//! The real `kinlink` binary, driven the way an operator or systemd drives it:
//! a config file on disk, a process per run, exit codes and printed reports.
//!
//! - `kill -9` in the middle of a large file leaves the store as it was before the
//!   file, and the next run ingests it exactly once (SQLite and PostgreSQL).
//! - `check-config` on a broken config prints every problem with file:line, exit 2.
//! - `KINLINK__SECTION__KEY` overrides: applied and listed by name by `check-config`;
//!   an unknown key or a secret in one is a problem naming the variable, exit 2.
//! - An HTTP source end to end through `kinlink ingest`, then 304 on an unchanged ETag.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kinlink::domain::Format;
use kinlink::store::{Store, TableCounts};
use serde_json::json;

use crate::backends::{fresh_postgres, postgres_url};
use crate::helpers::{within, FeedServer, Reply};

const KINLINK: &str = env!("CARGO_BIN_EXE_kinlink");

/// The `[source.columns]` table for files from `demo::write_attendance`.
fn columns_toml(columns: &std::collections::BTreeMap<String, String>) -> String {
    columns
        .iter()
        .map(|(canonical, header)| format!("{canonical} = {header:?}\n"))
        .collect()
}

/// A config with one `dir` attendance source reading `inbox`.
fn dir_config(dir: &Path, database_url: &str, columns: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let path = dir.join("kinlink.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\ndatabase_url = {database_url:?}\n\n\
             [[source]]\nname = \"schools\"\nkind = \"attendance\"\nformat = \"csv\"\n\
             transport = {{ type = \"dir\", path = \"inbox\", settle_secs = 0 }}\n[source.columns]\n{columns}"
        ),
    )
    .unwrap();
    path
}

/// Runs `kinlink --config <config> <args…>` to completion.
fn kinlink(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(KINLINK)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("KINLINK_CONFIG")
        .output()
        .expect("run the kinlink binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where the read position of the open file `target` stands in process `pid`
/// (Linux: /proc/PID/fdinfo), or `None` while the process does not hold it open.
#[cfg(target_os = "linux")]
fn read_position(pid: u32, target: &Path) -> Option<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() != Some(target) {
            continue;
        }
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                .ok()?;
        return info
            .lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|v| v.trim().parse().ok());
    }
    None
}

/// Table counts after `files` are ingested one run each, uninterrupted, into a
/// fresh SQLite store by the binary.
async fn reference_counts(
    dir: &Path,
    files: &[&Path],
    columns: &std::collections::BTreeMap<String, String>,
) -> TableCounts {
    let ref_dir = dir.join("reference");
    let config = dir_config(&ref_dir, "sqlite://kinlink.db", &columns_toml(columns));
    for (i, file) in files.iter().enumerate() {
        std::fs::copy(file, ref_dir.join(format!("inbox/{i}.csv"))).unwrap();
        let out = kinlink(&config, &["ingest"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let store = Store::open_sqlite(&ref_dir.join("state/kinlink.db"))
        .await
        .unwrap();
    let counts = store.table_counts().await.unwrap();
    store.close().await;
    counts
}

/// The crash test on one backend: `database_url` names the store the binary uses
/// and `store` opens the same one for the test's own checks.
#[cfg(target_os = "linux")]
async fn kill_nine_mid_file(backend: &str, dir: &Path, database_url: &str, store: Store) {
    use sha2::{Digest, Sha256};

    let inbox = dir.join("inbox");
    let small = kinlink::demo::write_attendance(&dir.join("small.csv"), Format::Csv, 300, 1)
        .expect("write the small file");
    let config = dir_config(dir, database_url, &columns_toml(&small));
    std::fs::copy(dir.join("small.csv"), inbox.join("attendance-small.csv")).unwrap();
    let first = kinlink(&config, &["ingest"]);
    assert!(first.status.success(), "{backend}: {}", text(&first.stderr));
    let before: TableCounts = store.table_counts().await.unwrap();
    assert!(before.attendance_marks > 0, "{backend}: {before:?}");

    // Large enough that storing it takes a good while even in a release build.
    let rows = 200_000;
    let big_name = "attendance-2025-11-20.csv";
    let staged = dir.join("big.csv");
    kinlink::demo::write_attendance(&staged, Format::Csv, rows, 2).expect("write the big file");
    // The same two files ingested by uninterrupted runs into a store of their own:
    // what "exactly once" must reproduce (the files share some pupils and days, so
    // a few marks of the big file correct marks of the small one).
    let reference = reference_counts(dir, &[&dir.join("small.csv"), &staged], &small).await;
    let bytes = std::fs::read(&staged).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    drop(bytes);
    std::fs::rename(&staged, inbox.join(big_name)).unwrap();
    // The raw copy the binary will make and parse (state_dir resolves against the
    // config's folder; /proc shows the canonical path).
    let raw = dir
        .canonicalize()
        .unwrap()
        .join(format!("state/raw/schools/{sha}.csv"));

    let log = std::fs::File::create(dir.join("killed-run.log")).unwrap();
    let mut child = Command::new(KINLINK)
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .env_remove("KINLINK_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start kinlink ingest");
    // Kill once the parser has read a third of the raw copy: by then the store has
    // written tens of thousands of rows inside the file's open transaction.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{backend}: kinlink finished ({status}) before it could be killed mid-file; \
                 the file is too small for this machine. Log:\n{}",
                std::fs::read_to_string(dir.join("killed-run.log")).unwrap_or_default()
            );
        }
        if read_position(child.id(), &raw).is_some_and(|pos| pos >= size / 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backend}: kinlink did not reach a third of the file within 300 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix.
    let status = child.wait().unwrap();
    assert!(!status.success(), "{backend}: {status}");

    // Nothing of the file is in the store; the ledger holds it as taken, not done.
    assert_eq!(
        store.table_counts().await.unwrap(),
        before,
        "{backend}: the killed run left rows behind"
    );
    let ledger = store.ledger("schools").await.unwrap();
    let big: Vec<_> = ledger.iter().filter(|f| f.sha256 == sha).collect();
    assert_eq!(big.len(), 1, "{backend}: {ledger:?}");
    assert_eq!(big[0].status, "fetched", "{backend}: {ledger:?}");
    assert_eq!(big[0].original_name, big_name, "{backend}");
    assert!(
        inbox.join(big_name).exists(),
        "{backend}: still in the inbox"
    );

    // The restart ingests it exactly once.
    let second = kinlink(&config, &["ingest", "--format", "json"]);
    assert!(
        second.status.success(),
        "{backend}: {}",
        text(&second.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&second.stdout)
        .unwrap_or_else(|e| panic!("{backend}: {e}: {}", text(&second.stdout)));
    let outcomes: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ingested", "duplicate"], "{backend}: {report}");
    let counts = &report["files"][0]["counts"];
    assert_eq!(counts["rows_read"], rows as i64, "{backend}: {report}");
    let quarantined = counts["quarantined"].as_i64().unwrap();
    assert_eq!(
        counts["records"].as_i64().unwrap(),
        rows as i64 - quarantined,
        "{backend}: {report}"
    );
    let after = store.table_counts().await.unwrap();
    assert_eq!(
        after, reference,
        "{backend}: the store of uninterrupted runs, every row once"
    );
    assert_eq!(
        after.quarantined - before.quarantined,
        quarantined,
        "{backend}"
    );
    let ledger = store.ledger("schools").await.unwrap();
    let big: Vec<_> = ledger.iter().filter(|f| f.sha256 == sha).collect();
    assert_eq!(big.len(), 1, "{backend}: {ledger:?}");
    assert_eq!(big[0].status, "ingested", "{backend}");
    assert!(inbox.join("archive").join(big_name).exists(), "{backend}");
    assert!(!inbox.join(big_name).exists(), "{backend}");

    // And a third run has nothing to do.
    let third = kinlink(&config, &["ingest"]);
    assert!(third.status.success(), "{backend}");
    assert_eq!(store.table_counts().await.unwrap(), after, "{backend}");
    store.close().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_in_the_middle_of_a_large_file_then_restart_ingests_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let store = Store::open_sqlite(&sqlite_dir.join("state/kinlink.db"))
        .await
        .unwrap();
    kill_nine_mid_file("sqlite", &sqlite_dir, "sqlite://kinlink.db", store).await;

    // fresh_postgres names the database kinlink_it_<test>.
    if let Some(store) = fresh_postgres("kill_nine").await {
        let pg_dir = dir.path().join("postgres");
        std::fs::create_dir_all(&pg_dir).unwrap();
        let url = kinlink_test_support::with_database(&postgres_url(), "kinlink_it_kill_nine");
        kill_nine_mid_file("postgres", &pg_dir, &url, store).await;
    }
}

#[test]
fn check_config_lists_every_problem_with_its_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n\
         databse_url = \"sqlite://kinlink.db\"\n\
         \n\
         [[source]]\n\
         name = \"schools\"\n\
         kind = \"attendence\"\n\
         format = \"csv\"\n\
         transport = { type = \"dir\", path = \"inbox\" }\n\
         max_bad_rows = 1.5\n\
         \n\
         [mail]\n\
         transport = \"smtp\"\n\
         smtp_host = \"smtp.example.org\"\n\
         smtp_tls = \"none\"\n",
    )
    .unwrap();
    let out = kinlink(&config, &["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for (line, what) in [
        (2, "databse_url"),
        (6, "attendence"),
        (9, "max_bad_rows"),
        (14, "smtp_tls"),
    ] {
        let found = err
            .lines()
            .any(|l| l.contains(&format!("broken.toml:{line}:")) && l.contains(what));
        assert!(found, "no line {line} problem about {what}:\n{err}");
    }
    assert!(
        err.matches("fix:").count() >= 4,
        "every problem has a fix:\n{err}"
    );
    // The missing jobs folder is a fifth problem, of the file rather than a line.
    assert!(err.contains("jobs folder"), "{err}");
    assert!(err.contains("5 problem(s)"), "{err}");
    assert!(
        !dir.path().join("state").exists(),
        "a broken config must not create anything"
    );
}

/// `kinlink check-config` with `vars` in the child's environment only.
fn check_config_with(config: &Path, vars: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(KINLINK);
    command
        .arg("--config")
        .arg(config)
        .arg("check-config")
        .env_remove("KINLINK_CONFIG");
    // Only the test's own overrides: none inherited from whoever runs the tests.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KINLINK__") {
            command.env_remove(name);
        }
    }
    command.envs(vars.iter().copied());
    command.output().expect("run the kinlink binary")
}

#[test]
fn check_config_applies_env_overrides_lists_them_by_name_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir_config(dir.path(), "sqlite://kinlink.db", "");

    let out = check_config_with(
        &config,
        &[
            ("KINLINK__MAIL__DETAIL", "standard"),
            ("KINLINK__MAIL__ADMIN", r#"["eh-systems@example.gov.uk"]"#),
            ("KINLINK__HTTP__LISTEN", "127.0.0.1:9187"),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}
{}",
        text(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("mail detail") && l.ends_with("standard")),
        "{stdout}"
    );
    assert!(
        stdout.contains("/healthz and /metrics on 127.0.0.1:9187"),
        "{stdout}"
    );
    let listed = stdout
        .lines()
        .find(|l| l.starts_with("env overrides"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        listed.ends_with("KINLINK__HTTP__LISTEN, KINLINK__MAIL__ADMIN, KINLINK__MAIL__DETAIL"),
        "{listed}"
    );
    assert!(!stdout.contains("eh-systems@example.gov.uk"), "{stdout}");

    // Without overrides the file's defaults hold and nothing is listed.
    let out = check_config_with(&config, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("env overrides"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("mail detail") && l.ends_with("minimal")),
        "{stdout}"
    );

    // An unknown key and a secret: problems naming the variable, exit 2.
    let out = check_config_with(
        &config,
        &[
            ("KINLINK__MAIL__DETIAL", "standard"),
            ("KINLINK__MAIL__SMTP_PASSWORD", "hunter2"),
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown key `detial` in [mail] (set by the environment variable KINLINK__MAIL__DETIAL)"),
        "{err}"
    );
    assert!(err.contains("did you mean `detail`"), "{err}");
    assert!(
        err.contains("KINLINK__MAIL__SMTP_PASSWORD would pass a secret"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(!err.contains("hunter2") && !text(&out.stdout).contains("hunter2"));
}

#[tokio::test]
async fn an_http_source_is_ingested_through_the_binary_and_not_refetched_when_unchanged() {
    within(120, async {
        let server = FeedServer::start().await;
        let records = json!({ "data": [
            { "school_urn": 100001, "forename": "Ann", "surname": "Smith", "dob": "2015-04-03",
              "date": "2025-03-04", "session": "AM", "mark": "/" },
            { "school_urn": 100001, "forename": "Ann", "surname": "Smith", "dob": "2015-04-03",
              "date": "2025-03-04", "session": "PM", "mark": "N" },
            { "school_urn": 100001, "forename": "Ben", "surname": "Jones", "dob": "2014-01-20",
              "date": "2025-03-04", "session": "AM", "mark": "Q9" },
        ]});
        server.route(
            "/attendance",
            [
                Reply::json(&records).header("ETag", "\"v1\""),
                Reply::status(304).header("ETag", "\"v1\""),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        let config = dir.path().join("kinlink.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"state\"\n\n\
                 [[source]]\nname = \"mis\"\nkind = \"attendance\"\nformat = \"json\"\n\
                 records_path = \"data\"\nmax_bad_rows = 0.5\n\
                 transport = {{ type = \"http\", url = {:?}, retries = 0 }}\n",
                server.url("/attendance")
            ),
        )
        .unwrap();
        let run = |config: PathBuf| async move {
            tokio::process::Command::new(KINLINK)
                .arg("--config")
                .arg(&config)
                .args(["ingest", "--format", "json"])
                .env_remove("KINLINK_CONFIG")
                .output()
                .await
                .expect("run kinlink")
        };

        let first = run(config.clone()).await;
        assert!(first.status.success(), "{}", text(&first.stderr));
        let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
        let file = &report["files"][0];
        assert_eq!(file["outcome"], "ingested", "{report}");
        assert_eq!(file["counts"]["rows_read"], 3, "{report}");
        assert_eq!(file["counts"]["records"], 2, "{report}");
        assert_eq!(file["counts"]["quarantined"], 1, "{report}");

        let second = run(config.clone()).await;
        assert!(second.status.success(), "{}", text(&second.stderr));
        let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
        assert_eq!(
            report["files"],
            json!([{ "outcome": "not_modified", "source": "mis" }]),
            "{report}"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert_eq!(requests[0].header("if-none-match"), None);
        assert_eq!(requests[1].header("if-none-match"), Some("\"v1\""));

        let store = Store::open_sqlite(&dir.path().join("state/kinlink.db"))
            .await
            .unwrap();
        let counts = store.table_counts().await.unwrap();
        assert_eq!(
            (counts.attendance_marks, counts.mentions, counts.quarantined),
            (2, 1, 1)
        );
        let ledger = store.ledger("mis").await.unwrap();
        assert_eq!(ledger.len(), 1, "a 304 adds no ledger row: {ledger:?}");
        assert_eq!(ledger[0].status, "ingested");
        store.close().await;
    })
    .await;
}

/// `alerts list --format json` has exactly the shape of docs/feeds.md; `alerts ack` and
/// `audit` work through the binary, and bad arguments exit 2 with the fix.
#[test]
fn alerts_list_json_ack_and_audit_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = Command::new(KINLINK)
        .args([
            "--as-of",
            "2026-11-20",
            "demo",
            "--families",
            "400",
            "--dir",
        ])
        .arg(&demo)
        .env_remove("KINLINK_CONFIG")
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Evaluating the rules for 2026-11-20"));
    let config = demo.join("kinlink.toml");

    let out = kinlink(&config, &["alerts", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alerts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alerts = alerts.as_array().unwrap();
    assert!(!alerts.is_empty(), "the demo borough raises alerts");
    let keys = [
        "family_id",
        "id",
        "locality",
        "raised_at",
        "recipients",
        "records",
        "rule",
        "school_urn",
        "severity",
        "status",
        // Staff addresses that refused it for good (empty: none did).
        "undelivered",
    ];
    for a in alerts {
        let mut got: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, keys, "{a}");
        assert!(["info", "priority", "urgent"].contains(&a["severity"].as_str().unwrap()));
        // The demo sends its digests: every alert went out.
        assert_eq!(a["status"], "sent");
        assert_eq!(a["undelivered"], serde_json::json!([]));
        assert!(a["id"].is_i64());
        let records = a["records"].as_array().unwrap();
        assert!(!records.is_empty(), "{a}");
        for r in records {
            assert!(["attendance", "police_da", "housing", "assessment"]
                .contains(&r["kind"].as_str().unwrap()));
            assert!(r["id"].is_string());
        }
        if a["rule"] == "attendance_drop" {
            assert_eq!(a["school_urn"].as_str().unwrap().len(), 6, "{a}");
        }
        chrono::DateTime::parse_from_rfc3339(a["raised_at"].as_str().unwrap()).unwrap();
    }
    let first = &alerts[0];
    let id = first["id"].as_i64().unwrap().to_string();

    let out = kinlink(
        &config,
        &[
            "alerts",
            "ack",
            &format!("A{id}"),
            "--by",
            "worker@example.gov.uk",
            "--note",
            "on it",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kinlink(
        &config,
        &[
            "alerts",
            "list",
            "--status",
            "acknowledged",
            "--format",
            "json",
        ],
    );
    let acked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(acked.as_array().unwrap().len(), 1);
    assert_eq!(acked[0]["id"], first["id"]);
    let out = kinlink(
        &config,
        &["--as-of", "2026-11-20", "status", "--format", "json"],
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["alerts"]["acknowledged"], 1);
    // Fed today: fresh; three days on with nothing new, every source is stale.
    assert!(status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["stale"] == false && s["stale_after_hours"] == 36));
    let out = kinlink(
        &config,
        &["--as-of", "2026-11-23", "status", "--format", "json"],
    );
    let later: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(later["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["stale"] == true));
    assert_eq!(status["alerts"]["sent"], alerts.len() as i64 - 1);
    assert_eq!(status["alerts"]["pending_deliveries"], 0);

    let out = kinlink(
        &config,
        &["alerts", "ack", &id, "--by", "not-an-email", "--note", "x"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not an email address"));
    let out = kinlink(&config, &["alerts", "list", "--rule", "da_notificaton"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("da_notification"),
        "{}",
        text(&out.stderr)
    );

    let recipient = first["recipients"][0].as_str().unwrap();
    let out = kinlink(
        &config,
        &["audit", "--recipient", recipient, "--format", "json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["alert_id"] == first["id"] && r["recipient"] == recipient));
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["alert_id"] == first["id"] && r["event"] == "sent" && r["detail"] == "minimal"));
    if let Some(f) = first["family_id"].as_i64() {
        let out = kinlink(&config, &["audit", "--family", &format!("F{f}")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(recipient));
    }
    let out = kinlink(&config, &["audit"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--family or --recipient is required"
    );
}

/// Runs `kinlink --config <config> <args…>`, failing the test if it has not exited
/// within `secs` (a FIFO read by mistake would hang it).
fn kinlink_within(config: &Path, args: &[&str], secs: u64) -> std::process::Output {
    let child = Command::new(KINLINK)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("KINLINK_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the kinlink binary");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("wait for kinlink"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("kinlink {args:?} did not exit within {secs} s");
        }
    }
}

/// Every regular file under `dir` (symlinks not followed, FIFOs not opened) whose
/// bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A symlink in the inbox to a private file is refused unread: its content appears
/// nowhere (rejected/, stdout, stderr, state dir, store). A FIFO does not hang the
/// run. What kinlink writes is private: files 0600, folders 0700.
async fn symlinks_and_fifos_on(backend: &str, dir: &Path, database_url: &str, store: Store) {
    const CANARY: &str = "CANARY-PRIVATE-7f3a9c";
    let private = dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    let secret = private.join("payroll.csv");
    std::fs::write(
        &secret,
        format!("{CANARY},Alice,Example,1980-01-01\nrow,2\n"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let columns = kinlink::demo::write_attendance(&inbox.join("good.csv"), Format::Csv, 20, 3)
        .expect("write the good file");
    let config = dir_config(dir, database_url, &columns_toml(&columns));
    std::fs::write(inbox.join("bad.csv"), "not,the,right,header\n1,2,3,4\n").unwrap();
    std::os::unix::fs::symlink(&secret, inbox.join("link.csv")).unwrap();
    let fifo = inbox.join("pipe.csv");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let out = kinlink_within(&config, &["ingest"], 60);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{backend}: {stdout}\n{stderr}");
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "{backend}: {stdout}\n{stderr}"
    );
    for entry in ["link.csv", "pipe.csv"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("REFUSED") && l.contains(entry)),
            "{backend}: {entry} not reported: {stdout}"
        );
    }
    assert!(
        stdout.contains("a symlink") && stdout.contains("a FIFO"),
        "{stdout}"
    );
    // Anywhere kinlink could have written it: the inbox and its sub-folders, the
    // state dir (raw copies, the SQLite database and its WAL, the outbox).
    let leaked = [
        files_containing(&inbox, CANARY.as_bytes()),
        files_containing(&dir.join("state"), CANARY.as_bytes()),
    ]
    .concat();
    assert!(
        leaked.is_empty(),
        "{backend}: the private file's content is in {leaked:?}"
    );
    // Refused entries are left alone; the private file is untouched.
    assert!(std::fs::symlink_metadata(inbox.join("link.csv"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(&fifo).is_ok());
    assert!(std::fs::read_to_string(&secret)
        .unwrap()
        .starts_with(CANARY));
    // Only the two real files reached the ledger.
    let mut names: Vec<String> = store
        .ledger("schools")
        .await
        .unwrap()
        .into_iter()
        .map(|f| format!("{} {}", f.original_name, f.status))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["bad.csv rejected", "good.csv ingested"],
        "{backend}"
    );

    // What kinlink made is private to the service user.
    let state = dir.join("state");
    for folder in [
        state.join("raw"),
        state.join("raw/schools"),
        inbox.join("archive"),
        inbox.join("rejected"),
    ] {
        assert_eq!(mode(&folder), 0o700, "{backend}: {}", folder.display());
    }
    let raw_files: Vec<PathBuf> = std::fs::read_dir(state.join("raw/schools"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(raw_files.len(), 2, "{backend}: {raw_files:?}");
    for file in raw_files
        .iter()
        .chain([&inbox.join("rejected/bad.csv.reason.txt")])
    {
        assert_eq!(mode(file), 0o600, "{backend}: {}", file.display());
    }
    if backend == "sqlite" {
        assert_eq!(mode(&state.join("kinlink.db")), 0o600);
    }
    store.close().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_symlinks_and_fifos_are_refused_unread_and_what_kinlink_writes_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let store = Store::open_sqlite(&sqlite_dir.join("state/kinlink.db"))
        .await
        .unwrap();
    symlinks_and_fifos_on("sqlite", &sqlite_dir, "sqlite://kinlink.db", store).await;
    if let Some(store) = fresh_postgres("symlinks").await {
        let pg_dir = dir.path().join("postgres");
        std::fs::create_dir_all(&pg_dir).unwrap();
        let url = kinlink_test_support::with_database(&postgres_url(), "kinlink_it_symlinks");
        symlinks_and_fifos_on("postgres", &pg_dir, &url, store).await;
    }
}

// ------------------------------------------------------- SIGTERM while fetching

/// An attendance CSV source fetched from `url`, retries and long timeouts as in
/// production (so only the signal can end the fetch quickly).
fn http_config(dir: &Path, database_url: &str, url: &str, paged: bool) -> PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let path = dir.join("kinlink.toml");
    let format = if paged {
        "format = \"json\"\nrecords_path = \"data\"\nnext_path = \"next\"\n"
    } else {
        "format = \"csv\"\n"
    };
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\ndatabase_url = {database_url:?}\n\n\
             [[source]]\nname = \"mis\"\nkind = \"attendance\"\n{format}\
             transport = {{ type = \"http\", url = {url:?}, timeout_secs = 600, retries = 5 }}\n"
        ),
    )
    .unwrap();
    path
}

/// Starts `kinlink <args>` against `config`, waits until `server` has had
/// `requests` requests (plus a moment), sends SIGTERM, and returns the exit status,
/// the time from signal to exit, and stderr.
async fn sigterm_while_fetching(
    config: &Path,
    args: &[&str],
    server: &FeedServer,
    requests: usize,
) -> (std::process::ExitStatus, Duration, String, String) {
    let dir = config.parent().unwrap();
    let err_path = dir.join(format!("{}.err", args[0]));
    let out_path = dir.join(format!("{}.out", args[0]));
    let mut child = Command::new(KINLINK)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("KINLINK_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start kinlink");
    let t0 = Instant::now();
    while server.requests().len() < requests {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "kinlink exited ({status}) before SIGTERM: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no request arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Inside the fetch now: the body, the page or the retry wait is pending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("kinlink did not exit within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (
        status,
        signalled.elapsed(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
        std::fs::read_to_string(&out_path).unwrap_or_default(),
    )
}

async fn sigterm_while_fetching_on(backend: &str, dir: &Path, database_url: &str, store: Store) {
    let server = FeedServer::start().await;
    // Headers and the first bytes, then the body stalls for ten minutes.
    server.route(
        "/stalled.csv",
        [Reply::ok(vec![b'x'; 4096]).stall_after(100, Duration::from_secs(600))],
    );
    // Pages arrive slowly: page 1 at once, page 2 after ten minutes.
    server.route(
        "/pages",
        [Reply::json(&json!({"data": [], "next": "/pages/2"}))],
    );
    server.route(
        "/pages/2",
        [Reply::json(&json!({"data": [], "next": null})).delay(Duration::from_secs(600))],
    );
    // Busy: come back in five minutes.
    server.route(
        "/busy.csv",
        [Reply::status(503).header("Retry-After", "300")],
    );

    let cases = [
        ("stalled body", "/stalled.csv", false, 1, "ingest"),
        ("slow pagination", "/pages", true, 2, "ingest"),
        ("retry wait", "/busy.csv", false, 1, "ingest"),
        ("stalled body", "/stalled.csv", false, 1, "run-once"),
    ];
    for (i, (what, path, paged, requests, command)) in cases.into_iter().enumerate() {
        let case_dir = dir.join(format!("case{i}"));
        let config = http_config(&case_dir, database_url, &server.url(path), paged);
        let before = server.requests().len();
        let (status, took, stderr, stdout) =
            sigterm_while_fetching(&config, &[command], &server, before + requests).await;
        let label = format!("{backend}, {command}, {what}");
        assert_eq!(
            status.code(),
            Some(0),
            "{label}: {status:?}\n{stderr}\n{stdout}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{label}: exited {took:?} after SIGTERM"
        );
        assert!(
            stderr.contains("stopped by SIGTERM/SIGINT"),
            "{label}: {stderr}"
        );
        if command == "run-once" {
            assert!(stdout.contains("ingest    stopped"), "{label}: {stdout}");
        }
        // Nothing half-stored: no raw file or scrap, no ledger row.
        let raw = case_dir.join("state/raw/mis");
        let left: Vec<_> = std::fs::read_dir(&raw)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{label}: {left:?}");
        assert!(store.ledger("mis").await.unwrap().is_empty(), "{label}");
        eprintln!("{label}: exit 0 {took:?} after SIGTERM");
    }
    store.close().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_ingest_and_run_once_within_seconds_while_fetching_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(sqlite_dir.join("state")).unwrap();
    // One database for every case: each case's config names it by absolute path.
    let db = sqlite_dir.join("state/kinlink.db");
    let store = Store::open_sqlite(&db).await.unwrap();
    let url = format!("sqlite://{}", db.display());
    sigterm_while_fetching_on("sqlite", &sqlite_dir, &url, store).await;
    if let Some(store) = fresh_postgres("sigterm_fetch").await {
        let pg_dir = dir.path().join("postgres");
        std::fs::create_dir_all(&pg_dir).unwrap();
        let url = kinlink_test_support::with_database(&postgres_url(), "kinlink_it_sigterm_fetch");
        sigterm_while_fetching_on("postgres", &pg_dir, &url, store).await;
    }
}
