//! The alert lifecycle (raise, unchanged, escalate, clear, resolve, never twice)
//! and routing, including a property test: no delivery ever goes to a recipient
//! outside the alert's locality or school.

use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::domain::FeedKind;
use crate::rules::{Fact, Finding, RecordRef};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn fact(key: &str, episode: &str) -> Fact {
    Fact {
        key: key.into(),
        episode: episode.into(),
        record: RecordRef {
            kind: FeedKind::PoliceDa,
            id: key.rsplit('/').next().unwrap_or(key).into(),
        },
        person: Some(1),
        date: d("2026-11-01"),
    }
}

fn finding(rule: RuleId, subject: &str, facts: Vec<Fact>) -> Finding {
    Finding {
        rule,
        subject: subject.into(),
        family: subject.strip_prefix("family:").and_then(|f| f.parse().ok()),
        school_urn: None,
        severity: Severity::Info,
        facts,
        case_locality: None,
        postcodes: vec!["M7 1AA".into()],
        explanation: vec!["why".into()],
    }
}

fn directory() -> Directory {
    Directory {
        localities: vec![
            LocalityEntry {
                name: "North".into(),
                postcodes: vec!["M7".into(), "M6 5".into()],
                dv_champions: vec!["dv.north@x.gov.uk".into()],
                champions: vec!["eh.north@x.gov.uk".into()],
                managers: vec![],
            },
            LocalityEntry {
                name: "South".into(),
                postcodes: vec!["M6".into()],
                dv_champions: vec!["dv.south@x.gov.uk".into()],
                champions: vec![],
                managers: vec!["mgr.south@x.gov.uk".into()],
            },
        ],
        schools: vec![SchoolEntry {
            urn: 100001,
            locality: "North".into(),
            ewos: vec!["ewo@x.gov.uk".into()],
        }],
        admin: vec!["admin@x.gov.uk".into()],
    }
}

/// Applies a plan to an in-memory alert table, as the store does.
fn apply(existing: &mut Vec<ExistingAlert>, plan: &Plan) {
    let first = existing.iter().map(|a| a.id).max().unwrap_or(0) + 1;
    for (next, r) in (first..).zip(&plan.raise) {
        existing.push(ExistingAlert {
            id: next,
            rule: r.finding.rule,
            subject: r.finding.subject.clone(),
            status: "new".into(),
            severity: r.finding.severity,
            revision: 1,
            facts: r
                .finding
                .facts
                .iter()
                .map(|f| (f.key.clone(), f.episode.clone()))
                .collect(),
            cleared_since: None,
        });
    }
    for e in &plan.escalate {
        let a = existing.iter_mut().find(|a| a.id == e.alert_id).unwrap();
        a.revision += 1;
        a.severity = e.severity;
        a.status = "new".into();
        a.cleared_since = None;
        a.facts.extend(
            e.new_facts
                .iter()
                .map(|f| (f.key.clone(), f.episode.clone())),
        );
    }
    for (id, since) in &plan.clear {
        existing
            .iter_mut()
            .find(|a| a.id == *id)
            .unwrap()
            .cleared_since = Some(*since);
    }
    for id in &plan.unclear {
        existing
            .iter_mut()
            .find(|a| a.id == *id)
            .unwrap()
            .cleared_since = None;
    }
    for id in &plan.resolve {
        existing.iter_mut().find(|a| a.id == *id).unwrap().status = "resolved".into();
    }
}

