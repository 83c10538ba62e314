//! Tests of the generated borough: determinism, the config's shape, identifiers,
//! the truth file against the feeds it describes, and the benchmark writer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use calamine::{open_workbook_auto, Data, Reader};

use super::population::{self, UpnInFeed};
use super::*;
use crate::domain::{Format, Mark, NhsNumber, Upn};

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, 10).unwrap()
}

fn options(dir: &Path, families: usize, seed: u64) -> DemoOptions {
    DemoOptions {
        families,
        seed,
        as_of: as_of(),
        out_dir: dir.to_path_buf(),
    }
}

/// Every file under `dir`, relative path → bytes, in path order.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn file_of<'a>(summary: &'a DemoSummary, source: &str) -> &'a GeneratedFile {
    summary.files.iter().find(|f| f.source == source).unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = generate(&options(a.path(), 200, 7)).unwrap();
    let sb = generate(&options(b.path(), 200, 7)).unwrap();
    let sc = generate(&options(c.path(), 200, 8)).unwrap();
    let (ta, tb, tc) = (tree(a.path()), tree(b.path()), tree(c.path()));
    assert_eq!(ta.len(), 8, "{:?}", ta.keys().collect::<Vec<_>>());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (path, bytes) in &ta {
        assert!(
            bytes == &tb[path],
            "{} differs between runs",
            path.display()
        );
    }
    assert_eq!(sa.mentions, sb.mentions);
    assert_eq!(sa.persons, sb.persons);
    // Another seed changes every feed.
    for (path, bytes) in &ta {
        if path.starts_with("inbox") || path.starts_with("truth") {
            assert!(bytes != &tc[path], "{} ignores the seed", path.display());
        }
    }
    assert_ne!(sa.persons, 0);
    assert!(sc.families >= 200);
}

