//! Rules and alerts tables: what the rules read (mentions with their persons and
//! families, notifications, notices, cases, attendance counted per window), the
//! alerts already raised, writing one evaluation's plan, and the reads behind
//! `alerts list`, `alerts ack` and `audit`.
//!
//! Invariant: an evaluation's alerts, facts, deliveries and audit rows commit
//! together or not at all; a delivery row never exists without its audit row.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::QueryBuilder;

use super::{Store, StoreError, Tx};
use crate::alerts::{ExistingAlert, Plan, Routing};
use crate::domain::rules::{DeliveryKind, RuleId, Severity};
use crate::domain::{CaseRole, ClosureReason, DaRole, DashRisk, FeedKind, NoticeType, Tenure};
use crate::link::family::address_keys;
use crate::rules::{
    AttendanceCounts, CaseRow, DaRow, Fact, Finding, MentionInfo, NoticeRow, PupilAttendance,
    RecordRef,
};

use super::tallies::SchoolWindow;

/// Attendance counted for one date.
#[derive(Debug, Clone, Default)]
pub struct AttendanceCount {
    pub pupils: Vec<PupilAttendance>,
    /// Schools with a school day in the last year.
    pub schools: usize,
    /// Of those, the schools counted from their marks; the others moved their
    /// kept tallies by the days since the last count.
    pub recounted: usize,
}

/// An alert as `alerts list` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub status: String,
    pub family_id: Option<i64>,
    pub locality: Option<String>,
    pub school_urn: Option<String>,
    pub raised_at: DateTime<Utc>,
    pub recipients: Vec<String>,
    /// Recipients it could not be delivered to: refused for good, and not (yet)
    /// routed again (`kinlink send` does once the config names another address).
    pub undelivered: Vec<String>,
    pub records: Vec<RecordRef>,
    #[serde(skip)]
    pub subject: String,
    #[serde(skip)]
    pub unrouted: Option<String>,
    #[serde(skip)]
    pub revision: i64,
    #[serde(skip)]
    pub explanation: Vec<String>,
}

/// One audit row: a disclosure decided or made.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub event: String,
    pub alert_id: i64,
    pub revision: i64,
    pub rule: String,
    pub recipient: String,
    pub role: String,
    pub family_id: Option<i64>,
    pub person_ids: Vec<i64>,
    pub records: Vec<RecordRef>,
    pub detail: String,
    pub reason: String,
}

/// The outcome of `alerts ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    Acknowledged,
    /// Already acknowledged: the first acknowledgement stands.
    AlreadyAcknowledged,
    Resolved,
    NotFound,
}

/// What the rules read of a mention: only what they use comes back — the source
/// and key of pupils (their fact keys), the address of children (where children
/// live).
const MENTION_COLUMNS: &str = "SELECT m.id, m.kind, \
     CASE WHEN m.kind = 'attendance' THEN m.source ELSE '' END, \
     CASE WHEN m.kind = 'attendance' THEN m.mention_key ELSE '' END, \
     CASE WHEN m.kind = 'attendance' OR lower(m.role) = 'child' THEN 1 ELSE 0 END, \
     m.uprn, m.address_line1, m.postcode, mp.person_id, fm.family_id";
const MENTION_JOINS: &str = "LEFT JOIN mention_persons mp ON mp.mention_id = m.id \
     LEFT JOIN family_members fm ON fm.person_id = mp.person_id";

fn mention_infos(rows: Vec<MentionTuple>) -> Vec<MentionInfo> {
    rows.into_iter()
        .filter_map(|t| {
            let kind = FeedKind::from_str(&t.1).ok()?;
            let child = t.4 != 0;
            let keys = if child {
                address_keys(t.5, t.6.as_deref(), t.7.as_deref())
            } else {
                Vec::new()
            };
            Some(MentionInfo {
                id: t.0,
                kind,
                source: t.2,
                mention_key: t.3,
                child,
                person: t.8,
                family: t.9,
                address_keys: keys,
                postcode: t.7,
            })
        })
        .collect()
}

type MentionTuple = (
    i64,
    String,
    String,
    String,
    i32,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);
type DaTuple = (
    String,
    String,
    i64,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<i64>,
    String,
    String,
);
type NoticeTuple = (
    String,
    String,
    String,
    NaiveDate,
    Option<NaiveDate>,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    String,
    String,
);
type CaseTuple = (
    String,
    String,
    i64,
    String,
    NaiveDate,
    Option<NaiveDate>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
);

