//! The review queue in the store: `review list` with what ranks each pair, the
//! facts a decision is checked against and previewed with, recording a decision,
//! and withdrawing one (`review undo`).
//!
//! Invariant: a decision and its audit row (`review_decisions`) are written in one
//! transaction, after the caller's check of the facts read in that same
//! transaction; a refused decision writes nothing.
//! Invariant: a decision row is never deleted; a withdrawal is recorded on it.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use super::identity::{explain_mention, ExplainTuple, EXPLAIN_COLUMNS};
use super::{ExplainMention, Store, StoreError, Tx};
use crate::link::Verdict;

/// Alert statuses that count as open for ranking the queue.
const OPEN_ALERT: &str = "('new', 'sent', 'acknowledged')";

/// One review-queue row for `review list`, with what ranks it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReviewRow {
    pub a: i64,
    pub b: i64,
    pub probability: f64,
    pub evidence: String,
    pub status: String,
    /// Who decided it and when (decided rows).
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// An open alert (new, sent or acknowledged) is about the family of either
    /// mention's person.
    pub open_alert: bool,
    /// Mentions the decision would move: those of the two persons (one person's,
    /// when both mentions are already in it).
    pub mentions_moved: i64,
    pub a_mention: ExplainMention,
    pub b_mention: ExplainMention,
}

/// A decision as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecisionRecord {
    pub id: i64,
    pub a: i64,
    pub b: i64,
    #[serde(serialize_with = "verdict_status")]
    pub verdict: Verdict,
    pub by: String,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
    /// The pair was pending in the queue when decided (else `--force`).
    pub queued: bool,
    /// A link run has applied it.
    pub applied: bool,
    /// Who withdrew it and when, if someone did.
    pub withdrawn: Option<(String, DateTime<Utc>)>,
}

fn verdict_status<S: serde::Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.status())
}

type DecisionTuple = (
    i64,
    i64,
    i64,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    bool,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

const DECISION_COLUMNS: &str = "id, a, b, verdict, decided_by, decided_at, note, queued, \
     applied_at, withdrawn_by, withdrawn_at";

fn decision(t: DecisionTuple) -> DecisionRecord {
    DecisionRecord {
        id: t.0,
        a: t.1,
        b: t.2,
        verdict: if t.3 == "accepted" {
            Verdict::Accept
        } else {
            Verdict::Reject
        },
        by: t.4,
        at: t.5,
        note: t.6,
        queued: t.7,
        applied: t.8.is_some(),
        withdrawn: t.9.zip(t.10),
    }
}

/// One side of a pair as a reviewer sees it before deciding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairSide {
    pub mention: ExplainMention,
    /// The feed file the mention's latest values came from, and when it was fetched.
    pub file: Option<(String, DateTime<Utc>)>,
    /// The mention's person (none before its first link run).
    pub person: Option<i64>,
    /// The person's mentions, ascending (just this one when not linked yet).
    pub person_mentions: Vec<i64>,
    pub family: Option<i64>,
    pub family_persons: i64,
    pub family_mentions: i64,
}

/// Why the linker would never join the two sides of a pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Apart {
    /// Two mentions, one on each side, with different valid UPNs.
    Upn { a: i64, b: i64 },
    /// Two mentions, one on each side, with different valid NHS numbers.
    Nhs { a: i64, b: i64 },
    /// Two mentions, one on each side, named as two people in one police notification.
    Notification { a: i64, b: i64 },
    /// A standing rejection between a mention on each side.
    Rejected(DecisionRecord),
}

/// Everything a decision on a pair is checked against and previewed with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairFacts {
    pub a: PairSide,
    pub b: PairSide,
    /// The pair's queue row: `pending`, `accepted` or `rejected`; `None` when the
    /// pair is not in the queue.
    pub queue_status: Option<String>,
    pub probability: Option<f64>,
    /// The standing (not withdrawn) decision on the pair.
    pub decision: Option<DecisionRecord>,
    /// The stored link between the two: (basis, band).
    pub link: Option<(String, String)>,
    /// Why the linker would never join the two persons (empty when it might).
    pub apart: Vec<Apart>,
    /// Standing accepted decisions that chain the two mentions together.
    pub accepted_path: Vec<DecisionRecord>,
}

