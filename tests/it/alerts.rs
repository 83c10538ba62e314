//! Rules, alerts, routing and the audit trail end to end on both backends: four
//! real feeds ingested and linked, then `evaluate` — every rule fires once for the
//! family in trouble and not for its negative twins; a second run changes nothing;
//! a new notification escalates; acknowledgement; the audit trail by family and by
//! recipient; half-term, month and DST boundaries in the windows.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate, TimeZone, Weekday};
use kinlink::clock::Clock;
use kinlink::config::{Locality, School, Settings, SourceSettings};
use kinlink::domain::RunMode;
use kinlink::domain::{FeedKind, Urn};
use kinlink::pipeline::{self, EvaluateReport, IngestRequest, NoProgress};
use kinlink::store::{AckOutcome, AlertRow, Store};

use crate::backends::stores;
use crate::helpers::{csv_source, settings, upn};

pub(crate) fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Noon in London on `day`.
pub(crate) fn clock(day: &str) -> Clock {
    let local = d(day).and_hms_opt(12, 0, 0).unwrap();
    Clock::fixed(
        chrono_tz::Europe::London
            .from_local_datetime(&local)
            .unwrap()
            .with_timezone(&chrono::Utc),
    )
}

const COLUMNS: &[(FeedKind, &str)] = &[
    (
        FeedKind::Attendance,
        "school_urn,upn,forename,surname,dob,address_line1,postcode,date,session,mark",
    ),
    (
        FeedKind::PoliceDa,
        "notification_id,incident_at,role,forename,surname,dob,address_line1,postcode,dash_risk",
    ),
    (
        FeedKind::Housing,
        "notice_id,notice_type,served_on,possession_date,tenure,address_line1,postcode,tenant_forename,tenant_surname,children_in_household",
    ),
    (
        FeedKind::Assessment,
        "case_id,family_id,person_id,role,forename,surname,dob,upn,address_line1,postcode,referral_date,opened_on,closed_on,closure_reason,locality",
    ),
];

fn header(kind: FeedKind) -> &'static str {
    COLUMNS.iter().find(|(k, _)| *k == kind).unwrap().1
}

fn source(kind: FeedKind, inbox: &Path) -> SourceSettings {
    let columns: Vec<(&str, &str)> = header(kind).split(',').map(|c| (c, c)).collect();
    csv_source(&kind.as_str().replace('_', "-"), kind, inbox, &columns)
}

/// A borough of two localities and one school, with an inbox per feed kind.
pub(crate) struct Borough {
    pub(crate) settings: Settings,
    inboxes: BTreeMap<FeedKind, std::path::PathBuf>,
}

impl Borough {
    pub(crate) fn new(dir: &Path, backend: &str) -> Borough {
        let mut inboxes = BTreeMap::new();
        let mut sources = Vec::new();
        for (kind, _) in COLUMNS {
            let inbox = dir.join(format!("{backend}-{}", kind.as_str()));
            std::fs::create_dir_all(&inbox).unwrap();
            sources.push(source(*kind, &inbox));
            inboxes.insert(*kind, inbox);
        }
        let mut settings = settings(&dir.join(backend), sources);
        settings.localities = vec![
            Locality {
                name: "North".into(),
                postcodes: vec!["M7".into(), "M6 5".into()],
                dv_champions: vec!["dv.north@example.gov.uk".into()],
                champions: vec!["eh.north@example.gov.uk".into()],
                managers: vec!["mgr.north@example.gov.uk".into()],
            },
            Locality {
                name: "South".into(),
                postcodes: vec!["M6".into()],
                dv_champions: vec!["dv.south@example.gov.uk".into()],
                champions: vec!["eh.south@example.gov.uk".into()],
                managers: vec!["mgr.south@example.gov.uk".into()],
            },
        ];
        settings.schools = vec![School {
            urn: Urn::parse("100001").unwrap(),
            name: "St Example Primary".into(),
            locality: "North".into(),
            ewos: vec!["ewo.north@example.gov.uk".into()],
        }];
        Borough { settings, inboxes }
    }

