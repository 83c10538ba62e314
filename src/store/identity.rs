//! Identity tables: reading every mention for linking, the state an earlier run
//! left (links, decisions, model, person and family maps), writing one run's
//! result in one transaction, and the reads behind `explain`, `review` and
//! `persons export`.
//!
//! Invariant: a run's result (persons, aliases, links, review rows, model,
//! households, families, flags and the run row) commits together or not at all.
//! Invariant: a decided review row is never re-opened or changed by a run.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::QueryBuilder;

use super::{Store, StoreError, Tx};
use crate::domain::FeedKind;
use crate::link::family::Via;
use crate::link::model::Model;
use crate::link::{Band, Basis, ClusterFlag, Decision, LinkMention, ScoredPair, Verdict};

/// Rows per multi-row statement: far below both engines' bound-parameter limits
/// (at most 7 parameters per row here).
const CHUNK: usize = 2000;
/// Rows per page of `persons export`.
const EXPORT_PAGE: i64 = 20_000;

/// Every mention, as linking and family building need them.
#[derive(Debug, Clone, Default)]
pub struct LinkInput {
    /// By mention id.
    pub mentions: Vec<LinkMention>,
    /// mention id → `source/family_id` of each case it is a member of.
    pub case_families: HashMap<i64, Vec<String>>,
    /// The newest ingested feed file (the run's high-water mark).
    pub max_file_id: i64,
}

/// What earlier runs left behind.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    /// Every stored link (band link or review).
    pub links: Vec<ScoredPair>,
    /// Every review decision.
    pub decisions: Vec<Decision>,
    /// Pending review pairs with their probability and evidence.
    pub pending: HashMap<(i64, i64), (f64, String)>,
    /// Decided review pairs (never re-opened).
    pub decided: HashSet<(i64, i64)>,
    pub model: Option<Model>,
    /// The high-water mark of the last run, `None` before the first.
    pub last_max_file_id: Option<i64>,
    /// Mentions whose identity (names, DOB, sex, address, identifiers, role, school)
    /// files after the last run changed, or never linked. A new attendance mark alone
    /// changes no one.
    pub changed: HashSet<i64>,
    pub mention_person: HashMap<i64, i64>,
    pub next_person_id: i64,
    /// mention id → family id (through the mention's person).
    pub mention_family: HashMap<i64, i64>,
    pub next_family_id: i64,
    /// household address key → id.
    pub households: HashMap<String, i64>,
    pub next_household_id: i64,
    /// person → household.
    pub household_of: HashMap<i64, i64>,
    /// person → (family, via).
    pub family_of: HashMap<i64, (i64, String)>,
    /// Standing decisions no run has applied yet: (decision id, a, b).
    pub unapplied: Vec<(i64, i64, i64)>,
    /// Withdrawn decisions whose ids this run gives back, newest first.
    pub restores: Vec<Restore>,
    /// Person and family ids merged into another (`merged_into` set).
    pub retired_persons: HashSet<i64>,
    pub retired_families: HashSet<i64>,
}

/// A withdrawn decision's ids to give back: the person and family of each mention
/// around it just before the run that applied it (empty when no run applied it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    pub decision: i64,
    /// (mention, person, family).
    pub ids: Vec<(i64, Option<i64>, Option<i64>)>,
}

/// The counts a run records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    pub mentions: i64,
    pub candidate_pairs: i64,
    pub link_pairs: i64,
    pub review_pairs: i64,
    pub persons: i64,
    pub households: i64,
    pub families: i64,
    pub review_pending: i64,
    pub flags: i64,
}

/// A household first seen this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHousehold {
    pub id: i64,
    pub key: String,
    pub uprn: Option<i64>,
    pub address_line1: Option<String>,
    pub postcode: Option<String>,
}