impl Store {
    /// Mentions with their person, family and (for children) address keys.
    pub async fn rule_mentions(&self) -> Result<Vec<MentionInfo>, StoreError> {
        let sql = format!("{MENTION_COLUMNS} FROM mentions m {MENTION_JOINS} ORDER BY m.id");
        let rows: Vec<MentionTuple> = on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
        Ok(mention_infos(rows))
    }

    /// The child mentions living at any of `places` (household address keys), by
    /// id: where the rules look for children at an address. A mention lives at a
    /// place when its UPRN or its written address key (`mentions.address_key`) is
    /// one of the place's keys; both are indexed.
    pub async fn children_at(&self, places: &[String]) -> Result<Vec<i64>, StoreError> {
        let mut uprns: Vec<i64> = Vec::new();
        let mut written: Vec<&str> = Vec::new();
        for k in places {
            if let Some(u) = k.strip_prefix("uprn:").and_then(|u| u.parse().ok()) {
                uprns.push(u);
            } else if k.starts_with("addr:") {
                written.push(k);
            }
        }
        uprns.sort_unstable();
        uprns.dedup();
        written.sort_unstable();
        written.dedup();
        let mut tx = Tx::begin(&self.pool).await?;
        self.temp_table(&mut tx, "rule_uprns", "uprn BIGINT PRIMARY KEY")
            .await?;
        self.temp_table(&mut tx, "rule_addresses", "address_key TEXT PRIMARY KEY")
            .await?;
        self.fill_ids(&mut tx, "rule_uprns", "uprn", &uprns).await?;
        for chunk in written.chunks(5000) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("INSERT INTO rule_addresses (address_key) ");
                qb.push_values(chunk, |mut q, k| { q.push_bind(*k); });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        self.analyze(&mut tx, "rule_uprns").await?;
        self.analyze(&mut tx, "rule_addresses").await?;
        // CROSS JOIN keeps SQLite's loop over the (small) places, each looked up
        // in the mentions' index.
        let ids: Vec<(i64,)> = on_tx!(tx, t => sqlx::query_as(
            "SELECT m.id FROM rule_uprns u CROSS JOIN mentions m \
             WHERE m.uprn = u.uprn AND (m.kind = 'attendance' OR lower(m.role) = 'child') \
             UNION \
             SELECT m.id FROM rule_addresses a CROSS JOIN mentions m \
             WHERE m.address_key = a.address_key \
             AND (m.kind = 'attendance' OR lower(m.role) = 'child')")
            .fetch_all(&mut **t).await)?;
        drop(tx);
        let mut ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The mentions the rules can ask about, as [`Self::rule_mentions`] reads them:
    /// the `seeds` (the mentions of the records and pupils the rules look at, and
    /// the children at their addresses) and every mention of their families
    /// (their homes route the family's alerts). On a large borough this is a
    /// fraction of the mentions: not the pupils with nothing to say, nor former
    /// pupils, nor people only in old records.
    pub async fn rule_mentions_for(&self, seeds: &[i64]) -> Result<Vec<MentionInfo>, StoreError> {
        let mut seeds = seeds.to_vec();
        seeds.sort_unstable();
        seeds.dedup();
        let mut tx = Tx::begin(&self.pool).await?;
        self.temp_table(&mut tx, "rule_seeds", "id BIGINT PRIMARY KEY")
            .await?;
        self.temp_table(&mut tx, "rule_families", "id BIGINT PRIMARY KEY")
            .await?;
        self.fill_ids(&mut tx, "rule_seeds", "id", &seeds).await?;
        self.analyze(&mut tx, "rule_seeds").await?;
        let sql = format!(
            "{MENTION_COLUMNS} FROM rule_seeds s JOIN mentions m ON m.id = s.id {MENTION_JOINS}"
        );
        let mut rows: Vec<MentionTuple> =
            on_tx!(tx, t => sqlx::query_as(&sql).fetch_all(&mut **t).await)?;
        // Then the other members of their families.
        let mut families: Vec<i64> = rows.iter().filter_map(|r| r.9).collect();
        families.sort_unstable();
        families.dedup();
        self.fill_ids(&mut tx, "rule_families", "id", &families)
            .await?;
        self.analyze(&mut tx, "rule_families").await?;
        let sql = format!(
            "{MENTION_COLUMNS} FROM rule_families f \
             JOIN family_members fm2 ON fm2.family_id = f.id \
             JOIN mention_persons mp2 ON mp2.person_id = fm2.person_id \
             JOIN mentions m ON m.id = mp2.mention_id {MENTION_JOINS} \
             WHERE NOT EXISTS (SELECT 1 FROM rule_seeds s WHERE s.id = m.id)"
        );
        let members: Vec<MentionTuple> =
            on_tx!(tx, t => sqlx::query_as(&sql).fetch_all(&mut **t).await)?;
        drop(tx);
        rows.extend(members);
        rows.sort_by_key(|r| r.0);
        Ok(mention_infos(rows))
    }

    /// Every person row of every police notification.
    pub async fn rule_notifications(&self) -> Result<Vec<DaRow>, StoreError> {
        let sql = "SELECT source, notification_id, mention_id, role, incident_at, dash_risk, uprn, \
                   address_line1, postcode FROM da_persons ORDER BY source, notification_id, person_key";
        let rows: Vec<DaTuple> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .filter_map(|t| {
                Some(DaRow {
                    role: DaRole::from_str(&t.3).ok()?,
                    incident_on: t.4.with_timezone(&chrono_tz::Europe::London).date_naive(),
                    dash: t.5.as_deref().and_then(|d| DashRisk::from_str(d).ok()),
                    address_keys: address_keys(t.6, Some(&t.7), Some(&t.8)),
                    source: t.0,
                    notification_id: t.1,
                    mention: t.2,
                    postcode: t.8,
                })
            })
            .collect())
    }

