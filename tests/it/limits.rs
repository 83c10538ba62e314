//! What a malformed or oversized CSV costs, end to end on both backends: nothing
//! lost in silence, nothing stored whole that should not be, memory bounded by the
//! source's limits rather than by the file.
//!
//! - A stray quote in a police file rejects the file naming the line; no row from
//!   it is stored; the reason beside the rejected file carries no value.
//! - A 10 MB notification id quarantines its row; the rest of the file is kept and
//!   the stored copy of the row is cut to the column's length.
//! - A 200 MB line is refused by the real binary under a 512 MiB data limit.

use std::path::Path;

use kinlink::config::SourceSettings;
use kinlink::domain::FeedKind;
use kinlink::pipeline::FileOutcome;

use crate::backends::stores;
use crate::helpers::csv_source;
use crate::pipeline::run;

const POLICE: &str =
    "notification_id,incident_at,role,forename,surname,dob,address_line1,postcode,dash_risk";

fn police_source(inbox: &Path) -> SourceSettings {
    let columns: Vec<(&str, &str)> = POLICE.split(',').map(|c| (c, c)).collect();
    csv_source("police", FeedKind::PoliceDa, inbox, &columns)
}

/// `rows` police rows, each its own notification; the people are named
/// `Forename{i}` / `Surname{i}`.
fn police_csv(rows: usize) -> String {
    let mut s = format!("{POLICE}\n");
    for i in 0..rows {
        s.push_str(&format!(
            "N{i},2026-11-18 23:30,victim,Forename{i},Surname{i},01/02/1990,{} Mill Road,M6 5AB,medium\n",
            i + 1
        ));
    }
    s
}

#[tokio::test]
async fn a_stray_quote_rejects_the_police_file_naming_its_line_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("limits_stray_quote", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = crate::helpers::settings(dir.path(), vec![police_source(&inbox)]);
        // 4,643 rows; row 4001 (line 4002) has an unbalanced quote before its
        // surname. Parsed leniently, it would swallow the rows after it up to the
        // next quote and the file would be kept with those rows gone.
        let text = police_csv(4643).replace(
            "N4000,2026-11-18 23:30,victim,Forename4000,Surname4000",
            "N4000,2026-11-18 23:30,victim,Forename4000,\"Surname4000",
        );
        std::fs::write(inbox.join("police.csv"), text).unwrap();

        let files = run(&settings, &store).await;
        let [FileOutcome::Rejected {
            reason, moved_to, ..
        }] = &files[..]
        else {
            panic!("{backend}: {files:?}")
        };
        assert!(
            reason.contains("field 5 of line 4002 opens a quote"),
            "{backend}: {reason}"
        );
        assert!(reason.contains("multiline_fields"), "{backend}: {reason}");
        assert!(reason.contains("nothing from this file was stored"));
        let counts = store.table_counts().await.unwrap();
        assert_eq!(counts.da_persons, 0, "{backend}");
        assert_eq!(counts.mentions, 0, "{backend}");
        assert_eq!(counts.quarantined, 0, "{backend}");
        let moved = moved_to.as_ref().expect("moved to rejected/");
        let written = std::fs::read_to_string(kinlink::feeds::dir::reason_path(moved)).unwrap();
        assert!(written.contains("line 4002"), "{written}");
        assert!(!written.contains("Surname4000"), "{written}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_quote_spanning_lines_is_kept_where_the_source_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("limits_multiline", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let mut source = police_source(&inbox);
        source.limits.multiline_fields = true;
        let settings = crate::helpers::settings(dir.path(), vec![source]);
        let text = police_csv(20).replacen(",3 Mill Road,", ",\"Flat 3\nMill Road\",", 1);
        std::fs::write(inbox.join("police.csv"), text).unwrap();
        let files = run(&settings, &store).await;
        let [FileOutcome::Ingested { counts, .. }] = &files[..] else {
            panic!("{backend}: {files:?}")
        };
        assert_eq!((counts.records, counts.quarantined), (20, 0), "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_runaway_value_quarantines_its_row_and_is_not_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("limits_runaway", dir.path()).await {
        let inbox = dir.path().join(format!("inbox-{backend}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let settings = crate::helpers::settings(dir.path(), vec![police_source(&inbox)]);
        let huge_id = "7".repeat(10 << 20);
        let long_surname = "Q".repeat(101);
        let text = police_csv(100)
            .replacen("N10,", &format!("{huge_id},"), 1)
            .replacen("Surname20,", &format!("{long_surname},"), 1);
        std::fs::write(inbox.join("police.csv"), text).unwrap();

        let files = run(&settings, &store).await;
        let [FileOutcome::Ingested {
            counts, file_id, ..
        }] = &files[..]
        else {
            panic!("{backend}: {files:?}")
        };
        assert_eq!((counts.records, counts.quarantined), (98, 2), "{backend}");
        assert_eq!(store.table_counts().await.unwrap().da_persons, 98);
        let rows = store.quarantined_rows(*file_id, 10).await.unwrap();
        let found: Vec<(i64, Option<&str>)> = rows
            .iter()
            .map(|r| (r.row_number, r.column.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![(12, Some("notification_id")), (22, Some("surname"))],
            "{backend}"
        );
        assert!(
            rows[0].reason.contains("longer than 64 characters"),
            "{}",
            rows[0].reason
        );
        assert!(
            rows[1].reason.contains("longer than 100 characters"),
            "{}",
            rows[1].reason
        );
        // The stored row keeps the id only up to its column's length.
        assert!(
            rows[0].raw.len() < 1_000,
            "{backend}: {}",
            rows[0].raw.len()
        );
        assert!(
            rows[0].raw.contains("cut at 64 characters"),
            "{}",
            rows[0].raw
        );
        store.close().await;
    }
}

/// `kinlink ingest` on a file whose one line is 200 MB, in a process whose data
/// segment may not pass 512 MiB (RLIMIT_DATA, through util-linux `prlimit`). The
/// parser would need the whole line in memory, twice over while its buffer grows;
/// the guard refuses the line once its field passes `max_field_bytes` (16 MiB).
#[test]
fn a_200_mb_line_is_refused_within_a_memory_limit() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("prlimit (util-linux) is needed: apt-get install util-linux");
    }
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    let config = dir.path().join("kinlink.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n\n[[source]]\nname = \"police\"\nkind = \"police_da\"\n\
         format = \"csv\"\ntransport = { type = \"dir\", path = \"inbox\", settle_secs = 0 }\n",
    )
    .unwrap();
    {
        use std::io::Write;
        let f = std::fs::File::create(inbox.join("police.csv")).unwrap();
        let mut w = std::io::BufWriter::new(f);
        writeln!(w, "{POLICE}").unwrap();
        writeln!(
            w,
            "N1,2026-11-18 23:30,victim,Amy,Mill,,1 Mill Road,M6 5AB,medium"
        )
        .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..200 {
            w.write_all(&chunk).unwrap();
        }
        writeln!(w).unwrap();
    }
    let out = std::process::Command::new("prlimit")
        .arg("--data=536870912")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_kinlink"))
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .env_remove("KINLINK_CONFIG")
        .output()
        .expect("run kinlink under prlimit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("field 1 of line 3 is longer than 16777216 bytes"),
        "{stdout}\n{stderr}"
    );
    assert!(inbox.join("rejected/police.csv").exists());
}