    pub(crate) fn drop_file(&self, kind: FeedKind, name: &str, rows: &[String]) {
        let mut text = format!("{}\n", header(kind));
        for r in rows {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(self.inboxes[&kind].join(name), text).unwrap();
    }

    pub(crate) async fn ingest_and_link(&self, store: &Store, day: &str) {
        let report = pipeline::ingest(
            &self.settings,
            store,
            clock(day),
            &IngestRequest::default(),
            &NoProgress,
        )
        .await
        .expect("ingest");
        assert!(!report.fetch_failed(), "{report:?}");
        for f in &report.files {
            assert!(matches!(f, pipeline::FileOutcome::Ingested { .. }), "{f:?}");
        }
        pipeline::link(
            &self.settings,
            store,
            clock(day),
            pipeline::LinkScope::Incremental,
        )
        .await
        .expect("link");
    }

    pub(crate) async fn evaluate(&self, store: &Store, day: &str) -> EvaluateReport {
        pipeline::evaluate(&self.settings, store, clock(day))
            .await
            .expect("evaluate")
    }
}

pub(crate) const HOME: &str = "1 Mill Lane,M7 1AA";
const SOUTH_HOME: &str = "5 Elm Road,M6 4AB";
const BIRCH: &str = "7 Birch Road,M6 4CD";

/// School days from 7 Sep to 20 Nov 2026, weekdays, without the October
/// half-term (26–30 Oct): no marks at all that week.
fn school_days() -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut day = d("2026-09-07");
    while day <= d("2026-11-20") {
        let half_term = day >= d("2026-10-26") && day <= d("2026-10-30");
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !half_term {
            out.push(day);
        }
        day = day.succ_opt().unwrap();
    }
    out
}

/// Marks: pupil 1 (at HOME) present until the last 20 school days, then absent
/// (`O`) on every other day; pupil 2 present throughout; pupil 3 at 80% all along
/// (persistent absence, not falling).
fn attendance_rows() -> Vec<String> {
    let days = school_days();
    let window_from = days[days.len() - 20];
    let mut rows = Vec::new();
    for (i, day) in days.iter().enumerate() {
        for (s, session) in ["AM", "PM"].iter().enumerate() {
            let date = day.format("%d/%m/%Y");
            let p1 = if *day >= window_from && i % 2 == 0 {
                "O"
            } else {
                "/"
            };
            let p3 = if (i * 2 + s) % 5 == 0 { "I" } else { "/" };
            rows.push(format!(
                "100001,{},Amy,Mill,01/09/2016,{HOME},{date},{session},{p1}",
                upn(1)
            ));
            rows.push(format!(
                "100001,{},Ben,Oak,02/03/2017,2 Oak Road,M7 2BB,{date},{session},/",
                upn(2)
            ));
            rows.push(format!(
                "100001,{},Cal,Ash,03/04/2016,3 Ash Road,M7 3CC,{date},{session},{p3}",
                upn(3)
            ));
        }
    }
    rows
}

fn by_rule(alerts: &[AlertRow]) -> BTreeMap<String, Vec<&AlertRow>> {
    let mut out: BTreeMap<String, Vec<&AlertRow>> = BTreeMap::new();
    for a in alerts {
        out.entry(a.rule.clone()).or_default().push(a);
    }
    out
}

fn records(a: &AlertRow) -> Vec<String> {
    let mut r: Vec<String> = a
        .records
        .iter()
        .map(|r| format!("{}:{}", r.kind, r.id))
        .collect();
    r.sort();
    r
}

async fn count(store: &Store, table: &'static str) -> i64 {
    let sql: &'static str = match table {
        "alerts" => "SELECT COUNT(*) FROM alerts",
        "deliveries" => "SELECT COUNT(*) FROM deliveries",
        "audit_log" => "SELECT COUNT(*) FROM audit_log",
        "alert_facts" => "SELECT COUNT(*) FROM alert_facts",
        _ => unreachable!(),
    };
    store.scalar_i64(sql).await.unwrap()
}