#[test]
fn config_and_job_parse_with_the_expected_tables() {
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path(), 200, 42)).unwrap();
    let text = fs::read_to_string(dir.path().join("kinlink.toml")).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert_eq!(doc["state_dir"].as_str(), Some("state"));
    assert_eq!(doc["database_url"].as_str(), Some("sqlite://kinlink.db"));
    assert_eq!(doc["jobs_dir"].as_str(), Some("jobs"));
    assert_eq!(doc["mail"]["transport"].as_str(), Some("file"));
    assert_eq!(doc["mail"]["file_dir"].as_str(), Some("outbox"));
    assert_eq!(doc["mail"]["detail"].as_str(), Some("minimal"));
    assert!(doc["mail"]["from"]
        .as_str()
        .unwrap()
        .contains("@example.gov.uk"));
    assert_eq!(doc["mail"]["admin"].as_array().unwrap().len(), 1);

    let sources = doc["source"].as_array_of_tables().unwrap();
    let names: Vec<&str> = sources
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            SOURCE_ATTENDANCE,
            SOURCE_MIS_API,
            SOURCE_POLICE,
            SOURCE_HOUSING,
            SOURCE_CASES
        ]
    );
    let kinds: BTreeSet<&str> = sources
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4);
    let formats: BTreeSet<&str> = sources
        .iter()
        .map(|s| s["format"].as_str().unwrap())
        .collect();
    assert!(formats.contains("xlsx") && formats.contains("json") && formats.contains("csv"));
    for s in sources {
        let name = s["name"].as_str().unwrap();
        let transport = s["transport"].as_inline_table().unwrap();
        assert_eq!(transport.get("type").unwrap().as_str(), Some("dir"));
        assert_eq!(
            transport.get("path").unwrap().as_str(),
            Some(format!("inbox/{name}").as_str())
        );
        assert!(dir.path().join("inbox").join(name).is_dir());
        let columns = s["columns"].as_table().unwrap();
        assert!(columns.len() >= 4, "{name}");
    }
    let api = &sources.get(1).unwrap();
    assert_eq!(api["records_path"].as_str(), Some("data"));
    assert_eq!(
        api["columns"]["upn"].as_str(),
        Some("education_details.data.upn")
    );
    assert_eq!(api["columns"]["dob"].as_str(), Some("date_of_birth"));

    let localities = doc["locality"].as_array_of_tables().unwrap();
    assert_eq!(localities.len(), 3);
    for l in localities {
        for key in ["postcodes", "dv_champions", "champions", "managers"] {
            assert!(!l[key].as_array().unwrap().is_empty(), "{key}");
        }
    }
    let schools = doc["school"].as_array_of_tables().unwrap();
    assert!(schools.len() >= 2);
    for s in schools {
        assert_eq!(s["urn"].as_str().unwrap().len(), 6);
        assert!(s["ewos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.as_str().unwrap().ends_with("@example.gov.uk")));
    }
    for rule in [
        "da_notification",
        "attendance_drop",
        "eviction_risk",
        "closed_too_early",
        "emerging_risk",
    ] {
        assert!(doc["rules"][rule].is_table(), "{rule}");
    }
    assert_eq!(
        doc["rules"]["da_notification"]["lookback_days"].as_integer(),
        Some(14)
    );
    assert_eq!(doc["linkage"]["auto_link"].as_float(), Some(0.95));
    assert_eq!(doc["linkage"]["review"].as_float(), Some(0.60));

    let job: toml_edit::DocumentMut = fs::read_to_string(dir.path().join("jobs/nightly.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(job["schedule"].as_str(), Some("0 30 1 * * *"));
    assert_eq!(job["catch_up"].as_bool(), Some(true));
    let steps: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(steps, ["ingest", "link", "evaluate", "send"]);
}

#[test]
fn upns_are_valid_except_the_deliberate_ones_and_rows_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 300, 11);
    let summary = generate(&opts).unwrap();
    let pop = population::build(&mut stream(opts.seed, 1), opts.families, opts.as_of);
    let csv_pupils: Vec<&Person> = pop
        .persons
        .iter()
        .filter(|p| {
            p.pupil
                .as_ref()
                .is_some_and(|pu| !pop.schools[pu.school].via_api)
        })
        .collect();
    let deliberate: BTreeSet<String> = csv_pupils
        .iter()
        .filter_map(|p| match &p.pupil.as_ref().unwrap().upn_in_feed {
            UpnInFeed::Invalid(bad) => Some(bad.clone()),
            _ => None,
        })
        .collect();

    let file = file_of(&summary, SOURCE_ATTENDANCE);
    let (header, rows) = read_csv(&file.path);
    let upn_col = col(&header, "Pupil UPN");
    let mut invalid = BTreeSet::new();
    let mut missing = 0;
    for row in &rows {
        match Upn::parse(&row[upn_col]) {
            Some(u) if !u.is_valid() => {
                invalid.insert(u.as_str().to_string());
            }
            Some(_) => {}
            None => missing += 1,
        }
    }
    assert_eq!(invalid, deliberate);
    assert!(missing > 0 && missing < rows.len() / 10, "{missing}");

    // Rows = pupils × school days × 2, less the sessions before late joiners arrived.
    let days = pop.school_days.len();
    assert_eq!(days, population::ATTENDANCE_SCHOOL_DAYS);
    let expected: usize = csv_pupils
        .iter()
        .map(|p| (days - p.pupil.as_ref().unwrap().on_roll_from) * 2)
        .sum();
    assert_eq!(rows.len(), expected);
    assert_eq!(file.rows, expected);

    // Every mark is a DfE code except the deliberately bad rows, which stay few.
    let mark_col = col(&header, "Mark");
    let unknown = rows
        .iter()
        .filter(|r| Mark::parse(&r[mark_col]).is_err())
        .count();
    assert!(unknown >= 1 && unknown <= file.bad_rows, "{unknown}");
    assert!(file.bad_rows * 20 < file.rows);

    // The case system's UPNs are true ones; its NHS numbers are valid but a few.
    let cases = file_of(&summary, SOURCE_CASES);
    let (header, rows) = read_csv(&cases.path);
    let (u, n) = (col(&header, "UPN"), col(&header, "NHS No"));
    assert!(rows
        .iter()
        .filter_map(|r| Upn::parse(&r[u]))
        .all(|u| u.is_valid()));
    let nhs: Vec<NhsNumber> = rows
        .iter()
        .filter_map(|r| NhsNumber::parse(&r[n]))
        .collect();
    assert!(!nhs.is_empty());
    assert!(nhs.iter().filter(|n| n.is_valid()).count() * 10 > nhs.len() * 9);
}

/// The mention keys of the good rows of every feed, computed from the files alone,
/// as docs/feeds.md defines them.
fn keys_from_feeds(summary: &DemoSummary) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    // Attendance CSV.
    let (h, rows) = read_csv(&file_of(summary, SOURCE_ATTENDANCE).path);
    let (urn, upn, sn, fnm, dob, date, mark) = (
        col(&h, "School URN"),
        col(&h, "Pupil UPN"),
        col(&h, "Legal Surname"),
        col(&h, "Legal Forename"),
        col(&h, "Date of Birth"),
        col(&h, "Session Date"),
        col(&h, "Mark"),
    );
    for r in rows {
        let bad = r[sn].trim().is_empty()
            || r[date].starts_with("31/02")
            || Mark::parse(&r[mark]).is_err();
        if bad {
            continue;
        }
        let key = if r[upn].trim().is_empty() {
            let d = NaiveDate::parse_from_str(&r[dob], "%d/%m/%Y").unwrap();
            format!(
                "{}/{}/{}/{}",
                r[urn],
                key_name(&r[sn]),
                key_name(&r[fnm]),
                iso_date(d)
            )
        } else {
            r[upn].trim().to_uppercase()
        };
        keys.insert((SOURCE_ATTENDANCE.to_string(), key));
    }
    // Attendance JSON.
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&file_of(summary, SOURCE_MIS_API).path).unwrap()).unwrap();
    assert_eq!(doc["meta"]["pagination"]["next"], serde_json::Value::Null);
    for r in doc["data"].as_array().unwrap() {
        let key = match r["education_details"]["data"]["upn"].as_str() {
            Some(u) => u.trim().to_uppercase(),
            None => format!(
                "{}/{}/{}/{}",
                r["school_urn"].as_str().unwrap(),
                key_name(r["surname"].as_str().unwrap()),
                key_name(r["forename"].as_str().unwrap()),
                &r["date_of_birth"]["date"].as_str().unwrap()[..10]
            ),
        };
        keys.insert((SOURCE_MIS_API.to_string(), key));
    }
    // Police: person_ref, else the row's order among all rows of its notification.
    let (h, rows) = read_csv(&file_of(summary, SOURCE_POLICE).path);
    let (id, role, pref) = (col(&h, "Ref No"), col(&h, "Role"), col(&h, "Nominal Ref"));
    let mut order: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        let n = order.entry(r[id].clone()).or_insert(0);
        *n += 1;
        if r[role].parse::<crate::domain::DaRole>().is_err() {
            continue;
        }
        let key = if r[pref].is_empty() {
            format!("{}/{}", r[id], n)
        } else {
            format!("{}/{}", r[id], r[pref])
        };
        keys.insert((SOURCE_POLICE.to_string(), key));
    }
    // Housing: the notice id of every row with a served date.
    let mut wb = open_workbook_auto(&file_of(summary, SOURCE_HOUSING).path).unwrap();
    let range = wb.worksheet_range(housing::SHEET).unwrap();
    let mut seen_header = false;
    for r in range.rows() {
        if !seen_header {
            seen_header = r.first() == Some(&Data::String("Case Ref".into()));
            continue;
        }
        if r.iter().all(|c| *c == Data::Empty) {
            continue;
        }
        assert!(
            matches!(r[2], Data::DateTime(_) | Data::Empty),
            "{:?}",
            r[2]
        );
        if r[2] != Data::Empty {
            keys.insert((SOURCE_HOUSING.to_string(), r[0].to_string()));
        }
    }
    assert!(seen_header);
    // Cases: the person id.
    let (h, rows) = read_csv(&file_of(summary, SOURCE_CASES).path);
    let pid = col(&h, "Person ID");
    for r in rows {
        keys.insert((SOURCE_CASES.to_string(), r[pid].clone()));
    }
    keys
}

