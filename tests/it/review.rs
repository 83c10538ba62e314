//! The review queue through the real binary, on both backends: ids taken as
//! `review list` prints them, a decision shown before it is recorded, bad
//! decisions refused with the reason and nothing written, the queue ranked by
//! impact, and `review undo` giving back persons, families, their ids and aliases
//! exactly, after an incremental link and after `link --full`.
//!
//! The borough is the demo's, with a late attendance file that names ten of its
//! pupils again at another school and address and without a UPN: pairs the linker
//! sends to review (two schools, no shared address).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::NaiveDate;
use kinlink::demo::{generate, DemoOptions, SOURCE_ATTENDANCE};
use kinlink::store::Store;
use serde_json::Value;

use crate::backends::{fresh_postgres, postgres_url};

const KINLINK: &str = env!("CARGO_BIN_EXE_kinlink");
const AS_OF: &str = "2025-03-10";
const BY: &str = "reviewer@example.gov.uk";

/// A linked, evaluated borough on one backend.
struct Borough {
    backend: &'static str,
    config: PathBuf,
    /// The same store the binary uses, for the checks.
    store: Store,
}

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(KINLINK)
        .arg("--config")
        .arg(config)
        .args(["--as-of", AS_OF])
        .args(args)
        .env_remove("KINLINK_CONFIG")
        .output()
        .expect("run the kinlink binary")
}