#[tokio::test]
async fn every_rule_fires_once_for_the_family_in_trouble_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("alerts_every_rule", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        b.drop_file(FeedKind::Attendance, "marks.csv", &attendance_rows());
        b.drop_file(
            FeedKind::PoliceDa,
            "police.csv",
            &[
                // The family at HOME: a child named, DASH medium, two days ago.
                format!("N1,2026-11-18 23:30,victim,Dawn,Mill,,{HOME},medium"),
                format!("N1,2026-11-18 23:30,child,Amy,Mill,01/09/2016,{HOME},medium"),
                // Adults only in South, nobody's child lives there: no alert.
                format!("N2,2026-11-19 10:00,victim,Eve,Elm,,{SOUTH_HOME},high"),
                format!("N2,2026-11-19 10:00,perpetrator,Fay,Elm,,{SOUTH_HOME},high"),
                // Long ago: history, not news.
                format!("N0,2025-01-10 10:00,child,Amy,Mill,01/09/2016,{HOME},standard"),
            ],
        );
        b.drop_file(
            FeedKind::Housing,
            "notices.csv",
            &[format!(
                "H1,section_8,10/11/2026,,private,{HOME},Dawn,Mill,2"
            )],
        );
        b.drop_file(
            FeedKind::Assessment,
            "cases.csv",
            &[
                // Closed six weeks before N1: closed too early.
                format!(
                    "C1,FAM1,PER1,child,Amy,Mill,01/09/2016,{},{HOME},01/03/2026,01/03/2026,01/10/2026,outcomes_met,North",
                    upn(1)
                ),
                // Stepped up, then referred again: never closed_too_early.
                format!(
                    "C2,FAM2,PER2,child,Gus,Birch,05/05/2015,,{BIRCH},01/03/2026,01/03/2026,01/10/2026,step_up,South"
                ),
                format!(
                    "C3,FAM2,PER2,child,Gus,Birch,05/05/2015,,{BIRCH},01/11/2026,,,,South"
                ),
            ],
        );
        b.ingest_and_link(&store, "2026-11-20").await;

        // The rules read only the mentions they can ask about, and find with them
        // exactly what they find with every mention.
        let as_of = d("2026-11-20");
        let input = pipeline::rule_input(&store, &b.settings, as_of)
            .await
            .unwrap();
        let every = kinlink::rules::RuleInput {
            mentions: store.rule_mentions().await.unwrap(),
            ..input.clone()
        };
        assert!(
            input.mentions.len() < every.mentions.len(),
            "{backend}: {} of {} mentions read",
            input.mentions.len(),
            every.mentions.len()
        );
        let config = b.settings.rules;
        let (narrow, narrow_problems) = kinlink::rules::evaluate(&input, &config);
        let (wide, wide_problems) = kinlink::rules::evaluate(&every, &config);
        assert_eq!(narrow, wide, "{backend}");
        assert_eq!(narrow_problems, wide_problems, "{backend}");
        assert!(!narrow.is_empty(), "{backend}");

        let first = b.evaluate(&store, "2026-11-20").await;
        let alerts = store.alert_rows(None, None).await.unwrap();
        let rules = by_rule(&alerts);
        assert_eq!(
            rules.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "attendance_drop",
                "closed_too_early",
                "da_notification",
                "emerging_risk",
                "eviction_risk"
            ],
            "{backend}: {alerts:#?}"
        );
        for (rule, list) in &rules {
            assert_eq!(list.len(), 1, "{backend}: {rule} {list:#?}");
        }
        assert_eq!(first.counts.raised, 5, "{backend}");
        let family = rules["da_notification"][0].family_id;
        assert!(family.is_some(), "{backend}");
        for rule in [
            "da_notification",
            "eviction_risk",
            "emerging_risk",
            "closed_too_early",
        ] {
            let a = rules[rule][0];
            assert_eq!(
                a.family_id, family,
                "{backend}: {rule} is about the same family"
            );
            assert_eq!(a.locality.as_deref(), Some("North"), "{backend}: {rule}");
            assert_eq!(a.status, "new");
        }
        let da = rules["da_notification"][0];
        assert_eq!(da.recipients, vec!["dv.north@example.gov.uk"], "{backend}");
        assert_eq!(records(da), vec!["police_da:N1"], "{backend}");
        assert_eq!(
            da.severity, "priority",
            "{backend}: DASH medium; N0 is too old to make it a repeat"
        );
        let att = rules["attendance_drop"][0];
        assert_eq!(
            att.recipients,
            vec!["ewo.north@example.gov.uk"],
            "{backend}"
        );
        assert_eq!(att.school_urn.as_deref(), Some("100001"), "{backend}");
        assert_eq!(
            records(att),
            vec![format!("attendance:{}", upn(1))],
            "{backend}"
        );
        let ev = rules["eviction_risk"][0];
        assert_eq!(ev.recipients, vec!["eh.north@example.gov.uk"], "{backend}");
        assert_eq!(records(ev), vec!["housing:H1"], "{backend}");
        let em = rules["emerging_risk"][0];
        assert_eq!(em.recipients, vec!["mgr.north@example.gov.uk"], "{backend}");
        assert_eq!(
            records(em),
            vec![
                format!("attendance:{}", upn(1)),
                "housing:H1".to_string(),
                "police_da:N1".to_string()
            ],
            "{backend}"
        );
        assert_eq!(em.severity, "urgent", "{backend}: three kinds");
        let cte = rules["closed_too_early"][0];
        assert_eq!(
            cte.recipients,
            vec!["mgr.north@example.gov.uk"],
            "{backend}"
        );
        let r = records(cte);
        assert!(r.contains(&"assessment:C1".to_string()), "{backend}: {r:?}");
        assert!(r.contains(&"police_da:N1".to_string()), "{backend}: {r:?}");
        assert!(
            !r.iter()
                .any(|x| x == "assessment:C2" || x == "assessment:C3"),
            "{backend}: {r:?}"
        );
        assert_eq!(cte.severity, "urgent", "{backend}: within 90 days");

        // The attendance window: 20 school days back from 20 Nov skip the
        // half-term week, across the October/November boundary and the clocks
        // going back on 25 Oct: it starts on Monday 19 Oct.
        let episodes = store
            .column_text(
                "SELECT episode FROM alert_facts WHERE record_kind = 'attendance' ORDER BY episode",
            )
            .await
            .unwrap();
        assert!(
            episodes.iter().all(|e| e.as_deref() == Some("2026-10-19")),
            "{backend}: {episodes:?}"
        );

        // Again: nothing new.
        let rows = (
            count(&store, "alerts").await,
            count(&store, "deliveries").await,
            count(&store, "audit_log").await,
            count(&store, "alert_facts").await,
        );
        assert_eq!(rows.1, rows.2, "{backend}: one audit row per delivery");
        let second = b.evaluate(&store, "2026-11-20").await;
        assert_eq!(
            second.counts.raised + second.counts.escalated,
            0,
            "{backend}"
        );
        assert_eq!(second.counts.unchanged, 5, "{backend}");
        let again = (
            count(&store, "alerts").await,
            count(&store, "deliveries").await,
            count(&store, "audit_log").await,
            count(&store, "alert_facts").await,
        );
        assert_eq!(rows, again, "{backend}: a second evaluate wrote nothing");
        assert_eq!(
            store.alert_rows(None, None).await.unwrap(),
            alerts,
            "{backend}"
        );

        // A new notification for the family the next day: the open alert is
        // escalated and sent as an update, not a second alert.
        b.drop_file(
            FeedKind::PoliceDa,
            "police-2.csv",
            &[format!(
                "N3,2026-11-21 08:00,child,Amy,Mill,01/09/2016,{HOME},standard"
            )],
        );
        b.ingest_and_link(&store, "2026-11-21").await;
        let third = b.evaluate(&store, "2026-11-21").await;
        assert_eq!(third.counts.raised, 0, "{backend}: {third:?}");
        assert!(third.counts.escalated >= 1, "{backend}: {third:?}");
        let da = store
            .alert_rows(Some("da_notification"), None)
            .await
            .unwrap();
        assert_eq!(da.len(), 1, "{backend}");
        assert_eq!(
            records(&da[0]),
            vec!["police_da:N1", "police_da:N3"],
            "{backend}"
        );
        assert_eq!(da[0].revision, 2, "{backend}");
        let updates = store
            .scalar_i64("SELECT COUNT(*) FROM deliveries WHERE kind = 'update' AND recipient = 'dv.north@example.gov.uk'")
            .await
            .unwrap();
        assert_eq!(updates, 1, "{backend}");

        // Acknowledged by the champion; a second ack keeps the first.
        let id = da[0].id;
        let now = clock("2026-11-21").now();
        assert_eq!(
            store
                .ack_alert(id, "dv.north@example.gov.uk", "called the school", now)
                .await
                .unwrap(),
            AckOutcome::Acknowledged
        );
        assert_eq!(
            store
                .ack_alert(id, "x@example.gov.uk", "again", now)
                .await
                .unwrap(),
            AckOutcome::AlreadyAcknowledged
        );
        assert_eq!(
            store
                .ack_alert(9999, "x@example.gov.uk", "n", now)
                .await
                .unwrap(),
            AckOutcome::NotFound
        );
        let acked = store.alert_rows(None, Some("acknowledged")).await.unwrap();
        assert_eq!(acked.len(), 1, "{backend}");

        // The audit trail: who was told about the family, and what one recipient
        // was sent.
        let trail = store.audit_for_family(family.unwrap()).await.unwrap();
        let mut told: Vec<(String, String, i64)> = trail
            .iter()
            .map(|r| (r.rule.clone(), r.recipient.clone(), r.revision))
            .collect();
        told.sort();
        assert_eq!(
            told,
            vec![
                (
                    "attendance_drop".into(),
                    "ewo.north@example.gov.uk".into(),
                    1
                ),
                (
                    "closed_too_early".into(),
                    "mgr.north@example.gov.uk".into(),
                    1
                ),
                (
                    "closed_too_early".into(),
                    "mgr.north@example.gov.uk".into(),
                    2
                ),
                (
                    "da_notification".into(),
                    "dv.north@example.gov.uk".into(),
                    1
                ),
                (
                    "da_notification".into(),
                    "dv.north@example.gov.uk".into(),
                    2
                ),
                ("emerging_risk".into(), "mgr.north@example.gov.uk".into(), 1),
                ("emerging_risk".into(), "mgr.north@example.gov.uk".into(), 2),
                ("eviction_risk".into(), "eh.north@example.gov.uk".into(), 1),
            ],
            "{backend}"
        );
        assert!(trail
            .iter()
            .all(|r| r.detail == "minimal" && r.event == "routed"));
        assert!(trail
            .iter()
            .all(|r| !r.person_ids.is_empty() || r.rule == "closed_too_early"));
        let dv = store
            .audit_for_recipient("DV.North@example.gov.uk", None)
            .await
            .unwrap();
        assert_eq!(dv.len(), 2, "{backend}: {dv:#?}");
        assert!(dv.iter().all(|r| r.rule == "da_notification"));
        let since = store
            .audit_for_recipient(
                "dv.north@example.gov.uk",
                Some(clock("2026-11-21").now() - chrono::Duration::hours(1)),
            )
            .await
            .unwrap();
        assert_eq!(since.len(), 1, "{backend}: only the update");
        assert_eq!(
            since[0]
                .records
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            vec!["N3"]
        );
        // Nothing about this family went to South.
        let south = store
            .audit_for_recipient("dv.south@example.gov.uk", None)
            .await
            .unwrap();
        assert!(south.is_empty(), "{backend}: {south:#?}");
        store.close().await;
    }
}

