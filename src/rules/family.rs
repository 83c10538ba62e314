//! The family rules, built on *signals*: dated facts about a family's members of
//! four kinds (docs/design.md), each labelled with its Supporting Families headline
//! (docs/domain.md 9.12):
//! - `attendance` (headline 1): a pupil persistently absent over the recent
//!   window, or marked `C2`/`E`; dated the window's last school day;
//! - `police_da` (headline 8): a notification naming a member; the incident date;
//! - `housing` (headline 9): a notice served on a member; the date served;
//! - `referral` (headline 6): a referral in the case system; the referral date.
//!
//! A case closing is not a signal. `emerging_risk`: at least `min_signal_kinds`
//! kinds within `window_days` for a family with no open case. `closed_too_early`:
//! a case closed (not for `step_up` or `moved_away`) and a signal or referral
//! dated within `within_days` after the closure.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::NaiveDate;

use super::{attendance, family_subject, housing, police, recent, seen, Fact, Finding, Index};
use super::{RecordRef, RuleInput};
use crate::domain::rules::{RuleId, RulesConfig, Severity};
use crate::domain::{ClosureReason, FeedKind};

/// (source, case id).
type CaseKey = (String, String);
/// When a case closed, and why.
type Closure = (NaiveDate, Option<ClosureReason>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Attendance,
    PoliceDa,
    Housing,
    Referral,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Attendance => "attendance (Supporting Families headline 1, a good education)",
            Kind::PoliceDa => "police domestic abuse (headline 8, safe from domestic abuse)",
            Kind::Housing => "housing (headline 9, secure housing)",
            Kind::Referral => "referral (headline 6, children safe from abuse and exploitation)",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Signal {
    kind: Kind,
    fact: Fact,
    /// For attendance: the window's first school day (the low attendance was
    /// measured from then on). For a referral: the case.
    from: NaiveDate,
    case: Option<(String, String)>,
}

/// Every family's signals, by family.
pub(crate) type Signals = BTreeMap<i64, Vec<Signal>>;

/// Every family's signals, by family: built once per run for both family rules.
pub(crate) fn signals(
    input: &RuleInput,
    index: &Index<'_>,
    config: &RulesConfig,
) -> BTreeMap<i64, Vec<Signal>> {
    let mut out: BTreeMap<i64, Vec<Signal>> = BTreeMap::new();
    let mut once: HashSet<(i64, String)> = HashSet::new();
    let mut push = |family: i64, s: Signal, out: &mut BTreeMap<i64, Vec<Signal>>| {
        if !seen(&mut once, (family, s.fact.key.clone())) {
            out.entry(family).or_default().push(s);
        }
    };
    for p in &input.pupils {
        if !attendance::is_signal(p, &config.attendance_drop) {
            continue;
        }
        let Some(m) = index.mentions.get(&p.mention) else {
            continue;
        };
        let Some(f) = m.family else { continue };
        let fact = attendance::fact(m, p);
        push(
            f,
            Signal {
                kind: Kind::Attendance,
                fact,
                from: p.window_from,
                case: None,
            },
            &mut out,
        );
    }
    for n in police::notifications(input) {
        for r in &n.rows {
            let Some(f) = index.family_of(r.mention) else {
                continue;
            };
            let fact = Fact {
                key: n.fact_key(),
                episode: String::new(),
                record: n.record(),
                person: index.person_of(r.mention),
                date: n.incident_on,
            };
            push(
                f,
                Signal {
                    kind: Kind::PoliceDa,
                    fact,
                    from: n.incident_on,
                    case: None,
                },
                &mut out,
            );
        }
    }
    for n in &input.notices {
        let families = match index.family_of(n.mention) {
            Some(f) => vec![f],
            None => index.child_families_at(&n.address_keys),
        };
        for f in families {
            let fact = Fact {
                key: housing::fact_key(n),
                episode: String::new(),
                record: housing::record(n),
                person: index.person_of(n.mention),
                date: n.served_on,
            };
            push(
                f,
                Signal {
                    kind: Kind::Housing,
                    fact,
                    from: n.served_on,
                    case: None,
                },
                &mut out,
            );
        }
    }
    for c in &input.cases {
        let Some(f) = index.family_of(c.mention) else {
            continue;
        };
        let fact = Fact {
            key: format!("assessment:{}/{}:referral", c.source, c.case_id),
            episode: String::new(),
            record: RecordRef {
                kind: FeedKind::Assessment,
                id: c.case_id.clone(),
            },
            person: index.person_of(c.mention),
            date: c.referral_date,
        };
        push(
            f,
            Signal {
                kind: Kind::Referral,
                fact,
                from: c.referral_date,
                case: Some((c.source.clone(), c.case_id.clone())),
            },
            &mut out,
        );
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| (a.fact.date, &a.fact.key).cmp(&(b.fact.date, &b.fact.key)));
    }
    out
}

/// A signal in plain words for an explanation: the agency's reference for a
/// police, housing or case record; for attendance only the school, because a
/// pupil's mention key without a UPN is built from their name and date of birth.
fn describe(f: &Fact) -> String {
    match f.record.kind {
        FeedKind::Attendance => {
            let school = f.key.rsplit('@').next().unwrap_or("?");
            let school = school.split(':').next().unwrap_or(school);
            format!("attendance at school {school} (to {})", f.date)
        }
        kind => format!("{kind} {} ({})", f.record.id, f.date),
    }
}