    /// Every eviction or possession notice.
    pub async fn rule_notices(&self) -> Result<Vec<NoticeRow>, StoreError> {
        let sql = "SELECT source, notice_id, notice_type, served_on, possession_date, tenure, \
                   children_in_household, mention_id, uprn, address_line1, postcode \
                   FROM housing_notices ORDER BY source, notice_id";
        let rows: Vec<NoticeTuple> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .filter_map(|t| {
                Some(NoticeRow {
                    notice_type: NoticeType::from_str(&t.2).ok()?,
                    served_on: t.3,
                    possession_date: t.4,
                    tenure: t.5.as_deref().and_then(|v| Tenure::from_str(v).ok()),
                    children_in_household: t.6,
                    mention: t.7,
                    address_keys: address_keys(t.8, Some(&t.9), Some(&t.10)),
                    source: t.0,
                    notice_id: t.1,
                    postcode: t.10,
                })
            })
            .collect())
    }

    /// Every case member row.
    pub async fn rule_cases(&self) -> Result<Vec<CaseRow>, StoreError> {
        let sql = "SELECT source, case_id, mention_id, role, referral_date, opened_on, closed_on, \
                   closure_reason, locality FROM case_members ORDER BY source, case_id, person_id";
        let rows: Vec<CaseTuple> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .filter_map(|t| {
                Some(CaseRow {
                    role: CaseRole::from_str(&t.3).ok()?,
                    referral_date: t.4,
                    opened_on: t.5,
                    closed_on: t.6,
                    closure_reason: t.7.as_deref().and_then(|r| ClosureReason::from_str(r).ok()),
                    locality: t.8,
                    source: t.0,
                    case_id: t.1,
                    mention: t.2,
                })
            })
            .collect())
    }

    /// Attendance counted per pupil and school over each school's last
    /// `window_days` school days up to `as_of` and the `baseline_days` before them.
    /// A school day is a date the school recorded any mark (`school_days`), so a
    /// half-term with no marks neither counts as absence nor shortens a window.
    /// The counts come from the tallies the last run kept, moved by the days
    /// since, where they serve (`tallies`).
    pub async fn attendance_counts(
        &self,
        as_of: NaiveDate,
        window_days: u32,
        baseline_days: u32,
    ) -> Result<AttendanceCount, StoreError> {
        // A year always holds more school days than the windows need.
        let since = as_of - chrono::Duration::days(400);
        let days: Vec<(i64, NaiveDate)> = on_pool!(self, p => sqlx::query_as(
            "SELECT school_urn, date FROM school_days WHERE date <= $1 AND date >= $2 \
             ORDER BY school_urn, date DESC")
            .bind(as_of).bind(since).fetch_all(p).await)?;
        let mut by_school: BTreeMap<i64, Vec<NaiveDate>> = BTreeMap::new();
        for (urn, d) in days {
            by_school.entry(urn).or_default().push(d);
        }
        let (w, b) = (window_days.max(1) as usize, baseline_days as usize);
        let windows: Vec<SchoolWindow> = by_school
            .into_iter()
            .filter_map(|(urn, days)| {
                let to = *days.first()?;
                let wn = days.len().min(w);
                let from = days[wn - 1];
                let bn = days.len().saturating_sub(wn).min(b);
                let bfrom = if bn > 0 { days[wn + bn - 1] } else { from };
                Some((urn, bfrom, from, to, wn as u32, bn as u32))
            })
            .collect();
        let Some(earliest) = windows.iter().map(|w| w.1).min() else {
            return Ok(AttendanceCount::default());
        };
        let (tallies, recounted) = self
            .tallied_counts(&windows, window_days, baseline_days, earliest)
            .await?;
        let by_urn: HashMap<i64, &SchoolWindow> = windows.iter().map(|w| (w.0, w)).collect();
        let field = |v: i64| u32::try_from(v).unwrap_or(0);
        let mut out = Vec::with_capacity(tallies.len());
        for ((mention, urn), t) in tallies {
            let Some(&&(_, _, from, to, wn, bn)) = by_urn.get(&urn) else {
                continue;
            };
            let Ok(urn) = u32::try_from(urn) else {
                continue;
            };
            out.push(PupilAttendance {
                mention,
                school_urn: urn,
                window: AttendanceCounts {
                    attended: field(t.window[0]),
                    authorised: field(t.window[1]),
                    unauthorised: field(t.window[2]),
                    unexplained: field(t.window[3]),
                    part_time_or_excluded: field(t.window[4]),
                },
                baseline: AttendanceCounts {
                    attended: field(t.baseline[0]),
                    authorised: field(t.baseline[1]),
                    unauthorised: field(t.baseline[2]),
                    unexplained: 0,
                    part_time_or_excluded: 0,
                },
                window_from: from,
                window_to: to,
                window_days: wn,
                baseline_days: bn,
                longest_unexplained_run: None,
            });
        }
        Ok(AttendanceCount {
            schools: windows.len(),
            recounted,
            pupils: out,
        })
    }

    /// Fills in the longest run of consecutive unexplained (`N`/`O`) sessions in
    /// the window of each pupil given (sessions in date order; a session with no
    /// mark — another school's day — does not break a run).
    pub async fn fill_unexplained_runs(
        &self,
        pupils: &mut [&mut PupilAttendance],
    ) -> Result<(), StoreError> {
        if pupils.is_empty() {
            return Ok(());
        }
        // The windows go into a temporary table, so that each pupil's marks are
        // read by key from the window's first day to its last, and only whether
        // each was unexplained comes back. The transaction is only rolled back.
        let mut tx = Tx::begin(&self.pool).await?;
        let ddl = match self.backend() {
            super::Backend::Sqlite => {
                "CREATE TEMP TABLE rule_runs (mention_id INTEGER NOT NULL, urn INTEGER NOT NULL, \
                 wfrom TEXT NOT NULL, wto TEXT NOT NULL, PRIMARY KEY (mention_id, urn))"
            }
            super::Backend::Postgres => {
                "CREATE TEMP TABLE rule_runs (mention_id BIGINT NOT NULL, urn BIGINT NOT NULL, \
                 wfrom DATE NOT NULL, wto DATE NOT NULL, PRIMARY KEY (mention_id, urn)) ON COMMIT DROP"
            }
        };
        on_tx!(tx, t => sqlx::query(ddl).execute(&mut **t).await.map(|_| ()))?;
        let mut keys: Vec<(i64, i64, NaiveDate, NaiveDate)> = pupils
            .iter()
            .map(|p| {
                (
                    p.mention,
                    i64::from(p.school_urn),
                    p.window_from,
                    p.window_to,
                )
            })
            .collect();
        keys.sort_unstable();
        keys.dedup_by_key(|k| (k.0, k.1));
        for chunk in keys.chunks(2000) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("INSERT INTO rule_runs (mention_id, urn, wfrom, wto) ");
                qb.push_values(chunk, |mut q, (m, urn, from, to)| {
                    q.push_bind(*m).push_bind(*urn).push_bind(*from).push_bind(*to);
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        if matches!(self.backend(), super::Backend::Postgres) {
            on_tx!(tx, t => sqlx::query("ANALYZE rule_runs").execute(&mut **t).await.map(|_| ()))?;
        }
        let rows: Vec<(i64, i64, i32)> = on_tx!(tx, t => sqlx::query_as(
            "SELECT a.mention_id, a.school_urn, \
             CASE WHEN a.mark IN ('N', 'O') THEN 1 ELSE 0 END \
             FROM rule_runs r CROSS JOIN attendance_marks a \
             WHERE a.mention_id = r.mention_id AND a.school_urn = r.urn \
             AND a.date >= r.wfrom AND a.date <= r.wto \
             ORDER BY a.mention_id, a.school_urn, a.date, a.session")
            .fetch_all(&mut **t).await)?;
        drop(tx);
        // (current run, longest run) per pupil and school, sessions in order.
        let mut runs: HashMap<(i64, i64), (u32, u32)> = HashMap::new();
        for (m, urn, unexplained) in rows {
            let e = runs.entry((m, urn)).or_insert((0, 0));
            if unexplained != 0 {
                e.0 += 1;
                e.1 = e.1.max(e.0);
            } else {
                e.0 = 0;
            }
        }
        for p in pupils.iter_mut() {
            p.longest_unexplained_run = Some(
                runs.get(&(p.mention, i64::from(p.school_urn)))
                    .map_or(0, |r| r.1),
            );
        }
        Ok(())
    }

    /// Every alert with its facts, subjects resolved to live family ids.
    pub async fn existing_alerts(&self) -> Result<Vec<ExistingAlert>, StoreError> {
        type Row = (i64, String, String, String, String, i64, Option<NaiveDate>);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, rule, subject, status, severity, revision, cleared_since FROM alerts ORDER BY id")
            .fetch_all(p).await)?;
        let facts: Vec<(i64, String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT alert_id, fact, episode FROM alert_facts ORDER BY alert_id, fact")
            .fetch_all(p).await)?;
        let mut by_alert: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        for (id, f, e) in facts {
            by_alert.entry(id).or_default().push((f, e));
        }
        let aliases = self.family_alias_map().await?;
        Ok(rows
            .into_iter()
            .filter_map(|t| {
                Some(ExistingAlert {
                    rule: RuleId::parse(&t.1)?,
                    subject: live_subject(&t.2, &aliases),
                    status: t.3,
                    severity: Severity::parse(&t.4).unwrap_or(Severity::Info),
                    revision: t.5,
                    cleared_since: t.6,
                    facts: by_alert.remove(&t.0).unwrap_or_default(),
                    id: t.0,
                })
            })
            .collect())
    }

    pub(super) async fn family_alias_map(&self) -> Result<HashMap<i64, i64>, StoreError> {
        // merged_into: every alias sets it, and a family id an undone review
        // decision made keeps it without an alias.
        let rows: Vec<(i64, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, merged_into FROM families WHERE merged_into IS NOT NULL").fetch_all(p).await)?;
        Ok(rows.into_iter().collect())
    }

    /// Writes one evaluation: new alerts, escalations, clearings and resolutions,
    /// with their deliveries and audit rows, and the run row — in one transaction.
    /// Returns the ids of the alerts raised.
    pub async fn apply_plan(
        &self,
        plan: &Plan,
        as_of: NaiveDate,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
        detail: &str,
        findings: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let mut raised = Vec::new();
        let mut deliveries = 0i64;
        for r in &plan.raise {
            let f = &r.finding;
            let explanation = serde_json::to_string(&f.explanation).unwrap_or_default();
            let id: Option<i64> = on_tx!(tx, t => sqlx::query_scalar(
                "INSERT INTO alerts (rule, subject, fingerprint, family_id, school_urn, locality, unrouted, \
                 severity, status, revision, raised_at, raised_on, updated_at, explanation) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'new', 1, $9, $10, $9, $11) \
                 ON CONFLICT (fingerprint) DO NOTHING RETURNING id")
                .bind(f.rule.as_str())
                .bind(&f.subject)
                .bind(&r.fingerprint)
                .bind(f.family)
                .bind(f.school_urn.map(i64::from))
                .bind(&r.routing.locality)
                .bind(&r.routing.unrouted)
                .bind(f.severity.as_str())
                .bind(now)
                .bind(as_of)
                .bind(explanation)
                .fetch_optional(&mut **t).await)?;
            let Some(id) = id else { continue };
            raised.push(id);
            insert_facts(&mut tx, id, 1, &f.facts).await?;
            let first = AlertRevision {
                id,
                revision: 1,
                kind: DeliveryKind::New,
                finding: f,
                facts: &f.facts,
                routing: &r.routing,
            };
            deliveries += insert_deliveries(&mut tx, first, now, detail).await?;
        }
        for e in &plan.escalate {
            let f = &e.finding;
            let explanation = serde_json::to_string(&f.explanation).unwrap_or_default();
            let revision: Option<i64> = on_tx!(tx, t => sqlx::query_scalar(
                "UPDATE alerts SET severity = $3, status = 'new', revision = revision + 1, updated_at = $4, \
                 cleared_since = NULL, locality = $5, unrouted = $6, explanation = $7, family_id = COALESCE($8, family_id) \
                 WHERE id = $1 AND revision = $2 RETURNING revision")
                .bind(e.alert_id)
                .bind(e.from_revision)
                .bind(e.severity.as_str())
                .bind(now)
                .bind(&e.routing.locality)
                .bind(&e.routing.unrouted)
                .bind(explanation)
                .bind(f.family)
                .fetch_optional(&mut **t).await)?;
            // Someone else moved the alert on meanwhile: their write stands.
            let Some(revision) = revision else { continue };
            insert_facts(&mut tx, e.alert_id, revision, &e.new_facts).await?;
            let update = AlertRevision {
                id: e.alert_id,
                revision,
                kind: DeliveryKind::Update,
                finding: f,
                facts: &e.new_facts,
                routing: &e.routing,
            };
            deliveries += insert_deliveries(&mut tx, update, now, detail).await?;
        }
        for (id, since) in &plan.clear {
            on_tx!(tx, t => sqlx::query(
                "UPDATE alerts SET cleared_since = $2 WHERE id = $1 AND cleared_since IS NULL")
                .bind(*id).bind(*since).execute(&mut **t).await.map(|_| ()))?;
        }
        for id in &plan.unclear {
            on_tx!(tx, t => sqlx::query("UPDATE alerts SET cleared_since = NULL WHERE id = $1")
                .bind(*id).execute(&mut **t).await.map(|_| ()))?;
        }
        for id in &plan.resolve {
            on_tx!(tx, t => sqlx::query(
                "UPDATE alerts SET status = 'resolved', resolved_at = $2, updated_at = $2 \
                 WHERE id = $1 AND status <> 'resolved'")
                .bind(*id).bind(now).execute(&mut **t).await.map(|_| ()))?;
        }
        let c = plan.counts();
        on_tx!(tx, t => sqlx::query(
            "INSERT INTO evaluate_runs (started_at, finished_at, as_of, findings, raised, escalated, resolved, \
             deliveries, unrouted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(started_at)
            .bind(now)
            .bind(as_of)
            .bind(findings as i64)
            .bind(raised.len() as i64)
            .bind(c.escalated as i64)
            .bind(c.resolved as i64)
            .bind(deliveries)
            .bind(c.unrouted as i64)
            .execute(&mut **t).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(raised)
    }

    /// Alerts, optionally of one rule and one status, oldest first.
    pub async fn alert_rows(
        &self,
        rule: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<AlertRow>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            Option<i64>,
            Option<String>,
            Option<i64>,
            DateTime<Utc>,
            String,
            Option<String>,
            i64,
            String,
        );
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, rule, severity, status, family_id, locality, school_urn, raised_at, subject, unrouted, \
             revision, explanation FROM alerts \
             WHERE ($1 IS NULL OR rule = $1) AND ($2 IS NULL OR status = $2) ORDER BY id")
            .bind(rule).bind(status).fetch_all(p).await)?;
        let facts: Vec<(i64, String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT alert_id, record_kind, record_id FROM alert_facts ORDER BY alert_id, record_kind, record_id")
            .fetch_all(p).await)?;
        let mut records: HashMap<i64, Vec<RecordRef>> = HashMap::new();
        for (id, kind, rid) in facts {
            let Ok(kind) = FeedKind::from_str(&kind) else {
                continue;
            };
            let list = records.entry(id).or_default();
            let r = RecordRef { kind, id: rid };
            if !list.contains(&r) {
                list.push(r);
            }
        }
        let recips: Vec<(i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT DISTINCT alert_id, recipient FROM deliveries ORDER BY alert_id, recipient")
            .fetch_all(p).await)?;
        let mut recipients: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, r) in recips {
            recipients.entry(id).or_default().push(r);
        }
        let refused: Vec<(i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT DISTINCT alert_id, recipient FROM deliveries \
             WHERE status = 'failed' AND rerouted_at IS NULL ORDER BY alert_id, recipient")
            .fetch_all(p).await)?;
        let mut undelivered: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, r) in refused {
            undelivered.entry(id).or_default().push(r);
        }
        let aliases = self.family_alias_map().await?;
        Ok(rows
            .into_iter()
            .map(|t| AlertRow {
                undelivered: undelivered.remove(&t.0).unwrap_or_default(),
                id: t.0,
                rule: t.1,
                severity: t.2,
                status: t.3,
                family_id: t.4.map(|f| follow(f, &aliases)),
                locality: t.5,
                school_urn: t.6.map(|u| format!("{u:06}")),
                raised_at: t.7,
                subject: t.8,
                unrouted: t.9,
                revision: t.10,
                explanation: serde_json::from_str(&t.11).unwrap_or_default(),
                recipients: recipients.remove(&t.0).unwrap_or_default(),
                records: records.remove(&t.0).unwrap_or_default(),
            })
            .collect())
    }

    /// Marks an alert acknowledged by `by` with a note.
    pub async fn ack_alert(
        &self,
        id: i64,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        let status: Option<String> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT status FROM alerts WHERE id = $1").bind(id).fetch_optional(p).await)?;
        match status.as_deref() {
            None => return Ok(AckOutcome::NotFound),
            Some("resolved") => return Ok(AckOutcome::Resolved),
            Some("acknowledged") => return Ok(AckOutcome::AlreadyAcknowledged),
            _ => {}
        }
        let done: u64 = on_pool!(self, p => sqlx::query(
            "UPDATE alerts SET status = 'acknowledged', acked_by = $2, acked_at = $3, ack_note = $4, updated_at = $3 \
             WHERE id = $1 AND status IN ('new', 'sent')")
            .bind(id).bind(by).bind(now).bind(note).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(if done == 1 {
            AckOutcome::Acknowledged
        } else {
            AckOutcome::AlreadyAcknowledged
        })
    }

    /// Every disclosure about a family (any id merged into it too), oldest first.
    pub async fn audit_for_family(&self, family: i64) -> Result<Vec<AuditRow>, StoreError> {
        let aliases = self.family_alias_map().await?;
        let live = follow(family, &aliases);
        let mut ids: Vec<i64> = aliases
            .keys()
            .copied()
            .filter(|&old| follow(old, &aliases) == live)
            .collect();
        ids.push(live);
        ids.sort_unstable();
        ids.dedup();
        let rows: Vec<AuditTuple> = on_pool!(self, p => {
            let mut qb = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE family_id IN ("));
            let mut sep = qb.separated(", ");
            for id in &ids {
                sep.push_bind(*id);
            }
            qb.push(") ORDER BY at, id");
            qb.build_query_as().fetch_all(p).await
        })?;
        Ok(rows.into_iter().map(|t| audit_row(t, &aliases)).collect())
    }

    /// Everything a recipient has been sent (or is to be sent), since a date.
    pub async fn audit_for_recipient(
        &self,
        recipient: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE LOWER(recipient) = LOWER($1) AND at >= $2 ORDER BY at, id"
        );
        let since = since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let rows: Vec<AuditTuple> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(recipient).bind(since).fetch_all(p).await)?;
        let aliases = self.family_alias_map().await?;
        Ok(rows.into_iter().map(|t| audit_row(t, &aliases)).collect())
    }
}

