//! The link stage: read every mention and what earlier runs left, link them into
//! persons (the engine in `link`), give persons and families their stable ids, build
//! households and families, and write the changes back in one transaction.
//!
//! Only differences are written (new or moved mentions, new or changed links), so
//! a second run on the same data adds no rows but the run row itself.
//!
//! Invariant: a reviewer's rejection holds on every later run (the engine honours
//! it; [`crate::link::guard`] makes sure).
//! Invariant: the first run after `review undo` leaves persons, families, their ids
//! and aliases as they were before the withdrawn decision: the run that applied a
//! decision keeps the ids of the mentions around it, and those stand in for the
//! previous ids; an id it merged away is live again (its alias goes), and an id
//! only it made is given up without an alias, never handed out again.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use anyhow::Context;
use tracing::{info, instrument, warn};

use crate::clock::Clock;
use crate::config::{LinkageSettings, Settings};
use crate::link::family::{self, MentionFacts, PersonFacts};
use crate::link::{
    self, guard, ids, Band, Decision, LinkOptions, LinkResult, Previous, ScoredPair,
};
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

/// mention → person or family id, borrowed from the store's state or amended.
type IdMap<'s> = Cow<'s, HashMap<i64, i64>>;

/// One run's persons and families with their ids, before anything is compared
/// with the store.
struct Core<'s> {
    full: bool,
    result: LinkResult,
    split_by_guard: usize,
    persons: ids::Assignment,
    previous_person: IdMap<'s>,
    previous_family: IdMap<'s>,
    fam: family::FamilyResult,
}

/// Links under `decisions`, then gives persons and families their ids.
fn core<'s>(
    input: &LinkInput,
    state: &'s LinkState,
    opts: &LinkOptions,
    scope: LinkScope,
    decisions: &[Decision],
) -> Core<'s> {
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
        decisions: decisions.to_vec(),
        model: state.model.clone(),
        changed,
    };
    let mut result = link::link(&input.mentions, &previous, opts);
    let split_by_guard = guard::split_rejected(&mut result.persons, &result.pairs, decisions);
    // A withdrawn decision's ids stand in for the previous ones of the mentions
    // around it, so the ids come back as they were before it.
    let (previous_person, previous_family) = previous_ids(state);
    let persons = ids::assign(&result.persons, &previous_person, state.next_person_id);
    let facts = person_facts(input, &result.persons, &persons.ids);
    let fam = family::build(&facts, &previous_family, state.next_family_id);
    Core {
        full,
        result,
        split_by_guard,
        persons,
        previous_person,
        previous_family,
        fam,
    }
}

/// Each mention's person and family as the next incremental run would leave them,
/// were `decisions` the standing review decisions. Pure; nothing is written.
pub fn placement(
    input: &LinkInput,
    state: &LinkState,
    opts: &LinkOptions,
    decisions: &[Decision],
) -> Placement {
    let c = core(input, state, opts, LinkScope::Incremental, decisions);
    Placement::new(&c.result.persons, &c.persons.ids, &c.fam.families)
}

/// Links, assigns ids and works out what to write. Pure.
pub fn compute(
    input: &LinkInput,
    state: &LinkState,
    opts: &LinkOptions,
    scope: LinkScope,
) -> (LinkWrite, LinkReport) {
    let Core {
        full,
        result,
        split_by_guard,
        persons,
        previous_person,
        previous_family,
        fam,
    } = core(input, state, opts, scope, &state.decisions);
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
    diff_households_and_families(state, &fam, &mut w);
    w.new_families = fam.created.clone();
    w.family_aliases = fam.aliases.clone();

    if !state.unapplied.is_empty() || !state.restores.is_empty() {
        let now = Placement::new(&result.persons, &persons.ids, &fam.families);
        record_decisions(state, &previous_person, &previous_family, &now, &mut w);
        (w.persons_revived, w.persons_undone) = ids_back(
            &state.mention_person,
            &state.retired_persons,
            &now.person,
            &persons.aliases,
        );
        (w.families_revived, w.families_undone) = ids_back(
            &state.mention_family,
            &state.retired_families,
            &now.family,
            &fam.aliases,
        );
        w.decisions_restored = state.restores.iter().map(|r| r.decision).collect();
    }

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

/// The ids the run reckons from: the stored ones, with each withdrawn decision's
/// ids standing in for those of the mentions around it (where two withdrawn
/// decisions overlap, the older one's: the ids from before both).
fn previous_ids(state: &LinkState) -> (IdMap<'_>, IdMap<'_>) {
    if state.restores.iter().all(|r| r.ids.is_empty()) {
        return (
            Cow::Borrowed(&state.mention_person),
            Cow::Borrowed(&state.mention_family),
        );
    }
    let mut persons = state.mention_person.clone();
    let mut families = state.mention_family.clone();
    // Newest first, as read: an older decision's ids overwrite a newer one's.
    for r in &state.restores {
        for &(m, p, f) in &r.ids {
            if let Some(p) = p {
                persons.insert(m, p);
            }
            if let Some(f) = f {
                families.insert(m, f);
            }
        }
    }
    (Cow::Owned(persons), Cow::Owned(families))
}

/// Each mention's person and family after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// mention → person id.
    pub person: HashMap<i64, i64>,
    /// mention → family id (a mention whose person is in no family has none).
    pub family: HashMap<i64, i64>,
}

