//! Digests end to end on SQLite and PostgreSQL: real feeds ingested, linked and
//! evaluated, then `send` composes one digest per recipient with pending
//! deliveries, writes it (file transport, or a real SMTP server on loopback), and
//! follows every delivery to `sent` with an audit row; a second `send` makes
//! nothing; an escalation arrives marked as an update; unrouted alerts reach the
//! admin with the reason; a rejected feed file is told to the admin once; the
//! managers' weekly digest carries its chart inline, once a week.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kinlink::clock::Clock;
use kinlink::config::{MailTransport, Settings, SmtpSettings, SmtpTls};
use kinlink::domain::FeedKind;
use kinlink::mail::{send_step, Mailer, SendOptions, SendReport};
use kinlink::pipeline::{self, IngestRequest, NoProgress};
use kinlink::store::Store;

use crate::alerts::{clock, Borough, HOME};
use crate::backends::stores;
use crate::smtp_server::{SmtpOptions, SmtpServer};

async fn send(settings: &Settings, store: &Store, at: Clock, manager_digest: bool) -> SendReport {
    let mailer = Mailer::new(&settings.mail).expect("mailer");
    send_step(
        &mailer,
        store,
        at,
        settings,
        &SendOptions {
            manager_digest,
            ..Default::default()
        },
    )
    .await
    .expect("send")
}

/// Recipients of the .eml files in `dir`, one entry per file.
fn eml_recipients(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let to = text
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or_default()
            .to_string();
        out.push(to);
    }
    out.sort();
    out
}

/// The family at HOME: a DA notification naming a child and a possession notice.
pub(crate) fn north_family(b: &Borough) {
    b.drop_file(
        FeedKind::PoliceDa,
        "police.csv",
        &[
            format!("N1,2026-11-18 23:30,victim,Dawn,Mill,,{HOME},medium"),
            format!("N1,2026-11-18 23:30,child,Amy,Mill,01/09/2016,{HOME},medium"),
            // Nobody configured for LS1: unrouted, to the admin list.
            "N5,2026-11-19 21:00,child,Ivy,Far,06/06/2019,3 Far Road,LS1 1AA,high".to_string(),
        ],
    );
    b.drop_file(
        FeedKind::Housing,
        "notices.csv",
        &[format!(
            "H1,section_8,10/11/2026,,private,{HOME},Dawn,Mill,2"
        )],
    );
}

