//! The FEBRL benchmark: public record-linkage data this project did not generate
//! (`bench/data/febrl/`, see its README), run through kinlink's own pipeline — the
//! config loader, `ingest` of feed files as the feed contracts lay them out, `link`,
//! and `persons export` — and scored over the final persons.
//!
//! How the FEBRL columns become feed files (docs/feeds.md):
//! - dataset4a → a `police_da` file, one notification per record (role `victim`);
//!   dataset4b → an `assessment` file, one case per record (role `parent`); dataset3 →
//!   one `police_da` file;
//! - `address_line1` is the street number and `address_1` (`address_2`, else the
//!   suburb, when both are blank); FEBRL's 4-digit postcodes become UK-shaped ones
//!   deterministically (`2617` → `M26 1HB`, so one typo stays one typo);
//! - a date of birth that is not a real date is left blank (a case or police system
//!   stores dates, not digit strings); `soc_sec_id` is never passed on.
//!
//! Scoring: every pair of mentions that ends in one person counts (precision, recall,
//! F1 over pairs); the review queue as a share of records; and every missed true pair
//! by cause — the guard, comparison or step that held it ([`kinlink::link::diagnose`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use kinlink::clock::Clock;
use kinlink::domain::FeedKind;
use kinlink::link::{self, Band};
use kinlink::pipeline::{self, FileOutcome, IngestRequest, LinkScope, NoProgress};
use kinlink::store::Store;

use crate::quality::{f1, ratio};

/// One benchmark: FEBRL files and the feed each becomes.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub files: &'static [(&'static str, FeedKind)],
}

/// The shipped cases: linking two agencies' files, and de-duplicating one.
pub const CASES: [Case; 2] = [
    Case {
        name: "dataset4a × dataset4b",
        files: &[
            ("dataset4a.csv", FeedKind::PoliceDa),
            ("dataset4b.csv", FeedKind::Assessment),
        ],
    },
    Case {
        name: "dataset3",
        files: &[("dataset3.csv", FeedKind::PoliceDa)],
    },
];

/// The folder of the FEBRL files shipped in the repository.
pub fn shipped_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/febrl")
}

/// One FEBRL record, values trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub rec_id: String,
    pub given_name: String,
    pub surname: String,
    pub street_number: String,
    pub address_1: String,
    pub address_2: String,
    pub suburb: String,
    pub postcode: String,
    pub date_of_birth: String,
}

impl Record {
    /// The true person: the `N` of `rec-N-org` / `rec-N-dup-K`.
    pub fn truth(&self) -> Option<u64> {
        self.rec_id.split('-').nth(1)?.parse().ok()
    }

    fn address_line1(&self) -> String {
        let line = format!("{} {}", self.street_number, self.address_1);
        let line = line.trim();
        if !line.is_empty() {
            line.to_owned()
        } else if !self.address_2.is_empty() {
            self.address_2.clone()
        } else {
            self.suburb.clone()
        }
    }
}

/// Reads a FEBRL CSV file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| -> anyhow::Result<usize> {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{} has no column {name:?}", path.display()))
    };
    let cols = [
        col("rec_id")?,
        col("given_name")?,
        col("surname")?,
        col("street_number")?,
        col("address_1")?,
        col("address_2")?,
        col("suburb")?,
        col("postcode")?,
        col("date_of_birth")?,
    ];
    let mut out = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} row {}", path.display(), n + 2))?;
        let v = |k: usize| row.get(cols[k]).unwrap_or("").to_owned();
        out.push(Record {
            rec_id: v(0),
            given_name: v(1),
            surname: v(2),
            street_number: v(3),
            address_1: v(4),
            address_2: v(5),
            suburb: v(6),
            postcode: v(7),
            date_of_birth: v(8),
        });
    }
    Ok(out)
}

/// A UK-shaped postcode for a FEBRL one, deterministically: the first two digits are
/// the district, the third the sector, the fourth the unit's letters (`2617` →
/// `M26 1HB`). Anything else is passed through.
pub fn uk_postcode(febrl: &str) -> String {
    let d: Vec<u8> = febrl.bytes().collect();
    if d.len() != 4 || !d.iter().all(u8::is_ascii_digit) {
        return febrl.to_owned();
    }
    format!(
        "M{}{} {}{}B",
        d[0] as char,
        d[1] as char,
        d[2] as char,
        (b'A' + (d[3] - b'0')) as char
    )
}

/// `YYYYMMDD` as ISO, or empty when it is not a real date.
pub fn iso_date(febrl: &str) -> String {
    chrono::NaiveDate::parse_from_str(febrl, "%Y%m%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn csv_writer(path: &Path) -> anyhow::Result<csv::Writer<std::fs::File>> {
    csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))
}