impl PairFacts {
    /// The two mentions are in one person now.
    pub fn same_person(&self) -> bool {
        self.a.person.is_some() && self.a.person == self.b.person
    }
}

/// The facts of a pair, or the ids that are no mention.
#[derive(Debug, Clone, PartialEq)]
pub enum PairLookup {
    Found(Box<PairFacts>),
    Missing(Vec<i64>),
}

/// A decision to record.
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub a: i64,
    pub b: i64,
    pub verdict: Verdict,
    pub by: &'a str,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// What recording a decision did.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided<R> {
    /// Recorded, with this decision id.
    Recorded(i64, Box<PairFacts>),
    /// The caller's check refused it: nothing written.
    Refused(R),
    /// No mention has these ids: nothing written.
    Missing(Vec<i64>),
}

/// A withdrawal to record.
#[derive(Debug, Clone)]
pub struct Withdrawal<'a> {
    pub a: i64,
    pub b: i64,
    pub by: &'a str,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// What `review undo` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Undone {
    /// The decision is withdrawn. `persons` and `families`: the ids the next link
    /// run puts back as they were before the decision (those whose mentions changed
    /// since; empty when no run applied it).
    Withdrawn {
        decision: DecisionRecord,
        persons: Vec<i64>,
        families: Vec<i64>,
        /// The run that applied it kept the ids before it (decisions recorded
        /// before kinlink kept them have none).
        kept_ids: bool,
    },
    /// The pair has no standing decision: its queue status (`pending`, or `None`
    /// when not queued) and its last withdrawn decision, if any. Nothing written.
    NothingToUndo {
        queue_status: Option<String>,
        last_withdrawn: Option<DecisionRecord>,
    },
    /// No mention has these ids: nothing written.
    Missing(Vec<i64>),
}

fn ordered(a: i64, b: i64) -> (i64, i64) {
    (a.min(b), a.max(b))
}

