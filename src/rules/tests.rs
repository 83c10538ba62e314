//! One scenario per rule with its negative twin, on hand-built inputs.

use chrono::NaiveDate;

use super::*;
use crate::domain::rules::{RuleId, RulesConfig, Severity};
use crate::link::family::address_keys;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const AS_OF: &str = "2026-11-20";

/// A small world: families are given per mention.
#[derive(Default)]
struct World {
    input: RuleInput,
}

impl World {
    fn new() -> World {
        World {
            input: RuleInput {
                as_of: d(AS_OF),
                ..RuleInput::default()
            },
        }
    }

    fn mention(
        &mut self,
        id: i64,
        kind: FeedKind,
        child: bool,
        family: Option<i64>,
        address: Option<(&str, &str)>,
    ) -> &mut Self {
        let keys = address
            .map(|(l, p)| address_keys(None, Some(l), Some(p)))
            .unwrap_or_default();
        self.input.mentions.push(MentionInfo {
            id,
            kind,
            source: "src".into(),
            mention_key: format!("K{id}"),
            child,
            person: Some(id * 10),
            family,
            address_keys: if child { keys } else { Vec::new() },
            postcode: address.map(|(_, p)| p.to_string()),
        });
        self
    }

    fn da(
        &mut self,
        notification: &str,
        mention: i64,
        role: DaRole,
        on: &str,
        dash: Option<DashRisk>,
        address: (&str, &str),
    ) -> &mut Self {
        self.input.notifications.push(DaRow {
            source: "police".into(),
            notification_id: notification.into(),
            mention,
            role,
            incident_on: d(on),
            dash,
            address_keys: address_keys(None, Some(address.0), Some(address.1)),
            postcode: address.1.into(),
        });
        self
    }

    /// `dates`: served on, and the possession or bailiff date if any.
    fn notice(
        &mut self,
        id: &str,
        mention: i64,
        t: NoticeType,
        (served, possession): (&str, Option<&str>),
        children: Option<i64>,
        address: (&str, &str),
    ) -> &mut Self {
        self.input.notices.push(NoticeRow {
            source: "housing".into(),
            notice_id: id.into(),
            notice_type: t,
            served_on: d(served),
            possession_date: possession.map(d),
            tenure: Some(Tenure::Private),
            children_in_household: children,
            mention,
            address_keys: address_keys(None, Some(address.0), Some(address.1)),
            postcode: address.1.into(),
        });
        self
    }

    fn case(
        &mut self,
        case_id: &str,
        mention: i64,
        referral: &str,
        closed: Option<(&str, ClosureReason)>,
    ) -> &mut Self {
        self.input.cases.push(CaseRow {
            source: "cases".into(),
            case_id: case_id.into(),
            mention,
            role: CaseRole::Child,
            referral_date: d(referral),
            opened_on: Some(d(referral)),
            closed_on: closed.map(|(c, _)| d(c)),
            closure_reason: closed.map(|(_, r)| r),
            locality: Some("North".into()),
        });
        self
    }

    fn pupil(&mut self, mention: i64, window: (u32, u32), baseline: (u32, u32)) -> &mut Self {
        // (attended, unauthorised absent) each.
        self.input.pupils.push(PupilAttendance {
            mention,
            school_urn: 100001,
            window: AttendanceCounts {
                attended: window.0,
                unauthorised: window.1,
                unexplained: window.1,
                ..AttendanceCounts::default()
            },
            baseline: AttendanceCounts {
                attended: baseline.0,
                unauthorised: baseline.1,
                ..AttendanceCounts::default()
            },
            window_from: d("2026-10-19"),
            window_to: d(AS_OF),
            window_days: 20,
            baseline_days: 30,
            longest_unexplained_run: None,
        });
        self
    }

    fn run(&self) -> Vec<Finding> {
        self.run_with(&RulesConfig::default())
    }

    fn run_with(&self, c: &RulesConfig) -> Vec<Finding> {
        let (f, problems) = evaluate(&self.input, c);
        assert!(problems.is_empty(), "{problems:?}");
        f
    }
}

