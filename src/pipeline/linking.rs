//! The link stage: read every mention and what earlier runs left, link them into
//! persons (the engine in `link`), give persons and families their stable ids, build
//! households and families, and write the changes back in one transaction.
//!
//! Only differences are written (new or moved mentions, new or changed links), so
//! a second run on the same data adds no rows but the run row itself.
//!
//! Invariant: a reviewer's rejection holds on every later run (the engine honours
//! it; [`crate::link::guard`] makes sure).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Context;
use tracing::{info, instrument, warn};

use crate::clock::Clock;
use crate::config::{LinkageSettings, Settings};
use crate::link::family::{self, MentionFacts, PersonFacts};
use crate::link::{self, guard, ids, Band, LinkOptions, LinkResult, Previous, ScoredPair};
use crate::store::{LinkInput, LinkState, LinkWrite, NewHousehold, RunCounts, Store};

/// How much a link run recomputes: only what changed since the last run, or
/// every pair (`kinlink link --full`; the first run is always full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkScope {
    Incremental,
    Full,
}

/// What one link run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LinkReport {
    /// Whether every pair was recomputed (asked for, or the first run).
    pub full: bool,
    /// Mentions new or changed since the last run (all of them on a full run).
    pub changed_mentions: usize,
    pub counts: RunCounts,
    /// Persons created, and merged into an older one, this run.
    pub persons_created: usize,
    pub persons_merged: usize,
    /// Persons split because a reviewer rejected a pair the engine had joined.
    pub split_by_guard: usize,
    pub read_s: f64,
    pub link_s: f64,
    pub write_s: f64,
}

/// The engine's options from `[linkage]`.
pub fn link_options(l: &LinkageSettings) -> LinkOptions {
    LinkOptions {
        auto_link: l.auto_link,
        review: l.review,
        max_cluster_size: l.max_cluster_size,
        max_block_size: l.max_block_size,
        blocking: l
            .blocking
            .iter()
            .filter_map(|r| link::BlockingRule::parse(r))
            .collect(),
        m_overrides: l
            .m
            .iter()
            .map(|(field, level, m)| link::MOverride {
                field: field.clone(),
                level: level.clone(),
                m: *m,
            })
            .collect(),
        ..LinkOptions::default()
    }
}

/// The link stage (`kinlink link [--full]`, the `link` job step).
#[instrument(skip_all, fields(stage = "link", scope = ?scope))]
pub async fn link(
    settings: &Settings,
    store: &Store,
    clock: Clock,
    scope: LinkScope,
) -> anyhow::Result<LinkReport> {
    let started_at = clock.now();
    let t0 = Instant::now();
    let input = store.link_input().await.context("reading mentions")?;
    let state = store
        .link_state()
        .await
        .context("reading the last link run")?;
    let read_s = t0.elapsed().as_secs_f64();
    let opts = link_options(&settings.linkage);
    let t1 = Instant::now();
    let (mut write, mut report) =
        tokio::task::spawn_blocking(move || compute(&input, &state, &opts, scope))
            .await
            .context("the linking task stopped unexpectedly")?;
    report.link_s = t1.elapsed().as_secs_f64();
    write.started_at = started_at;
    write.finished_at = clock.now();
    let t2 = Instant::now();
    store
        .write_link_run(&write)
        .await
        .context("writing the link result")?;
    report.write_s = t2.elapsed().as_secs_f64();
    report.read_s = read_s;
    let c = &report.counts;
    info!(
        mentions = c.mentions,
        changed = report.changed_mentions,
        link_pairs = c.link_pairs,
        review_pairs = c.review_pairs,
        persons = c.persons,
        households = c.households,
        families = c.families,
        review_pending = c.review_pending,
        flags = c.flags,
        read_s,
        link_s = report.link_s,
        write_s = report.write_s,
        "Link run finished"
    );
    if report.split_by_guard > 0 {
        warn!(
            persons = report.split_by_guard,
            "Persons held a pair a reviewer rejected and were split"
        );
    }
    Ok(report)
}

/// Links, assigns ids and works out what to write. Pure.
pub fn compute(
    input: &LinkInput,
    state: &LinkState,
    opts: &LinkOptions,
    scope: LinkScope,
) -> (LinkWrite, LinkReport) {
    let full = scope == LinkScope::Full || state.last_max_file_id.is_none();
    let changed = (!full).then(|| state.changed.clone());
    let previous = Previous {
        pairs: match &changed {
            Some(c) => state
                .links
                .iter()
                .filter(|p| !c.contains(&p.a) && !c.contains(&p.b))
                .cloned()
                .collect(),
            None => Vec::new(),
        },
        decisions: state.decisions.clone(),
        model: state.model.clone(),
        changed,
    };
    let mut result = link::link(&input.mentions, &previous, opts);
    let split_by_guard =
        guard::split_rejected(&mut result.persons, &result.pairs, &previous.decisions);
    let mut report = LinkReport {
        full,
        changed_mentions: if full {
            input.mentions.len()
        } else {
            state.changed.len()
        },
        split_by_guard,
        ..LinkReport::default()
    };
    let mut w = LinkWrite {
        full,
        max_file_id: input.max_file_id,
        ..LinkWrite::default()
    };

    // Persons.
    let persons = ids::assign(&result.persons, &state.mention_person, state.next_person_id);
    report.persons_created = persons.created.len();
    report.persons_merged = persons.aliases.len();
    for (cluster, &id) in result.persons.iter().zip(&persons.ids) {
        for &m in cluster {
            if state.mention_person.get(&m) != Some(&id) {
                w.mention_persons.push((m, id));
            }
        }
    }
    w.new_persons = persons.created.clone();
    w.person_aliases = persons.aliases.clone();

    diff_links(state, &result, &mut w);

    let review_pending = diff_review(state, &result, &mut w);
    if state.model.as_ref() != Some(&result.model) {
        w.model = Some(result.model.clone());
    }

    // Households and families.
    let facts = person_facts(input, &result.persons, &persons.ids);
    let fam = family::build(&facts, &state.mention_family, state.next_family_id);
    diff_households_and_families(state, &fam, &mut w);
    w.new_families = fam.created.clone();
    w.family_aliases = fam.aliases.clone();

    w.flags = result.flags.clone();
    let count = |band| result.pairs.iter().filter(|p| p.band == band).count() as i64;
    w.counts = RunCounts {
        mentions: input.mentions.len() as i64,
        candidate_pairs: result.stats.candidate_pairs as i64,
        link_pairs: count(Band::Link),
        review_pairs: count(Band::Review),
        persons: result.persons.len() as i64,
        households: fam.households.len() as i64,
        families: fam.families.len() as i64,
        review_pending: review_pending as i64,
        flags: result.flags.len() as i64,
    };
    report.counts = w.counts.clone();
    (w, report)
}

