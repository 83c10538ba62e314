//! Attendance tallies: each pupil's counts in its school's window and baseline,
//! kept between evaluations so that a nightly run counts only what moved.
//!
//! A school's window is its last `w` school days up to the run's date and the
//! baseline the `b` before them. Between two runs a window usually moves forward by
//! the days ingested since: the new counts are the old ones plus the marks of the
//! days that entered, minus those that left (a day leaving the window enters the
//! baseline). That reads a few days of marks instead of fifty.
//!
//! A school is counted afresh instead, from its pupils' marks, when:
//! - no tally of it is kept, or the window lengths changed (every school);
//! - a feed file wrote marks for a day already counted (a correction, a late
//!   file: `school_days.file_id` is newer than the tally and the day lies in the
//!   old baseline or window);
//! - a window moved backwards (`--as-of` an earlier date) or past everything the
//!   tally held.
//!
//! Invariant: after [`Store::attendance_counts`] the tallies hold, for the windows
//! they name, exactly what a fresh count gives; retention, which deletes marks,
//! drops them ([`Store::forget_attendance_tallies`]).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use sqlx::QueryBuilder;

use super::{Backend, Store, StoreError, Tx};

/// One school's windows: (URN, baseline's first day, window's first day, window's
/// last day, window days, baseline days).
pub(super) type SchoolWindow = (i64, NaiveDate, NaiveDate, NaiveDate, u32, u32);

/// A pupil's counts at one school: the packed window and baseline sums of
/// [`PACKED_SUM`] (12-bit fields: attended, authorised, unauthorised, unexplained,
/// part-time or excluded; the baseline keeps the first three) and how many marks
/// fell in the baseline and window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub window: [i64; FIELDS],
    pub baseline: [i64; FIELDS],
    pub marks: i64,
}

impl Tally {
    /// A tally from its stored (or counted) form: packed window and baseline sums.
    fn from_packed(window: i64, baseline: i64, marks: i64) -> Tally {
        Tally {
            window: unpack(window, FIELDS),
            baseline: unpack(baseline, BASELINE_FIELDS),
            marks,
        }
    }
}

pub(super) const FIELDS: usize = 5;
/// Fields of the baseline: attended, authorised, unauthorised.
const BASELINE_FIELDS: usize = 3;

/// A mark's contribution to the packed sums: the category (attended 1 << 0,
/// authorised 1 << 12, unauthorised 1 << 24) plus the mark (unexplained 1 << 36,
/// part-time or excluded 1 << 48). A window holds at most 2 × 2000 sessions (the
/// config's limit), so no field overflows its 12 bits.
const PACKED_MARK: &str = "(CASE a.category WHEN 'P' THEN 1 WHEN 'AEA' THEN 1 \
     WHEN 'AA' THEN 4096 WHEN 'UA' THEN 16777216 ELSE 0 END) + \
     (CASE a.mark WHEN 'N' THEN 68719476736 WHEN 'O' THEN 68719476736 \
     WHEN 'C2' THEN 281474976710656 WHEN 'E' THEN 281474976710656 ELSE 0 END)";

pub(super) fn unpack(v: i64, fields: usize) -> [i64; FIELDS] {
    let mut out = [0; FIELDS];
    for (i, f) in out.iter_mut().enumerate().take(fields) {
        *f = (v >> (12 * i)) & 4095;
    }
    out
}

fn pack(fields: &[i64; FIELDS]) -> i64 {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| f.clamp(&0, &4095) << (12 * i))
        .sum()
}

fn add(into: &mut [i64; FIELDS], v: &[i64; FIELDS], sign: i64) {
    for (a, b) in into.iter_mut().zip(v) {
        *a += sign * b;
    }
}

/// What the last evaluation counted.
struct Kept {
    /// URN → (baseline's first day, window's first day, window's last day).
    windows: HashMap<i64, (NaiveDate, NaiveDate, NaiveDate)>,
    file_id: i64,
}

/// How a school is counted this time.
enum Plan {
    Fresh,
    /// Old windows: the tally moves by the days between them and the new ones.
    Moved(NaiveDate, NaiveDate, NaiveDate),
}

/// (mention, URN, part, packed sum, marks) rows of a count.
type PartRow = (i64, i64, i64, i64, i64);

