//! One linking run: prepare → deterministic keys → block → compare → estimate →
//! score → cluster.
//!
//! The guards (see [`guard`]) sit on top of the Fellegi–Sunter probability because
//! its independence assumption fails exactly where it hurts: people of one household
//! share surname, address and postcode, and twins a date of birth too. A probability
//! alone would link them; the guards make a forename or DOB disagreement outweigh a
//! shared address, and never auto-link on name + postcode alone (docs/domain.md 6).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Instant;

use super::block;
use super::caps::{self, guard, PairFacts};
use super::cluster::{Clusters, Refusal};
use super::compare::{self, FIELDS, N_FIELDS};
use super::model::{self, Model, Weights};
use super::prepare::{self, Nicknames, Prepared};
use super::Verdict;
use super::{
    Band, Basis, ClusterFlag, LinkMention, LinkOptions, LinkResult, LinkStats, Previous, ScoredPair,
};

/// Random pairs sampled to estimate u.
const U_SAMPLES: usize = 400_000;
const U_SEED: u64 = 0x6b69_6e6c_696e_6b21;

pub(super) fn nicknames() -> &'static Nicknames {
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
    /// Held back by the surname alone between two police notifications: linked after
    /// all if the notifications name someone else in common ([`caps::held_by_surname_alone`]).
    needs_shared_member: bool,
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
    let p = prepare::prepare(mentions, nicknames(), threads);
    let index: prepare::FxMap<i64, u32> = mentions
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
        &opts.blocking,
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
        _ => estimate(&p, &candidates, &gammas, opts),
    };
    stats.em_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let weights = Weights::new(&model);
    let scored = score_all(&p, &candidates, &gammas, &weights, opts, threads);
    stats.score_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut a = Assembly::new(mentions, &p, &index, &weights, previous, opts);
    a.flags
        .extend(large.iter().map(|l| ClusterFlag::LargeBlock {
            rule: l.rule.clone(),
            blocks: l.blocks,
            size: l.size,
        }));
    a.link_deterministic_keys();
    a.link_accepted(previous);
    let pending = a.link_strongest_first(&scored, a.kept(previous, changed.as_deref()));
    a.link_notifications_sharing_a_person(&pending);
    let done = a.finish();
    stats.cluster_s = t.elapsed().as_secs_f64();
    stats.link_pairs = done.pairs.iter().filter(|s| s.band == Band::Link).count();
    stats.review_pairs = done.review.len();
    stats.persons = done.persons.len();
    LinkResult {
        pairs: done.pairs,
        persons: done.persons,
        review: done.review,
        flags: done.flags,
        model,
        stats,
    }
}

/// Scored pairs becoming persons: the clusters, the pairs kept, the review queue and
/// the flags, as the steps of [`run`] add to them.
struct Assembly<'a> {
    mentions: &'a [LinkMention],
    p: &'a Prepared,
    index: &'a prepare::FxMap<i64, u32>,
    weights: &'a Weights,
    opts: &'a LinkOptions,
    clusters: Clusters<'a>,
    /// Pairs a person decided (either way): never scored again.
    decided: HashSet<(i64, i64)>,
    pairs: Vec<ScoredPair>,
    review: Vec<ScoredPair>,
    flags: Vec<ClusterFlag>,
}

impl<'a> Assembly<'a> {
    fn new(
        mentions: &'a [LinkMention],
        p: &'a Prepared,
        index: &'a prepare::FxMap<i64, u32>,
        weights: &'a Weights,
        previous: &Previous,
        opts: &'a LinkOptions,
    ) -> Self {
        let mut rejected: Vec<(usize, usize)> = Vec::new();
        let mut decided: HashSet<(i64, i64)> = HashSet::new();
        for d in &previous.decisions {
            let (a, b) = (d.a.min(d.b), d.a.max(d.b));
            decided.insert((a, b));
            if let (Some(&i), Some(&j)) = (index.get(&a), index.get(&b)) {
                if d.verdict == Verdict::Reject {
                    rejected.push((i as usize, j as usize));
                }
            }
        }
        Assembly {
            mentions,
            p,
            index,
            weights,
            opts,
            clusters: Clusters::new(p, &rejected, opts.max_cluster_size),
            decided,
            pairs: Vec::new(),
            review: Vec::new(),
            flags: mentions
                .iter()
                .filter(|m| m.identity_conflict)
                .map(|m| ClusterFlag::ReusedCasePersonId { mention: m.id })
                .collect(),
        }
    }

