//! Undelivered mail told to the admin list, against the real SMTP server on loopback
//! (aiosmtpd, see `smtp_server`), on SQLite and PostgreSQL: a digest refused with a
//! 5xx is reported once with its outbox id and the server's reply (the scheduler's
//! send step, through `run_once`); a refused recipient among accepted ones is the
//! only one named, and reported again after `outbox retry` fails again; a notice
//! that cannot be delivered itself is not reported by another; `kinlink send`
//! prints it all, and with no admin list it waits until one is set.

use std::path::Path;

use kinlink::app::{run_once, StageResult};
use kinlink::config::{DetailLevel, MailTransport, Settings, SmtpSettings, SmtpTls};
use kinlink::mail::undelivered::is_failure_notice;
use kinlink::mail::{send_step, Mailer, OutgoingMessage, SendOptions, SendReport};
use kinlink::shutdown::CancellationToken;
use kinlink::store::{OutboxEntry, OutboxStatus, RecipientStatus, RetryOutcome, Store};

use crate::alerts::{clock, Borough};
use crate::backends::stores;
use crate::digests::north_family;
use crate::helpers::within;
use crate::smtp_server::{Received, SmtpOptions, SmtpServer};

fn smtp(port: u16) -> MailTransport {
    MailTransport::Smtp(SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        user: None,
        password: None,
        ca_file: None,
    })
}

/// The borough of the alert tests, mailing through the loopback server at full
/// detail, so its digests name the children a notice must not.
fn borough(dir: &Path, backend: &str, port: u16) -> Borough {
    let mut b = Borough::new(dir, backend);
    b.settings.mail.transport = smtp(port);
    b.settings.mail.detail = DetailLevel::Full;
    b
}

/// A message as the server got it, its body decoded where lettre chose
/// quoted-printable (long lines).
fn decoded(m: &Received) -> String {
    let data = m.data.replace("=\r\n", "");
    if !data.contains("Content-Transfer-Encoding: quoted-printable") {
        return data;
    }
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The notices of undelivered mail the server accepted.
fn notices(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(decoded)
        .filter(|t| t.contains("could not be delivered\r\n") && t.contains("Subject: kinlink: "))
        .collect()
}

async fn notice_entries(store: &Store) -> Vec<OutboxEntry> {
    store
        .outbox_entries()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| is_failure_notice(&e.idempotency_key))
        .collect()
}

/// A loopback SMTP server for `backend` that refuses `refused`; `None` where no
/// server can run here (printed by `SmtpServer::start`).
async fn refusing(name: &str, dir: &Path, backend: &str, refused: &[&str]) -> Option<SmtpServer> {
    let options = SmtpOptions {
        reject_rcpt: refused.iter().map(|r| r.to_string()).collect(),
        ..SmtpOptions::default()
    };
    SmtpServer::start(name, &dir.join(format!("{backend}-smtp")), &options).await
}

/// The nightly job's stages on 20 November, as the scheduler runs them.
async fn night(b: &Borough, store: &Store) -> Vec<StageResult> {
    run_once(
        b.settings.clone(),
        store,
        clock("2026-11-20"),
        CancellationToken::new(),
    )
    .await
}

fn send_stage(stages: &[StageResult]) -> &StageResult {
    stages
        .iter()
        .find(|s| s.step == "send")
        .unwrap_or_else(|| panic!("no send stage: {stages:?}"))
}

async fn send(settings: &Settings, store: &Store, minutes: i64) -> SendReport {
    let mailer = Mailer::new(&settings.mail).expect("mailer");
    let at = kinlink::clock::Clock::fixed(
        clock("2026-11-20").now() + chrono::Duration::minutes(minutes),
    );
    send_step(&mailer, store, at, settings, &SendOptions::default())
        .await
        .expect("send")
}

