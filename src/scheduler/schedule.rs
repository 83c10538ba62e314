//! When a job runs: a six-field cron schedule (`sec min hour dom mon dow`) read as
//! wall-clock time in the config timezone, turned into UTC instants.
//!
//! The cron matching is the `croner` crate's (read by [`crate::jobs::Schedule`],
//! the one parser `check-config` and the scheduler share); what this module adds is the
//! contract the scheduler and its tests rely on, and the tests that hold croner to
//! it (docs/design.md: "the DST tests decide, not the crate" — the `cron` crate, tried
//! first, skips a 01:30 job entirely on the night the clocks go forward):
//!
//! - **Clocks go forward** (Europe/London, last Sunday of March, 01:00 → 02:00): a
//!   wall-clock time inside the skipped hour does not exist. The run happens once,
//!   at the first instant after the gap (02:00 BST, which is 01:00 UTC).
//! - **Clocks go back** (last Sunday of October, 02:00 → 01:00): a wall-clock time
//!   in the repeated hour happens twice. A job with fixed hours runs only at the
//!   first of the two. A job whose hour field is a wildcard or step (e.g. every 15
//!   minutes) keeps its rhythm in elapsed time and runs in both halves.
//! - Day of month and day of week, when both are restricted, match either (classic
//!   cron).
//!
//! Invariant: `next_run(s, tz, t) > t`, and the instants it returns for a chain
//! `t, next_run(t), next_run(next_run(t)), …` are the job's runs, each once.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

pub use crate::jobs::{Schedule, ScheduleError};

/// The job's first run strictly after `after`, or `None` for a schedule that never
/// matches (such as 30 February).
pub fn next_run(schedule: &Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = after.with_timezone(&tz);
    let next = schedule.cron().find_next_occurrence(&local, false).ok()?;
    let next = next.with_timezone(&Utc);
    // The invariant the scheduler's loop depends on: time always moves on.
    (next > after).then_some(next)
}