fn of(findings: &[Finding], rule: RuleId) -> Vec<&Finding> {
    findings.iter().filter(|f| f.rule == rule).collect()
}

const HOME: (&str, &str) = ("1 Mill Lane", "M7 1AA");
const ELSEWHERE: (&str, &str) = ("9 Far Road", "M27 4ZZ");

// --- da_notification -------------------------------------------------------

#[test]
fn da_notification_with_a_child_named_alerts_the_childs_family() {
    let mut w = World::new();
    w.mention(1, FeedKind::PoliceDa, false, Some(5), Some(HOME))
        .mention(2, FeedKind::PoliceDa, true, Some(5), Some(HOME))
        .da(
            "N1",
            1,
            DaRole::Victim,
            "2026-11-18",
            Some(DashRisk::Standard),
            HOME,
        )
        .da(
            "N1",
            2,
            DaRole::Child,
            "2026-11-18",
            Some(DashRisk::Standard),
            HOME,
        );
    let f = w.run();
    let da = of(&f, RuleId::DaNotification);
    assert_eq!(da.len(), 1);
    assert_eq!(da[0].subject, "family:5");
    assert_eq!(da[0].severity, Severity::Info);
    assert_eq!(da[0].facts.len(), 1);
    assert_eq!(da[0].facts[0].record.id, "N1");
    assert_eq!(da[0].postcodes[0], "M7 1AA");
}

#[test]
fn da_notification_with_adults_only_and_no_children_at_the_address_is_quiet() {
    let mut w = World::new();
    w.mention(1, FeedKind::PoliceDa, false, Some(5), Some(HOME))
        .mention(2, FeedKind::PoliceDa, false, Some(5), Some(HOME))
        // A pupil lives elsewhere: not at the incident address.
        .mention(3, FeedKind::Attendance, true, Some(6), Some(ELSEWHERE))
        .da(
            "N1",
            1,
            DaRole::Victim,
            "2026-11-18",
            Some(DashRisk::High),
            HOME,
        )
        .da(
            "N1",
            2,
            DaRole::Perpetrator,
            "2026-11-18",
            Some(DashRisk::High),
            HOME,
        );
    assert!(of(&w.run(), RuleId::DaNotification).is_empty());
}

#[test]
fn da_notification_with_adults_only_at_an_address_where_children_live_alerts() {
    let mut w = World::new();
    w.mention(1, FeedKind::PoliceDa, false, None, Some(HOME))
        // A pupil at the incident address, written differently.
        .mention(
            3,
            FeedKind::Attendance,
            true,
            Some(6),
            Some(("1 MILL LN", "m71aa")),
        )
        .da(
            "N1",
            1,
            DaRole::Victim,
            "2026-11-18",
            Some(DashRisk::High),
            HOME,
        );
    let f = w.run();
    let da = of(&f, RuleId::DaNotification);
    assert_eq!(da.len(), 1, "{f:?}");
    assert_eq!(da[0].family, Some(6));
    assert_eq!(da[0].severity, Severity::Urgent);
}

#[test]
fn da_notification_repeat_within_a_year_raises_severity_and_old_ones_stay_quiet() {
    let mut w = World::new();
    w.mention(2, FeedKind::PoliceDa, true, Some(5), Some(HOME))
        .mention(4, FeedKind::PoliceDa, true, Some(5), Some(HOME))
        .da(
            "N0",
            4,
            DaRole::Child,
            "2026-03-01",
            Some(DashRisk::Medium),
            HOME,
        )
        .da(
            "N1",
            2,
            DaRole::Child,
            "2026-11-18",
            Some(DashRisk::Medium),
            HOME,
        );
    let f = w.run();
    let da = of(&f, RuleId::DaNotification);
    // N0 is older than the 14-day lookback: only N1 alerts, raised by N0.
    assert_eq!(da.len(), 1);
    assert_eq!(da[0].facts.len(), 1);
    assert_eq!(da[0].facts[0].record.id, "N1");
    assert_eq!(da[0].severity, Severity::Urgent, "medium raised one level");
    assert!(da[0].explanation.iter().any(|l| l.contains("N0")));
}