#[tokio::test]
async fn a_refused_digest_is_told_to_the_admin_once_with_its_id_and_reply() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let name = "undelivered_refused_digest";
        for (backend, store) in stores(name, dir.path()).await {
            let Some(server) =
                refusing(name, dir.path(), backend, &["dv.north@example.gov.uk"]).await
            else {
                return;
            };
            let b = borough(dir.path(), backend, server.port);
            north_family(&b);

            // The scheduler's send step, as the nightly job runs it.
            let stages = night(&b, &store).await;
            let stage = send_stage(&stages);
            assert_eq!(stage.outcome, "ok", "{backend}: {stages:?}");
            assert!(
                stage
                    .detail
                    .ends_with("; admin list told of 1 undelivered email(s)"),
                "{backend}: {}",
                stage.detail
            );
            let entries = store.outbox_entries().await.unwrap();
            let dv = entries
                .iter()
                .find(|e| e.recipients[0].address == "dv.north@example.gov.uk")
                .expect("the DV champion's digest");
            assert_eq!(dv.status, OutboxStatus::Failed, "{backend}");
            assert!(dv.recipients[0].failure_notified_at.is_some(), "{backend}");

            let got = server.messages();
            // The others got their digests; the refused one is not retried.
            assert!(
                got.iter()
                    .any(|m| m.rcpt_tos == ["eh.north@example.gov.uk"]),
                "{backend}"
            );
            assert!(got
                .iter()
                .all(|m| !m.rcpt_tos.contains(&"dv.north@example.gov.uk".to_string())));
            let told = notices(&got);
            assert_eq!(told.len(), 1, "{backend}: one notice");
            let notice = got
                .iter()
                .find(|m| decoded(m) == told[0])
                .expect("the notice");
            assert_eq!(notice.rcpt_tos, ["admin@example.gov.uk"], "{backend}");
            let text = &told[0];
            for line in [
                "Subject: kinlink: 1 email could not be delivered\r\n".to_string(),
                format!(
                    "1. Outbox #{}, a digest: not delivered to 1 recipient\r\n",
                    dv.id
                ),
                "   Not delivered to: dv.north@example.gov.uk\r\n".to_string(),
                "   Server's reply:   550 5.1.1 <dv.north@example.gov.uk>: recipient unknown\r\n"
                    .to_string(),
                format!("`kinlink outbox show {}`", dv.id),
                format!("`kinlink outbox retry {}`", dv.id),
            ] {
                assert!(text.contains(&line), "{backend}: {line:?} in\n{text}");
            }
            // The digest named the family; the notice, built from outbox rows, does not.
            let digest = got
                .iter()
                .find(|m| m.rcpt_tos == ["eh.north@example.gov.uk"])
                .map(decoded)
                .unwrap();
            assert!(
                digest.contains("P4 Dawn Mill, 1 Mill Lane"),
                "{backend}: full detail\n{digest}"
            );
            for secret in ["Amy", "Dawn", "Mill", "Ivy", "Far Road", "eh.north"] {
                assert!(!text.contains(secret), "{backend}: {secret} in\n{text}");
            }

            // A second run reports nothing again.
            let stages = night(&b, &store).await;
            let stage = send_stage(&stages);
            assert_eq!(stage.outcome, "ok", "{backend}: {stages:?}");
            assert!(!stage.detail.contains("admin list"), "{backend}: {stage:?}");
            assert_eq!(notices(&server.messages()).len(), 1, "{backend}");
            assert_eq!(notice_entries(&store).await.len(), 1, "{backend}");
            server.stop().await;
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_recipient_among_accepted_ones_is_the_only_one_reported() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let name = "undelivered_one_of_two";
        for (backend, store) in stores(name, dir.path()).await {
            let Some(server) = refusing(name, dir.path(), backend, &["gone@example.gov.uk"]).await else {
                return;
            };
            let mut settings = crate::helpers::settings(&dir.path().join(backend), vec![]);
            settings.mail.transport = smtp(server.port);
            let mailer = Mailer::new(&settings.mail).unwrap();
            let id = mailer
                .enqueue(
                    &store,
                    clock("2026-11-20"),
                    &OutgoingMessage {
                        idempotency_key: "digest:two:1".into(),
                        to: vec!["kept@example.gov.uk".into(), "gone@example.gov.uk".into()],
                        subject: "1 DA notification for North".into(),
                        text: "P1 Amy Mill, born 1 Sep 2016\n".into(),
                        html: None,
                        inline_images: vec![],
                    },
                )
                .await
                .unwrap()
                .id;

            let r = send(&settings, &store, 0).await;
            let drain = r.drain.as_ref().unwrap();
            assert_eq!(drain.sent[0].recipients, ["kept@example.gov.uk"], "{backend}");
            assert_eq!(
                (r.failure_notice.messages, r.failure_notice.recipients),
                (1, 1),
                "{backend}: {r:?}"
            );
            assert_eq!(r.failure_notice.notices.len(), 1, "{backend}");
            let (entry, _) = store.outbox_message(id).await.unwrap();
            assert_eq!(entry.status, OutboxStatus::Sent, "{backend}");
            assert_eq!(entry.recipients[1].status, RecipientStatus::Failed);
            assert!(entry.recipients[0].failure_notified_at.is_none());
            assert!(entry.recipients[1].failure_notified_at.is_some());
            let got = server.messages();
            assert_eq!(got[0].rcpt_tos, ["kept@example.gov.uk"], "{backend}");
            let told = notices(&got);
            assert_eq!(told.len(), 1, "{backend}");
            assert!(
                told[0].contains(&format!(
                    "Outbox #{id}, a digest: not delivered to 1 recipient; delivered to 1 other\r\n"
                )),
                "{backend}: {}",
                told[0]
            );
            assert!(told[0].contains("Not delivered to: gone@example.gov.uk\r\n"));
            assert!(told[0].contains("550 5.1.1 <gone@example.gov.uk>: recipient unknown"));
            assert!(!told[0].contains("kept@example.gov.uk"), "{backend}");
            assert!(!told[0].contains("Amy") && !told[0].contains("Mill"));

            // Nothing new: no second notice.
            let again = send(&settings, &store, 10).await;
            assert_eq!(again.failure_notice, Default::default(), "{backend}");
            assert_eq!(notices(&server.messages()).len(), 1, "{backend}");

            // Retried by hand and refused again: a new failure, reported again,
            // and the accepted recipient does not get it twice.
            assert_eq!(
                store
                    .retry_outbox(id, clock("2026-11-20").now())
                    .await
                    .unwrap(),
                RetryOutcome::Requeued(1)
            );
            let retried = send(&settings, &store, 20).await;
            assert_eq!(retried.failure_notice.messages, 1, "{backend}: {retried:?}");
            let got = server.messages();
            let told = notices(&got);
            assert_eq!(told.len(), 2, "{backend}");
            assert!(
                told[1].contains(&format!(
                    "Outbox #{id}, a digest: not delivered to 1 recipient; delivered to 1 other; retried by hand 1 time\r\n"
                )),
                "{backend}: {}",
                told[1]
            );
            let to_kept = got
                .iter()
                .filter(|m| m.rcpt_tos.contains(&"kept@example.gov.uk".to_string()))
                .count();
            assert_eq!(to_kept, 1, "{backend}");
            let last = send(&settings, &store, 30).await;
            assert_eq!(last.failure_notice, Default::default(), "{backend}");
            assert_eq!(notice_entries(&store).await.len(), 2, "{backend}");
            server.stop().await;
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_notice_that_cannot_be_delivered_is_not_reported_by_another() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let name = "undelivered_notice_refused";
        for (backend, store) in stores(name, dir.path()).await {
            // The admin's own address is refused: its digest of unrouted alerts
            // fails, and so does the notice telling it so.
            let Some(server) = refusing(name, dir.path(), backend, &["dv.north@example.gov.uk", "admin@example.gov.uk"]).await else {
                return;
            };
            let b = borough(dir.path(), backend, server.port);
            north_family(&b);
            let stages = night(&b, &store).await;
            let stage = send_stage(&stages);
            assert_eq!(stage.outcome, "ok", "{backend}: {stages:?}");
            let ours = notice_entries(&store).await;
            assert_eq!(ours.len(), 1, "{backend}: {ours:?}");
            assert_eq!(ours[0].status, OutboxStatus::Failed, "{backend}");
            assert!(ours[0].recipients[0].failure_notified_at.is_some());
            assert!(
                stage.detail.ends_with(&format!(
                    "; admin list told of 2 undelivered email(s); the notice of undelivered emails #{} could not be delivered either",
                    ours[0].id
                )),
                "{backend}: {}",
                stage.detail
            );
            assert!(notices(&server.messages()).is_empty(), "{backend}");
            let failed = store.outbox_counts().await.unwrap().failed;
            assert_eq!(failed, 3, "{backend}: two digests and the notice");

            // The next run: no notice about the notice, nothing logged again.
            let stages = night(&b, &store).await;
            let stage = send_stage(&stages);
            assert_eq!(stage.outcome, "ok", "{backend}: {stages:?}");
            assert!(!stage.detail.contains("admin list"), "{backend}: {stage:?}");
            assert!(!stage.detail.contains("notice"), "{backend}: {stage:?}");
            assert_eq!(notice_entries(&store).await.len(), 1, "{backend}");
            assert_eq!(store.outbox_counts().await.unwrap().failed, 3);
            server.stop().await;
            store.close().await;
        }
    })
    .await;
}

