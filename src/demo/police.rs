//! Police domestic-abuse notifications (Operation Encompass) over the last year: a
//! victim, a perpetrator (sometimes an ex-partner who lives elsewhere), the children,
//! with repeats for some households and several notifications in the last 14 days.
//!
//! Officers write what they are told: adults often without a date of birth,
//! nicknames, the odd one-letter typo, abbreviated street names, roles as `Victim`,
//! `V` or `CHILD`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::names::{self, Weighted};
use super::population::{date_between, Household, Population, Role, Sex};
use super::{uk_date, GeneratedFile, Truth, SOURCE_POLICE};

/// The police export's headers for the canonical columns (canonical → header).
pub const COLUMNS: &[(&str, &str)] = &[
    ("notification_id", "Ref No"),
    ("incident_at", "Incident Date/Time"),
    ("role", "Role"),
    ("forename", "First Name"),
    ("surname", "Last Name"),
    ("dob", "DOB"),
    ("gender", "Sex"),
    ("address_line1", "Incident Address"),
    ("postcode", "Postcode"),
    ("uprn", "UPRN"),
    ("dash_risk", "DASH Risk"),
    ("crime_ref", "Crime Ref"),
    ("school_urn", "School URN"),
    ("person_ref", "Nominal Ref"),
];

const HEADER: &[&str] = &[
    "Ref No",
    "Incident Date/Time",
    "Role",
    "First Name",
    "Last Name",
    "DOB",
    "Sex",
    "Incident Address",
    "Postcode",
    "UPRN",
    "DASH Risk",
    "Crime Ref",
    "School URN",
    "Nominal Ref",
    "Child Present",
    "Officer",
];

/// One incident, before it is written.
#[derive(Debug, Clone)]
pub(crate) struct Incident {
    /// The household the notification is about (the victim's).
    pub family: usize,
    pub at: NaiveDateTime,
    pub victim: usize,
    pub perpetrator: usize,
    pub children: Vec<usize>,
    /// Where it happened (usually the victim's home, sometimes the perpetrator's).
    pub address: usize,
    /// 0 standard, 1 medium, 2 high.
    pub dash: u8,
}

/// The last Sunday of a month, when the clocks change in March and October.
fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let mut d = NaiveDate::from_ymd_opt(year, month + 1, 1)
        .or_else(|| NaiveDate::from_ymd_opt(year + 1, 1, 1))?
        .pred_opt()?;
    while d.weekday() != Weekday::Sun {
        d = d.pred_opt()?;
    }
    Some(d)
}

/// A local incident time, mostly evenings and nights; never in the hour that the
/// clocks skip or repeat (that is the ingest's problem to test, not the demo's).
fn incident_time(rng: &mut ChaCha8Rng, day: NaiveDate, hours: &Weighted) -> NaiveDateTime {
    let mut hour = hours.sample(rng) as u32;
    if hour == 1
        && (Some(day) == last_sunday(day.year(), 3) || Some(day) == last_sunday(day.year(), 10))
    {
        hour = 3;
    }
    let minute = rng.random_range(0..60);
    day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN))
}