#[test]
fn da_notification_after_the_run_date_is_not_known_yet() {
    let mut w = World::new();
    w.mention(2, FeedKind::PoliceDa, true, Some(5), Some(HOME))
        .da("N1", 2, DaRole::Child, "2026-11-21", None, HOME);
    assert!(of(&w.run(), RuleId::DaNotification).is_empty());
}

#[test]
fn a_disabled_rule_finds_nothing() {
    let mut w = World::new();
    w.mention(2, FeedKind::PoliceDa, true, Some(5), Some(HOME))
        .da("N1", 2, DaRole::Child, "2026-11-18", None, HOME);
    let mut c = RulesConfig::default();
    c.da_notification.common.enabled = false;
    assert!(w.run_with(&c).is_empty());
}

// --- attendance_drop -------------------------------------------------------

#[test]
fn attendance_falling_away_alerts_the_pupil() {
    let mut w = World::new();
    w.mention(1, FeedKind::Attendance, true, Some(5), Some(HOME))
        // 80% now, 100% before: below 90% and 20 points down.
        .pupil(1, (32, 8), (60, 0));
    let f = w.run();
    let a = of(&f, RuleId::AttendanceDrop);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].subject, "pupil:src/K1@100001");
    assert_eq!(a[0].school_urn, Some(100001));
    assert_eq!(a[0].severity, Severity::Info);
    assert_eq!(a[0].facts[0].episode, "2026-10-19");
    assert!(
        a[0].explanation[0].contains("80.0%"),
        "{:?}",
        a[0].explanation
    );
}

#[test]
fn attendance_low_but_not_falling_is_quiet_unless_severe() {
    let mut w = World::new();
    w.mention(1, FeedKind::Attendance, true, Some(5), Some(HOME))
        // 80% now and 80% before: persistent absence, not falling away.
        .pupil(1, (32, 8), (48, 12));
    assert!(of(&w.run(), RuleId::AttendanceDrop).is_empty());

    let mut w = World::new();
    w.mention(1, FeedKind::Attendance, true, Some(5), Some(HOME))
        // 40% now and 40% before: severe absence fires on its own.
        .pupil(1, (16, 24), (24, 36));
    let f = w.run();
    let a = of(&f, RuleId::AttendanceDrop);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Urgent);
    assert!(a[0].facts.iter().any(|x| x.key.ends_with(":severe")));
}

#[test]
fn attendance_on_too_few_sessions_or_stale_marks_is_quiet() {
    let mut w = World::new();
    w.mention(1, FeedKind::Attendance, true, Some(5), Some(HOME))
        .pupil(1, (2, 7), (60, 0));
    assert!(
        of(&w.run(), RuleId::AttendanceDrop).is_empty(),
        "9 possible < 10"
    );

    let mut w = World::new();
    w.mention(1, FeedKind::Attendance, true, Some(5), Some(HOME))
        .pupil(1, (16, 24), (60, 0));
    w.input.pupils[0].window_to = d("2026-07-17");
    assert!(
        of(&w.run(), RuleId::AttendanceDrop).is_empty(),
        "marks stopped in July"
    );
}

#[test]
fn attendance_with_many_unauthorised_sessions_is_priority() {
    let mut w = World::new();
    w.mention(1, FeedKind::Attendance, true, Some(5), Some(HOME))
        .pupil(1, (28, 12), (60, 0));
    let f = w.run();
    assert_eq!(
        of(&f, RuleId::AttendanceDrop)[0].severity,
        Severity::Priority
    );
}

// --- eviction_risk ---------------------------------------------------------

#[test]
fn eviction_notice_on_a_household_with_children_alerts() {
    let mut w = World::new();
    w.mention(1, FeedKind::Housing, false, Some(5), Some(HOME))
        .notice(
            "H1",
            1,
            NoticeType::Section8,
            ("2026-11-01", None),
            Some(2),
            HOME,
        );
    let f = w.run();
    let e = of(&f, RuleId::EvictionRisk);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].subject, "family:5");
    assert_eq!(e[0].severity, Severity::Info);
}