#[tokio::test]
async fn lookback_counts_london_dates_and_alerts_resolve_once_cleared() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("alerts_lookback_dst", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        // 00:30 on 25 Oct 2026 in London is still BST: 23:30 on the 24th in UTC.
        // The incident's date is the 25th.
        b.drop_file(
            FeedKind::PoliceDa,
            "police.csv",
            &[format!(
                "N9,2026-10-25 00:30,child,Hal,Moss,04/04/2018,{HOME},standard"
            )],
        );
        b.ingest_and_link(&store, "2026-10-26").await;
        // 14 days after the 25th: still inside the lookback.
        let r = b.evaluate(&store, "2026-11-08").await;
        assert_eq!(r.counts.raised, 1, "{backend}: {r:?}");
        // A copy of the store for a back-fill: the day after, nothing new.
        let r = b.evaluate(&store, "2026-11-09").await;
        assert_eq!(r.counts.raised, 0, "{backend}");
        let open = store.alert_rows(None, None).await.unwrap();
        assert_eq!(open[0].status, "new");
        // Cleared on the 9th; resolved 28 days later, not before.
        let r = b.evaluate(&store, "2026-12-06").await;
        assert_eq!(r.counts.resolved, 0, "{backend}");
        let r = b.evaluate(&store, "2026-12-07").await;
        assert_eq!(r.counts.resolved, 1, "{backend}");
        assert_eq!(
            store
                .alert_rows(None, Some("resolved"))
                .await
                .unwrap()
                .len(),
            1,
            "{backend}"
        );
        // Evaluating the old date again raises nothing: the same facts never
        // alert twice.
        let r = b.evaluate(&store, "2026-11-08").await;
        assert_eq!(r.counts.raised, 0, "{backend}: {r:?}");
        assert_eq!(r.counts.already_alerted, 1, "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn an_unrouted_alert_goes_to_admin_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("alerts_unrouted", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        b.drop_file(
            FeedKind::PoliceDa,
            "police.csv",
            &["N5,2026-11-19 21:00,child,Ivy,Far,06/06/2019,3 Far Road,LS1 1AA,high".to_string()],
        );
        b.ingest_and_link(&store, "2026-11-20").await;
        let r = b.evaluate(&store, "2026-11-20").await;
        assert_eq!((r.counts.raised, r.counts.unrouted), (1, 1), "{backend}");
        let a = store.alert_rows(None, None).await.unwrap();
        assert_eq!(a[0].recipients, vec!["admin@example.gov.uk"], "{backend}");
        assert!(a[0].locality.is_none(), "{backend}");
        let why = a[0].unrouted.clone().unwrap();
        assert!(why.contains("postcode"), "{backend}: {why}");
        let trail = store
            .audit_for_recipient("admin@example.gov.uk", None)
            .await
            .unwrap();
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].role, "admin");
        assert!(trail[0].reason.contains("unrouted"), "{}", trail[0].reason);
        store.close().await;
    }
}