/// `1, 2, 3` for an SQL `IN` list: ids are integers, safe to inline.
fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Review rows ranked by impact: pairs behind an open alert first, then by the
    /// mentions the decision would move, then by probability. `all = false` lists
    /// only pending pairs; with `all`, decided ones follow the pending ones.
    pub async fn review_rows(&self, all: bool) -> Result<Vec<ReviewRow>, StoreError> {
        type Row = (
            i64,
            i64,
            f64,
            String,
            String,
            Option<String>,
            Option<DateTime<Utc>>,
        );
        let sql = format!(
            "SELECT a, b, probability, evidence, status, decided_by, decided_at FROM review_queue {}",
            if all { "" } else { "WHERE status = 'pending'" }
        );
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
        let mut ids: Vec<i64> = rows.iter().flat_map(|r| [r.0, r.1]).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut mentions: HashMap<i64, ExplainMention> = HashMap::new();
        let mut person_of: HashMap<i64, i64> = HashMap::new();
        for chunk in ids.chunks(500) {
            let list = id_list(chunk);
            let sql = format!("SELECT {EXPLAIN_COLUMNS} FROM mentions m WHERE m.id IN ({list})");
            let found: Vec<ExplainTuple> =
                on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
            mentions.extend(found.into_iter().map(|t| (t.0, explain_mention(t))));
            let sql = format!(
                "SELECT mention_id, person_id FROM mention_persons WHERE mention_id IN ({list})"
            );
            let found: Vec<(i64, i64)> =
                on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
            person_of.extend(found);
        }
        let mut persons: Vec<i64> = person_of.values().copied().collect();
        persons.sort_unstable();
        persons.dedup();
        let mut size: HashMap<i64, i64> = HashMap::new();
        let mut family_of: HashMap<i64, i64> = HashMap::new();
        for chunk in persons.chunks(500) {
            let list = id_list(chunk);
            let sql = format!(
                "SELECT person_id, COUNT(*) FROM mention_persons WHERE person_id IN ({list}) GROUP BY person_id"
            );
            let found: Vec<(i64, i64)> =
                on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
            size.extend(found);
            let sql = format!(
                "SELECT person_id, family_id FROM family_members WHERE person_id IN ({list})"
            );
            let found: Vec<(i64, i64)> =
                on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
            family_of.extend(found);
        }
        let alerted = self.families_with_open_alerts().await?;
        let mut out = Vec::with_capacity(rows.len());
        for (a, b, probability, evidence, status, decided_by, decided_at) in rows {
            let (Some(a_mention), Some(b_mention)) =
                (mentions.get(&a).cloned(), mentions.get(&b).cloned())
            else {
                return Err(StoreError::Corrupt(format!(
                    "review pair {a} ~ {b} names a mention that is not stored"
                )));
            };
            let (pa, pb) = (person_of.get(&a), person_of.get(&b));
            let side = |p: Option<&i64>| p.and_then(|p| size.get(p)).copied().unwrap_or(1);
            let mentions_moved = if pa.is_some() && pa == pb {
                side(pa)
            } else {
                side(pa) + side(pb)
            };
            let open_alert = [pa, pb]
                .into_iter()
                .flatten()
                .filter_map(|p| family_of.get(p))
                .any(|f| alerted.contains(f));
            out.push(ReviewRow {
                a,
                b,
                probability,
                evidence,
                status,
                decided_by,
                decided_at,
                open_alert,
                mentions_moved,
                a_mention,
                b_mention,
            });
        }
        out.sort_by(|x, y| {
            (x.status != "pending")
                .cmp(&(y.status != "pending"))
                .then(y.open_alert.cmp(&x.open_alert))
                .then(y.mentions_moved.cmp(&x.mentions_moved))
                .then(y.probability.total_cmp(&x.probability))
                .then((x.a, x.b).cmp(&(y.a, y.b)))
        });
        Ok(out)
    }

    /// The live family ids that an open alert is about (an alert raised on a family
    /// since merged counts for the family it was merged into).
    async fn families_with_open_alerts(&self) -> Result<HashSet<i64>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT family_id FROM alerts WHERE status IN {OPEN_ALERT} AND family_id IS NOT NULL"
        );
        let ids: Vec<i64> = on_pool!(self, p => sqlx::query_scalar(&sql).fetch_all(p).await)?;
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let aliases = self.family_alias_map().await?;
        Ok(ids
            .into_iter()
            .map(|f| super::alerts::follow(f, &aliases))
            .collect())
    }

    /// One mention by id.
    pub async fn mention(&self, id: i64) -> Result<ExplainMention, StoreError> {
        let sql = format!("SELECT {EXPLAIN_COLUMNS} FROM mentions m WHERE m.id = $1");
        let row: Option<ExplainTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?;
        row.map(explain_mention)
            .ok_or_else(|| StoreError::NotFound(format!("mention {id}")))
    }

    /// What a decision on the pair would be checked against and would change.
    pub async fn pair_facts(&self, a: i64, b: i64) -> Result<PairLookup, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let facts = pair_facts(&mut tx, a, b).await;
        // Read only: dropping the transaction rolls it back.
        drop(tx);
        facts
    }

    /// Records a decision on a pair in one transaction, if `check` (given the facts
    /// read in that transaction) finds nothing against it. The next `link` applies it.
    pub async fn decide<R>(
        &self,
        d: &NewDecision<'_>,
        check: impl FnOnce(&PairFacts) -> Option<R>,
    ) -> Result<Decided<R>, StoreError> {
        let (a, b) = ordered(d.a, d.b);
        let mut tx = Tx::begin(&self.pool).await?;
        let facts = match pair_facts(&mut tx, a, b).await? {
            PairLookup::Missing(ids) => return Ok(Decided::Missing(ids)),
            PairLookup::Found(f) => f,
        };
        if let Some(r) = check(&facts) {
            return Ok(Decided::Refused(r));
        }
        let queued = facts.queue_status.as_deref() == Some("pending");
        let known: Option<(f64, String)> = on_tx!(tx, t => sqlx::query_as(
            "SELECT probability, evidence FROM links WHERE a = $1 AND b = $2")
            .bind(a).bind(b).fetch_optional(&mut **t).await)?;
        let (probability, evidence) = known.unwrap_or((0.0, String::new()));
        let status = d.verdict.status();
        on_tx!(tx, t => sqlx::query(
            "INSERT INTO review_queue (a, b, probability, evidence, status, raised_at, decided_by, decided_at, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8) \
             ON CONFLICT (a, b) DO UPDATE SET status = excluded.status, decided_by = excluded.decided_by, \
             decided_at = excluded.decided_at, note = excluded.note")
            .bind(a).bind(b).bind(probability).bind(evidence).bind(status).bind(d.at).bind(d.by).bind(d.note)
            .execute(&mut **t).await.map(|_| ()))?;
        let id: i64 = on_tx!(tx, t => sqlx::query_scalar(
            "INSERT INTO review_decisions (a, b, verdict, decided_by, decided_at, note, queued) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id")
            .bind(a).bind(b).bind(status).bind(d.by).bind(d.at).bind(d.note).bind(queued)
            .fetch_one(&mut **t).await)?;
        tx.commit().await?;
        Ok(Decided::Recorded(id, facts))
    }

    /// Withdraws the standing decision on a pair (`review undo`) in one
    /// transaction: the decision row records who withdrew it; the pair goes back
    /// to pending if it was queued when decided, else leaves the queue. The next
    /// `link` runs as if the decision had never been made and gives back the ids
    /// it changed.
    pub async fn undo_decision(&self, w: &Withdrawal<'_>) -> Result<Undone, StoreError> {
        let (a, b) = ordered(w.a, w.b);
        let mut tx = Tx::begin(&self.pool).await?;
        let missing = missing_mentions(&mut tx, &[a, b]).await?;
        if !missing.is_empty() {
            return Ok(Undone::Missing(missing));
        }
        let standing = standing_decision(&mut tx, a, b).await?;
        let Some(decision) = standing else {
            let queue_status: Option<String> = on_tx!(tx, t => sqlx::query_scalar(
                "SELECT status FROM review_queue WHERE a = $1 AND b = $2")
                .bind(a).bind(b).fetch_optional(&mut **t).await)?;
            let sql = format!(
                "SELECT {DECISION_COLUMNS} FROM review_decisions WHERE a = $1 AND b = $2 \
                 AND withdrawn_at IS NOT NULL ORDER BY id DESC LIMIT 1"
            );
            let last: Option<DecisionTuple> = on_tx!(tx, t => sqlx::query_as(&sql)
                .bind(a).bind(b).fetch_optional(&mut **t).await)?;
            return Ok(Undone::NothingToUndo {
                queue_status,
                last_withdrawn: last.map(decision),
            });
        };
        on_tx!(tx, t => sqlx::query(
            "UPDATE review_decisions SET withdrawn_by = $2, withdrawn_at = $3, withdrawn_note = $4 \
             WHERE id = $1 AND withdrawn_at IS NULL")
            .bind(decision.id).bind(w.by).bind(w.at).bind(w.note)
            .execute(&mut **t).await.map(|_| ()))?;
        let sql = if decision.queued {
            "UPDATE review_queue SET status = 'pending', decided_by = NULL, decided_at = NULL, \
             note = NULL WHERE a = $1 AND b = $2"
        } else {
            "DELETE FROM review_queue WHERE a = $1 AND b = $2"
        };
        on_tx!(tx, t => sqlx::query(sql).bind(a).bind(b).execute(&mut **t).await.map(|_| ()))?;
        // The ids to give back: those of the mentions that hold another now.
        type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let ids: Vec<Row> = on_tx!(tx, t => sqlx::query_as(
            "SELECT d.person_id, d.family_id, mp.person_id, fm.family_id FROM review_decision_ids d \
             LEFT JOIN mention_persons mp ON mp.mention_id = d.mention_id \
             LEFT JOIN family_members fm ON fm.person_id = mp.person_id WHERE d.decision_id = $1")
            .bind(decision.id).fetch_all(&mut **t).await)?;
        tx.commit().await?;
        let mut persons: Vec<i64> = ids
            .iter()
            .filter(|r| r.0 != r.2)
            .filter_map(|r| r.0)
            .collect();
        let mut families: Vec<i64> = ids
            .iter()
            .filter(|r| r.1 != r.3)
            .filter_map(|r| r.1)
            .collect();
        for v in [&mut persons, &mut families] {
            v.sort_unstable();
            v.dedup();
        }
        let decision = DecisionRecord {
            withdrawn: Some((w.by.to_string(), w.at)),
            ..decision
        };
        Ok(Undone::Withdrawn {
            decision,
            persons,
            families,
            kept_ids: !ids.is_empty(),
        })
    }

    /// Every decision on a pair, oldest first (withdrawn ones too).
    pub async fn decision_history(
        &self,
        a: i64,
        b: i64,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let (a, b) = ordered(a, b);
        let sql = format!(
            "SELECT {DECISION_COLUMNS} FROM review_decisions WHERE a = $1 AND b = $2 ORDER BY id"
        );
        let rows: Vec<DecisionTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(a).bind(b).fetch_all(p).await)?;
        Ok(rows.into_iter().map(decision).collect())
    }
}