#[test]
fn the_same_facts_never_alert_twice_and_new_facts_escalate() {
    let dir = directory();
    let c = RulesConfig::default();
    let mut table = Vec::new();
    let f1 = finding(
        RuleId::DaNotification,
        "family:5",
        vec![fact("police_da:p/N1", "")],
    );

    let p = plan(std::slice::from_ref(&f1), &table, &dir, &c, d("2026-11-02"));
    assert_eq!(p.raise.len(), 1);
    assert_eq!(
        p.raise[0].routing.recipients,
        vec![(
            "dv.north@x.gov.uk".to_string(),
            Role::DvChampion,
            "dv_champion of North (by the household postcode)".to_string()
        )]
    );
    apply(&mut table, &p);

    // Again: nothing.
    let p = plan(std::slice::from_ref(&f1), &table, &dir, &c, d("2026-11-02"));
    assert_eq!(p.counts().raised + p.counts().escalated, 0);
    assert_eq!(p.unchanged, 1);

    // A second notification for the family escalates the open alert.
    let mut f2 = finding(
        RuleId::DaNotification,
        "family:5",
        vec![fact("police_da:p/N1", ""), fact("police_da:p/N2", "")],
    );
    f2.severity = Severity::Urgent;
    let p = plan(std::slice::from_ref(&f2), &table, &dir, &c, d("2026-11-03"));
    assert!(p.raise.is_empty());
    assert_eq!(p.escalate.len(), 1);
    assert_eq!(p.escalate[0].new_facts.len(), 1);
    assert_eq!(p.escalate[0].new_facts[0].key, "police_da:p/N2");
    assert_eq!(p.escalate[0].severity, Severity::Urgent);
    apply(&mut table, &p);
    assert_eq!(table[0].revision, 2);

    // The facts age out: cleared, then resolved after 28 days.
    let p = plan(&[], &table, &dir, &c, d("2026-11-20"));
    assert_eq!(p.clear, vec![(1, d("2026-11-20"))]);
    assert!(p.resolve.is_empty());
    apply(&mut table, &p);
    let p = plan(&[], &table, &dir, &c, d("2026-12-17"));
    assert!(p.resolve.is_empty(), "27 days");
    let p = plan(&[], &table, &dir, &c, d("2026-12-18"));
    assert_eq!(p.resolve, vec![1]);
    apply(&mut table, &p);

    // The same facts after resolution: never a second alert.
    let p = plan(&[f2], &table, &dir, &c, d("2026-12-19"));
    assert!(p.raise.is_empty());
    assert_eq!(p.already_alerted, 1);

    // A new notification after resolution: a new alert.
    let f3 = finding(
        RuleId::DaNotification,
        "family:5",
        vec![fact("police_da:p/N3", "")],
    );
    let p = plan(&[f3], &table, &dir, &c, d("2026-12-19"));
    assert_eq!(p.raise.len(), 1);
}

#[test]
fn a_finding_that_comes_back_before_resolution_uncleared() {
    let dir = directory();
    let c = RulesConfig::default();
    let mut table = Vec::new();
    let f = finding(
        RuleId::EmergingRisk,
        "family:5",
        vec![fact("housing:h/H1", "")],
    );
    {
        let p = plan(std::slice::from_ref(&f), &table, &dir, &c, d("2026-11-01"));
        apply(&mut table, &p);
    }
    {
        let p = plan(&[], &table, &dir, &c, d("2026-11-02"));
        apply(&mut table, &p);
    }
    assert_eq!(table[0].cleared_since, Some(d("2026-11-02")));
    let p = plan(&[f], &table, &dir, &c, d("2026-11-03"));
    assert_eq!(p.unclear, vec![1]);
    assert!(p.raise.is_empty() && p.escalate.is_empty());
}

#[test]
fn an_episode_of_a_condition_is_new_after_the_last_one_resolved() {
    let dir = directory();
    let c = RulesConfig::default();
    let mut table = Vec::new();
    let mut f = finding(
        RuleId::AttendanceDrop,
        "pupil:s/K1@100001",
        vec![fact("attendance:s/K1@100001", "2026-09-01")],
    );
    f.school_urn = Some(100001);
    {
        let p = plan(std::slice::from_ref(&f), &table, &dir, &c, d("2026-10-01"));
        apply(&mut table, &p);
    }
    // The window moves on while the alert is open: not news.
    let mut later = f.clone();
    later.facts[0].episode = "2026-09-08".into();
    assert_eq!(
        plan(&[later], &table, &dir, &c, d("2026-10-08")).unchanged,
        1
    );
    table[0].status = "resolved".into();
    let mut again = f.clone();
    again.facts[0].episode = "2027-01-04".into();
    assert_eq!(
        plan(&[again], &table, &dir, &c, d("2027-02-01"))
            .raise
            .len(),
        1
    );
    assert_eq!(
        plan(&[f], &table, &dir, &c, d("2027-02-01")).already_alerted,
        1
    );
}

