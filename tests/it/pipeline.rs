//! The ingest stage end to end on both backends: dir inbox → raw copy → one
//! transaction → archive or rejected/, with the ledger making a second delivery a
//! no-op.

use std::collections::BTreeMap;
use std::path::Path;

use kinlink::clock::Clock;
use kinlink::config::{DirTransport, Settings, SourceSettings, TextEncoding, Transport};
use kinlink::domain::{FeedKind, Format};
use kinlink::pipeline::{self, FileOutcome, IngestRequest, NoProgress};
use kinlink::store::Store;

use crate::backends::stores;
use crate::helpers::upn;

const HEADER: &str = "URN,Pupil UPN,First name,Last name,DOB,Post code,Date,Session,Mark\n";

fn attendance_source(inbox: &Path, max_bad_rows: f64) -> SourceSettings {
    let columns: BTreeMap<String, String> = [
        ("school_urn", "URN"),
        ("upn", "Pupil UPN"),
        ("forename", "First name"),
        ("surname", "Last name"),
        ("dob", "DOB"),
        ("postcode", "Post code"),
        ("date", "Date"),
        ("session", "Session"),
        ("mark", "Mark"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    SourceSettings {
        name: "schools".into(),
        kind: FeedKind::Attendance,
        format: Format::Csv,
        transport: Transport::Dir(DirTransport {
            settle_secs: 0,
            ..DirTransport::new(inbox)
        }),
        max_bad_rows,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        limits: Default::default(),
        columns,
    }
}

fn settings(dir: &Path, source: SourceSettings) -> Settings {
    crate::helpers::settings(dir, vec![source])
}

fn marks_csv(pupils: u32, days: u32, bad_rows: u32) -> String {
    let mut s = String::from(HEADER);
    for p in 0..pupils {
        for d in 1..=days {
            for session in ["AM", "PM"] {
                let mark = if session == "AM" { "/" } else { "\\" };
                s.push_str(&format!(
                    "100001,{},Pupil{p},Family{p},01/09/2015,m6 5ab,{d:02}/10/2025,{session},{mark}\n",
                    upn(p)
                ));
            }
        }
    }
    for b in 0..bad_rows {
        s.push_str(&format!(
            "100001,{},Pupil{b},Family{b},01/09/2015,M6 5AB,{:02}/11/2025,AM,Q9\n",
            upn(b),
            b % 28 + 1
        ));
    }
    s
}

/// One ingest run with the system clock: what happened to each file.
pub(crate) async fn run(settings: &Settings, store: &Store) -> Vec<FileOutcome> {
    pipeline::ingest(
        settings,
        store,
        Clock::system(),
        &IngestRequest::default(),
        &NoProgress,
    )
    .await
    .expect("ingest step")
    .files
}

#[tokio::test]
async fn a_file_is_stored_once_and_archived() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("a_file_is_stored_once", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        std::fs::write(inbox.join("marks.csv"), marks_csv(5, 10, 1)).unwrap();

        let files = run(&settings, &store).await;
        match &files[..] {
            [FileOutcome::Ingested { counts, .. }] => {
                assert_eq!(counts.rows_read, 101, "{backend}");
                assert_eq!(counts.records, 100, "{backend}");
                assert_eq!(counts.quarantined, 1, "{backend}");
            }
            other => panic!("{backend}: {other:?}"),
        }
        let counts = store.table_counts().await.unwrap();
        assert_eq!(counts.attendance_marks, 100, "{backend}");
        assert_eq!(counts.mentions, 5, "{backend}: one mention per pupil");
        assert_eq!(counts.quarantined, 1, "{backend}");
        assert!(inbox.join("archive/marks.csv").exists(), "{backend}");
        assert!(!inbox.join("marks.csv").exists(), "{backend}");

        // The same content delivered again changes nothing.
        std::fs::write(inbox.join("marks-again.csv"), marks_csv(5, 10, 1)).unwrap();
        let files = run(&settings, &store).await;
        assert!(
            matches!(&files[..], [FileOutcome::Duplicate { .. }]),
            "{backend}: {files:?}"
        );
        assert_eq!(store.table_counts().await.unwrap(), counts, "{backend}");
        assert!(inbox.join("archive/marks-again.csv").exists(), "{backend}");
    }
}

#[tokio::test]
async fn too_many_bad_rows_rejects_the_whole_file_and_keeps_earlier_data() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("too_many_bad_rows", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        std::fs::write(inbox.join("good.csv"), marks_csv(2, 5, 0)).unwrap();
        run(&settings, &store).await;
        let before = store.table_counts().await.unwrap();
        assert_eq!(before.attendance_marks, 20);

        // 10 bad rows of 30 = 33% > 5%.
        std::fs::write(
            inbox.join("bad.csv"),
            marks_csv(2, 5, 10).replace("Family0", "Changed"),
        )
        .unwrap();
        let files = run(&settings, &store).await;
        let reason = match &files[..] {
            [FileOutcome::Rejected {
                reason, moved_to, ..
            }] => {
                assert_eq!(
                    moved_to.as_deref(),
                    Some(inbox.join("rejected/bad.csv").as_path())
                );
                reason.clone()
            }
            other => panic!("{backend}: {other:?}"),
        };
        assert!(reason.contains("max_bad_rows"), "{backend}: {reason}");
        assert!(reason.contains("10 of 30"), "{backend}: {reason}");
        let written = std::fs::read_to_string(inbox.join("rejected/bad.csv.reason.txt")).unwrap();
        assert!(written.contains("max_bad_rows"), "{written}");
        assert_eq!(
            store.table_counts().await.unwrap(),
            before,
            "{backend}: nothing stored"
        );
        let surnames = store
            .column_text("SELECT surname FROM mentions ORDER BY surname")
            .await
            .unwrap();
        assert!(!surnames.contains(&Some("Changed".into())), "{backend}");
    }
}

