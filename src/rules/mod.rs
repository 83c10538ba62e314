//! Rules: facts from the store (records, persons, families, attendance counts) →
//! *findings*, one per rule and subject, each with the facts behind it, a severity
//! with its reasons, and what routing needs (docs/design.md "Rules: signals and
//! patterns"; defaults in docs/domain.md §9).
//!
//! Pure: no IO, no clock (the run's date comes in [`RuleInput::as_of`]), and never
//! fails on bad data.
//!
//! Invariants:
//! - no finding rests on a fact dated after `as_of` or older than its rule's
//!   `lookback_days`;
//! - the same input gives the same findings in the same order;
//! - explanations carry ids, dates, counts and thresholds, never a name, a date
//!   of birth or an address.

mod attendance;
mod family;
mod housing;
mod police;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::rules::{RuleId, RulesConfig, Severity};
use crate::domain::{CaseRole, ClosureReason, DaRole, DashRisk, FeedKind, NoticeType, Tenure};

pub use attendance::{AttendanceCounts, PupilAttendance};

/// One person mention as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionInfo {
    pub id: i64,
    pub kind: FeedKind,
    /// The source and mention key of a pupil (its attendance fact key); the store
    /// leaves them empty for other mentions, which no rule names by key.
    pub source: String,
    pub mention_key: String,
    /// A pupil, a `child` in a notification or a `child` on a case.
    pub child: bool,
    pub person: Option<i64>,
    pub family: Option<i64>,
    /// The household keys of the mention's address ([`crate::link::family::address_keys`]).
    pub address_keys: Vec<String>,
    pub postcode: Option<String>,
}

/// One person row of a police notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaRow {
    pub source: String,
    pub notification_id: String,
    pub mention: i64,
    pub role: DaRole,
    /// The incident's Europe/London date.
    pub incident_on: NaiveDate,
    pub dash: Option<DashRisk>,
    pub address_keys: Vec<String>,
    pub postcode: String,
}

/// One eviction or possession notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub source: String,
    pub notice_id: String,
    pub notice_type: NoticeType,
    pub served_on: NaiveDate,
    pub possession_date: Option<NaiveDate>,
    pub tenure: Option<Tenure>,
    pub children_in_household: Option<i64>,
    /// The tenant's mention.
    pub mention: i64,
    pub address_keys: Vec<String>,
    pub postcode: String,
}

/// One member of one case in the case system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub source: String,
    pub case_id: String,
    pub mention: i64,
    pub role: CaseRole,
    pub referral_date: NaiveDate,
    pub opened_on: Option<NaiveDate>,
    pub closed_on: Option<NaiveDate>,
    pub closure_reason: Option<ClosureReason>,
    pub locality: Option<String>,
}

/// Everything the rules read for one run.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub as_of: NaiveDate,
    pub mentions: Vec<MentionInfo>,
    pub notifications: Vec<DaRow>,
    pub notices: Vec<NoticeRow>,
    pub cases: Vec<CaseRow>,
    pub pupils: Vec<PupilAttendance>,
}

/// A feed record behind an alert, as docs/feeds.md names it: the kind and its id
/// (`notification_id`, `notice_id`, `case_id`, or the pupil's mention key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct RecordRef {
    pub kind: FeedKind,
    pub id: String,
}

/// One fact behind a finding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fact {
    /// Stable across nights: the record (`police_da:SOURCE/ID`), or a condition of
    /// it (`attendance:SOURCE/KEY@URN:severe`).
    pub key: String,
    /// Tells two runs of one condition apart (an attendance window's first day);
    /// empty for a record, which happens once.
    pub episode: String,
    pub record: RecordRef,
    pub person: Option<i64>,
    pub date: NaiveDate,
}

/// What a rule found about one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: RuleId,
    /// `family:ID`, `pupil:SOURCE/KEY`, or a record (`notification:SOURCE/ID`,
    /// `notice:SOURCE/ID`) while it is not linked to a family.
    pub subject: String,
    pub family: Option<i64>,
    pub school_urn: Option<u32>,
    pub severity: Severity,
    /// Sorted by key; one fact per key.
    pub facts: Vec<Fact>,
    /// The case system's locality of the family's open case, if any.
    pub case_locality: Option<String>,
    /// Postcodes to route by, the most relevant first (the incident or notice
    /// address, then the family's homes).
    pub postcodes: Vec<String>,
    /// Plain-words lines: what happened, why it matters, the thresholds used.
    pub explanation: Vec<String>,
}

/// Something odd in the input that did not stop the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub rule: RuleId,
    pub message: String,
}

