//! Deliveries refused for good, routed again once the config names someone else
//! for their role: the reads and the one write behind `mail::reroute`.
//!
//! A delivery is *refused* when it is `failed` because its message's server refused
//! its recipient with a 5xx, or the message failed as a whole (given up, parked),
//! and `outbox retry` has not queued that recipient again. Re-routing it is one
//! transaction: its message's row is locked first (as `outbox retry` locks it), the
//! delivery is marked `rerouted_at`, the message's pending rows for that address
//! are failed (so no retry of the message sends it there), a delivery of the same
//! alert revision and role is written for each address the config names now —
//! unless that address already has one (the unique key) — each with a `routed`
//! audit row, and the refused delivery gets a `rerouted` audit row.
//!
//! Invariant: an alert revision reaches an address at most once (the deliveries'
//! unique key); a re-routed delivery's old address is never sent its message
//! again, by a drain or by `outbox retry`.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, Tx};

/// A refused delivery whose alert is still open to be told (`new` or `sent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedDelivery {
    pub id: i64,
    pub alert_id: i64,
    pub revision: i64,
    pub recipient: String,
    pub role: String,
    pub outbox_id: i64,
    /// The alert's locality and school, as routing stored them.
    pub locality: Option<String>,
    pub school_urn: Option<i64>,
    /// The server's reply refusing it, or why its message failed.
    pub reason: Option<String>,
}

/// One re-route to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reroute {
    pub delivery: i64,
    /// The addresses the config names for the role now.
    pub to: Vec<String>,
    /// Where the config names them, e.g. `dv_champions of North`.
    pub by: String,
}

/// What one re-route wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rerouted {
    pub delivery: i64,
    pub alert_id: i64,
    /// New deliveries written (addresses that had none for this alert revision).
    pub new_deliveries: Vec<i64>,
}

const REFUSED: &str = "d.status = 'failed' AND d.rerouted_at IS NULL AND d.outbox_id IS NOT NULL \
     AND EXISTS (SELECT 1 FROM outbox_recipients r JOIN outbox o ON o.id = r.outbox_id \
                 WHERE r.outbox_id = d.outbox_id AND LOWER(r.address) = LOWER(d.recipient) \
                 AND (r.status = 'failed' OR (r.status = 'pending' AND o.status = 'failed')))";

