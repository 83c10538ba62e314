//! The evaluate stage: read what the rules need, run them (`rules`), decide what
//! changes (`alerts`), and write the alerts, deliveries and audit rows in one
//! transaction. Idempotent: a second run on the same data and date changes nothing
//! but the run row.

use std::time::Instant;

use anyhow::Context;
use tracing::{debug, info, instrument, warn, Instrument};

use crate::alerts::{self, Directory, LocalityEntry, PlanCounts, SchoolEntry};
use crate::clock::Clock;
use crate::config::Settings;
use crate::rules::{self, RuleInput};
use crate::store::Store;

/// What one evaluation did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EvaluateReport {
    pub as_of: chrono::NaiveDate,
    pub findings: usize,
    pub counts: PlanCounts,
    /// Raised alerts per (rule, locality or "unrouted").
    pub raised_by: Vec<(String, String, usize)>,
    pub problems: usize,
    pub read_s: f64,
    pub rules_s: f64,
    pub write_s: f64,
}

/// The routing directory of the config.
pub fn directory(settings: &Settings) -> Directory {
    Directory {
        localities: settings
            .localities
            .iter()
            .map(|l| LocalityEntry {
                name: l.name.clone(),
                postcodes: l.postcodes.clone(),
                dv_champions: l.dv_champions.clone(),
                champions: l.champions.clone(),
                managers: l.managers.clone(),
            })
            .collect(),
        schools: settings
            .schools
            .iter()
            .map(|s| SchoolEntry {
                urn: s.urn.get(),
                locality: s.locality.clone(),
                ewos: s.ewos.clone(),
            })
            .collect(),
        admin: settings.mail.admin.clone(),
    }
}

/// Reads everything the rules need for `as_of`: the attendance counts and the
/// records concurrently, each branch a task of its own (the rows of each read are
/// turned into values on a runtime thread of their own, not all on one), the
/// records followed by the mentions they name; then the mentions of the pupils
/// the rules can speak of ([`rules::pupil_seeds`], [`rules::record_seeds`]).
pub async fn rule_input(
    store: &Store,
    settings: &Settings,
    as_of: chrono::NaiveDate,
) -> anyhow::Result<RuleInput> {
    let t0 = Instant::now();
    let config = settings.rules;
    let a = config.attendance_drop;
    let pupils = tokio::spawn({
        let store = store.clone();
        async move {
            let t = Instant::now();
            let count = store
                .attendance_counts(as_of, a.window_school_days, a.baseline_school_days)
                .await
                .context("counting attendance")?;
            debug!(
                schools = count.schools,
                recounted = count.recounted,
                pupils = count.pupils.len(),
                seconds = t.elapsed().as_secs_f64(),
                "Counted attendance"
            );
            let t = Instant::now();
            let mut pupils = count.pupils;
            // Runs of unexplained absence only where a rule may speak of them.
            let mut candidates: Vec<&mut rules::PupilAttendance> = pupils
                .iter_mut()
                .filter(|p| p.window.unexplained > 1 && rules::attendance_may_raise(p, &a))
                .collect();
            store
                .fill_unexplained_runs(&mut candidates)
                .await
                .context("reading runs of unexplained absence")?;
            debug!(
                seconds = t.elapsed().as_secs_f64(),
                "Read runs of unexplained absence"
            );
            anyhow::Ok(pupils)
        }
        .in_current_span()
    });
    // The records, the children living at their addresses, and the mentions of
    // both, while the attendance is counted.
    let records = tokio::spawn({
        let store = store.clone();
        async move {
            let (notifications, notices, cases) = tokio::try_join!(
                async {
                    store
                        .rule_notifications()
                        .await
                        .context("reading police notifications")
                },
                async {
                    store
                        .rule_notices()
                        .await
                        .context("reading housing notices")
                },
                async { store.rule_cases().await.context("reading cases") },
            )?;
            let t = Instant::now();
            let children = store
                .children_at(&rules::places(&notifications, &notices))
                .await
                .context("reading the children at the records' addresses")?;
            debug!(
                children = children.len(),
                seconds = t.elapsed().as_secs_f64(),
                "Read children at addresses"
            );
            let t = Instant::now();
            let mut seeds = rules::record_seeds(&notifications, &notices, &cases);
            seeds.extend(children);
            let mentions = store
                .rule_mentions_for(&seeds)
                .await
                .context("reading mentions")?;
            debug!(
                seeds = seeds.len(),
                mentions = mentions.len(),
                seconds = t.elapsed().as_secs_f64(),
                "Read the records' mentions"
            );
            anyhow::Ok((notifications, notices, cases, mentions))
        }
        .in_current_span()
    });
    let (pupils, records) = tokio::join!(pupils, records);
    let pupils = pupils.context("the attendance task stopped unexpectedly")??;
    let (notifications, notices, cases, mut mentions) =
        records.context("the records task stopped unexpectedly")??;
    debug!(
        seconds = t0.elapsed().as_secs_f64(),
        "Read records and attendance"
    );
    let t = Instant::now();
    let seeds: Vec<i64> = rules::pupil_seeds(&pupils, &a)
        .into_iter()
        .filter(|id| mentions.binary_search_by_key(id, |m| m.id).is_err())
        .collect();
    if !seeds.is_empty() {
        mentions.extend(
            store
                .rule_mentions_for(&seeds)
                .await
                .context("reading pupils' mentions")?,
        );
        // A family member of a pupil may be a record's mention too.
        mentions.sort_by_key(|m| m.id);
        mentions.dedup_by_key(|m| m.id);
    }
    debug!(
        seeds = seeds.len(),
        mentions = mentions.len(),
        seconds = t.elapsed().as_secs_f64(),
        "Read the pupils' mentions"
    );
    Ok(RuleInput {
        as_of,
        mentions,
        notifications,
        notices,
        cases,
        pupils,
    })
}

