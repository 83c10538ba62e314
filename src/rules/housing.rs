//! `eviction_risk`: an eviction or possession notice served on a household with
//! children goes to the locality champion (docs/domain.md 5 and 9.10).
//!
//! Children live there when the notice counts any (`children_in_household`), or a
//! child mention has the notice's address. A notice is news while it was served
//! within `lookback_days` or its possession date is still ahead.
//!
//! Severity rises by stage (notice < claim < order < warrant): a notice → info, a
//! claim or order → priority, a warrant → urgent, and a possession (bailiff) date
//! within `bailiff_within_days` → urgent.

use chrono::NaiveDate;

use super::{per_family, recent, Fact, Finding, Index, RecordFinding, RecordRef, RuleInput};
use crate::domain::rules::{EvictionRisk, RuleId, Severity};
use crate::domain::{FeedKind, NoticeType};

/// Section 21 "no-fault" notices cannot be served in England from this date
/// (Renters' Rights Act 2025, docs/domain.md 5).
const SECTION_21_ABOLISHED: (i32, u32, u32) = (2026, 5, 1);

/// Within `days` after `as_of`, counting `as_of` itself.
fn ahead(date: NaiveDate, as_of: NaiveDate, days: u32) -> bool {
    date >= as_of && (date - as_of).num_days() <= i64::from(days)
}

/// The notice's fact key.
pub(crate) fn fact_key(n: &super::NoticeRow) -> String {
    format!("housing:{}/{}", n.source, n.notice_id)
}

pub(crate) fn record(n: &super::NoticeRow) -> RecordRef {
    RecordRef {
        kind: FeedKind::Housing,
        id: n.notice_id.clone(),
    }
}

pub(crate) fn eviction_risk(
    input: &RuleInput,
    index: &Index<'_>,
    c: &EvictionRisk,
) -> Vec<Finding> {
    let as_of = input.as_of;
    let mut out = Vec::new();
    for n in &input.notices {
        if n.served_on > as_of {
            continue;
        }
        let pending = n.possession_date.is_some_and(|d| d >= as_of);
        if !(recent(n.served_on, as_of, c.common.lookback_days) || pending) {
            continue;
        }
        let counted = n.children_in_household.unwrap_or(0) > 0;
        let known = index.children_live_at(&n.address_keys);
        if !(counted || known) {
            continue;
        }
        let mut severity = match n.notice_type {
            NoticeType::PossessionClaim | NoticeType::PossessionOrder => Severity::Priority,
            NoticeType::Warrant => Severity::Urgent,
            _ => Severity::Info,
        };
        let mut lines = vec![format!(
            "Housing notice {}: {} served {}{}{}; children in the household: {}.",
            n.notice_id,
            n.notice_type.as_str().replace('_', " "),
            n.served_on,
            n.possession_date
                .map(|d| format!(", possession date {d}"))
                .unwrap_or_default(),
            n.tenure
                .map(|t| format!(", {} tenancy", t.as_str().replace('_', " ")))
                .unwrap_or_default(),
            match (n.children_in_household, known) {
                (Some(k), _) if k > 0 => format!("{k} (as the notice says)"),
                _ => "known to other agencies at this address".to_string(),
            }
        )];
        if n.notice_type == NoticeType::Warrant {
            lines.push("Urgent: a warrant of possession (bailiff stage).".into());
        }
        if let Some(d) = n
            .possession_date
            .filter(|&d| ahead(d, as_of, c.bailiff_within_days))
        {
            severity = Severity::Urgent;
            lines.push(format!(
                "Urgent: the possession date {d} is within {} days.",
                c.bailiff_within_days
            ));
        } else if n.possession_date.is_some_and(|d| ahead(d, as_of, 56)) {
            lines.push(
                "The possession date is within 56 days: the homelessness prevention duty applies (HA 1996 s175(4)); refer to housing options.".into(),
            );
        }
        let (y, m, d) = SECTION_21_ABOLISHED;
        if n.notice_type == NoticeType::Section21
            && NaiveDate::from_ymd_opt(y, m, d).is_some_and(|cut| n.served_on >= cut)
        {
            lines.push(
                "Note: a section 21 notice served on or after 1 May 2026 is not valid in England (Renters' Rights Act 2025); the landlord is still trying to evict, so the family is still at risk.".into(),
            );
        }
        let tenant_family = index.family_of(n.mention);
        let families: Vec<i64> = match tenant_family {
            Some(f) => vec![f],
            None => index.child_families_at(&n.address_keys),
        };
        let fact = Fact {
            key: fact_key(n),
            episode: String::new(),
            record: record(n),
            person: index.person_of(n.mention),
            date: n.served_on,
        };
        out.extend(per_family(
            index,
            &families,
            RecordFinding {
                rule: RuleId::EvictionRisk,
                subject: format!("notice:{}/{}", n.source, n.notice_id),
                postcode: Some(&n.postcode),
                severity,
                fact,
                lines,
            },
        ));
    }
    out
}
