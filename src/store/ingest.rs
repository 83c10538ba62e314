//! Storing one feed file: mentions, records and quarantined rows in batches inside
//! one transaction, then the ledger flip to `ingested` in the same commit.
//!
//! Records replace earlier values for the same natural key (last ingested wins);
//! within one batch the last row for a key wins before the statement is built,
//! because PostgreSQL refuses to update one row twice in a single `INSERT`.

use std::borrow::Borrow;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, QueryBuilder};

use super::{Pool, Store, StoreError, Tx};
use crate::domain::{Mark, PersonMention, Record, RowProblem, Session};
use crate::link::family::written_address_key;

/// Rows per multi-row `INSERT`: well under SQLite's 32,766 and PostgreSQL's
/// 65,535 bound parameters for the widest table.
const MENTION_CHUNK: usize = 500;
const RECORD_CHUNK: usize = 1000;
/// Attendance marks per `INSERT` on SQLite: 4 parameters each, so 8,191 rows bind
/// 32,764 of SQLite's 32,766. A pipeline batch is two statements: each costs a
/// round trip to the connection's thread and the per-statement work (reset,
/// clearing bindings) of the hot path.
pub const SQLITE_MARK_CHUNK: usize = 8191;
const MARK_PARAMS: usize = 4;
// SQLite refuses a statement with more than 32,766 parameters.
const _: () = assert!(SQLITE_MARK_CHUNK * MARK_PARAMS <= 32_766);

/// Whether two records under one mention key describe two different people: a
/// date of birth and a forename that both differ (a corrected typo changes one).
fn two_people(a: &PersonMention, b: &PersonMention) -> bool {
    let differ = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => !x.eq_ignore_ascii_case(y),
        _ => false,
    };
    matches!((a.dob, b.dob), (Some(x), Some(y)) if x != y) && differ(&a.forename, &b.forename)
}

/// What a file produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileCounts {
    /// Data rows read (records plus quarantined rows).
    pub rows_read: i64,
    /// Rows stored as records.
    pub records: i64,
    /// Rows quarantined.
    pub quarantined: i64,
}

/// The transaction in which one file is stored. Dropping it without
/// [`FileTx::commit`] rolls everything back.
pub struct FileTx {
    tx: Tx,
    file_id: i64,
    source: String,
    kind: String,
    /// mention key → (id, values last written), so a pupil with 300 marks is
    /// written once unless their details change within the file.
    mentions: FxHashMap<String, (i64, PersonMention)>,
    /// The SQLite attendance `INSERT`s of this file.
    mark_statements: MarkStatements,
    /// The last chunk of marks, bound but not yet executed (SQLite): it runs while
    /// the next chunk is bound, and [`FileTx::commit`] runs the last one.
    staged_marks: Option<(usize, SqliteArguments<'static>)>,
    /// The code table in [`Mark::all`] order: a mark's position is the number the
    /// SQLite statement binds (present codes come first, so the scan is short).
    marks: Vec<Mark>,
    /// Mention keys seen naming two people in one batch, to flag after the upsert.
    conflicted: Vec<String>,
    /// (URN, date) of every attendance mark in the file: the school days the
    /// attendance rule counts, written at commit.
    school_days: FxHashSet<(i64, NaiveDate)>,
    /// Each (pupil mention, URN)'s latest mark date in the file, written at commit
    /// (`pupil_schools`, and `mentions.last_mark_on` per mention).
    last_marks: FxHashMap<(i64, i64), NaiveDate>,
}

impl FileTx {
    pub(super) async fn begin(store: &Store, file_id: i64) -> Result<FileTx, StoreError> {
        let mut tx = match &store.pool {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        };
        let sql = "SELECT source, kind FROM feed_files WHERE id = $1";
        let row: Option<(String, String)> =
            on_tx!(tx, t => sqlx::query_as(sql).bind(file_id).fetch_optional(&mut **t).await)?;
        let (source, kind) =
            row.ok_or_else(|| StoreError::NotFound(format!("feed file {file_id}")))?;
        Ok(FileTx {
            source,
            kind,
            tx,
            file_id,
            mentions: FxHashMap::default(),
            mark_statements: MarkStatements {
                file_id,
                sql: HashMap::new(),
            },
            staged_marks: None,
            marks: Mark::all().collect(),
            conflicted: Vec::new(),
            school_days: FxHashSet::default(),
            last_marks: FxHashMap::default(),
        })
    }