impl Placement {
    fn new(persons: &[Vec<i64>], ids: &[i64], families: &[family::Family]) -> Placement {
        let family_of: HashMap<i64, i64> = families
            .iter()
            .flat_map(|f| f.members.iter().map(move |&(p, _)| (p, f.id)))
            .collect();
        let mut now = Placement {
            person: HashMap::new(),
            family: HashMap::new(),
        };
        for (cluster, &id) in persons.iter().zip(ids) {
            let family = family_of.get(&id);
            for &m in cluster {
                now.person.insert(m, id);
                if let Some(&f) = family {
                    now.family.insert(m, f);
                }
            }
        }
        now
    }
}

/// Marks the decisions this run applies for the first time and keeps, for each,
/// the ids before this run of the mentions around it (those of both mentions'
/// persons and families, before and after): what an undo gives back.
fn record_decisions(
    state: &LinkState,
    previous_person: &HashMap<i64, i64>,
    previous_family: &HashMap<i64, i64>,
    now: &Placement,
    w: &mut LinkWrite,
) {
    if state.unapplied.is_empty() {
        return;
    }
    // id → the decisions whose mentions it holds, for each of the four maps.
    let maps = [previous_person, previous_family, &now.person, &now.family];
    let mut wanted: [HashMap<i64, Vec<i64>>; 4] = Default::default();
    let mut rows: BTreeSet<(i64, i64)> = BTreeSet::new();
    for &(d, a, b) in &state.unapplied {
        for m in [a, b] {
            rows.insert((d, m));
            for (map, want) in maps.iter().zip(wanted.iter_mut()) {
                if let Some(&id) = map.get(&m) {
                    want.entry(id).or_default().push(d);
                }
            }
        }
    }
    for (map, want) in maps.iter().zip(&wanted) {
        for (&m, id) in map.iter() {
            for &d in want.get(id).map(Vec::as_slice).unwrap_or_default() {
                rows.insert((d, m));
            }
        }
    }
    w.decision_ids = rows
        .into_iter()
        .map(|(d, m)| {
            (
                d,
                m,
                previous_person.get(&m).copied(),
                previous_family.get(&m).copied(),
            )
        })
        .filter(|r| r.2.is_some() || r.3.is_some())
        .collect();
    w.decisions_applied = state.unapplied.iter().map(|u| u.0).collect();
}

/// The ids a withdrawn decision brings back or leaves unused, for persons or
/// families: `(revived, undone)`. Revived: merged away before, in use again.
/// Undone: held mentions before this run, hold none now and were not merged
/// (only an id the withdrawn decision made can be left so); each resolves to the
/// id now holding its oldest mention.
fn ids_back(
    stored: &HashMap<i64, i64>,
    retired: &HashSet<i64>,
    now: &HashMap<i64, i64>,
    aliases: &[(i64, i64)],
) -> (Vec<i64>, Vec<(i64, i64)>) {
    let live: HashSet<i64> = now.values().copied().collect();
    let mut revived: Vec<i64> = live
        .iter()
        .filter(|id| retired.contains(id))
        .copied()
        .collect();
    revived.sort_unstable();
    let aliased: HashSet<i64> = aliases.iter().map(|a| a.0).collect();
    let mut oldest: HashMap<i64, (i64, i64)> = HashMap::new();
    for (&m, &old) in stored {
        if live.contains(&old) || aliased.contains(&old) {
            continue;
        }
        let Some(&new) = now.get(&m) else { continue };
        let e = oldest.entry(old).or_insert((m, new));
        if m < e.0 {
            *e = (m, new);
        }
    }
    let mut undone: Vec<(i64, i64)> = oldest
        .into_iter()
        .map(|(old, (_, new))| (old, new))
        .collect();
    undone.sort_unstable();
    (revived, undone)
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