#[tokio::test]
async fn a_missing_column_rejects_the_file_naming_the_column_and_map_entry() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("missing_column", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        let csv = marks_csv(1, 2, 0).replace("DOB,", "Birth date,");
        std::fs::write(inbox.join("cols.csv"), csv).unwrap();
        let files = run(&settings, &store).await;
        let FileOutcome::Rejected { reason, .. } = &files[0] else {
            panic!("{backend}: {files:?}")
        };
        assert!(reason.contains("dob"), "{reason}");
        assert!(reason.contains("DOB"), "{reason}");
        assert_eq!(store.table_counts().await.unwrap().attendance_marks, 0);
        let status = store.source_stats().await.unwrap();
        assert_eq!(status[0].files_rejected, 1, "{backend}");
    }
}

#[tokio::test]
async fn corrections_replace_earlier_values_by_natural_key() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("corrections_replace", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        std::fs::write(inbox.join("a.csv"), marks_csv(1, 3, 0)).unwrap();
        run(&settings, &store).await;
        // The school recodes one session from present to unexplained absence.
        let correction = format!(
            "{HEADER}100001,{},Pupil0,Family0,01/09/2015,M6 5AB,02/10/2025,PM,N\n",
            upn(0)
        );
        std::fs::write(inbox.join("b.csv"), correction).unwrap();
        run(&settings, &store).await;
        assert_eq!(
            store.table_counts().await.unwrap().attendance_marks,
            6,
            "{backend}"
        );
        let marks = store
            .column_text("SELECT mark FROM attendance_marks WHERE category = 'UA'")
            .await
            .unwrap();
        assert_eq!(marks, vec![Some("N".to_string())], "{backend}");
    }
}