/// Those of `ids` that are no stored mention.
async fn missing_mentions(tx: &mut Tx, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let sql = format!("SELECT id FROM mentions WHERE id IN ({})", id_list(ids));
    let found: Vec<i64> = on_tx!(*tx, t => sqlx::query_scalar(&sql).fetch_all(&mut **t).await)?;
    let mut missing: Vec<i64> = ids.iter().copied().filter(|i| !found.contains(i)).collect();
    missing.dedup();
    Ok(missing)
}

async fn standing_decision(
    tx: &mut Tx,
    a: i64,
    b: i64,
) -> Result<Option<DecisionRecord>, StoreError> {
    let sql = format!(
        "SELECT {DECISION_COLUMNS} FROM review_decisions WHERE a = $1 AND b = $2 \
         AND withdrawn_at IS NULL ORDER BY id DESC LIMIT 1"
    );
    let row: Option<DecisionTuple> =
        on_tx!(*tx, t => sqlx::query_as(&sql).bind(a).bind(b).fetch_optional(&mut **t).await)?;
    Ok(row.map(decision))
}

async fn pair_side(tx: &mut Tx, id: i64) -> Result<Option<PairSide>, StoreError> {
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<chrono::NaiveDate>,
        Option<String>,
        Option<String>,
        Option<bool>,
        Option<bool>,
        Option<String>,
        Option<DateTime<Utc>>,
    );
    let sql = format!(
        "SELECT {EXPLAIN_COLUMNS}, f.original_name, f.fetched_at FROM mentions m \
         LEFT JOIN feed_files f ON f.id = m.last_file_id WHERE m.id = $1"
    );
    let row: Option<Row> =
        on_tx!(*tx, t => sqlx::query_as(&sql).bind(id).fetch_optional(&mut **t).await)?;
    let Some(r) = row else { return Ok(None) };
    let file = r.12.clone().zip(r.13);
    let mention = explain_mention((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11));
    let person: Option<i64> = on_tx!(*tx, t => sqlx::query_scalar(
        "SELECT person_id FROM mention_persons WHERE mention_id = $1")
        .bind(id).fetch_optional(&mut **t).await)?;
    let mut side = PairSide {
        mention,
        file,
        person,
        person_mentions: vec![id],
        family: None,
        family_persons: 0,
        family_mentions: 0,
    };
    if let Some(p) = person {
        side.person_mentions = on_tx!(*tx, t => sqlx::query_scalar(
            "SELECT mention_id FROM mention_persons WHERE person_id = $1 ORDER BY mention_id")
            .bind(p).fetch_all(&mut **t).await)?;
        side.family = on_tx!(*tx, t => sqlx::query_scalar(
            "SELECT family_id FROM family_members WHERE person_id = $1")
            .bind(p).fetch_optional(&mut **t).await)?;
    }
    if let Some(f) = side.family {
        let (persons, mentions): (i64, i64) = on_tx!(*tx, t => sqlx::query_as(
            "SELECT CAST(COUNT(DISTINCT fm.person_id) AS BIGINT), CAST(COUNT(mp.mention_id) AS BIGINT) \
             FROM family_members fm JOIN mention_persons mp ON mp.person_id = fm.person_id \
             WHERE fm.family_id = $1")
            .bind(f).fetch_one(&mut **t).await)?;
        side.family_persons = persons;
        side.family_mentions = mentions;
    }
    Ok(Some(side))
}

