//! Incremental attendance counting on both backends: after every nightly file —
//! new days, a correction of a day already counted, a late file for a missed day,
//! a pupil changing school, a new pupil, a pupil leaving, a school on half-term, an
//! earlier `--as-of`, other window lengths, a purge — `Store::attendance_counts`
//! gives exactly what an independent count of the marks ingested so far gives.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate, Weekday};
use kinlink::domain::{FeedKind, Mark, MarkCategory};
use kinlink::pipeline::{self, IngestRequest, NoProgress};
use kinlink::rules::PupilAttendance;
use kinlink::store::{PurgeCutoffs, Store};

use crate::alerts::{clock, Borough};
use crate::backends::stores;
use crate::helpers::upn;

const SCHOOLS: [u32; 3] = [100001, 100002, 100003];
const CODES: [&str; 10] = ["/", "/", "/", "\\", "I", "M", "O", "N", "C2", "X"];

/// (UPN, URN, date, session) → code: every mark stored so far.
type Marks = BTreeMap<(String, u32, NaiveDate, &'static str), &'static str>;

/// A small deterministic generator (the test must not depend on a crate's stream).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The independent count: each school's days up to `as_of` (dates it recorded a
/// mark, within 400 days), its window and baseline, and each pupil's counts there.
fn expected(
    marks: &Marks,
    as_of: NaiveDate,
    w: usize,
    b: usize,
) -> BTreeMap<(String, u32), String> {
    let since = as_of - chrono::Duration::days(400);
    let mut days: BTreeMap<u32, BTreeSet<NaiveDate>> = BTreeMap::new();
    for (_, urn, date, _) in marks.keys() {
        if *date <= as_of && *date >= since {
            days.entry(*urn).or_default().insert(*date);
        }
    }
    let mut windows: HashMap<u32, (NaiveDate, NaiveDate, NaiveDate, usize, usize)> = HashMap::new();
    for (urn, set) in &days {
        let d: Vec<NaiveDate> = set.iter().rev().copied().collect();
        let wn = d.len().min(w.max(1));
        let bn = (d.len() - wn).min(b);
        let from = d[wn - 1];
        let bfrom = if bn > 0 { d[wn + bn - 1] } else { from };
        windows.insert(*urn, (bfrom, from, d[0], wn, bn));
    }
    // attended, authorised, unauthorised, unexplained, part-time/excluded.
    let mut counts: BTreeMap<(String, u32), ([u32; 5], [u32; 3])> = BTreeMap::new();
    for ((pupil, urn, date, _), code) in marks {
        let Some(&(bfrom, from, to, _, _)) = windows.get(urn) else {
            continue;
        };
        if *date < bfrom || *date > to {
            continue;
        }
        let e = counts.entry((pupil.clone(), *urn)).or_default();
        let cat = match Mark::parse(code).unwrap().category() {
            MarkCategory::Present | MarkCategory::ApprovedActivity => Some(0),
            MarkCategory::Authorised => Some(1),
            MarkCategory::Unauthorised => Some(2),
            MarkCategory::NotPossible => None,
        };
        if *date >= from {
            if let Some(c) = cat {
                e.0[c] += 1;
            }
            e.0[3] += u32::from(matches!(*code, "N" | "O"));
            e.0[4] += u32::from(matches!(*code, "C2" | "E"));
        } else if let Some(c) = cat {
            e.1[c] += 1;
        }
    }
    counts
        .into_iter()
        .map(|((pupil, urn), (win, base))| {
            let (bfrom, from, to, wn, bn) = windows[&urn];
            let line = format!("{win:?} {base:?} {from}..{to} base from {bfrom} days {wn}/{bn}");
            ((pupil, urn), line)
        })
        .collect()
}

fn got(counts: &[PupilAttendance], keys: &HashMap<i64, String>) -> BTreeMap<(String, u32), String> {
    counts
        .iter()
        .map(|p| {
            let w = &p.window;
            let b = &p.baseline;
            let win = [
                w.attended,
                w.authorised,
                w.unauthorised,
                w.unexplained,
                w.part_time_or_excluded,
            ];
            let base = [b.attended, b.authorised, b.unauthorised];
            let bfrom = "?";
            let line = format!(
                "{win:?} {base:?} {}..{} base from {bfrom} days {}/{}",
                p.window_from, p.window_to, p.window_days, p.baseline_days
            );
            ((keys[&p.mention].clone(), p.school_urn), line)
        })
        .collect()
}

/// Drops the baseline's first day, which `PupilAttendance` does not carry.
fn comparable(m: BTreeMap<(String, u32), String>) -> BTreeMap<(String, u32), String> {
    m.into_iter()
        .map(|(k, v)| {
            let (head, tail) = v.split_once(" base from ").unwrap();
            let days = tail.split_once(" days ").unwrap().1;
            (k, format!("{head} days {days}"))
        })
        .collect()
}

async fn mention_keys(store: &Store) -> HashMap<i64, String> {
    store
        .column_text(
            "SELECT CAST(id AS TEXT) || ' ' || mention_key FROM mentions WHERE kind = 'attendance'",
        )
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .map(|s| {
            let (id, key) = s.split_once(' ').unwrap();
            (id.parse().unwrap(), key.to_string())
        })
        .collect()
}

fn row(pupil: u32, urn: u32, date: NaiveDate, session: &str, code: &str) -> String {
    format!(
        "{urn},{},P{pupil},Test,01/09/2016,{pupil} Mill Lane,M7 1AA,{},{session},{code}",
        upn(pupil),
        date.format("%d/%m/%Y")
    )
}

async fn ingest(b: &Borough, store: &Store, day: NaiveDate) {
    let report = pipeline::ingest(
        &b.settings,
        store,
        clock(&day.to_string()),
        &IngestRequest::default(),
        &NoProgress,
    )
    .await
    .expect("ingest");
    for f in &report.files {
        assert!(matches!(f, pipeline::FileOutcome::Ingested { .. }), "{f:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_attendance_counts_equal_a_fresh_count_every_night() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("incremental_attendance_counts", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        let mut rng = Lcg(7);
        let mut marks: Marks = BTreeMap::new();
        // Weekdays from 7 Sep 2026; school 100002 has a half-term week of its own.
        let mut days = Vec::new();
        let mut day = NaiveDate::from_ymd_opt(2026, 9, 7).unwrap();
        while days.len() < 60 {
            if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                days.push(day);
            }
            day = day.succ_opt().unwrap();
        }
        let half_term = |urn: u32, d: NaiveDate| {
            urn == 100002 && (30..35).contains(&days.iter().position(|x| *x == d).unwrap())
        };
        // Pupil → school on a given day index: 1–12 spread over the schools; pupil 4
        // moves from the first school to the third at day 30; pupil 13 starts at
        // day 35; pupil 5 leaves at day 40.
        let school_of = |p: u32, i: usize| -> Option<u32> {
            match p {
                4 if i >= 30 => Some(SCHOOLS[2]),
                13 if i < 35 => None,
                5 if i >= 40 => None,
                _ => Some(SCHOOLS[(p as usize) % 3]),
            }
        };
        let day_rows = |i: usize, rng: &mut Lcg, marks: &mut Marks| -> Vec<String> {
            let mut rows = Vec::new();
            for p in 1..=13u32 {
                let Some(urn) = school_of(p, i) else { continue };
                if half_term(urn, days[i]) {
                    continue;
                }
                for session in ["AM", "PM"] {
                    let code = CODES[rng.next(CODES.len())];
                    marks.insert((upn(p), urn, days[i], session), code);
                    rows.push(row(p, urn, days[i], session, code));
                }
            }
            rows
        };
        let (w, bl) = (5u32, 7u32);
        // Each check also says how many of the three schools it expects counted
        // afresh (the others move their tallies).
        let check = |store: &Store,
                     marks: &Marks,
                     as_of: NaiveDate,
                     w: u32,
                     bl: u32,
                     step: String,
                     recounted: usize| {
            let store = store.clone();
            let marks = marks.clone();
            async move {
                let count = store.attendance_counts(as_of, w, bl).await.unwrap();
                assert_eq!(
                    (count.schools, count.recounted),
                    (3, recounted),
                    "{backend} {step}: schools, recounted"
                );
                let keys = mention_keys(&store).await;
                let want = comparable(expected(&marks, as_of, w as usize, bl as usize));
                let have = comparable(got(&count.pupils, &keys));
                assert_eq!(have, want, "{backend} {step}");
                assert!(
                    !want.is_empty(),
                    "{backend} {step}: the scenario counts something"
                );
            }
        };
        // The first 20 days in one file, counted afresh.
        let mut rows = Vec::new();
        for i in 0..20 {
            rows.extend(day_rows(i, &mut rng, &mut marks));
        }
        b.drop_file(FeedKind::Attendance, "marks-000.csv", &rows);
        ingest(&b, &store, days[19]).await;
        check(&store, &marks, days[19], w, bl, "first count".into(), 3).await;
        // Day 27 arrives late, with day 29: after day 28 was counted, so it lands
        // inside a window already counted.
        let mut late = Vec::new();
        let mut late_marks: Marks = BTreeMap::new();
        for i in 20..60 {
            let mut rows = Vec::new();
            // The schools whose counted days this night's file changes.
            let mut touched = BTreeSet::new();
            if i == 27 {
                late = day_rows(i, &mut rng, &mut late_marks);
            } else {
                rows.extend(day_rows(i, &mut rng, &mut marks));
            }
            if i == 29 {
                rows.append(&mut late);
                touched.extend(late_marks.keys().map(|k| k.1));
                marks.append(&mut late_marks);
            }
            // Every fifth night a school corrects a mark of a day already counted.
            if i % 5 == 0 {
                let back = 1 + rng.next(6);
                let d = days[i - back];
                let p = 1 + rng.next(12) as u32;
                if let Some(urn) = school_of(p, i - back).filter(|u| !half_term(*u, d)) {
                    let code = CODES[rng.next(CODES.len())];
                    marks.insert((upn(p), urn, d, "PM"), code);
                    rows.push(row(p, urn, d, "PM", code));
                    touched.insert(urn);
                }
            }
            b.drop_file(FeedKind::Attendance, &format!("marks-{i:03}.csv"), &rows);
            ingest(&b, &store, days[i]).await;
            // Only the schools whose counted days changed are counted afresh.
            let step = format!("night {i}");
            check(&store, &marks, days[i], w, bl, step, touched.len()).await;
            // Counting again on the same data gives the same, from the tallies.
            if i == 33 {
                check(
                    &store,
                    &marks,
                    days[i],
                    w,
                    bl,
                    format!("night {i} again"),
                    0,
                )
                .await;
            }
        }
        // An earlier date, then other window lengths, then back.
        check(
            &store,
            &marks,
            days[44],
            w,
            bl,
            "as of an earlier day".into(),
            3,
        )
        .await;
        check(&store, &marks, days[59], 3, 4, "other windows".into(), 3).await;
        check(&store, &marks, days[59], w, bl, "back".into(), 3).await;
        // A purge of the first weeks: the tallies are forgotten, counts stay exact.
        let purge_before = days[50];
        let long_ago = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        let long_ago_utc = long_ago.and_hms_opt(0, 0, 0).unwrap().and_utc();
        let (purged, _) = store
            .purge(
                &PurgeCutoffs {
                    raw_files_before: long_ago_utc,
                    attendance_before: purge_before,
                    police_before: long_ago_utc,
                    housing_before: long_ago,
                    cases_before: long_ago,
                },
                kinlink::domain::RunMode::Apply,
                days[59].and_hms_opt(12, 0, 0).unwrap().and_utc(),
            )
            .await
            .unwrap();
        assert!(purged.attendance_marks > 0, "{backend}: {purged:?}");
        marks.retain(|k, _| k.2 >= purge_before);
        check(&store, &marks, days[59], w, bl, "after a purge".into(), 3).await;
    }
}
