//! Clustering of linked pairs into persons: union–find over the links, strongest
//! first, refusing any merge that would break a constraint.
//!
//! Constraints (checked between whole clusters, so a chain of individually plausible
//! links cannot join two people a direct comparison would keep apart):
//! - cannot-link: different valid UPNs, different valid NHS numbers, two people of one
//!   police notification, a pair a person rejected in review;
//! - consistency: no two mentions in one person with dates of birth or forenames that
//!   disagree outright (`other` level), or pupils of two schools not sharing an address
//!   (namesakes born the same day, joined through a third record), or two person ids
//!   of one case system (its own records say two people);
//! - size: a person never grows past `max_size` mentions automatically.

use std::collections::HashMap;

use super::caps;
use super::compare::{self, level};
use super::prepare::Prepared;

/// Why a merge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A hard constraint: the two are different people.
    CannotLink,
    /// Some mentions across the two clusters disagree outright on DOB or forename.
    Inconsistent,
    /// The merged person would be larger than the cap.
    SizeCap(usize),
}

/// Union–find with per-cluster constraint sets.
pub(crate) struct Clusters<'a> {
    p: &'a Prepared,
    parent: Vec<u32>,
    /// Members of each root as a linked list (`next`, ending in `NONE`), with its
    /// last element and size: no allocation per mention.
    next: Vec<u32>,
    last: Vec<u32>,
    size: Vec<u32>,
    /// The valid UPN and NHS number of each root (0 = none): a person never holds
    /// two, so one value each suffices.
    upn: Vec<u32>,
    nhs: Vec<u32>,
    /// Notification groups per root (police mentions only; empty costs nothing).
    groups: Vec<Vec<u32>>,
    rejected: HashMap<u32, Vec<u32>>,
    max_size: usize,
}

const NONE: u32 = u32::MAX;

/// Members compared pairwise for consistency before falling back to distinct values.
const PAIRWISE_LIMIT: usize = 400;

impl<'a> Clusters<'a> {
    pub fn new(p: &'a Prepared, rejected: &[(usize, usize)], max_size: usize) -> Self {
        let n = p.len();
        let one = |v: u32| if v == 0 { Vec::new() } else { vec![v] };
        let mut rej: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(a, b) in rejected {
            rej.entry(a as u32).or_default().push(b as u32);
            rej.entry(b as u32).or_default().push(a as u32);
        }
        Clusters {
            p,
            parent: (0..n as u32).collect(),
            next: vec![NONE; n],
            last: (0..n as u32).collect(),
            size: vec![1; n],
            upn: p.upn.clone(),
            nhs: p.nhs.clone(),
            groups: p.group.iter().map(|&v| one(v)).collect(),
            rejected: rej,
            max_size: max_size.max(2),
        }
    }

    pub fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.parent[r] as usize != r {
            r = self.parent[r] as usize;
        }
        let mut x = i;
        while self.parent[x] as usize != r {
            let next = self.parent[x] as usize;
            self.parent[x] = r as u32;
            x = next;
        }
        r
    }

    /// Whether i and j are already one person.
    pub fn same(&mut self, i: usize, j: usize) -> bool {
        self.find(i) == self.find(j)
    }

    /// Merges the persons of i and j unless a constraint forbids it. `check_consistency`
    /// is false for links a person accepted in review.
    pub fn union(&mut self, i: usize, j: usize, check_consistency: bool) -> Result<(), Refusal> {
        let (a, b) = (self.find(i), self.find(j));
        if a == b {
            return Ok(());
        }
        if conflicting(self.upn[a], self.upn[b]) || conflicting(self.nhs[a], self.nhs[b]) {
            return Err(Refusal::CannotLink);
        }
        if self.groups[a].iter().any(|g| self.groups[b].contains(g)) {
            return Err(Refusal::CannotLink);
        }
        if self.rejected_between(a, b) {
            return Err(Refusal::CannotLink);
        }
        let size = (self.size[a] + self.size[b]) as usize;
        if size > self.max_size {
            return Err(Refusal::SizeCap(size));
        }
        if check_consistency && !self.consistent(a, b) {
            return Err(Refusal::Inconsistent);
        }
        // Small into large.
        let (big, small) = if self.size[a] >= self.size[b] {
            (a, b)
        } else {
            (b, a)
        };
        self.parent[small] = big as u32;
        let tail = self.last[big] as usize;
        self.next[tail] = small as u32;
        self.last[big] = self.last[small];
        self.size[big] += self.size[small];
        for keys in [&mut self.upn, &mut self.nhs] {
            if keys[big] == 0 {
                keys[big] = keys[small];
            }
        }
        let moved = std::mem::take(&mut self.groups[small]);
        for v in moved {
            if !self.groups[big].contains(&v) {
                self.groups[big].push(v);
            }
        }
        Ok(())
    }

    /// Whether the persons of i and j could ever be one (no hard constraint between
    /// them): a pair that cannot is not worth a reviewer's time.
    pub fn could_link(&mut self, i: usize, j: usize) -> bool {
        let (a, b) = (self.find(i), self.find(j));
        a == b
            || !(conflicting(self.upn[a], self.upn[b])
                || conflicting(self.nhs[a], self.nhs[b])
                || self.groups[a].iter().any(|g| self.groups[b].contains(g))
                || self.rejected_between(a, b))
    }

    fn rejected_between(&mut self, a: usize, b: usize) -> bool {
        if self.rejected.is_empty() {
            return false;
        }
        let (small, other) = if self.size[a] <= self.size[b] {
            (a, b)
        } else {
            (b, a)
        };
        let partners: Vec<u32> = self
            .members(small)
            .iter()
            .filter_map(|m| self.rejected.get(m))
            .flatten()
            .copied()
            .collect();
        partners.into_iter().any(|r| self.find(r as usize) == other)
    }

    /// The members of root `r`.
    fn members(&self, r: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.size[r] as usize);
        let mut x = r as u32;
        while x != NONE {
            out.push(x);
            x = self.next[x as usize];
        }
        out
    }

    fn consistent(&self, a: usize, b: usize) -> bool {
        let p = self.p;
        let (ma, mb) = (self.members(a), self.members(b));
        if ma.len() * mb.len() <= PAIRWISE_LIMIT {
            return ma.iter().all(|&x| {
                mb.iter().all(|&y| {
                    let (x, y) = (x as usize, y as usize);
                    let g = compare::compare(p, x, y);
                    let facts = caps::PairFacts::of(p, x, y);
                    !caps::says_different(caps::guard(g, facts), facts)
                })
            });
        }
        // Large persons: distinct dates of birth only.
        let dobs = |m: &[u32]| {
            let mut d: Vec<u32> = m
                .iter()
                .map(|&x| p.dob[x as usize])
                .filter(|&d| d != 0)
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        };
        let (da, db) = (dobs(&ma), dobs(&mb));
        da.iter()
            .all(|&x| db.iter().all(|&y| compare::dob(x, y) != level::DOB_OTHER))
    }

    /// Persons as lists of mention indexes, each sorted, ordered by first member.
    pub fn into_persons(self) -> Vec<Vec<u32>> {
        let n = self.parent.len();
        let mut persons: Vec<Vec<u32>> = (0..n)
            .filter(|&r| self.parent[r] as usize == r)
            .map(|r| {
                let mut m = self.members(r);
                m.sort_unstable();
                m
            })
            .collect();
        persons.sort_unstable_by_key(|m| m[0]);
        persons
    }
}

fn conflicting(a: u32, b: u32) -> bool {
    a != 0 && b != 0 && a != b
}
