//! The link stage end to end on both backends: ingest small feeds, link, link
//! again (nothing changes), a new file linked incrementally (ids stay), a review
//! rejection that holds on every later run, a decision from before the decision
//! trail carried into it and undone, and the exact `persons export` format —
//! through the library and through the built binary.
//!
//! Links here come from valid UPNs, so the tests assert on structure (ids, rows,
//! decisions); matching quality is `link_quality.rs` and the engine's own tests.

use std::collections::HashMap;
use std::path::Path;

use kinlink::clock::Clock;
use kinlink::config::{Settings, SourceSettings};
use kinlink::domain::FeedKind;
use kinlink::pipeline::{self, IngestRequest, LinkReport, NoProgress};
use kinlink::store::{Decided, NewDecision, Store, Undone, Withdrawal};

use crate::backends::stores;
use crate::helpers::{csv_source, settings, upn};

const HEADER: &str = "URN,Pupil UPN,First name,Last name,DOB,Address,Post code,Date,Session,Mark\n";

fn source(name: &str, inbox: &Path) -> SourceSettings {
    csv_source(
        name,
        FeedKind::Attendance,
        inbox,
        &[
            ("school_urn", "URN"),
            ("upn", "Pupil UPN"),
            ("forename", "First name"),
            ("surname", "Last name"),
            ("dob", "DOB"),
            ("address_line1", "Address"),
            ("postcode", "Post code"),
            ("date", "Date"),
            ("session", "Session"),
            ("mark", "Mark"),
        ],
    )
}

/// Two marks for each pupil serial, at school `urn`; pupil `n` lives at `n Oak Road`.
fn marks(urn: u32, pupils: &[u32], day: u32) -> String {
    let mut s = String::from(HEADER);
    for &p in pupils {
        for session in ["AM", "PM"] {
            s.push_str(&format!(
                "{urn},{},Pupil{p},Family{p},01/09/2015,{p} Oak Road,M6 5AB,{day:02}/10/2025,{session},/\n",
                upn(p)
            ));
        }
    }
    s
}

async fn ingest(settings: &Settings, store: &Store) {
    let report = pipeline::ingest(
        settings,
        store,
        Clock::system(),
        &IngestRequest::default(),
        &NoProgress,
    )
    .await
    .expect("ingest step");
    assert!(!report.fetch_failed(), "{report:?}");
}

async fn link(settings: &Settings, store: &Store) -> LinkReport {
    pipeline::link(
        settings,
        store,
        Clock::system(),
        pipeline::LinkScope::Incremental,
    )
    .await
    .expect("link step")
}

/// The export as (source, mention_key) → (person, family), and the raw text.
async fn export(store: &Store) -> (HashMap<(String, String), (String, String)>, String) {
    let mut buf = Vec::new();
    kinlink::app::export_csv(store, &mut buf)
        .await
        .expect("export");
    let text = String::from_utf8(buf).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let map = r
        .records()
        .map(|row| {
            let row = row.unwrap();
            (
                (row[3].to_string(), row[4].to_string()),
                (row[0].to_string(), row[1].to_string()),
            )
        })
        .collect();
    (map, text)
}

async fn row_counts(store: &Store) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM persons",
        "SELECT COUNT(*) FROM mention_persons",
        "SELECT COUNT(*) FROM person_aliases",
        "SELECT COUNT(*) FROM links",
        "SELECT COUNT(*) FROM review_queue",
        "SELECT COUNT(*) FROM households",
        "SELECT COUNT(*) FROM household_members",
        "SELECT COUNT(*) FROM families",
        "SELECT COUNT(*) FROM family_members",
        "SELECT COUNT(*) FROM family_aliases",
        "SELECT COUNT(*) FROM link_model",
    ] {
        out.push(store.scalar_i64(sql).await.unwrap());
    }
    out
}

fn key(source: &str, p: u32) -> (String, String) {
    (source.to_string(), upn(p))
}

