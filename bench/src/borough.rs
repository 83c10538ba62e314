//! The large borough of `kinlink bench evaluate`, written as feed files that the
//! real ingest reads: the people of `demo::synth` (households with the typos,
//! nicknames, moves and missing dates of birth that linking meets in life), turned
//! into rows with the counts asked for and with the dates the rules look at.
//!
//! - Pupils at `schools` schools: the *current* ones have a mark for every session
//!   of the last `days` school days up to `as_of` (the demo's calendar: weekends,
//!   holidays and half-term weeks have no marks), with attendance profiles of a real
//!   borough (most around 95%, some persistently low, some falling away, a few
//!   severe, a few on part-time timetables or excluded); the *former* ones (a store
//!   keeps every pupil it has seen) have one day of marks last school year. Their
//!   numbers follow from `mentions` and `marks`.
//! - Police domestic-abuse notifications over the last year, with the children of
//!   the household and a DASH level each.
//! - Housing notices served over the last four months.
//! - Early-help cases of whole families over three years: opened, many closed (with
//!   a reason), some of those re-referred.
//!
//! `nightly` files hold the next school day: a day of marks for every current pupil
//! and a day's worth of new notifications, notices, referrals and closures.
//!
//! Deterministic: one seeded ChaCha8 stream; nothing iterated out of a hash map.

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use kinlink::demo::calendar::{is_school_day, school_days_before};
use kinlink::demo::{
    SOURCE_ATTENDANCE, SOURCE_CASES, SOURCE_HOUSING, SOURCE_MIS_API, SOURCE_POLICE,
};
use kinlink::domain::FeedKind;
use kinlink::link::LinkMention;

use crate::synth::{synth_mentions, SynthOptions};

/// Localities of the bench borough; postcode districts are dealt out among them.
const LOCALITIES: &[&str] = &["North", "South", "East", "West", "Central", "Riverside"];

/// What to build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoroughSize {
    pub mentions: usize,
    pub marks: usize,
    pub notifications: usize,
    pub notices: usize,
    pub case_rows: usize,
    pub schools: usize,
    /// School days of marks for current pupils, ending on `as_of`.
    pub days: usize,
    pub seed: u64,
    /// The last school day of the data (the first evaluation's date).
    pub as_of: NaiveDate,
}

/// What was built, and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Borough {
    pub as_of: NaiveDate,
    /// The school day after `as_of`: the nightly run's date.
    pub next_day: NaiveDate,
    pub counts: Counts,
    /// (source, file) to ingest for the base data, in order.
    pub base: Vec<(String, PathBuf)>,
    /// (source, file) of the next school day.
    pub nightly: Vec<(String, PathBuf)>,
    pub nightly_counts: Counts,
    pub config: PathBuf,
    pub schools: usize,
    /// School days of marks for current pupils.
    pub days: usize,
    pub generate_s: f64,
}

/// Rows and mentions written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Distinct mentions the files hold.
    pub mentions: usize,
    pub current_pupils: usize,
    pub former_pupils: usize,
    pub marks: usize,
    pub notifications: usize,
    pub da_rows: usize,
    pub notices: usize,
    pub cases: usize,
    pub case_rows: usize,
}

/// How a current pupil attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// Around 95%: the odd illness or appointment.
    Steady,
    /// Persistently absent (80–90%) all term: low but not falling.
    Low,
    /// Fine until recently, then absent far more, much of it unexplained.
    FallingAway,
    /// Severe absence in recent weeks.
    Severe,
    /// Afternoons on a part-time timetable in recent weeks.
    PartTime,
    /// Excluded with no provision for a few days recently.
    Excluded,
}

/// One current pupil's way of attending.
#[derive(Debug, Clone, Copy)]
struct Attending {
    profile: Profile,
    /// Chance of a day absent before the recent change (and throughout if none).
    base: f64,
    /// Chance of a day absent in the recent weeks.
    recent: f64,
    /// School days from the end that count as recent.
    recent_days: usize,
}