#[test]
fn routing_prefers_the_open_case_locality_then_the_most_specific_postcode() {
    let dir = directory();
    let mut f = finding(
        RuleId::DaNotification,
        "family:5",
        vec![fact("police_da:p/N1", "")],
    );
    f.postcodes = vec!["M6 5AB".into()];
    assert_eq!(
        dir.route(&f).locality.as_deref(),
        Some("North"),
        "sector beats district"
    );
    f.postcodes = vec!["M6 4AB".into()];
    assert_eq!(dir.route(&f).locality.as_deref(), Some("South"));
    f.postcodes = vec!["M70 1AA".into()];
    let r = dir.route(&f);
    assert!(r.unrouted.is_some(), "M7 must not match M70");
    assert_eq!(r.recipients[0].1, Role::Admin);
    f.case_locality = Some("south".into());
    assert_eq!(dir.route(&f).locality.as_deref(), Some("South"));
}

#[test]
fn routing_with_nobody_in_the_role_goes_to_admin_with_the_reason() {
    let dir = directory();
    let f = finding(
        RuleId::EmergingRisk,
        "family:5",
        vec![fact("housing:h/H1", "")],
    );
    let r = dir.route(&f);
    assert_eq!(r.locality.as_deref(), Some("North"));
    assert_eq!(
        r.unrouted.as_deref(),
        Some("locality North has no managers")
    );
    assert_eq!(
        r.recipients
            .iter()
            .map(|x| x.0.as_str())
            .collect::<Vec<_>>(),
        vec!["admin@x.gov.uk"]
    );
}

#[test]
fn pupils_route_to_their_schools_ewos_only() {
    let dir = directory();
    let mut f = finding(RuleId::AttendanceDrop, "pupil:s/K1@100001", vec![]);
    f.school_urn = Some(100001);
    // A family postcode in South must not matter for a pupil.
    f.postcodes = vec!["M6 4AB".into()];
    let r = dir.route(&f);
    assert_eq!(r.locality.as_deref(), Some("North"));
    assert_eq!(r.recipients.len(), 1);
    assert_eq!(r.recipients[0].0, "ewo@x.gov.uk");
    f.school_urn = Some(100009);
    assert!(dir.route(&f).unrouted.unwrap().contains("100009"));
}

#[test]
fn fingerprints_depend_on_rule_subject_and_facts_not_their_order() {
    let a = fact("police_da:p/N1", "");
    let b = fact("police_da:p/N2", "");
    let f1 = fingerprint(RuleId::DaNotification, "family:1", &[a.clone(), b.clone()]);
    assert_eq!(
        f1,
        fingerprint(RuleId::DaNotification, "family:1", &[b.clone(), a.clone()])
    );
    assert_ne!(
        f1,
        fingerprint(RuleId::DaNotification, "family:2", &[a.clone(), b.clone()])
    );
    assert_ne!(
        f1,
        fingerprint(RuleId::EmergingRisk, "family:1", &[a.clone(), b])
    );
    assert_ne!(f1, fingerprint(RuleId::DaNotification, "family:1", &[a]));
}

// --- property: no delivery outside the alert's locality or school ----------

