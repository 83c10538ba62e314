//! One linking run: prepare → deterministic keys → block → compare → estimate →
//! score → cluster.
//!
//! The guards (see [`guard`]) sit on top of the Fellegi–Sunter probability because
//! its independence assumption fails exactly where it hurts: people of one household
//! share surname, address and postcode, and twins a date of birth too. A probability
//! alone would link them; the guards make a forename or DOB disagreement outweigh a
//! shared address, and never auto-link on name + postcode alone (domain.md 6).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Instant;

use super::block::{self, DEFAULT_RULES};
use super::cluster::{Clusters, Refusal};
use super::compare::{self, level, FIELDS, N_FIELDS};
use super::model::{self, Model, Weights};
use super::prepare::{self, Nicknames, Prepared};
use super::{
    Band, Basis, ClusterFlag, LinkMention, LinkOptions, LinkResult, LinkStats, Previous, ScoredPair,
};

/// Random pairs sampled to estimate u.
const U_SAMPLES: usize = 400_000;
const U_SEED: u64 = 0x6b69_6e6c_696e_6b21;

fn nicknames() -> &'static Nicknames {
    static TABLE: OnceLock<Nicknames> = OnceLock::new();
    TABLE.get_or_init(|| Nicknames::parse(prepare::NICKNAMES_CSV))
}

/// One scored pair before it becomes a [`ScoredPair`].
#[derive(Debug, Clone, Copy)]
struct Scored {
    i: u32,
    j: u32,
    gamma: u32,
    probability: f64,
    weight: f64,
    band: Band,
    cap: Option<&'static str>,
}

pub(super) fn run(mentions: &[LinkMention], previous: &Previous, opts: &LinkOptions) -> LinkResult {
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let mut stats = LinkStats {
        mentions: mentions.len(),
        ..LinkStats::default()
    };
    let t = Instant::now();
    let p = prepare::prepare(mentions, nicknames());
    let index: HashMap<i64, u32> = mentions
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i as u32))
        .collect();
    let changed: Option<Vec<bool>> = previous
        .changed
        .as_ref()
        .map(|set| mentions.iter().map(|m| set.contains(&m.id)).collect());
    stats.prepare_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (candidates, large) = block::candidates(
        &p,
        DEFAULT_RULES,
        changed.as_deref(),
        opts.max_block_size,
        threads,
    );
    stats.candidate_pairs = candidates.len();
    let gammas = compare_all(&p, &candidates, threads);
    stats.block_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let model = match (&previous.model, &changed) {
        (Some(m), Some(_)) if m.fits_fields() => m.clone(),
        _ => estimate(&p, &candidates, &gammas),
    };
    stats.em_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let weights = Weights::new(&model);
    let scored = score_all(&p, &candidates, &gammas, &weights, opts, threads);
    stats.score_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut flags: Vec<ClusterFlag> = large
        .iter()
        .map(|l| ClusterFlag::LargeBlock {
            rule: l.rule.to_owned(),
            size: l.size,
        })
        .collect();

    // Pairs kept from the last run: both mentions unchanged and still present.
    let mut kept: Vec<(u32, u32, &ScoredPair)> = Vec::new();
    if let Some(ch) = &changed {
        for sp in &previous.pairs {
            if let (Some(&i), Some(&j)) = (index.get(&sp.a), index.get(&sp.b)) {
                if !ch[i as usize] && !ch[j as usize] && sp.basis == Basis::Probabilistic {
                    kept.push((i, j, sp));
                }
            }
        }
    }

    let mut accepted: Vec<(usize, usize)> = Vec::new();
    let mut rejected: Vec<(usize, usize)> = Vec::new();
    let mut decided: HashSet<(i64, i64)> = HashSet::new();
    for d in &previous.decisions {
        let (a, b) = (d.a.min(d.b), d.a.max(d.b));
        decided.insert((a, b));
        if let (Some(&i), Some(&j)) = (index.get(&a), index.get(&b)) {
            if d.accept {
                accepted.push((i as usize, j as usize));
            } else {
                rejected.push((i as usize, j as usize));
            }
        }
    }

    let mut clusters = Clusters::new(&p, &rejected, opts.max_cluster_size);
    let mut pairs: Vec<ScoredPair> = Vec::new();
    let mut review: Vec<ScoredPair> = Vec::new();

    // 1. Deterministic keys.
    for (basis, keys) in [(Basis::Upn, &p.upn), (Basis::Nhs, &p.nhs)] {
        let mut first: HashMap<u32, usize> = HashMap::new();
        for (i, &k) in keys.iter().enumerate() {
            if k == 0 {
                continue;
            }
            match first.get(&k) {
                None => {
                    first.insert(k, i);
                }
                Some(&f) => {
                    let sp = deterministic(mentions, f, i, basis);
                    match clusters.union(f, i, false) {
                        Ok(()) => pairs.push(sp),
                        Err(refusal) => {
                            note_refusal(refusal, &sp, mentions, f, i, &mut flags, &mut review)
                        }
                    }
                }
            }
        }
    }
    // 2. Human decisions.
    for &(i, j) in &accepted {
        let mut sp = deterministic(mentions, i, j, Basis::Reviewed);
        sp.evidence = "review=accepted".to_owned();
        if clusters.union(i, j, false).is_ok() {
            pairs.push(sp);
        }
    }
    // 3. Probabilistic links, strongest first.
    let mut links: Vec<Link> = Vec::new();
    for s in &scored {
        links.push(Link::New(*s));
    }
    for &(i, j, sp) in &kept {
        links.push(Link::Kept(i, j, sp));
    }
    links.sort_by(|x, y| {
        y.probability()
            .total_cmp(&x.probability())
            .then_with(|| x.ends().cmp(&y.ends()))
    });
    for l in &links {
        let (i, j) = l.ends();
        let sp = match l {
            Link::New(s) => to_scored_pair(mentions, &p, &weights, s),
            Link::Kept(_, _, sp) => (*sp).clone(),
        };
        if decided.contains(&(sp.a, sp.b)) {
            continue;
        }
        match sp.band {
            Band::Link => match clusters.union(i as usize, j as usize, true) {
                Ok(()) => pairs.push(sp),
                Err(refusal) => note_refusal(
                    refusal,
                    &sp,
                    mentions,
                    i as usize,
                    j as usize,
                    &mut flags,
                    &mut review,
                ),
            },
            Band::Review => review.push(sp),
            Band::NoLink => {}
        }
    }
    // A review pair whose mentions ended up in one person anyway, or that can never
    // be linked, needs no one's time.
    review.retain(|sp| {
        let (i, j) = (index[&sp.a] as usize, index[&sp.b] as usize);
        !clusters.same(i, j)
    });
    review.sort_by_key(|s| (s.a, s.b));
    review.dedup_by(|a, b| a.a == b.a && a.b == b.b);
    pairs.extend(review.iter().cloned());
    pairs.sort_by_key(|s| (s.a, s.b));
    pairs.dedup_by(|a, b| a.a == b.a && a.b == b.b);

    let persons: Vec<Vec<i64>> = clusters
        .into_persons()
        .into_iter()
        .map(|c| c.into_iter().map(|i| mentions[i as usize].id).collect())
        .collect();
    stats.cluster_s = t.elapsed().as_secs_f64();
    stats.link_pairs = pairs.iter().filter(|s| s.band == Band::Link).count();
    stats.review_pairs = review.len();
    stats.persons = persons.len();
    LinkResult {
        pairs,
        persons,
        review,
        flags,
        model,
        stats,
    }
}