    /// Stores a batch of records of this file's kind (and their mentions). Takes
    /// records or references to them, so a caller need not move rows out of the
    /// batch it parsed.
    pub async fn add_records<R: Borrow<Record>>(
        &mut self,
        records: &[R],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // The mentions' scan needs no connection: on SQLite it runs while the
        // chunk of marks staged by the last call is written.
        let scan = match self.staged_marks.take() {
            Some(staged) => {
                let (done, scan) =
                    tokio::join!(self.mark_statements.run(&mut self.tx, staged), async {
                        scan_mentions(&self.mentions, records)
                    });
                done?;
                scan
            }
            None => scan_mentions(&self.mentions, records),
        };
        let ids = self.upsert_mentions(records, scan).await?;
        let rows: Vec<(&Record, i64)> = records.iter().map(Borrow::borrow).zip(ids).collect();
        let sqlite_marks = matches!(self.tx, Tx::Sqlite(_))
            && matches!(rows.first(), Some((Record::Attendance(_), _)));
        if sqlite_marks {
            // No de-duplication needed: SQLite applies the rows of one upsert in
            // order, so a later row for the same key updates the earlier one.
            // Each chunk is noted and bound while the one before it is written.
            for chunk in rows.chunks(SQLITE_MARK_CHUNK) {
                let (days, last_marks) = (&mut self.school_days, &mut self.last_marks);
                let marks = &self.marks;
                let mut prepare = || {
                    note_days(days, last_marks, chunk);
                    bind_marks(marks, chunk)
                };
                let next = match self.staged_marks.take() {
                    None => prepare()?,
                    Some(staged) => {
                        // `join!` polls the statement first, which hands it to the
                        // connection's thread; the binding then runs on this one.
                        let (done, next) =
                            tokio::join!(self.mark_statements.run(&mut self.tx, staged), async {
                                prepare()
                            });
                        done?;
                        next?
                    }
                };
                self.staged_marks = Some((chunk.len(), next));
            }
            return Ok(());
        }
        note_days(&mut self.school_days, &mut self.last_marks, &rows);
        let rows = last_per_key(rows, |&(r, id)| natural_key(r, id));
        for chunk in rows.chunks(RECORD_CHUNK) {
            self.insert_records(chunk).await?;
        }
        Ok(())
    }