/// Retention: a dry run counts and changes nothing; the purge deletes old records,
/// the mentions left with no record (with their links), and the raw copies once
/// past their period — and keeps alerts, deliveries and the audit trail whole.
#[tokio::test]
async fn purge_deletes_old_data_and_keeps_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("alerts_purge", dir.path()).await {
        let b = Borough::new(dir.path(), backend);
        let mut marks = attendance_rows();
        // A pupil seen only in 2024: all their marks are past the 730 days.
        marks.push(format!(
            "100001,{},Old,Pupil,05/05/2012,9 Old Road,M7 9ZZ,10/01/2024,AM,/",
            upn(9)
        ));
        b.drop_file(FeedKind::Attendance, "marks.csv", &marks);
        b.drop_file(
            FeedKind::PoliceDa,
            "police.csv",
            &[
                format!("N1,2026-11-18 23:30,child,Amy,Mill,01/09/2016,{HOME},medium"),
                format!("N0,2024-01-10 10:00,child,Amy,Mill,01/09/2016,{HOME},standard"),
            ],
        );
        b.ingest_and_link(&store, "2026-11-20").await;
        b.evaluate(&store, "2026-11-20").await;
        let kept = (
            count(&store, "alerts").await,
            count(&store, "deliveries").await,
            count(&store, "audit_log").await,
            count(&store, "alert_facts").await,
        );
        assert!(kept.0 >= 2, "{backend}: {kept:?}");
        let totals = |store: &Store| {
            let store = store.clone();
            async move {
                let mut v = Vec::new();
                for sql in [
                    "SELECT COUNT(*) FROM attendance_marks",
                    "SELECT COUNT(*) FROM da_persons",
                    "SELECT COUNT(*) FROM mentions",
                    "SELECT COUNT(*) FROM feed_files WHERE purged_at IS NULL",
                ] {
                    v.push(store.scalar_i64(sql).await.unwrap());
                }
                v
            }
        };
        let before = totals(&store).await;

        let dry = pipeline::purge(&b.settings, &store, clock("2026-11-20"), RunMode::DryRun)
            .await
            .unwrap();
        assert_eq!(dry.counts.attendance_marks, 1, "{backend}: {dry:?}");
        assert_eq!(dry.counts.police_rows, 1, "{backend}");
        assert_eq!(
            dry.counts.mentions, 2,
            "{backend}: the old pupil and N0's row"
        );
        assert_eq!(dry.counts.raw_files, 0, "{backend}: copies are days old");
        assert_eq!(
            totals(&store).await,
            before,
            "{backend}: a dry run changes nothing"
        );

        let done = pipeline::purge(&b.settings, &store, clock("2026-11-20"), RunMode::Apply)
            .await
            .unwrap();
        assert_eq!(done.counts, dry.counts, "{backend}");
        let after = totals(&store).await;
        assert_eq!(after[0], before[0] - 1, "{backend}");
        assert_eq!(after[1], before[1] - 1, "{backend}");
        assert_eq!(after[2], before[2] - 2, "{backend}");
        let gone = store
            .column_text("SELECT mention_key FROM mentions WHERE mention_key LIKE 'N0/%'")
            .await
            .unwrap();
        assert!(gone.is_empty(), "{backend}: {gone:?}");
        let kept_after = (
            count(&store, "alerts").await,
            count(&store, "deliveries").await,
            count(&store, "audit_log").await,
            count(&store, "alert_facts").await,
        );
        assert_eq!(kept, kept_after, "{backend}: the audit trail is whole");
        // The next stages run on what is left, and nothing is alerted again.
        pipeline::link(
            &b.settings,
            &store,
            clock("2026-11-20"),
            pipeline::LinkScope::Incremental,
        )
        .await
        .expect("link after purge");
        let again = b.evaluate(&store, "2026-11-20").await;
        assert_eq!(again.counts.raised, 0, "{backend}: {again:?}");

        // Six weeks on, the raw copies are past their 30 days.
        let raw = store
            .column_text("SELECT raw_path FROM feed_files ORDER BY id")
            .await
            .unwrap();
        assert!(raw.iter().flatten().all(|p| Path::new(p).exists()));
        let later = pipeline::purge(&b.settings, &store, clock("2027-01-01"), RunMode::Apply)
            .await
            .unwrap();
        assert_eq!(later.counts.raw_files, raw.len() as i64, "{backend}");
        assert_eq!(later.files_deleted, raw.len(), "{backend}");
        assert!(raw.iter().flatten().all(|p| !Path::new(p).exists()));
        assert_eq!(
            store
                .scalar_i64("SELECT COUNT(*) FROM feed_files WHERE purged_at IS NOT NULL")
                .await
                .unwrap(),
            raw.len() as i64,
            "{backend}: the ledger rows stay"
        );
        store.close().await;
    }
}