    /// Joins `i` and `j` for `sp` unless a constraint refuses; a refusal goes to
    /// review or the flags as [`note_refusal`] says.
    fn union(&mut self, sp: ScoredPair, i: usize, j: usize, check_consistency: bool) {
        match self.clusters.union(i, j, check_consistency) {
            Ok(()) => self.pairs.push(sp),
            Err(refusal) => note_refusal(
                refusal,
                &sp,
                self.mentions,
                i,
                j,
                &mut self.flags,
                &mut self.review,
            ),
        }
    }

    /// Step 1: the same valid UPN, or the same valid NHS number.
    fn link_deterministic_keys(&mut self) {
        let p = self.p;
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
                        let sp = deterministic(self.mentions, f, i, basis);
                        self.union(sp, f, i, false);
                    }
                }
            }
        }
    }

    /// Step 2: pairs a person accepted in review.
    fn link_accepted(&mut self, previous: &Previous) {
        for d in previous
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Accept)
        {
            let (a, b) = (d.a.min(d.b), d.a.max(d.b));
            let (Some(&i), Some(&j)) = (self.index.get(&a), self.index.get(&b)) else {
                continue;
            };
            let (i, j) = (i as usize, j as usize);
            let mut sp = deterministic(self.mentions, i, j, Basis::Reviewed);
            sp.evidence = "review=accepted".to_owned();
            if self.clusters.union(i, j, false).is_ok() {
                self.pairs.push(sp);
            }
        }
    }

    /// Pairs kept from the last run: both mentions unchanged and still present.
    fn kept<'p>(&self, previous: &'p Previous, changed: Option<&[bool]>) -> Vec<Link<'p>> {
        let Some(ch) = changed else {
            return Vec::new();
        };
        previous
            .pairs
            .iter()
            .filter(|sp| sp.basis == Basis::Probabilistic)
            .filter_map(|sp| {
                let (&i, &j) = (self.index.get(&sp.a)?, self.index.get(&sp.b)?);
                (!ch[i as usize] && !ch[j as usize]).then_some(Link::Kept(i, j, sp))
            })
            .collect()
    }

    /// Step 3: probabilistic links, strongest first; returns the pairs held back by the
    /// surname alone between two notifications, for step 4.
    fn link_strongest_first(&mut self, scored: &[Scored], kept: Vec<Link<'_>>) -> Vec<Scored> {
        let mut links: Vec<Link> = scored.iter().map(|s| Link::New(*s)).collect();
        links.extend(kept);
        // By weight, not probability: probabilities round to 1 for strong pairs, and
        // the exact match must be tried before the nickname one (twins).
        links.sort_by(|x, y| {
            y.weight()
                .total_cmp(&x.weight())
                .then_with(|| y.probability().total_cmp(&x.probability()))
                .then_with(|| x.ends().cmp(&y.ends()))
        });
        let mut pending: Vec<Scored> = Vec::new();
        for l in &links {
            let (i, j) = l.ends();
            let sp = match l {
                Link::New(s) if s.needs_shared_member => {
                    pending.push(*s);
                    continue;
                }
                Link::New(s) => to_scored_pair(self.mentions, self.p, self.weights, s),
                Link::Kept(_, _, sp) => (*sp).clone(),
            };
            if self.decided.contains(&(sp.a, sp.b)) {
                continue;
            }
            match sp.band {
                Band::Link => self.union(sp, i as usize, j as usize, true),
                Band::Review => self.review.push(sp),
                Band::NoLink => {}
            }
        }
        pending
    }

    /// Step 4: pairs held back by the surname alone between two notifications: two
    /// notifications at one home that name the same other person (her partner, her
    /// children) and a woman of one forename are one woman, whichever surname each
    /// officer wrote down. Strongest first; the rest keep their capped band.
    fn link_notifications_sharing_a_person(&mut self, pending: &[Scored]) {
        if pending.is_empty() {
            return;
        }
        let p = self.p;
        let wanted: HashSet<u32> = pending
            .iter()
            .flat_map(|s| [p.group[s.i as usize], p.group[s.j as usize]])
            .collect();
        let mut members: HashMap<u32, Vec<usize>> = HashMap::new();
        for (k, g) in p.group.iter().enumerate() {
            if wanted.contains(g) {
                members.entry(*g).or_default().push(k);
            }
        }
        let others = |x: usize| -> Vec<usize> {
            members
                .get(&p.group[x])
                .map(|m| m.iter().copied().filter(|&k| k != x).collect())
                .unwrap_or_default()
        };
        for s in pending {
            let (i, j) = (s.i as usize, s.j as usize);
            let mut sp = to_scored_pair(self.mentions, p, self.weights, s);
            if self.decided.contains(&(sp.a, sp.b)) {
                continue;
            }
            let (oi, oj) = (others(i), others(j));
            let shared = oi
                .iter()
                .any(|&k| oj.iter().any(|&l| self.clusters.same(k, l)));
            if !shared {
                if s.band == Band::Review {
                    self.review.push(sp);
                }
                continue;
            }
            sp.band = if s.probability >= self.opts.auto_link {
                Band::Link
            } else {
                Band::Review
            };
            if let Some(at) = sp.evidence.find(";cap=") {
                sp.evidence.truncate(at);
            }
            sp.evidence
                .push_str(";household=notifications_share_a_person");
            match sp.band {
                Band::Link => self.union(sp, i, j, true),
                _ => self.review.push(sp),
            }
        }
    }

    /// The pairs (review included), the review queue and the persons. A review pair
    /// whose mentions ended up in one person anyway, or that can never be linked,
    /// needs no one's time.
    fn finish(mut self) -> Assembled {
        let mut review = std::mem::take(&mut self.review);
        review.retain(|sp| {
            let (i, j) = (self.index[&sp.a] as usize, self.index[&sp.b] as usize);
            !self.clusters.same(i, j) && self.clusters.could_link(i, j)
        });
        review.sort_by_key(|s| (s.a, s.b));
        review.dedup_by(|a, b| a.a == b.a && a.b == b.b);
        let mut pairs = std::mem::take(&mut self.pairs);
        pairs.extend(review.iter().cloned());
        pairs.sort_by_key(|s| (s.a, s.b));
        pairs.dedup_by(|a, b| a.a == b.a && a.b == b.b);
        let mentions = self.mentions;
        let persons: Vec<Vec<i64>> = self
            .clusters
            .into_persons()
            .into_iter()
            .map(|c| c.into_iter().map(|i| mentions[i as usize].id).collect())
            .collect();
        Assembled {
            pairs,
            review,
            persons,
            flags: self.flags,
        }
    }
}