/// One run's changes, computed by the pipeline from the result and [`LinkState`].
#[derive(Debug, Clone, Default)]
pub struct LinkWrite {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub full: bool,
    pub max_file_id: i64,
    pub counts: RunCounts,
    pub new_persons: Vec<i64>,
    pub person_aliases: Vec<(i64, i64)>,
    /// (mention, person) rows that are new or changed.
    pub mention_persons: Vec<(i64, i64)>,
    pub links_delete: Vec<(i64, i64)>,
    pub links_upsert: Vec<ScoredPair>,
    /// Pending review rows to add or refresh (pairs already decided are skipped).
    pub review_upsert: Vec<ScoredPair>,
    /// Pending review rows that no longer need a decision.
    pub review_withdraw: Vec<(i64, i64)>,
    pub model: Option<Model>,
    /// Households first seen this run.
    pub new_households: Vec<NewHousehold>,
    /// (person, household) rows that are new or changed.
    pub household_members: Vec<(i64, i64)>,
    /// Persons no longer in any household.
    pub household_members_delete: Vec<i64>,
    pub new_families: Vec<i64>,
    pub family_aliases: Vec<(i64, i64)>,
    /// (person, family, via) rows that are new or changed.
    pub family_members: Vec<(i64, i64, Via)>,
    /// Persons that no longer exist (merged away): their family rows go.
    pub family_members_delete: Vec<i64>,
    pub flags: Vec<ClusterFlag>,
    /// Decisions applied for the first time this run.
    pub decisions_applied: Vec<i64>,
    /// (decision, mention, person, family) before this run, for the decisions
    /// applied this run: what an undo gives back.
    pub decision_ids: Vec<(i64, i64, Option<i64>, Option<i64>)>,
    /// Withdrawn decisions whose ids this run gave back.
    pub decisions_restored: Vec<i64>,
    /// Merged-away ids in use again (an undone merge): alias and `merged_into` go.
    pub persons_revived: Vec<i64>,
    pub families_revived: Vec<i64>,
    /// `(old, new)`: ids an undone decision had made, now unused; they resolve to
    /// `new` (`merged_into`) without an alias, and are never handed out again.
    pub persons_undone: Vec<(i64, i64)>,
    pub families_undone: Vec<(i64, i64)>,
}

/// A mention as `explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExplainMention {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub mention_key: String,
    pub role: String,
    pub forename: Option<String>,
    pub surname: Option<String>,
    pub dob: Option<NaiveDate>,
    pub address_line1: Option<String>,
    pub postcode: Option<String>,
    pub upn_valid: bool,
    pub nhs_valid: bool,
}

/// A stored link or review pair touching a person's mentions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExplainLink {
    pub a: i64,
    pub b: i64,
    pub basis: String,
    pub probability: f64,
    pub weight: Option<f64>,
    pub band: String,
    pub evidence: String,
    /// `pending`, `accepted`, `rejected` when the pair is in the review queue.
    pub review: Option<String>,
}

/// Everything `explain person` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PersonExplain {
    pub id: i64,
    /// The id asked for, when it was merged into `id`.
    pub asked: i64,
    pub family: Option<i64>,
    pub household: Option<(i64, String)>,
    pub mentions: Vec<ExplainMention>,
    pub links: Vec<ExplainLink>,
}

/// Someone named in a notification of a family member who is not in the family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentContact {
    pub notification_id: String,
    pub person: i64,
    pub role: String,
}

/// Everything `explain family` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FamilyExplain {
    pub id: i64,
    pub asked: i64,
    /// (person, via, the person's mentions).
    pub members: Vec<(i64, String, Vec<ExplainMention>)>,
    /// (household id, address key, member persons).
    pub households: Vec<(i64, String, Vec<i64>)>,
    pub links: Vec<ExplainLink>,
    pub incident_contacts: Vec<IncidentContact>,
}

/// One row of `persons export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub person_id: Option<i64>,
    pub family_id: Option<i64>,
    pub kind: String,
    pub source: String,
    pub mention_key: String,
    pub forename: Option<String>,
    pub surname: Option<String>,
    pub dob: Option<NaiveDate>,
    pub postcode: Option<String>,
}

type MentionTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
);

type LinkTuple = (i64, i64, String, f64, Option<f64>, String, String);

pub(super) type ExplainTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<bool>,
);

pub(super) const EXPLAIN_COLUMNS: &str =
    "m.id, m.source, m.kind, m.mention_key, m.role, m.forename, m.surname, m.dob, \
     m.address_line1, m.postcode, m.upn_valid, m.nhs_valid";

pub(super) fn explain_mention(t: ExplainTuple) -> ExplainMention {
    ExplainMention {
        id: t.0,
        source: t.1,
        kind: t.2,
        mention_key: t.3,
        role: t.4,
        forename: t.5,
        surname: t.6,
        dob: t.7,
        address_line1: t.8,
        postcode: t.9,
        upn_valid: t.10.unwrap_or(false),
        nhs_valid: t.11.unwrap_or(false),
    }
}

fn pair_from(t: LinkTuple) -> ScoredPair {
    ScoredPair {
        a: t.0,
        b: t.1,
        basis: Basis::parse(&t.2).unwrap_or(Basis::Probabilistic),
        probability: t.3,
        weight: t.4.unwrap_or(f64::INFINITY),
        band: Band::parse(&t.5).unwrap_or(Band::Review),
        evidence: t.6,
    }
}