/// The links to delete and to write: the difference between the stored set and
/// this run's.
fn diff_links(state: &LinkState, result: &LinkResult, w: &mut LinkWrite) {
    let old: HashMap<(i64, i64), &ScoredPair> =
        state.links.iter().map(|p| ((p.a, p.b), p)).collect();
    let new: HashMap<(i64, i64), &ScoredPair> =
        result.pairs.iter().map(|p| ((p.a, p.b), p)).collect();
    w.links_delete = old
        .keys()
        .filter(|k| !new.contains_key(k))
        .copied()
        .collect();
    w.links_delete.sort_unstable();
    w.links_upsert = result
        .pairs
        .iter()
        .filter(|p| old.get(&(p.a, p.b)).is_none_or(|o| *o != *p))
        .cloned()
        .collect();
}

/// The review queue's pairs to write and to withdraw (decided pairs are never
/// re-opened); returns how many are pending after the run.
fn diff_review(state: &LinkState, result: &LinkResult, w: &mut LinkWrite) -> usize {
    let review: Vec<&ScoredPair> = result
        .review
        .iter()
        .filter(|p| !state.decided.contains(&(p.a, p.b)))
        .collect();
    let review_keys: HashSet<(i64, i64)> = review.iter().map(|p| (p.a, p.b)).collect();
    w.review_upsert = review
        .iter()
        .filter(|p| {
            state
                .pending
                .get(&(p.a, p.b))
                .is_none_or(|(prob, ev)| *prob != p.probability || *ev != p.evidence)
        })
        .map(|p| (*p).clone())
        .collect();
    w.review_withdraw = state
        .pending
        .keys()
        .filter(|k| !review_keys.contains(k))
        .copied()
        .collect();
    w.review_withdraw.sort_unstable();
    review.len()
}

/// Each person's mentions as the household and family stage reads them.
fn person_facts(input: &LinkInput, persons: &[Vec<i64>], ids: &[i64]) -> Vec<PersonFacts> {
    let by_id: HashMap<i64, usize> = input
        .mentions
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i))
        .collect();
    persons
        .iter()
        .zip(ids)
        .map(|(cluster, &id)| PersonFacts {
            id,
            mentions: cluster
                .iter()
                .filter_map(|m| by_id.get(m).map(|&i| &input.mentions[i]))
                .map(|m| MentionFacts {
                    mention: m.id,
                    kind: m.kind,
                    uprn: m.uprn,
                    address_line1: m.address_line1.clone(),
                    postcode: m.postcode.clone(),
                    seen_on: m.seen_on,
                    case_families: input.case_families.get(&m.id).cloned().unwrap_or_default(),
                    notification: m.group.clone(),
                })
                .collect(),
        })
        .collect()
}

/// New households, and the household and family memberships that changed.
fn diff_households_and_families(state: &LinkState, fam: &family::FamilyResult, w: &mut LinkWrite) {
    let mut next_household = state.next_household_id;
    let mut household_of: HashMap<i64, i64> = HashMap::new();
    for h in &fam.households {
        let id = match state.households.get(&h.key) {
            Some(&id) => id,
            None => {
                let id = next_household;
                next_household += 1;
                w.new_households.push(NewHousehold {
                    id,
                    key: h.key.clone(),
                    uprn: h.uprn,
                    address_line1: h.address_line1.clone(),
                    postcode: h.postcode.clone(),
                });
                id
            }
        };
        for &p in &h.members {
            household_of.insert(p, id);
        }
    }
    w.household_members = household_of
        .iter()
        .filter(|(p, h)| state.household_of.get(p) != Some(h))
        .map(|(&p, &h)| (p, h))
        .collect();
    w.household_members.sort_unstable();
    w.household_members_delete = state
        .household_of
        .keys()
        .filter(|p| !household_of.contains_key(p))
        .copied()
        .collect();
    w.household_members_delete.sort_unstable();
    let mut members_now: HashSet<i64> = HashSet::new();
    for f in &fam.families {
        for &(p, via) in &f.members {
            members_now.insert(p);
            let same = state
                .family_of
                .get(&p)
                .is_some_and(|(fid, v)| *fid == f.id && v == via.as_str());
            if !same {
                w.family_members.push((p, f.id, via));
            }
        }
    }
    w.family_members_delete = state
        .family_of
        .keys()
        .filter(|p| !members_now.contains(p))
        .copied()
        .collect();
    w.family_members_delete.sort_unstable();
}