/// Chooses the households and incidents for the year before `as_of`.
pub(crate) fn plan(pop: &Population, rng: &mut ChaCha8Rng) -> Vec<Incident> {
    let as_of = pop.as_of;
    // Hour weights: a few in the small hours, most from late afternoon to midnight.
    let hours = Weighted::from_weights([
        4.0, 3.0, 2.0, 1.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 2.5, 3.0, 3.5, 4.0, 5.0,
        6.0, 7.0, 8.0, 8.0, 7.0, 5.0,
    ]);
    let mut with_children: Vec<usize> = Vec::new();
    let mut couples_only: Vec<usize> = Vec::new();
    for (i, f) in pop.families.iter().enumerate() {
        let adults = pop.adults(f).count();
        match f.kind {
            Household::TwoParents => with_children.push(i),
            Household::LoneParent if f.ex_partner.is_some() => with_children.push(i),
            Household::AdultsOnly if adults == 2 => couples_only.push(i),
            _ => {}
        }
    }
    with_children.shuffle(rng);
    couples_only.shuffle(rng);
    let main = pop
        .families
        .iter()
        .filter(|f| f.kind != Household::LivingApart)
        .count();
    let n = ((main as f64 * 0.045).round() as usize)
        .max(3)
        .min(with_children.len());
    let mut households: Vec<usize> = with_children[..n].to_vec();
    // A couple of notifications about adults only.
    households.extend(couples_only.iter().take(2));

    let year_ago = as_of - Days::new(365);
    let yesterday = as_of - Days::new(1);
    let recent_households = (n / 10).max(3);
    let mut incidents = Vec::new();
    for (k, &fi) in households.iter().enumerate() {
        let f = &pop.families[fi];
        let adults: Vec<usize> = pop.adults(f).collect();
        let children: Vec<usize> = pop.children(f).collect();
        let (victim, perpetrator) = match (f.kind, f.ex_partner) {
            (Household::LoneParent, Some(ex)) => (adults[0], ex),
            _ if adults.len() >= 2 => {
                // Usually the woman is the victim; not always.
                let (a, b) = (adults[0], adults[1]);
                let a_female = pop.persons[a].sex == Sex::Female;
                let usual = if a_female { (a, b) } else { (b, a) };
                if rng.random_bool(0.88) {
                    usual
                } else {
                    (usual.1, usual.0)
                }
            }
            _ => continue,
        };
        let count = match rng.random::<f64>() {
            x if x < 0.70 => 1,
            x if x < 0.90 => 2,
            x if x < 0.97 => 3,
            _ => 4,
        };
        let mut day = date_between(rng, year_ago, yesterday);
        let mut dates = vec![day];
        for _ in 1..count {
            day = day + Days::new(rng.random_range(7..=120));
            if day > yesterday {
                break;
            }
            dates.push(day);
        }
        // The first few households have their latest incident in the last 14 days.
        if k < recent_households {
            let recent = as_of - Days::new(rng.random_range(1..=14));
            let prev = dates.len().checked_sub(2).map(|i| dates[i]);
            if prev.is_none_or(|p| p < recent) {
                if let Some(last) = dates.last_mut() {
                    *last = recent;
                }
            }
        }
        let mut dash: u8 = match rng.random::<f64>() {
            x if x < 0.55 => 0,
            x if x < 0.85 => 1,
            _ => 2,
        };
        let apart = pop.persons[perpetrator].family != fi;
        for d in dates {
            let home = f.address_on(d);
            let address = if apart && rng.random_bool(0.1) {
                pop.families[pop.persons[perpetrator].family].address_on(d)
            } else {
                home
            };
            incidents.push(Incident {
                family: fi,
                at: incident_time(rng, d, &hours),
                victim,
                perpetrator,
                children: children.clone(),
                address,
                dash,
            });
            // Repeats tend to escalate.
            if dash < 2 && rng.random_bool(0.3) {
                dash += 1;
            }
        }
    }
    incidents.sort_by(|a, b| a.at.cmp(&b.at).then(a.family.cmp(&b.family)));
    incidents
}

/// How one notification writes roles.
const ROLE_STYLES: &[[&str; 3]] = &[
    ["Victim", "Perpetrator", "Child"],
    ["V", "P", "C"],
    ["VICTIM", "PERPETRATOR", "CHILD"],
    ["victim", "perpetrator", "child"],
];

/// Abbreviates the street suffix, as officers type it.
fn abbreviate(line: &str) -> String {
    for (long, short) in names::SUFFIX_ABBREVIATIONS {
        if let Some(stem) = line.strip_suffix(long) {
            return format!("{stem}{short}");
        }
    }
    line.to_string()
}

/// A name as an officer writes it: sometimes a nickname, sometimes a typo.
fn as_told(rng: &mut ChaCha8Rng, name: &str, nickname_p: f64) -> String {
    if rng.random_bool(nickname_p) {
        if let Some(n) = names::nickname(name, rng) {
            return n.to_string();
        }
    }
    if rng.random_bool(0.03) {
        return names::typo(name, rng);
    }
    name.to_string()
}