impl Store {
    /// Every mention with its linking fields, the case families and the run's
    /// high-water mark.
    pub async fn link_input(&self) -> Result<LinkInput, StoreError> {
        // Read the mark first: a file committed while we read is seen next run.
        let max_file_id: i64 = on_pool!(self, p => sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM feed_files WHERE status = 'ingested'")
            .fetch_one(p).await)?;
        let sql = "SELECT id, source, kind, mention_key, role, forename, surname, dob, gender, \
                   address_line1, postcode, uprn, CASE WHEN upn_valid THEN upn END, \
                   CASE WHEN nhs_valid THEN nhs_number END, school_urn, last_file_id \
                   FROM mentions ORDER BY id";
        let rows: Vec<MentionTuple> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        let mut seen: HashMap<i64, NaiveDate> = HashMap::new();
        let mut later = |id: i64, d: Option<NaiveDate>| {
            if let Some(d) = d {
                let e = seen.entry(id).or_insert(d);
                if d > *e {
                    *e = d;
                }
            }
        };
        // Kept at ingest (migration 0008), so the marks themselves are not read.
        let marks: Vec<(i64, Option<NaiveDate>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, last_mark_on FROM mentions WHERE last_mark_on IS NOT NULL")
            .fetch_all(p).await)?;
        for (id, d) in marks {
            later(id, d);
        }
        let police: Vec<(i64, String, DateTime<Utc>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT mention_id, notification_id, incident_at FROM da_persons")
            .fetch_all(p).await)?;
        let mut group: HashMap<i64, String> = HashMap::new();
        for (id, n, at) in police {
            later(
                id,
                Some(at.with_timezone(&chrono_tz::Europe::London).date_naive()),
            );
            group.insert(id, n);
        }
        let housing: Vec<(i64, NaiveDate)> = on_pool!(self, p => sqlx::query_as(
            "SELECT mention_id, served_on FROM housing_notices").fetch_all(p).await)?;
        for (id, d) in housing {
            later(id, Some(d));
        }
        type CaseTuple = (
            i64,
            String,
            String,
            NaiveDate,
            Option<NaiveDate>,
            Option<NaiveDate>,
        );
        let cases: Vec<CaseTuple> = on_pool!(self, p => sqlx::query_as(
            "SELECT mention_id, source, family_id, referral_date, opened_on, closed_on FROM case_members")
            .fetch_all(p).await)?;
        let mut case_families: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, source, family, referral, opened, closed) in cases {
            later(id, Some(referral));
            later(id, opened);
            later(id, closed);
            let key = format!("{source}/{family}");
            let list = case_families.entry(id).or_default();
            if !list.contains(&key) {
                list.push(key);
            }
        }
        let conflicted: std::collections::HashSet<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT id FROM mentions WHERE identity_conflict").fetch_all(p).await)?
        .into_iter()
        .collect();
        let mut mentions = Vec::with_capacity(rows.len());
        for r in rows {
            let Ok(kind) = FeedKind::from_str(&r.2) else {
                // A kind this build does not know cannot be linked; it was never written.
                continue;
            };
            mentions.push(LinkMention {
                identity_conflict: conflicted.contains(&r.0),
                id: r.0,
                group: if kind == FeedKind::PoliceDa {
                    group.remove(&r.0)
                } else {
                    None
                },
                seen_on: seen.get(&r.0).copied(),
                source: r.1,
                kind,
                mention_key: r.3,
                role: r.4,
                forename: r.5,
                surname: r.6,
                dob: r.7,
                gender: r.8,
                address_line1: r.9,
                postcode: r.10,
                uprn: r.11,
                upn: r.12,
                nhs_number: r.13,
                school_urn: r.14.and_then(|u| u32::try_from(u).ok()),
            });
        }
        Ok(LinkInput {
            mentions,
            case_families,
            max_file_id,
        })
    }

    /// What earlier runs left behind.
    pub async fn link_state(&self) -> Result<LinkState, StoreError> {
        let mut st = LinkState::default();
        let links: Vec<LinkTuple> = on_pool!(self, p => sqlx::query_as(
            "SELECT a, b, basis, probability, weight, band, evidence FROM links")
            .fetch_all(p).await)?;
        st.links = links.into_iter().map(pair_from).collect();
        let reviews: Vec<(i64, i64, String, f64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT a, b, status, probability, evidence FROM review_queue").fetch_all(p).await)?;
        for (a, b, status, probability, evidence) in reviews {
            match status.as_str() {
                "pending" => {
                    st.pending.insert((a, b), (probability, evidence));
                }
                s => {
                    st.decided.insert((a, b));
                    st.decisions.push(Decision {
                        a,
                        b,
                        verdict: if s == "accepted" {
                            Verdict::Accept
                        } else {
                            Verdict::Reject
                        },
                    });
                }
            }
        }
        let model: Option<String> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT model FROM link_model WHERE id = 1").fetch_optional(p).await)?;
        st.model = model.as_deref().and_then(Model::from_json);
        st.last_max_file_id = on_pool!(self, p => sqlx::query_scalar(
            "SELECT max_file_id FROM link_runs ORDER BY id DESC LIMIT 1").fetch_optional(p).await)?;
        let mark = st.last_max_file_id.unwrap_or(0);
        let changed: Vec<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT m.id FROM mentions m LEFT JOIN mention_persons mp ON mp.mention_id = m.id \
             WHERE m.identity_file_id > $1 OR mp.person_id IS NULL")
            .bind(mark).fetch_all(p).await)?;
        st.changed = changed.into_iter().collect();
        let mp: Vec<(i64, i64, Option<i64>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT mp.mention_id, mp.person_id, fm.family_id FROM mention_persons mp \
             LEFT JOIN family_members fm ON fm.person_id = mp.person_id")
            .fetch_all(p).await)?;
        for (m, person, family) in mp {
            st.mention_person.insert(m, person);
            if let Some(f) = family {
                st.mention_family.insert(m, f);
            }
        }
        let (np, nf, nh): (i64, i64, i64) = on_pool!(self, p => sqlx::query_as(
            "SELECT CAST(COALESCE((SELECT MAX(id) FROM persons), 0) + 1 AS BIGINT), \
                    CAST(COALESCE((SELECT MAX(id) FROM families), 0) + 1 AS BIGINT), \
                    CAST(COALESCE((SELECT MAX(id) FROM households), 0) + 1 AS BIGINT)")
            .fetch_one(p).await)?;
        (st.next_person_id, st.next_family_id, st.next_household_id) = (np, nf, nh);
        let hh: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT address_key, id FROM households").fetch_all(p).await)?;
        st.households = hh.into_iter().collect();
        let hm: Vec<(i64, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT person_id, household_id FROM household_members").fetch_all(p).await)?;
        st.household_of = hm.into_iter().collect();
        let fm: Vec<(i64, i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT person_id, family_id, via FROM family_members").fetch_all(p).await)?;
        st.family_of = fm.into_iter().map(|(p, f, v)| (p, (f, v))).collect();
        self.decision_state(&mut st).await?;
        Ok(st)
    }

    /// The decisions a run must apply or give back, and the retired ids.
    async fn decision_state(&self, st: &mut LinkState) -> Result<(), StoreError> {
        st.unapplied = on_pool!(self, p => sqlx::query_as(
            "SELECT id, a, b FROM review_decisions WHERE applied_at IS NULL AND withdrawn_at IS NULL \
             ORDER BY id").fetch_all(p).await)?;
        let withdrawn: Vec<(i64, i64, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, a, b FROM review_decisions WHERE withdrawn_at IS NOT NULL AND restored_at IS NULL \
             ORDER BY id DESC").fetch_all(p).await)?;
        for (decision, a, b) in withdrawn {
            let ids: Vec<(i64, Option<i64>, Option<i64>)> = on_pool!(self, p => sqlx::query_as(
                "SELECT mention_id, person_id, family_id FROM review_decision_ids \
                 WHERE decision_id = $1 ORDER BY mention_id")
                .bind(decision).fetch_all(p).await)?;
            // The pair and its neighbourhood are compared afresh, as before the
            // decision: an incremental run would otherwise keep what it left.
            st.changed.extend([a, b]);
            st.changed.extend(ids.iter().map(|r| r.0));
            st.restores.push(Restore { decision, ids });
        }
        let persons: Vec<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT id FROM persons WHERE merged_into IS NOT NULL").fetch_all(p).await)?;
        st.retired_persons = persons.into_iter().collect();
        let families: Vec<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT id FROM families WHERE merged_into IS NOT NULL").fetch_all(p).await)?;
        st.retired_families = families.into_iter().collect();
        Ok(())
    }

    /// Writes one run's result in one transaction.
    pub async fn write_link_run(&self, w: &LinkWrite) -> Result<i64, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        write_ids(&mut tx, w).await?;
        write_links_and_review(&mut tx, w).await?;
        write_households_and_families(&mut tx, w).await?;
        write_decisions(&mut tx, w).await?;
        let run_id = write_run(&mut tx, w).await?;
        tx.commit().await?;
        Ok(run_id)
    }

    /// The live id of a person: follows merges. `NotFound` when unknown.
    pub async fn resolve_person(&self, id: i64) -> Result<i64, StoreError> {
        self.resolve(id, "persons", "person").await
    }

    /// The live id of a family: follows merges.
    pub async fn resolve_family(&self, id: i64) -> Result<i64, StoreError> {
        self.resolve(id, "families", "family").await
    }

    /// Follows `merged_into`, which every alias sets and which an id an undone
    /// decision made keeps without an alias.
    async fn resolve(&self, id: i64, table: &str, what: &str) -> Result<i64, StoreError> {
        let sql = format!("SELECT merged_into FROM {table} WHERE id = $1");
        let mut current = id;
        // A chain is at most as long as the number of merges; cap it against a cycle.
        for _ in 0..1000 {
            let row: Option<Option<i64>> = on_pool!(self, p => sqlx::query_scalar(&sql)
                .bind(current).fetch_optional(p).await)?;
            match row {
                None => return Err(StoreError::NotFound(format!("{what} {id}"))),
                Some(Some(n)) if n != current => current = n,
                Some(_) => break,
            }
        }
        Ok(current)
    }

    async fn mentions_where(
        &self,
        clause: &str,
        id: i64,
    ) -> Result<Vec<ExplainMention>, StoreError> {
        let sql = format!(
            "SELECT {EXPLAIN_COLUMNS} FROM mentions m JOIN mention_persons mp ON mp.mention_id = m.id \
             WHERE {clause} ORDER BY m.id"
        );
        let rows: Vec<ExplainTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_all(p).await)?;
        Ok(rows.into_iter().map(explain_mention).collect())
    }

    /// Links and review rows with at least one end among `mentions`.
    async fn links_touching(&self, mentions: &[i64]) -> Result<Vec<ExplainLink>, StoreError> {
        let mut out: Vec<ExplainLink> = Vec::new();
        let mut review: HashMap<(i64, i64), (String, f64, String)> = HashMap::new();
        for chunk in mentions.chunks(CHUNK / 2) {
            let rows: Vec<LinkTuple> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT a, b, basis, probability, weight, band, evidence FROM links WHERE a IN (");
                let mut s = qb.separated(", ");
                for m in chunk { s.push_bind(*m); }
                qb.push(") OR b IN (");
                let mut s = qb.separated(", ");
                for m in chunk { s.push_bind(*m); }
                qb.push(")");
                qb.build_query_as::<LinkTuple>().fetch_all(p).await
            })?;
            for r in rows {
                out.push(ExplainLink {
                    a: r.0,
                    b: r.1,
                    basis: r.2,
                    probability: r.3,
                    weight: r.4,
                    band: r.5,
                    evidence: r.6,
                    review: None,
                });
            }
            let rows: Vec<(i64, i64, String, f64, String)> = on_pool!(self, p => {
                let mut qb = QueryBuilder::new(
                    "SELECT a, b, status, probability, evidence FROM review_queue WHERE a IN (");
                let mut s = qb.separated(", ");
                for m in chunk { s.push_bind(*m); }
                qb.push(") OR b IN (");
                let mut s = qb.separated(", ");
                for m in chunk { s.push_bind(*m); }
                qb.push(")");
                qb.build_query_as::<(i64, i64, String, f64, String)>().fetch_all(p).await
            })?;
            for (a, b, status, probability, evidence) in rows {
                review.insert((a, b), (status, probability, evidence));
            }
        }
        out.sort_by_key(|l| (l.a, l.b));
        out.dedup_by_key(|l| (l.a, l.b));
        for l in &mut out {
            if let Some((status, _, _)) = review.remove(&(l.a, l.b)) {
                l.review = Some(status);
            }
        }
        // Decided pairs no longer among the links (a rejection) are shown too.
        for ((a, b), (status, probability, evidence)) in review {
            out.push(ExplainLink {
                a,
                b,
                basis: "review".into(),
                probability,
                weight: None,
                band: "review".into(),
                evidence,
                review: Some(status),
            });
        }
        out.sort_by_key(|l| (l.a, l.b));
        Ok(out)
    }

    /// Everything about one person (by any id it ever had).
    pub async fn explain_person(&self, asked: i64) -> Result<PersonExplain, StoreError> {
        let id = self.resolve_person(asked).await?;
        let mentions = self.mentions_where("mp.person_id = $1", id).await?;
        let ids: Vec<i64> = mentions.iter().map(|m| m.id).collect();
        let links = self.links_touching(&ids).await?;
        let family: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT family_id FROM family_members WHERE person_id = $1").bind(id).fetch_optional(p).await)?;
        let household: Option<(i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT h.id, h.address_key FROM household_members hm JOIN households h ON h.id = hm.household_id \
             WHERE hm.person_id = $1").bind(id).fetch_optional(p).await)?;
        Ok(PersonExplain {
            id,
            asked,
            family,
            household,
            mentions,
            links,
        })
    }

    /// Everything about one family (by any id it ever had).
    pub async fn explain_family(&self, asked: i64) -> Result<FamilyExplain, StoreError> {
        let id = self.resolve_family(asked).await?;
        let members: Vec<(i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT person_id, via FROM family_members WHERE family_id = $1 ORDER BY person_id")
            .bind(id).fetch_all(p).await)?;
        let mut out = FamilyExplain {
            id,
            asked,
            members: Vec::new(),
            households: Vec::new(),
            links: Vec::new(),
            incident_contacts: Vec::new(),
        };
        let mut all = Vec::new();
        for (person, via) in members {
            let ms = self.mentions_where("mp.person_id = $1", person).await?;
            all.extend(ms.iter().map(|m| m.id));
            out.members.push((person, via, ms));
        }
        let hh: Vec<(i64, String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT h.id, h.address_key, hm.person_id FROM family_members fm \
             JOIN household_members hm ON hm.person_id = fm.person_id \
             JOIN households h ON h.id = hm.household_id WHERE fm.family_id = $1 ORDER BY h.id, hm.person_id")
            .bind(id).fetch_all(p).await)?;
        for (h, key, person) in hh {
            match out.households.last_mut() {
                Some(last) if last.0 == h => last.2.push(person),
                _ => out.households.push((h, key, vec![person])),
            }
        }
        // Links inside the family (between two of its mentions).
        let inside: HashSet<i64> = all.iter().copied().collect();
        out.links = self
            .links_touching(&all)
            .await?
            .into_iter()
            .filter(|l| inside.contains(&l.a) && inside.contains(&l.b))
            .collect();
        let contacts: Vec<(String, i64, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT DISTINCT other.notification_id, omp.person_id, other.role \
             FROM family_members fm \
             JOIN mention_persons mp ON mp.person_id = fm.person_id \
             JOIN da_persons own ON own.mention_id = mp.mention_id \
             JOIN da_persons other ON other.source = own.source AND other.notification_id = own.notification_id \
             JOIN mention_persons omp ON omp.mention_id = other.mention_id \
             LEFT JOIN family_members ofm ON ofm.person_id = omp.person_id \
             WHERE fm.family_id = $1 AND (ofm.family_id IS NULL OR ofm.family_id <> $1) \
             ORDER BY other.notification_id, omp.person_id")
            .bind(id).fetch_all(p).await)?;
        out.incident_contacts = contacts
            .into_iter()
            .map(|(notification_id, person, role)| IncidentContact {
                notification_id,
                person,
                role,
            })
            .collect();
        Ok(out)
    }

    /// Every mention with its person and family, by mention id,
    /// handed to `row` page by page (bounded memory for millions of mentions).
    pub async fn export_persons(
        &self,
        mut row: impl FnMut(ExportRow) -> std::io::Result<()>,
    ) -> Result<usize, ExportError> {
        type Tuple = (
            i64,
            Option<i64>,
            Option<i64>,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<NaiveDate>,
            Option<String>,
        );
        let sql = "SELECT m.id, mp.person_id, fm.family_id, m.kind, m.source, m.mention_key, m.forename, \
                   m.surname, m.dob, m.postcode FROM mentions m \
                   LEFT JOIN mention_persons mp ON mp.mention_id = m.id \
                   LEFT JOIN family_members fm ON fm.person_id = mp.person_id \
                   WHERE m.id > $1 ORDER BY m.id LIMIT $2";
        // Keyset pages by mention id keep memory bounded.
        let mut after = 0i64;
        let mut written = 0usize;
        loop {
            let page: Vec<Tuple> = on_pool!(self, p => sqlx::query_as(sql)
                .bind(after).bind(EXPORT_PAGE).fetch_all(p).await)
            .map_err(StoreError::from)?;
            let Some(last) = page.last() else { break };
            after = last.0;
            for t in page {
                row(ExportRow {
                    person_id: t.1,
                    family_id: t.2,
                    kind: t.3,
                    source: t.4,
                    mention_key: t.5,
                    forename: t.6,
                    surname: t.7,
                    dob: t.8,
                    postcode: t.9,
                })
                .map_err(ExportError::Write)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Figures of the last link run, if any.
    pub async fn last_link_run(&self) -> Result<Option<RunCounts>, StoreError> {
        type Row = (i64, i64, i64, i64, i64, i64, i64, i64, i64);
        let row: Option<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT mentions, candidate_pairs, link_pairs, review_pairs, persons, households, families, \
             review_pending, flags FROM link_runs ORDER BY id DESC LIMIT 1").fetch_optional(p).await)?;
        Ok(row.map(|r| RunCounts {
            mentions: r.0,
            candidate_pairs: r.1,
            link_pairs: r.2,
            review_pairs: r.3,
            persons: r.4,
            households: r.5,
            families: r.6,
            review_pending: r.7,
            flags: r.8,
        }))
    }
}

/// A link run's new persons and families, the aliases of merged ids, and which person each mention is.
async fn write_ids(tx: &mut Tx, w: &LinkWrite) -> Result<(), StoreError> {
    let at = w.finished_at;
    for chunk in w.new_persons.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new("INSERT INTO persons (id, created_at) ");
            qb.push_values(chunk, |mut b, id| {
                b.push_bind(*id).push_bind(at);
            });
            qb.push(" ON CONFLICT (id) DO NOTHING");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    for chunk in w.new_families.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new("INSERT INTO families (id, created_at) ");
            qb.push_values(chunk, |mut b, id| {
                b.push_bind(*id).push_bind(at);
            });
            qb.push(" ON CONFLICT (id) DO NOTHING");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    for (table, aliases, owner) in [
        ("person_aliases", &w.person_aliases, "persons"),
        ("family_aliases", &w.family_aliases, "families"),
    ] {
        for chunk in aliases.chunks(CHUNK) {
            on_tx!(*tx, t => {
                let mut qb = QueryBuilder::new(format!("INSERT INTO {table} (old_id, new_id, at) "));
                qb.push_values(chunk, |mut b, (old, new)| {
                    b.push_bind(*old).push_bind(*new).push_bind(at);
                });
                qb.push(" ON CONFLICT (old_id) DO UPDATE SET new_id = excluded.new_id, at = excluded.at");
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        let sql = format!("UPDATE {owner} SET merged_into = $2 WHERE id = $1");
        for (old, new) in aliases {
            on_tx!(*tx, t => sqlx::query(&sql).bind(*old).bind(*new).execute(&mut **t).await.map(|_| ()))?;
        }
    }
    for chunk in w.mention_persons.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new("INSERT INTO mention_persons (mention_id, person_id) ");
            qb.push_values(chunk, |mut b, (m, p)| {
                b.push_bind(*m).push_bind(*p);
            });
            qb.push(" ON CONFLICT (mention_id) DO UPDATE SET person_id = excluded.person_id");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    Ok(())
}

/// Ids back in use or given up by an undone decision, and the decisions this run
/// applied (with the ids before it) or gave back.
async fn write_decisions(tx: &mut Tx, w: &LinkWrite) -> Result<(), StoreError> {
    let at = w.finished_at;
    for (ids, table, aliases) in [
        (&w.persons_revived, "persons", "person_aliases"),
        (&w.families_revived, "families", "family_aliases"),
    ] {
        let unalias = format!("DELETE FROM {aliases} WHERE old_id = $1");
        let live = format!("UPDATE {table} SET merged_into = NULL WHERE id = $1");
        for id in ids {
            on_tx!(*tx, t => sqlx::query(&unalias).bind(*id).execute(&mut **t).await.map(|_| ()))?;
            on_tx!(*tx, t => sqlx::query(&live).bind(*id).execute(&mut **t).await.map(|_| ()))?;
        }
    }
    for (ids, table) in [
        (&w.persons_undone, "persons"),
        (&w.families_undone, "families"),
    ] {
        let sql = format!("UPDATE {table} SET merged_into = $2 WHERE id = $1");
        for (old, new) in ids {
            on_tx!(*tx, t => sqlx::query(&sql).bind(*old).bind(*new).execute(&mut **t).await.map(|_| ()))?;
        }
    }
    for id in &w.decisions_applied {
        on_tx!(*tx, t => sqlx::query(
            "UPDATE review_decisions SET applied_at = $2 WHERE id = $1 AND applied_at IS NULL")
            .bind(*id).bind(at).execute(&mut **t).await.map(|_| ()))?;
    }
    for chunk in w.decision_ids.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO review_decision_ids (decision_id, mention_id, person_id, family_id) ");
            qb.push_values(chunk, |mut b, (d, m, p, f)| {
                b.push_bind(*d).push_bind(*m).push_bind(*p).push_bind(*f);
            });
            qb.push(" ON CONFLICT (decision_id, mention_id) DO NOTHING");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    for id in &w.decisions_restored {
        on_tx!(*tx, t => sqlx::query(
            "UPDATE review_decisions SET restored_at = $2 WHERE id = $1")
            .bind(*id).bind(at).execute(&mut **t).await.map(|_| ()))?;
    }
    Ok(())
}

/// The links that changed, the review queue's pending pairs (a decided pair keeps its decision) and the model.
async fn write_links_and_review(tx: &mut Tx, w: &LinkWrite) -> Result<(), StoreError> {
    let at = w.finished_at;
    for (a, b) in &w.links_delete {
        on_tx!(*tx, t => sqlx::query("DELETE FROM links WHERE a = $1 AND b = $2")
            .bind(*a).bind(*b).execute(&mut **t).await.map(|_| ()))?;
    }
    for chunk in w.links_upsert.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO links (a, b, basis, probability, weight, band, evidence) ");
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(p.a)
                    .push_bind(p.b)
                    .push_bind(p.basis.as_str())
                    .push_bind(p.probability)
                    .push_bind(p.weight.is_finite().then_some(p.weight))
                    .push_bind(p.band.as_str())
                    .push_bind(p.evidence.clone());
            });
            qb.push(" ON CONFLICT (a, b) DO UPDATE SET basis = excluded.basis, \
                      probability = excluded.probability, weight = excluded.weight, \
                      band = excluded.band, evidence = excluded.evidence");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    for (a, b) in &w.review_withdraw {
        on_tx!(*tx, t => sqlx::query(
            "DELETE FROM review_queue WHERE a = $1 AND b = $2 AND status = 'pending'")
            .bind(*a).bind(*b).execute(&mut **t).await.map(|_| ()))?;
    }
    for chunk in w.review_upsert.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO review_queue (a, b, probability, evidence, status, raised_at) ");
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(p.a)
                    .push_bind(p.b)
                    .push_bind(p.probability)
                    .push_bind(p.evidence.clone())
                    .push_bind("pending")
                    .push_bind(at);
            });
            // A decided pair keeps its decision: only pending rows are refreshed.
            qb.push(" ON CONFLICT (a, b) DO UPDATE SET probability = excluded.probability, \
                      evidence = excluded.evidence WHERE review_queue.status = 'pending'");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    if let Some(model) = &w.model {
        on_tx!(*tx, t => sqlx::query(
            "INSERT INTO link_model (id, model, updated_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at")
            .bind(model.to_json()).bind(at).execute(&mut **t).await.map(|_| ()))?;
    }
    Ok(())
}

/// New households, and household and family memberships that changed.
async fn write_households_and_families(tx: &mut Tx, w: &LinkWrite) -> Result<(), StoreError> {
    for chunk in w.new_households.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO households (id, address_key, uprn, address_line1, postcode) ");
            qb.push_values(chunk, |mut b, h| {
                b.push_bind(h.id)
                    .push_bind(h.key.clone())
                    .push_bind(h.uprn)
                    .push_bind(h.address_line1.clone())
                    .push_bind(h.postcode.clone());
            });
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    for person in &w.household_members_delete {
        on_tx!(*tx, t => sqlx::query("DELETE FROM household_members WHERE person_id = $1")
            .bind(*person).execute(&mut **t).await.map(|_| ()))?;
    }
    for chunk in w.household_members.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new("INSERT INTO household_members (person_id, household_id) ");
            qb.push_values(chunk, |mut b, (p, h)| {
                b.push_bind(*p).push_bind(*h);
            });
            qb.push(" ON CONFLICT (person_id) DO UPDATE SET household_id = excluded.household_id");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    for person in &w.family_members_delete {
        on_tx!(*tx, t => sqlx::query("DELETE FROM family_members WHERE person_id = $1")
            .bind(*person).execute(&mut **t).await.map(|_| ()))?;
    }
    for chunk in w.family_members.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new("INSERT INTO family_members (person_id, family_id, via) ");
            qb.push_values(chunk, |mut b, (p, f, via)| {
                b.push_bind(*p).push_bind(*f).push_bind(via.as_str());
            });
            qb.push(" ON CONFLICT (person_id) DO UPDATE SET family_id = excluded.family_id, via = excluded.via");
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    Ok(())
}

/// The run's own row and its flags (flags describe the latest run only); its id.
async fn write_run(tx: &mut Tx, w: &LinkWrite) -> Result<i64, StoreError> {
    let c = &w.counts;
    let run_id: i64 = on_tx!(*tx, t => sqlx::query_scalar(
        "INSERT INTO link_runs (started_at, finished_at, full_run, max_file_id, mentions, candidate_pairs, \
         link_pairs, review_pairs, persons, households, families, review_pending, flags) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id")
        .bind(w.started_at).bind(w.finished_at).bind(w.full).bind(w.max_file_id)
        .bind(c.mentions).bind(c.candidate_pairs).bind(c.link_pairs).bind(c.review_pairs)
        .bind(c.persons).bind(c.households).bind(c.families).bind(c.review_pending).bind(c.flags)
        .fetch_one(&mut **t).await)?;
    // Flags describe the latest run only.
    on_tx!(*tx, t => sqlx::query("DELETE FROM link_flags").execute(&mut **t).await.map(|_| ()))?;
    for chunk in w.flags.chunks(CHUNK) {
        on_tx!(*tx, t => {
            let mut qb = QueryBuilder::new("INSERT INTO link_flags (run_id, kind, a, b, size, detail) ");
            qb.push_values(chunk, |mut b, f| {
                let (kind, x, y, size, detail): (&str, Option<i64>, Option<i64>, Option<i64>, Option<String>) = match f {
                    ClusterFlag::SizeCap { a, b, size } => ("size_cap", Some(*a), Some(*b), Some(*size as i64), None),
                    ClusterFlag::ReusedCasePersonId { mention } => ("reused_case_person_id", Some(*mention), None, None, None),
                    ClusterFlag::LargeBlock { rule, size, .. } => ("large_block", None, None, Some(*size as i64), Some(rule.clone())),
                };
                b.push_bind(run_id).push_bind(kind).push_bind(x).push_bind(y).push_bind(size).push_bind(detail);
            });
            qb.build().execute(&mut **t).await.map(|_| ())
        })?;
    }
    Ok(run_id)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
}