enum Link<'a> {
    New(Scored),
    Kept(u32, u32, &'a ScoredPair),
}

impl Link<'_> {
    fn probability(&self) -> f64 {
        match self {
            Link::New(s) => s.probability,
            Link::Kept(_, _, sp) => sp.probability,
        }
    }

    fn ends(&self) -> (u32, u32) {
        match self {
            Link::New(s) => (s.i, s.j),
            Link::Kept(i, j, _) => ((*i).min(*j), (*i).max(*j)),
        }
    }
}

fn note_refusal(
    refusal: Refusal,
    sp: &ScoredPair,
    mentions: &[LinkMention],
    i: usize,
    j: usize,
    flags: &mut Vec<ClusterFlag>,
    review: &mut Vec<ScoredPair>,
) {
    match refusal {
        Refusal::CannotLink => {}
        Refusal::Inconsistent => {
            let mut sp = sp.clone();
            sp.band = Band::Review;
            sp.evidence.push_str(";cap=person_inconsistent");
            review.push(sp);
        }
        Refusal::SizeCap(size) => {
            flags.push(ClusterFlag::SizeCap {
                a: mentions[i].id.min(mentions[j].id),
                b: mentions[i].id.max(mentions[j].id),
                size,
            });
            let mut sp = sp.clone();
            sp.band = Band::Review;
            sp.evidence.push_str(";cap=size");
            review.push(sp);
        }
    }
}

fn deterministic(mentions: &[LinkMention], i: usize, j: usize, basis: Basis) -> ScoredPair {
    let (a, b) = (mentions[i].id, mentions[j].id);
    ScoredPair {
        a: a.min(b),
        b: a.max(b),
        basis,
        probability: 1.0,
        weight: 0.0,
        band: Band::Link,
        evidence: format!("{}=exact", basis.as_str()),
    }
}

