//! The early-help case system's nightly snapshot: cases for about 8% of families,
//! open and closed (outcomes met, step-up, step-down, moved away, disengaged), some
//! closed recently and then re-referred, with the case system's own stable family and
//! person ids, one row per member per case.
//!
//! Cases are drawn partly from families that have other signals (a police
//! notification, a housing notice, a pupil falling away), as referrals are.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use chrono::{Days, NaiveDate};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::names::{self, Weighted};
use super::population::{Household, Population, Role, Sex, LOCALITIES};
use super::{iso_date, GeneratedFile, Truth, SOURCE_CASES};
use crate::domain::{CaseLevel, ClosureReason};

/// The snapshot's headers for the canonical columns (canonical → header).
pub const COLUMNS: &[(&str, &str)] = &[
    ("case_id", "Case ID"),
    ("family_id", "Family ID"),
    ("person_id", "Person ID"),
    ("role", "Member Role"),
    ("forename", "Forename"),
    ("surname", "Surname"),
    ("dob", "Date Of Birth"),
    ("gender", "Gender"),
    ("upn", "UPN"),
    ("nhs_number", "NHS No"),
    ("address_line1", "Address"),
    ("postcode", "Postcode"),
    ("uprn", "UPRN"),
    ("referral_date", "Referral Date"),
    ("opened_on", "Start Date"),
    ("closed_on", "End Date"),
    ("closure_reason", "Closure Reason"),
    ("level", "Level of Need"),
    ("locality", "Locality"),
    ("lead_professional", "Lead Professional"),
];

/// A case, before it is written.
struct Case {
    family: usize,
    referral: NaiveDate,
    opened: Option<NaiveDate>,
    closed: Option<(NaiveDate, ClosureReason)>,
    level: CaseLevel,
    lead: &'static str,
}

/// How the case system holds one person (the same on every case they are on).
struct Member {
    person_id: String,
    forename: String,
    dob: String,
    upn: String,
    nhs: String,
}

fn days_before(rng: &mut ChaCha8Rng, d: NaiveDate, min: u64, max: u64) -> NaiveDate {
    d - Days::new(rng.random_range(min..=max))
}

/// An open case referred on `referral`; a recent referral may not be opened yet.
fn open_case(rng: &mut ChaCha8Rng, family: usize, referral: NaiveDate, as_of: NaiveDate) -> Case {
    let opened = referral + Days::new(rng.random_range(3..=21));
    let opened = (opened < as_of && !(referral > as_of - Days::new(30) && rng.random_bool(0.3)))
        .then_some(opened);
    Case {
        family,
        referral,
        opened,
        closed: None,
        level: level(rng),
        lead: names::PRACTITIONERS[rng.random_range(0..names::PRACTITIONERS.len())],
    }
}

fn level(rng: &mut ChaCha8Rng) -> CaseLevel {
    match rng.random::<f64>() {
        x if x < 0.80 => CaseLevel::EarlyHelp,
        x if x < 0.95 => CaseLevel::ChildInNeed,
        _ => CaseLevel::ChildProtection,
    }
}

/// Chooses the case families and their cases.
fn plan(pop: &Population, risk: &[bool], rng: &mut ChaCha8Rng) -> Vec<Case> {
    let as_of = pop.as_of;
    let yesterday = as_of - Days::new(1);
    let mut risky = Vec::new();
    let mut others = Vec::new();
    let mut main = 0usize;
    for (i, f) in pop.families.iter().enumerate() {
        if f.kind == Household::LivingApart {
            continue;
        }
        main += 1;
        if pop.children(f).next().is_none() {
            continue;
        }
        if risk.get(i).copied().unwrap_or(false) {
            risky.push(i);
        } else {
            others.push(i);
        }
    }
    risky.shuffle(rng);
    others.shuffle(rng);
    let n = ((main as f64 * 0.08).round() as usize).max(3);
    let from_risky = (n * 2 / 5).min(risky.len());
    let mut chosen: Vec<usize> = risky[..from_risky].to_vec();
    chosen.extend(others.iter().take(n.saturating_sub(from_risky)));

    let reasons = Weighted::from_weights([45.0, 12.0, 8.0, 18.0, 10.0, 7.0]);
    let reason_of = [
        ClosureReason::OutcomesMet,
        ClosureReason::StepUp,
        ClosureReason::StepDown,
        ClosureReason::Disengaged,
        ClosureReason::MovedAway,
        ClosureReason::Other,
    ];
    let mut cases = Vec::new();
    for family in chosen {
        if rng.random_bool(0.45) {
            let referral = days_before(rng, as_of, 10, 400);
            cases.push(open_case(rng, family, referral, as_of));
            continue;
        }
        let closed_on = if rng.random_bool(0.4) {
            days_before(rng, as_of, 5, 180)
        } else {
            days_before(rng, as_of, 181, 600)
        };
        let opened = days_before(rng, closed_on, 60, 300);
        let referral = days_before(rng, opened, 3, 21);
        let reason = reason_of[reasons.sample(rng)];
        cases.push(Case {
            family,
            referral,
            opened: Some(opened),
            closed: Some((closed_on, reason)),
            level: level(rng),
            lead: names::PRACTITIONERS[rng.random_range(0..names::PRACTITIONERS.len())],
        });
        // Closed, then back: a re-referral within the year.
        if reason != ClosureReason::MovedAway && rng.random_bool(0.25) {
            let again = closed_on + Days::new(rng.random_range(20..=330));
            if again <= yesterday {
                cases.push(open_case(rng, family, again, as_of));
            }
        }
    }
    cases
}