/// Writes `records` as the feed file of `kind`.
pub fn write_feed(records: &[Record], kind: FeedKind, path: &Path) -> anyhow::Result<()> {
    let mut w = csv_writer(path)?;
    match kind {
        FeedKind::PoliceDa => {
            w.write_record([
                "notification_id",
                "incident_at",
                "role",
                "forename",
                "surname",
                "dob",
                "address_line1",
                "postcode",
            ])?;
            for r in records {
                w.write_record([
                    r.rec_id.as_str(),
                    "2025-01-10",
                    "victim",
                    &r.given_name,
                    &r.surname,
                    &iso_date(&r.date_of_birth),
                    &r.address_line1(),
                    &uk_postcode(&r.postcode),
                ])?;
            }
        }
        FeedKind::Assessment => {
            w.write_record([
                "case_id",
                "family_id",
                "person_id",
                "role",
                "forename",
                "surname",
                "dob",
                "address_line1",
                "postcode",
                "referral_date",
            ])?;
            for r in records {
                w.write_record([
                    format!("C-{}", r.rec_id).as_str(),
                    &format!("F-{}", r.rec_id),
                    &r.rec_id,
                    "parent",
                    &r.given_name,
                    &r.surname,
                    &iso_date(&r.date_of_birth),
                    &r.address_line1(),
                    &uk_postcode(&r.postcode),
                    "2025-01-10",
                ])?;
            }
        }
        other => bail!("FEBRL records are not written as {other:?} feeds"),
    }
    w.flush()?;
    Ok(())
}

/// The mention key `persons export` gives the record written as `kind`.
fn mention_key(rec_id: &str, kind: FeedKind) -> String {
    match kind {
        FeedKind::PoliceDa => format!("{rec_id}/1"),
        _ => rec_id.to_owned(),
    }
}

/// The figures of one case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FebrlScore {
    pub case: String,
    pub records: usize,
    /// Rows the feed contracts refused (no name at all); their pairs count as missed.
    pub quarantined: usize,
    pub true_pairs: u64,
    pub predicted_pairs: u64,
    pub true_positives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Missed true pairs that the linker's rules forbid it to join, whatever the
    /// truth says (docs/domain.md 6): the same name a generation apart (a father and a
    /// son at one address), or a name and a postcode and nothing else.
    pub rule_bound: u64,
    /// Recall over the true pairs the rules allow.
    pub recall_allowed: f64,
    /// Pairs left for a person to decide.
    pub review_pairs: usize,
    /// Review pairs as a percentage of records.
    pub review_percent: f64,
    /// Missed true pairs by what held them, with a few examples each.
    pub misses: Vec<Miss>,
    /// Wrongly joined pairs: (predicted-only pairs, up to five examples).
    pub false_pairs: Vec<(String, String)>,
    pub ingest_s: f64,
    pub link_s: f64,
}

/// Missed true pairs of one cause.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    pub cause: String,
    pub pairs: u64,
    /// `rec_id name ~ rec_id name: levels` of the first few.
    pub examples: Vec<String>,
}