#[tokio::test]
async fn linking_is_idempotent_incremental_and_keeps_ids() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("linking_is_idempotent", dir.path()).await {
        let schools = dir.path().join(format!("schools-{backend}"));
        let academy = dir.path().join(format!("academy-{backend}"));
        std::fs::create_dir_all(&schools).unwrap();
        std::fs::create_dir_all(&academy).unwrap();
        let settings = settings(
            dir.path(),
            vec![source("schools", &schools), source("academy", &academy)],
        );
        std::fs::write(schools.join("a.csv"), marks(100001, &[0, 1, 2, 3], 1)).unwrap();
        std::fs::write(academy.join("a.csv"), marks(100002, &[0, 1, 9], 1)).unwrap();
        ingest(&settings, &store).await;

        let first = link(&settings, &store).await;
        assert!(first.full, "{backend}: the first run is full");
        let c = &first.counts;
        assert_eq!(c.mentions, 7, "{backend}");
        assert_eq!(c.link_pairs, 2, "{backend}: pupils 0 and 1 share a UPN");
        assert_eq!(c.persons, 5, "{backend}");
        assert_eq!(c.households, 5, "{backend}: one address per pupil");
        assert_eq!(c.families, 5, "{backend}");
        let (ids1, _) = export(&store).await;
        assert_eq!(ids1.len(), 7, "{backend}");
        assert_eq!(
            ids1[&key("schools", 0)],
            ids1[&key("academy", 0)],
            "{backend}"
        );
        assert_ne!(
            ids1[&key("schools", 0)].0,
            ids1[&key("schools", 1)].0,
            "{backend}"
        );
        // Ids are handed out in mention order: P1 is the first mention's person.
        assert_eq!(ids1[&key("schools", 0)].0, "P1", "{backend}");

        // The same data again: the same ids and not one new row.
        let rows = row_counts(&store).await;
        let again = link(&settings, &store).await;
        assert!(!again.full, "{backend}");
        assert_eq!(again.changed_mentions, 0, "{backend}");
        assert_eq!(again.persons_created, 0, "{backend}");
        assert_eq!(row_counts(&store).await, rows, "{backend}");
        assert_eq!(export(&store).await.0, ids1, "{backend}");

        // New marks for the same pupils, as written before: no one changed.
        std::fs::write(schools.join("a2.csv"), marks(100001, &[0, 1, 2, 3], 3)).unwrap();
        ingest(&settings, &store).await;
        let marks_only = link(&settings, &store).await;
        assert!(!marks_only.full, "{backend}");
        assert_eq!(
            marks_only.changed_mentions, 0,
            "{backend}: a new attendance mark changes no one"
        );
        assert_eq!(export(&store).await.0, ids1, "{backend}");

        // A new file: pupil 2 appears at the academy, pupil 10 is new.
        std::fs::write(academy.join("b.csv"), marks(100002, &[2, 10], 2)).unwrap();
        ingest(&settings, &store).await;
        let third = link(&settings, &store).await;
        assert!(!third.full, "{backend}");
        assert_eq!(third.changed_mentions, 2, "{backend}");
        assert_eq!(third.persons_created, 1, "{backend}: only pupil 10 is new");
        let (ids3, _) = export(&store).await;
        for (k, v) in &ids1 {
            assert_eq!(&ids3[k], v, "{backend}: {k:?} kept its ids");
        }
        assert_eq!(
            ids3[&key("academy", 2)],
            ids3[&key("schools", 2)],
            "{backend}"
        );
        assert_eq!(third.counts.persons, 6, "{backend}");

        // --full recomputes and still renumbers nothing.
        let full = pipeline::link(
            &settings,
            &store,
            Clock::system(),
            pipeline::LinkScope::Full,
        )
        .await
        .unwrap();
        assert!(full.full, "{backend}");
        assert_eq!(export(&store).await.0, ids3, "{backend}");

        // explain: both mentions of pupil 0 and the UPN link between them.
        let p0: i64 = ids3[&key("schools", 0)].0[1..].parse().unwrap();
        let e = store.explain_person(p0).await.unwrap();
        assert_eq!(e.mentions.len(), 2, "{backend}");
        assert_eq!(e.links.len(), 1, "{backend}");
        assert_eq!(e.links[0].basis, "upn", "{backend}");
        assert!(e.family.is_some() && e.household.is_some(), "{backend}");
        let f = store.explain_family(e.family.unwrap()).await.unwrap();
        assert_eq!(f.members.len(), 1, "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_rejected_pair_is_never_linked_again() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("a_rejected_pair", dir.path()).await {
        let schools = dir.path().join(format!("schools-{backend}"));
        let academy = dir.path().join(format!("academy-{backend}"));
        std::fs::create_dir_all(&schools).unwrap();
        std::fs::create_dir_all(&academy).unwrap();
        let settings = settings(
            dir.path(),
            vec![source("schools", &schools), source("academy", &academy)],
        );
        std::fs::write(schools.join("a.csv"), marks(100001, &[0, 1], 1)).unwrap();
        std::fs::write(academy.join("a.csv"), marks(100002, &[0], 1)).unwrap();
        ingest(&settings, &store).await;
        link(&settings, &store).await;
        let (ids, _) = export(&store).await;
        let person = ids[&key("schools", 0)].clone();
        assert_eq!(ids[&key("academy", 0)], person, "{backend}");

        // The two mentions of pupil 0 (ids 1 and 3: schools first, then academy).
        let mention = |sql: &'static str| store.scalar_i64(sql);
        let a = mention(
            "SELECT id FROM mentions WHERE source = 'schools' AND mention_key LIKE '%0000'",
        )
        .await
        .unwrap();
        let b = mention("SELECT id FROM mentions WHERE source = 'academy'")
            .await
            .unwrap();
        let decided = store
            .decide(
                &NewDecision {
                    a: b,
                    b: a,
                    verdict: kinlink::link::Verdict::Reject,
                    by: "reviewer@example.gov.uk",
                    note: Some("twins"),
                    at: Clock::system().now(),
                },
                |_| None::<()>,
            )
            .await
            .unwrap();
        assert!(matches!(decided, Decided::Recorded(..)), "{backend}");
        let rows = store.review_rows(true).await.unwrap();
        assert_eq!(rows.len(), 1, "{backend}");
        assert_eq!((rows[0].a, rows[0].b), (a.min(b), a.max(b)), "{backend}");
        assert_eq!(rows[0].status, "rejected", "{backend}");
        assert!(
            store.review_rows(false).await.unwrap().is_empty(),
            "{backend}"
        );

        for night in 0..2 {
            let r = link(&settings, &store).await;
            assert_eq!(r.counts.persons, 3, "{backend} night {night}");
            let (ids, _) = export(&store).await;
            assert_ne!(
                ids[&key("schools", 0)].0,
                ids[&key("academy", 0)].0,
                "{backend} night {night}: apart"
            );
            // The older mention keeps the person id; the split part gets a new one.
            assert_eq!(ids[&key("schools", 0)], person, "{backend} night {night}");
            // The decision stays decided.
            let rows = store.review_rows(true).await.unwrap();
            assert_eq!(rows.len(), 1, "{backend}");
            assert_eq!(rows[0].status, "rejected", "{backend}");
        }
        // An unknown mention is named, and nothing is written.
        let decided = store
            .decide(
                &NewDecision {
                    a,
                    b: 9999,
                    verdict: kinlink::link::Verdict::Accept,
                    by: "reviewer@example.gov.uk",
                    note: None,
                    at: Clock::system().now(),
                },
                |_| None::<()>,
            )
            .await
            .unwrap();
        assert_eq!(decided, Decided::Missing(vec![9999]), "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn persons_export_has_the_exact_columns() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("persons_export_columns", dir.path()).await {
        let schools = dir.path().join(format!("schools-{backend}"));
        std::fs::create_dir_all(&schools).unwrap();
        let settings = settings(dir.path(), vec![source("schools", &schools)]);
        std::fs::write(schools.join("a.csv"), marks(100001, &[4, 5], 1)).unwrap();
        ingest(&settings, &store).await;
        link(&settings, &store).await;
        let (_, text) = export(&store).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "person_id,family_id,kind,source,mention_key,forename,surname,dob,postcode",
            "{backend}"
        );
        assert_eq!(
            lines.len(),
            3,
            "{backend}: one row per mention, not per mark"
        );
        assert_eq!(
            lines[1],
            format!(
                "P1,F1,attendance,schools,{},Pupil4,Family4,2015-09-01,M6 5AB",
                upn(4)
            ),
            "{backend}"
        );
        store.close().await;
    }
}