async fn pair_facts(tx: &mut Tx, a: i64, b: i64) -> Result<PairLookup, StoreError> {
    let (a, b) = ordered(a, b);
    let (sa, sb) = (pair_side(tx, a).await?, pair_side(tx, b).await?);
    let (sa, sb) = match (sa, sb) {
        (Some(x), Some(y)) => (x, y),
        (x, y) => {
            let mut missing = Vec::new();
            if x.is_none() {
                missing.push(a);
            }
            if y.is_none() {
                missing.push(b);
            }
            return Ok(PairLookup::Missing(missing));
        }
    };
    let queue: Option<(String, f64)> = on_tx!(*tx, t => sqlx::query_as(
        "SELECT status, probability FROM review_queue WHERE a = $1 AND b = $2")
        .bind(a).bind(b).fetch_optional(&mut **t).await)?;
    let link: Option<(String, String)> = on_tx!(*tx, t => sqlx::query_as(
        "SELECT basis, band FROM links WHERE a = $1 AND b = $2")
        .bind(a).bind(b).fetch_optional(&mut **t).await)?;
    let decision = standing_decision(tx, a, b).await?;
    let mut facts = PairFacts {
        queue_status: queue.as_ref().map(|q| q.0.clone()),
        probability: queue.map(|q| q.1),
        decision,
        link,
        apart: Vec::new(),
        accepted_path: Vec::new(),
        a: sa,
        b: sb,
    };
    if !facts.same_person() {
        facts.apart = apart(tx, &facts.a.person_mentions, &facts.b.person_mentions).await?;
    }
    facts.accepted_path = accepted_path(tx, a, b).await?;
    Ok(PairLookup::Found(Box::new(facts)))
}

