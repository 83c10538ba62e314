//! The Fellegi–Sunter model: per field and comparison level, m (how often true
//! matches show that level) and u (how often non-matches do), plus the prior.
//!
//! Persisted as JSON in the store so a nightly incremental run scores new pairs with
//! the same weights as the full run that estimated them.

use serde::{Deserialize, Serialize};

/// m and u probabilities of every field's levels, and the prior match rate among
/// candidate pairs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Model {
    /// Probability that a candidate pair is a match, before comparing fields.
    pub lambda: f64,
    /// One entry per compared field.
    pub fields: Vec<FieldModel>,
}

/// The m and u probability of each level of one field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldModel {
    pub field: String,
    /// Level names, in the order of `m` and `u`.
    pub levels: Vec<String>,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
}

impl Model {
    /// JSON for the store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a model always serialises")
    }

    /// Reads a stored model back; `None` when it does not parse (the next run re-estimates).
    pub fn from_json(s: &str) -> Option<Model> {
        serde_json::from_str(s).ok()
    }
}

use super::compare::{self, FIELDS, N_FIELDS};
use super::prepare::Prepared;

/// Probabilities are kept inside [FLOOR, 1 - FLOOR] so that no single level can
/// veto or force a match on its own.
const FLOOR: f64 = 1e-6;
/// Weight of the priors in EM, in pairs: enough to keep a level no pair showed
/// from collapsing to zero, little enough for the data to speak.
const PRIOR_PAIRS: f64 = 50.0;
/// The priors also weigh as this share of the pairs EM counts as matches.
const PRIOR_SHARE: f64 = 0.05;
/// A term frequency never counts for less than this (one in 100,000 mentions).
const TF_FLOOR: f64 = 1e-5;
const EM_ITERATIONS: usize = 40;

impl Model {
    /// The model with the shipped priors for m and a uniform guess for u.
    pub fn prior() -> Model {
        Model {
            lambda: 0.1,
            fields: FIELDS
                .iter()
                .map(|f| {
                    let k = f.prior_m.len();
                    let mut m = f.prior_m.to_vec();
                    m.push(1.0);
                    let mut u = vec![1.0 / k as f64; k];
                    u.push(1.0);
                    FieldModel {
                        field: f.name.to_owned(),
                        levels: f.levels.iter().map(|s| (*s).to_owned()).collect(),
                        m,
                        u,
                    }
                })
                .collect(),
        }
    }

    /// Whether this model has the shape of the current comparison fields (a model
    /// persisted by an older version is re-estimated instead of misread).
    pub fn fits_fields(&self) -> bool {
        self.fields.len() == N_FIELDS
            && self.fields.iter().zip(FIELDS.iter()).all(|(fm, f)| {
                fm.field == f.name
                    && fm.levels.len() == f.levels.len()
                    && fm.m.len() == f.levels.len()
                    && fm.u.len() == f.levels.len()
                    && fm.levels.iter().zip(f.levels).all(|(a, b)| a == b)
            })
    }
}

/// xorshift64*: fast, deterministic, good enough to sample pairs.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// u probabilities from random pairs: how often two different people agree by chance.
pub(crate) fn estimate_u(p: &Prepared, samples: usize, seed: u64) -> Vec<Vec<f64>> {
    let n = p.len();
    let mut counts: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels.len()]).collect();
    if n >= 2 {
        let mut next = xorshift(seed);
        for _ in 0..samples {
            let i = (next() % n as u64) as usize;
            let j = (next() % n as u64) as usize;
            if i == j {
                continue;
            }
            let g = compare::compare(p, i, j);
            for (f, c) in counts.iter_mut().enumerate() {
                c[compare::get(g, f) as usize] += 1.0;
            }
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(f, c)| {
            let k = c.len() - 1;
            // Add-one smoothing over the non-missing levels.
            let total: f64 = c[..k].iter().sum::<f64>() + k as f64;
            let mut u: Vec<f64> = c[..k]
                .iter()
                .map(|x| ((x + 1.0) / total).clamp(FLOOR, 1.0 - FLOOR))
                .collect();
            u.push(1.0);
            debug_assert_eq!(u.len(), FIELDS[f].levels.len());
            u
        })
        .collect()
}