/// A random directory: `n` localities with distinct districts `Mk` and, for
/// some, a sector of another's district; every recipient address names its
/// locality and role so ownership is checkable.
fn arb_directory() -> impl Strategy<Value = Directory> {
    (
        2usize..6,
        proptest::collection::vec(any::<bool>(), 24),
        1usize..5,
    )
        .prop_map(|(n, flags, schools)| {
            let mut flag = flags.into_iter().cycle();
            let mut localities = Vec::new();
            for i in 0..n {
                let mut postcodes = vec![format!("M{}", i + 1)];
                if flag.next().unwrap_or(false) {
                    // A sector of the next locality's district.
                    postcodes.push(format!("M{} 5", (i + 1) % n + 1));
                }
                let mut list = |role: &str| -> Vec<String> {
                    if flag.next().unwrap_or(true) {
                        vec![format!("{role}.{i}@x.gov.uk")]
                    } else {
                        Vec::new()
                    }
                };
                localities.push(LocalityEntry {
                    name: format!("L{i}"),
                    postcodes,
                    dv_champions: list("dv_champion"),
                    champions: list("champion"),
                    managers: list("manager"),
                });
            }
            let schools = (0..schools)
                .map(|s| SchoolEntry {
                    urn: 100000 + s as u32,
                    locality: format!("L{}", s % n),
                    ewos: vec![format!("ewo.s{s}@x.gov.uk")],
                })
                .collect();
            Directory {
                localities,
                schools,
                admin: vec!["admin@x.gov.uk".into()],
            }
        })
}

fn arb_finding() -> impl Strategy<Value = Finding> {
    (
        0usize..5,
        proptest::option::of(0u32..7),
        proptest::collection::vec((1u32..8, 0u32..10), 0..3),
        proptest::option::of(0usize..8),
        1i64..50,
    )
        .prop_map(|(rule, school, postcodes, case, family)| {
            let rule = RuleId::ALL[rule];
            let mut f = finding(rule, &format!("family:{family}"), vec![fact("k", "")]);
            f.school_urn = school.map(|s| 100000 + s);
            f.postcodes = postcodes
                .into_iter()
                .map(|(district, sector)| format!("M{district} {sector}AB"))
                .collect();
            f.case_locality = case.map(|c| format!("L{c}"));
            f
        })
}

proptest! {
    #[test]
    fn no_delivery_goes_outside_the_alerts_locality_or_school(
        dir in arb_directory(),
        findings in proptest::collection::vec(arb_finding(), 1..20),
    ) {
        let p = plan(&findings, &[], &dir, &RulesConfig::default(), d("2026-11-20"));
        for r in &p.raise {
            let f = &r.finding;
            for (email, role, _) in &r.routing.recipients {
                if *role == Role::Admin {
                    prop_assert!(r.routing.unrouted.is_some(), "admin only when unrouted");
                    prop_assert!(dir.admin.contains(email));
                    continue;
                }
                prop_assert!(r.routing.unrouted.is_none());
                prop_assert_eq!(*role, f.rule.role());
                if f.rule == RuleId::AttendanceDrop {
                    let school = dir.schools.iter().find(|s| Some(s.urn) == f.school_urn);
                    prop_assert!(school.is_some_and(|s| s.ewos.contains(email)),
                        "{email} is not an EWO of the pupil's school");
                    prop_assert_eq!(r.routing.locality.as_deref(), school.map(|s| s.locality.as_str()));
                } else {
                    // The address names its owner: role.INDEX@…
                    let owner = email.split('@').next().unwrap().rsplit('.').next().unwrap();
                    let loc = r.routing.locality.clone().unwrap();
                    prop_assert_eq!(format!("L{owner}"), loc.clone(), "{} is not of {}", email, loc);
                    // And the locality is the one the rules of routing pick.
                    let expected = f
                        .case_locality
                        .as_ref()
                        .filter(|c| dir.localities.iter().any(|l| &l.name == *c))
                        .cloned()
                        .or_else(|| f.postcodes.iter().find_map(|p| dir.locality_of_postcode(p)).map(|l| l.name.clone()));
                    prop_assert_eq!(Some(loc), expected);
                }
            }
        }
    }
}