/// Builds the borough into `dir` and returns what it holds.
pub fn build(size: &BoroughSize, dir: &Path) -> io::Result<Borough> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(dir.join("feeds/base"))?;
    std::fs::create_dir_all(dir.join("feeds/nightly"))?;
    // The config's jobs folder must exist (there are no jobs).
    std::fs::create_dir_all(dir.join("jobs"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(size.seed);
    rng.set_stream(91);
    let as_of = size.as_of;
    let next_day = next_school_day(as_of);
    // Days strictly before the day after as_of: as_of itself is the last one.
    let days = school_days_before(as_of + Days::new(1), size.days.max(1));
    let last_year: Vec<NaiveDate> = school_days_before(as_of - Days::new(200), 120);

    let (mentions, truth) = people(size);
    // Groups of the synthetic borough, in generation order.
    let mut pupils: Vec<usize> = Vec::new();
    let mut notifications: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut tenants: Vec<usize> = Vec::new();
    let mut case_families: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, m) in mentions.iter().enumerate() {
        match m.kind {
            FeedKind::Attendance => pupils.push(i),
            FeedKind::PoliceDa => notifications
                .entry(m.group.clone().unwrap_or_default())
                .or_default()
                .push(i),
            FeedKind::Housing => tenants.push(i),
            FeedKind::Assessment => case_families.entry(truth[i]).or_default().push(i),
        }
    }

    // Pick the notifications, notices and case families to keep.
    let mut ids: Vec<&String> = notifications.keys().collect();
    ids.shuffle(&mut rng);
    ids.truncate(size.notifications);
    let kept_notifications: Vec<String> = {
        let mut v: Vec<String> = ids.into_iter().cloned().collect();
        v.sort();
        v
    };
    tenants.shuffle(&mut rng);
    tenants.truncate(size.notices);
    tenants.sort_unstable();
    let mut families: Vec<u64> = case_families.keys().copied().collect();
    families.shuffle(&mut rng);
    let mut cases = Vec::new();
    let mut case_rows = 0usize;
    for f in families {
        let members = &case_families[&f];
        let timeline = case_timeline(&mut rng, as_of);
        let rows = members.len() * timeline.len();
        if case_rows + rows > size.case_rows {
            if case_rows + members.len() <= size.case_rows {
                // Room for one case of this family.
                case_rows += members.len();
                cases.push((f, vec![timeline[0].clone()]));
            }
            continue;
        }
        case_rows += rows;
        cases.push((f, timeline));
    }
    cases.sort_by_key(|c| c.0);

    let da_rows: usize = kept_notifications
        .iter()
        .map(|n| notifications[n].len())
        .sum();
    let case_mentions: usize = cases.iter().map(|(f, _)| case_families[f].len()).sum();
    let others = da_rows + tenants.len() + case_mentions;
    // Current pupils have 2 marks a day; former ones 2 marks in all.
    let wanted_pupils = size.mentions.saturating_sub(others).min(pupils.len());
    let per_current = 2 * days.len();
    let current = if per_current > 2 {
        (size.marks.saturating_sub(2 * wanted_pupils) / (per_current - 2)).min(wanted_pupils)
    } else {
        wanted_pupils
    };
    pupils.shuffle(&mut rng);
    pupils.truncate(wanted_pupils);
    let (current_pupils, former_pupils) = pupils.split_at(current);
    let mut current_pupils = current_pupils.to_vec();
    current_pupils.sort_unstable();
    let mut former_pupils = former_pupils.to_vec();
    former_pupils.sort_unstable();

    let urn = |m: &LinkMention| remap_urn(m.school_urn.unwrap_or(0), size.schools);
    let mut counts = Counts {
        current_pupils: current_pupils.len(),
        former_pupils: former_pupils.len(),
        notifications: kept_notifications.len(),
        da_rows,
        notices: tenants.len(),
        cases: cases.iter().map(|c| c.1.len()).sum(),
        case_rows,
        mentions: wanted_pupils + others,
        marks: 0,
    };
    let mut nightly_counts = Counts::default();

    // Attendance: one file per attendance source, base and nightly.
    let attending: Vec<Attending> = current_pupils.iter().map(|_| attending(&mut rng)).collect();
    let base_dir = dir.join("feeds/base");
    let night_dir = dir.join("feeds/nightly");
    let mut base = Vec::new();
    let mut nightly = Vec::new();
    for source in [SOURCE_ATTENDANCE, SOURCE_MIS_API] {
        let path = base_dir.join(format!("{source}.csv"));
        let night = night_dir.join(format!("{source}.csv"));
        let mut w = attendance_writer(&path)?;
        let mut wn = attendance_writer(&night)?;
        for (k, &i) in current_pupils.iter().enumerate() {
            let m = &mentions[i];
            if m.source != source {
                continue;
            }
            let mut prng = ChaCha8Rng::seed_from_u64(size.seed ^ (i as u64).wrapping_mul(0x9E37));
            let a = attending[k];
            for (d, day) in days.iter().enumerate() {
                let from_end = days.len() - d;
                for (session, mark) in day_marks(&mut prng, a, from_end) {
                    write_mark(&mut w, m, urn(m), *day, session, mark)?;
                    counts.marks += 1;
                }
            }
            for (session, mark) in day_marks(&mut prng, a, 0) {
                write_mark(&mut wn, m, urn(m), next_day, session, mark)?;
                nightly_counts.marks += 1;
            }
        }
        for &i in &former_pupils {
            let m = &mentions[i];
            if m.source != source {
                continue;
            }
            let day = last_year[i % last_year.len().max(1)];
            for session in ["AM", "PM"] {
                write_mark(&mut w, m, urn(m), day, session, "/")?;
                counts.marks += 1;
            }
        }
        w.flush()?;
        wn.flush()?;
        base.push((source.to_string(), path));
        nightly.push((source.to_string(), night));
    }

    // Police notifications, with a nightly handful: new incidents of households
    // already known (repeats).
    let police = base_dir.join(format!("{SOURCE_POLICE}.csv"));
    let mut w = police_writer(&police)?;
    let mut dash: Vec<&'static str> = Vec::new();
    for n in &kept_notifications {
        let d = dash_risk(&mut rng);
        dash.push(d);
        let at = incident_at(
            &mut rng,
            mentions[notifications[n][0]].seen_on.unwrap_or(as_of),
        );
        for &i in &notifications[n] {
            write_police(&mut w, &mentions[i], n, &at, d, size.schools)?;
        }
    }
    w.flush()?;
    base.push((SOURCE_POLICE.to_string(), police));
    let night_police = night_dir.join(format!("{SOURCE_POLICE}.csv"));
    let mut w = police_writer(&night_police)?;
    let new_notifications = (kept_notifications.len() / 365).max(1);
    for k in 0..new_notifications.min(kept_notifications.len()) {
        let old = &kept_notifications[rng.random_range(0..kept_notifications.len())];
        let id = format!("DN{:07}", k + 1);
        let at = format!(
            "{} {:02}:{:02}",
            next_day - Days::new(1),
            rng.random_range(17..24),
            rng.random_range(0..60)
        );
        let d = dash_risk(&mut rng);
        for &i in &notifications[old] {
            write_police(&mut w, &mentions[i], &id, &at, d, size.schools)?;
            nightly_counts.da_rows += 1;
        }
        nightly_counts.notifications += 1;
    }
    w.flush()?;
    nightly.push((SOURCE_POLICE.to_string(), night_police));

    // Housing notices, and the nightly ones: the next stage for a few tenants.
    let housing = base_dir.join(format!("{SOURCE_HOUSING}.csv"));
    let mut w = housing_writer(&housing)?;
    for &i in &tenants {
        let m = &mentions[i];
        let served = m.seen_on.unwrap_or(as_of);
        write_notice(&mut w, &mut rng, m, &m.mention_key, served, None)?;
    }
    w.flush()?;
    base.push((SOURCE_HOUSING.to_string(), housing));
    let night_housing = night_dir.join(format!("{SOURCE_HOUSING}.csv"));
    let mut w = housing_writer(&night_housing)?;
    if !tenants.is_empty() {
        for k in 0..(tenants.len() / 90).max(1) {
            let m = &mentions[tenants[rng.random_range(0..tenants.len())]];
            let id = format!("HX{:07}", k + 1);
            write_notice(&mut w, &mut rng, m, &id, next_day, Some("possession_claim"))?;
            nightly_counts.notices += 1;
        }
    }
    w.flush()?;
    nightly.push((SOURCE_HOUSING.to_string(), night_housing));

    // Cases; nightly: a few new referrals (re-referrals of known families) and a few
    // closures of open cases.
    let case_file = base_dir.join(format!("{SOURCE_CASES}.csv"));
    let mut w = case_writer(&case_file)?;
    for (f, timeline) in &cases {
        for (k, c) in timeline.iter().enumerate() {
            for &i in &case_families[f] {
                write_case(&mut w, &mentions[i], &case_id(*f, k), *f, c)?;
            }
        }
    }
    w.flush()?;
    base.push((SOURCE_CASES.to_string(), case_file));
    let night_cases = night_dir.join(format!("{SOURCE_CASES}.csv"));
    let mut w = case_writer(&night_cases)?;
    let changes = (cases.len() / 2000).max(1);
    for _ in 0..changes.min(cases.len()) {
        let (f, timeline) = &cases[rng.random_range(0..cases.len())];
        let last = timeline.len() - 1;
        let c = &timeline[last];
        let (id, new) = if c.closed_on.is_some() {
            // Referred again.
            (
                case_id(*f, last + 1),
                Case {
                    referral: next_day,
                    opened: None,
                    closed_on: None,
                    reason: None,
                    level: "early_help",
                },
            )
        } else {
            // Closed today.
            (
                case_id(*f, last),
                Case {
                    closed_on: Some(next_day),
                    reason: Some("outcomes_met"),
                    ..c.clone()
                },
            )
        };
        for &i in &case_families[f] {
            write_case(&mut w, &mentions[i], &id, *f, &new)?;
            nightly_counts.case_rows += 1;
        }
        nightly_counts.cases += 1;
    }
    w.flush()?;
    nightly.push((SOURCE_CASES.to_string(), night_cases));

    let config = dir.join("kinlink.toml");
    std::fs::write(&config, config_text(size.schools))?;
    Ok(Borough {
        as_of,
        next_day,
        counts,
        base,
        nightly,
        nightly_counts,
        config,
        schools: size.schools,
        days: days.len(),
        generate_s: started.elapsed().as_secs_f64(),
    })
}