#[tokio::test]
async fn a_file_left_half_done_by_a_crash_is_ingested_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("crash_recovery", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        let raw_dir = settings.state_dir.join("raw/schools");
        std::fs::create_dir_all(&raw_dir).unwrap();
        std::fs::write(inbox.join("m.csv"), marks_csv(3, 4, 0)).unwrap();
        // A run that took the file and stopped before its transaction committed
        // leaves exactly this behind: a raw copy, a `fetched` ledger row, and the
        // delivered file still in the inbox.
        let taken = kinlink::feeds::dir::take(
            "schools",
            &inbox.join("m.csv"),
            &raw_dir,
            u64::MAX,
            &Default::default(),
        )
        .unwrap();
        store
            .record_fetched(&kinlink::store::NewFile {
                source: "schools",
                kind: FeedKind::Attendance,
                original_name: "m.csv",
                raw_path: &taken.path,
                origin: "dir",
                sha256: &taken.sha256,
                size: taken.size,
                fetched_at: Clock::system().now(),
            })
            .await
            .unwrap();
        let files = run(&settings, &store).await;
        assert_eq!(files.len(), 2, "{backend}: {files:?}");
        assert!(
            matches!(files[0], FileOutcome::Ingested { .. }),
            "{files:?}"
        );
        assert!(
            matches!(files[1], FileOutcome::Duplicate { .. }),
            "{files:?}"
        );
        assert_eq!(
            store.table_counts().await.unwrap().attendance_marks,
            24,
            "{backend}"
        );
        let stats = store.source_stats().await.unwrap();
        assert_eq!(
            (stats[0].files_ingested, stats[0].files_waiting),
            (1, 0),
            "{backend}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state/kinlink.db");
    let store = Store::open_sqlite(&db).await.unwrap();
    store.close().await;
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// The sender knows their file as `attendance-2025-11-20.csv`, not as the
/// sha256-named copy in the state dir: every rejection names the delivered file.
#[tokio::test]
async fn a_rejection_names_the_file_as_delivered_not_the_raw_copy() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("rejection_names_original", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        let name = "attendance-2025-11-20.csv";
        let csv = marks_csv(1, 2, 0).replace("DOB,", "Birth date,");
        std::fs::write(inbox.join(name), csv).unwrap();
        let files = run(&settings, &store).await;
        let FileOutcome::Rejected {
            reason,
            file,
            file_id,
            ..
        } = &files[0]
        else {
            panic!("{backend}: {files:?}")
        };
        assert_eq!(file, name, "{backend}");
        assert!(reason.contains(name), "{backend}: {reason}");
        let raw = store.ledger_file(*file_id).await.unwrap().raw_path;
        let raw_name = raw.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !reason.contains(&raw_name),
            "{backend}: names the raw copy: {reason}"
        );
        let written =
            std::fs::read_to_string(inbox.join(format!("rejected/{name}.reason.txt"))).unwrap();
        assert!(written.contains(name), "{backend}: {written}");
        assert!(!written.contains(&raw_name), "{backend}: {written}");
        let ledger = store.ledger("schools").await.unwrap();
        assert_eq!(ledger.len(), 1, "{backend}");
        assert_eq!(ledger[0].status, "rejected", "{backend}");

        // Rejected for its rows rather than its header: named the same way.
        let name = "attendance-2025-11-21.csv";
        std::fs::write(inbox.join(name), marks_csv(1, 2, 3)).unwrap();
        let files = run(&settings, &store).await;
        let FileOutcome::Rejected { reason, .. } = &files[0] else {
            panic!("{backend}: {files:?}")
        };
        assert!(reason.contains("max_bad_rows"), "{backend}: {reason}");
        assert!(reason.contains(name), "{backend}: {reason}");
    }
}

/// Every code of the national table is stored with its own code and category, on
/// both backends (SQLite binds marks as numbers and decodes them in SQL).
#[tokio::test]
async fn every_mark_code_is_stored_with_its_code_and_category() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("every_mark_code", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        let marks: Vec<kinlink::domain::Mark> = kinlink::domain::Mark::all().collect();
        let mut csv = String::from(HEADER);
        for (i, mark) in marks.iter().enumerate() {
            let session = if i % 2 == 0 { "AM" } else { "PM" };
            csv.push_str(&format!(
                "100001,{},Pupil0,Family0,01/09/2015,M6 5AB,{:02}/10/2025,{session},{}\n",
                upn(0),
                i / 2 + 1,
                mark.code()
            ));
        }
        std::fs::write(inbox.join("codes.csv"), csv).unwrap();
        let files = run(&settings, &store).await;
        assert!(
            matches!(&files[..], [FileOutcome::Ingested { counts, .. }] if counts.quarantined == 0),
            "{backend}: {files:?}"
        );
        let stored = store
            .column_text(
                "SELECT date || ' ' || session || ' ' || mark || ' ' || category FROM attendance_marks \
                 ORDER BY date, session",
            )
            .await
            .unwrap();
        let expected: Vec<Option<String>> = marks
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Some(format!(
                    "2025-10-{:02} {} {} {}",
                    i / 2 + 1,
                    if i % 2 == 0 { "AM" } else { "PM" },
                    m.code(),
                    m.category().as_str()
                ))
            })
            .collect();
        assert_eq!(stored, expected, "{backend}");
    }
}

