//! A seeded fictional borough: households, schools and addresses, and the partner
//! feeds they would produce (school attendance as CSV and as Wonde-shaped JSON, police
//! domestic-abuse notifications, housing notices as XLSX, an early-help case
//! snapshot), with a config and job that ingest them, and the ground truth of who is
//! who for scoring identity resolution.
//!
//! Pure generation and file writing: nothing here ingests. Output is deterministic:
//! the same seed and options give byte-identical files, because every draw comes
//! from a seeded ChaCha8 stream, every collection that is iterated is ordered, and
//! every date is computed from the `as_of` passed in (never the clock).
//!
//! Invariant: the truth file has one row per distinct mention key (docs/feeds.md) of every
//! row the generator meant to be good; deliberately bad rows, which ingest will
//! quarantine, are *not* in it.

mod attendance;
/// The school calendar the demo's feeds follow (also `kinlink-bench`'s borough).
pub mod calendar;
mod cases;
mod config_file;
mod housing;
pub mod names;
mod police;
mod population;

pub use attendance::write_attendance;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use population::{Person, Population};

/// Source names, as they appear in config and in the truth file.
pub const SOURCE_ATTENDANCE: &str = "school-attendance";
pub const SOURCE_MIS_API: &str = "mis-attendance-api";
pub const SOURCE_POLICE: &str = "police-encompass";
pub const SOURCE_HOUSING: &str = "housing-notices";
pub const SOURCE_CASES: &str = "case-system";

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Households with a home in the borough (default 5000). Lone parents'
    /// ex-partners living elsewhere are added as households of their own.
    pub families: usize,
    /// Seed for every random draw (default 42).
    pub seed: u64,
    /// "Today" for the borough: feeds cover the time before it.
    pub as_of: NaiveDate,
    /// Where the config, jobs, inbox and truth go.
    pub out_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            families: 5000,
            seed: 42,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 10).unwrap_or(NaiveDate::MIN),
            out_dir: PathBuf::from("demo"),
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub files: Vec<GeneratedFile>,
    /// Every person in the borough (including those who appear in no feed).
    pub persons: usize,
    /// Every household, ex-partners' own households included.
    pub families: usize,
    /// Rows of the truth file: distinct mentions across all feeds.
    pub mentions: usize,
}

/// One feed file written to the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub source: String,
    pub path: PathBuf,
    /// Data rows (records), bad ones included.
    pub rows: usize,
    /// Rows written deliberately bad, which ingest should quarantine.
    pub bad_rows: usize,
}

/// Writes `out_dir/kinlink.toml`, `out_dir/jobs/nightly.toml`,
/// `out_dir/inbox/<source>/<file>` for each source and `out_dir/truth/mentions.csv`.
pub fn generate(opts: &DemoOptions) -> io::Result<DemoSummary> {
    // Dates are computed by arithmetic on `as_of` (decades back for parents' births,
    // weeks ahead for bailiff dates); a date far outside living memory would overflow.
    if !(1950..=2200).contains(&opts.as_of.year()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "as_of {} is outside the years 1950 to 2200 the demo can generate",
                opts.as_of
            ),
        ));
    }
    let out = &opts.out_dir;
    fs::create_dir_all(out.join("jobs"))?;
    fs::create_dir_all(out.join("truth"))?;
    for source in [
        SOURCE_ATTENDANCE,
        SOURCE_MIS_API,
        SOURCE_POLICE,
        SOURCE_HOUSING,
        SOURCE_CASES,
    ] {
        fs::create_dir_all(out.join("inbox").join(source))?;
    }

    let pop = population::build(&mut stream(opts.seed, 1), opts.families, opts.as_of);
    let mut truth = Truth::default();
    let stamp = format!(
        "{:04}{:02}{:02}",
        opts.as_of.year(),
        opts.as_of.month(),
        opts.as_of.day()
    );
    let inbox = |source: &str, file: String| out.join("inbox").join(source).join(file);

    let mut files = Vec::new();
    files.push(attendance::write_csv(
        &pop,
        &mut stream(opts.seed, 2),
        &inbox(SOURCE_ATTENDANCE, format!("attendance_{stamp}.csv")),
        &mut truth,
    )?);
    files.push(attendance::write_json(
        &pop,
        &mut stream(opts.seed, 3),
        &inbox(SOURCE_MIS_API, format!("wonde_sessions_{stamp}.json")),
        &mut truth,
    )?);
    let incidents = police::plan(&pop, &mut stream(opts.seed, 4));
    files.push(police::write(
        &pop,
        &incidents,
        &mut stream(opts.seed, 5),
        &inbox(SOURCE_POLICE, format!("encompass_{stamp}.csv")),
        &mut truth,
    )?);
    let notices = housing::plan(&pop, &mut stream(opts.seed, 6));
    files.push(housing::write(
        &pop,
        &notices,
        &mut stream(opts.seed, 7),
        &inbox(SOURCE_HOUSING, format!("possession_notices_{stamp}.xlsx")),
        &mut truth,
    )?);
    let risk = risk_families(&pop, &incidents, &notices);
    files.push(cases::write(
        &pop,
        &risk,
        &mut stream(opts.seed, 8),
        &inbox(SOURCE_CASES, format!("eh_snapshot_{stamp}.csv")),
        &mut truth,
    )?);

    config_file::write(&pop, out)?;
    let mentions = truth.write(&out.join("truth").join("mentions.csv"))?;
    Ok(DemoSummary {
        files,
        persons: pop.persons.len(),
        families: pop.families.len(),
        mentions,
    })
}