/// The synthetic people, with each mention's household. Generates more than
/// `mentions` because the other feeds are cut to their counts and the rest is
/// made up with pupils.
fn people(size: &BoroughSize) -> (Vec<LinkMention>, Vec<u64>) {
    let mut opts = SynthOptions::new(size.mentions.max(100));
    opts.seed = size.seed;
    opts.as_of = size.as_of;
    // About two thirds of synthetic mentions are pupils: enough to fill up with.
    let cut = size.notifications * 3 + size.notices + size.case_rows;
    opts.mentions = (size.mentions + size.mentions.saturating_sub(cut) / 2).max(100);
    let (mentions, truth) = synth_mentions(&opts);
    (mentions, truth.into_iter().map(|t| t.family).collect())
}

/// The next school day after `d`.
fn next_school_day(d: NaiveDate) -> NaiveDate {
    let mut n = d + Days::new(1);
    while !is_school_day(n) {
        n = n + Days::new(1);
    }
    n
}

/// Folds the synthetic borough's schools onto `schools` URNs.
fn remap_urn(urn: u32, schools: usize) -> u32 {
    100_000 + urn.saturating_sub(100_000) % schools.max(1) as u32
}

fn attending(rng: &mut ChaCha8Rng) -> Attending {
    let roll: f64 = rng.random();
    let recent_days = rng.random_range(12..=30);
    let (profile, base, recent) = if roll < 0.84 {
        let p = rng.random_range(0.0..0.07);
        (Profile::Steady, p, p)
    } else if roll < 0.94 {
        let p = rng.random_range(0.10..0.20);
        (Profile::Low, p, p)
    } else if roll < 0.975 {
        (
            Profile::FallingAway,
            rng.random_range(0.0..0.06),
            rng.random_range(0.20..0.45),
        )
    } else if roll < 0.987 {
        (
            Profile::Severe,
            rng.random_range(0.02..0.12),
            rng.random_range(0.55..0.90),
        )
    } else if roll < 0.995 {
        (Profile::PartTime, 0.04, 0.04)
    } else {
        (Profile::Excluded, 0.05, 0.05)
    };
    Attending {
        profile,
        base,
        recent,
        recent_days,
    }
}

