//! Digests and admin notices: the reads that compose a digest (pending deliveries
//! with their alerts, the facts behind them, the persons and records those name),
//! storing a digest together with the flip of its deliveries, following each
//! delivery to `sent` or `failed` with its message, and the reads behind the
//! managers' weekly digest and the admin's file notices.
//!
//! Invariant: a digest's outbox row and the flip of its deliveries from `pending`
//! to `queued` commit together, so a crash never leaves a delivery both pending
//! and in a stored message (which a later run would put in a second digest).
//! Invariant: every delivery that reaches `sent` or `failed` gets exactly one
//! audit row for that event, written in the same transaction as the flip.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::QueryBuilder;

use super::alerts::follow;
use super::{Enqueued, NewOutboxMessage, Store, StoreError, Tx};
use crate::domain::rules::{DeliveryKind, Role, RuleId, Severity};

/// Ids per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// A delivery not yet in a digest, with what its alert says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub id: i64,
    pub alert_id: i64,
    pub revision: i64,
    pub recipient: String,
    pub role: Role,
    /// `Update`: an escalation of an alert told before.
    pub kind: DeliveryKind,
    pub rule: RuleId,
    /// The alert's severity now.
    pub severity: Severity,
    /// The live family id (merged ids followed).
    pub family_id: Option<i64>,
    pub school_urn: Option<i64>,
    pub locality: Option<String>,
    /// Why no locality or school took it (admin deliveries).
    pub unrouted: Option<String>,
    pub raised_at: DateTime<Utc>,
    /// Plain-words lines without personal details.
    pub explanation: Vec<String>,
}

/// One fact behind an alert, as a digest shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestFact {
    pub alert_id: i64,
    /// The revision that added it.
    pub revision: i64,
    pub record_kind: String,
    pub record_id: String,
    /// The live person id (merged ids followed).
    pub person_id: Option<i64>,
}

/// What the records say about one person: the fullest mention, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonDetails {
    pub person_id: i64,
    pub forename: Option<String>,
    pub surname: Option<String>,
    pub dob: Option<NaiveDate>,
    pub address_line1: Option<String>,
    pub postcode: Option<String>,
}

/// The date (and a short description) of a record behind an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub date: NaiveDate,
    /// E.g. `section 21 notice`, `referred 2025-01-03, closed 2025-02-01`.
    pub note: Option<String>,
}

/// What storing a digest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestStored {
    pub outbox: Enqueued,
    /// Deliveries flipped from pending to queued by this call.
    pub flipped: u64,
}

/// What following deliveries to their messages changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SettleReport {
    pub sent: u64,
    pub failed: u64,
    /// Alerts whose every delivery of the current revision is now sent.
    pub alerts_sent: u64,
}

/// A feed file the admin list has not been told about yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNotice {
    pub id: i64,
    pub source: String,
    pub original_name: String,
    /// Where kinlink keeps the raw file (inside the state dir).
    pub raw_path: String,
    pub status: String,
    pub reason: Option<String>,
    pub rows_read: i64,
    pub quarantined: i64,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One child's referral in the case system, for the re-referral rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    /// The live person id, or the case system's own person id when unlinked.
    pub person: String,
    pub case: String,
    pub referral_date: NaiveDate,
    pub locality: Option<String>,
}

/// A `closed_too_early` alert for the managers' digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedTooEarly {
    pub alert_id: i64,
    pub family_id: Option<i64>,
    pub locality: Option<String>,
    pub severity: String,
    pub status: String,
    pub raised_at: DateTime<Utc>,
    pub explanation: Vec<String>,
}

type PendingTuple = (
    i64,
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    String,
);