impl Store {
    /// Every refused delivery of an alert still `new` or `sent` (an acknowledged
    /// alert was taken up by someone, a resolved one is over), oldest first;
    /// with `outbox`, only that message's.
    pub async fn refused_deliveries(
        &self,
        outbox: Option<i64>,
    ) -> Result<Vec<RefusedDelivery>, StoreError> {
        let sql = format!(
            "SELECT d.id, d.alert_id, d.revision, d.recipient, d.role, d.outbox_id, a.locality, a.school_urn, \
             (SELECT COALESCE(r.reply, o.last_error) FROM outbox_recipients r JOIN outbox o ON o.id = r.outbox_id \
              WHERE r.outbox_id = d.outbox_id AND LOWER(r.address) = LOWER(d.recipient) ORDER BY r.position LIMIT 1) \
             FROM deliveries d JOIN alerts a ON a.id = d.alert_id \
             WHERE {REFUSED} AND a.status IN ('new', 'sent') AND ($1 IS NULL OR d.outbox_id = $1) \
             ORDER BY d.id"
        );
        type Row = (
            i64,
            i64,
            i64,
            String,
            String,
            i64,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(outbox).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|t| RefusedDelivery {
                id: t.0,
                alert_id: t.1,
                revision: t.2,
                recipient: t.3,
                role: t.4,
                outbox_id: t.5,
                locality: t.6,
                school_urn: t.7,
                reason: t.8,
            })
            .collect())
    }

    /// Writes one re-route (see the module doc) in one transaction. `None` when the
    /// delivery is no longer refused (another run re-routed it, or `outbox retry`
    /// queued its recipient again meanwhile): nothing is changed.
    pub async fn reroute_delivery(
        &self,
        reroute: &Reroute,
        now: DateTime<Utc>,
    ) -> Result<Option<Rerouted>, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        // The message's row first, as `outbox retry` takes it: the two never
        // interleave on one message.
        let locked: Option<String> = on_tx!(tx, t => sqlx::query_scalar(
                "UPDATE outbox SET status = status \
                 WHERE id = (SELECT outbox_id FROM deliveries WHERE id = $1) RETURNING status")
            .bind(reroute.delivery)
            .fetch_optional(&mut **t)
            .await)?;
        if locked.is_none() {
            return Ok(None);
        }
        let mark = format!(
            "UPDATE deliveries SET rerouted_at = $2 WHERE id = $1 AND {} \
             RETURNING alert_id, revision, recipient, role, kind, outbox_id",
            REFUSED.replace("d.", "deliveries.")
        );
        let row: Option<(i64, i64, String, String, String, i64)> = on_tx!(tx, t => sqlx::query_as(&mark)
            .bind(reroute.delivery)
            .bind(now)
            .fetch_optional(&mut **t)
            .await)?;
        let Some((alert_id, revision, old, role, kind, outbox_id)) = row else {
            return Ok(None);
        };
        // A message failed as a whole keeps its recipients pending; failing this
        // one's rows means no `outbox retry` of it ever reaches the old address.
        on_tx!(tx, t => sqlx::query(
                "UPDATE outbox_recipients SET status = 'failed', \
                 reply = COALESCE(reply, 'its alerts were routed again to the address the config names now') \
                 WHERE outbox_id = $1 AND LOWER(address) = LOWER($2) AND status = 'pending'")
            .bind(outbox_id)
            .bind(&old)
            .execute(&mut **t)
            .await
            .map(|_| ()))?;
        let mut new_deliveries = Vec::new();
        let mut already = Vec::new();
        for to in &reroute.to {
            let id: Option<i64> = on_tx!(tx, t => sqlx::query_scalar(
                    "INSERT INTO deliveries (alert_id, revision, recipient, role, kind, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6) \
                     ON CONFLICT (alert_id, revision, recipient, role) DO NOTHING RETURNING id")
                .bind(alert_id)
                .bind(revision)
                .bind(to)
                .bind(&role)
                .bind(&kind)
                .bind(now)
                .fetch_optional(&mut **t)
                .await)?;
            let Some(id) = id else {
                already.push(to.as_str());
                continue;
            };
            let why = format!(
                "{} (routed again: delivery #{} to {old} was refused for good and the config no longer names that address)",
                reroute.by, reroute.delivery
            );
            copy_audit(
                &mut tx,
                reroute.delivery,
                "routed",
                Some(id),
                Some(to),
                &why,
                now,
            )
            .await?;
            new_deliveries.push(id);
        }
        let mut why = format!(
            "refused for good; {old} is no longer among the {}",
            reroute.by
        );
        if !new_deliveries.is_empty() {
            let to: Vec<&str> = reroute
                .to
                .iter()
                .map(String::as_str)
                .filter(|a| !already.contains(a))
                .collect();
            why.push_str(&format!(
                "; routed again to {} (deliver{} {})",
                to.join(", "),
                if new_deliveries.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                new_deliveries
                    .iter()
                    .map(|d| format!("#{d}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !already.is_empty() {
            why.push_str(&format!("; {} already had it", already.join(", ")));
        }
        copy_audit(&mut tx, reroute.delivery, "rerouted", None, None, &why, now).await?;
        // With no new delivery the alert may be complete now.
        on_tx!(tx, t => sqlx::query(
                "UPDATE alerts SET status = 'sent', updated_at = $2 WHERE id = $1 AND status = 'new' \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = alerts.id \
                 AND d.revision = alerts.revision AND d.status <> 'sent' AND d.rerouted_at IS NULL)")
            .bind(alert_id)
            .bind(now)
            .execute(&mut **t)
            .await
            .map(|_| ()))?;
        tx.commit().await?;
        Ok(Some(Rerouted {
            delivery: reroute.delivery,
            alert_id,
            new_deliveries,
        }))
    }
}

/// An audit row for `event`, copied from the `routed` row of `from` (who, about
/// whom, which records), for another delivery and recipient when given.
async fn copy_audit(
    tx: &mut Tx,
    from: i64,
    event: &str,
    delivery: Option<i64>,
    recipient: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(*tx, t => sqlx::query(
            "INSERT INTO audit_log (at, event, delivery_id, alert_id, revision, rule, recipient, role, family_id, \
             person_ids, records, detail, reason) \
             SELECT $1, $2, COALESCE($3, delivery_id), alert_id, revision, rule, COALESCE($4, recipient), role, \
             family_id, person_ids, records, detail, $5 FROM audit_log \
             WHERE delivery_id = $6 AND event = 'routed'")
        .bind(now)
        .bind(event)
        .bind(delivery)
        .bind(recipient)
        .bind(reason)
        .bind(from)
        .execute(&mut **t)
        .await
        .map(|_| ()))?;
    Ok(())
}