/// The AM and PM marks of one day, `from_end` school days before the end of the
/// base data (1 = the last day; 0 = the day after).
fn day_marks(
    rng: &mut ChaCha8Rng,
    a: Attending,
    from_end: usize,
) -> [(&'static str, &'static str); 2] {
    let recent = from_end <= a.recent_days;
    let p = if recent { a.recent } else { a.base };
    let present = |rng: &mut ChaCha8Rng| if rng.random_bool(0.03) { "L" } else { "/" };
    if recent && a.profile == Profile::PartTime {
        return [("AM", present(rng)), ("PM", "C2")];
    }
    if recent && a.profile == Profile::Excluded && from_end <= 3 {
        return [("AM", "E"), ("PM", "E")];
    }
    if rng.random_bool(0.004) {
        // An educational visit.
        return [("AM", "V"), ("PM", "V")];
    }
    if !rng.random_bool(p.clamp(0.0, 1.0)) {
        return [("AM", present(rng)), ("PM", present(rng))];
    }
    let worrying = recent && matches!(a.profile, Profile::FallingAway | Profile::Severe);
    let code = if worrying {
        match rng.random_range(0..10) {
            0..=3 => "N",
            4 | 5 => "O",
            6 => "G",
            _ => "I",
        }
    } else {
        match rng.random_range(0..20) {
            0..=11 => "I",
            12 | 13 => "M",
            14 => "C",
            15 => "R",
            16 | 17 => "O",
            18 => "G",
            _ => "N",
        }
    };
    if code == "M" && rng.random_bool(0.7) {
        // An appointment: half a day.
        return [("AM", code), ("PM", present(rng))];
    }
    [("AM", code), ("PM", code)]
}

