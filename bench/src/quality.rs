//! How good a linking run is, against ground truth: pure counting, no IO.
//!
//! Two views:
//! - **cluster level**: every pair of mentions that ends up in one predicted person
//!   counts, so a transitive over-merge is punished for every pair it drags in. The
//!   counts come from a contingency table (predicted person × true person), summing
//!   C(n, 2) over its cells, rows and columns — never by listing pairs;
//! - **pair level**: the scored pairs in band link, against every true pair (a true
//!   pair that was never scored counts as missed).
//!
//! Plus the review queue, twins merged and the largest person.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use kinlink::link::{Band, LinkResult, ScoredPair};

use crate::synth::Truth;

/// Figures of one run against the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub mentions: usize,
    /// Pairs of mentions of one true person.
    pub true_pairs: u64,
    /// Pairs of mentions in one predicted person.
    pub predicted_pairs: u64,
    /// Pairs in one predicted person that are one true person.
    pub cluster_true_positives: u64,
    pub cluster_precision: f64,
    pub cluster_recall: f64,
    pub cluster_f1: f64,
    /// Distinct scored pairs in band link.
    pub link_pairs: u64,
    /// Of those, pairs of one true person.
    pub pair_true_positives: u64,
    pub pair_precision: f64,
    pub pair_recall: f64,
    pub pair_f1: f64,
    /// Pairs waiting for a person to decide.
    pub review_pairs: usize,
    /// Review pairs as a percentage of mentions.
    pub review_percent: f64,
    /// Distinct mentions named in the review queue.
    pub review_mentions: usize,
    /// Twin pairs in the truth (as persons) with a mention each.
    pub twin_pairs: usize,
    /// Twin pairs with mentions of both in one predicted person.
    pub twins_merged: usize,
    pub predicted_persons: usize,
    pub true_persons: usize,
    /// Mentions in the largest predicted person.
    pub largest_cluster: usize,
    /// Mentions whose true person has other mentions, none of them in the mention's
    /// predicted person: the misses a person would notice.
    pub stranded: usize,
    /// Per corruption kind (`synth::noise`): (kind, stranded mentions with it, all
    /// mentions with it whose true person has other mentions).
    pub stranded_by_noise: Vec<(String, usize, usize)>,
}

/// Pair counts of a clustering against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterCounts {
    pub true_pairs: u64,
    pub predicted_pairs: u64,
    pub both: u64,
}

impl ClusterCounts {
    pub fn precision(&self) -> f64 {
        ratio(self.both, self.predicted_pairs)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.both, self.true_pairs)
    }

    pub fn f1(&self) -> f64 {
        f1(self.precision(), self.recall())
    }
}

/// Precision or recall: 1 when there is nothing to get right.
pub(crate) fn ratio(hit: u64, of: u64) -> f64 {
    if of == 0 {
        1.0
    } else {
        hit as f64 / of as f64
    }
}

/// The harmonic mean of precision and recall (0 when both are 0).
pub(crate) fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

