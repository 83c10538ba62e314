//! Alerts: findings → what must change in the alert table, and who is to be told
//! (docs/design.md "Routing and privacy").
//!
//! - **Identity.** An open alert is the one per rule and subject. A finding whose
//!   facts it already holds changes nothing; a new fact escalates it (a new
//!   revision, sent as an update). With no open alert, a finding raises one unless
//!   every fact of it was already alerted (the same facts never alert twice); its
//!   fingerprint is rule + subject + facts.
//! - **Lifecycle.** new → sent → acknowledged → resolved. An open alert whose
//!   finding is gone is *cleared* from that date, and resolved once it has stayed
//!   cleared for the rule's `resolve_after_days`.
//! - **Routing.** A pupil's alert goes to the school's EWOs (the school's
//!   locality). A family's goes to the role its rule names in the locality of the
//!   family's open case (the case system's locality name), else of the first
//!   postcode that the most specific configured district or sector matches; with
//!   neither, or nobody in that role, it is unrouted and goes to the admin list
//!   with the reason. Never dropped.
//!
//! Pure: no IO.
//!
//! Invariant: a delivery goes to a recipient of the alert's own locality or
//! school in the role of its rule, or to the admin list when unrouted — never
//! anywhere else.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::domain::rules::{Role, RuleId, RulesConfig, Severity};
use crate::domain::{Postcode, PostcodePrefix};
use crate::rules::{Fact, Finding};

/// One locality of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityEntry {
    pub name: String,
    /// Districts (`M7`) or sectors (`M6 5`), upper case, one space.
    pub postcodes: Vec<String>,
    pub dv_champions: Vec<String>,
    pub champions: Vec<String>,
    pub managers: Vec<String>,
}

/// One school of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchoolEntry {
    pub urn: u32,
    pub locality: String,
    pub ewos: Vec<String>,
}

/// Who may be told what: the localities, schools and admin list of the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub localities: Vec<LocalityEntry>,
    pub schools: Vec<SchoolEntry>,
    pub admin: Vec<String>,
}

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub locality: Option<String>,
    /// Set when the alert could not be routed: why.
    pub unrouted: Option<String>,
    /// (recipient, role, why this recipient).
    pub recipients: Vec<(String, Role, String)>,
}

impl Directory {
    fn locality(&self, name: &str) -> Option<&LocalityEntry> {
        self.localities
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name.trim()))
    }

    /// The locality of a postcode: the longest configured prefix that matches it
    /// whole (`M7` matches `M7 1AA`, not `M70 1AA`; `M6 5` matches `M6 5AB`).
    pub fn locality_of_postcode(&self, postcode: &str) -> Option<&LocalityEntry> {
        let pc = Postcode::parse(postcode)?;
        let prefixes: Vec<(PostcodePrefix, &LocalityEntry)> = self
            .localities
            .iter()
            .flat_map(|l| {
                l.postcodes
                    .iter()
                    .filter_map(move |p| Some((PostcodePrefix::parse(p)?, l)))
            })
            .collect();
        PostcodePrefix::most_specific(&pc, prefixes.iter().map(|(p, l)| (p, *l)))
    }

    /// Routes one finding.
    pub fn route(&self, f: &Finding) -> Routing {
        let role = f.rule.role();
        if f.rule == RuleId::AttendanceDrop {
            let Some(urn) = f.school_urn else {
                return self.unrouted(None, "the pupil's school is not known".into());
            };
            let Some(school) = self.schools.iter().find(|s| s.urn == urn) else {
                return self.unrouted(None, format!("school {urn:06} is not in the config"));
            };
            if school.ewos.is_empty() {
                return self.unrouted(
                    Some(school.locality.clone()),
                    format!("school {urn:06} has no EWO"),
                );
            }
            return Routing {
                locality: Some(school.locality.clone()),
                unrouted: None,
                recipients: school
                    .ewos
                    .iter()
                    .map(|e| (e.clone(), Role::Ewo, format!("EWO of school {urn:06}")))
                    .collect(),
            };
        }
        let by_case = f
            .case_locality
            .as_deref()
            .and_then(|name| self.locality(name).map(|l| (l, "the open case's locality")));
        let by_postcode = || {
            f.postcodes
                .iter()
                .find_map(|p| self.locality_of_postcode(p))
                .map(|l| (l, "the household postcode"))
        };
        let Some((loc, how)) = by_case.or_else(by_postcode) else {
            let why = match (&f.case_locality, f.postcodes.is_empty()) {
                (Some(name), _) if !f.postcodes.is_empty() => format!(
                    "the case locality {name:?} is not configured and no postcode of the family matches a locality"
                ),
                (Some(name), _) => format!("the case locality {name:?} is not configured and no postcode is known"),
                (None, true) => "no open case and no postcode known".to_string(),
                (None, false) => "no postcode of the family matches a configured locality".to_string(),
            };
            return self.unrouted(None, why);
        };
        let list = match role {
            Role::DvChampion => &loc.dv_champions,
            Role::Champion => &loc.champions,
            _ => &loc.managers,
        };
        if list.is_empty() {
            return self.unrouted(
                Some(loc.name.clone()),
                format!("locality {} has no {}", loc.name, role.config_key()),
            );
        }
        Routing {
            locality: Some(loc.name.clone()),
            unrouted: None,
            recipients: list
                .iter()
                .map(|e| {
                    (
                        e.clone(),
                        role,
                        format!("{} of {} (by {how})", role.as_str(), loc.name),
                    )
                })
                .collect(),
        }
    }

    fn unrouted(&self, locality: Option<String>, why: String) -> Routing {
        Routing {
            locality,
            recipients: self
                .admin
                .iter()
                .map(|e| (e.clone(), Role::Admin, format!("admin: unrouted ({why})")))
                .collect(),
            unrouted: Some(why),
        }
    }
}