/// A source silent for longer than its `stale_after_hours` is itself an admin
/// alert: one email a day per source, none for a source that delivered.
#[tokio::test]
async fn a_silent_feed_is_an_admin_alert_once_a_day() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("alerts_stale_feed", dir.path()).await {
        let mut b = Borough::new(dir.path(), backend);
        for s in &mut b.settings.sources {
            s.stale_after_hours = Some(36);
        }
        b.drop_file(
            FeedKind::PoliceDa,
            "police.csv",
            &[format!(
                "N1,2026-11-18 23:30,child,Amy,Mill,01/09/2016,{HOME},medium"
            )],
        );
        b.ingest_and_link(&store, "2026-11-20").await;
        let mailer = kinlink::mail::Mailer::new(&b.settings.mail).unwrap();
        let stale = kinlink::mail::enqueue_stale_feed_notices(
            &mailer,
            &store,
            &b.settings,
            clock("2026-11-20"),
        )
        .await
        .unwrap();
        assert_eq!(
            stale,
            vec!["attendance", "housing", "assessment"],
            "{backend}: never delivered (in config order); police is fresh"
        );
        // Again the same day: nothing new in the outbox.
        kinlink::mail::enqueue_stale_feed_notices(
            &mailer,
            &store,
            &b.settings,
            clock("2026-11-20"),
        )
        .await
        .unwrap();
        assert_eq!(
            store
                .scalar_i64("SELECT COUNT(*) FROM outbox")
                .await
                .unwrap(),
            3,
            "{backend}"
        );
        // Two days on the police feed is silent too.
        let later = kinlink::mail::enqueue_stale_feed_notices(
            &mailer,
            &store,
            &b.settings,
            clock("2026-11-22"),
        )
        .await
        .unwrap();
        assert!(
            later.contains(&"police-da".to_string()),
            "{backend}: {later:?}"
        );
        let subjects = store
            .column_text("SELECT subject FROM outbox ORDER BY id")
            .await
            .unwrap();
        assert!(subjects
            .iter()
            .flatten()
            .all(|s| s.starts_with("kinlink: no data from ")));
        store.close().await;
    }
}