/// The same session twice in one file (a resent row, then its correction): one
/// mark is stored, the later one, on both backends.
#[tokio::test]
async fn a_repeated_row_in_one_file_is_stored_once_the_last_one_winning() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("repeated_row_one_file", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        let row = |mark: &str| {
            format!(
                "100001,{},Pupil0,Family0,01/09/2015,M6 5AB,02/10/2025,AM,{mark}\n",
                upn(0)
            )
        };
        let csv = format!("{HEADER}{}{}{}", row("/"), row("/"), row("N"));
        std::fs::write(inbox.join("repeat.csv"), csv).unwrap();
        let files = run(&settings, &store).await;
        assert!(
            matches!(&files[..], [FileOutcome::Ingested { counts, .. }] if counts.records == 3),
            "{backend}: {files:?}"
        );
        let stored = store
            .column_text("SELECT mark || ' ' || category FROM attendance_marks")
            .await
            .unwrap();
        assert_eq!(stored, vec![Some("N UA".to_string())], "{backend}");
    }
}

#[tokio::test]
async fn a_file_of_many_store_batches_keeps_every_row_in_order() {
    // More rows than two of the pipeline's batches, so the store writes a chunk of
    // marks while it binds the next: the last row for a key must still win, and
    // no chunk may be lost at a batch boundary or at commit.
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("many_store_batches", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = settings(dir.path(), attendance_source(&inbox, 0.05));
        let (pupils, months, days) = (160u32, 4u32, 28u32);
        let mut csv = String::from(HEADER);
        for p in 0..pupils {
            for m in 9..9 + months {
                for d in 1..=days {
                    for session in ["AM", "PM"] {
                        csv.push_str(&format!(
                            "100001,{},Pupil{p},Family{p},01/09/2015,M6 5AB,{d:02}/{m:02}/2025,{session},/\n",
                            upn(p)
                        ));
                    }
                }
            }
        }
        // The first pupil's first mark, corrected at the end of the file.
        csv.push_str(&format!(
            "100001,{},Pupil0,Family0,01/09/2015,M6 5AB,01/09/2025,AM,N\n",
            upn(0)
        ));
        let rows = u64::from(pupils * months * days * 2);
        assert!(rows > 2 * kinlink::store::SQLITE_MARK_CHUNK as u64 * 2);
        std::fs::write(inbox.join("term.csv"), csv).unwrap();

        let files = run(&settings, &store).await;
        assert!(
            matches!(&files[..], [FileOutcome::Ingested { counts, .. }]
                if counts.records == rows as i64 + 1 && counts.quarantined == 0),
            "{backend}: {files:?}"
        );
        let counts = store.table_counts().await.unwrap();
        assert_eq!(counts.attendance_marks as u64, rows, "{backend}");
        assert_eq!(counts.mentions, i64::from(pupils), "{backend}");
        let unexplained = store
            .column_text(
                "SELECT mark || ' ' || date || ' ' || session FROM attendance_marks \
                 WHERE category <> 'P'",
            )
            .await
            .unwrap();
        assert_eq!(
            unexplained,
            vec![Some("N 2025-09-01 AM".to_string())],
            "{backend}"
        );
        let days_known = store
            .column_text("SELECT CAST(COUNT(*) AS TEXT) FROM school_days")
            .await
            .unwrap();
        assert_eq!(
            days_known,
            vec![Some((months * days).to_string())],
            "{backend}"
        );
        let latest = store
            .column_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM pupil_schools WHERE last_mark_on = '2025-12-28'",
            )
            .await
            .unwrap();
        assert_eq!(latest, vec![Some(pupils.to_string())], "{backend}");
    }
}