fn pairs_in(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Index of each mention id in `ids`.
fn index_of(ids: &[i64]) -> HashMap<i64, usize> {
    ids.iter().enumerate().map(|(i, &id)| (id, i)).collect()
}

/// Cluster-level pair counts: `persons` hold mention ids; `truth[i]` is the truth of
/// the mention with id `ids[i]`. A mention in no predicted person counts as alone; an
/// id not in `ids` is ignored.
pub fn cluster_counts(ids: &[i64], truth: &[Truth], persons: &[Vec<i64>]) -> ClusterCounts {
    let index = index_of(ids);
    cluster_counts_indexed(&index, truth, persons)
}

fn cluster_counts_indexed(
    index: &HashMap<i64, usize>,
    truth: &[Truth],
    persons: &[Vec<i64>],
) -> ClusterCounts {
    let mut per_true: HashMap<u64, u64> = HashMap::new();
    for t in truth {
        *per_true.entry(t.person).or_default() += 1;
    }
    let true_pairs = per_true.values().map(|&n| pairs_in(n)).sum();
    let mut predicted_pairs = 0;
    let mut both = 0;
    let mut cell: HashMap<u64, u64> = HashMap::new();
    for cluster in persons {
        cell.clear();
        let mut n = 0u64;
        for id in cluster {
            if let Some(t) = index.get(id).and_then(|&i| truth.get(i)) {
                *cell.entry(t.person).or_default() += 1;
                n += 1;
            }
        }
        predicted_pairs += pairs_in(n);
        both += cell.values().map(|&c| pairs_in(c)).sum::<u64>();
    }
    ClusterCounts {
        true_pairs,
        predicted_pairs,
        both,
    }
}

/// Everything: cluster and pair figures, review queue, twins, largest person.
pub fn evaluate(
    ids: &[i64],
    truth: &[Truth],
    persons: &[Vec<i64>],
    pairs: &[ScoredPair],
    review: &[ScoredPair],
) -> Quality {
    let index = index_of(ids);
    let counts = cluster_counts_indexed(&index, truth, persons);
    let person_of = |id: i64| index.get(&id).and_then(|&i| truth.get(i)).map(|t| t.person);

    let mut links: HashSet<(i64, i64)> = HashSet::new();
    for p in pairs.iter().filter(|p| p.band == Band::Link) {
        links.insert((p.a.min(p.b), p.a.max(p.b)));
    }
    let pair_tp = links
        .iter()
        .filter(|(a, b)| matches!((person_of(*a), person_of(*b)), (Some(x), Some(y)) if x == y))
        .count() as u64;
    let link_pairs = links.len() as u64;
    let pair_precision = ratio(pair_tp, link_pairs);
    let pair_recall = ratio(pair_tp, counts.true_pairs);

    let review_mentions: HashSet<i64> = review.iter().flat_map(|p| [p.a, p.b]).collect();

    // Twins: a twin pair is merged when one predicted person holds both.
    let twin_of: HashMap<u64, u64> = truth
        .iter()
        .filter_map(|t| t.twin_of.map(|o| (t.person, o)))
        .collect();
    let mut twin_pairs: HashSet<(u64, u64)> = twin_of
        .iter()
        .map(|(&a, &b)| (a.min(b), a.max(b)))
        .collect();
    let present: HashSet<u64> = truth.iter().map(|t| t.person).collect();
    twin_pairs.retain(|(a, b)| present.contains(a) && present.contains(b));
    let mut in_cluster: HashSet<(usize, u64)> = HashSet::new();
    for (c, cluster) in persons.iter().enumerate() {
        for &id in cluster {
            if let Some(p) = person_of(id) {
                in_cluster.insert((c, p));
            }
        }
    }
    let mut merged: HashSet<(u64, u64)> = HashSet::new();
    for &(c, p) in &in_cluster {
        if let Some(&t) = twin_of.get(&p) {
            if in_cluster.contains(&(c, t)) {
                merged.insert((p.min(t), p.max(t)));
            }
        }
    }

    // Stranded mentions: alone in their predicted person among their true person's.
    let mut cluster_of: HashMap<i64, usize> = HashMap::new();
    let mut cell: HashMap<(usize, u64), usize> = HashMap::new();
    for (c, cluster) in persons.iter().enumerate() {
        for &id in cluster {
            cluster_of.insert(id, c);
            if let Some(p) = person_of(id) {
                *cell.entry((c, p)).or_default() += 1;
            }
        }
    }
    let mut per_true: HashMap<u64, usize> = HashMap::new();
    for t in truth {
        *per_true.entry(t.person).or_default() += 1;
    }
    let mut stranded = 0;
    let mut by_noise: Vec<(String, usize, usize)> = crate::synth::noise::ALL
        .iter()
        .map(|(_, name)| (name.to_string(), 0, 0))
        .collect();
    for (&id, t) in ids.iter().zip(truth) {
        if per_true.get(&t.person).copied().unwrap_or(0) < 2 {
            continue;
        }
        let alone = cluster_of
            .get(&id)
            .is_none_or(|&c| cell.get(&(c, t.person)).copied().unwrap_or(0) < 2);
        stranded += usize::from(alone);
        for (k, &(bit, _)) in crate::synth::noise::ALL.iter().enumerate() {
            if t.noise & bit != 0 {
                by_noise[k].2 += 1;
                by_noise[k].1 += usize::from(alone);
            }
        }
    }

    let cluster_precision = counts.precision();
    let cluster_recall = counts.recall();
    Quality {
        mentions: truth.len(),
        true_pairs: counts.true_pairs,
        predicted_pairs: counts.predicted_pairs,
        cluster_true_positives: counts.both,
        cluster_precision,
        cluster_recall,
        cluster_f1: f1(cluster_precision, cluster_recall),
        link_pairs,
        pair_true_positives: pair_tp,
        pair_precision,
        pair_recall,
        pair_f1: f1(pair_precision, pair_recall),
        review_pairs: review.len(),
        review_percent: 100.0 * review.len() as f64 / truth.len().max(1) as f64,
        review_mentions: review_mentions.len(),
        twin_pairs: twin_pairs.len(),
        twins_merged: merged.len(),
        predicted_persons: persons.len(),
        true_persons: present.len(),
        largest_cluster: persons.iter().map(Vec::len).max().unwrap_or(0),
        stranded,
        stranded_by_noise: by_noise,
    }
}

/// [`evaluate`] on a run's result.
pub fn evaluate_result(ids: &[i64], truth: &[Truth], result: &LinkResult) -> Quality {
    evaluate(ids, truth, &result.persons, &result.pairs, &result.review)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinlink::link::Basis;

    /// Mentions 1–3 are person 10, 4–5 person 20, 6 person 30 and 7 person 31
    /// (twins of each other).
    fn truth() -> (Vec<i64>, Vec<Truth>) {
        let t = |person, twin_of| Truth {
            person,
            family: 1,
            twin_of,
            noise: 0,
        };
        (
            vec![1, 2, 3, 4, 5, 6, 7],
            vec![
                t(10, None),
                t(10, None),
                t(10, None),
                t(20, None),
                t(20, None),
                t(30, Some(31)),
                t(31, Some(30)),
            ],
        )
    }

    fn link(a: i64, b: i64) -> ScoredPair {
        ScoredPair {
            a,
            b,
            basis: Basis::Probabilistic,
            probability: 0.99,
            weight: 10.0,
            band: Band::Link,
            evidence: String::new(),
        }
    }

    #[test]
    fn a_perfect_clustering_scores_one() {
        let (ids, truth) = truth();
        let persons = vec![vec![1, 2, 3], vec![4, 5], vec![6], vec![7]];
        let c = cluster_counts(&ids, &truth, &persons);
        // C(3,2) + C(2,2) = 4 true pairs, all found, none extra.
        assert_eq!(
            c,
            ClusterCounts {
                true_pairs: 4,
                predicted_pairs: 4,
                both: 4
            }
        );
        assert_eq!((c.precision(), c.recall(), c.f1()), (1.0, 1.0, 1.0));
    }

    #[test]
    fn an_over_merge_costs_every_pair_it_drags_in() {
        let (ids, truth) = truth();
        // Persons 10 and 20 merged: C(5,2) = 10 predicted pairs, 4 of them right.
        let persons = vec![vec![1, 2, 3, 4, 5], vec![6], vec![7]];
        let c = cluster_counts(&ids, &truth, &persons);
        assert_eq!((c.true_pairs, c.predicted_pairs, c.both), (4, 10, 4));
        assert!((c.precision() - 0.4).abs() < 1e-12);
        assert_eq!(c.recall(), 1.0);
        assert!((c.f1() - 2.0 * 0.4 / 1.4).abs() < 1e-12);
    }

    #[test]
    fn a_split_costs_recall_only() {
        let (ids, truth) = truth();
        // Person 10 split into {1,2} and {3}: 2 of its 3 pairs lost.
        let persons = vec![vec![1, 2], vec![3], vec![4, 5], vec![6], vec![7]];
        let c = cluster_counts(&ids, &truth, &persons);
        assert_eq!((c.true_pairs, c.predicted_pairs, c.both), (4, 2, 2));
        assert_eq!(c.precision(), 1.0);
        assert!((c.recall() - 0.5).abs() < 1e-12);
        // A mention left out of every person counts as alone.
        let c = cluster_counts(&ids, &truth, &[vec![1, 2], vec![4, 5]]);
        assert_eq!((c.true_pairs, c.predicted_pairs, c.both), (4, 2, 2));
    }

    #[test]
    fn pairs_twins_review_and_largest_cluster() {
        let (ids, truth) = truth();
        // One wrong link (3–4) among four; the twins merged into one person.
        let pairs = vec![link(1, 2), link(3, 2), link(4, 5), link(3, 4), link(2, 1)];
        let mut review = link(5, 6);
        review.band = Band::Review;
        let persons = vec![vec![1, 2, 3, 4, 5], vec![6, 7]];
        let q = evaluate(&ids, &truth, &persons, &pairs, &[review]);
        assert_eq!(q.link_pairs, 4, "duplicates and order do not count twice");
        assert_eq!(q.pair_true_positives, 3);
        assert!((q.pair_precision - 0.75).abs() < 1e-12);
        assert!((q.pair_recall - 0.75).abs() < 1e-12);
        assert!((q.pair_f1 - 0.75).abs() < 1e-12);
        // Cluster level: {1..5} gives 10 pairs (4 right), {6,7} 1 pair (wrong).
        assert_eq!((q.predicted_pairs, q.cluster_true_positives), (11, 4));
        assert_eq!((q.twin_pairs, q.twins_merged), (1, 1));
        assert_eq!(q.review_pairs, 1);
        assert_eq!(q.review_mentions, 2);
        assert!((q.review_percent - 100.0 / 7.0).abs() < 1e-9);
        assert_eq!(q.largest_cluster, 5);
        assert_eq!((q.predicted_persons, q.true_persons), (2, 4));

        let apart = vec![vec![1, 2, 3], vec![4, 5], vec![6], vec![7]];
        let q = evaluate(&ids, &truth, &apart, &[], &[]);
        assert_eq!(q.twins_merged, 0);
        assert_eq!(q.pair_recall, 0.0, "true pairs never scored are missed");
        assert_eq!(q.pair_precision, 1.0);
        assert_eq!(q.cluster_f1, 1.0);
        assert_eq!(q.stranded, 0);

        // Mention 3 (with a nickname) split off from person 10: stranded; the twins
        // (one mention each) are never stranded.
        let mut noisy = truth.clone();
        noisy[2].noise = crate::synth::noise::NICKNAME;
        let split = vec![vec![1, 2], vec![3], vec![4, 5], vec![6], vec![7]];
        let q = evaluate(&ids, &noisy, &split, &[], &[]);
        assert_eq!(q.stranded, 1);
        let nick = q.stranded_by_noise.iter().find(|k| k.0 == "nickname");
        assert_eq!(nick, Some(&("nickname".to_string(), 1, 1)));
        // Mentions 4 and 5 alone each: both stranded.
        let q = evaluate(&ids, &truth, &[vec![1, 2, 3], vec![4], vec![5]], &[], &[]);
        assert_eq!(q.stranded, 2);
    }
}
