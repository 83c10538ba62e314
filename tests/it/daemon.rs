//! The built `kinlink run` daemon, driven the way systemd drives it: a config on
//! disk, `$NOTIFY_SOCKET` to read its sd-notify messages from, SIGHUP to reload,
//! SIGTERM to stop. The waits poll with generous timeouts; nothing depends on a
//! sleep being long enough.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kinlink::store::{RunOutcome, Store};

const KINLINK: &str = env!("CARGO_BIN_EXE_kinlink");

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let path = dir.join("kinlink.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\ndatabase_url = \"sqlite://kinlink.db\"\n{extra}\n\
             [mail]\ntransport = \"file\"\nfrom = \"Early Help <eh@example.gov.uk>\"\n\
             file_dir = \"outbox\"\nadmin = [\"admin@example.gov.uk\"]\n"
        ),
    )
    .unwrap();
    path
}

fn write_job(dir: &Path, name: &str, schedule: &str, steps: &str) {
    std::fs::write(
        dir.join("jobs").join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\nschedule = \"{schedule}\"\nsteps = {steps}\ncatch_up = false\n"
        ),
    )
    .unwrap();
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
}

/// Polls `check` every 100 ms until it holds or `secs` pass.
pub(crate) fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reads the notify socket as systemd does, promptly (the daemon drops messages
/// once a few unread datagrams queue up), into a shared list.
fn listen_notify(socket: UnixDatagram) -> Arc<Mutex<Vec<String>>> {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = messages.clone();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends when the test (and its temp dir) is gone.
        for _ in 0..3000 {
            if let Ok(n) = socket.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    messages
}

fn notify_lines(messages: &Mutex<Vec<String>>) -> Vec<String> {
    messages
        .lock()
        .unwrap()
        .iter()
        .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_its_jobs_reloads_on_sighup_keeps_a_bad_config_and_stops_cleanly_on_sigterm(
) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    write_job(
        dir.path(),
        "every-second",
        "* * * * * *",
        "[\"ingest\", \"link\", \"evaluate\"]",
    );
    let socket_path = dir.path().join("notify.sock");
    let messages = listen_notify(UnixDatagram::bind(&socket_path).unwrap());
    let log_path = dir.path().join("daemon.log");
    let mut child = Command::new(KINLINK)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("KINLINK_CONFIG")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("KINLINK_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start kinlink run");

    // READY=1 once config, jobs and migrations are done; then runs that finish.
    wait_for(60, "READY=1", || {
        notify_lines(&messages).iter().any(|l| l == "READY=1")
    });
    wait_for(60, "a finished run in the log", || {
        log_text(&log_path).contains("Job run finished")
    });

    // SIGHUP with a broken config: reported, the old config kept, runs go on.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "\nbogus_key = 1\n",
    )
    .unwrap();
    signal(&child, "HUP");
    wait_for(30, "the bad reload to be reported", || {
        log_text(&log_path).contains("keeping the running ones")
    });
    let finished_before = log_text(&log_path).matches("Job run finished").count();
    wait_for(30, "runs to go on after the bad reload", || {
        log_text(&log_path).matches("Job run finished").count() > finished_before
    });

    // SIGHUP with a sound config and a second job: reloaded.
    write_config(dir.path(), "");
    write_job(dir.path(), "second", "*/2 * * * * *", "[\"link\"]");
    signal(&child, "HUP");
    wait_for(30, "the reload", || {
        log_text(&log_path).contains("Config and jobs reloaded")
    });
    let store = Store::open_sqlite(&dir.path().join("state/kinlink.db"))
        .await
        .unwrap();
    wait_for(30, "the second job to run", || {
        futures_ready(store.runs_of("second")).is_some_and(|rows| !rows.is_empty())
    });

    // SIGTERM: exit 0 within a few seconds, every run row closed.
    signal(&child, "TERM");
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!(
                "kinlink run did not stop within 20 s of SIGTERM:\n{}",
                log_text(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log_text(&log_path);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("kinlink daemon stopped"), "{log}");

    let rows = store.runs_of("every-second").await.unwrap();
    assert!(
        rows.iter().any(|r| r.outcome == Some(RunOutcome::Ok)),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .all(|r| r.outcome.is_some() && r.finished_at.is_some()),
        "a run row was left open: {rows:#?}"
    );
    let steps: serde_json::Value = serde_json::from_str(&rows[0].steps).unwrap();
    assert_eq!(steps.as_array().unwrap().len(), 3, "{steps}");

    // What systemd heard: ready, reloading and ready again, a status line, stopping.
    wait_for(10, "STOPPING=1", || {
        notify_lines(&messages).iter().any(|l| l == "STOPPING=1")
    });
    let lines = notify_lines(&messages);
    for expected in ["READY=1", "RELOADING=1", "STOPPING=1"] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected} not in {lines:?}"
        );
    }
    assert!(
        lines.iter().filter(|l| *l == "READY=1").count() >= 3,
        "READY=1 after start and after each reload: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("every-second")),
        "{lines:?}"
    );

    // `status` shows the job's last and next run.
    let out = Command::new(KINLINK)
        .arg("--config")
        .arg(&config)
        .args(["status", "--format", "json"])
        .env_remove("KINLINK_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "every-second")
        .unwrap()
        .clone();
    assert!(job["last_run"]["outcome"].is_string(), "{job}");
    assert!(job["next_run"].is_string(), "{job}");
}