impl Store {
    /// Every delivery still `pending`, by recipient and id.
    pub async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        let sql = "SELECT d.id, d.alert_id, d.revision, d.recipient, d.role, d.kind, a.rule, a.severity, \
                   a.family_id, a.school_urn, a.locality, a.unrouted, a.raised_at, a.explanation \
                   FROM deliveries d JOIN alerts a ON a.id = d.alert_id \
                   WHERE d.status = 'pending' ORDER BY d.recipient, d.id";
        let rows: Vec<PendingTuple> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        let aliases = self.family_alias_map().await?;
        rows.into_iter()
            .map(|t| {
                let corrupt = |what: &str, value: &str| {
                    StoreError::Corrupt(format!("delivery {}: {what} {value:?}", t.0))
                };
                Ok(PendingDelivery {
                    id: t.0,
                    alert_id: t.1,
                    revision: t.2,
                    role: Role::parse(&t.4).ok_or_else(|| corrupt("role", &t.4))?,
                    kind: DeliveryKind::parse(&t.5).ok_or_else(|| corrupt("kind", &t.5))?,
                    rule: RuleId::parse(&t.6).ok_or_else(|| corrupt("rule", &t.6))?,
                    severity: Severity::parse(&t.7).ok_or_else(|| corrupt("severity", &t.7))?,
                    recipient: t.3,
                    family_id: t.8.map(|f| follow(f, &aliases)),
                    school_urn: t.9,
                    locality: t.10,
                    unrouted: t.11,
                    raised_at: t.12,
                    explanation: serde_json::from_str(&t.13).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The facts behind these alerts (every revision), in a stable order.
    pub async fn digest_facts(&self, alert_ids: &[i64]) -> Result<Vec<DigestFact>, StoreError> {
        let aliases = person_alias_map(self).await?;
        let mut out = Vec::new();
        for chunk in alert_ids.chunks(IN_CHUNK) {
            let rows: Vec<(i64, i64, String, String, Option<i64>)> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT alert_id, revision, record_kind, record_id, person_id FROM alert_facts \
                     WHERE alert_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(") ORDER BY alert_id, revision, record_kind, record_id, fact");
                qb.build_query_as().fetch_all(p).await
            })?;
            out.extend(rows.into_iter().map(|t| DigestFact {
                alert_id: t.0,
                revision: t.1,
                record_kind: t.2,
                record_id: t.3,
                person_id: t.4.map(|p| follow(p, &aliases)),
            }));
        }
        Ok(out)
    }

    /// Names, date of birth and address of each person, from their fullest and
    /// newest mention. Persons without a mention are left out.
    pub async fn person_details(
        &self,
        person_ids: &[i64],
    ) -> Result<HashMap<i64, PersonDetails>, StoreError> {
        type Row = (
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<NaiveDate>,
            Option<String>,
            Option<String>,
        );
        let mut best: HashMap<i64, (usize, i64, PersonDetails)> = HashMap::new();
        for chunk in person_ids.chunks(IN_CHUNK) {
            let rows: Vec<Row> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT mp.person_id, m.id, m.forename, m.surname, m.dob, m.address_line1, m.postcode \
                     FROM mention_persons mp JOIN mentions m ON m.id = mp.mention_id WHERE mp.person_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(p).await
            })?;
            for (person, mention, forename, surname, dob, address, postcode) in rows {
                let d = PersonDetails {
                    person_id: person,
                    forename: forename.filter(|s| !s.trim().is_empty()),
                    surname: surname.filter(|s| !s.trim().is_empty()),
                    dob,
                    address_line1: address.filter(|s| !s.trim().is_empty()),
                    postcode: postcode.filter(|s| !s.trim().is_empty()),
                };
                let score = [
                    d.forename.is_some(),
                    d.surname.is_some(),
                    d.dob.is_some(),
                    d.address_line1.is_some(),
                ]
                .into_iter()
                .filter(|b| *b)
                .count();
                let better = best
                    .get(&person)
                    .is_none_or(|(s, id, _)| (score, mention) > (*s, *id));
                if better {
                    best.insert(person, (score, mention, d));
                }
            }
        }
        Ok(best.into_iter().map(|(k, (_, _, d))| (k, d)).collect())
    }

