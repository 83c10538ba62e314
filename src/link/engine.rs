//! The linking run: prepare → block → compare/score → cluster.
//!
//! (Placeholder: deterministic keys only, until the probabilistic stages land.)

use std::collections::HashMap;

use super::{
    model::Model, Band, Basis, LinkMention, LinkOptions, LinkResult, LinkStats, Previous,
    ScoredPair,
};

pub(super) fn run(
    mentions: &[LinkMention],
    _previous: &Previous,
    _opts: &LinkOptions,
) -> LinkResult {
    let mut parent: Vec<usize> = (0..mentions.len()).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut pairs = Vec::new();
    let mut first: HashMap<(u8, &str), usize> = HashMap::new();
    for (i, m) in mentions.iter().enumerate() {
        for (tag, key, basis) in [
            (0u8, m.upn.as_deref(), Basis::Upn),
            (1u8, m.nhs_number.as_deref(), Basis::Nhs),
        ] {
            let Some(key) = key else { continue };
            match first.get(&(tag, key)) {
                Some(&j) => {
                    let (a, b) = (mentions[j].id.min(m.id), mentions[j].id.max(m.id));
                    pairs.push(ScoredPair {
                        a,
                        b,
                        basis,
                        probability: 1.0,
                        weight: f64::INFINITY,
                        band: Band::Link,
                        evidence: format!("{}=exact", basis.as_str()),
                    });
                    let (ra, rb) = (find(&mut parent, i), find(&mut parent, j));
                    parent[ra] = rb;
                }
                None => {
                    first.insert((tag, key), i);
                }
            }
        }
    }
    let mut groups: HashMap<usize, Vec<i64>> = HashMap::new();
    for (i, m) in mentions.iter().enumerate() {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(m.id);
    }
    let persons: Vec<Vec<i64>> = groups.into_values().collect();
    let stats = LinkStats {
        mentions: mentions.len(),
        link_pairs: pairs.len(),
        persons: persons.len(),
        ..LinkStats::default()
    };
    LinkResult {
        pairs,
        persons,
        review: Vec::new(),
        flags: Vec::new(),
        model: Model::default(),
        stats,
    }
}