#[test]
fn truth_has_one_row_per_distinct_mention_of_the_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), 600, 5)).unwrap();
    let (h, rows) = read_csv(&dir.path().join("truth/mentions.csv"));
    assert_eq!(
        h,
        ["source", "mention_key", "true_person_id", "true_family_id"]
    );
    assert_eq!(rows.len(), summary.mentions);
    let truth: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(truth.len(), rows.len(), "duplicate mention keys");
    let feeds = keys_from_feeds(&summary);
    let missing: Vec<_> = feeds.difference(&truth).take(5).collect();
    let extra: Vec<_> = truth.difference(&feeds).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?} extra {extra:?}"
    );
    for source in [
        SOURCE_ATTENDANCE,
        SOURCE_MIS_API,
        SOURCE_POLICE,
        SOURCE_HOUSING,
        SOURCE_CASES,
    ] {
        assert!(rows.iter().any(|r| r[0] == source), "{source}");
        let f = file_of(&summary, source);
        assert!(f.rows > 0 && f.bad_rows * 20 < f.rows.max(1), "{source}");
    }

    // A perpetrator living elsewhere belongs to a family of his own: some police
    // notification names people of two different true families.
    let mut families_per_notification: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r[0] == SOURCE_POLICE) {
        let notification = r[1].split('/').next().unwrap().to_string();
        families_per_notification
            .entry(notification)
            .or_default()
            .insert(r[3].clone());
    }
    assert!(families_per_notification.values().any(|f| f.len() > 1));
    // The same person appears in several sources (the point of linkage).
    let persons_by_source: BTreeMap<&str, BTreeSet<&str>> =
        rows.iter().fold(BTreeMap::new(), |mut m, r| {
            m.entry(r[0].as_str()).or_default().insert(r[2].as_str());
            m
        });
    let in_school = &persons_by_source[SOURCE_ATTENDANCE];
    assert!(persons_by_source[SOURCE_CASES]
        .iter()
        .any(|p| in_school.contains(p)));
}