    /// Stores quarantined rows.
    pub async fn add_problems(&mut self, problems: &[RowProblem]) -> Result<(), StoreError> {
        for chunk in problems.chunks(RECORD_CHUNK) {
            let file_id = self.file_id;
            on_tx!(self.tx, t => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO quarantine (file_id, row_number, column_name, reason, raw) ",
                );
                qb.push_values(chunk, |mut b, p| {
                    b.push_bind(file_id)
                        .push_bind(i64::try_from(p.row).unwrap_or(i64::MAX))
                        .push_bind(p.column.clone())
                        .push_bind(p.reason.clone())
                        .push_bind(p.raw.clone());
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// Marks the file ingested with its counts and commits everything.
    pub async fn commit(mut self, counts: FileCounts, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(staged) = self.staged_marks.take() {
            self.mark_statements.run(&mut self.tx, staged).await?;
        }
        // A school day records the file that last wrote marks for it: an evaluation
        // that counted the day before this file recounts the school.
        let mut days: Vec<(i64, NaiveDate)> = self.school_days.drain().collect();
        days.sort_unstable();
        let file_id = self.file_id;
        for chunk in days.chunks(RECORD_CHUNK) {
            on_tx!(self.tx, t => {
                let mut qb = QueryBuilder::new("INSERT INTO school_days (school_urn, date, file_id) ");
                qb.push_values(chunk, |mut b, (urn, date)| {
                    b.push_bind(*urn).push_bind(*date).push_bind(file_id);
                });
                qb.push(" ON CONFLICT (school_urn, date) DO UPDATE SET file_id = excluded.file_id");
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        let mut pairs: Vec<((i64, i64), NaiveDate)> = self.last_marks.drain().collect();
        pairs.sort_unstable();
        for chunk in pairs.chunks(RECORD_CHUNK) {
            on_tx!(self.tx, t => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO pupil_schools (mention_id, school_urn, last_mark_on) ",
                );
                qb.push_values(chunk, |mut b, ((id, urn), date)| {
                    b.push_bind(*id).push_bind(*urn).push_bind(*date);
                });
                qb.push(
                    " ON CONFLICT (mention_id, school_urn) DO UPDATE SET last_mark_on = excluded.last_mark_on \
                     WHERE pupil_schools.last_mark_on < excluded.last_mark_on",
                );
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        let mut marks: Vec<(i64, NaiveDate)> = Vec::with_capacity(pairs.len());
        for ((id, _), date) in pairs {
            match marks.last_mut() {
                Some((last, d)) if *last == id => *d = (*d).max(date),
                _ => marks.push((id, date)),
            }
        }
        for chunk in marks.chunks(RECORD_CHUNK) {
            on_tx!(self.tx, t => {
                let mut qb = QueryBuilder::new("WITH v (id, d) AS (");
                qb.push_values(chunk, |mut b, (id, date)| {
                    b.push_bind(*id).push_bind(*date);
                });
                qb.push(
                    ") UPDATE mentions SET last_mark_on = v.d FROM v WHERE mentions.id = v.id \
                     AND (mentions.last_mark_on IS NULL OR mentions.last_mark_on < v.d)",
                );
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        let sql = "UPDATE feed_files SET status = 'ingested', reason = NULL, rows_read = $2, records = $3, \
                   quarantined = $4, finished_at = $5 WHERE id = $1";
        let file_id = self.file_id;
        on_tx!(self.tx, t => sqlx::query(sql)
            .bind(file_id)
            .bind(counts.rows_read)
            .bind(counts.records)
            .bind(counts.quarantined)
            .bind(at)
            .execute(&mut **t)
            .await
            .map(|_| ()))?;
        match self.tx {
            Tx::Sqlite(t) => t.commit().await?,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Discards everything written in this transaction.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.tx {
            Tx::Sqlite(t) => t.rollback().await?,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// Writes the mentions of `records` that [`scan_mentions`] found new or changed
    /// and returns the mention id of every record, in order.
    async fn upsert_mentions<R: Borrow<Record>>(
        &mut self,
        records: &[R],
        scan: MentionScan<'_>,
    ) -> Result<Vec<i64>, StoreError> {
        let MentionScan {
            ids,
            pending,
            conflicted,
        } = scan;
        self.conflicted.extend(conflicted);
        for chunk in pending.chunks(MENTION_CHUNK) {
            let returned = self.write_mentions(chunk).await?;
            if !self.conflicted.is_empty() {
                self.mark_conflicted().await?;
            }
            let by_key: HashMap<&str, &PersonMention> =
                chunk.iter().map(|m| (m.mention_key.as_str(), *m)).collect();
            for (id, key) in returned {
                if let Some(m) = by_key.get(key.as_str()) {
                    self.mentions.insert(key, (id, (*m).clone()));
                }
            }
        }
        records
            .iter()
            .zip(ids)
            .map(|(r, id)| match id {
                Some(id) => Ok(id),
                None => self
                    .mentions
                    .get(&r.borrow().mention().mention_key)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "mention id for a row of file {}",
                            self.file_id
                        ))
                    }),
            })
            .collect()
    }

    /// Flags the mentions whose keys named two people within one batch.
    async fn mark_conflicted(&mut self) -> Result<(), StoreError> {
        let keys = std::mem::take(&mut self.conflicted);
        let (source, file_id) = (self.source.clone(), self.file_id);
        for key in keys {
            on_tx!(self.tx, t => sqlx::query(
                "UPDATE mentions SET identity_conflict = TRUE, identity_file_id = $3 \
                 WHERE source = $1 AND mention_key = $2")
                .bind(&source)
                .bind(&key)
                .bind(file_id)
                .execute(&mut **t)
                .await
                .map(|_| ()))?;
        }
        Ok(())
    }

    async fn write_mentions(
        &mut self,
        chunk: &[&PersonMention],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let (file_id, source, kind) = (self.file_id, self.source.clone(), self.kind.clone());
        let rows = on_tx!(self.tx, t => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO mentions (source, kind, mention_key, role, forename, surname, dob, gender, \
                 address_line1, postcode, postcode_valid, uprn, upn, upn_valid, nhs_number, nhs_valid, \
                 school_urn, first_file_id, last_file_id, identity_file_id, address_key) ",
            );
            qb.push_values(chunk, |mut b, m| {
                b.push_bind(source.clone())
                    .push_bind(kind.clone())
                    .push_bind(m.mention_key.clone())
                    .push_bind(m.role.clone())
                    .push_bind(m.forename.clone())
                    .push_bind(m.surname.clone())
                    .push_bind(m.dob)
                    .push_bind(m.gender.clone())
                    .push_bind(m.address_line1.clone())
                    .push_bind(m.postcode.as_ref().map(|p| p.as_str().to_string()))
                    .push_bind(m.postcode.as_ref().map(|p| p.is_valid()))
                    .push_bind(m.uprn.map(|u| u.get() as i64))
                    .push_bind(m.upn.as_ref().map(|u| u.as_str().to_string()))
                    .push_bind(m.upn.as_ref().map(|u| u.is_valid()))
                    .push_bind(m.nhs_number.as_ref().map(|n| n.as_str().to_string()))
                    .push_bind(m.nhs_number.as_ref().map(|n| n.is_valid()))
                    .push_bind(m.school_urn.map(|u| i64::from(u.get())))
                    .push_bind(file_id)
                    .push_bind(file_id)
                    .push_bind(file_id)
                    .push_bind(written_address_key(
                        m.address_line1.as_deref(),
                        m.postcode.as_ref().map(|p| p.as_str()),
                    ));
            });
            qb.push(
                " ON CONFLICT (source, mention_key) DO UPDATE SET role = excluded.role, \
                 forename = excluded.forename, surname = excluded.surname, dob = excluded.dob, \
                 gender = excluded.gender, address_line1 = excluded.address_line1, \
                 postcode = excluded.postcode, postcode_valid = excluded.postcode_valid, \
                 uprn = excluded.uprn, upn = excluded.upn, upn_valid = excluded.upn_valid, \
                 nhs_number = excluded.nhs_number, nhs_valid = excluded.nhs_valid, \
                 school_urn = excluded.school_urn, last_file_id = excluded.last_file_id, \
                 address_key = excluded.address_key, \
                 identity_file_id = CASE WHEN mentions.identity_file_id IS NULL \
                     OR mentions.role IS DISTINCT FROM excluded.role \
                     OR mentions.forename IS DISTINCT FROM excluded.forename \
                     OR mentions.surname IS DISTINCT FROM excluded.surname \
                     OR mentions.dob IS DISTINCT FROM excluded.dob \
                     OR mentions.gender IS DISTINCT FROM excluded.gender \
                     OR mentions.address_line1 IS DISTINCT FROM excluded.address_line1 \
                     OR mentions.postcode IS DISTINCT FROM excluded.postcode \
                     OR mentions.uprn IS DISTINCT FROM excluded.uprn \
                     OR mentions.upn IS DISTINCT FROM excluded.upn \
                     OR mentions.nhs_number IS DISTINCT FROM excluded.nhs_number \
                     OR mentions.school_urn IS DISTINCT FROM excluded.school_urn \
                     THEN excluded.identity_file_id ELSE mentions.identity_file_id END, \
                 identity_conflict = (mentions.identity_conflict OR ( \
                     mentions.dob IS NOT NULL AND excluded.dob IS NOT NULL \
                     AND mentions.dob <> excluded.dob \
                     AND mentions.forename IS NOT NULL AND excluded.forename IS NOT NULL \
                     AND UPPER(mentions.forename) <> UPPER(excluded.forename))) \
                 RETURNING id, mention_key",
            );
            qb.build_query_as::<(i64, String)>().fetch_all(&mut **t).await
        })?;
        Ok(rows)
    }

    async fn insert_records(&mut self, rows: &[(&Record, i64)]) -> Result<(), StoreError> {
        let Some((first, _)) = rows.first() else {
            return Ok(());
        };
        let (file_id, source) = (self.file_id, self.source.clone());
        match first {
            Record::Attendance(_) => {
                let marks: Vec<_> = rows
                    .iter()
                    .filter_map(|(r, id)| match r {
                        Record::Attendance(a) => Some((a, *id)),
                        _ => None,
                    })
                    .collect();
                on_tx!(self.tx, t => {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO attendance_marks (mention_id, school_urn, date, session, mark, category, file_id) ",
                    );
                    qb.push_values(&marks, |mut b, (a, id)| {
                        b.push_bind(*id)
                            .push_bind(i64::from(a.school_urn.get()))
                            .push_bind(a.date)
                            .push_bind(a.session.as_str())
                            .push_bind(a.mark.code())
                            .push_bind(a.mark.category().as_str())
                            .push_bind(file_id);
                    });
                    qb.push(
                        " ON CONFLICT (mention_id, school_urn, date, session) DO UPDATE SET \
                         mark = excluded.mark, category = excluded.category, file_id = excluded.file_id",
                    );
                    qb.build().execute(&mut **t).await.map(|_| ())
                })?;
            }
            Record::PoliceDa(_) => {
                let people: Vec<_> = rows
                    .iter()
                    .filter_map(|(r, id)| match r {
                        Record::PoliceDa(d) => Some((d, *id)),
                        _ => None,
                    })
                    .collect();
                on_tx!(self.tx, t => {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO da_persons (source, notification_id, person_key, incident_at, role, mention_id, \
                         address_line1, postcode, uprn, dash_risk, crime_ref, school_urn, file_id) ",
                    );
                    qb.push_values(&people, |mut b, (d, id)| {
                        b.push_bind(source.clone())
                            .push_bind(d.notification_id.clone())
                            .push_bind(d.person_key.clone())
                            .push_bind(d.incident_at)
                            .push_bind(d.role.as_str())
                            .push_bind(*id)
                            .push_bind(d.address_line1.clone())
                            .push_bind(d.postcode.as_str().to_string())
                            .push_bind(d.uprn.map(|u| u.get() as i64))
                            .push_bind(d.dash_risk.map(|r| r.as_str()))
                            .push_bind(d.crime_ref.clone())
                            .push_bind(d.school_urn.map(|u| i64::from(u.get())))
                            .push_bind(file_id);
                    });
                    qb.push(
                        " ON CONFLICT (source, notification_id, person_key) DO UPDATE SET \
                         incident_at = excluded.incident_at, role = excluded.role, mention_id = excluded.mention_id, \
                         address_line1 = excluded.address_line1, postcode = excluded.postcode, uprn = excluded.uprn, \
                         dash_risk = excluded.dash_risk, crime_ref = excluded.crime_ref, \
                         school_urn = excluded.school_urn, file_id = excluded.file_id",
                    );
                    qb.build().execute(&mut **t).await.map(|_| ())
                })?;
            }
            Record::Housing(_) => {
                let notices: Vec<_> = rows
                    .iter()
                    .filter_map(|(r, id)| match r {
                        Record::Housing(h) => Some((h, *id)),
                        _ => None,
                    })
                    .collect();
                on_tx!(self.tx, t => {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO housing_notices (source, notice_id, notice_type, served_on, possession_date, \
                         tenure, address_line1, postcode, uprn, children_in_household, mention_id, file_id) ",
                    );
                    qb.push_values(&notices, |mut b, (h, id)| {
                        b.push_bind(source.clone())
                            .push_bind(h.notice_id.clone())
                            .push_bind(h.notice_type.as_str())
                            .push_bind(h.served_on)
                            .push_bind(h.possession_date)
                            .push_bind(h.tenure.map(|t| t.as_str()))
                            .push_bind(h.address_line1.clone())
                            .push_bind(h.postcode.as_str().to_string())
                            .push_bind(h.uprn.map(|u| u.get() as i64))
                            .push_bind(h.children_in_household.map(i64::from))
                            .push_bind(*id)
                            .push_bind(file_id);
                    });
                    qb.push(
                        " ON CONFLICT (source, notice_id) DO UPDATE SET notice_type = excluded.notice_type, \
                         served_on = excluded.served_on, possession_date = excluded.possession_date, \
                         tenure = excluded.tenure, address_line1 = excluded.address_line1, \
                         postcode = excluded.postcode, uprn = excluded.uprn, \
                         children_in_household = excluded.children_in_household, \
                         mention_id = excluded.mention_id, file_id = excluded.file_id",
                    );
                    qb.build().execute(&mut **t).await.map(|_| ())
                })?;
            }
            Record::Assessment(_) => {
                let members: Vec<_> = rows
                    .iter()
                    .filter_map(|(r, id)| match r {
                        Record::Assessment(c) => Some((c, *id)),
                        _ => None,
                    })
                    .collect();
                on_tx!(self.tx, t => {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO case_members (source, case_id, person_id, family_id, role, mention_id, \
                         referral_date, opened_on, closed_on, closure_reason, level, locality, lead_professional, file_id) ",
                    );
                    qb.push_values(&members, |mut b, (c, id)| {
                        b.push_bind(source.clone())
                            .push_bind(c.case_id.clone())
                            .push_bind(c.person_id.clone())
                            .push_bind(c.family_id.clone())
                            .push_bind(c.role.as_str())
                            .push_bind(*id)
                            .push_bind(c.referral_date)
                            .push_bind(c.opened_on)
                            .push_bind(c.closed_on)
                            .push_bind(c.closure_reason.map(|r| r.as_str()))
                            .push_bind(c.level.map(|l| l.as_str()))
                            .push_bind(c.locality.clone())
                            .push_bind(c.lead_professional.clone())
                            .push_bind(file_id);
                    });
                    qb.push(
                        " ON CONFLICT (source, case_id, person_id) DO UPDATE SET family_id = excluded.family_id, \
                         role = excluded.role, mention_id = excluded.mention_id, referral_date = excluded.referral_date, \
                         opened_on = excluded.opened_on, closed_on = excluded.closed_on, \
                         closure_reason = excluded.closure_reason, level = excluded.level, \
                         locality = excluded.locality, lead_professional = excluded.lead_professional, \
                         file_id = excluded.file_id",
                    );
                    qb.build().execute(&mut **t).await.map(|_| ())
                })?;
            }
        }
        Ok(())
    }
}

/// What [`scan_mentions`] found in a batch: each row's mention id where the cache
/// knows it, the mentions to write (the last row of each key), and the keys seen
/// naming two people.
struct MentionScan<'a> {
    ids: Vec<Option<i64>>,
    pending: Vec<&'a PersonMention>,
    conflicted: Vec<String>,
}

/// Finds the mentions of `records` that are new or changed since `cache` (mention
/// key → id and values last written).
///
/// Feeds list a person's rows together (a pupil's marks are consecutive), so a
/// row whose mention equals the row before's reuses its id without a hash lookup;
/// only a change of person consults the cache.
fn scan_mentions<'a, R: Borrow<Record>>(
    cache: &FxHashMap<String, (i64, PersonMention)>,
    records: &'a [R],
) -> MentionScan<'a> {
    let mut ids: Vec<Option<i64>> = Vec::with_capacity(records.len());
    let mut pending: Vec<&PersonMention> = Vec::new();
    let mut conflicted = Vec::new();
    let mut pending_at: FxHashMap<&str, usize> = FxHashMap::default();
    let mut previous: Option<(&PersonMention, i64)> = None;
    for r in records {
        let m = r.borrow().mention();
        if let Some((p, id)) = previous {
            if p == m {
                ids.push(Some(id));
                continue;
            }
        }
        match cache.get(&m.mention_key) {
            Some((id, last)) if last == m => {
                ids.push(Some(*id));
                previous = Some((m, *id));
                continue;
            }
            _ => {}
        }
        ids.push(None);
        previous = None;
        match pending_at.get(m.mention_key.as_str()) {
            Some(&i) => {
                // Two rows of one batch under one key: the upsert sees only the
                // last, so a key naming two people is caught here.
                if two_people(pending[i], m) {
                    conflicted.push(m.mention_key.clone());
                }
                pending[i] = m
            }
            None => {
                pending_at.insert(&m.mention_key, pending.len());
                pending.push(m);
            }
        }
    }
    MentionScan {
        ids,
        pending,
        conflicted,
    }
}

/// Notes the school days and each pupil's latest mark date of `rows` (written at
/// commit: `school_days`, `pupil_schools`, `mentions.last_mark_on`).
fn note_days(
    days: &mut FxHashSet<(i64, NaiveDate)>,
    last_marks: &mut FxHashMap<(i64, i64), NaiveDate>,
    rows: &[(&Record, i64)],
) {
    let mut last_day = None;
    let mut last_mark = None;
    for (r, id) in rows {
        if let Record::Attendance(a) = r {
            let day = (i64::from(a.school_urn.get()), a.date);
            // Rows come grouped by pupil and date: skip the hash for repeats.
            if last_day != Some(day) {
                days.insert(day);
                last_day = Some(day);
            }
            if last_mark != Some((*id, day)) {
                let e = last_marks.entry((*id, day.0)).or_insert(a.date);
                if a.date > *e {
                    *e = a.date;
                }
                last_mark = Some((*id, day));
            }
        }
    }
}

/// The SQLite attendance `INSERT`s of one file ([`sqlite_marks_sql`]), one per row
/// count, built once.
struct MarkStatements {
    file_id: i64,
    sql: HashMap<usize, String>,
}

impl MarkStatements {
    /// Writes a staged chunk of marks.
    async fn run(
        &mut self,
        tx: &mut Tx,
        (rows, args): (usize, SqliteArguments<'static>),
    ) -> Result<(), StoreError> {
        // Irrefutable when built without PostgreSQL.
        #[allow(irrefutable_let_patterns)]
        let Tx::Sqlite(t) = tx
        else {
            return Err(StoreError::Corrupt(
                "SQLite marks bound for a PostgreSQL transaction".into(),
            ));
        };
        let file_id = self.file_id;
        let sql = self
            .sql
            .entry(rows)
            .or_insert_with(|| sqlite_marks_sql(rows, file_id));
        sqlx::query_with(sql.as_str(), args)
            .execute(&mut **t)
            .await?;
        Ok(())
    }
}

/// The parameters of [`sqlite_marks_sql`] for `rows`. Every text value bound costs
/// two copies and two allocations (sqlx's and SQLite's), which was most of the
/// store's time, so session and mark are bound as one number ([`mark_number`])
/// and the statement turns it back into the stored text; only the date is bound as
/// text (ISO, as sqlx would store a `NaiveDate`). The list is sized up front: growing 24,576 values by doubling
/// touched fresh pages on every statement.
fn bind_marks(
    marks: &[Mark],
    rows: &[(&Record, i64)],
) -> Result<SqliteArguments<'static>, StoreError> {
    let mut args = SqliteArguments::default();
    args.reserve(rows.len() * MARK_PARAMS, 0);
    for (r, id) in rows {
        let Record::Attendance(a) = r else {
            continue;
        };
        let code = mark_number(marks, a.mark, a.session)?;
        for value in [*id, i64::from(a.school_urn.get())] {
            args.add(value).map_err(sqlx::Error::Encode)?;
        }
        args.add(iso_date(a.date)).map_err(sqlx::Error::Encode)?;
        args.add(code).map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// `INSERT` of `rows` attendance marks of file `file_id` with `?` parameters
/// (SQLite only): per row (mention id, URN, ISO date, [`mark_number`]). The
/// `CASE`s are written once, in the `SELECT` over the `VALUES` list, from the
/// domain's own tables, so the stored text is exactly `as_str()` / `code()`. Four
/// parameters a row, not six, let one statement carry twice the rows: each
/// statement costs a round trip to the connection's thread.
fn sqlite_marks_sql(rows: usize, file_id: i64) -> String {
    let sessions = Session::ALL.len();
    let case = |column: &str, texts: &mut dyn Iterator<Item = &'static str>| {
        let mut out = format!("CASE {column}");
        for (i, text) in texts.enumerate() {
            out.push_str(&format!(" WHEN {i} THEN '{}'", text.replace('\'', "''")));
        }
        out.push_str(" END");
        out
    };
    let session_of = format!("(column4 % {sessions})");
    let mark_of = format!("(column4 / {sessions})");
    let session = case(&session_of, &mut Session::ALL.iter().map(|s| s.as_str()));
    let code = case(&mark_of, &mut Mark::all().map(|m| m.code()));
    let category = case(&mark_of, &mut Mark::all().map(|m| m.category().as_str()));
    let mut sql = String::with_capacity(2000 + rows * (MARK_PARAMS * 2 + 3));
    sql.push_str(&format!(
        "INSERT INTO attendance_marks (mention_id, school_urn, date, session, mark, category, file_id) \
         SELECT column1, column2, column3, {session}, {code}, {category}, {file_id} FROM (VALUES "
    ));
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?)");
    }
    // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
    sql.push_str(
        ") WHERE true ON CONFLICT (mention_id, school_urn, date, session) DO UPDATE SET \
         mark = excluded.mark, category = excluded.category, file_id = excluded.file_id",
    );
    sql
}

/// A mark's position in `marks` ([`Mark::all`]) and its session's in
/// [`Session::ALL`], in one number, as [`sqlite_marks_sql`] decodes it.
fn mark_number(marks: &[Mark], mark: Mark, session: Session) -> Result<i64, StoreError> {
    let m = marks.iter().position(|m| *m == mark).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "mark code {:?} is not in the code table",
            mark.code()
        ))
    })?;
    let s = Session::ALL.iter().position(|s| *s == session).unwrap_or(0);
    Ok((m * Session::ALL.len() + s) as i64)
}