impl Store {
    /// Each pupil's counts at each school for the `windows` given, from the
    /// tallies where they serve and from the marks where they do not; the tallies
    /// are then rewritten for these windows. In (mention, URN) order; a pupil with
    /// no mark in its school's baseline or window is left out. Also returns how
    /// many schools were counted afresh.
    pub(super) async fn tallied_counts(
        &self,
        windows: &[SchoolWindow],
        window_days: u32,
        baseline_days: u32,
        earliest: NaiveDate,
    ) -> Result<(BTreeMap<(i64, i64), Tally>, usize), StoreError> {
        // The newest file first: a file committed while this runs is newer than
        // the watermark kept, so the next run looks at it again.
        let (watermark,): (i64,) = on_pool!(self, p => sqlx::query_as(
            "SELECT CAST(COALESCE(MAX(file_id), 0) AS BIGINT) FROM school_days")
            .fetch_one(p).await)?;
        let kept = self.kept_tally(window_days, baseline_days).await?;
        let changed: Vec<(i64, NaiveDate)> = match &kept {
            Some(k) => on_pool!(self, p => sqlx::query_as(
                "SELECT school_urn, date FROM school_days WHERE file_id > $1")
                .bind(k.file_id).fetch_all(p).await)?,
            None => Vec::new(),
        };
        let mut changed_by: HashMap<i64, Vec<NaiveDate>> = HashMap::new();
        for (urn, d) in changed {
            changed_by.entry(urn).or_default().push(d);
        }
        let plans: Vec<(SchoolWindow, Plan)> = windows
            .iter()
            .map(|w| {
                let plan = kept
                    .as_ref()
                    .and_then(|k| k.windows.get(&w.0))
                    .filter(|&&(ob, ow, ot)| {
                        let forward = w.1 >= ob && w.2 >= ow && w.3 >= ot && w.1 <= ot;
                        let untouched = changed_by
                            .get(&w.0)
                            .is_none_or(|days| days.iter().all(|d| *d < ob || *d > ot));
                        forward && untouched
                    })
                    .map_or(Plan::Fresh, |&(ob, ow, ot)| Plan::Moved(ob, ow, ot));
                (*w, plan)
            })
            .collect();
        let fresh: Vec<SchoolWindow> = plans
            .iter()
            .filter(|(_, p)| matches!(p, Plan::Fresh))
            .map(|(w, _)| *w)
            .collect();
        // Ranges of marks per moved school: 0 = entered the window, 1 = left the
        // window for the baseline, 2 = left the baseline.
        let mut ranges: Vec<(i64, i64, NaiveDate, NaiveDate)> = Vec::new();
        let mut moved: HashMap<i64, bool> = HashMap::new();
        for (w, plan) in &plans {
            let Plan::Moved(ob, ow, ot) = *plan else {
                continue;
            };
            moved.insert(w.0, true);
            let day = chrono::Days::new(1);
            if w.3 > ot {
                ranges.push((w.0, 0, ot + day, w.3));
            }
            if w.2 > ow {
                ranges.push((w.0, 1, ow, w.2 - day));
            }
            if w.1 > ob {
                ranges.push((w.0, 2, ob, w.1 - day));
            }
        }
        let t = std::time::Instant::now();
        let old = if moved.is_empty() {
            HashMap::new()
        } else {
            self.read_tallies().await?
        };
        let read_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut recounted = fresh.len();
        let (fresh_rows, moved_rows) = tokio::try_join!(
            self.count_fresh(&fresh, earliest),
            self.count_ranges(&ranges),
        )?;
        let count_s = t.elapsed().as_secs_f64();
        let mut out: BTreeMap<(i64, i64), Tally> = BTreeMap::new();
        for ((m, urn), t) in old {
            if moved.contains_key(&urn) {
                out.insert((m, urn), t);
            }
        }
        for (m, urn, part, packed, n) in moved_rows {
            let t = out.entry((m, urn)).or_default();
            let all = unpack(packed, FIELDS);
            let counted = unpack(packed, BASELINE_FIELDS);
            match part {
                0 => {
                    add(&mut t.window, &all, 1);
                    t.marks += n;
                }
                1 => {
                    add(&mut t.window, &all, -1);
                    add(&mut t.baseline, &counted, 1);
                }
                _ => {
                    add(&mut t.baseline, &counted, -1);
                    t.marks -= n;
                }
            }
        }
        for (m, urn, window, baseline, n) in fresh_rows {
            out.insert((m, urn), Tally::from_packed(window, baseline, n));
        }
        out.retain(|_, t| t.marks > 0);
        if out
            .values()
            .any(|t| t.window.iter().chain(&t.baseline).any(|&f| f < 0))
        {
            // The tallies disagree with the marks (changed behind the ledger's back):
            // forget them and count everything.
            tracing::warn!("Attendance tallies were out of step with the marks; counting afresh");
            self.forget_attendance_tallies().await?;
            recounted = windows.len();
            let rows = self.count_fresh(windows, earliest).await?;
            out = rows
                .into_iter()
                .map(|(m, urn, w, b, n)| ((m, urn), Tally::from_packed(w, b, n)))
                .filter(|(_, t)| t.marks > 0)
                .collect();
        }
        let t = std::time::Instant::now();
        self.keep_tallies(windows, &out, window_days, baseline_days, watermark)
            .await?;
        tracing::debug!(
            read_s,
            count_s,
            keep_s = t.elapsed().as_secs_f64(),
            ranges = ranges.len(),
            "Attendance tallies"
        );
        Ok((out, recounted))
    }