#[test]
fn a_notify_socket_nobody_reads_does_not_hold_up_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    write_job(dir.path(), "every-second", "* * * * * *", "[\"link\"]");
    // Bound, never read: its queue is full after a few of the daemon's messages.
    let socket_path = dir.path().join("notify.sock");
    let _socket = UnixDatagram::bind(&socket_path).unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut child = Daemon(
        Command::new(KINLINK)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env_remove("KINLINK_CONFIG")
            .env_remove("WATCHDOG_PID")
            .env("NOTIFY_SOCKET", &socket_path)
            // A watchdog ping on every loop on top of STATUS lines: the queue fills
            // within the first runs.
            .env("WATCHDOG_USEC", "1000000")
            .env("KINLINK_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start kinlink run"),
    );
    wait_for(90, "runs to go on with the notify socket full", || {
        log_text(&log_path).matches("Job run finished").count() >= 8
    });
    signal(&child.0, "TERM");
    let status = wait_exit(&mut child.0, 20, &log_path);
    let log = log_text(&log_path);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("kinlink daemon stopped"), "{log}");
}

/// Runs a store query to completion from the synchronous polling loop.
fn futures_ready<T>(
    fut: impl std::future::Future<Output = Result<T, kinlink::store::StoreError>>,
) -> Option<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut)).ok()
}

#[test]
fn run_once_runs_every_stage_in_order_and_a_rejected_file_does_not_fail_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let columns = kinlink::demo::write_attendance(
        &dir.path().join("inbox/good.csv"),
        kinlink::domain::Format::Csv,
        200,
        1,
    )
    .unwrap();
    // A file without the source's columns is rejected whole.
    std::fs::write(dir.path().join("inbox/wrong.csv"), "a,b\n1,2\n").unwrap();
    let columns: String = columns
        .iter()
        .map(|(canonical, header)| format!("{canonical} = {header:?}\n"))
        .collect();
    let config = write_config(
        dir.path(),
        &format!(
            "[[source]]\nname = \"schools\"\nkind = \"attendance\"\nformat = \"csv\"\n\
             transport = {{ type = \"dir\", path = \"inbox\", settle_secs = 0 }}\n[source.columns]\n{columns}"
        ),
    );
    let out = Command::new(KINLINK)
        .arg("--config")
        .arg(&config)
        .args(["run-once", "--format", "json"])
        .env_remove("KINLINK_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let stages: Vec<(&str, &str)> = doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            ("ingest", "ok"),
            ("link", "ok"),
            ("evaluate", "ok"),
            ("send", "ok")
        ]
    );
    let ingest = doc["stages"][0]["detail"].as_str().unwrap();
    assert!(
        ingest.contains("1 file(s) ingested") && ingest.contains("1 file(s) rejected"),
        "{ingest}"
    );
}

/// A `[[source]]` of attendance CSVs dropped in `inbox/`, with the generator's columns.
fn attendance_source(columns: &std::collections::BTreeMap<String, String>) -> String {
    let columns: String = columns
        .iter()
        .map(|(canonical, header)| format!("{canonical} = {header:?}\n"))
        .collect();
    format!(
        "[[source]]\nname = \"schools\"\nkind = \"attendance\"\nformat = \"csv\"\n\
         transport = {{ type = \"dir\", path = \"inbox\", settle_secs = 0 }}\n[source.columns]\n{columns}"
    )
}