/// What keeps two persons (given by their mentions) apart for good, as the
/// linker's cannot-link constraints have it.
async fn apart(tx: &mut Tx, left: &[i64], right: &[i64]) -> Result<Vec<Apart>, StoreError> {
    let all: Vec<i64> = left.iter().chain(right).copied().collect();
    let list = id_list(&all);
    let on_left: HashSet<i64> = left.iter().copied().collect();
    let across = |x: i64, y: i64| on_left.contains(&x) != on_left.contains(&y);
    let mut out = Vec::new();
    for (column, valid) in [("upn", "upn_valid"), ("nhs_number", "nhs_valid")] {
        let sql = format!(
            "SELECT id, {column} FROM mentions WHERE {valid} AND {column} IS NOT NULL AND id IN ({list}) ORDER BY id"
        );
        let keys: Vec<(i64, String)> =
            on_tx!(*tx, t => sqlx::query_as(&sql).fetch_all(&mut **t).await)?;
        let clash = keys.iter().find_map(|(x, kx)| {
            keys.iter()
                .find(|(y, ky)| across(*x, *y) && kx != ky)
                .map(|(y, _)| ordered(*x, *y))
        });
        if let Some((x, y)) = clash {
            out.push(if column == "upn" {
                Apart::Upn { a: x, b: y }
            } else {
                Apart::Nhs { a: x, b: y }
            });
        }
    }
    // The linker keys a police mention's group on the notification id alone.
    let sql = format!(
        "SELECT mention_id, notification_id FROM da_persons WHERE mention_id IN ({list}) ORDER BY mention_id"
    );
    let named: Vec<(i64, String)> =
        on_tx!(*tx, t => sqlx::query_as(&sql).fetch_all(&mut **t).await)?;
    let shared = named.iter().find_map(|(x, nx)| {
        named
            .iter()
            .find(|(y, ny)| across(*x, *y) && nx == ny)
            .map(|(y, _)| ordered(*x, *y))
    });
    if let Some((x, y)) = shared {
        out.push(Apart::Notification { a: x, b: y });
    }
    let sql = format!(
        "SELECT {DECISION_COLUMNS} FROM review_decisions WHERE verdict = 'rejected' \
         AND withdrawn_at IS NULL AND a IN ({list}) AND b IN ({list}) ORDER BY id"
    );
    let rejected: Vec<DecisionTuple> =
        on_tx!(*tx, t => sqlx::query_as(&sql).fetch_all(&mut **t).await)?;
    out.extend(
        rejected
            .into_iter()
            .map(decision)
            .filter(|d| across(d.a, d.b))
            .map(Apart::Rejected),
    );
    Ok(out)
}