#[tokio::test]
async fn mentions_stored_before_address_keys_get_them_when_the_store_next_opens() {
    let dir = tempfile::tempdir().unwrap();
    let test = "address_keys_upgrade";
    for (backend, store) in stores(test, dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let mut source = attendance_source(&inbox, 0.05);
        source
            .columns
            .insert("address_line1".into(), "Address".into());
        let settings = settings(dir.path(), source);
        let header = HEADER.replace(",Post code,", ",Address,Post code,");
        let csv = format!(
            "{header}100001,{},Ann,Oak,01/09/2015,\"12 Oak Road,\",m6 5ab,01/10/2025,AM,/\n\
             100001,{},Ben,Elm,01/09/2015,,M6 5AB,01/10/2025,AM,/\n",
            upn(1),
            upn(2)
        );
        std::fs::write(inbox.join("marks.csv"), csv).unwrap();
        run(&settings, &store).await;
        let keys = store
            .column_text("SELECT address_key FROM mentions ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            keys,
            vec![Some("addr:12 OAK RD|M6 5AB".to_string()), None],
            "{backend}: the key ingest keeps"
        );
        store.close().await;

        // The store as the migration leaves an older one: keys missing, the
        // upgrade pending.
        let forget = [
            "UPDATE mentions SET address_key = NULL",
            "INSERT INTO store_upgrades (name) VALUES ('mention_address_keys')",
        ];
        let store = reopened_after(backend, dir.path(), test, &forget).await;
        assert_eq!(
            store
                .column_text("SELECT address_key FROM mentions ORDER BY id")
                .await
                .unwrap(),
            keys,
            "{backend}: the keys filled in at opening"
        );
        assert_eq!(
            store
                .scalar_i64("SELECT COUNT(*) FROM store_upgrades")
                .await
                .unwrap(),
            0,
            "{backend}: nothing left pending"
        );
    }
}

#[tokio::test]
async fn address_keys_written_before_the_one_postcode_parser_are_computed_again() {
    let dir = tempfile::tempdir().unwrap();
    let test = "address_keys_postcode_parser";
    for (backend, store) in stores(test, dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let mut source = attendance_source(&inbox, 0.05);
        source
            .columns
            .insert("address_line1".into(), "Address".into());
        let settings = settings(dir.path(), source);
        let header = HEADER.replace(",Post code,", ",Address,Post code,");
        // A postcode too short to have an inward code.
        let csv = format!(
            "{header}100001,{},Ann,Oak,01/09/2015,12 Oak Road,m65a,01/10/2025,AM,/\n",
            upn(1)
        );
        std::fs::write(inbox.join("marks.csv"), csv).unwrap();
        run(&settings, &store).await;
        let keys = store
            .column_text("SELECT address_key FROM mentions ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            keys,
            vec![Some("addr:12 OAK RD|M65A".to_string())],
            "{backend}"
        );
        store.close().await;

        // The store as an earlier kinlink left it: the old key, and migration 14
        // not yet applied.
        let older = [
            "UPDATE mentions SET address_key = 'addr:12 OAK RD|M 65A'",
            "DELETE FROM _sqlx_migrations WHERE version = 14",
        ];
        let store = reopened_after(backend, dir.path(), test, &older).await;
        assert_eq!(
            store
                .column_text("SELECT address_key FROM mentions ORDER BY id")
                .await
                .unwrap(),
            keys,
            "{backend}: the key computed again at opening"
        );
        store.close().await;
    }
}

/// Runs `statements` on the store's database behind its back (the store closed),
/// then opens it again: the store as an older kinlink left it, at its next opening.
pub(crate) async fn reopened_after(
    backend: &str,
    dir: &Path,
    test: &str,
    statements: &[&str],
) -> Store {
    use sqlx::Connection;
    let pg_url = kinlink_test_support::with_database(
        &crate::backends::postgres_url(),
        &format!("kinlink_it_{test}"),
    );
    let sqlite_path = dir.join("kinlink.db");
    if backend == "sqlite" {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", sqlite_path.display()))
            .await
            .unwrap();
        for sql in statements {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
        Store::open_sqlite(&sqlite_path).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&pg_url).await.unwrap();
        for sql in statements {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
        Store::open_postgres(&pg_url).await.unwrap()
    }
}