/// `kinlink send` through the built binary: with no admin list the failure is
/// printed, warned about once and kept for later; once `[mail] admin` is set the
/// next run mails the notice; the run after that sends none.
#[tokio::test]
async fn kinlink_send_reports_undelivered_mail_and_waits_for_an_admin_list() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let options = SmtpOptions {
            reject_rcpt: vec!["gone@example.gov.uk".into()],
            ..SmtpOptions::default()
        };
        let name = "undelivered_binary";
        let Some(server) = SmtpServer::start(name, &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        let config = dir.path().join("kinlink.toml");
        let write = |admin: &str| {
            std::fs::write(
                &config,
                format!(
                    "state_dir = \"state\"\n[mail]\ntransport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\n\
                     smtp_port = {}\nsmtp_tls = \"none\"\nfrom = \"Early Help <eh@example.gov.uk>\"\n{admin}",
                    server.port
                ),
            )
            .unwrap()
        };
        write("");
        let settings = kinlink::config::load(&config).unwrap();
        let store = Store::connect(&settings.database, &settings.state_dir)
            .await
            .unwrap();
        let id = Mailer::new(&settings.mail)
            .unwrap()
            .enqueue(
                &store,
                clock("2026-11-20"),
                &OutgoingMessage {
                    idempotency_key: "digest:gone@example.gov.uk:1".into(),
                    to: vec!["gone@example.gov.uk".into()],
                    subject: "1 DA notification for North".into(),
                    text: "P1\n".into(),
                    html: None,
                    inline_images: vec![],
                },
            )
            .await
            .unwrap()
            .id;
        store.close().await;
        let run = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_kinlink"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env_remove("KINLINK_CONFIG")
                .output()
                .unwrap()
        };

        let out = run(&["send"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("FAILED    #{id} to gone@example.gov.uk: 550")));
        assert!(
            stdout.contains("1 undelivered email(s) are told to nobody: [mail] admin is empty"),
            "{stdout}"
        );
        assert_eq!(
            stderr.matches("[mail] admin is empty").count(),
            1,
            "warned once: {stderr}"
        );
        assert!(notices(&server.messages()).is_empty());

        write("admin = [\"admin@example.gov.uk\"]\n");
        let out = run(&["send"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let notice_id = id + 1;
        assert!(
            stdout.contains(&format!(
                "admin list told of 1 undelivered email(s) (1 recipient(s)) in notice #{notice_id}"
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("sent      #{notice_id} to admin@example.gov.uk")),
            "{stdout}"
        );
        let told = notices(&server.messages());
        assert_eq!(told.len(), 1);
        assert!(told[0].contains(&format!("Outbox #{id}, a digest")));

        let out = run(&["send"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("admin list told"), "{stdout}");
        assert_eq!(notices(&server.messages()).len(), 1);
        let show = run(&["outbox", "show", &id.to_string()]);
        let stdout = String::from_utf8_lossy(&show.stdout);
        assert!(stdout.contains("     admin list told "), "{stdout}");
        server.stop().await;
    })
    .await;
}

/// Two runs reporting the same failures (two `kinlink send` at once on PostgreSQL):
/// the second finds them marked and stores nothing; nor does one that read a
/// failure `outbox retry` has since queued again.
#[tokio::test]
async fn a_failure_is_marked_once_and_a_second_reporter_stands_down() {
    use kinlink::store::{AttemptOutcome, FailureNoticeStored, NewOutboxMessage};
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("undelivered_marked_once", dir.path()).await {
        let at = clock("2026-11-20").now();
        let settings = crate::helpers::settings(&dir.path().join(backend), vec![]);
        let mailer = Mailer::new(&settings.mail).unwrap();
        let id = mailer
            .enqueue(
                &store,
                clock("2026-11-20"),
                &OutgoingMessage {
                    idempotency_key: "digest:x:1".into(),
                    to: vec!["gone@example.gov.uk".into()],
                    subject: "s".into(),
                    text: "t\n".into(),
                    html: None,
                    inline_images: vec![],
                },
            )
            .await
            .unwrap()
            .id;
        let claimed = store
            .claim_outbox(at, kinlink::mail::claimer())
            .await
            .unwrap()
            .expect("due");
        assert_eq!(claimed.id, id);
        let reply = "550 5.1.1 recipient unknown".to_string();
        store
            .finish_outbox_attempt(
                id,
                &AttemptOutcome {
                    recipients: vec![(
                        "gone@example.gov.uk".into(),
                        RecipientStatus::Failed,
                        Some(reply.clone()),
                    )],
                    status: OutboxStatus::Failed,
                    next_attempt_at: at,
                    last_error: Some(reply.clone()),
                    server_reply: None,
                    unknown: false,
                    at,
                },
            )
            .await
            .unwrap();
        let found = store.unreported_failures().await.unwrap();
        assert_eq!(found.len(), 1, "{backend}");
        assert_eq!(found[0].id, id);
        assert_eq!(found[0].recipients[0].address, "gone@example.gov.uk");
        assert_eq!(
            found[0].recipients[0].reason.as_deref(),
            Some(reply.as_str())
        );
        let marks = [(id, found[0].recipients[0].position)];
        let notice = |key: &'static str| NewOutboxMessage {
            idempotency_key: key,
            message_id: key,
            sender: "eh@example.gov.uk",
            subject: "kinlink: 1 email could not be delivered",
            recipients: &[],
            raw: b"x",
            at,
        };
        let first = store
            .store_failure_notice(Some(&notice("admin:undelivered:a")), &marks, at)
            .await
            .unwrap();
        assert!(
            matches!(first, FailureNoticeStored::Stored(Some(e)) if e.created),
            "{backend}: {first:?}"
        );
        // A second reporter, with a notice composed before the first committed.
        let second = store
            .store_failure_notice(Some(&notice("admin:undelivered:b")), &marks, at)
            .await
            .unwrap();
        assert_eq!(second, FailureNoticeStored::Raced, "{backend}");
        assert_eq!(store.outbox_entries().await.unwrap().len(), 2, "{backend}");
        assert!(store.unreported_failures().await.unwrap().is_empty());
        // `outbox retry` makes it a failure to come, reported again if it fails again.
        store.retry_outbox(id, at).await.unwrap();
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!(entry.retries, 1, "{backend}");
        assert!(entry.recipients[0].failure_notified_at.is_none());
        // A run that read the failure before that retry marks nothing.
        let stale = store.store_failure_notice(None, &marks, at).await.unwrap();
        assert_eq!(stale, FailureNoticeStored::Raced, "{backend}");
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert!(entry.recipients[0].failure_notified_at.is_none());
        store.close().await;
    }
}

