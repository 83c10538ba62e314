//! `attendance_drop`: a pupil whose attendance is falling away (docs/domain.md 1.3 and
//! 9.3), and the attendance signal the family rules count.
//!
//! Rates are computed from the DfE categories: attended = present + approved
//! activity, possible = attended + authorised + unauthorised; not-possible codes
//! count in neither. A *school day* is a date on which the pupil's school recorded
//! any mark, so half-term and holidays (no marks) are not absence and do not move
//! the windows.
//!
//! Fires when the window's rate is under `below` and at least `drop` under the
//! baseline just before it, or under `severe_below` on its own; never on fewer
//! than `min_possible_sessions` possible sessions (docs/domain.md 9.4). Severity:
//! falling away → info; `unauthorised_sessions` or more unauthorised sessions in
//! the window (the penalty-notice threshold, docs/domain.md 1.4) → priority; severe
//! absence → urgent.

use chrono::NaiveDate;

use super::{recent, Fact, Finding, Index, RecordRef, RuleInput, RuleProblem};
use crate::domain::rules::{AttendanceDrop, RuleId, Severity};
use crate::domain::FeedKind;

/// Session counts of one pupil over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttendanceCounts {
    /// Present or approved educational activity.
    pub attended: u32,
    pub authorised: u32,
    pub unauthorised: u32,
    /// `N` or `O`: no reason given.
    pub unexplained: u32,
    /// `C2` (part-time timetable) or `E` (excluded, no provision): an early-help
    /// signal in itself (docs/domain.md 9.3).
    pub part_time_or_excluded: u32,
}

impl AttendanceCounts {
    pub fn possible(&self) -> u32 {
        self.attended + self.authorised + self.unauthorised
    }

    /// Attended / possible, or `None` with no possible session.
    pub fn rate(&self) -> Option<f64> {
        let p = self.possible();
        (p > 0).then(|| f64::from(self.attended) / f64::from(p))
    }
}

/// One pupil at one school: counts over the recent window and the baseline just
/// before it, both in that school's days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PupilAttendance {
    pub mention: i64,
    pub school_urn: u32,
    pub window: AttendanceCounts,
    pub baseline: AttendanceCounts,
    /// First and last school day of the window.
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    /// School days in the window and the baseline (fewer than configured when the
    /// school's history is short).
    pub window_days: u32,
    pub baseline_days: u32,
    /// The longest run of consecutive unexplained (`N`/`O`) sessions in the
    /// window, where the store worked it out.
    pub longest_unexplained_run: Option<u32>,
}

/// What the attendance of one pupil says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub rate: f64,
    pub baseline: Option<f64>,
    pub falling: bool,
    pub severe: bool,
    /// Under `below`: persistent absence over the window.
    pub persistent: bool,
}

/// Reads one pupil's counts against the thresholds; `None` when there are too
/// few possible sessions to say anything.
pub(crate) fn read(p: &PupilAttendance, c: &AttendanceDrop) -> Option<Reading> {
    if p.window.possible() < c.min_possible_sessions {
        return None;
    }
    let rate = p.window.rate()?;
    let baseline = (p.baseline.possible() >= c.min_possible_sessions)
        .then(|| p.baseline.rate())
        .flatten();
    // A small tolerance so that 0.80 - 0.70 counts as a 10-point drop.
    let falling = rate < c.below && baseline.is_some_and(|b| b - rate >= c.drop - 1e-9);
    Some(Reading {
        rate,
        baseline,
        falling,
        severe: rate < c.severe_below,
        persistent: rate < c.below,
    })
}

/// Pupils a family rule may count as an attendance signal: persistent absence in
/// the window, or a part-time timetable or exclusion mark.
pub(crate) fn is_signal(p: &PupilAttendance, c: &AttendanceDrop) -> bool {
    p.window.part_time_or_excluded > 0 || read(p, c).is_some_and(|r| r.persistent)
}

/// The fact key of a pupil's attendance at a school.
pub(crate) fn fact_key(m: &super::MentionInfo, urn: u32) -> String {
    format!("attendance:{}/{}@{urn}", m.source, m.mention_key)
}

/// The fact of a pupil's attendance over the window: the pupil's mention key is
/// the record, the window's first school day the episode.
pub(crate) fn fact(m: &super::MentionInfo, p: &PupilAttendance) -> Fact {
    Fact {
        key: fact_key(m, p.school_urn),
        episode: p.window_from.to_string(),
        record: RecordRef {
            kind: FeedKind::Attendance,
            id: m.mention_key.clone(),
        },
        person: m.person,
        date: p.window_to,
    }
}

pub(crate) fn attendance_drop(
    input: &RuleInput,
    index: &Index<'_>,
    c: &AttendanceDrop,
    problems: &mut Vec<RuleProblem>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &input.pupils {
        // Marks that stopped arriving long ago are history, not news.
        if !recent(p.window_to, input.as_of, c.common.lookback_days) {
            continue;
        }
        let Some(r) = read(p, c) else { continue };
        if !(r.falling || r.severe) {
            continue;
        }
        let Some(m) = index.mentions.get(&p.mention) else {
            problems.push(RuleProblem {
                rule: RuleId::AttendanceDrop,
                message: format!("attendance counts for unknown mention {}", p.mention),
            });
            continue;
        };
        let mut severity = Severity::Info;
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        let mut lines = vec![format!(
            "Attendance {} ({} of {} possible sessions) over the last {} school days ({} to {}){}.",
            pct(r.rate),
            p.window.attended,
            p.window.possible(),
            p.window_days,
            p.window_from,
            p.window_to,
            match r.baseline {
                Some(b) => format!(
                    ", against {} ({} of {}) in the {} school days before",
                    pct(b),
                    p.baseline.attended,
                    p.baseline.possible(),
                    p.baseline_days
                ),
                None => ", with too few sessions before it to compare".to_string(),
            }
        )];
        lines.push(format!(
            "Absent sessions in the window: {} authorised, {} unauthorised ({} with no reason given{}).",
            p.window.authorised,
            p.window.unauthorised,
            p.window.unexplained,
            p.longest_unexplained_run
                .filter(|&n| n > 1)
                .map(|n| format!(", the longest run {n} sessions"))
                .unwrap_or_default()
        ));
        lines.push(format!(
            "Thresholds: below {} and at least {:.0} points under the baseline, or below {} on its own; at least {} possible sessions.",
            pct(c.below),
            c.drop * 100.0,
            pct(c.severe_below),
            c.min_possible_sessions
        ));
        let mut facts = vec![fact(m, p)];
        if p.window.unauthorised >= c.unauthorised_sessions {
            severity = Severity::Priority;
            lines.push(format!(
                "Priority: {} unauthorised sessions in the window (the penalty-notice threshold is 10 in 10 school weeks).",
                p.window.unauthorised
            ));
        }
        if r.severe {
            severity = Severity::Urgent;
            lines.push(format!(
                "Urgent: severe absence (attendance below {}).",
                pct(c.severe_below)
            ));
            // Becoming severe is news on an open alert: a fact of its own.
            facts.push(Fact {
                key: format!("{}:severe", fact_key(m, p.school_urn)),
                ..facts[0].clone()
            });
        }
        out.push(Finding {
            rule: RuleId::AttendanceDrop,
            subject: format!("pupil:{}/{}@{}", m.source, m.mention_key, p.school_urn),
            family: m.family,
            school_urn: Some(p.school_urn),
            severity,
            facts,
            case_locality: None,
            postcodes: Vec::new(),
            explanation: lines,
        });
    }
    out
}