/// Writes the case snapshot and records each person's mention.
pub(crate) fn write(
    pop: &Population,
    risk: &[bool],
    rng: &mut ChaCha8Rng,
    path: &Path,
    truth: &mut Truth,
) -> io::Result<GeneratedFile> {
    let cases = plan(pop, risk, rng);
    let mut header: Vec<&str> = COLUMNS.iter().map(|c| c.1).collect();
    header.push("Team");
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(path)?));
    w.write_record(&header)?;

    let mut family_ids: BTreeMap<usize, String> = BTreeMap::new();
    let mut next_family: u32 = rng.random_range(20_000..30_000);
    let mut members: BTreeMap<usize, Member> = BTreeMap::new();
    let mut next_person: u32 = rng.random_range(500_000..600_000);
    let mut next_case: u32 = rng.random_range(100_000..200_000);
    let mut rows = 0usize;
    for case in &cases {
        let f = &pop.families[case.family];
        let case_id = format!("EH-{next_case:06}");
        next_case += rng.random_range(1..=30);
        let family_id = family_ids
            .entry(case.family)
            .or_insert_with(|| {
                next_family += rng.random_range(1..=7);
                format!("FAM{next_family:06}")
            })
            .clone();
        let addr = &pop.addresses[f.current_address()];
        let locality = if rng.random_bool(0.03) {
            ""
        } else {
            LOCALITIES[addr.locality].0
        };
        let mut people: Vec<(usize, bool)> = f.members.iter().map(|&m| (m, true)).collect();
        if let Some(ex) = f.ex_partner.filter(|_| rng.random_bool(0.2)) {
            // The children's father, named on the case though he lives elsewhere.
            people.push((ex, false));
        }
        for (pi, at_home) in people {
            let p = &pop.persons[pi];
            let child = p.role == Role::Child;
            let m = members.entry(pi).or_insert_with(|| {
                next_person += rng.random_range(1..=5);
                let forename = if child && rng.random_bool(0.05) {
                    names::typo(p.forename, rng)
                } else {
                    p.forename.to_string()
                };
                let dob = if child || rng.random_bool(0.85) {
                    iso_date(p.dob)
                } else {
                    String::new()
                };
                let upn = p
                    .pupil
                    .as_ref()
                    .filter(|_| rng.random_bool(0.6))
                    .map(|pu| pu.upn.clone())
                    .unwrap_or_default();
                let nhs = if rng.random_bool(if child { 0.45 } else { 0.25 }) {
                    let mut n = p.nhs;
                    if rng.random_bool(0.02) {
                        // A keying error in the check digit: deliberately invalid.
                        n = n - n % 10 + (n % 10 + 1) % 10;
                    }
                    let text = format!("{n:010}");
                    if rng.random_bool(0.3) {
                        format!("{} {} {}", &text[..3], &text[3..6], &text[6..])
                    } else {
                        text
                    }
                } else {
                    String::new()
                };
                Member {
                    person_id: next_person.to_string(),
                    forename,
                    dob,
                    upn,
                    nhs,
                }
            });
            let role = match p.role {
                Role::Child => "child",
                Role::Grandparent => "carer",
                Role::Parent | Role::Adult => "parent",
            };
            let (line1, postcode, uprn) = if at_home {
                (
                    addr.line1.as_str(),
                    addr.postcode.as_str(),
                    addr.uprn
                        .filter(|_| rng.random_bool(0.5))
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                )
            } else {
                ("", "", String::new())
            };
            let (closed_on, reason) = match case.closed {
                Some((d, r)) => (iso_date(d), r.as_str()),
                None => (String::new(), ""),
            };
            w.write_record([
                case_id.as_str(),
                &family_id,
                &m.person_id,
                role,
                &m.forename,
                pop.surname(p),
                &m.dob,
                match p.sex {
                    Sex::Female => "Female",
                    Sex::Male => "Male",
                },
                &m.upn,
                &m.nhs,
                line1,
                postcode,
                &uprn,
                &iso_date(case.referral),
                &case.opened.map(iso_date).unwrap_or_default(),
                &closed_on,
                reason,
                case.level.as_str(),
                locality,
                case.lead,
                &format!(
                    "{} Early Help",
                    if locality.is_empty() {
                        "Borough"
                    } else {
                        locality
                    }
                ),
            ])?;
            rows += 1;
            truth.add(pop, SOURCE_CASES, m.person_id.clone(), p);
        }
    }
    w.flush()?;
    Ok(GeneratedFile {
        source: SOURCE_CASES.to_string(),
        path: path.to_path_buf(),
        rows,
        bad_rows: 0,
    })
}