    /// Drops the kept tallies: the next evaluation counts every school afresh.
    pub async fn forget_attendance_tallies(&self) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM attendance_tally_state")
            .execute(p).await.map(|_| ()))?;
        Ok(())
    }

    async fn kept_tally(
        &self,
        window_days: u32,
        baseline_days: u32,
    ) -> Result<Option<Kept>, StoreError> {
        let state: Option<(i64, i64, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT window_days, baseline_days, file_id FROM attendance_tally_state WHERE id = 1")
            .fetch_optional(p).await)?;
        let Some((w, b, file_id)) = state else {
            return Ok(None);
        };
        if w != i64::from(window_days) || b != i64::from(baseline_days) {
            return Ok(None);
        }
        let rows: Vec<(i64, NaiveDate, NaiveDate, NaiveDate)> = on_pool!(self, p => sqlx::query_as(
            "SELECT school_urn, bfrom, wfrom, wto FROM attendance_tally_windows")
            .fetch_all(p).await)?;
        Ok(Some(Kept {
            windows: rows
                .into_iter()
                .map(|(u, b, f, t)| (u, (b, f, t)))
                .collect(),
            file_id,
        }))
    }

    async fn read_tallies(&self) -> Result<HashMap<(i64, i64), Tally>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT mention_id, school_urn, window_packed, baseline_packed, marks FROM attendance_tallies")
            .fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|(m, urn, w, b, n)| ((m, urn), Tally::from_packed(w, b, n)))
            .collect())
    }

    /// Rewrites the tallies, their windows and the watermark in one transaction.
    async fn keep_tallies(
        &self,
        windows: &[SchoolWindow],
        tallies: &BTreeMap<(i64, i64), Tally>,
        window_days: u32,
        baseline_days: u32,
        watermark: i64,
    ) -> Result<(), StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        for sql in [
            "DELETE FROM attendance_tally_state",
            "DELETE FROM attendance_tally_windows",
            "DELETE FROM attendance_tallies",
        ] {
            on_tx!(tx, t => sqlx::query(sql).execute(&mut **t).await.map(|_| ()))?;
        }
        for chunk in windows.chunks(1000) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO attendance_tally_windows (school_urn, bfrom, wfrom, wto) ");
                qb.push_values(chunk, |mut q, (urn, bfrom, from, to, _, _)| {
                    q.push_bind(*urn).push_bind(*bfrom).push_bind(*from).push_bind(*to);
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        let rows: Vec<(&(i64, i64), &Tally)> = tallies.iter().collect();
        for chunk in rows.chunks(2000) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO attendance_tallies \
                     (mention_id, school_urn, window_packed, baseline_packed, marks) ");
                qb.push_values(chunk, |mut q, ((m, urn), tally)| {
                    q.push_bind(*m)
                        .push_bind(*urn)
                        .push_bind(pack(&tally.window))
                        .push_bind(pack(&tally.baseline))
                        .push_bind(tally.marks);
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        on_tx!(tx, t => sqlx::query(
            "INSERT INTO attendance_tally_state (id, window_days, baseline_days, file_id) \
             VALUES (1, $1, $2, $3)")
            .bind(i64::from(window_days)).bind(i64::from(baseline_days)).bind(watermark)
            .execute(&mut **t).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts the schools of `windows` from their pupils' marks: (mention, URN,
    /// packed window, packed baseline, marks). The pupils marked since the earliest
    /// window are split into ranges of mention ids, each counted on a connection
    /// of its own, so the count uses every core.
    async fn count_fresh(
        &self,
        windows: &[SchoolWindow],
        earliest: NaiveDate,
    ) -> Result<Vec<(i64, i64, i64, i64, i64)>, StoreError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
        let mut bounds: Vec<i64> = Vec::new();
        if parts > 1 {
            let marked: Vec<(i64,)> = on_pool!(self, p => sqlx::query_as(
                "SELECT mention_id FROM pupil_schools WHERE last_mark_on >= $1 ORDER BY mention_id")
                .bind(earliest).fetch_all(p).await)?;
            for i in 1..parts {
                if let Some(&(id,)) = marked.get(marked.len() * i / parts) {
                    if bounds.last().is_none_or(|&b| b < id) {
                        bounds.push(id);
                    }
                }
            }
        }
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut lo = i64::MIN;
        for &b in &bounds {
            ranges.push((lo, b));
            lo = b;
        }
        ranges.push((lo, i64::MAX));
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|(lo, hi)| {
                let (store, windows) = (self.clone(), windows.to_vec());
                tokio::spawn(async move { store.count_fresh_part(&windows, lo, hi).await })
            })
            .collect();
        let mut rows = Vec::new();
        for h in handles {
            let part = h
                .await
                .map_err(|e| StoreError::Task(format!("counting attendance: {e}")))??;
            rows.extend(part);
        }
        Ok(rows)
    }

    /// One part of [`Self::count_fresh`]: pupils with mention id in `lo..hi` (`hi`
    /// included when it is `i64::MAX`).
    async fn count_fresh_part(
        &self,
        windows: &[SchoolWindow],
        lo: i64,
        hi: i64,
    ) -> Result<Vec<(i64, i64, i64, i64, i64)>, StoreError> {
        // The windows go into a temporary table keyed by URN. The count walks the
        // pupils' schools in (mention, URN) order — the order of the result, so no
        // sort — and reads each pupil's marks in the school's windows by key. The
        // transaction is only rolled back: the table goes with it.
        let mut tx = Tx::begin(&self.pool).await?;
        self.temp_table(
            &mut tx,
            "rule_windows",
            "urn BIGINT PRIMARY KEY, bfrom DATE NOT NULL, wfrom DATE NOT NULL, wto DATE NOT NULL",
        )
        .await?;
        for chunk in windows.chunks(1000) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("INSERT INTO rule_windows (urn, bfrom, wfrom, wto) ");
                qb.push_values(chunk, |mut q, (urn, bfrom, from, to, _, _)| {
                    q.push_bind(*urn).push_bind(*bfrom).push_bind(*from).push_bind(*to);
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        self.analyze(&mut tx, "rule_windows").await?;
        let upper = if hi == i64::MAX { "<=" } else { "<" };
        let sql = format!(
            "SELECT ps.mention_id, ps.school_urn, \
             CAST(SUM(CASE WHEN a.date >= w.wfrom THEN {PACKED_MARK} ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN a.date < w.wfrom THEN {PACKED_MARK} ELSE 0 END) AS BIGINT), \
             CAST(COUNT(*) AS BIGINT) \
             FROM pupil_schools ps CROSS JOIN rule_windows w CROSS JOIN attendance_marks a \
             WHERE ps.mention_id >= $1 AND ps.mention_id {upper} $2 \
             AND w.urn = ps.school_urn AND ps.last_mark_on >= w.bfrom \
             AND a.mention_id = ps.mention_id AND a.school_urn = ps.school_urn \
             AND a.date >= w.bfrom AND a.date <= w.wto \
             GROUP BY ps.mention_id, ps.school_urn ORDER BY ps.mention_id, ps.school_urn"
        );
        let rows = on_tx!(tx, t => sqlx::query_as(&sql)
            .bind(lo).bind(hi).fetch_all(&mut **t).await)?;
        drop(tx);
        Ok(rows)
    }

    /// The marks of the moved schools' ranges, summed per pupil, school and part:
    /// (mention, URN, part, packed sum, marks).
    async fn count_ranges(
        &self,
        ranges: &[(i64, i64, NaiveDate, NaiveDate)],
    ) -> Result<Vec<PartRow>, StoreError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let earliest = ranges.iter().map(|r| r.2).min().unwrap_or(NaiveDate::MIN);
        let mut tx = Tx::begin(&self.pool).await?;
        self.temp_table(
            &mut tx,
            "rule_ranges",
            "urn BIGINT NOT NULL, part BIGINT NOT NULL, lo DATE NOT NULL, hi DATE NOT NULL, \
             PRIMARY KEY (urn, part)",
        )
        .await?;
        for chunk in ranges.chunks(1000) {
            on_tx!(tx, t => {
                let mut qb = QueryBuilder::new("INSERT INTO rule_ranges (urn, part, lo, hi) ");
                qb.push_values(chunk, |mut q, (urn, part, lo, hi)| {
                    q.push_bind(*urn).push_bind(*part).push_bind(*lo).push_bind(*hi);
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        self.analyze(&mut tx, "rule_ranges").await?;
        let sql = format!(
            "SELECT ps.mention_id, ps.school_urn, r.part, CAST(SUM({PACKED_MARK}) AS BIGINT), \
             CAST(COUNT(*) AS BIGINT) \
             FROM pupil_schools ps CROSS JOIN rule_ranges r CROSS JOIN attendance_marks a \
             WHERE ps.last_mark_on >= $1 AND r.urn = ps.school_urn AND ps.last_mark_on >= r.lo \
             AND a.mention_id = ps.mention_id AND a.school_urn = ps.school_urn \
             AND a.date >= r.lo AND a.date <= r.hi \
             GROUP BY ps.mention_id, ps.school_urn, r.part"
        );
        let rows = on_tx!(tx, t => sqlx::query_as(&sql)
            .bind(earliest).fetch_all(&mut **t).await)?;
        drop(tx);
        Ok(rows)
    }

    /// A temporary table that lives as long as the transaction (which the caller
    /// only rolls back). Dates are ISO text on SQLite, as in every table there.
    pub(super) async fn temp_table(
        &self,
        tx: &mut Tx,
        name: &str,
        columns: &str,
    ) -> Result<(), StoreError> {
        let ddl = match self.backend() {
            Backend::Sqlite => format!(
                "CREATE TEMP TABLE {name} ({})",
                columns
                    .replace(" DATE ", " TEXT ")
                    .replace(" BIGINT ", " INTEGER ")
            ),
            Backend::Postgres => format!("CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP"),
        };
        on_tx!(*tx, t => sqlx::query(&ddl).execute(&mut **t).await.map(|_| ()))?;
        Ok(())
    }

    /// Fills the one-column temporary `table` with `ids`.
    pub(super) async fn fill_ids(
        &self,
        tx: &mut Tx,
        table: &str,
        column: &str,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(5000) {
            on_tx!(*tx, t => {
                let mut qb = QueryBuilder::new(format!("INSERT INTO {table} ({column}) "));
                qb.push_values(chunk, |mut q, id| {
                    q.push_bind(*id);
                });
                qb.build().execute(&mut **t).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// Statistics for a temporary table on PostgreSQL (it has none otherwise, and
    /// the planner would guess at the joins).
    pub(super) async fn analyze(&self, tx: &mut Tx, name: &str) -> Result<(), StoreError> {
        if matches!(self.backend(), Backend::Postgres) {
            let sql = format!("ANALYZE {name}");
            on_tx!(*tx, t => sqlx::query(&sql).execute(&mut **t).await.map(|_| ()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_every_field() {
        let fields = [1, 4095, 0, 17, 300];
        assert_eq!(unpack(pack(&fields), FIELDS), fields);
        assert_eq!(unpack(pack(&fields), BASELINE_FIELDS), [1, 4095, 0, 0, 0]);
    }
}