/// u of the date-of-birth levels for two random people born in the same period:
/// `divisor` 10,000 groups `yyyymmdd` by year, 100 by month.
pub(crate) fn estimate_u_dob_same_period(
    p: &Prepared,
    samples: usize,
    seed: u64,
    divisor: u32,
) -> Vec<f64> {
    let k = compare::FIELDS[compare::DOB].levels.len();
    let mut by_year: Vec<(u32, u32)> = (0..p.len())
        .filter(|&i| p.dob[i] != 0)
        .map(|i| (p.dob[i] / divisor.max(1), i as u32))
        .collect();
    by_year.sort_unstable();
    let mut counts = vec![0.0; k];
    if by_year.len() >= 2 {
        let mut next = xorshift(seed);
        for _ in 0..samples {
            let a = (next() % by_year.len() as u64) as usize;
            let year = by_year[a].0;
            let lo = by_year.partition_point(|x| x.0 < year);
            let hi = by_year.partition_point(|x| x.0 <= year);
            if hi - lo < 2 {
                continue;
            }
            let b = lo + (next() % (hi - lo) as u64) as usize;
            if a == b {
                continue;
            }
            let l = compare::dob(p.dob[by_year[a].1 as usize], p.dob[by_year[b].1 as usize]);
            counts[l as usize] += 1.0;
        }
    }
    let total: f64 = counts[..k - 1].iter().sum::<f64>() + (k - 1) as f64;
    let mut u: Vec<f64> = counts[..k - 1]
        .iter()
        .map(|x| ((x + 1.0) / total).clamp(FLOOR, 1.0 - FLOOR))
        .collect();
    u.push(1.0);
    u
}

/// Expectation–maximisation of m (u fixed) and λ over gamma patterns with counts.
/// Only fields with `use_field[f]` enter the likelihood and are re-estimated; the
/// others keep `m` as given (a blocking rule's own fields agree by construction and
/// say nothing about matches).
pub(crate) fn em(
    patterns: &[(u32, f64)],
    use_field: [bool; N_FIELDS],
    u: &[Vec<f64>],
    m: &mut [Vec<f64>],
    lambda: &mut f64,
) {
    let total: f64 = patterns.iter().map(|(_, c)| c).sum();
    if total < 1.0 {
        return;
    }
    for _ in 0..EM_ITERATIONS {
        let mut acc: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels.len()]).collect();
        let mut matches = 0.0;
        for &(g, count) in patterns {
            let (mut pm, mut pu) = (*lambda, 1.0 - *lambda);
            for f in 0..N_FIELDS {
                if !use_field[f] {
                    continue;
                }
                let l = compare::get(g, f) as usize;
                pm *= m[f][l];
                pu *= u[f][l];
            }
            let w = if pm + pu > 0.0 { pm / (pm + pu) } else { 0.0 };
            matches += w * count;
            for (f, a) in acc.iter_mut().enumerate() {
                a[compare::get(g, f) as usize] += w * count;
            }
        }
        *lambda = (matches / total).clamp(1e-6, 1.0 - 1e-6);
        for f in 0..N_FIELDS {
            if !use_field[f] {
                continue;
            }
            let k = FIELDS[f].levels.len() - 1;
            let prior = FIELDS[f].prior_m;
            let prior_pairs = PRIOR_PAIRS.max(PRIOR_SHARE * matches);
            let sum: f64 = acc[f][..k].iter().sum::<f64>() + prior_pairs;
            for l in 0..k {
                m[f][l] = ((acc[f][l] + prior_pairs * prior[l]) / sum).clamp(FLOOR, 1.0 - FLOOR);
            }
            m[f][k] = 1.0;
        }
    }
}

/// Counts of each distinct gamma. A gamma has 4 bits per field, so a flat table
/// indexed by gamma counts faster than a hash map over millions of pairs.
pub(crate) fn patterns(gammas: impl Iterator<Item = u32>) -> Vec<(u32, f64)> {
    let mut counts = vec![0u32; 1 << (4 * N_FIELDS)];
    for g in gammas {
        if let Some(c) = counts.get_mut(g as usize) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .filter(|&(_, c)| c > 0)
        .map(|(g, c)| (g as u32, f64::from(c)))
        .collect()
}

/// Match weights ready for scoring: log2(m/u) per field and level, the prior, and
/// term-frequency adjusted weights for exact name agreement.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    pub prior: f64,
    pub level: Vec<Vec<f64>>,
    /// m of the `exact` level of forename and surname, for the TF adjustment.
    pub m_exact_forename: f64,
    pub m_exact_surname: f64,
}