/// An alert as the store holds it, with its subject resolved to the live family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingAlert {
    pub id: i64,
    pub rule: RuleId,
    pub subject: String,
    pub status: String,
    pub severity: Severity,
    pub revision: i64,
    /// (fact key, episode).
    pub facts: Vec<(String, String)>,
    pub cleared_since: Option<NaiveDate>,
}

impl ExistingAlert {
    pub fn is_open(&self) -> bool {
        self.status != "resolved"
    }
}

/// A delivery to write with an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub recipient: String,
    pub role: Role,
    pub reason: String,
}

/// A new alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    pub finding: Finding,
    pub fingerprint: String,
    pub routing: Routing,
}

/// New facts on an open alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalate {
    pub alert_id: i64,
    /// The revision the alert is at now; the write checks it is unchanged.
    pub from_revision: i64,
    pub finding: Finding,
    pub new_facts: Vec<Fact>,
    pub severity: Severity,
    pub routing: Routing,
}

/// What one evaluation changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub raise: Vec<Raise>,
    pub escalate: Vec<Escalate>,
    /// Open alerts whose finding is gone: cleared from this date.
    pub clear: Vec<(i64, NaiveDate)>,
    /// Cleared alerts whose finding is back.
    pub unclear: Vec<i64>,
    pub resolve: Vec<i64>,
    /// Findings whose facts were all alerted before (and the alert resolved).
    pub already_alerted: usize,
    /// Findings an open alert already holds.
    pub unchanged: usize,
}