fn to_scored_pair(mentions: &[LinkMention], p: &Prepared, w: &Weights, s: &Scored) -> ScoredPair {
    let (i, j) = (s.i as usize, s.j as usize);
    let fw = w.fields(p, i, s.gamma);
    let mut evidence = String::with_capacity(160);
    for (f, weight) in fw.iter().enumerate() {
        let l = compare::get(s.gamma, f) as usize;
        evidence.push_str(FIELDS[f].name);
        evidence.push('=');
        evidence.push_str(FIELDS[f].levels[l]);
        evidence.push(':');
        push_weight(&mut evidence, *weight);
        evidence.push(';');
    }
    evidence.push_str("prior:");
    push_weight(&mut evidence, w.prior);
    if let Some(cap) = s.cap {
        evidence.push_str(";cap=");
        evidence.push_str(cap);
    }
    let (a, b) = (mentions[i].id, mentions[j].id);
    ScoredPair {
        a: a.min(b),
        b: a.max(b),
        basis: Basis::Probabilistic,
        probability: s.probability,
        weight: s.weight,
        band: s.band,
        evidence,
    }
}

/// Appends `w` as `+12.34` / `-0.50` (two decimals, always signed) without the
/// formatting machinery: evidence is written for every kept pair.
fn push_weight(s: &mut String, w: f64) {
    let hundredths = (w * 100.0).round();
    let hundredths = if hundredths.is_finite() {
        hundredths.clamp(-1e9, 1e9) as i64
    } else {
        0
    };
    s.push(if hundredths < 0 { '-' } else { '+' });
    let a = hundredths.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut n = a / 100;
    let mut k = 0;
    loop {
        digits[k] = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in digits[..k].iter().rev() {
        s.push(*d as char);
    }
    s.push('.');
    s.push((b'0' + (a / 10 % 10) as u8) as char);
    s.push((b'0' + (a % 10) as u8) as char);
}

fn compare_all(p: &Prepared, pairs: &[u64], threads: usize) -> Vec<u32> {
    let mut out = vec![0u32; pairs.len()];
    let chunk = pairs.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (src, dst) in pairs.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (x, g) in src.iter().zip(dst.iter_mut()) {
                    let (i, j) = block::unpair(*x);
                    *g = compare::compare(p, i, j);
                }
            });
        }
    });
    out
}

/// Estimates u from random pairs and m by EM on blocks that do not key on address,
/// each field from the blocks that do not key on it.
fn estimate(p: &Prepared, pairs: &[u64], gammas: &[u32]) -> Model {
    let mut model = Model::prior();
    if p.len() < 2 {
        return model;
    }
    // Enough random pairs for rare levels to show, no more than the population offers.
    let samples = U_SAMPLES.min(p.len().saturating_mul(50).max(10_000));
    let u = model::estimate_u(p, samples, U_SEED);
    let mut m: Vec<Vec<f64>> = model.fields.iter().map(|f| f.m.clone()).collect();

    let dob_rules: Vec<_> = DEFAULT_RULES
        .iter()
        .filter(|r| !r.keys_on_address() && r.parts.contains(&block::KeyPart::Dob))
        .collect();
    let name_rules: Vec<_> = DEFAULT_RULES
        .iter()
        .filter(|r| {
            !r.keys_on_address()
                && !r.parts.contains(&block::KeyPart::Dob)
                && r.parts.contains(&block::KeyPart::SurnameCode)
        })
        .collect();

    // Names, address and sex from pairs blocked on date of birth.
    let on_dob = model::patterns(pairs.iter().zip(gammas).filter_map(|(&x, &g)| {
        let (i, j) = block::unpair(x);
        dob_rules.iter().any(|r| r.holds(p, i, j)).then_some(g)
    }));
    let mut lambda = 0.1;
    let mut use_fields = [true; N_FIELDS];
    use_fields[compare::DOB] = false;
    model::em(&on_dob, use_fields, &u, &mut m, &mut lambda);

    // Date of birth from pairs blocked on names and birth year, the rest held.
    let on_names = model::patterns(pairs.iter().zip(gammas).filter_map(|(&x, &g)| {
        let (i, j) = block::unpair(x);
        name_rules.iter().any(|r| r.holds(p, i, j)).then_some(g)
    }));
    let mut m2 = m.clone();
    let mut lambda2 = 0.1;
    let mut use_fields = [false; N_FIELDS];
    use_fields[compare::DOB] = true;
    use_fields[compare::ADDRESS] = true;
    use_fields[compare::SEX] = true;
    model::em(&on_names, use_fields, &u, &mut m2, &mut lambda2);
    m[compare::DOB] = m2[compare::DOB].clone();

    // The prior among all candidate pairs, with m and u fixed.
    let all = model::patterns(gammas.iter().copied());
    model.lambda = model::lambda_only(&all, &u, &m);
    for (f, fm) in model.fields.iter_mut().enumerate() {
        fm.m = m[f].clone();
        fm.u = u[f].clone();
    }
    model
}