/// The DV champion's address is refused for good (550): the DA alert in that digest
/// shows as undelivered (`alerts list`, `status`), the notice names its id; once the
/// config names a corrected address, the next `send` routes the alert there and it
/// arrives exactly once; the old address gets nothing more — not from a later
/// `send`, not from `outbox retry` of the refused message — and the audit says so.
#[tokio::test]
async fn a_refused_digest_s_alerts_go_to_the_corrected_address_once_and_never_to_the_old() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let name = "undelivered_rerouted";
        for (backend, store) in stores(name, dir.path()).await {
            let old = "dv.north@example.gov.uk";
            let new = "dv2.north@example.gov.uk";
            let Some(server) = refusing(name, dir.path(), backend, &[old]).await else {
                return;
            };
            let mut b = borough(dir.path(), backend, server.port);
            north_family(&b);
            let stages = night(&b, &store).await;
            assert_eq!(send_stage(&stages).outcome, "ok", "{backend}: {stages:?}");
            let refused = store
                .outbox_entries()
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.recipients[0].address == old)
                .expect("the DV champion's digest");
            assert_eq!(refused.status, OutboxStatus::Failed, "{backend}");

            // The admin's view: the alert is undelivered, and the notice names it.
            let da: Vec<_> = store
                .alert_rows(Some("da_notification"), None)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.locality.as_deref() == Some("North"))
                .collect();
            assert_eq!(da.len(), 1, "{backend}: {da:?}");
            let alert = da[0].id;
            assert_eq!(da[0].status, "new", "{backend}");
            assert_eq!(da[0].undelivered, [old], "{backend}");
            assert_eq!(store.alert_summary().await.unwrap().undelivered_open, 1);
            let told = notices(&server.messages());
            assert_eq!(told.len(), 1, "{backend}");
            assert!(
                told[0].contains(&format!("   Alerts not delivered: A{alert} (1 alert")),
                "{backend}: {}",
                told[0]
            );
            assert!(!told[0].contains("Mill") && !told[0].contains("Amy"));

            // Nothing changes while the config still names the refused address.
            let same = send(&b.settings, &store, 10).await;
            assert_eq!(same.rerouted.rerouted, 0, "{backend}: {same:?}");
            assert_eq!(same.rerouted.still_refused, 1, "{backend}");

            // The config is corrected.
            b.settings.localities[0].dv_champions = vec![new.to_string()];
            let fixed = send(&b.settings, &store, 20).await;
            assert_eq!(fixed.rerouted.rerouted, 1, "{backend}: {fixed:?}");
            assert_eq!(fixed.rerouted.alerts, [alert], "{backend}");
            let to = |addr: &str| {
                server
                    .messages()
                    .into_iter()
                    .filter(|m| m.rcpt_tos.iter().any(|r| r == addr))
                    .map(|m| decoded(&m))
                    .collect::<Vec<_>>()
            };
            let got = to(new);
            assert_eq!(
                got.len(),
                1,
                "{backend}: one digest to the corrected address"
            );
            assert!(
                got[0].contains(&format!("A{alert}"))
                    && got[0].contains("Subject: 1 DA notification for North"),
                "{backend}: {}",
                got[0]
            );
            let row = store
                .alert_rows(Some("da_notification"), None)
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.id == alert)
                .unwrap();
            assert_eq!(row.status, "sent", "{backend}: {row:?}");
            assert!(row.undelivered.is_empty(), "{backend}");
            assert_eq!(store.alert_summary().await.unwrap().undelivered_open, 0);

            // `outbox retry` of the refused message: nothing goes to the old address.
            let retried = store
                .retry_outbox(refused.id, clock("2026-11-20").now())
                .await
                .unwrap();
            assert_eq!(
                retried,
                RetryOutcome::Rerouted(vec![old.to_string()]),
                "{backend}"
            );
            for minutes in [30, 40] {
                let again = send(&b.settings, &store, minutes).await;
                assert_eq!(again.rerouted.rerouted, 0, "{backend}");
                assert_eq!(again.digests.digests, 0, "{backend}: {again:?}");
            }
            assert_eq!(to(new).len(), 1, "{backend}: exactly once");
            assert!(to(old).is_empty(), "{backend}: the old address got nothing");
            let (entry, _) = store.outbox_message(refused.id).await.unwrap();
            assert_eq!(entry.status, OutboxStatus::Failed, "{backend}");

            // The audit: refused, routed again, then sent to the corrected address.
            let old_trail = store.audit_for_recipient(old, None).await.unwrap();
            let events: Vec<&str> = old_trail
                .iter()
                .filter(|r| r.alert_id == alert)
                .map(|r| r.event.as_str())
                .collect();
            assert_eq!(events, ["routed", "failed", "rerouted"], "{backend}");
            let rerouted = old_trail.iter().find(|r| r.event == "rerouted").unwrap();
            assert!(
                rerouted.reason.contains(new) && rerouted.reason.contains("dv_champions of North"),
                "{backend}: {}",
                rerouted.reason
            );
            let new_trail = store.audit_for_recipient(new, None).await.unwrap();
            let events: Vec<&str> = new_trail.iter().map(|r| r.event.as_str()).collect();
            assert_eq!(events, ["routed", "sent"], "{backend}");
            assert_eq!(new_trail[0].alert_id, alert);
            server.stop().await;
            store.close().await;
        }
    })
    .await;
}