#[test]
fn the_binary_links_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    std::fs::write(inbox.join("a.csv"), marks(100001, &[1, 2, 3], 1)).unwrap();
    let config = dir.path().join("kinlink.toml");
    std::fs::write(
        &config,
        r#"state_dir = "state"

[[source]]
name = "schools"
kind = "attendance"
format = "csv"
transport = { type = "dir", path = "inbox", settle_secs = 0 }
[source.columns]
school_urn = "URN"
upn = "Pupil UPN"
forename = "First name"
surname = "Last name"
dob = "DOB"
address_line1 = "Address"
postcode = "Post code"
date = "Date"
session = "Session"
mark = "Mark"
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kinlink"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run kinlink");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    run(&["ingest"]);
    let (linked, log) = run(&["link"]);
    assert!(linked.contains("persons: 3"), "{linked}");
    assert!(linked.contains("review queue: 0 pending"), "{linked}");
    assert!(!log.contains("Pupil1"), "no names in logs: {log}");
    let (csv, log) = run(&["persons", "export", "--format", "csv"]);
    assert!(!log.contains("Pupil1"), "no names in logs: {log}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        vec![
            "person_id,family_id,kind,source,mention_key,forename,surname,dob,postcode".to_string(),
            format!(
                "P1,F1,attendance,schools,{},Pupil1,Family1,2015-09-01,M6 5AB",
                upn(1)
            ),
            format!(
                "P2,F2,attendance,schools,{},Pupil2,Family2,2015-09-01,M6 5AB",
                upn(2)
            ),
            format!(
                "P3,F3,attendance,schools,{},Pupil3,Family3,2015-09-01,M6 5AB",
                upn(3)
            ),
        ]
    );
    let (explained, _) = run(&["explain", "person", "P2"]);
    assert!(explained.starts_with("Person P2\n"), "{explained}");
    assert!(explained.contains("family: F2"), "{explained}");
    let (list, _) = run(&["review", "list", "--format", "json"]);
    assert_eq!(list.trim(), "[]");
    let (done, _) = run(&[
        "review",
        "reject",
        "M1",
        "m2",
        "--force",
        "--by",
        "r@example.gov.uk",
    ]);
    assert!(done.contains("rejected M1 ~ M2"), "{done}");
    let (list, _) = run(&["review", "list", "--all", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(doc[0]["status"], "rejected");
    // Bad input: a clear usage error (exit 2), not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kinlink"))
        .arg("--config")
        .arg(&config)
        .args(["explain", "person", "Q7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kinlink"))
        .arg("--config")
        .arg(&config)
        .args(["explain", "person", "P99"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found: person 99"));
}

/// One UPN given to two different children (a reused or mistyped identifier): the
/// mention is flagged, nobody is merged through it, and the flag reaches the link run.
#[tokio::test]
async fn a_key_that_names_two_people_is_flagged_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("reused_key_flagged", dir.path()).await {
        let schools = dir.path().join(format!("schools-reused-{backend}"));
        std::fs::create_dir_all(&schools).unwrap();
        let settings = settings(dir.path(), vec![source("schools", &schools)]);
        // Within one file: pupil 7's UPN also on a different child.
        let mut first = marks(100001, &[7, 8], 1);
        first.push_str(&format!(
            "100001,{},Zara,Family7,03/03/2012,7 Oak Road,M6 5AB,01/10/2025,AM,/\n",
            upn(7)
        ));
        std::fs::write(schools.join("a.csv"), first).unwrap();
        ingest(&settings, &store).await;
        let conflicted = store
            .scalar_i64("SELECT COUNT(*) FROM mentions WHERE identity_conflict")
            .await
            .unwrap();
        assert_eq!(
            conflicted, 1,
            "{backend}: the reused key is flagged in the file"
        );
        // Across files: pupil 8's UPN on a different child in the next file.
        std::fs::write(
            schools.join("b.csv"),
            format!(
                "{HEADER}100001,{},Yusuf,Family8,04/04/2013,8 Oak Road,M6 5AB,02/10/2025,AM,/\n",
                upn(8)
            ),
        )
        .unwrap();
        ingest(&settings, &store).await;
        let conflicted = store
            .scalar_i64("SELECT COUNT(*) FROM mentions WHERE identity_conflict")
            .await
            .unwrap();
        assert_eq!(
            conflicted, 2,
            "{backend}: the key reused across files is flagged too"
        );
        let report = link(&settings, &store).await;
        assert!(report.counts.flags >= 2, "{backend}: {report:?}");
        store.close().await;
    }
}

/// Each pupil's latest mark date is kept at ingest (linking reads it instead of
/// scanning every mark) and a late file with older marks never moves it back.
#[tokio::test]
async fn the_latest_mark_date_is_kept_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("latest_mark_date", dir.path()).await {
        let inbox = dir.path().join(format!("marks-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), vec![source("schools", &inbox)]);
        for (name, day) in [("a.csv", 1), ("b.csv", 3), ("c.csv", 2)] {
            std::fs::write(inbox.join(name), marks(100001, &[0, 1], day)).unwrap();
            ingest(&settings, &store).await;
        }
        let dates = store
            .column_text("SELECT CAST(last_mark_on AS TEXT) FROM mentions ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            dates,
            vec![
                Some("2025-10-03".to_string()),
                Some("2025-10-03".to_string())
            ],
            "{backend}"
        );
        let days = store
            .scalar_i64("SELECT COUNT(*) FROM school_days")
            .await
            .unwrap();
        assert_eq!(days, 3, "{backend}: one row per school and date");
        store.close().await;
    }
}

#[tokio::test]
async fn the_export_neutralises_cells_a_spreadsheet_would_run_as_formulas() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("export_formula_cells", dir.path()).await {
        let inbox = dir.path().join(format!("schools-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), vec![source("schools", &inbox)]);
        let mut text = String::from(HEADER);
        for (p, forename, surname) in [
            (1, "=HYPERLINK(\"http://x\";\"y\")", "Mill"),
            (2, "+cmd|' /C calc'!A0", "@SUM(A1)"),
            (3, "-1+2", "Ann"),
        ] {
            text.push_str(&format!(
                "100001,{},\"{}\",\"{}\",01/09/2015,1 Oak Road,M6 5AB,01/10/2025,AM,/\n",
                upn(p),
                forename.replace('"', "\"\""),
                surname
            ));
        }
        std::fs::write(inbox.join("a.csv"), text).unwrap();
        ingest(&settings, &store).await;
        link(&settings, &store).await;
        let (_, text) = export(&store).await;
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let mut cells: Vec<String> = Vec::new();
        for row in r.records() {
            let row = row.unwrap();
            cells.extend([row[5].to_string(), row[6].to_string()]);
        }
        cells.sort();
        assert_eq!(
            cells,
            vec![
                "'+cmd|' /C calc'!A0",
                "'-1+2",
                "'=HYPERLINK(\"http://x\";\"y\")",
                "'@SUM(A1)",
                "Ann",
                "Mill"
            ],
            "{backend}"
        );
        store.close().await;
    }
}

/// Decisions recorded before kinlink kept a trail of them (migration 15) are
/// carried into it as applied, and `review undo` withdraws them: the next run links
/// the pair as if it had never been decided.
#[tokio::test]
async fn decisions_from_before_the_trail_are_kept_and_can_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let test = "decisions_before_the_trail";
    for (backend, store) in stores(test, dir.path()).await {
        let schools = dir.path().join(format!("schools-trail-{backend}"));
        let academy = dir.path().join(format!("academy-trail-{backend}"));
        std::fs::create_dir_all(&schools).unwrap();
        std::fs::create_dir_all(&academy).unwrap();
        let settings = settings(
            dir.path(),
            vec![source("schools", &schools), source("academy", &academy)],
        );
        std::fs::write(schools.join("a.csv"), marks(100001, &[0, 1], 1)).unwrap();
        std::fs::write(academy.join("a.csv"), marks(100002, &[0], 1)).unwrap();
        ingest(&settings, &store).await;
        link(&settings, &store).await;
        let (before, _) = export(&store).await;
        let a = store
            .scalar_i64(
                "SELECT id FROM mentions WHERE source = 'schools' AND mention_key LIKE '%0000'",
            )
            .await
            .unwrap();
        let b = store
            .scalar_i64("SELECT id FROM mentions WHERE source = 'academy'")
            .await
            .unwrap();
        let decided = store
            .decide(
                &NewDecision {
                    a,
                    b,
                    verdict: kinlink::link::Verdict::Reject,
                    by: "reviewer@example.gov.uk",
                    note: Some("twins"),
                    at: Clock::system().now(),
                },
                |_| None::<()>,
            )
            .await
            .unwrap();
        assert!(matches!(decided, Decided::Recorded(..)), "{backend}");
        link(&settings, &store).await;
        assert_ne!(export(&store).await.0, before, "{backend}: split");
        store.close().await;

        // The store as a kinlink before the trail left it: the verdict in the
        // queue only.
        let older = [
            "DROP TABLE review_decision_ids",
            "DROP TABLE review_decisions",
            "DELETE FROM _sqlx_migrations WHERE version = 15",
        ];
        let store = crate::pipeline::reopened_after(backend, dir.path(), test, &older).await;
        let history = store.decision_history(a, b).await.unwrap();
        assert_eq!(history.len(), 1, "{backend}");
        let d = &history[0];
        assert_eq!(d.verdict, kinlink::link::Verdict::Reject, "{backend}");
        assert_eq!(
            (d.by.as_str(), d.note.as_deref()),
            ("reviewer@example.gov.uk", Some("twins"))
        );
        assert!(d.applied && d.queued && d.withdrawn.is_none(), "{backend}");
        let undone = store
            .undo_decision(&Withdrawal {
                a,
                b,
                by: "reviewer@example.gov.uk",
                note: None,
                at: Clock::system().now(),
            })
            .await
            .unwrap();
        let Undone::Withdrawn { kept_ids, .. } = undone else {
            panic!("{backend}: {undone:?}");
        };
        assert!(!kept_ids, "{backend}: no ids were kept then");
        link(&settings, &store).await;
        let (after, _) = export(&store).await;
        assert_eq!(
            after[&key("schools", 0)].0,
            after[&key("academy", 0)].0,
            "{backend}: one person again"
        );
        store.close().await;
    }
}