fn score_all(
    p: &Prepared,
    pairs: &[u64],
    gammas: &[u32],
    w: &Weights,
    opts: &LinkOptions,
    threads: usize,
) -> Vec<Scored> {
    let chunk = pairs.len().div_ceil(threads.max(1)).max(1);
    let mut parts: Vec<Vec<Scored>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(chunk)
            .zip(gammas.chunks(chunk))
            .map(|(src, gs)| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (&x, &g) in src.iter().zip(gs) {
                        let (i, j) = block::unpair(x);
                        let weight = w.total(p, i, g);
                        let probability = model::probability(weight);
                        if probability < opts.review {
                            continue;
                        }
                        let mut band = if probability >= opts.auto_link {
                            Band::Link
                        } else {
                            Band::Review
                        };
                        let schools_differ =
                            p.school[i] != 0 && p.school[j] != 0 && p.school[i] != p.school[j];
                        let cap = guard(g, schools_differ);
                        if let Some((cap_band, _)) = cap {
                            band = band.max(cap_band);
                        }
                        if band == Band::NoLink {
                            continue;
                        }
                        out.push(Scored {
                            i: i as u32,
                            j: j as u32,
                            gamma: g,
                            probability,
                            weight,
                            band,
                            cap: cap.map(|c| c.1),
                        });
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            parts.push(h.join().unwrap_or_default());
        }
    });
    parts.concat()
}

/// The best band a pair with levels `g` may have whatever its probability, and why.
///
/// - A date of birth that disagrees outright (both given): not the same person
///   (a father and son of one name at one address).
/// - Fewer than two of name, DOB and address agreeing: not enough evidence
///   (two Olivers born the same day across the borough).
/// - A date of birth one part off counts as agreement only with the name agreeing
///   too (a household shares an address, and DOBs a day apart are common).
/// - A forename that disagrees outright: review at most (twins share everything else).
/// - Pupils of two different schools who do not share an address: review at most
///   (namesakes born the same day; a pupil who changed school usually kept the address).
/// - No DOB agreement and only the postcode, not the house, agreeing: review at most
///   ("never auto-merge on name + postcode alone").
pub(crate) fn guard(g: u32, schools_differ: bool) -> Option<(Band, &'static str)> {
    let fore = compare::get(g, compare::FORENAME);
    let sur = compare::get(g, compare::SURNAME);
    let dob = compare::get(g, compare::DOB);
    let addr = compare::get(g, compare::ADDRESS);
    if dob == level::DOB_OTHER {
        return Some((Band::NoLink, "dob_disagrees"));
    }
    let name_agrees = fore <= level::FORENAME_INITIAL && sur < level::SURNAME_OTHER;
    let dob_agrees = dob < level::DOB_ONE_PART || (dob == level::DOB_ONE_PART && name_agrees);
    let address_agrees = addr <= level::ADDRESS_STREET && addr != level::ADDRESS_OTHER_HOUSE;
    let agreeing = u8::from(name_agrees) + u8::from(dob_agrees) + u8::from(address_agrees);
    if agreeing < 2 {
        return Some((Band::NoLink, "weak_evidence"));
    }
    if fore == level::FORENAME_OTHER {
        return Some((Band::Review, "forename_disagrees"));
    }
    if schools_differ && !address_agrees {
        return Some((Band::Review, "different_schools"));
    }
    if !dob_agrees && addr == level::ADDRESS_POSTCODE {
        return Some((Band::Review, "name_and_postcode_only"));
    }
    if !dob_agrees && fore == level::FORENAME_INITIAL {
        return Some((Band::Review, "initial_only"));
    }
    if dob == level::DOB_WITHIN_A_YEAR && !address_agrees {
        return Some((Band::Review, "dob_near_only"));
    }
    None
}

#[cfg(test)]
mod weight_tests {
    use super::push_weight;

    #[test]
    fn weights_print_signed_with_two_decimals() {
        for (w, text) in [
            (12.345, "+12.35"),
            (-0.5, "-0.50"),
            (0.0, "+0.00"),
            (-16.2, "-16.20"),
            (f64::NAN, "+0.00"),
        ] {
            let mut s = String::new();
            push_weight(&mut s, w);
            assert_eq!(s, text);
        }
    }
}