#[tokio::test]
async fn send_makes_one_digest_per_recipient_once_and_follows_each_delivery_to_sent() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("digests_once", dir.path()).await {
        let mut b = Borough::new(dir.path(), backend);
        let out = dir.path().join(format!("{backend}-mail"));
        b.settings.mail.transport = MailTransport::File { dir: out.clone() };
        north_family(&b);
        b.ingest_and_link(&store, "2026-11-20").await;
        b.evaluate(&store, "2026-11-20").await;
        let pending = store.pending_deliveries().await.unwrap();
        let expected: BTreeSet<String> = pending.iter().map(|d| d.recipient.clone()).collect();
        assert!(
            expected.contains("dv.north@example.gov.uk")
                && expected.contains("eh.north@example.gov.uk")
                && expected.contains("admin@example.gov.uk"),
            "{backend}: {expected:?}"
        );

        let r = send(&b.settings, &store, clock("2026-11-20"), false).await;
        assert_eq!(r.digests.digests, expected.len(), "{backend}");
        assert_eq!(r.digests.stored, expected.len(), "{backend}");
        assert_eq!(r.digests.deliveries, pending.len(), "{backend}");
        // One file per recipient with deliveries, and none for anybody else.
        let files = eml_recipients(&out);
        assert_eq!(
            files,
            expected.iter().cloned().collect::<Vec<_>>(),
            "{backend}"
        );
        // Subjects say what is inside, never who.
        let subjects: BTreeMap<String, String> = r.digests.subjects.iter().cloned().collect();
        assert_eq!(
            subjects["dv.north@example.gov.uk"], "1 DA notification for North",
            "{backend}"
        );
        assert!(
            subjects["admin@example.gov.uk"].starts_with("Unrouted: 1 DA notification"),
            "{backend}: {subjects:?}"
        );
        for s in subjects.values() {
            for secret in ["Mill", "Amy", "Dawn", "Ivy", "Far Road", "2016"] {
                assert!(!s.contains(secret), "{backend}: {s}");
            }
        }
        // Every delivery is sent, every alert with it, and the audit says so.
        let counts = store.delivery_counts().await.unwrap();
        assert_eq!(
            counts.get("sent"),
            Some(&(pending.len() as i64)),
            "{backend}: {counts:?}"
        );
        assert_eq!(r.settled.sent, pending.len() as u64, "{backend}");
        for a in store.alert_rows(None, None).await.unwrap() {
            assert_eq!(a.status, "sent", "{backend}: alert {}", a.id);
        }
        let trail = store
            .audit_for_recipient("dv.north@example.gov.uk", None)
            .await
            .unwrap();
        let events: Vec<(&str, &str)> = trail
            .iter()
            .map(|a| (a.event.as_str(), a.detail.as_str()))
            .collect();
        assert_eq!(
            events,
            vec![("routed", "minimal"), ("sent", "minimal")],
            "{backend}"
        );
        assert_eq!(trail[0].person_ids, trail[1].person_ids);

        // A second send finds nothing pending: no new digest, no new file.
        let again = send(&b.settings, &store, clock("2026-11-20"), false).await;
        assert_eq!(again.digests.digests, 0, "{backend}");
        assert_eq!(eml_recipients(&out).len(), expected.len(), "{backend}");
        assert_eq!(store.outbox_entries().await.unwrap().len(), expected.len());

        // A new notification for the same family escalates the alert: the DV
        // champion's next digest is an update, and only recipients with new
        // deliveries get a digest.
        b.drop_file(
            FeedKind::PoliceDa,
            "police-2.csv",
            &[format!(
                "N3,2026-11-21 08:00,child,Amy,Mill,01/09/2016,{HOME},high"
            )],
        );
        b.ingest_and_link(&store, "2026-11-21").await;
        b.evaluate(&store, "2026-11-21").await;
        let pending: BTreeSet<String> = store
            .pending_deliveries()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.recipient)
            .collect();
        let r = send(&b.settings, &store, clock("2026-11-21"), false).await;
        let to: BTreeSet<String> = r.digests.subjects.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(to, pending, "{backend}");
        assert!(!to.contains("eh.north@example.gov.uk"), "{backend}: {to:?}");
        let dv = &r
            .digests
            .subjects
            .iter()
            .find(|(t, _)| t == "dv.north@example.gov.uk")
            .expect("the DV champion's update")
            .1;
        assert_eq!(
            dv, "1 DA notification for North — 1 urgent, 1 update",
            "{backend}"
        );
        let last = store.outbox_entries().await.unwrap();
        let (entry, raw) = store
            .outbox_message(last.iter().find(|e| e.subject == *dv).unwrap().id)
            .await
            .unwrap();
        assert_eq!(entry.recipients.len(), 1);
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.contains("multipart/alternative") && raw.contains("text/html"));
        store.close().await;
    }
}

#[tokio::test]
async fn a_rejected_feed_file_is_told_to_the_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("digests_rejected_file", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        // No `role` column: the file is rejected whole.
        let inbox = b.settings.sources[1].transport.clone();
        let kinlink::config::Transport::Dir(kinlink::config::DirTransport { path, .. }) = inbox
        else {
            panic!("dir inbox")
        };
        std::fs::write(
            path.join("broken.csv"),
            "notification_id,incident_at,forename\nN1,2026-11-18,Amy\n",
        )
        .unwrap();
        pipeline::ingest(
            &b.settings,
            &store,
            clock("2026-11-20"),
            &IngestRequest::default(),
            &NoProgress,
        )
        .await
        .unwrap();
        let r = send(&b.settings, &store, clock("2026-11-20"), false).await;
        assert_eq!(r.admin_notices.rejected, 1, "{backend}: {r:?}");
        assert!(r.admin_notices.stored, "{backend}");
        let entries = store.outbox_entries().await.unwrap();
        assert_eq!(entries.len(), 1, "{backend}");
        assert_eq!(entries[0].subject, "kinlink: 1 feed file rejected");
        assert_eq!(entries[0].recipients[0].address, "admin@example.gov.uk");
        let (_, raw) = store.outbox_message(entries[0].id).await.unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.contains("broken.csv"), "{raw}");
        assert!(raw.contains("The file is now at:"), "{raw}");
        let again = send(&b.settings, &store, clock("2026-11-20"), false).await;
        assert_eq!(again.admin_notices.rejected, 0, "{backend}");
        assert_eq!(store.outbox_entries().await.unwrap().len(), 1, "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn one_quarantined_police_row_is_told_to_the_admin_by_row_and_column_never_by_value() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("digests_quarantined_row", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        // 40 rows, one with an impossible incident date: 2.5% quarantined, under
        // max_bad_rows (5%), so the file is kept; on attendance the admin would
        // hear of it only from 2.5% up, but a DA notification has no row to spare.
        let mut rows: Vec<String> = (0..39)
            .map(|i| format!("N{i},2026-11-18 23:30,victim,Dawn,Mill,,{HOME},medium"))
            .collect();
        rows.insert(
            20,
            format!("N99,31/02/2026 23:30,child,Zebedee,Quixley,01/09/2016,{HOME},medium"),
        );
        b.drop_file(FeedKind::PoliceDa, "police.csv", &rows);
        pipeline::ingest(
            &b.settings,
            &store,
            clock("2026-11-20"),
            &IngestRequest::default(),
            &NoProgress,
        )
        .await
        .unwrap();
        let r = send(&b.settings, &store, clock("2026-11-20"), false).await;
        assert_eq!(r.admin_notices.quarantine, 1, "{backend}: {r:?}");
        let entries = store.outbox_entries().await.unwrap();
        let notice = entries
            .iter()
            .find(|e| e.subject == "kinlink: 1 feed file with rows quarantined")
            .unwrap_or_else(|| panic!("{backend}: {entries:?}"));
        let (_, raw) = store.outbox_message(notice.id).await.unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.contains("1 of 40 rows quarantined"), "{raw}");
        // Row 22: the header is row 1 and the bad row is the 21st data row.
        assert!(
            raw.contains("Row 22 (incident_at): incident_at: not a date or datetime"),
            "{raw}"
        );
        for value in ["31/02/2026", "Zebedee", "Quixley", "N99"] {
            assert!(!raw.contains(value), "{backend}: {value} in {raw}");
        }
        store.close().await;
    }
}