type Writer = csv::Writer<BufWriter<File>>;

fn writer(path: &Path, header: &[&str]) -> io::Result<Writer> {
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, File::create(path)?));
    w.write_record(header)?;
    Ok(w)
}

fn attendance_writer(path: &Path) -> io::Result<Writer> {
    writer(
        path,
        &[
            "school_urn",
            "upn",
            "forename",
            "surname",
            "dob",
            "gender",
            "postcode",
            "date",
            "session",
            "mark",
        ],
    )
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn write_mark(
    w: &mut Writer,
    m: &LinkMention,
    urn: u32,
    day: NaiveDate,
    session: &str,
    mark: &str,
) -> io::Result<()> {
    // A pupil without a UPN is keyed by school and name (docs/feeds.md).
    let upn = if m.mention_key.contains('/') {
        ""
    } else {
        m.mention_key.as_str()
    };
    w.write_record([
        &format!("{urn:06}"),
        upn,
        opt(&m.forename),
        opt(&m.surname),
        &m.dob.map(|d| d.to_string()).unwrap_or_default(),
        opt(&m.gender),
        opt(&m.postcode),
        &day.to_string(),
        session,
        mark,
    ])?;
    Ok(())
}

fn police_writer(path: &Path) -> io::Result<Writer> {
    writer(
        path,
        &[
            "notification_id",
            "incident_at",
            "role",
            "forename",
            "surname",
            "dob",
            "gender",
            "address_line1",
            "postcode",
            "uprn",
            "dash_risk",
            "school_urn",
        ],
    )
}

fn dash_risk(rng: &mut ChaCha8Rng) -> &'static str {
    match rng.random_range(0..20) {
        0..=10 => "standard",
        11..=16 => "medium",
        17 | 18 => "high",
        _ => "",
    }
}

