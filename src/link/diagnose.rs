//! Why one pair of mentions is or is not one person, as the linker sees it: which
//! blocking rule makes it a candidate, its comparison levels, its probability and the
//! cap on its band. For quality harnesses that explain each missed true pair; the
//! linking run itself never calls it.
//!
//! Pure: no IO.

use super::block::BlockingRule;
use super::caps::{guard, PairFacts, GENERATION_YEARS};
use super::compare::{self, FIELDS};
use super::engine::nicknames;
use super::model::{self, Model, Weights};
use super::prepare::{self, FxMap};
use super::{Band, LinkMention, LinkOptions};

/// What the linker makes of one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairDiagnosis {
    pub a: i64,
    pub b: i64,
    /// The first blocking rule under which the two are compared; `None` when no rule
    /// brings them together (they are never scored).
    pub candidate_rule: Option<String>,
    /// `field=level` for each compared field, joined by `;`.
    pub levels: String,
    pub probability: f64,
    /// The band the probability alone gives.
    pub band_by_probability: Band,
    /// The cap a guard puts on the band, if any (e.g. `forename_disagrees`).
    pub cap: Option<(Band, &'static str)>,
    /// Years between the two dates of birth (0 when either is missing).
    pub years_apart: u32,
}

impl PairDiagnosis {
    /// Whether the linker's rules forbid joining the pair directly whatever else is
    /// known: dates of birth a generation apart (a father and a son of one name), or
    /// a name and a postcode alone (docs/domain.md 6).
    pub fn rule_bound(&self) -> bool {
        match self.cap {
            Some((Band::NoLink, "dob_disagrees")) => self.years_apart >= GENERATION_YEARS,
            Some((_, "name_and_postcode_only")) => true,
            _ => false,
        }
    }
}

/// Diagnoses `pairs` (mention ids) among `mentions` with `model`; pairs naming an id
/// not among `mentions` are left out.
pub fn diagnose(
    mentions: &[LinkMention],
    model: &Model,
    opts: &LinkOptions,
    pairs: &[(i64, i64)],
) -> Vec<PairDiagnosis> {
    let p = prepare::prepare(mentions, nicknames(), opts.threads.max(1));
    let index: FxMap<i64, usize> = mentions
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i))
        .collect();
    let weights = Weights::new(model);
    pairs
        .iter()
        .filter_map(|&(a, b)| {
            let (i, j) = (*index.get(&a)?, *index.get(&b)?);
            let (i, j) = (i.min(j), i.max(j));
            let g = compare::compare(&p, i, j);
            let facts = PairFacts::of(&p, i, j);
            let probability = model::probability(weights.total(&p, i, g));
            let mut levels = (0..FIELDS.len())
                .map(|f| {
                    format!(
                        "{}={}",
                        FIELDS[f].name,
                        FIELDS[f].levels[compare::get(g, f) as usize]
                    )
                })
                .collect::<Vec<_>>()
                .join(";");
            if g & compare::SWAPPED != 0 {
                levels.push_str(";names=swapped");
            }
            let band_by_probability = if probability >= opts.auto_link {
                Band::Link
            } else if probability >= opts.review {
                Band::Review
            } else {
                Band::NoLink
            };
            Some(PairDiagnosis {
                a,
                b,
                candidate_rule: opts
                    .blocking
                    .iter()
                    .find(|r: &&BlockingRule| r.holds(&p, i, j))
                    .map(|r| r.name.clone()),
                levels,
                probability,
                band_by_probability,
                cap: guard(g, facts),
                years_apart: facts.years_apart,
            })
        })
        .collect()
}
