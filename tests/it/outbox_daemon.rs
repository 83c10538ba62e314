//! The built `kinlink run` daemon and the outbox between scheduled sends, on SQLite
//! and PostgreSQL, against the real SMTP server on loopback: a message a killed
//! daemon left in `sending` (its process gone, its 15-minute lease still running)
//! goes out as soon as the daemon starts; a retry that falls due goes out at its
//! time, not at the next scheduled send (01:30) nor the next `retry_every_mins`; and
//! a message another machine's daemon holds is left to it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kinlink::clock::Clock;
use kinlink::mail::{Mailer, OutgoingMessage};
use kinlink::process::ProcessKey;
use kinlink::store::{Claimer, OutboxStatus, Store};

use crate::daemon::{log_text, signal, wait_exit, wait_for, Daemon};
use crate::helpers::within;
use crate::smtp_server::{SmtpOptions, SmtpServer};

const KINLINK: &str = env!("CARGO_BIN_EXE_kinlink");

fn message(to: &str) -> OutgoingMessage {
    OutgoingMessage {
        idempotency_key: format!("digest:{to}:1"),
        to: vec![to.to_string()],
        subject: "1 DA notification for North".into(),
        text: "P1\n".into(),
        html: None,
        inline_images: vec![],
    }
}

/// The config of a daemon mailing through `port`, with one nightly send at 01:30
/// (no catch-up) and an outbox pass only hourly: whatever it sends within seconds
/// of starting it sends because of the outbox pass at start and at due times.
fn write_config(dir: &Path, database_url: &str, port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    std::fs::write(
        dir.join("jobs/nightly.toml"),
        "name = \"nightly\"\nschedule = \"0 30 1 * * *\"\nsteps = [\"send\"]\ncatch_up = false\n",
    )
    .unwrap();
    let path = dir.join("kinlink.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\ndatabase_url = \"{database_url}\"\n\
             [mail]\ntransport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
             smtp_tls = \"none\"\nfrom = \"Early Help <eh@example.gov.uk>\"\n\
             admin = [\"admin@example.gov.uk\"]\nretry_every_mins = 60\n"
        ),
    )
    .unwrap();
    path
}

async fn crash_then_start(backend: &str, dir: &Path, database_url: &str, store: Store) {
    let Some(server) =
        SmtpServer::start("outbox_daemon", &dir.join("smtp"), &SmtpOptions::default()).await
    else {
        return;
    };
    let config = write_config(dir, database_url, server.port);
    let settings = kinlink::config::load(&config).expect("config");
    let mailer = Mailer::new(&settings.mail).unwrap();
    let now = Clock::system();

    // A daemon was killed while sending to the DV champion: its claim stands, its
    // lease has 15 minutes to run, and its process is gone.
    let dead = mailer
        .enqueue(&store, now, &message("dv.north@example.gov.uk"))
        .await
        .unwrap()
        .id;
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let key = ProcessKey::of(victim.id()).expect("a /proc here").encode();
    let claimed = store
        .claim_outbox(
            now.now(),
            Claimer {
                label: "this-host:1",
                key: Some(&key),
            },
        )
        .await
        .unwrap()
        .expect("due");
    assert_eq!(claimed.id, dead);
    victim.kill().unwrap();
    victim.wait().unwrap();

    // Another machine's daemon is sending this one right now: not ours to take.
    let elsewhere = mailer
        .enqueue(&store, now, &message("eh.south@example.gov.uk"))
        .await
        .unwrap()
        .id;
    let claimed = store
        .claim_outbox(
            now.now(),
            Claimer {
                label: "other-host:77",
                key: Some("another-boot-id:4026531836:77:12345"),
            },
        )
        .await
        .unwrap()
        .expect("due");
    assert_eq!(claimed.id, elsewhere);

    // A retry due in a few seconds (a 4xx left it so).
    let due_at = now.now() + chrono::Duration::seconds(6);
    let retry = mailer
        .enqueue(
            &store,
            Clock::fixed(due_at),
            &message("ewo.north@example.gov.uk"),
        )
        .await
        .unwrap()
        .id;

    let log_path = dir.join("daemon.log");
    let started = Instant::now();
    let mut daemon = Daemon(
        Command::new(KINLINK)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env_remove("KINLINK_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("KINLINK_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start kinlink run"),
    );
    let got = |to: &str| {
        server
            .messages()
            .iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == to))
            .count()
    };
    wait_for(30, "the killed daemon's message to go out", || {
        got("dv.north@example.gov.uk") == 1
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{backend}: {took:?}\n{}",
        log_text(&log_path)
    );
    wait_for(30, "the retry to go out when due", || {
        got("ewo.north@example.gov.uk") == 1
    });
    assert!(
        Clock::system().now() >= due_at,
        "{backend}: the retry went before it was due"
    );
    // Give the daemon a moment more: nothing else goes, nothing twice.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(got("dv.north@example.gov.uk"), 1, "{backend}");
    assert_eq!(got("ewo.north@example.gov.uk"), 1, "{backend}");
    assert_eq!(got("eh.south@example.gov.uk"), 0, "{backend}");

    let entries = store.outbox_entries().await.unwrap();
    let by_id = |id: i64| entries.iter().find(|e| e.id == id).unwrap();
    assert_eq!(by_id(dead).status, OutboxStatus::Sent, "{backend}");
    // Taken back as an unknown outcome: a second interruption would park it.
    assert_eq!(by_id(dead).unknown_outcomes, 1, "{backend}");
    assert_eq!(by_id(retry).status, OutboxStatus::Sent, "{backend}");
    assert_eq!(by_id(elsewhere).status, OutboxStatus::Sending, "{backend}");
    let log = log_text(&log_path);
    assert!(
        log.contains("taken back"),
        "{backend}: the take-back is logged\n{log}"
    );
    assert!(
        !log.contains("dv.north"),
        "{backend}: no address in the log"
    );

    signal(&daemon.0, "TERM");
    let status = wait_exit(&mut daemon.0, 90, &log_path);
    assert!(status.success(), "{backend}: {status:?}");
    server.stop().await;
    store.close().await;
}

#[tokio::test]
async fn the_daemon_sends_what_a_killed_run_left_at_start_and_due_retries_between_sends() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = dir.path().join("sqlite");
        std::fs::create_dir_all(sqlite.join("state")).unwrap();
        let store = Store::open_sqlite(&sqlite.join("state/kinlink.db"))
            .await
            .unwrap();
        crash_then_start("sqlite", &sqlite, "sqlite://kinlink.db", store).await;

        let name = "outbox_daemon_start";
        if let Some(store) = crate::backends::fresh_postgres(name).await {
            let url = kinlink_test_support::with_database(
                &crate::backends::postgres_url(),
                &format!("kinlink_it_{name}"),
            );
            let pg = dir.path().join("postgres");
            crash_then_start("postgres", &pg, &url, store).await;
        }
    })
    .await;
}