/// `kinlink evaluate`: one evaluation for the run's date.
#[instrument(skip_all, fields(stage = "evaluate"))]
pub async fn evaluate(
    settings: &Settings,
    store: &Store,
    clock: Clock,
) -> anyhow::Result<EvaluateReport> {
    let started_at = clock.now();
    let as_of = clock.today(settings.timezone);
    let t0 = Instant::now();
    let (input, existing) = tokio::try_join!(rule_input(store, settings, as_of), async {
        store
            .existing_alerts()
            .await
            .context("reading the alerts already raised")
    })?;
    let read_s = t0.elapsed().as_secs_f64();
    let config = settings.rules;
    let dir = directory(settings);
    let t1 = Instant::now();
    let (findings, problems, plan) = tokio::task::spawn_blocking(move || {
        let (findings, problems) = rules::evaluate(&input, &config);
        let plan = alerts::plan(&findings, &existing, &dir, &config, as_of);
        (findings, problems, plan)
    })
    .await
    .context("the rules task stopped unexpectedly")?;
    let rules_s = t1.elapsed().as_secs_f64();
    for p in &problems {
        warn!(rule = %p.rule, problem = %p.message, "Rule input problem");
    }
    let t2 = Instant::now();
    let detail = settings.mail.detail.as_str();
    store
        .apply_plan(
            &plan,
            as_of,
            started_at,
            clock.now(),
            detail,
            findings.len(),
        )
        .await
        .context("writing alerts")?;
    let write_s = t2.elapsed().as_secs_f64();
    let counts = plan.counts();
    info!(
        as_of = %as_of,
        findings = findings.len(),
        raised = counts.raised,
        escalated = counts.escalated,
        resolved = counts.resolved,
        deliveries = counts.deliveries,
        unrouted = counts.unrouted,
        "Evaluated rules"
    );
    Ok(EvaluateReport {
        as_of,
        findings: findings.len(),
        counts,
        raised_by: alerts::by_rule_and_locality(&plan)
            .into_iter()
            .map(|((r, l), n)| (r, l, n))
            .collect(),
        problems: problems.len(),
        read_s,
        rules_s,
        write_s,
    })
}