fn incident_at(rng: &mut ChaCha8Rng, on: NaiveDate) -> String {
    format!(
        "{on} {:02}:{:02}",
        rng.random_range(0..24),
        rng.random_range(0..60)
    )
}

fn write_police(
    w: &mut Writer,
    m: &LinkMention,
    id: &str,
    at: &str,
    dash: &str,
    schools: usize,
) -> io::Result<()> {
    w.write_record([
        id,
        at,
        &m.role,
        opt(&m.forename),
        opt(&m.surname),
        &m.dob.map(|d| d.to_string()).unwrap_or_default(),
        opt(&m.gender),
        opt(&m.address_line1),
        opt(&m.postcode),
        &m.uprn.map(|u| u.to_string()).unwrap_or_default(),
        dash,
        &m.school_urn
            .map(|u| format!("{:06}", remap_urn(u, schools)))
            .unwrap_or_default(),
    ])?;
    Ok(())
}

fn housing_writer(path: &Path) -> io::Result<Writer> {
    writer(
        path,
        &[
            "notice_id",
            "notice_type",
            "served_on",
            "possession_date",
            "tenure",
            "address_line1",
            "postcode",
            "uprn",
            "tenant_forename",
            "tenant_surname",
            "tenant_dob",
            "children_in_household",
        ],
    )
}

fn write_notice(
    w: &mut Writer,
    rng: &mut ChaCha8Rng,
    m: &LinkMention,
    id: &str,
    served: NaiveDate,
    kind: Option<&str>,
) -> io::Result<()> {
    let kind = kind.unwrap_or(match rng.random_range(0..20) {
        0..=6 => "section_21",
        7..=10 => "section_8",
        11 | 12 => "notice_to_quit",
        13..=15 => "possession_claim",
        16 | 17 => "possession_order",
        18 => "warrant",
        _ => "other",
    });
    let possession = matches!(kind, "possession_claim" | "possession_order" | "warrant")
        .then(|| served + Days::new(rng.random_range(10..70)));
    let tenure = match rng.random_range(0..10) {
        0..=2 => "council",
        3..=5 => "housing_association",
        6..=8 => "private",
        _ => "other",
    };
    let children = match rng.random_range(0..10) {
        0..=3 => "0".to_string(),
        4..=8 => rng.random_range(1..5).to_string(),
        _ => String::new(),
    };
    w.write_record([
        id,
        kind,
        &served.to_string(),
        &possession.map(|d| d.to_string()).unwrap_or_default(),
        tenure,
        opt(&m.address_line1),
        opt(&m.postcode),
        &m.uprn.map(|u| u.to_string()).unwrap_or_default(),
        opt(&m.forename),
        opt(&m.surname),
        &m.dob.map(|d| d.to_string()).unwrap_or_default(),
        &children,
    ])?;
    Ok(())
}

/// One case of a family.
#[derive(Debug, Clone)]
struct Case {
    referral: NaiveDate,
    opened: Option<NaiveDate>,
    closed_on: Option<NaiveDate>,
    reason: Option<&'static str>,
    level: &'static str,
}

/// A family's cases, oldest first: one, or a closed one and a re-referral.
fn case_timeline(rng: &mut ChaCha8Rng, as_of: NaiveDate) -> Vec<Case> {
    let referral = as_of - Days::new(rng.random_range(1..1100));
    let opened = rng
        .random_bool(0.9)
        .then(|| referral + Days::new(rng.random_range(0..21)))
        .filter(|d| *d <= as_of);
    let level = match rng.random_range(0..20) {
        0..=14 => "early_help",
        15..=17 => "child_in_need",
        18 => "child_protection",
        _ => "looked_after",
    };
    let closed_on = opened
        .map(|o| o + Days::new(rng.random_range(40..400)))
        .filter(|d| *d < as_of && rng.random_bool(0.8));
    let reason = closed_on.map(|_| match rng.random_range(0..20) {
        0..=9 => "outcomes_met",
        10..=12 => "step_down",
        13..=15 => "disengaged",
        16 => "step_up",
        17 => "moved_away",
        _ => "other",
    });
    let first = Case {
        referral,
        opened,
        closed_on,
        reason,
        level,
    };
    let mut out = vec![first];
    if let Some(closed) = closed_on {
        if rng.random_bool(0.15) {
            let back = closed + Days::new(rng.random_range(7..300));
            if back <= as_of {
                out.push(Case {
                    referral: back,
                    opened: Some(back + Days::new(rng.random_range(0..14))).filter(|d| *d <= as_of),
                    closed_on: None,
                    reason: None,
                    level: "early_help",
                });
            }
        }
    }
    out
}