/// The standing accepted decisions that join `a` to `b` through other mentions
/// (shortest chain first found), empty when none does.
async fn accepted_path(tx: &mut Tx, a: i64, b: i64) -> Result<Vec<DecisionRecord>, StoreError> {
    let sql = format!(
        "SELECT {DECISION_COLUMNS} FROM review_decisions WHERE verdict = 'accepted' \
         AND withdrawn_at IS NULL ORDER BY id"
    );
    let rows: Vec<DecisionTuple> =
        on_tx!(*tx, t => sqlx::query_as(&sql).fetch_all(&mut **t).await)?;
    let accepted: Vec<DecisionRecord> = rows.into_iter().map(decision).collect();
    let mut edges: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, d) in accepted.iter().enumerate() {
        if (d.a, d.b) == (a, b) {
            continue;
        }
        edges.entry(d.a).or_default().push(i);
        edges.entry(d.b).or_default().push(i);
    }
    // Breadth first from a; `via` remembers the decision that reached each mention.
    let mut via: HashMap<i64, Option<usize>> = HashMap::from([(a, None)]);
    let mut queue = VecDeque::from([a]);
    while let Some(x) = queue.pop_front() {
        if x == b {
            break;
        }
        for &i in edges.get(&x).map(Vec::as_slice).unwrap_or_default() {
            let d = &accepted[i];
            let y = if d.a == x { d.b } else { d.a };
            if let std::collections::hash_map::Entry::Vacant(e) = via.entry(y) {
                e.insert(Some(i));
                queue.push_back(y);
            }
        }
    }
    let mut path = Vec::new();
    let mut at = b;
    while let Some(Some(i)) = via.get(&at) {
        let d = &accepted[*i];
        path.push(d.clone());
        at = if d.a == at { d.b } else { d.a };
    }
    path.reverse();
    Ok(path)
}