/// Runs one case in `work` (a fresh folder) on SQLite and scores it.
pub async fn run_case(
    case: &Case,
    data: &Path,
    work: &Path,
    examples: usize,
) -> anyhow::Result<FebrlScore> {
    let mut sources = String::new();
    let mut records: Vec<(String, Record, FeedKind)> = Vec::new();
    for (i, (file, kind)) in case.files.iter().enumerate() {
        let name = format!("feed{}", i + 1);
        let inbox = work.join("inbox").join(&name);
        std::fs::create_dir_all(&inbox)?;
        let rs = read(&data.join(file))?;
        write_feed(&rs, *kind, &inbox.join(file))?;
        sources.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nkind = \"{}\"\nformat = \"csv\"\n\
             transport = {{ type = \"dir\", path = \"inbox/{name}\", settle_secs = 0 }}\n\
             max_bad_rows = 1.0\n\n",
            kind.as_str()
        ));
        records.extend(rs.into_iter().map(|r| (name.clone(), r, *kind)));
    }
    std::fs::create_dir_all(work.join("jobs"))?;
    let config = work.join("kinlink.toml");
    std::fs::write(&config, format!("state_dir = \"state\"\n\n{sources}"))?;
    let settings = kinlink::config::load_str(&std::fs::read_to_string(&config)?, &config)
        .map_err(|p| anyhow::anyhow!("the FEBRL config does not load: {p:?}"))?;
    std::fs::create_dir_all(&settings.state_dir)?;
    let store = Store::open_sqlite(&settings.state_dir.join("kinlink.db")).await?;
    let clock = Clock::system();

    let t = std::time::Instant::now();
    let report = pipeline::ingest(
        &settings,
        &store,
        clock,
        &IngestRequest::default(),
        &NoProgress,
    )
    .await?;
    let mut quarantined = 0usize;
    for f in &report.files {
        match f {
            FileOutcome::Ingested { counts, .. } => quarantined += counts.quarantined as usize,
            other => bail!("a FEBRL file was not ingested: {other:?}"),
        }
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let linked = pipeline::link(&settings, &store, clock, LinkScope::Full).await?;
    let link_s = t.elapsed().as_secs_f64();

    // The persons as `persons export` writes them.
    let mut export = Vec::new();
    kinlink::app::export_csv(&store, &mut export)
        .await
        .map_err(|f| anyhow::anyhow!("persons export: {f:?}"))?;
    let mut person_of: HashMap<(String, String), String> = HashMap::new();
    let mut reader = csv::Reader::from_reader(export.as_slice());
    let headers = reader.headers()?.clone();
    let at = |name: &str| headers.iter().position(|h| h == name);
    let (Some(pi), Some(si), Some(ki)) = (at("person_id"), at("source"), at("mention_key")) else {
        bail!("persons export lacks person_id, source or mention_key");
    };
    for row in reader.records() {
        let row = row?;
        person_of.insert((row[si].to_owned(), row[ki].to_owned()), row[pi].to_owned());
    }
    let input = store.link_input().await?;
    let id_of: HashMap<(String, String), i64> = input
        .mentions
        .iter()
        .map(|m| ((m.source.clone(), m.mention_key.clone()), m.id))
        .collect();
    let review: HashMap<(i64, i64), String> = store
        .review_rows(false)
        .await?
        .into_iter()
        .map(|r| ((r.a.min(r.b), r.a.max(r.b)), r.evidence))
        .collect();
    let model = store
        .link_state()
        .await?
        .model
        .unwrap_or_else(link::model::Model::prior);
    let opts = pipeline::link_options(&settings.linkage);
    store.close().await;

    // Score over pairs of records.
    let mut by_truth: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (k, (_, r, _)) in records.iter().enumerate() {
        if let Some(t) = r.truth() {
            by_truth.entry(t).or_default().push(k);
        }
    }
    let person = |k: usize| -> Option<&String> {
        let (source, r, kind) = &records[k];
        person_of.get(&(source.clone(), mention_key(&r.rec_id, *kind)))
    };
    let mention = |k: usize| -> Option<i64> {
        let (source, r, kind) = &records[k];
        id_of
            .get(&(source.clone(), mention_key(&r.rec_id, *kind)))
            .copied()
    };
    let mut true_pairs = 0u64;
    let mut hits = 0u64;
    let mut missed: Vec<(usize, usize)> = Vec::new();
    for ks in by_truth.values() {
        for (x, &a) in ks.iter().enumerate() {
            for &b in &ks[x + 1..] {
                true_pairs += 1;
                match (person(a), person(b)) {
                    (Some(pa), Some(pb)) if pa == pb => hits += 1,
                    _ => missed.push((a, b)),
                }
            }
        }
    }
    let mut members: HashMap<&String, Vec<usize>> = HashMap::new();
    for k in 0..records.len() {
        if let Some(p) = person(k) {
            members.entry(p).or_default().push(k);
        }
    }
    let mut predicted_pairs = 0u64;
    let mut false_pairs = Vec::new();
    for ks in members.values() {
        for (x, &a) in ks.iter().enumerate() {
            for &b in &ks[x + 1..] {
                predicted_pairs += 1;
                if records[a].1.truth() != records[b].1.truth() && false_pairs.len() < 5 {
                    false_pairs.push((records[a].1.rec_id.clone(), records[b].1.rec_id.clone()));
                }
            }
        }
    }

    // Each missed pair by cause.
    let ids: Vec<(i64, i64)> = missed
        .iter()
        .filter_map(|&(a, b)| Some((mention(a)?, mention(b)?)))
        .collect();
    let diagnosis: HashMap<(i64, i64), link::PairDiagnosis> =
        link::diagnose(&input.mentions, &model, &opts, &ids)
            .into_iter()
            .map(|d| ((d.a, d.b), d))
            .collect();
    let mut misses: BTreeMap<String, Miss> = BTreeMap::new();
    let mut rule_bound = 0u64;
    for &(a, b) in &missed {
        let (cause, levels) = match (mention(a), mention(b)) {
            (Some(ma), Some(mb)) => {
                let key = (ma.min(mb), ma.max(mb));
                let d = diagnosis.get(&(ma, mb));
                let levels = d.map(|d| d.levels.clone()).unwrap_or_default();
                if d.is_some_and(|d| d.rule_bound()) {
                    rule_bound += 1;
                }
                let cause = if let Some(evidence) = review.get(&key) {
                    let cap = evidence.split(";cap=").nth(1).unwrap_or("probability");
                    format!("in review ({cap})")
                } else {
                    match d {
                        None => "not diagnosed".to_owned(),
                        Some(d) if d.candidate_rule.is_none() => {
                            "never compared (no blocking rule)".to_owned()
                        }
                        Some(d) => match (d.band_by_probability, d.cap) {
                            (_, Some((Band::NoLink, cap))) => format!("guard {cap}"),
                            (Band::NoLink, _) => "probability below review".to_owned(),
                            (_, Some((Band::Review, cap))) => {
                                format!("guard {cap} (review, not queued)")
                            }
                            _ => "clustering (refused between persons)".to_owned(),
                        },
                    }
                };
                (cause, levels)
            }
            _ => ("quarantined".to_owned(), String::new()),
        };
        let m = misses.entry(cause.clone()).or_insert_with(|| Miss {
            cause,
            ..Miss::default()
        });
        m.pairs += 1;
        if m.examples.len() < examples {
            let (ra, rb) = (&records[a].1, &records[b].1);
            m.examples.push(format!(
                "{} {} {} ~ {} {} {}: {levels}",
                ra.rec_id, ra.given_name, ra.surname, rb.rec_id, rb.given_name, rb.surname
            ));
        }
    }
    let mut misses: Vec<Miss> = misses.into_values().collect();
    misses.sort_by(|x, y| y.pairs.cmp(&x.pairs).then(x.cause.cmp(&y.cause)));

    let precision = ratio(hits, predicted_pairs);
    let recall = ratio(hits, true_pairs);
    let review_pairs = linked.counts.review_pending.max(0) as usize;
    Ok(FebrlScore {
        case: case.name.to_owned(),
        records: records.len(),
        quarantined,
        true_pairs,
        predicted_pairs,
        true_positives: hits,
        precision,
        recall,
        f1: f1(precision, recall),
        rule_bound,
        recall_allowed: ratio(hits, true_pairs - rule_bound),
        review_pairs,
        review_percent: 100.0 * review_pairs as f64 / records.len().max(1) as f64,
        misses,
        false_pairs,
        ingest_s,
        link_s,
    })
}