#[test]
fn eviction_notice_without_children_is_quiet() {
    let mut w = World::new();
    w.mention(1, FeedKind::Housing, false, Some(5), Some(HOME))
        .mention(3, FeedKind::Attendance, true, Some(6), Some(ELSEWHERE))
        .notice(
            "H1",
            1,
            NoticeType::Warrant,
            ("2026-11-01", Some("2026-11-25")),
            Some(0),
            HOME,
        );
    assert!(of(&w.run(), RuleId::EvictionRisk).is_empty());
}

#[test]
fn eviction_severity_rises_with_the_stage_and_a_near_bailiff_date() {
    let mut w = World::new();
    w.mention(1, FeedKind::Housing, false, Some(5), Some(HOME))
        .mention(2, FeedKind::Housing, false, Some(7), Some(ELSEWHERE))
        .mention(3, FeedKind::Attendance, true, Some(7), Some(ELSEWHERE))
        .notice(
            "H1",
            1,
            NoticeType::PossessionClaim,
            ("2026-11-01", None),
            Some(1),
            HOME,
        )
        // Served long ago, but the bailiff comes in 10 days; a child lives there.
        .notice(
            "H2",
            2,
            NoticeType::PossessionOrder,
            ("2026-06-01", Some("2026-11-30")),
            None,
            ELSEWHERE,
        );
    let f = w.run();
    let e = of(&f, RuleId::EvictionRisk);
    assert_eq!(e.len(), 2, "{f:?}");
    assert_eq!(e[0].severity, Severity::Priority);
    assert_eq!(e[1].severity, Severity::Urgent);
}

#[test]
fn a_section_21_after_abolition_is_flagged_in_the_explanation() {
    let mut w = World::new();
    w.mention(1, FeedKind::Housing, false, Some(5), Some(HOME))
        .notice(
            "H1",
            1,
            NoticeType::Section21,
            ("2026-11-01", None),
            Some(1),
            HOME,
        );
    let f = w.run();
    assert!(of(&f, RuleId::EvictionRisk)[0]
        .explanation
        .iter()
        .any(|l| l.contains("not valid in England")));
}

// --- emerging_risk ---------------------------------------------------------

fn two_signal_family() -> World {
    let mut w = World::new();
    w.mention(1, FeedKind::PoliceDa, false, Some(5), Some(HOME))
        .mention(2, FeedKind::Housing, false, Some(5), Some(HOME))
        .da("N1", 1, DaRole::Victim, "2026-10-01", None, HOME)
        .notice(
            "H1",
            2,
            NoticeType::Section8,
            ("2026-11-01", None),
            Some(0),
            HOME,
        );
    w
}

#[test]
fn emerging_risk_two_kinds_and_no_open_case() {
    let f = two_signal_family().run();
    let e = of(&f, RuleId::EmergingRisk);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].family, Some(5));
    let ids: Vec<&str> = e[0].facts.iter().map(|x| x.record.id.as_str()).collect();
    assert_eq!(ids, vec!["H1", "N1"]);
    assert_eq!(e[0].severity, Severity::Priority);
}

#[test]
fn emerging_risk_is_quiet_for_a_family_with_an_open_case() {
    let mut w = two_signal_family();
    w.mention(3, FeedKind::Assessment, true, Some(5), Some(HOME))
        .case("C1", 3, "2025-01-01", None);
    assert!(of(&w.run(), RuleId::EmergingRisk).is_empty());
}

#[test]
fn emerging_risk_needs_two_kinds_within_the_window() {
    let mut w = two_signal_family();
    // The notification moves out of the 90-day window.
    w.input.notifications[0].incident_on = d("2026-07-01");
    assert!(of(&w.run(), RuleId::EmergingRisk).is_empty());
}

// --- closed_too_early ------------------------------------------------------

fn closed_then(reason: ClosureReason, signal_on: &str) -> World {
    let mut w = World::new();
    w.mention(1, FeedKind::Assessment, true, Some(5), Some(HOME))
        .mention(2, FeedKind::PoliceDa, true, Some(5), Some(HOME))
        .case("C1", 1, "2025-06-01", Some(("2026-10-01", reason)))
        .da("N1", 2, DaRole::Child, signal_on, None, HOME);
    w
}