/// Findings of every enabled rule, merged so that there is one per rule and
/// subject, sorted by rule then subject.
pub fn evaluate(input: &RuleInput, config: &RulesConfig) -> (Vec<Finding>, Vec<RuleProblem>) {
    let index = Index::new(input);
    let mut findings = Vec::new();
    let mut problems = Vec::new();
    if config.da_notification.common.enabled {
        findings.extend(police::da_notification(
            input,
            &index,
            &config.da_notification,
        ));
    }
    if config.attendance_drop.common.enabled {
        findings.extend(attendance::attendance_drop(
            input,
            &index,
            &config.attendance_drop,
            &mut problems,
        ));
    }
    if config.eviction_risk.common.enabled {
        findings.extend(housing::eviction_risk(input, &index, &config.eviction_risk));
    }
    if config.emerging_risk.common.enabled || config.closed_too_early.common.enabled {
        let signals = family::signals(input, &index, config);
        if config.emerging_risk.common.enabled {
            findings.extend(family::emerging_risk(input, &index, config, &signals));
        }
        if config.closed_too_early.common.enabled {
            findings.extend(family::closed_too_early(input, &index, config, &signals));
        }
    }
    (merge(findings), problems)
}

/// Joins findings of one rule about one subject: facts united, the highest
/// severity, explanations one after the other.
fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut by: BTreeMap<(RuleId, String), Finding> = BTreeMap::new();
    for f in findings {
        match by.entry((f.rule, f.subject.clone())) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(f);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let m = o.get_mut();
                m.severity = m.severity.max(f.severity);
                m.facts.extend(f.facts);
                for p in f.postcodes {
                    if !m.postcodes.contains(&p) {
                        m.postcodes.push(p);
                    }
                }
                m.explanation.extend(f.explanation);
                if m.case_locality.is_none() {
                    m.case_locality = f.case_locality;
                }
            }
        }
    }
    by.into_values()
        .map(|mut f| {
            f.facts.sort();
            f.facts.dedup_by(|a, b| a.key == b.key);
            f
        })
        .collect()
}

/// Lookups built once per run.
pub(crate) struct Index<'a> {
    pub mentions: HashMap<i64, &'a MentionInfo>,
    /// Family → its members' mentions.
    pub family_mentions: BTreeMap<i64, Vec<&'a MentionInfo>>,
    /// Address key → the child mentions living there.
    pub children_at: HashMap<&'a str, Vec<&'a MentionInfo>>,
    /// Family → (latest referral date, locality) of its open cases.
    pub open_case: HashMap<i64, (NaiveDate, Option<&'a str>)>,
}