    /// Dates of the records behind alerts, by (record kind, record id): the
    /// incident of a police notification, the service of a housing notice, the
    /// referral (and closure) of a case. Attendance facts have no single date.
    pub async fn record_info(
        &self,
        refs: &[(String, String)],
    ) -> Result<HashMap<(String, String), RecordInfo>, StoreError> {
        let mut out = HashMap::new();
        let ids = |kind: &str| -> Vec<String> {
            let mut v: Vec<String> = refs
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, id)| id.clone())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        for chunk in ids("police_da").chunks(IN_CHUNK) {
            let rows: Vec<(String, DateTime<Utc>)> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT notification_id, MIN(incident_at) FROM da_persons WHERE notification_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(id);
                }
                qb.push(") GROUP BY notification_id");
                qb.build_query_as().fetch_all(p).await
            })?;
            for (id, at) in rows {
                let date = at.with_timezone(&chrono_tz::Europe::London).date_naive();
                out.insert(
                    ("police_da".to_string(), id),
                    RecordInfo { date, note: None },
                );
            }
        }
        for chunk in ids("housing").chunks(IN_CHUNK) {
            let rows: Vec<(String, String, NaiveDate)> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT notice_id, notice_type, served_on FROM housing_notices WHERE notice_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(id);
                }
                qb.push(") ORDER BY notice_id, served_on");
                qb.build_query_as().fetch_all(p).await
            })?;
            for (id, kind, served) in rows {
                out.insert(
                    ("housing".to_string(), id),
                    RecordInfo {
                        date: served,
                        note: Some(format!("{} notice", kind.replace('_', " "))),
                    },
                );
            }
        }
        for chunk in ids("assessment").chunks(IN_CHUNK) {
            let rows: Vec<(String, NaiveDate, Option<NaiveDate>)> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT case_id, MIN(referral_date), MAX(closed_on) FROM case_members WHERE case_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(id);
                }
                qb.push(") GROUP BY case_id");
                qb.build_query_as().fetch_all(p).await
            })?;
            for (id, referred, closed) in rows {
                let (date, note) = match closed {
                    Some(c) => (c, Some(format!("referred {referred}, closed {c}"))),
                    None => (referred, Some(format!("referred {referred}"))),
                };
                out.insert(("assessment".to_string(), id), RecordInfo { date, note });
            }
        }
        Ok(out)
    }

    /// Stores a digest and flips its deliveries from `pending` to `queued` (with the
    /// message and the detail level used) in one transaction. A key already in the
    /// outbox (a run that composed the same deliveries) stores nothing new; the
    /// deliveries still pending are attached to the message already there.
    pub async fn enqueue_digest(
        &self,
        message: &NewOutboxMessage<'_>,
        deliveries: &[i64],
        detail: &str,
    ) -> Result<DigestStored, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let outbox = super::outbox::insert_outbox(&mut tx, message).await?;
        let mut flipped = 0u64;
        for chunk in deliveries.chunks(IN_CHUNK) {
            flipped += on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("UPDATE deliveries SET status = 'queued', outbox_id = ");
                qb.push_bind(outbox.id);
                qb.push(", detail = ");
                qb.push_bind(detail);
                qb.push(" WHERE status = 'pending' AND id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(&mut **t).await.map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        Ok(DigestStored { outbox, flipped })
    }

    /// Follows deliveries to their messages: a delivery whose recipient the server
    /// accepted becomes `sent`; one whose recipient was refused, or whose message
    /// failed as a whole, becomes `failed` (and `sent` later if `outbox retry`
    /// gets it through). Each change writes an audit row (`sent` or `failed`) with
    /// the detail level the digest was written at; an alert whose every delivery of
    /// its current revision is sent (or was refused and routed again) goes from
    /// `new` to `sent`. One transaction.
    pub async fn settle_deliveries(&self, now: DateTime<Utc>) -> Result<SettleReport, StoreError> {
        type Row = (
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let mut tx = Tx::begin(&self.pool).await?;
        let find = "SELECT d.id, d.status, o.status, r.status, r.reply, o.last_error, d.detail \
                    FROM deliveries d JOIN outbox o ON o.id = d.outbox_id \
                    LEFT JOIN outbox_recipients r ON r.outbox_id = o.id AND LOWER(r.address) = LOWER(d.recipient) \
                    WHERE d.status IN ('queued', 'failed') AND d.outbox_id IS NOT NULL \
                    AND (r.status IN ('sent', 'failed') OR o.status = 'failed') ORDER BY d.id";
        let rows: Vec<Row> = on_tx!(tx, t => sqlx::query_as(find).fetch_all(&mut **t).await)?;
        let mut report = SettleReport::default();
        let mut alerts: Vec<i64> = Vec::new();
        for (id, status, outbox_status, rstatus, reply, last_error, detail) in rows {
            let to = match (rstatus.as_deref(), outbox_status.as_str()) {
                (Some("sent"), _) => "sent",
                (Some("failed"), _) | (_, "failed") => "failed",
                _ => continue,
            };
            if to == status {
                continue;
            }
            let alert: Option<i64> = on_tx!(tx, t => sqlx::query_scalar(
                "UPDATE deliveries SET status = $2 WHERE id = $1 AND status = $3 RETURNING alert_id")
                .bind(id).bind(to).bind(&status).fetch_optional(&mut **t).await)?;
            let Some(alert) = alert else { continue };
            let reason = if to == "sent" {
                None
            } else {
                Some(
                    reply
                        .or(last_error)
                        .unwrap_or_else(|| "the message failed".to_string()),
                )
            };
            // The routed row holds who, about whom and why: the sent/failed row
            // repeats it with the event, the time and the detail level used.
            on_tx!(tx, t => sqlx::query(
                "INSERT INTO audit_log (at, event, delivery_id, alert_id, revision, rule, recipient, role, family_id, \
                 person_ids, records, detail, reason) \
                 SELECT $1, $2, delivery_id, alert_id, revision, rule, recipient, role, family_id, person_ids, records, \
                 COALESCE($3, detail), COALESCE($4, reason) FROM audit_log \
                 WHERE delivery_id = $5 AND event = 'routed'")
                .bind(now).bind(to).bind(&detail).bind(&reason).bind(id)
                .execute(&mut **t).await.map(|_| ()))?;
            if to == "sent" {
                report.sent += 1;
                alerts.push(alert);
            } else {
                report.failed += 1;
            }
        }
        alerts.sort_unstable();
        alerts.dedup();
        for chunk in alerts.chunks(IN_CHUNK) {
            report.alerts_sent += on_tx!(tx, t => {
                let mut qb = QueryBuilder::new(
                    "UPDATE alerts SET status = 'sent', updated_at = ",
                );
                qb.push_bind(now);
                qb.push(
                    " WHERE status = 'new' AND NOT EXISTS (SELECT 1 FROM deliveries d \
                     WHERE d.alert_id = alerts.id AND d.revision = alerts.revision AND d.status <> 'sent' \
                     AND d.rerouted_at IS NULL) \
                     AND id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(&mut **t).await.map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Finished feed files the admin list has not been told about, oldest first.
    pub async fn unnotified_files(&self) -> Result<Vec<FileNotice>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            i64,
            i64,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, source, original_name, raw_path, status, reason, rows_read, quarantined, finished_at \
             FROM feed_files WHERE notified_at IS NULL AND status IN ('ingested', 'rejected') ORDER BY id")
            .fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|t| FileNotice {
                id: t.0,
                source: t.1,
                original_name: t.2,
                raw_path: t.3,
                status: t.4,
                reason: t.5,
                rows_read: t.6,
                quarantined: t.7,
                finished_at: t.8,
            })
            .collect())
    }

    /// Marks files as told about. With a message, it is stored in the same
    /// transaction (so a crash never tells twice nor forgets to tell).
    pub async fn mark_files_notified(
        &self,
        message: Option<&NewOutboxMessage<'_>>,
        files: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Option<Enqueued>, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let enqueued = match message {
            Some(m) => Some(super::outbox::insert_outbox(&mut tx, m).await?),
            None => None,
        };
        for chunk in files.chunks(IN_CHUNK) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("UPDATE feed_files SET notified_at = ");
                qb.push_bind(now);
                qb.push(" WHERE notified_at IS NULL AND id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        tx.commit().await?;
        Ok(enqueued)
    }

    /// Every child referral in the case system since `since`, with the live person
    /// id where the child is linked, for the re-referral rate.
    pub async fn child_referrals(&self, since: NaiveDate) -> Result<Vec<Referral>, StoreError> {
        type Row = (
            String,
            String,
            String,
            NaiveDate,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT c.source, c.case_id, c.person_id, c.referral_date, c.locality, mp.person_id \
             FROM case_members c LEFT JOIN mention_persons mp ON mp.mention_id = c.mention_id \
             WHERE LOWER(c.role) = 'child' AND c.referral_date >= $1 \
             ORDER BY c.referral_date, c.source, c.case_id, c.person_id")
            .bind(since).fetch_all(p).await)?;
        let aliases = person_alias_map(self).await?;
        Ok(rows
            .into_iter()
            .map(|(source, case, own, date, locality, person)| Referral {
                person: match person {
                    Some(p) => format!("P{}", follow(p, &aliases)),
                    None => format!("{source}/{own}"),
                },
                case: format!("{source}/{case}"),
                referral_date: date,
                locality,
            })
            .collect())
    }

    /// `closed_too_early` alerts raised since `since` or still open, oldest first.
    pub async fn closed_too_early_alerts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ClosedTooEarly>, StoreError> {
        type Row = (
            i64,
            Option<i64>,
            Option<String>,
            String,
            String,
            DateTime<Utc>,
            String,
        );
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, family_id, locality, severity, status, raised_at, explanation FROM alerts \
             WHERE rule = 'closed_too_early' AND (raised_at >= $1 OR status IN ('new', 'sent')) ORDER BY raised_at, id")
            .bind(since).fetch_all(p).await)?;
        let aliases = self.family_alias_map().await?;
        Ok(rows
            .into_iter()
            .map(|t| ClosedTooEarly {
                alert_id: t.0,
                family_id: t.1.map(|f| follow(f, &aliases)),
                locality: t.2,
                severity: t.3,
                status: t.4,
                raised_at: t.5,
                explanation: serde_json::from_str(&t.6).unwrap_or_default(),
            })
            .collect())
    }

    /// Deliveries per status, for tests and `status`.
    pub async fn delivery_counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetch_all(p).await)?;
        Ok(rows.into_iter().collect())
    }
}

impl Store {
    /// For `kinlink-bench mail` (bench/src/mail.rs): `recipients` recipients with two alerts each (a DA
    /// notification and an eviction risk, each with a fact naming a person with a
    /// mention) and one pending delivery per alert, with their routed audit rows.
    /// Fictional names; ids start after whatever is there.
    pub async fn seed_bench_deliveries(
        &self,
        recipients: usize,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let file: i64 = on_tx!(tx, t => sqlx::query_scalar(
            "INSERT INTO feed_files (source, kind, original_name, raw_path, origin, sha256, size, fetched_at, status, finished_at, notified_at) \
             VALUES ('bench', 'police_da', 'bench.csv', 'bench.csv', 'bench', 'bench', 0, $1, 'ingested', $1, $1) RETURNING id")
            .bind(now).fetch_one(&mut **t).await)?;
        let base: i64 = on_tx!(tx, t => sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM persons").fetch_one(&mut **t).await)?;
        let today = now.date_naive();
        for chunk_start in (0..recipients).step_by(200) {
            let chunk: Vec<usize> = (chunk_start..recipients.min(chunk_start + 200)).collect();
            for i in &chunk {
                let i = *i as i64;
                let person: i64 = on_tx!(tx, t => sqlx::query_scalar(
                    "INSERT INTO persons (id, created_at) VALUES ($1, $2) RETURNING id")
                    .bind(base + i + 1).bind(now).fetch_one(&mut **t).await)?;
                let mention: i64 = on_tx!(tx, t => sqlx::query_scalar(
                    "INSERT INTO mentions (source, kind, mention_key, role, forename, surname, dob, address_line1, postcode, first_file_id, last_file_id, identity_file_id) \
                     VALUES ('bench', 'police_da', $1, 'child', 'Alex', $2, $3, $4, 'M7 1AA', $5, $5, $5) RETURNING id")
                    .bind(format!("B{i}")).bind(format!("Bench{i}"))
                    .bind(today - chrono::Duration::days(3000 + i % 2000))
                    .bind(format!("{} Bench Street", i % 300 + 1)).bind(file)
                    .fetch_one(&mut **t).await)?;
                on_tx!(tx, t => sqlx::query("INSERT INTO mention_persons (mention_id, person_id) VALUES ($1, $2)")
                    .bind(mention).bind(person).execute(&mut **t).await.map(|_| ()))?;
                let recipient = format!("dv{i}@example.gov.uk");
                for (rule, kind, record) in [
                    ("da_notification", "police_da", format!("N{i}")),
                    ("eviction_risk", "housing", format!("H{i}")),
                ] {
                    let alert: i64 = on_tx!(tx, t => sqlx::query_scalar(
                        "INSERT INTO alerts (rule, subject, fingerprint, family_id, locality, severity, status, revision, raised_at, raised_on, updated_at, explanation) \
                         VALUES ($1, $2, $3, $4, 'North', 'priority', 'new', 1, $5, $6, $5, $7) RETURNING id")
                        .bind(rule).bind(format!("family:{i}")).bind(format!("bench:{rule}:{i}")).bind(i)
                        .bind(now).bind(today)
                        .bind("[\"Bench alert: thresholds and counts, no personal details.\"]")
                        .fetch_one(&mut **t).await)?;
                    on_tx!(tx, t => sqlx::query(
                        "INSERT INTO alert_facts (alert_id, fact, episode, record_kind, record_id, person_id, revision) VALUES ($1, $2, '', $3, $4, $5, 1)")
                        .bind(alert).bind(format!("{kind}:bench/{record}")).bind(kind).bind(&record).bind(person)
                        .execute(&mut **t).await.map(|_| ()))?;
                    let delivery: i64 = on_tx!(tx, t => sqlx::query_scalar(
                        "INSERT INTO deliveries (alert_id, revision, recipient, role, kind, status, created_at) \
                         VALUES ($1, 1, $2, 'dv_champion', 'new', 'pending', $3) RETURNING id")
                        .bind(alert).bind(&recipient).bind(now).fetch_one(&mut **t).await)?;
                    on_tx!(tx, t => sqlx::query(
                        "INSERT INTO audit_log (at, event, delivery_id, alert_id, revision, rule, recipient, role, family_id, person_ids, records, detail, reason) \
                         VALUES ($1, 'routed', $2, $3, 1, $4, $5, 'dv_champion', $6, $7, '[]', 'minimal', 'bench')")
                        .bind(now).bind(delivery).bind(alert).bind(rule).bind(&recipient).bind(i)
                        .bind(format!("[{person}]"))
                        .execute(&mut **t).await.map(|_| ()))?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn person_alias_map(store: &Store) -> Result<HashMap<i64, i64>, StoreError> {
    // merged_into: every alias sets it, and a person id an undone review decision
    // made keeps it without an alias.
    let rows: Vec<(i64, i64)> = on_pool!(store, p => sqlx::query_as(
        "SELECT id, merged_into FROM persons WHERE merged_into IS NOT NULL").fetch_all(p).await)?;
    Ok(rows.into_iter().collect())
}