/// The job's latest run at or before `at` (the one a catch-up would make up
/// for), consistent with [`next_run`]: it is an instant `next_run` produces.
pub fn previous_run(schedule: &Schedule, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = at.with_timezone(&tz);
    // croner's backward search gives a nearby match; walking forward from just
    // before it with next_run lands on the same instants the scheduler uses, even
    // inside a DST gap or a repeated hour.
    let near = schedule
        .cron()
        .find_previous_occurrence(&local, true)
        .ok()?
        .with_timezone(&Utc);
    let mut found = next_run(schedule, tz, near - Duration::seconds(1)).filter(|t| *t <= at)?;
    while let Some(t) = next_run(schedule, tz, found).filter(|t| *t <= at) {
        found = t;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{NaiveDate, TimeZone};
    use chrono_tz::Europe::London;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Every run from `from` to `to`, by chaining next_run.
    fn runs(schedule: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let s = Schedule::parse(schedule).unwrap();
        let mut out = Vec::new();
        let mut t = from;
        while let Some(next) = next_run(&s, London, t) {
            assert!(next > t, "{schedule}: time went backwards at {t}");
            if next >= to {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    /// Runs per London date.
    fn per_local_date(runs: &[DateTime<Utc>]) -> BTreeMap<NaiveDate, Vec<DateTime<Utc>>> {
        let mut map: BTreeMap<NaiveDate, Vec<DateTime<Utc>>> = BTreeMap::new();
        for r in runs {
            map.entry(r.with_timezone(&London).date_naive())
                .or_default()
                .push(*r);
        }
        map
    }

    #[test]
    fn a_0130_job_runs_exactly_once_on_every_london_date_of_a_year_with_both_transitions() {
        // 2026: clocks go forward on 29 March, back on 25 October.
        let all = runs(
            "0 30 1 * * *",
            utc(2025, 12, 31, 12, 0, 0),
            utc(2027, 1, 1, 0, 0, 0),
        );
        let by_date = per_local_date(&all);
        let first = date("2026-01-01");
        let days: Vec<NaiveDate> = first.iter_days().take(365).collect();
        for d in &days {
            let n = by_date.get(d).map_or(0, Vec::len);
            assert_eq!(n, 1, "{d}: {n} runs ({:?})", by_date.get(d));
        }
        assert_eq!(all.len(), 365);

        // Forward: 01:30 does not exist; the run is at the end of the gap,
        // 02:00 BST = 01:00 UTC.
        assert_eq!(
            by_date[&date("2026-03-29")],
            vec![utc(2026, 3, 29, 1, 0, 0)]
        );
        // The day before and after are ordinary: 01:30 GMT, then 01:30 BST.
        assert_eq!(
            by_date[&date("2026-03-28")],
            vec![utc(2026, 3, 28, 1, 30, 0)]
        );
        assert_eq!(
            by_date[&date("2026-03-30")],
            vec![utc(2026, 3, 30, 0, 30, 0)]
        );
        // Back: 01:30 happens at 00:30 UTC (BST) and 01:30 UTC (GMT); only the first.
        assert_eq!(
            by_date[&date("2026-10-25")],
            vec![utc(2026, 10, 25, 0, 30, 0)]
        );
        assert_eq!(
            by_date[&date("2026-10-26")],
            vec![utc(2026, 10, 26, 1, 30, 0)]
        );
    }

    #[test]
    fn other_fixed_times_around_the_transitions_run_once_per_day() {
        // Edges of the skipped/repeated hour, and the shipped jobs' times.
        for schedule in [
            "0 0 1 * * *",
            "0 59 0 * * *",
            "59 59 1 * * *",
            "0 0 2 * * *",
            "0 0 3 * * *",
            "0 0 7 * * *",
        ] {
            let all = runs(schedule, utc(2026, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
            let by_date = per_local_date(&all);
            for d in date("2026-01-02").iter_days().take(363) {
                let n = by_date.get(&d).map_or(0, Vec::len);
                assert_eq!(n, 1, "{schedule} on {d}: {:?}", by_date.get(&d));
            }
        }
        // 01:00 in the gap runs at its end, the same instant as 01:30 would.
        let gap = per_local_date(&runs(
            "0 0 1 * * *",
            utc(2026, 3, 28, 12, 0, 0),
            utc(2026, 3, 30, 0, 0, 0),
        ));
        assert_eq!(gap[&date("2026-03-29")], vec![utc(2026, 3, 29, 1, 0, 0)]);
    }

    #[test]
    fn a_weekday_job_keeps_to_weekdays_across_both_transitions() {
        let all = runs(
            "0 0 7 * * MON-FRI",
            utc(2026, 1, 1, 0, 0, 0),
            utc(2027, 1, 1, 0, 0, 0),
        );
        assert_eq!(all.len(), 261, "weekdays in 2026");
        for r in &all {
            let local = r.with_timezone(&London);
            assert_eq!(local.format("%H:%M:%S").to_string(), "07:00:00", "{r}");
            assert!(
                !matches!(local.format("%a").to_string().as_str(), "Sat" | "Sun"),
                "{r}"
            );
        }
    }

    #[test]
    fn an_interval_job_keeps_elapsed_time_through_the_repeated_hour() {
        // Every hour at :15 — 23 runs on the short day, 25 on the long one.
        let all = runs(
            "0 15 * * * *",
            utc(2026, 3, 1, 0, 0, 0),
            utc(2026, 11, 1, 0, 0, 0),
        );
        let by_date = per_local_date(&all);
        assert_eq!(by_date[&date("2026-03-29")].len(), 23);
        assert_eq!(by_date[&date("2026-10-25")].len(), 25);
        assert_eq!(by_date[&date("2026-07-01")].len(), 24);
        // An hour apart throughout, never a double run.
        for pair in all.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::hours(1), "{pair:?}");
        }
    }

    #[test]
    fn previous_run_is_an_instant_of_the_chain_and_the_next_one_is_after_the_asked_time() {
        let s = Schedule::parse("0 30 1 * * *").unwrap();
        let mut t = utc(2026, 3, 27, 0, 0, 0);
        // Every 10 minutes across both transitions.
        for end in [utc(2026, 3, 31, 0, 0, 0), utc(2026, 10, 27, 0, 0, 0)] {
            if t < end - Duration::days(4) {
                t = end - Duration::days(4);
            }
            while t < end {
                let p = previous_run(&s, London, t).unwrap();
                assert!(p <= t);
                let next = next_run(&s, London, p).unwrap();
                assert!(next > t, "at {t}: previous {p}, next {next}");
                assert_eq!(next_run(&s, London, p - Duration::seconds(1)), Some(p));
                t += Duration::minutes(10);
            }
        }
        // Inside the gap night, after the gap: the run that happened at 01:00 UTC.
        assert_eq!(
            previous_run(&s, London, utc(2026, 3, 29, 1, 20, 0)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        // In the second 01:xx of October: the run at the first 01:30.
        assert_eq!(
            previous_run(&s, London, utc(2026, 10, 25, 1, 45, 0)),
            Some(utc(2026, 10, 25, 0, 30, 0))
        );
        // Exactly at a run: that run.
        assert_eq!(
            previous_run(&s, London, utc(2026, 6, 1, 0, 30, 0)),
            Some(utc(2026, 6, 1, 0, 30, 0))
        );
    }

    #[test]
    fn every_schedule_check_config_accepts_is_read() {
        for text in [
            "0 30 1 * * *",
            "0 0 7 * * MON-FRI",
            "0 0 8 * * mon",
            "0 0 3 * * SUN",
            "*/15 0-30/5 1,2,3 1-31 JAN-DEC 0-7",
            "0 0 12 1 jan,jul 7",
            "* * * * * *",
        ] {
            assert!(crate::jobs::check_schedule(text).is_empty(), "{text}");
            assert!(Schedule::parse(text).is_ok(), "{text}");
        }
        // Sunday as 7 and as 0 are the same day.
        let seven = Schedule::parse("0 0 12 * * 7").unwrap();
        let zero = Schedule::parse("0 0 12 * * 0").unwrap();
        let t = utc(2026, 6, 3, 0, 0, 0);
        assert_eq!(next_run(&seven, London, t), next_run(&zero, London, t));
        assert!(Schedule::parse("0 30 1 * *").is_err());
    }

    #[test]
    fn a_schedule_that_never_matches_has_no_next_run() {
        let s = Schedule::parse("0 0 0 30 2 *").unwrap();
        assert_eq!(next_run(&s, London, utc(2026, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn every_second_runs_every_second() {
        let all = runs(
            "* * * * * *",
            utc(2026, 3, 29, 0, 59, 58),
            utc(2026, 3, 29, 1, 0, 3),
        );
        assert_eq!(all.len(), 4, "{all:?}");
    }
}