impl<'a> Index<'a> {
    fn new(input: &'a RuleInput) -> Index<'a> {
        let mentions: HashMap<i64, &MentionInfo> =
            input.mentions.iter().map(|m| (m.id, m)).collect();
        let mut family_mentions: BTreeMap<i64, Vec<&MentionInfo>> = BTreeMap::new();
        let mut children_at: HashMap<&str, Vec<&MentionInfo>> = HashMap::new();
        for m in &input.mentions {
            if let Some(f) = m.family {
                family_mentions.entry(f).or_default().push(m);
            }
            if m.child {
                for k in &m.address_keys {
                    children_at.entry(k.as_str()).or_default().push(m);
                }
            }
        }
        let mut open_case: HashMap<i64, (NaiveDate, Option<&str>)> = HashMap::new();
        for c in &input.cases {
            // Open: referred or opened, not closed (docs/design.md), and known by the
            // run's date.
            if c.closed_on.is_some_and(|d| d <= input.as_of) || c.referral_date > input.as_of {
                continue;
            }
            let Some(f) = mentions.get(&c.mention).and_then(|m| m.family) else {
                continue;
            };
            let e = open_case
                .entry(f)
                .or_insert((c.referral_date, c.locality.as_deref()));
            if c.referral_date > e.0 || (e.1.is_none() && c.locality.is_some()) {
                *e = (c.referral_date, c.locality.as_deref().or(e.1));
            }
        }
        Index {
            mentions,
            family_mentions,
            children_at,
            open_case,
        }
    }

    /// Families of the children living at any of `keys`.
    pub fn child_families_at(&self, keys: &[String]) -> Vec<i64> {
        let mut out: Vec<i64> = keys
            .iter()
            .filter_map(|k| self.children_at.get(k.as_str()))
            .flatten()
            .filter_map(|m| m.family)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether any child lives at any of `keys`.
    pub fn children_live_at(&self, keys: &[String]) -> bool {
        keys.iter()
            .any(|k| self.children_at.contains_key(k.as_str()))
    }

    /// The family's home postcodes (non-police mentions first), distinct.
    pub fn family_postcodes(&self, family: i64) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let Some(ms) = self.family_mentions.get(&family) else {
            return out;
        };
        let mut ordered: Vec<&&MentionInfo> = ms.iter().collect();
        ordered.sort_by_key(|m| (m.kind == FeedKind::PoliceDa, m.id));
        for m in ordered {
            if let Some(p) = &m.postcode {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    pub fn family_of(&self, mention: i64) -> Option<i64> {
        self.mentions.get(&mention).and_then(|m| m.family)
    }

    pub fn person_of(&self, mention: i64) -> Option<i64> {
        self.mentions.get(&mention).and_then(|m| m.person)
    }
}

/// Whether a pupil's counts could matter to any rule (falling away, severe or
/// persistent absence).
pub fn attendance_may_alert(p: &PupilAttendance, c: &crate::domain::rules::AttendanceDrop) -> bool {
    attendance::read(p, c).is_some_and(|r| r.falling || r.severe || r.persistent)
}

/// Whether a pupil's counts could raise an `attendance_drop` (falling away or
/// severe absence): the only alert that tells the longest run of unexplained
/// absence, so the store reads the runs for these pupils only.
pub fn attendance_may_raise(p: &PupilAttendance, c: &crate::domain::rules::AttendanceDrop) -> bool {
    attendance::read(p, c).is_some_and(|r| r.falling || r.severe)
}

/// The pupils' mentions the rules can ask about: a pupil's mention is looked up
/// only for a signal (part-time or excluded, persistent absence) or an alert
/// (falling away, severe absence).
pub fn pupil_seeds(
    pupils: &[PupilAttendance],
    c: &crate::domain::rules::AttendanceDrop,
) -> Vec<i64> {
    distinct(
        pupils
            .iter()
            .filter(|p| p.window.part_time_or_excluded > 0 || attendance_may_alert(p, c))
            .map(|p| p.mention),
    )
}

/// The mentions of the records (notifications, notices, cases). With the pupils'
/// ([`pupil_seeds`]), the children living at the records' addresses ([`places`])
/// and the families of all, these are the mentions the store reads for a run
/// ([`crate::store::Store::rule_mentions_for`]); the rules find the same with
/// them as with every mention.
pub fn record_seeds(notifications: &[DaRow], notices: &[NoticeRow], cases: &[CaseRow]) -> Vec<i64> {
    let mut seeds: Vec<i64> = notifications
        .iter()
        .map(|n| n.mention)
        .chain(notices.iter().map(|n| n.mention))
        .chain(cases.iter().map(|c| c.mention))
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    seeds
}

/// The household keys of the records' addresses: where the rules look for
/// children living there.
pub fn places(notifications: &[DaRow], notices: &[NoticeRow]) -> Vec<String> {
    distinct(
        notifications
            .iter()
            .flat_map(|n| n.address_keys.iter().cloned())
            .chain(notices.iter().flat_map(|n| n.address_keys.iter().cloned())),
    )
}

/// Within `days` before `as_of` (inclusive), and not after it.
pub(crate) fn recent(date: NaiveDate, as_of: NaiveDate, days: u32) -> bool {
    date <= as_of && (as_of - date).num_days() <= i64::from(days)
}

/// The members of a set, deduplicated, in order.
pub(crate) fn distinct<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let set: std::collections::BTreeSet<T> = items.into_iter().collect();
    set.into_iter().collect()
}

/// What one feed record tells, before it is told to each family it concerns.
pub(crate) struct RecordFinding<'a> {
    pub rule: RuleId,
    /// The record's own subject (`notification:SOURCE/ID`), used when no family is known.
    pub subject: String,
    /// The record's postcode, routed on first.
    pub postcode: Option<&'a str>,
    pub severity: Severity,
    pub fact: Fact,
    pub lines: Vec<String>,
}

/// One finding per family told of a record (or, with no family, one about the
/// record itself): the record's postcode first for routing, then the family's
/// homes; the open case's locality where there is one.
pub(crate) fn per_family(
    index: &Index<'_>,
    families: &[i64],
    record: RecordFinding<'_>,
) -> Vec<Finding> {
    let RecordFinding {
        rule,
        subject: record_subject,
        postcode: record_postcode,
        severity,
        fact,
        lines,
    } = record;
    let subjects: Vec<(String, Option<i64>)> = if families.is_empty() {
        vec![(record_subject, None)]
    } else {
        families
            .iter()
            .map(|&f| (family_subject(f), Some(f)))
            .collect()
    };
    subjects
        .into_iter()
        .map(|(subject, family)| {
            let mut postcodes: Vec<String> =
                record_postcode.map(str::to_string).into_iter().collect();
            if let Some(f) = family {
                for p in index.family_postcodes(f) {
                    if !postcodes.contains(&p) {
                        postcodes.push(p);
                    }
                }
            }
            Finding {
                rule,
                subject,
                family,
                school_urn: None,
                severity,
                facts: vec![fact.clone()],
                case_locality: family
                    .and_then(|f| index.open_case.get(&f))
                    .and_then(|(_, l)| l.map(str::to_string)),
                postcodes,
                explanation: lines.clone(),
            }
        })
        .collect()
}

/// `family:ID`.
pub(crate) fn family_subject(f: i64) -> String {
    format!("family:{f}")
}

pub(crate) fn seen<T: std::hash::Hash + Eq>(set: &mut HashSet<T>, v: T) -> bool {
    !set.insert(v)
}