/// What [`Assembly::finish`] hands back.
struct Assembled {
    pairs: Vec<ScoredPair>,
    review: Vec<ScoredPair>,
    persons: Vec<Vec<i64>>,
    flags: Vec<ClusterFlag>,
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

    fn weight(&self) -> f64 {
        match self {
            Link::New(s) => s.weight,
            Link::Kept(_, _, sp) => sp.weight,
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
    if s.gamma & compare::SWAPPED != 0 {
        evidence.push_str("names=swapped;");
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
fn estimate(p: &Prepared, pairs: &[u64], gammas: &[u32], opts: &LinkOptions) -> Model {
    let mut model = Model::prior();
    if p.len() < 2 {
        return model;
    }
    // Enough random pairs for rare levels to show, no more than the population offers.
    let samples = U_SAMPLES.min(p.len().saturating_mul(50).max(10_000));
    let u = model::estimate_u(p, samples, U_SEED);
    let prior_m: Vec<Vec<f64>> = model.fields.iter().map(|f| f.m.clone()).collect();
    let mut m = prior_m.clone();

    // One EM per blocking rule that does not key on address, each estimating only
    // the fields its blocks do not key on (Splink's practice): inside a block keyed
    // on a field that field agrees by construction and says nothing about matches.
    let mut address_m: Vec<Vec<f64>> = Vec::new();
    for rule in opts.blocking.iter().filter(|r| !r.keys_on_address()) {
        let mut use_fields = [true; N_FIELDS];
        let mut u_rule = u.clone();
        for part in &rule.parts {
            match part {
                block::KeyPart::Dob => use_fields[compare::DOB] = false,
                block::KeyPart::ForenameCode | block::KeyPart::Forename => {
                    use_fields[compare::FORENAME] = false
                }
                block::KeyPart::SurnameCode => use_fields[compare::SURNAME] = false,
                block::KeyPart::NameCodes => {
                    use_fields[compare::FORENAME] = false;
                    use_fields[compare::SURNAME] = false;
                }
                block::KeyPart::Postcode | block::KeyPart::Address => {
                    use_fields[compare::ADDRESS] = false
                }
                // Within one birth year, DOB levels of strangers are not those of
                // random pairs: use u conditional on the year.
                block::KeyPart::BirthYear => {
                    u_rule[compare::DOB] =
                        model::estimate_u_dob_same_period(p, samples, U_SEED, 10_000)
                }
                block::KeyPart::BirthMonth => {
                    u_rule[compare::DOB] =
                        model::estimate_u_dob_same_period(p, samples, U_SEED, 100)
                }
            }
        }
        let patterns = model::patterns(pairs.iter().zip(gammas).filter_map(|(&x, &g)| {
            let (i, j) = block::unpair(x);
            rule.holds(p, i, j).then_some(g)
        }));
        let mut m_rule = prior_m.clone();
        let mut lambda = 0.3;
        model::em(&patterns, use_fields, &u_rule, &mut m_rule, &mut lambda);
        for f in 0..N_FIELDS {
            if !use_fields[f] {
                continue;
            }
            if f == compare::ADDRESS || f == compare::SEX {
                if f == compare::ADDRESS {
                    address_m.push(m_rule[f].clone());
                }
                continue;
            }
            m[f] = m_rule[f].clone();
        }
    }
    if !address_m.is_empty() {
        let k = address_m[0].len();
        m[compare::ADDRESS] = (0..k)
            .map(|l| address_m.iter().map(|v| v[l]).sum::<f64>() / address_m.len() as f64)
            .collect();
    }

    // m fixed by config wins over the estimate; the field's other levels share
    // what is left in their estimated proportions.
    for o in &opts.m_overrides {
        if let Some(f) = FIELDS.iter().position(|f| f.name == o.field) {
            if let Some(l) = FIELDS[f].levels.iter().position(|l| *l == o.level) {
                model::fix_m(&mut m[f], l, o.m, &opts.m_overrides, f);
            }
        }
    }

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
                        let uncapped = band;
                        let facts = PairFacts::of(p, i, j);
                        let cap = guard(g, facts);
                        if let Some((cap_band, _)) = cap {
                            band = band.max(cap_band);
                        }
                        let needs_shared_member = band != uncapped
                            && p.group[i] != 0
                            && p.group[j] != 0
                            && p.group[i] != p.group[j]
                            && caps::held_by_surname_alone(g, facts);
                        if band == Band::NoLink && !needs_shared_member {
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
                            needs_shared_member,
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