/// An independent, seeded random stream per part of the borough, so that changing
/// how one feed is written does not reshuffle every other feed.
fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(n);
    rng
}

/// Families with a police notification, a housing notice or a pupil falling away:
/// early-help cases are drawn partly from them, as referrals are in life.
fn risk_families(
    pop: &Population,
    incidents: &[police::Incident],
    notices: &[housing::Notice],
) -> Vec<bool> {
    let mut risk = vec![false; pop.families.len()];
    for i in incidents {
        risk[i.family] = true;
    }
    for n in notices {
        risk[n.family] = true;
    }
    for p in &pop.persons {
        if let Some(pupil) = &p.pupil {
            if matches!(
                pupil.profile,
                population::Profile::FallingAway | population::Profile::Severe
            ) {
                risk[p.family] = true;
            }
        }
    }
    risk
}

/// Ground truth: (source, mention key) → (person id, family id).
#[derive(Debug, Default)]
pub(crate) struct Truth {
    rows: BTreeMap<(&'static str, String), (u32, u32)>,
}

impl Truth {
    /// Records a mention of `person`. Returns false (and keeps the first) when the
    /// key is already taken by someone else.
    fn add(
        &mut self,
        pop: &Population,
        source: &'static str,
        key: String,
        person: &Person,
    ) -> bool {
        let family = pop.families.get(person.family).map(|f| f.id).unwrap_or(0);
        match self.rows.entry((source, key)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((person.id, family));
                true
            }
            std::collections::btree_map::Entry::Occupied(o) => o.get().0 == person.id,
        }
    }

    /// Whether the key is taken.
    fn contains(&self, source: &'static str, key: &str) -> bool {
        self.rows.contains_key(&(source, key.to_string()))
    }

    /// Writes `source,mention_key,true_person_id,true_family_id`, sorted by source and
    /// key. Returns the number of rows.
    fn write(&self, path: &Path) -> io::Result<usize> {
        let mut w = csv::Writer::from_writer(io::BufWriter::new(fs::File::create(path)?));
        w.write_record(["source", "mention_key", "true_person_id", "true_family_id"])?;
        for ((source, key), (person, family)) in &self.rows {
            w.write_record([
                *source,
                key.as_str(),
                &person_id(*person),
                &family_id(*family),
            ])?;
        }
        w.flush()?;
        Ok(self.rows.len())
    }
}

/// The generator's person id as written in the truth file.
pub(crate) fn person_id(id: u32) -> String {
    format!("P{id:07}")
}

/// The generator's family id as written in the truth file.
pub(crate) fn family_id(id: u32) -> String {
    format!("F{id:07}")
}

/// A date as UK `dd/mm/yyyy`.
pub(crate) fn uk_date(d: NaiveDate) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), d.month(), d.year())
}

/// A date as ISO `yyyy-mm-dd`.
pub(crate) fn iso_date(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// Names as docs/feeds.md normalises them for mention keys: trimmed, inner whitespace
/// collapsed, upper case.
pub(crate) fn key_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

#[cfg(test)]
mod tests;