/// The fingerprint of a finding: rule, subject and its facts (with episodes).
pub fn fingerprint(rule: RuleId, subject: &str, facts: &[Fact]) -> String {
    let mut keys: Vec<String> = facts
        .iter()
        .map(|f| format!("{}@{}", f.key, f.episode))
        .collect();
    keys.sort();
    let mut h = Sha256::new();
    h.update(rule.as_str().as_bytes());
    h.update([0]);
    h.update(subject.as_bytes());
    for k in keys {
        h.update([0]);
        h.update(k.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Decides what the findings of a run change, given the alerts already stored.
pub fn plan(
    findings: &[Finding],
    existing: &[ExistingAlert],
    directory: &Directory,
    config: &RulesConfig,
    as_of: NaiveDate,
) -> Plan {
    let mut plan = Plan::default();
    // Open alerts per (rule, subject), oldest first; facts ever alerted per
    // (rule, subject).
    let mut open: HashMap<(RuleId, &str), Vec<&ExistingAlert>> = HashMap::new();
    let mut alerted: HashMap<(RuleId, &str), BTreeSet<(&str, &str)>> = HashMap::new();
    for a in existing {
        let k = (a.rule, a.subject.as_str());
        if a.is_open() {
            open.entry(k).or_default().push(a);
        }
        alerted
            .entry(k)
            .or_default()
            .extend(a.facts.iter().map(|(f, e)| (f.as_str(), e.as_str())));
    }
    for list in open.values_mut() {
        list.sort_by_key(|a| a.id);
    }
    let mut present: BTreeSet<i64> = BTreeSet::new();
    for f in findings {
        let k = (f.rule, f.subject.as_str());
        match open.get(&k) {
            Some(alerts) => {
                present.extend(alerts.iter().map(|a| a.id));
                let held: BTreeSet<&str> = alerts
                    .iter()
                    .flat_map(|a| a.facts.iter().map(|(key, _)| key.as_str()))
                    .collect();
                let new_facts: Vec<Fact> = f
                    .facts
                    .iter()
                    .filter(|x| !held.contains(x.key.as_str()))
                    .cloned()
                    .collect();
                let target = alerts[0];
                if new_facts.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.escalate.push(Escalate {
                        alert_id: target.id,
                        from_revision: target.revision,
                        finding: f.clone(),
                        new_facts,
                        severity: target.severity.max(f.severity),
                        routing: directory.route(f),
                    });
                }
                for a in alerts {
                    if a.cleared_since.is_some() {
                        plan.unclear.push(a.id);
                    }
                }
            }
            None => {
                let done = alerted.get(&k);
                let all_old = done.is_some_and(|d| {
                    f.facts
                        .iter()
                        .all(|x| d.contains(&(x.key.as_str(), x.episode.as_str())))
                });
                if all_old {
                    plan.already_alerted += 1;
                    continue;
                }
                plan.raise.push(Raise {
                    fingerprint: fingerprint(f.rule, &f.subject, &f.facts),
                    routing: directory.route(f),
                    finding: f.clone(),
                });
            }
        }
    }
    // Open alerts with no finding: cleared, then resolved after the rule's period.
    for a in existing.iter().filter(|a| a.is_open()) {
        if present.contains(&a.id) {
            continue;
        }
        let since = a.cleared_since.unwrap_or(as_of);
        if a.cleared_since.is_none() {
            plan.clear.push((a.id, as_of));
        }
        let period = i64::from(config.common(a.rule).resolve_after_days);
        if (as_of - since).num_days() >= period {
            plan.resolve.push(a.id);
        }
    }
    plan
}

/// Counts of a plan, for logs and the run row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanCounts {
    pub raised: usize,
    pub escalated: usize,
    pub resolved: usize,
    pub unchanged: usize,
    pub already_alerted: usize,
    pub deliveries: usize,
    pub unrouted: usize,
}

impl Plan {
    pub fn counts(&self) -> PlanCounts {
        let routings = self
            .raise
            .iter()
            .map(|r| &r.routing)
            .chain(self.escalate.iter().map(|e| &e.routing));
        let (mut deliveries, mut unrouted) = (0, 0);
        for r in routings {
            deliveries += r.recipients.len();
            unrouted += usize::from(r.unrouted.is_some());
        }
        PlanCounts {
            raised: self.raise.len(),
            escalated: self.escalate.len(),
            resolved: self.resolve.len(),
            unchanged: self.unchanged,
            already_alerted: self.already_alerted,
            deliveries,
            unrouted,
        }
    }
}

/// Findings per rule and locality (for the demo's summary): locality name or
/// "unrouted".
pub fn by_rule_and_locality(plan: &Plan) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for r in &plan.raise {
        let loc = r
            .routing
            .locality
            .clone()
            .filter(|_| r.routing.unrouted.is_none())
            .unwrap_or_else(|| "unrouted".into());
        *out.entry((r.finding.rule.as_str().to_string(), loc))
            .or_insert(0) += 1;
    }
    out
}