#[test]
fn closed_too_early_new_signal_after_closure() {
    let f = closed_then(ClosureReason::OutcomesMet, "2026-11-10").run();
    let c = of(&f, RuleId::ClosedTooEarly);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].severity, Severity::Urgent, "40 days after the closure");
    let ids: Vec<(FeedKind, &str)> = c[0]
        .facts
        .iter()
        .map(|x| (x.record.kind, x.record.id.as_str()))
        .collect();
    assert!(ids.contains(&(FeedKind::Assessment, "C1")));
    assert!(ids.contains(&(FeedKind::PoliceDa, "N1")));
}

#[test]
fn closed_too_early_ignores_step_up_and_moved_away_closures() {
    for reason in [ClosureReason::StepUp, ClosureReason::MovedAway] {
        let f = closed_then(reason, "2026-11-10").run();
        assert!(of(&f, RuleId::ClosedTooEarly).is_empty(), "{reason:?}");
    }
}

#[test]
fn closed_too_early_ignores_signals_before_the_closure_and_is_priority_later() {
    let f = closed_then(ClosureReason::OutcomesMet, "2026-09-20").run();
    assert!(of(&f, RuleId::ClosedTooEarly).is_empty());

    let mut w = closed_then(ClosureReason::Disengaged, "2026-11-10");
    w.input.cases[0].closed_on = Some(d("2026-05-01"));
    let f = w.run();
    let c = of(&f, RuleId::ClosedTooEarly);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].severity, Severity::Priority, "193 days after");
}

#[test]
fn closed_too_early_counts_a_new_referral() {
    let mut w = World::new();
    w.mention(1, FeedKind::Assessment, true, Some(5), Some(HOME))
        .case(
            "C1",
            1,
            "2025-06-01",
            Some(("2026-10-01", ClosureReason::OutcomesMet)),
        )
        .case("C2", 1, "2026-11-15", None);
    let f = w.run();
    let c = of(&f, RuleId::ClosedTooEarly);
    assert_eq!(c.len(), 1);
    assert!(c[0].facts.iter().any(|x| x.key.ends_with("C2:referral")));
    assert!(!c[0].facts.iter().any(|x| x.key.ends_with("C1:referral")));
}

#[test]
fn explanations_carry_no_personal_details() {
    let mut w = closed_then(ClosureReason::OutcomesMet, "2026-11-10");
    w.mention(9, FeedKind::Attendance, true, Some(5), Some(HOME))
        .pupil(9, (16, 24), (60, 0));
    let f = w.run();
    assert!(f.len() >= 3);
    for finding in &f {
        for line in &finding.explanation {
            assert!(!line.contains("Mill"), "{line}");
            assert!(!line.contains("M7 1AA"), "{line}");
        }
    }
}

#[test]
fn evaluation_is_deterministic() {
    let mut w = two_signal_family();
    w.mention(9, FeedKind::Attendance, true, Some(5), Some(HOME))
        .pupil(9, (16, 24), (60, 0));
    assert_eq!(w.run(), w.run());
}

#[test]
fn a_pupil_key_built_from_a_name_never_reaches_an_explanation() {
    let mut w = two_signal_family();
    w.mention(9, FeedKind::Attendance, true, Some(5), Some(HOME))
        .pupil(9, (16, 24), (60, 0));
    // No UPN: the mention key is URN/SURNAME/FORENAME/DOB (docs/feeds.md).
    w.input.mentions.last_mut().unwrap().mention_key = "100001/MILL/AMY/2016-09-01".into();
    w.mention(1, FeedKind::Assessment, true, Some(5), Some(HOME))
        .case(
            "C1",
            1,
            "2025-06-01",
            Some(("2026-10-01", ClosureReason::OutcomesMet)),
        );
    let f = w.run();
    assert!(of(&f, RuleId::EmergingRisk).len() == 1 && of(&f, RuleId::ClosedTooEarly).len() == 1);
    for finding in &f {
        for line in &finding.explanation {
            assert!(
                !line.contains("MILL") && !line.contains("2016-09-01"),
                "{line}"
            );
        }
    }
}