/// `kinlink-bench febrl`.
pub async fn run(args: &crate::cli::BenchFebrlArgs) -> anyhow::Result<u8> {
    let data = args.data.clone().unwrap_or_else(shipped_data);
    let mut scores = Vec::new();
    for case in &CASES {
        let work = tempfile::tempdir()?;
        scores.push(run_case(case, &data, work.path(), args.examples).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores)?);
    } else {
        print!("{}", markdown(&scores));
    }
    Ok(0)
}

/// The figures as markdown.
pub fn markdown(scores: &[FebrlScore]) -> String {
    let mut s = String::from(
        "| data | records | precision | recall | F1 | recall where the rules allow | review | quarantined | ingest s | link s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in scores {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} ({:.2}%) | {} | {:.2} | {:.2} |\n",
            c.case,
            c.records,
            c.precision,
            c.recall,
            c.f1,
            c.recall_allowed,
            c.review_pairs,
            c.review_percent,
            c.quarantined,
            c.ingest_s,
            c.link_s
        ));
    }
    for c in scores {
        s.push_str(&format!(
            "\n{}: {} true pairs, {} joined, {} missed ({} of them forbidden by the rules)\n",
            c.case,
            c.true_pairs,
            c.predicted_pairs,
            c.true_pairs - c.true_positives,
            c.rule_bound
        ));
        for m in &c.misses {
            s.push_str(&format!("  {:>6}  {}\n", m.pairs, m.cause));
            for e in &m.examples {
                s.push_str(&format!("            {e}\n"));
            }
        }
        for (a, b) in &c.false_pairs {
            s.push_str(&format!("  wrongly joined: {a} ~ {b}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn febrl_postcodes_become_uk_shaped_one_digit_one_change() {
        assert_eq!(uk_postcode("2617"), "M26 1HB");
        assert_eq!(uk_postcode("2618"), "M26 1IB");
        let pc = kinlink::domain::Postcode::parse(&uk_postcode("4223")).unwrap();
        assert_eq!(pc.sector(), Some("M42 2"));
        assert_eq!(uk_postcode("26a7"), "26a7");
    }

    #[test]
    fn impossible_dates_are_left_blank() {
        assert_eq!(iso_date("19151111"), "1915-11-11");
        assert_eq!(iso_date("19560231"), "");
        assert_eq!(iso_date(""), "");
    }

    #[test]
    fn the_true_person_is_the_record_number() {
        let r = |id: &str| Record {
            rec_id: id.to_owned(),
            ..Record::default()
        };
        assert_eq!(r("rec-1070-org").truth(), Some(1070));
        assert_eq!(r("rec-552-dup-3").truth(), Some(552));
        assert_eq!(r("garbage").truth(), None);
    }
}