/// Runs a command that must succeed; its stdout.
fn run_ok(config: &Path, args: &[&str]) -> String {
    let out = run(config, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{config:?}: {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl Borough {
    fn run(&self, args: &[&str]) -> Output {
        run(&self.config, args)
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        run_ok(&self.config, args)
    }

    /// Runs a command that must be refused (exit 2) with nothing written; its stderr.
    async fn refused(&self, args: &[&str]) -> String {
        let before = self.decision_rows().await;
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {args:?}: {}\n{stderr}",
            self.backend,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            self.decision_rows().await,
            before,
            "{}: {args:?} wrote something",
            self.backend
        );
        stderr
    }

    /// The review queue and the decision trail, row by row.
    async fn decision_rows(&self) -> Vec<Vec<Option<String>>> {
        let mut out = Vec::new();
        for sql in [
            "SELECT CAST(a AS TEXT) || '~' || CAST(b AS TEXT) || ':' || status || ':' \
             || COALESCE(decided_by, '') FROM review_queue ORDER BY a, b",
            "SELECT CAST(id AS TEXT) || ':' || CAST(a AS TEXT) || '~' || CAST(b AS TEXT) || ':' \
             || verdict || ':' || COALESCE(withdrawn_by, '') FROM review_decisions ORDER BY id",
        ] {
            out.push(self.store.column_text(sql).await.unwrap());
        }
        out
    }

    /// Persons, families, their ids and aliases as a reviewer and the rules see them.
    async fn snapshot(&self) -> Vec<(String, Vec<Option<String>>)> {
        let mut out = vec![(
            "persons export".to_string(),
            self.ok(&["persons", "export", "--format", "csv"])
                .lines()
                .map(|l| Some(l.to_string()))
                .collect(),
        )];
        for sql in [
            "SELECT CAST(old_id AS TEXT) || '>' || CAST(new_id AS TEXT) FROM person_aliases ORDER BY old_id",
            "SELECT CAST(old_id AS TEXT) || '>' || CAST(new_id AS TEXT) FROM family_aliases ORDER BY old_id",
            "SELECT CAST(person_id AS TEXT) || ':' || CAST(family_id AS TEXT) || ':' || via \
             FROM family_members ORDER BY person_id",
            "SELECT CAST(person_id AS TEXT) || ':' || CAST(household_id AS TEXT) \
             FROM household_members ORDER BY person_id",
            "SELECT CAST(id AS TEXT) FROM persons WHERE merged_into IS NULL \
             AND id IN (SELECT person_id FROM mention_persons) ORDER BY id",
            "SELECT CAST(id AS TEXT) FROM families WHERE merged_into IS NULL \
             AND id IN (SELECT family_id FROM family_members) ORDER BY id",
            "SELECT CAST(a AS TEXT) || '~' || CAST(b AS TEXT) || ':' || band || ':' || basis \
             FROM links ORDER BY a, b",
            "SELECT CAST(a AS TEXT) || '~' || CAST(b AS TEXT) || ':' || status FROM review_queue ORDER BY a, b",
        ] {
            out.push((sql.to_string(), self.store.column_text(sql).await.unwrap()));
        }
        out
    }

    /// `review list --format json`.
    fn queue(&self, all: bool) -> Vec<Value> {
        let mut args = vec!["review", "list", "--format", "json"];
        if all {
            args.push("--all");
        }
        let doc: Value = serde_json::from_str(&self.ok(&args)).unwrap();
        doc.as_array().unwrap().clone()
    }

    /// The number a query returns.
    async fn id(&self, sql: &'static str) -> i64 {
        self.store.scalar_i64(sql).await.unwrap()
    }
}

/// Ten pupils of the demo's attendance file again, at school 199999, at an
/// address of their own and without a UPN: each pair goes to review.
fn write_late_file(attendance: &Path, inbox: &Path) {
    let mut r = csv::Reader::from_path(attendance).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (urn, upn, line, postcode, date, session, mark) = (
        col("School URN"),
        col("Pupil UPN"),
        col("Address Line 1"),
        col("Post Code"),
        col("Session Date"),
        col("AM/PM"),
        col("Mark"),
    );
    let mut seen = HashSet::new();
    let mut pupils = Vec::new();
    for row in r.records() {
        let row = row.unwrap();
        if !row[upn].is_empty() && seen.insert(row[upn].to_string()) {
            pupils.push(row);
        }
    }
    let mut w = csv::Writer::from_path(inbox.join("late.csv")).unwrap();
    w.write_record(&header).unwrap();
    for (i, p) in pupils.iter().take(40).step_by(4).enumerate() {
        for half in ["AM", "PM"] {
            let mut row: Vec<String> = p.iter().map(str::to_string).collect();
            row[urn] = "199999".into();
            row[upn] = String::new();
            row[line] = format!("{} Far Lane", i + 1);
            row[postcode] = "M30 0ZZ".into();
            row[date] = "10/03/2025".into();
            row[session] = half.into();
            row[mark] = "/".into();
            w.write_record(&row).unwrap();
        }
    }
    w.flush().unwrap();
}

/// The borough on SQLite and on PostgreSQL: ingested, linked and evaluated.
async fn boroughs(test: &str, dir: &Path) -> Vec<Borough> {
    let mut out = Vec::new();
    let postgres = fresh_postgres(test).await;
    let backends: Vec<(&'static str, Option<Store>)> = match postgres {
        Some(pg) => vec![("sqlite", None), ("postgres", Some(pg))],
        None => vec![("sqlite", None)],
    };
    for (backend, store) in backends {
        let root = dir.join(backend);
        let summary = generate(&DemoOptions {
            families: 300,
            seed: 42,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 10).unwrap(),
            out_dir: root.clone(),
        })
        .unwrap();
        let attendance = summary
            .files
            .iter()
            .find(|f| f.source == SOURCE_ATTENDANCE)
            .unwrap();
        write_late_file(&attendance.path, attendance.path.parent().unwrap());
        let config = root.join("kinlink.toml");
        if backend == "postgres" {
            let url =
                kinlink_test_support::with_database(&postgres_url(), &format!("kinlink_it_{test}"));
            let text = std::fs::read_to_string(&config).unwrap().replace(
                "database_url = \"sqlite://kinlink.db\"",
                &format!("database_url = {url:?}"),
            );
            std::fs::write(&config, text).unwrap();
        }
        run_ok(&config, &["ingest"]);
        let store = match store {
            Some(s) => s,
            None => Store::open_sqlite(&root.join("state/kinlink.db"))
                .await
                .unwrap(),
        };
        let b = Borough {
            backend,
            config,
            store,
        };
        b.ok(&["link"]);
        b.ok(&["evaluate"]);
        out.push(b);
    }
    out
}

/// source/mention_key → (person, family), from `persons export`.
fn placements(b: &Borough) -> HashMap<(String, String), (String, String)> {
    let text = b.ok(&["persons", "export", "--format", "csv"]);
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.records()
        .map(|row| {
            let row = row.unwrap();
            (
                (row[3].to_string(), row[4].to_string()),
                (row[0].to_string(), row[1].to_string()),
            )
        })
        .collect()
}

fn side_key(row: &Value, side: &str) -> (String, String) {
    let m = &row[side];
    (
        m["source"].as_str().unwrap().to_string(),
        m["mention_key"].as_str().unwrap().to_string(),
    )
}

fn pair(row: &Value) -> (String, String) {
    (
        format!("M{}", row["a"].as_i64().unwrap()),
        format!("M{}", row["b"].as_i64().unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_gives_back_persons_families_ids_and_aliases_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for b in boroughs("review_undo", dir.path()).await {
        let backend = b.backend;
        let before = b.snapshot().await;
        let queue = b.queue(false);
        assert!(queue.len() >= 5, "{backend}: {queue:?}");

        // A wrong accept that joins two families: found by its preview.
        let (a, m) = queue
            .iter()
            .map(pair)
            .find(|(a, m)| {
                let shown = b.ok(&["review", "accept", a, m, "--by", BY, "--dry-run"]);
                shown.contains("become one family")
            })
            .expect("a queued pair whose accept joins two families");
        let shown = b.ok(&["review", "accept", &a, &m, "--by", BY, "--dry-run"]);
        assert!(shown.contains("dry run: nothing recorded"), "{shown}");
        assert!(shown.contains("become one person"), "{shown}");
        assert_eq!(b.decision_rows().await[1], vec![], "{backend}: dry run");
        let done = b.ok(&[
            "review",
            "accept",
            &a,
            &m,
            "--by",
            BY,
            "--note",
            "same child",
        ]);
        assert!(done.contains(&format!("accepted {a} ~ {m}")), "{done}");
        // What the preview said is what the next link does.
        b.ok(&["link"]);
        let merged = b.snapshot().await;
        assert_ne!(merged, before, "{backend}: the accept changed nothing");
        let aliases = |s: &[(String, Vec<Option<String>>)], i: usize| s[i].1.len();
        assert_eq!(
            aliases(&merged, 1),
            aliases(&before, 1) + 1,
            "{backend}: a person alias"
        );
        assert_eq!(
            aliases(&merged, 2),
            aliases(&before, 2) + 1,
            "{backend}: a family alias"
        );

        let undone = b.ok(&[
            "review",
            "undo",
            &a,
            &m,
            "--by",
            BY,
            "--note",
            "two children",
        ]);
        assert!(
            undone.contains(&format!("withdrew {a} ~ {m}: accepted by {BY}")),
            "{undone}"
        );
        assert!(
            undone.contains("puts back, as they were before it: persons P"),
            "{undone}"
        );
        assert!(
            undone.contains("pending in the review queue again"),
            "{undone}"
        );
        b.ok(&["link"]);
        assert_eq!(b.snapshot().await, before, "{backend}: after undo and link");
        b.ok(&["link", "--full"]);
        assert_eq!(b.snapshot().await, before, "{backend}: after link --full");
        // The decision stays in the trail, withdrawn.
        let (x, y) = (a[1..].parse().unwrap(), m[1..].parse().unwrap());
        let history = b.store.decision_history(x, y).await.unwrap();
        assert_eq!(history.len(), 1, "{backend}");
        assert_eq!(
            history[0].withdrawn.as_ref().map(|w| w.0.as_str()),
            Some(BY)
        );

        // A wrong reject of an automatic link: the person splits, then comes back.
        let police: i64 = b
            .id("SELECT MIN(mp.mention_id) FROM mention_persons mp JOIN mentions m ON m.id = mp.mention_id \
                 WHERE m.kind = 'police_da' AND mp.person_id IN (SELECT mp2.person_id FROM mention_persons mp2 \
                 JOIN mentions m2 ON m2.id = mp2.mention_id WHERE m2.kind = 'attendance')")
            .await;
        let pupil: i64 = b
            .id("SELECT MIN(mp.mention_id) FROM mention_persons mp JOIN mentions m ON m.id = mp.mention_id \
                 WHERE m.kind = 'attendance' AND mp.person_id = (SELECT person_id FROM mention_persons \
                 WHERE mention_id = (SELECT MIN(mp2.mention_id) FROM mention_persons mp2 JOIN mentions m2 \
                 ON m2.id = mp2.mention_id WHERE m2.kind = 'police_da' AND mp2.person_id IN \
                 (SELECT mp3.person_id FROM mention_persons mp3 JOIN mentions m3 ON m3.id = mp3.mention_id \
                 WHERE m3.kind = 'attendance')))")
            .await;
        let (p, q) = (format!("M{pupil}"), format!("M{police}"));
        let refused = b.refused(&["review", "reject", &p, &q, "--by", BY]).await;
        assert!(
            refused.contains("is not pending in the review queue"),
            "{refused}"
        );
        assert!(refused.contains("add --force"), "{refused}");
        let shown = b.ok(&["review", "reject", &p, &q, "--by", BY, "--force"]);
        assert!(shown.contains("a new person"), "{shown}");
        b.ok(&["link"]);
        assert_ne!(
            b.snapshot().await,
            before,
            "{backend}: the reject changed nothing"
        );
        let undone = b.ok(&["review", "undo", &q, &p, "--by", BY]);
        assert!(undone.contains("leaves the review queue"), "{undone}");
        b.ok(&["link"]);
        assert_eq!(
            b.snapshot().await,
            before,
            "{backend}: after undoing the reject"
        );
        b.ok(&["link", "--full"]);
        assert_eq!(b.snapshot().await, before, "{backend}: after link --full");

        // Every pending pair accepted in one go, then all withdrawn: the ids of
        // several decisions, applied by one run, come back together.
        let pairs: Vec<(String, String)> = b.queue(false).iter().map(pair).collect();
        for (x, y) in &pairs {
            b.ok(&["review", "accept", x, y, "--by", BY]);
        }
        b.ok(&["link"]);
        assert_ne!(b.snapshot().await, before, "{backend}");
        for (x, y) in pairs.iter().rev() {
            b.ok(&["review", "undo", x, y, "--by", BY]);
        }
        b.ok(&["link"]);
        assert_eq!(
            b.snapshot().await,
            before,
            "{backend}: after undoing them all"
        );
        b.ok(&["link", "--full"]);
        assert_eq!(b.snapshot().await, before, "{backend}: after link --full");
        b.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_decisions_are_refused_with_the_reason_and_nothing_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for b in boroughs("review_refusals", dir.path()).await {
        let backend = b.backend;
        // Ids that are not mention ids.
        let e = b
            .refused(&["review", "accept", "P12", "M2", "--by", BY])
            .await;
        assert!(
            e.contains("mention A \"P12\" is a person id, not a mention id"),
            "{e}"
        );
        assert!(e.contains("M584 (or m584, 584)"), "{e}");
        let e = b
            .refused(&["review", "reject", "M1", "F3", "--by", BY])
            .await;
        assert!(e.contains("mention B \"F3\" is a family id"), "{e}");
        let e = b.refused(&["review", "undo", "abc", "2", "--by", BY]).await;
        assert!(e.contains("mention A \"abc\" is not a mention id"), "{e}");
        let e = b
            .refused(&["review", "accept", "M7", "m7", "--by", BY])
            .await;
        assert!(e.contains("a pair needs two different mentions"), "{e}");
        // An id no mention has.
        let e = b
            .refused(&["review", "accept", "M1", "M99999", "--by", BY, "--force"])
            .await;
        assert!(e.contains("M99999 does not exist"), "{e}");
        let e = b
            .refused(&["review", "undo", "M99998", "M99999", "--by", BY])
            .await;
        assert!(e.contains("M99998 and M99999 do not exist"), "{e}");

        // A pair that is not queued (two late records of different pupils).
        let late_a = b
            .id("SELECT MIN(id) FROM mentions WHERE school_urn = 199999")
            .await;
        let late_b = b
            .id("SELECT MAX(id) FROM mentions WHERE school_urn = 199999")
            .await;
        let e = b
            .refused(&[
                "review",
                "accept",
                &format!("M{late_a}"),
                &format!("M{late_b}"),
                "--by",
                BY,
            ])
            .await;
        assert!(
            e.contains("is not pending in the review queue: the linker never asked"),
            "{e}"
        );
        assert!(e.contains("add --force"), "{e}");

        // Accepts the linker would never honour, --force or not.
        let upn_a = b.id("SELECT MIN(id) FROM mentions WHERE upn_valid").await;
        let upn_b = b
            .id("SELECT MIN(id) FROM mentions WHERE upn_valid AND upn <> \
                 (SELECT upn FROM mentions WHERE id = (SELECT MIN(id) FROM mentions WHERE upn_valid))")
            .await;
        let e = b
            .refused(&[
                "review",
                "accept",
                &format!("{upn_a}"),
                &format!("{upn_b}"),
                "--by",
                BY,
                "--force",
            ])
            .await;
        assert!(e.contains("carry different valid UPNs"), "{e}");
        let named_a = b
            .id(
                "SELECT MIN(mention_id) FROM da_persons WHERE notification_id = \
                 (SELECT MIN(notification_id) FROM da_persons)",
            )
            .await;
        let named_b = b
            .id(
                "SELECT MAX(mention_id) FROM da_persons WHERE notification_id = \
                 (SELECT MIN(notification_id) FROM da_persons)",
            )
            .await;
        assert_ne!(named_a, named_b, "{backend}");
        let e = b
            .refused(&[
                "review",
                "accept",
                &format!("M{named_a}"),
                &format!("M{named_b}"),
                "--by",
                BY,
                "--force",
            ])
            .await;
        assert!(
            e.contains("two people named in one police notification"),
            "{e}"
        );

        // The two queued pairs of one pupil: the school record and the police
        // record of one person, each against the late record.
        let queue = b.queue(false);
        let late_ids: HashSet<i64> = b
            .store
            .column_text("SELECT CAST(id AS TEXT) FROM mentions WHERE school_urn = 199999")
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.unwrap().parse().unwrap())
            .collect();
        // Late record → the other mentions it is queued against.
        let mut late_pairs: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for r in &queue {
            let (a, b2) = (r["a"].as_i64().unwrap(), r["b"].as_i64().unwrap());
            let (late, other) = if late_ids.contains(&b2) {
                (b2, a)
            } else {
                (a, b2)
            };
            late_pairs.entry(late).or_default().push(other);
        }
        let (late, firsts) = late_pairs
            .iter()
            .find(|(_, firsts)| firsts.len() == 2)
            .unwrap_or_else(|| {
                panic!("{backend}: a late record queued against two mentions of one person: {late_pairs:?}")
            });
        let (late, x, y) = (
            format!("M{late}"),
            format!("M{}", firsts[0]),
            format!("M{}", firsts[1]),
        );
        b.ok(&[
            "review",
            "reject",
            &y,
            &late,
            "--by",
            BY,
            "--note",
            "another child",
        ]);
        // The same decision again: a no-op that says what stands.
        let e = b
            .refused(&["review", "reject", &y, &late, "--by", BY])
            .await;
        assert!(
            e.contains(&format!("was already rejected by {BY} on 2025-03-10")),
            "{e}"
        );
        assert!(e.contains("(note: another child)"), "{e}");
        assert!(e.contains("nothing recorded"), "{e}");
        // The other verdict on that pair needs an undo first.
        let e = b
            .refused(&["review", "accept", &late, &y, "--by", BY])
            .await;
        assert!(e.contains("first withdraw that decision"), "{e}");
        assert!(e.contains("kinlink review undo"), "{e}");
        // Accepting the same person's other record against it contradicts the
        // rejection: the linker would never join them.
        let e = b
            .refused(&["review", "accept", &x, &late, "--by", BY])
            .await;
        assert!(e.contains("was rejected by"), "{e}");

        // Two accepts chain two mentions; rejecting the two ends contradicts them.
        // (other, late) of pupils queued once.
        let others: Vec<(i64, i64)> = late_pairs
            .iter()
            .filter(|(_, firsts)| firsts.len() == 1)
            .map(|(&late, firsts)| (firsts[0], late))
            .take(2)
            .collect();
        let ((a1, b1), (_, b2)) = (others[0], others[1]);
        b.ok(&[
            "review",
            "accept",
            &format!("M{a1}"),
            &format!("M{b1}"),
            "--by",
            BY,
        ]);
        b.ok(&[
            "review",
            "accept",
            &format!("M{b1}"),
            &format!("M{b2}"),
            "--by",
            BY,
            "--force",
        ]);
        let e = b
            .refused(&[
                "review",
                "reject",
                &format!("M{a1}"),
                &format!("M{b2}"),
                "--by",
                BY,
                "--force",
            ])
            .await;
        assert!(
            e.contains("contradicts accepted decisions that join them"),
            "{e}"
        );

        // Undo of a pair never decided, and of one already withdrawn.
        let e = b
            .refused(&[
                "review",
                "undo",
                &format!("M{late_a}"),
                &format!("M{late_b}"),
                "--by",
                BY,
            ])
            .await;
        assert!(
            e.contains("has no decision to undo: it is not in the review queue"),
            "{e}"
        );
        b.ok(&["review", "undo", &y, &late, "--by", BY]);
        let e = b.refused(&["review", "undo", &y, &late, "--by", BY]).await;
        assert!(
            e.contains("has no decision to undo: it is pending in the review queue"),
            "{e}"
        );
        assert!(e.contains("was withdrawn by"), "{e}");
        // --by must be an address.
        let e = b
            .refused(&["review", "undo", &y, &late, "--by", "someone"])
            .await;
        assert!(e.contains("is not an email address"), "{e}");
        b.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_ranked_by_open_alerts_then_mentions_moved() {
    let dir = tempfile::tempdir().unwrap();
    for b in boroughs("review_ranking", dir.path()).await {
        let backend = b.backend;
        let queue = b.queue(false);
        assert!(queue.len() >= 5, "{backend}");
        // What ranks a pair, worked out here from the export and the alerts.
        let at = placements(&b);
        let alerts: Value =
            serde_json::from_str(&b.ok(&["alerts", "list", "--format", "json"])).unwrap();
        let alerted: HashSet<String> = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| ["new", "sent", "acknowledged"].contains(&a["status"].as_str().unwrap()))
            .filter_map(|a| a["family_id"].as_i64())
            .map(|f| format!("F{f}"))
            .collect();
        let mut size: HashMap<String, i64> = HashMap::new();
        for (person, _) in at.values() {
            *size.entry(person.clone()).or_default() += 1;
        }
        for r in &queue {
            let (pa, fa) = &at[&side_key(r, "a_mention")];
            let (pb, fb) = &at[&side_key(r, "b_mention")];
            let moved = if pa == pb {
                size[pa]
            } else {
                size[pa] + size[pb]
            };
            assert_eq!(r["mentions_moved"], moved, "{backend}: {r}");
            let open = alerted.contains(fa) || alerted.contains(fb);
            assert_eq!(r["open_alert"], open, "{backend}: {r}");
        }
        assert!(
            queue.iter().any(|r| r["open_alert"] == true),
            "{backend}: a queued pair behind an open alert"
        );
        let key = |r: &Value| {
            (
                !r["open_alert"].as_bool().unwrap(),
                -r["mentions_moved"].as_i64().unwrap(),
                -r["probability"].as_f64().unwrap(),
            )
        };
        for w in queue.windows(2) {
            assert!(
                key(&w[0]) <= key(&w[1]),
                "{backend}: out of order: {} then {}",
                w[0],
                w[1]
            );
        }
        // The table prints the same order, ids as `review accept` takes them.
        let table = b.ok(&["review", "list"]);
        let firsts: Vec<&str> = table.lines().filter(|l| l.starts_with('M')).collect();
        assert_eq!(firsts.len(), queue.len(), "{table}");
        let (x, y) = pair(&queue[0]);
        assert!(
            firsts[0].starts_with(&format!("{x} ~ {y}  probability")),
            "{table}"
        );
        assert!(firsts[0].contains("open alert"), "{table}");
        let words: Vec<&str> = firsts[0].split_whitespace().collect();
        let shown = b.ok(&[
            "review",
            "accept",
            words[0],
            words[2],
            "--by",
            BY,
            "--dry-run",
        ]);
        assert!(
            shown.starts_with(&format!("Accept {x} ~ {y} (pending in the review queue")),
            "{shown}"
        );
        // Both records, where they came from, and whose they are.
        assert!(
            shown.contains("last from file attendance_20250310.csv"),
            "{shown}"
        );
        assert!(
            shown.contains("last from file late.csv (fetched 2025-03-10)"),
            "{shown}"
        );
        assert!(shown.contains("person P"), "{shown}");
        // Decided pairs follow the pending ones with --all, and say who decided.
        b.ok(&["review", "reject", &x, &y, "--by", BY]);
        let all = b.queue(true);
        assert_eq!(all.len(), queue.len(), "{backend}");
        assert_eq!(all.last().unwrap()["status"], "rejected", "{backend}");
        assert_eq!(all.last().unwrap()["decided_by"], BY, "{backend}");
        assert_eq!(b.queue(false).len(), queue.len() - 1, "{backend}");
        b.store.close().await;
    }
}