/// A started daemon, killed if the test fails before it exits.
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for a child to exit; kills it and fails with its log after `secs`.
pub(crate) fn wait_exit(child: &mut Child, secs: u64, log_path: &Path) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!(
                "kinlink did not exit within {secs} s:\n{}",
                log_text(log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `kinlink ingest --format json`: the outcomes of the files it handled.
fn ingest_outcomes(config: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(KINLINK)
        .arg("--config")
        .arg(config)
        .args(["ingest", "--format", "json"])
        .env_remove("KINLINK_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    doc["files"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_ingest_rolls_the_file_back_and_the_next_run_ingests_it_exactly_once() {
    // Big enough that storing it takes seconds in a debug build: SIGTERM lands
    // while its rows are being written.
    const ROWS: usize = 300_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let inbox_file = dir.path().join("inbox/marks.csv");
    let columns =
        kinlink::demo::write_attendance(&inbox_file, kinlink::domain::Format::Csv, ROWS, 7)
            .unwrap();
    let config = write_config(dir.path(), &attendance_source(&columns));
    write_job(dir.path(), "every-second", "* * * * * *", "[\"ingest\"]");
    let log_path = dir.path().join("daemon.log");
    let mut child = Daemon(
        Command::new(KINLINK)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env_remove("KINLINK_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("KINLINK_LOG", "info,kinlink::pipeline=debug,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start kinlink run"),
    );

    // The file's transaction is open and taking rows: stop the daemon.
    wait_for(120, "the file's rows to be stored", || {
        log_text(&log_path).contains("Storing the file's rows in one transaction")
    });
    signal(&child.0, "TERM");
    let t0 = Instant::now();
    let status = wait_exit(&mut child.0, 30, &log_path);
    let stopped_in = t0.elapsed();
    let log = log_text(&log_path);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("kinlink daemon stopped"), "{log}");
    assert!(
        !log.contains("Drain deadline passed"),
        "the step stopped by itself, not at the deadline: {log}"
    );
    assert!(
        stopped_in < Duration::from_secs(10),
        "stopped {stopped_in:?} after SIGTERM"
    );
    // It stopped part-way through the file, not before or after it.
    let rolled_back = log
        .lines()
        .find(|l| l.contains("the file's transaction was rolled back"))
        .unwrap_or_else(|| panic!("no rollback logged: {log}"));
    let rows_before_stop: usize = rolled_back
        .split("rows=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{rolled_back}"));
    assert!(
        rows_before_stop > 0 && rows_before_stop < ROWS,
        "{rolled_back}"
    );
    eprintln!("SIGTERM after {rows_before_stop} of {ROWS} rows; exited in {stopped_in:?}");

    // Nothing of the file committed; it is waiting in the ledger and in the inbox.
    let store = Store::open_sqlite(&dir.path().join("state/kinlink.db"))
        .await
        .unwrap();
    let counts = store.table_counts().await.unwrap();
    assert_eq!((counts.attendance_marks, counts.mentions), (0, 0));
    let ledger = store.ledger("schools").await.unwrap();
    let statuses: Vec<&str> = ledger.iter().map(|f| f.status.as_str()).collect();
    assert_eq!(statuses, ["fetched"]);
    assert!(inbox_file.exists());
    assert!(!dir.path().join("inbox/archive").join("marks.csv").exists());
    assert!(!dir.path().join("inbox/rejected").exists());
    let runs = store.runs_of("every-second").await.unwrap();
    let last = runs.last().unwrap();
    assert_eq!(last.outcome, Some(RunOutcome::Interrupted), "{runs:#?}");
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("stopped by shutdown")),
        "{runs:#?}"
    );
    assert!(runs.iter().all(|r| r.finished_at.is_some()), "{runs:#?}");
    store.close().await;

    // The next run ingests it, once: the waiting file is resumed and the inbox
    // copy is recognised as the same content.
    next_ingests_store_the_file_once(dir.path(), &config, &inbox_file, ROWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_file_stops_kinlink_ingest_cleanly_and_the_next_ingest_stores_it_exactly_once()
{
    // As above: storing it takes seconds in a debug build.
    const ROWS: usize = 300_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let inbox_file = dir.path().join("inbox/marks.csv");
    let columns =
        kinlink::demo::write_attendance(&inbox_file, kinlink::domain::Format::Csv, ROWS, 11)
            .unwrap();
    let config = write_config(dir.path(), &attendance_source(&columns));
    let log_path = dir.path().join("ingest.log");
    let stdout_path = dir.path().join("ingest.out");
    let mut child = Daemon(
        Command::new(KINLINK)
            .arg("--config")
            .arg(&config)
            .args(["ingest", "--format", "json"])
            .env_remove("KINLINK_CONFIG")
            .env("KINLINK_LOG", "info,kinlink::pipeline=debug,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start kinlink ingest"),
    );

    wait_for(120, "the file's rows to be stored", || {
        log_text(&log_path).contains("Storing the file's rows in one transaction")
    });
    signal(&child.0, "TERM");
    let t0 = Instant::now();
    let status = wait_exit(&mut child.0, 30, &log_path);
    let stopped_in = t0.elapsed();
    let log = log_text(&log_path);
    // A clean stop, as the daemon's: exit 0 (not killed by the signal), saying so.
    assert_eq!(status.code(), Some(0), "{status:?}\n{log}");
    assert!(
        log.contains("stopped by SIGTERM/SIGINT: the file in progress was rolled back"),
        "{log}"
    );
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopped {stopped_in:?} after SIGTERM"
    );
    assert!(
        log.contains("the file's transaction was rolled back"),
        "{log}"
    );
    // No report on stdout: nothing was completed by this run.
    assert_eq!(log_text(&stdout_path), "");
    eprintln!("kinlink ingest exited {stopped_in:?} after SIGTERM");

    // Nothing stored; the file waits in the ledger and in the inbox.
    let store = Store::open_sqlite(&dir.path().join("state/kinlink.db"))
        .await
        .unwrap();
    let counts = store.table_counts().await.unwrap();
    assert_eq!((counts.attendance_marks, counts.mentions), (0, 0));
    let ledger = store.ledger("schools").await.unwrap();
    let statuses: Vec<&str> = ledger.iter().map(|f| f.status.as_str()).collect();
    assert_eq!(statuses, ["fetched"]);
    store.close().await;
    assert!(inbox_file.exists());
    assert!(!dir.path().join("inbox/archive/marks.csv").exists());
    assert!(!dir.path().join("inbox/rejected").exists());

    // The next `kinlink ingest` stores every row, once.
    next_ingests_store_the_file_once(dir.path(), &config, &inbox_file, ROWS).await;
}

/// After a stop mid-file: the next `kinlink ingest` stores every one of `rows` once
/// (the inbox copy counts as a duplicate of the waiting file) and archives it, and a
/// third finds nothing new.
async fn next_ingests_store_the_file_once(
    dir: &Path,
    config: &Path,
    inbox_file: &Path,
    rows: usize,
) {
    let files = ingest_outcomes(config);
    let ingested: Vec<&serde_json::Value> = files
        .iter()
        .filter(|f| f["outcome"] == "ingested")
        .collect();
    assert_eq!(ingested.len(), 1, "{files:#?}");
    assert_eq!(ingested[0]["counts"]["rows_read"], rows, "{files:#?}");
    assert!(
        files
            .iter()
            .all(|f| f["outcome"] == "ingested" || f["outcome"] == "duplicate"),
        "{files:#?}"
    );
    assert!(dir.join("inbox/archive/marks.csv").exists());
    assert!(!inbox_file.exists());
    // A third run finds nothing new.
    assert_eq!(ingest_outcomes(config), Vec::<serde_json::Value>::new());
    let store = Store::open_sqlite(&dir.join("state/kinlink.db"))
        .await
        .unwrap();
    let counts = store.table_counts().await.unwrap();
    assert_eq!(counts.attendance_marks, rows as i64);
    let ledger = store.ledger("schools").await.unwrap();
    let statuses: Vec<&str> = ledger.iter().map(|f| f.status.as_str()).collect();
    assert_eq!(statuses, ["ingested"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_starts_no_stage_once_stopped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let inbox_file = dir.path().join("inbox/marks.csv");
    let columns =
        kinlink::demo::write_attendance(&inbox_file, kinlink::domain::Format::Csv, 50, 3).unwrap();
    let config = write_config(dir.path(), &attendance_source(&columns));
    let settings = kinlink::config::load(&config).unwrap();
    let store = Store::connect(&settings.database, &settings.state_dir)
        .await
        .unwrap();
    let stop = kinlink::shutdown::CancellationToken::new();
    stop.cancel();
    let stages =
        kinlink::app::run_once(settings, &store, kinlink::app::clock_for(None), stop).await;
    let outcomes: Vec<(&str, &str)> = stages.iter().map(|s| (s.step, s.outcome)).collect();
    assert_eq!(outcomes, [("ingest", "stopped")], "{stages:?}");
    assert_eq!(store.table_counts().await.unwrap().attendance_marks, 0);
    store.close().await;
    assert!(inbox_file.exists());
}
