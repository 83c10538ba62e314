//! `da_notification`: a police domestic-abuse notification that involves a child,
//! or an address where children live, goes to the locality's DV champion
//! (Operation Encompass, docs/domain.md 4.1 and 9.8).
//!
//! Severity: DASH standard (or not given) → info, medium → priority, high →
//! urgent (docs/domain.md 9.8: standard → normal, medium → elevated, high → urgent); a
//! repeat — another notification at the same address or family within
//! `repeat_within_days` before it (MARAC's 12 months, docs/domain.md 4.3) — raises it
//! one level.

use std::collections::{BTreeMap, HashMap};

use super::{per_family, recent, Fact, Finding, Index, RecordFinding, RecordRef, RuleInput};
use crate::domain::rules::{DaNotification, RuleId, Severity};
use crate::domain::{DaRole, DashRisk, FeedKind};

/// One notification: its rows.
pub(crate) struct Notification<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub incident_on: chrono::NaiveDate,
    pub rows: Vec<&'a super::DaRow>,
}

impl Notification<'_> {
    pub fn fact_key(&self) -> String {
        format!("police_da:{}/{}", self.source, self.id)
    }

    pub fn record(&self) -> RecordRef {
        RecordRef {
            kind: FeedKind::PoliceDa,
            id: self.id.to_string(),
        }
    }

    /// Every address key of the incident.
    pub fn keys(&self) -> Vec<String> {
        super::distinct(
            self.rows
                .iter()
                .flat_map(|r| r.address_keys.iter().cloned()),
        )
    }

    pub fn dash(&self) -> Option<DashRisk> {
        self.rows.iter().filter_map(|r| r.dash).max()
    }
}

/// The notifications of the input, by (source, id).
pub(crate) fn notifications(input: &RuleInput) -> Vec<Notification<'_>> {
    let mut by: BTreeMap<(&str, &str), Notification<'_>> = BTreeMap::new();
    for r in &input.notifications {
        let n = by
            .entry((r.source.as_str(), r.notification_id.as_str()))
            .or_insert_with(|| Notification {
                source: &r.source,
                id: &r.notification_id,
                incident_on: r.incident_on,
                rows: Vec::new(),
            });
        n.incident_on = n.incident_on.min(r.incident_on);
        n.rows.push(r);
    }
    by.into_values().collect()
}

pub(crate) fn da_notification(
    input: &RuleInput,
    index: &Index<'_>,
    config: &DaNotification,
) -> Vec<Finding> {
    let all = notifications(input);
    // Address keys and families of every notification, computed once, and the
    // notifications per key and per family, for the repeat check.
    let keys_of: Vec<Vec<String>> = all.iter().map(Notification::keys).collect();
    let families_of: Vec<Vec<i64>> = all
        .iter()
        .map(|n| super::distinct(n.rows.iter().filter_map(|r| index.family_of(r.mention))))
        .collect();
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_family: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, (keys, families)) in keys_of.iter().zip(&families_of).enumerate() {
        for k in keys {
            by_key.entry(k.as_str()).or_default().push(i);
        }
        for f in families {
            by_family.entry(*f).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (i, n) in all.iter().enumerate() {
        if !recent(n.incident_on, input.as_of, config.common.lookback_days) {
            continue;
        }
        let keys = &keys_of[i];
        let children: Vec<&&super::DaRow> =
            n.rows.iter().filter(|r| r.role == DaRole::Child).collect();
        let live_there = index.children_live_at(keys);
        if children.is_empty() && !live_there {
            // Adults only, and no child known at the address: not for Encompass.
            continue;
        }
        // The families to tell: those of the children named, and of the children
        // living at the incident address.
        let mut families: Vec<i64> = children
            .iter()
            .filter_map(|r| index.family_of(r.mention))
            .collect();
        families.extend(index.child_families_at(keys));
        families.sort_unstable();
        families.dedup();

        let dash = n.dash();
        let mut severity = match dash {
            Some(DashRisk::High) => Severity::Urgent,
            Some(DashRisk::Medium) => Severity::Priority,
            _ => Severity::Info,
        };
        let mut lines = vec![format!(
            "Police domestic-abuse notification {} (incident {}): DASH risk {}; {} child{} named in it{}.",
            n.id,
            n.incident_on,
            dash.map_or("not given", |d| d.as_str()),
            children.len(),
            if children.len() == 1 { "" } else { "ren" },
            if live_there {
                ", and children live at the incident address"
            } else {
                ""
            }
        )];
        if dash == Some(DashRisk::High) {
            lines.push(
                "Urgent: DASH high risk (14 or more ticks, or professional judgement).".into(),
            );
        }
        // A repeat: an earlier notification at the same address or in one of the
        // same families within the repeat window (the earliest such, for a
        // stable explanation).
        let related = keys
            .iter()
            .filter_map(|k| by_key.get(k.as_str()))
            .chain(
                families
                    .iter()
                    .chain(&families_of[i])
                    .filter_map(|f| by_family.get(f)),
            )
            .flatten()
            .copied();
        let repeat = related
            .filter(|&j| {
                let o = &all[j];
                // Earlier (or the same day, listed first): two notifications of
                // one day do not make each other repeats.
                (o.incident_on, j) < (n.incident_on, i)
                    && (n.incident_on - o.incident_on).num_days()
                        <= i64::from(config.repeat_within_days)
            })
            .min_by_key(|&j| (all[j].incident_on, j))
            .map(|j| &all[j]);
        if let Some(o) = repeat {
            severity = severity.raised();
            lines.push(format!(
                "Raised to {}: a repeat — notification {} (incident {}) involved the same address or family within {} days.",
                severity.as_str(),
                o.id,
                o.incident_on,
                config.repeat_within_days
            ));
        }
        let persons: Vec<Option<i64>> = n.rows.iter().map(|r| index.person_of(r.mention)).collect();
        let person = children
            .first()
            .and_then(|r| index.person_of(r.mention))
            .or_else(|| persons.iter().flatten().next().copied());
        let fact = Fact {
            key: n.fact_key(),
            episode: String::new(),
            record: n.record(),
            person,
            date: n.incident_on,
        };
        out.extend(per_family(
            index,
            &families,
            RecordFinding {
                rule: RuleId::DaNotification,
                subject: format!("notification:{}/{}", n.source, n.id),
                postcode: n.rows.first().map(|r| r.postcode.as_str()),
                severity,
                fact,
                lines,
            },
        ));
    }
    out
}