/// `YYYY-MM-DD`, exactly as chrono's `%F` writes it, without going through the
/// format machinery (which cost more than the bind itself on the hot path).
fn iso_date(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return d.format("%F").to_string();
    }
    let digits = |n: u32, width: usize, out: &mut [u8]| {
        let mut n = n;
        for slot in out[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    let mut buf = [b'-'; 10];
    digits(year as u32, 4, &mut buf[0..4]);
    digits(d.month(), 2, &mut buf[5..7]);
    digits(d.day(), 2, &mut buf[8..10]);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The natural key of a record within its source (docs/feeds.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NaturalKey<'a> {
    /// (mention, school, date, session): no allocation on the hot path.
    Mark(i64, u32, chrono::NaiveDate, crate::domain::Session),
    Pair(&'a str, &'a str),
    One(&'a str),
}

fn natural_key(r: &Record, mention_id: i64) -> NaturalKey<'_> {
    match r {
        Record::Attendance(a) => {
            NaturalKey::Mark(mention_id, a.school_urn.get(), a.date, a.session)
        }
        Record::PoliceDa(d) => NaturalKey::Pair(&d.notification_id, &d.person_key),
        Record::Housing(h) => NaturalKey::One(&h.notice_id),
        Record::Assessment(c) => NaturalKey::Pair(&c.case_id, &c.person_id),
    }
}

/// Keeps the last item for each key, in the order of those last items.
fn last_per_key<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    if last.len() == items.len() {
        return items;
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| last.get(&key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{iso_date, last_per_key, sqlite_marks_sql, MARK_PARAMS};
    use chrono::NaiveDate;

    #[test]
    fn iso_dates_match_chrono() {
        for (y, m, d) in [
            (2025, 3, 21),
            (1, 1, 1),
            (999, 12, 31),
            (9999, 12, 31),
            (2000, 2, 29),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(iso_date(date), date.format("%F").to_string());
        }
        for date in [NaiveDate::MIN, NaiveDate::MAX] {
            assert_eq!(iso_date(date), date.format("%F").to_string());
        }
    }

    #[test]
    fn marks_statement_has_one_parameter_per_value() {
        let sql = sqlite_marks_sql(3, 7);
        assert_eq!(sql.matches('?').count(), 3 * MARK_PARAMS);
    }

    #[test]
    fn last_row_for_a_key_wins() {
        let rows = vec![("a", 1), ("b", 2), ("a", 3)];
        let kept = last_per_key(rows, |(k, _)| k.to_string());
        assert_eq!(kept, vec![("b", 2), ("a", 3)]);
    }
}