const AUDIT_COLUMNS: &str = "at, event, alert_id, revision, rule, recipient, role, family_id, person_ids, records, detail, reason";
type AuditTuple = (
    DateTime<Utc>,
    String,
    i64,
    i64,
    String,
    String,
    String,
    Option<i64>,
    String,
    String,
    String,
    String,
);

fn audit_row(t: AuditTuple, aliases: &HashMap<i64, i64>) -> AuditRow {
    AuditRow {
        at: t.0,
        event: t.1,
        alert_id: t.2,
        revision: t.3,
        rule: t.4,
        recipient: t.5,
        role: t.6,
        family_id: t.7.map(|f| follow(f, aliases)),
        person_ids: serde_json::from_str(&t.8).unwrap_or_default(),
        records: serde_json::from_str::<Vec<RecordRef>>(&t.9).unwrap_or_default(),
        detail: t.10,
        reason: t.11,
    }
}

/// Follows an alias chain to the live id (capped against a cycle).
pub(super) fn follow(mut id: i64, aliases: &HashMap<i64, i64>) -> i64 {
    for _ in 0..1000 {
        match aliases.get(&id) {
            Some(&n) if n != id => id = n,
            _ => break,
        }
    }
    id
}

/// `family:OLD` → `family:LIVE`; other subjects unchanged.
fn live_subject(subject: &str, aliases: &HashMap<i64, i64>) -> String {
    match subject
        .strip_prefix("family:")
        .and_then(|n| n.parse::<i64>().ok())
    {
        Some(f) => format!("family:{}", follow(f, aliases)),
        None => subject.to_string(),
    }
}