fn case_id(family: u64, k: usize) -> String {
    format!("EH{family:07}-{}", k + 1)
}

fn case_writer(path: &Path) -> io::Result<Writer> {
    writer(
        path,
        &[
            "case_id",
            "family_id",
            "person_id",
            "role",
            "forename",
            "surname",
            "dob",
            "gender",
            "upn",
            "nhs_number",
            "address_line1",
            "postcode",
            "uprn",
            "referral_date",
            "opened_on",
            "closed_on",
            "closure_reason",
            "level",
            "locality",
        ],
    )
}

fn write_case(w: &mut Writer, m: &LinkMention, id: &str, family: u64, c: &Case) -> io::Result<()> {
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    w.write_record([
        id,
        &format!("FAM{family:07}"),
        &m.mention_key,
        &m.role,
        opt(&m.forename),
        opt(&m.surname),
        &date(m.dob),
        opt(&m.gender),
        opt(&m.upn),
        opt(&m.nhs_number),
        opt(&m.address_line1),
        opt(&m.postcode),
        &m.uprn.map(|u| u.to_string()).unwrap_or_default(),
        &c.referral.to_string(),
        &date(c.opened),
        &date(c.closed_on),
        c.reason.unwrap_or(""),
        c.level,
        m.postcode
            .as_deref()
            .map(locality_of_postcode)
            .unwrap_or(""),
    ])?;
    Ok(())
}

/// The postcode district of the synthetic borough (`M12 3AB` → `M12`).
fn district(postcode: &str) -> &str {
    postcode.split_whitespace().next().unwrap_or("")
}

/// Which locality a postcode district belongs to: districts are dealt out in turn.
fn locality_of_postcode(postcode: &str) -> &'static str {
    let d = district(postcode);
    let n: usize = d.bytes().map(usize::from).sum();
    LOCALITIES[n % LOCALITIES.len()]
}

/// Every district the synthetic borough can use (`demo::synth`'s areas 1–40).
fn all_districts() -> Vec<String> {
    let mut out = Vec::new();
    for area in ["M", "BL", "OL", "SK", "WN", "WA", "BB", "PR", "L", "CH"] {
        for n in 1..=40 {
            out.push(format!("{area}{n}"));
        }
    }
    out
}

/// The config of the bench borough: its five feeds (CSV, canonical headers), six
/// localities over every district, and `schools` schools with an EWO each.
pub fn config_text(schools: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# kinlink bench evaluate: a synthetic borough. Every name and address is made up.\n\
         [mail]\nadmin = [\"eh-systems@bench.invalid\"]\n\n",
    );
    for (name, kind) in [
        (SOURCE_ATTENDANCE, "attendance"),
        (SOURCE_MIS_API, "attendance"),
        (SOURCE_POLICE, "police_da"),
        (SOURCE_HOUSING, "housing"),
        (SOURCE_CASES, "assessment"),
    ] {
        // The large borough's attendance file is about 1 GB, above the daemon's
        // 512 MiB default for one inbox file.
        let _ = writeln!(
            out,
            "[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nformat = \"csv\"\n\
             transport = {{ type = \"dir\", path = \"inbox/{name}\", settle_secs = 0, \
             max_file_bytes = 4294967296 }}\n"
        );
    }
    let districts = all_districts();
    for l in LOCALITIES {
        let mine: Vec<String> = districts
            .iter()
            .filter(|d| locality_of_postcode(d) == *l)
            .map(|d| format!("\"{d}\""))
            .collect();
        let lower = l.to_lowercase();
        let _ = writeln!(
            out,
            "[[locality]]\nname = \"{l}\"\npostcodes = [{}]\n\
             dv_champions = [\"dv.{lower}@bench.invalid\"]\n\
             champions = [\"eh.{lower}@bench.invalid\"]\n\
             managers = [\"mgr.{lower}@bench.invalid\"]\n",
            mine.join(", ")
        );
    }
    for s in 0..schools {
        let urn = 100_000 + s;
        let l = LOCALITIES[s % LOCALITIES.len()];
        let _ = writeln!(
            out,
            "[[school]]\nurn = \"{urn:06}\"\nname = \"School {urn}\"\nlocality = \"{l}\"\n\
             ewos = [\"ewo.{urn}@bench.invalid\"]\n"
        );
    }
    out
}

