//! A last check of a linking result against the human decisions: no person may hold
//! both mentions of a pair a reviewer rejected. The engine honours rejections
//! itself; this guard makes the invariant hold whatever the engine does, by
//! re-clustering only the offending persons from their own link pairs (strongest
//! first) without ever joining the two sides of a rejected pair.
//!
//! Pure: no IO.

use std::collections::{HashMap, HashSet};

use super::{Band, Decision, ScoredPair, Verdict};

/// Splits every person that holds a rejected pair; returns how many were split.
pub fn split_rejected(
    persons: &mut Vec<Vec<i64>>,
    pairs: &[ScoredPair],
    decisions: &[Decision],
) -> usize {
    let rejected: HashSet<(i64, i64)> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Reject)
        .map(|d| (d.a.min(d.b), d.a.max(d.b)))
        .collect();
    if rejected.is_empty() {
        return 0;
    }
    let mut person_of: HashMap<i64, usize> = HashMap::new();
    for (i, p) in persons.iter().enumerate() {
        for &m in p {
            person_of.insert(m, i);
        }
    }
    let mut offending: Vec<usize> = rejected
        .iter()
        .filter_map(|(a, b)| {
            let (pa, pb) = (person_of.get(a)?, person_of.get(b)?);
            (pa == pb).then_some(*pa)
        })
        .collect();
    offending.sort_unstable();
    offending.dedup();
    let mut added = Vec::new();
    for &i in &offending {
        let members = std::mem::take(&mut persons[i]);
        let mut parts = recluster(&members, pairs, &rejected);
        persons[i] = parts.remove(0);
        added.extend(parts);
    }
    persons.extend(added);
    offending.len()
}

fn recluster(
    members: &[i64],
    pairs: &[ScoredPair],
    rejected: &HashSet<(i64, i64)>,
) -> Vec<Vec<i64>> {
    let inside: HashSet<i64> = members.iter().copied().collect();
    let mut strong: Vec<&ScoredPair> = pairs
        .iter()
        .filter(|p| p.band == Band::Link && inside.contains(&p.a) && inside.contains(&p.b))
        .collect();
    strong.sort_by(|x, y| {
        y.probability
            .total_cmp(&x.probability)
            .then((x.a, x.b).cmp(&(y.a, y.b)))
    });
    // Small groups (one person's mentions): plain component lists are enough.
    let mut group: HashMap<i64, usize> = members.iter().enumerate().map(|(i, &m)| (m, i)).collect();
    let mut parts: Vec<Vec<i64>> = members.iter().map(|&m| vec![m]).collect();
    for p in strong {
        let (ga, gb) = (group[&p.a], group[&p.b]);
        if ga == gb {
            continue;
        }
        let clash = parts[ga].iter().any(|&x| {
            parts[gb]
                .iter()
                .any(|&y| rejected.contains(&(x.min(y), x.max(y))))
        });
        if clash {
            continue;
        }
        let moved = std::mem::take(&mut parts[gb]);
        for &m in &moved {
            group.insert(m, ga);
        }
        parts[ga].extend(moved);
    }
    let mut parts: Vec<Vec<i64>> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    for p in &mut parts {
        p.sort_unstable();
    }
    parts.sort();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Basis;

    fn pair(a: i64, b: i64, probability: f64) -> ScoredPair {
        ScoredPair {
            a,
            b,
            basis: Basis::Probabilistic,
            probability,
            weight: 10.0,
            band: Band::Link,
            evidence: String::new(),
        }
    }

    #[test]
    fn a_rejected_pair_is_split_along_the_weakest_links() {
        let mut persons = vec![vec![1, 2, 3, 4], vec![9]];
        let pairs = [pair(1, 2, 0.99), pair(2, 3, 0.97), pair(3, 4, 0.999)];
        let decisions = [Decision {
            a: 4,
            b: 1,
            verdict: Verdict::Reject,
        }];
        assert_eq!(split_rejected(&mut persons, &pairs, &decisions), 1);
        persons.sort();
        assert_eq!(persons, vec![vec![1, 2], vec![3, 4], vec![9]]);
    }

    #[test]
    fn accepted_and_unrelated_decisions_change_nothing() {
        let mut persons = vec![vec![1, 2], vec![3]];
        let pairs = [pair(1, 2, 0.99)];
        let decisions = [
            Decision {
                a: 1,
                b: 2,
                verdict: Verdict::Accept,
            },
            Decision {
                a: 1,
                b: 3,
                verdict: Verdict::Reject,
            },
        ];
        assert_eq!(split_rejected(&mut persons, &pairs, &decisions), 0);
        assert_eq!(persons, vec![vec![1, 2], vec![3]]);
    }
}