#[tokio::test]
async fn the_managers_digest_carries_its_chart_once_a_week() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("digests_managers", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        let upn = crate::helpers::upn;
        b.drop_file(
            FeedKind::Assessment,
            "cases.csv",
            &[
                // Amy: referred in March, closed; referred again in October.
                format!(
                    "C1,FAM1,PER1,child,Amy,Mill,01/09/2016,{},{HOME},01/03/2026,01/03/2026,01/05/2026,outcomes_met,North",
                    upn(1)
                ),
                format!(
                    "C2,FAM1,PER1,child,Amy,Mill,01/09/2016,{},{HOME},15/10/2026,15/10/2026,,,North",
                    upn(1)
                ),
            ],
        );
        b.ingest_and_link(&store, "2026-11-20").await;
        b.evaluate(&store, "2026-11-20").await;
        let r = send(&b.settings, &store, clock("2026-11-20"), true).await;
        // North and South each have one manager.
        assert_eq!(r.manager_digests.digests, 2, "{backend}");
        assert_eq!(r.manager_digests.stored, 2, "{backend}");
        let entries = store.outbox_entries().await.unwrap();
        let north = entries
            .iter()
            .find(|e| {
                e.recipients[0].address == "mgr.north@example.gov.uk"
                    && e.subject.starts_with("Weekly")
            })
            .expect("north managers' digest");
        let (_, raw) = store.outbox_message(north.id).await.unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.contains("multipart/related"), "{backend}");
        assert!(raw.contains("Content-ID: <rereferral-chart>"), "{backend}");
        assert!(raw.contains("image/png"), "{backend}");
        // Later the same week: nothing new.
        let again = send(&b.settings, &store, clock("2026-11-21"), true).await;
        assert_eq!(again.manager_digests.stored, 0, "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn digests_reach_a_real_smtp_server_once_per_recipient() {
    crate::helpers::within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let Some(server) = SmtpServer::start(
            "digests_smtp",
            &dir.path().join("smtp"),
            &SmtpOptions::default(),
        )
        .await
        else {
            return;
        };
        let store = Store::open_sqlite(&dir.path().join("kinlink.db"))
            .await
            .unwrap();
        let mut b = Borough::new(dir.path(), "sqlite");
        b.settings.mail.transport = MailTransport::Smtp(SmtpSettings {
            host: "127.0.0.1".into(),
            port: server.port,
            tls: SmtpTls::None,
            user: None,
            password: None,
            ca_file: None,
        });
        north_family(&b);
        b.ingest_and_link(&store, "2026-11-20").await;
        b.evaluate(&store, "2026-11-20").await;
        let expected: BTreeSet<String> = store
            .pending_deliveries()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.recipient)
            .collect();
        let r = send(&b.settings, &store, clock("2026-11-20"), false).await;
        assert_eq!(r.drain.as_ref().unwrap().sent.len(), expected.len());
        send(&b.settings, &store, clock("2026-11-20"), false).await;
        let got: Vec<String> = server
            .messages()
            .into_iter()
            .map(|m| {
                assert_eq!(m.rcpt_tos.len(), 1, "one recipient per digest");
                m.rcpt_tos[0].clone()
            })
            .collect();
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), expected.len(), "{got:?}");
        assert_eq!(got_set, expected);
        let counts = store.delivery_counts().await.unwrap();
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert!(counts.contains_key("sent"));
        let trail = store
            .audit_for_recipient("eh.north@example.gov.uk", None)
            .await
            .unwrap();
        assert!(trail.iter().any(|a| a.event == "sent"));
        server.stop().await;
        store.close().await;
    })
    .await;
}