/// Mentions a set of ids hold (for tests).
#[cfg(test)]
fn distinct_keys(rows: &[csv::StringRecord], col: usize) -> HashSet<String> {
    rows.iter().map(|r| r[col].to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(dir: &Path) -> Borough {
        let size = BoroughSize {
            mentions: 3_000,
            marks: 120_000,
            notifications: 100,
            notices: 40,
            case_rows: 600,
            schools: 20,
            days: 100,
            seed: 7,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
        };
        build(&size, dir).unwrap()
    }

    fn rows(path: &Path) -> Vec<csv::StringRecord> {
        let mut r = csv::Reader::from_path(path).unwrap();
        r.records().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn the_counts_asked_for_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let b = small(dir.path());
        let c = &b.counts;
        assert_eq!(c.mentions, 3_000);
        assert_eq!(c.notifications, 100);
        assert_eq!(c.notices, 40);
        assert!(c.case_rows <= 600 && c.case_rows > 500, "{c:?}");
        // Marks: within a pupil's day of the target.
        assert!(c.marks <= 120_000 && c.marks > 120_000 - 200, "{c:?}");
        let marks: usize = b.base[..2].iter().map(|(_, p)| rows(p).len()).sum();
        assert_eq!(marks, c.marks);
        let police = rows(&b.base[2].1);
        assert_eq!(distinct_keys(&police, 0).len(), 100);
        assert_eq!(police.len(), c.da_rows);
        assert_eq!(b.next_day, NaiveDate::from_ymd_opt(2025, 3, 17).unwrap());
        assert_eq!(b.nightly_counts.marks, 2 * c.current_pupils);
    }

    #[test]
    fn marks_skip_half_term_and_mostly_say_present() {
        let dir = tempfile::tempdir().unwrap();
        let b = small(dir.path());
        let marks = rows(&b.base[0].1);
        let dates: HashSet<&str> = marks.iter().map(|r| r.get(7).unwrap()).collect();
        // February half-term 2025 (the demo calendar's week of 14 Feb).
        assert!(!dates.contains("2025-02-12"));
        assert!(dates.contains("2025-03-14") && dates.contains("2025-02-18"));
        let present = marks
            .iter()
            .filter(|r| matches!(r.get(9), Some("/") | Some("L")))
            .count();
        let share = present as f64 / marks.len() as f64;
        assert!((0.85..0.97).contains(&share), "{share}");
        let codes: HashSet<&str> = marks.iter().map(|r| r.get(9).unwrap()).collect();
        for c in ["N", "O", "I", "C2", "E"] {
            assert!(codes.contains(c), "{c} missing from {codes:?}");
        }
    }

    #[test]
    fn the_config_loads_and_routes_every_district() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        let text = config_text(400);
        let settings = kinlink::config::load_str(&text, &dir.path().join("kinlink.toml")).unwrap();
        assert_eq!(settings.schools.len(), 400);
        assert_eq!(settings.localities.len(), LOCALITIES.len());
        let routed: usize = settings.localities.iter().map(|l| l.postcodes.len()).sum();
        assert_eq!(routed, all_districts().len());
        let mut seen = HashMap::new();
        for d in all_districts() {
            *seen.entry(locality_of_postcode(&d)).or_insert(0) += 1;
        }
        assert!(seen.values().all(|&n| n > 30), "{seen:?}");
    }
}