/// One of two DV champions refused: the other got the alert; once the config
/// drops the refused address, nothing is sent again (the other already has it)
/// and the alert counts as sent.
#[tokio::test]
async fn a_refused_one_of_two_champions_dropped_from_the_config_sends_nothing_again() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let name = "undelivered_rerouted_partial";
        for (backend, store) in stores(name, dir.path()).await {
            let gone = "dv.north@example.gov.uk";
            let kept = "dv.north2@example.gov.uk";
            let Some(server) = refusing(name, dir.path(), backend, &[gone]).await else {
                return;
            };
            let mut b = borough(dir.path(), backend, server.port);
            b.settings.localities[0].dv_champions = vec![gone.into(), kept.into()];
            north_family(&b);
            night(&b, &store).await;
            let alert = store
                .alert_rows(Some("da_notification"), None)
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.locality.as_deref() == Some("North"))
                .unwrap();
            assert_eq!(alert.status, "new", "{backend}");
            assert_eq!(alert.undelivered, [gone], "{backend}");
            let count = |addr: &str| {
                server
                    .messages()
                    .iter()
                    .filter(|m| m.rcpt_tos.iter().any(|r| r == addr))
                    .count()
            };
            assert_eq!(count(kept), 1, "{backend}");

            b.settings.localities[0].dv_champions = vec![kept.into()];
            let r = send(&b.settings, &store, 20).await;
            assert_eq!(r.rerouted.rerouted, 1, "{backend}: {r:?}");
            assert_eq!(r.rerouted.new_deliveries, 0, "{backend}");
            assert_eq!(r.digests.digests, 0, "{backend}");
            assert_eq!(count(kept), 1, "{backend}: not twice");
            assert_eq!(count(gone), 0, "{backend}");
            let alert = store
                .alert_rows(Some("da_notification"), None)
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.id == alert.id)
                .unwrap();
            assert_eq!(alert.status, "sent", "{backend}");
            assert!(alert.undelivered.is_empty());
            let trail = store.audit_for_recipient(gone, None).await.unwrap();
            let last = trail.last().unwrap();
            assert_eq!(last.event, "rerouted", "{backend}");
            assert!(
                last.reason.contains(&format!("{kept} already had it")),
                "{}",
                last.reason
            );
            server.stop().await;
            store.close().await;
        }
    })
    .await;
}