fn case_locality(index: &Index<'_>, family: i64) -> Option<String> {
    index
        .open_case
        .get(&family)
        .and_then(|(_, l)| l.map(str::to_string))
}

pub(crate) fn emerging_risk(
    input: &RuleInput,
    index: &Index<'_>,
    config: &RulesConfig,
    signals: &Signals,
) -> Vec<Finding> {
    let c = &config.emerging_risk;
    let days = c.window_days.min(c.common.lookback_days);
    let mut out = Vec::new();
    for (&family, list) in signals {
        if index.open_case.contains_key(&family) {
            // Someone is already working with the family.
            continue;
        }
        let inside: Vec<&Signal> = list
            .iter()
            .filter(|s| recent(s.fact.date, input.as_of, days))
            .collect();
        let kinds: BTreeSet<Kind> = inside.iter().map(|s| s.kind).collect();
        if (kinds.len() as u32) < c.min_signal_kinds {
            continue;
        }
        let mut severity = Severity::Priority;
        let mut lines = vec![format!(
            "{} different kinds of signal within {} days, and no open early-help or social-care case:",
            kinds.len(),
            days
        )];
        for k in &kinds {
            let of_kind: Vec<String> = inside
                .iter()
                .filter(|s| s.kind == *k)
                .map(|s| describe(&s.fact))
                .collect();
            lines.push(format!("- {}: {}", k.label(), of_kind.join(", ")));
        }
        if kinds.len() >= 3 {
            severity = Severity::Urgent;
            lines.push(
                "Urgent: three or more kinds at once (the Supporting Families threshold is 3 of the 10 headline needs).".into(),
            );
        }
        out.push(Finding {
            rule: RuleId::EmergingRisk,
            subject: family_subject(family),
            family: Some(family),
            school_urn: None,
            severity,
            facts: inside.iter().map(|s| s.fact.clone()).collect(),
            case_locality: None,
            postcodes: index.family_postcodes(family),
            explanation: lines,
        });
    }
    out
}

pub(crate) fn closed_too_early(
    input: &RuleInput,
    index: &Index<'_>,
    config: &RulesConfig,
    all: &Signals,
) -> Vec<Finding> {
    let c = &config.closed_too_early;
    let as_of = input.as_of;
    // Closures per family: (source, case) → (closed on, reason), the latest.
    let mut closures: BTreeMap<i64, BTreeMap<CaseKey, Closure>> = BTreeMap::new();
    for row in &input.cases {
        let Some(closed) = row.closed_on.filter(|&d| d <= as_of) else {
            continue;
        };
        let Some(f) = index.family_of(row.mention) else {
            continue;
        };
        let e = closures
            .entry(f)
            .or_default()
            .entry((row.source.clone(), row.case_id.clone()))
            .or_insert((closed, row.closure_reason));
        if closed > e.0 {
            *e = (closed, row.closure_reason);
        }
    }
    let mut out = Vec::new();
    for (family, cases) in closures {
        let Some(list) = all.get(&family) else {
            continue;
        };
        let mut facts = Vec::new();
        let mut lines = Vec::new();
        let mut severity = Severity::Priority;
        for ((source, case_id), (closed, reason)) in cases {
            if matches!(
                reason,
                Some(ClosureReason::StepUp | ClosureReason::MovedAway)
            ) {
                continue;
            }
            let after: Vec<&Signal> = list
                .iter()
                .filter(|s| {
                    let d = s.fact.date;
                    d > closed
                        && (d - closed).num_days() <= i64::from(c.within_days)
                        && recent(d, as_of, c.common.lookback_days)
                        // Low attendance counts only when measured wholly after
                        // the closure; a referral only for another case or a
                        // new referral of this one.
                        && (s.kind != Kind::Attendance || s.from > closed)
                        && s.case.as_ref() != Some(&(source.clone(), case_id.clone()))
                })
                .collect();
            if after.is_empty() {
                continue;
            }
            let first = after.iter().map(|s| s.fact.date).min().unwrap_or(closed);
            let gap = (first - closed).num_days();
            lines.push(format!(
                "Case {case_id} closed {closed} ({}); {} new signal{} since: {}.",
                reason.map_or("no reason given", |r| r.as_str()),
                after.len(),
                if after.len() == 1 { "" } else { "s" },
                after
                    .iter()
                    .map(|s| describe(&s.fact))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if gap <= i64::from(c.urgent_within_days) {
                severity = Severity::Urgent;
                lines.push(format!(
                    "Urgent: the first came {gap} days after the closure (within {} days).",
                    c.urgent_within_days
                ));
            }
            facts.push(Fact {
                key: format!("assessment:{source}/{case_id}:closed"),
                episode: closed.to_string(),
                record: RecordRef {
                    kind: FeedKind::Assessment,
                    id: case_id.clone(),
                },
                person: None,
                date: closed,
            });
            facts.extend(after.iter().map(|s| s.fact.clone()));
        }
        if facts.is_empty() {
            continue;
        }
        lines.push(format!(
            "A re-referral within {} days of a closure (as the Children in Need census counts it); closures for step-up or a move away are not counted.",
            c.within_days
        ));
        out.push(Finding {
            rule: RuleId::ClosedTooEarly,
            subject: family_subject(family),
            family: Some(family),
            school_urn: None,
            severity,
            facts,
            case_locality: case_locality(index, family),
            postcodes: index.family_postcodes(family),
            explanation: lines,
        });
    }
    out
}