impl Weights {
    pub fn new(model: &Model) -> Weights {
        let level = model
            .fields
            .iter()
            .map(|f| {
                let k = f.levels.len() - 1;
                f.m.iter()
                    .zip(&f.u)
                    .enumerate()
                    .map(|(l, (m, u))| if l == k { 0.0 } else { (m / u).log2() })
                    .collect()
            })
            .collect();
        let lambda = model.lambda.clamp(1e-9, 1.0 - 1e-9);
        Weights {
            prior: (lambda / (1.0 - lambda)).log2(),
            level,
            m_exact_forename: model.fields[compare::FORENAME].m[0],
            m_exact_surname: model.fields[compare::SURNAME].m[0],
        }
    }

    /// Weight of each field of pair (i, j) with gamma `g`.
    pub fn fields(&self, p: &Prepared, i: usize, g: u32) -> [f64; N_FIELDS] {
        let mut w = [0.0; N_FIELDS];
        for (f, slot) in w.iter_mut().enumerate() {
            let l = compare::get(g, f);
            *slot = self.level[f][l as usize];
            if l == compare::level::EXACT {
                if f == compare::FORENAME {
                    let tf = f64::from(p.forename_count[p.forename[i] as usize])
                        / f64::from(p.forenames_present.max(1));
                    *slot = (self.m_exact_forename / tf.max(TF_FLOOR)).log2();
                } else if f == compare::SURNAME {
                    let tf = f64::from(p.surname_count[p.surname[i] as usize])
                        / f64::from(p.surnames_present.max(1));
                    *slot = (self.m_exact_surname / tf.max(TF_FLOOR)).log2();
                }
            }
        }
        w
    }

    /// Total weight (prior included) of pair (i, j) with gamma `g`.
    pub fn total(&self, p: &Prepared, i: usize, g: u32) -> f64 {
        self.prior + self.fields(p, i, g).iter().sum::<f64>()
    }
}

/// Probability from a weight in bits.
pub(crate) fn probability(weight: f64) -> f64 {
    1.0 / (1.0 + (-weight).exp2())
}

/// λ by EM with m and u fixed.
pub(crate) fn lambda_only(patterns: &[(u32, f64)], u: &[Vec<f64>], m: &[Vec<f64>]) -> f64 {
    let total: f64 = patterns.iter().map(|(_, c)| c).sum();
    if total < 1.0 {
        return 0.1;
    }
    // Bayes factor of each pattern, once.
    let factors: Vec<(f64, f64)> = patterns
        .iter()
        .map(|&(g, c)| {
            let bf: f64 = (0..N_FIELDS)
                .map(|f| {
                    let l = compare::get(g, f) as usize;
                    m[f][l] / u[f][l]
                })
                .product();
            (bf, c)
        })
        .collect();
    let mut lambda: f64 = 0.1;
    for _ in 0..EM_ITERATIONS {
        let odds = lambda / (1.0 - lambda);
        let matches: f64 = factors
            .iter()
            .map(|&(bf, c)| {
                let o = odds * bf;
                c * if o.is_finite() { o / (1.0 + o) } else { 1.0 }
            })
            .sum();
        lambda = (matches / total).clamp(1e-6, 1.0 - 1e-6);
    }
    lambda
}

/// Sets `m[level] = value` for field `f`, keeps every other level `overrides` fixes,
/// and scales the remaining non-missing levels to fill what is left.
pub(crate) fn fix_m(
    m: &mut [f64],
    level: usize,
    value: f64,
    overrides: &[super::MOverride],
    f: usize,
) {
    let k = m.len() - 1;
    if level >= k {
        return;
    }
    let fixed: Vec<bool> = (0..k)
        .map(|l| {
            l == level
                || overrides
                    .iter()
                    .any(|o| o.field == FIELDS[f].name && o.level == FIELDS[f].levels[l])
        })
        .collect();
    m[level] = value.clamp(FLOOR, 1.0 - FLOOR);
    let fixed_sum: f64 = (0..k).filter(|&l| fixed[l]).map(|l| m[l]).sum();
    let free_sum: f64 = (0..k).filter(|&l| !fixed[l]).map(|l| m[l]).sum();
    let left = (1.0 - fixed_sum).max(0.0);
    if free_sum > 0.0 {
        for l in (0..k).filter(|&l| !fixed[l]) {
            m[l] = (m[l] / free_sum * left).clamp(FLOOR, 1.0 - FLOOR);
        }
    }
}