/// Writes the police CSV in incident order and records each row's mention.
pub(crate) fn write(
    pop: &Population,
    incidents: &[Incident],
    rng: &mut ChaCha8Rng,
    path: &Path,
    truth: &mut Truth,
) -> io::Result<GeneratedFile> {
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(path)?));
    w.write_record(HEADER)?;
    let mut next_id: u32 = rng.random_range(1000..5000);
    // The force's nominal reference for a person, fixed once decided.
    let mut nominal: BTreeMap<usize, Option<String>> = BTreeMap::new();
    let total_rows: usize = incidents.iter().map(|i| 2 + i.children.len()).sum();
    // One deliberately bad row (a role outside the list) once the file is big
    // enough that it stays under the 5% limit.
    let bad_at = (total_rows >= 40).then(|| rng.random_range(0..incidents.len()));
    let mut rows = 0usize;
    let mut bad_rows = 0usize;
    for (k, inc) in incidents.iter().enumerate() {
        let id = format!("DA{:02}-{next_id:06}", inc.at.year() % 100);
        next_id += rng.random_range(1..=40);
        let when = format!("{} {}", uk_date(inc.at.date()), inc.at.format("%H:%M"));
        let style = ROLE_STYLES[rng.random_range(0..ROLE_STYLES.len())];
        let addr = &pop.addresses[inc.address];
        let line1 = if rng.random_bool(0.25) {
            abbreviate(&addr.line1)
        } else {
            addr.line1.clone()
        };
        let postcode = match rng.random::<f64>() {
            x if x < 0.10 => addr.postcode.replace(' ', ""),
            x if x < 0.15 => addr.postcode.to_lowercase(),
            _ => addr.postcode.clone(),
        };
        let uprn = addr
            .uprn
            .filter(|_| rng.random_bool(0.4))
            .map(|u| u.to_string())
            .unwrap_or_default();
        let dash = match (inc.dash, rng.random_range(0..4)) {
            (_, 0) if rng.random_bool(0.2) => "",
            (0, 1) => "STANDARD",
            (0, _) => "Standard",
            (1, 1) => "MEDIUM",
            (1, _) => "Medium",
            (_, 1) => "HIGH",
            _ => "High",
        };
        let crime_ref = if rng.random_bool(0.45) {
            format!(
                "CRI/{:02}/{:06}",
                inc.at.year() % 100,
                rng.random_range(0..1_000_000)
            )
        } else {
            String::new()
        };
        let officer = format!("PC {}", rng.random_range(1000..9999));
        let mut people: Vec<(usize, usize)> = vec![(inc.victim, 0), (inc.perpetrator, 1)];
        people.extend(inc.children.iter().map(|&c| (c, 2)));
        if people.len() > 3 && rng.random_bool(0.2) {
            people[2..].shuffle(rng);
        }
        for (n, &(pi, role)) in people.iter().enumerate() {
            let p = &pop.persons[pi];
            let child = p.role == Role::Child;
            let person_ref = nominal
                .entry(pi)
                .or_insert_with(|| {
                    rng.random_bool(0.5)
                        .then(|| format!("NOM{:07}", 1_000_000 + p.id * 3))
                })
                .clone()
                .unwrap_or_default();
            let forename = as_told(rng, p.forename, if child { 0.05 } else { 0.15 });
            let surname = if rng.random_bool(0.02) {
                names::typo(pop.surname(p), rng)
            } else {
                pop.surname(p).to_string()
            };
            let dob = if rng.random_bool(if child { 0.92 } else { 0.4 }) {
                // Now and then day and month are swapped, as a US-locale tool does.
                let d = p.dob;
                match NaiveDate::from_ymd_opt(d.year(), d.day(), d.month()) {
                    Some(swapped)
                        if d.day() <= 12 && d.day() != d.month() && rng.random_bool(0.03) =>
                    {
                        uk_date(swapped)
                    }
                    _ => uk_date(d),
                }
            } else {
                String::new()
            };
            let gender = match (p.sex, rng.random_range(0..3)) {
                (_, 0) if !child => "",
                (Sex::Female, 1) => "F",
                (Sex::Female, _) => "Female",
                (Sex::Male, 1) => "M",
                (Sex::Male, _) => "Male",
            };
            let school_urn = p
                .pupil
                .as_ref()
                .filter(|_| rng.random_bool(0.5))
                .map(|pu| format!("{:06}", pop.schools[pu.school].urn))
                .unwrap_or_default();
            let present = if child {
                if rng.random_bool(0.6) {
                    "Y"
                } else {
                    "N"
                }
            } else {
                ""
            };
            w.write_record([
                id.as_str(),
                &when,
                style[role],
                &forename,
                &surname,
                &dob,
                gender,
                &line1,
                &postcode,
                &uprn,
                dash,
                &crime_ref,
                &school_urn,
                &person_ref,
                present,
                &officer,
            ])?;
            rows += 1;
            let key = if person_ref.is_empty() {
                format!("{id}/{}", n + 1)
            } else {
                format!("{id}/{person_ref}")
            };
            truth.add(pop, SOURCE_POLICE, key, p);
        }
        if bad_at == Some(k) {
            // A neighbour recorded with a role the contract does not know.
            w.write_record([
                id.as_str(),
                &when,
                "Witness",
                "Pat",
                "Neighbour",
                "",
                "",
                &line1,
                &postcode,
                "",
                dash,
                &crime_ref,
                "",
                "",
                "",
                &officer,
            ])?;
            rows += 1;
            bad_rows += 1;
        }
    }
    w.flush()?;
    Ok(GeneratedFile {
        source: SOURCE_POLICE.to_string(),
        path: path.to_path_buf(),
        rows,
        bad_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_change_sundays() {
        assert_eq!(last_sunday(2025, 3), NaiveDate::from_ymd_opt(2025, 3, 30));
        assert_eq!(last_sunday(2025, 10), NaiveDate::from_ymd_opt(2025, 10, 26));
        assert_eq!(last_sunday(2025, 12), NaiveDate::from_ymd_opt(2025, 12, 28));
    }

    #[test]
    fn street_suffixes_are_abbreviated() {
        assert_eq!(abbreviate("12 Park Road"), "12 Park Rd");
        assert_eq!(abbreviate("Flat 3, Rowan Court"), "Flat 3, Rowan Court");
    }
}