#[test]
fn police_has_recent_notifications_and_housing_urgent_bailiff_dates() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), 400, 3)).unwrap();
    let (h, rows) = read_csv(&file_of(&summary, SOURCE_POLICE).path);
    let at = col(&h, "Incident Date/Time");
    let id = col(&h, "Ref No");
    let recent: BTreeSet<&str> = rows
        .iter()
        .filter(|r| {
            let t = chrono::NaiveDateTime::parse_from_str(&r[at], "%d/%m/%Y %H:%M").unwrap();
            t.date() >= as_of() - chrono::Days::new(14) && t.date() < as_of()
        })
        .map(|r| r[id].as_str())
        .collect();
    assert!(recent.len() >= 3, "{}", recent.len());

    let mut wb = open_workbook_auto(&file_of(&summary, SOURCE_HOUSING).path).unwrap();
    let range = wb.worksheet_range(housing::SHEET).unwrap();
    let urgent = range
        .rows()
        .filter(|r| {
            r.get(1)
                .is_some_and(|c| c.to_string().eq_ignore_ascii_case("warrant"))
        })
        .filter_map(|r| NaiveDate::parse_from_str(&r[3].to_string(), "%d/%m/%Y").ok())
        .filter(|d| *d > as_of() && *d <= as_of() + chrono::Days::new(14))
        .count();
    assert!(urgent >= 2, "{urgent}");
}

#[test]
fn write_attendance_writes_exactly_n_csv_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.csv");
    let columns = write_attendance(&path, Format::Csv, 10_000, 1).unwrap();
    let (header, rows) = read_csv(&path);
    assert_eq!(rows.len(), 10_000);
    for (canonical, h) in &columns {
        assert!(header.contains(h), "{canonical} → {h}");
    }
    let mark = col(&header, &columns["mark"]);
    assert!(rows.iter().all(|r| Mark::parse(&r[mark]).is_ok()));
    let upn = col(&header, &columns["upn"]);
    assert!(rows.iter().all(|r| Upn::parse(&r[upn]).unwrap().is_valid()));
    // Same seed, same bytes.
    let again = dir.path().join("again.csv");
    write_attendance(&again, Format::Csv, 10_000, 1).unwrap();
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn write_attendance_writes_exactly_n_xlsx_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.xlsx");
    let columns = write_attendance(&path, Format::Xlsx, 2_000, 2).unwrap();
    let mut wb = open_workbook_auto(&path).unwrap();
    let range = wb.worksheet_range_at(0).unwrap().unwrap();
    let mut rows = range.rows();
    let header: Vec<String> = rows.next().unwrap().iter().map(|c| c.to_string()).collect();
    for h in columns.values() {
        assert!(header.contains(h), "{h}");
    }
    let date = col(&header, &columns["date"]);
    let data: Vec<_> = rows.collect();
    assert_eq!(data.len(), 2_000);
    assert!(data.iter().all(|r| matches!(r[date], Data::DateTime(_))));

    let too_many = write_attendance(&dir.path().join("x.xlsx"), Format::Xlsx, 1_048_576, 2);
    assert_eq!(too_many.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let ods = write_attendance(&dir.path().join("x.ods"), Format::Ods, 10, 2);
    assert!(ods.is_err());
}

#[test]
fn tiny_boroughs_and_odd_dates_do_not_panic() {
    for families in [0, 1, 3, 20] {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(&options(dir.path(), families, 1)).unwrap();
        assert!(summary.families >= families.max(1));
        assert!(dir.path().join("truth/mentions.csv").is_file());
    }
    // A date in the summer holiday and one on a leap day still give 20 school days.
    for day in [(2025, 8, 15), (2024, 2, 29), (2026, 1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), 50, 1);
        opts.as_of = NaiveDate::from_ymd_opt(day.0, day.1, day.2).unwrap();
        let summary = generate(&opts).unwrap();
        assert!(file_of(&summary, SOURCE_ATTENDANCE).rows > 0);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), 10, 1);
    opts.as_of = NaiveDate::MIN;
    assert_eq!(
        generate(&opts).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}