async fn insert_facts(
    tx: &mut Tx,
    id: i64,
    revision: i64,
    facts: &[Fact],
) -> Result<(), StoreError> {
    for chunk in facts.chunks(1000) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO alert_facts (alert_id, fact, episode, record_kind, record_id, person_id, revision) ",
            );
            qb.push_values(chunk, |mut b, f| {
                b.push_bind(id)
                    .push_bind(&f.key)
                    .push_bind(&f.episode)
                    .push_bind(f.record.kind.as_str())
                    .push_bind(&f.record.id)
                    .push_bind(f.person)
                    .push_bind(revision);
            });
            qb.push(" ON CONFLICT (alert_id, fact) DO NOTHING");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    Ok(())
}

/// One revision of an alert whose deliveries are to be written: the first
/// (`New`) or an escalation (`Update`) with the facts it adds.
struct AlertRevision<'a> {
    id: i64,
    revision: i64,
    kind: DeliveryKind,
    finding: &'a Finding,
    facts: &'a [Fact],
    routing: &'a Routing,
}

/// Writes the deliveries of one alert revision and an audit row for each one
/// written (at `now`, at the mail detail level `detail`). Returns how many were
/// written.
async fn insert_deliveries(
    tx: &mut Tx,
    a: AlertRevision<'_>,
    now: DateTime<Utc>,
    detail: &str,
) -> Result<i64, StoreError> {
    let AlertRevision {
        id,
        revision,
        kind,
        finding,
        facts,
        routing,
    } = a;
    let kind = kind.as_str();
    let persons: Vec<i64> = crate::rules::distinct(facts.iter().filter_map(|f| f.person));
    let records: Vec<&RecordRef> = {
        let mut r: Vec<&RecordRef> = facts.iter().map(|f| &f.record).collect();
        r.sort();
        r.dedup();
        r
    };
    let persons = serde_json::to_string(&persons).unwrap_or_else(|_| "[]".into());
    let records = serde_json::to_string(&records).unwrap_or_else(|_| "[]".into());
    let mut written = 0;
    for (recipient, role, reason) in &routing.recipients {
        let delivery: Option<i64> = on_tx!(*tx, t => sqlx::query_scalar(
            "INSERT INTO deliveries (alert_id, revision, recipient, role, kind, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6) \
             ON CONFLICT (alert_id, revision, recipient, role) DO NOTHING RETURNING id")
            .bind(id).bind(revision).bind(recipient).bind(role.as_str()).bind(kind).bind(now)
            .fetch_optional(&mut **t).await)?;
        let Some(delivery) = delivery else { continue };
        written += 1;
        on_tx!(*tx, t => sqlx::query(
            "INSERT INTO audit_log (at, event, delivery_id, alert_id, revision, rule, recipient, role, family_id, \
             person_ids, records, detail, reason) VALUES ($1, 'routed', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(now)
            .bind(delivery)
            .bind(id)
            .bind(revision)
            .bind(finding.rule.as_str())
            .bind(recipient)
            .bind(role.as_str())
            .bind(finding.family)
            .bind(&persons)
            .bind(&records)
            .bind(detail)
            .bind(reason)
            .execute(&mut **t).await.map(|_| ()))?;
    }
    Ok(written)
}

/// Alert figures for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertSummary {
    pub new: i64,
    pub sent: i64,
    pub acknowledged: i64,
    pub resolved: i64,
    /// Open alerts no locality or school routes (they went to the admin list).
    pub unrouted_open: i64,
    /// Deliveries not yet in a digest.
    pub pending_deliveries: i64,
    /// Open alerts with a delivery refused for good and not routed again.
    pub undelivered_open: i64,
}

impl Store {
    /// Alerts by status, unrouted open ones and deliveries waiting for the mail stage.
    pub async fn alert_summary(&self) -> Result<AlertSummary, StoreError> {
        let by: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT status, COUNT(*) FROM alerts GROUP BY status").fetch_all(p).await)?;
        let mut s = AlertSummary::default();
        for (status, n) in by {
            match status.as_str() {
                "new" => s.new = n,
                "sent" => s.sent = n,
                "acknowledged" => s.acknowledged = n,
                "resolved" => s.resolved = n,
                _ => {}
            }
        }
        s.unrouted_open = on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM alerts WHERE unrouted IS NOT NULL AND status <> 'resolved'")
            .fetch_one(p).await)?;
        s.undelivered_open = on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM alerts a WHERE a.status IN ('new', 'sent') AND EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id AND d.status = 'failed' \
              AND d.rerouted_at IS NULL)")
            .fetch_one(p).await)?;
        s.pending_deliveries = on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'").fetch_one(p).await)?;
        Ok(s)
    }
}
