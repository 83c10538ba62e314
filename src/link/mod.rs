//! Identity resolution (docs/design.md "Identity"): person mentions → persons, households
//! and families, with the evidence for every link.
//!
//! Pure: no IO, no SQL. The store reads mentions and earlier results, `link` computes,
//! the store writes the result back in one transaction.
//!
//! Stages, each in its own file:
//! - `prepare`: normalise each mention once into compact, interned comparison keys;
//! - `block`: candidate pairs from the blocking rules (bounded per block);
//! - `compare`: field-by-field comparison levels of one pair;
//! - `model`: the Fellegi–Sunter model — u from random pairs, m by EM, term frequencies;
//! - `cluster`: greedy, constraint-respecting clustering of scored pairs into persons;
//! - `ids`: stable person and family ids across nights;
//! - `family`: households and families;
//! - `diagnose`: why one pair is or is not linked, for quality harnesses (never
//!   called by a run).
//!
//! Invariant: two mentions with different valid UPNs, different valid NHS numbers, or
//! different people in one police notification are never in one person.
//! Invariant: a pair a human rejected in review is never linked again automatically.

use std::collections::HashSet;

use chrono::NaiveDate;

use crate::domain::FeedKind;

mod block;
mod caps;

pub use block::{BlockingRule, KeyPart};
mod cluster;
mod compare;
mod diagnose;
mod engine;
pub mod family;
pub mod guard;
pub mod ids;
pub mod model;
mod prepare;
mod strings;

pub use diagnose::{diagnose, PairDiagnosis};
pub use prepare::NICKNAMES_CSV;

/// A mention as linking sees it (one row of the store's `mentions` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMention {
    /// The store's mention id.
    pub id: i64,
    pub source: String,
    pub kind: FeedKind,
    pub mention_key: String,
    /// The record's role word (`pupil`, `victim`, `child`, `tenant`, `parent`…).
    pub role: String,
    pub forename: Option<String>,
    pub surname: Option<String>,
    pub dob: Option<NaiveDate>,
    pub gender: Option<String>,
    pub address_line1: Option<String>,
    /// Normalised (`M6 5AB`), or as written when it did not parse.
    pub postcode: Option<String>,
    pub uprn: Option<i64>,
    /// Only a UPN with a valid check letter; an invalid one is not a match key.
    pub upn: Option<String>,
    /// Only an NHS number that passes mod 11.
    pub nhs_number: Option<String>,
    pub school_urn: Option<u32>,
    /// Mentions that share a group are different people by construction: the police
    /// notification id for `police_da` mentions, `None` otherwise.
    pub group: Option<String>,
    /// The latest date a record of this mention speaks of (an attendance date, an
    /// incident, a notice served, a referral): orders addresses in time.
    pub seen_on: Option<NaiveDate>,
    /// The mention's key (a case-system person id, a UPN) has been seen with two
    /// people's details: it is kept apart from everyone and flagged, never merged.
    pub identity_conflict: bool,
}

/// What a pair's match probability says should happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Band {
    /// At or above `linkage.auto_link`: linked without a human.
    Link,
    /// Between `linkage.review` and `linkage.auto_link`: a person decides.
    Review,
    /// Below `linkage.review`.
    NoLink,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Link => "link",
            Band::Review => "review",
            Band::NoLink => "no_link",
        }
    }

    pub fn parse(s: &str) -> Option<Band> {
        match s {
            "link" => Some(Band::Link),
            "review" => Some(Band::Review),
            "no_link" => Some(Band::NoLink),
            _ => None,
        }
    }
}

/// Why two mentions were linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basis {
    /// The same valid UPN.
    Upn,
    /// The same valid NHS number.
    Nhs,
    /// The same case-system person id (the same mention key in one assessment source).
    CasePersonId,
    /// The Fellegi–Sunter match probability.
    Probabilistic,
    /// A person accepted the pair in review.
    Reviewed,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Upn => "upn",
            Basis::Nhs => "nhs_number",
            Basis::CasePersonId => "case_person_id",
            Basis::Probabilistic => "probabilistic",
            Basis::Reviewed => "reviewed",
        }
    }

    pub fn parse(s: &str) -> Option<Basis> {
        [
            Basis::Upn,
            Basis::Nhs,
            Basis::CasePersonId,
            Basis::Probabilistic,
            Basis::Reviewed,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// One scored candidate pair worth keeping (band link or review), with its evidence.
///
/// Invariant: `a < b` (mention ids).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPair {
    pub a: i64,
    pub b: i64,
    pub basis: Basis,
    /// Match probability in [0, 1] (1 for deterministic and reviewed links).
    pub probability: f64,
    /// Total match weight in bits (log2 Bayes factor, prior included).
    pub weight: f64,
    pub band: Band,
    /// Comparison levels field by field, `field=level` joined by `;`
    /// (e.g. `forename=nickname;surname=exact;dob=day_month_swapped;address=full;sex=agree`),
    /// followed by any guard that capped the band (`;cap=forename_disagrees`).
    /// Parsed back by `explain`.
    pub evidence: String,
}

/// A human decision on a pair from `kinlink review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub a: i64,
    pub b: i64,
    pub verdict: Verdict,
}

/// What a reviewer said of a pair: accepted pairs are linked; rejected pairs are
/// never linked (cannot-link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
}

impl Verdict {
    /// The review queue's status for the verdict: `accepted` or `rejected`.
    pub fn status(self) -> &'static str {
        match self {
            Verdict::Accept => "accepted",
            Verdict::Reject => "rejected",
        }
    }
}

/// Something about a cluster a person should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterFlag {
    /// A merge would have grown a person past the size cap; the pair went to review.
    SizeCap { a: i64, b: i64, size: usize },
    /// One mention key (a case-system person id, a UPN) names two different people
    /// (conflicting DOB and forename); its mention is kept apart from everyone.
    ReusedCasePersonId { mention: i64 },
    /// Blocks of a blocking rule larger than the cap were compared only within a
    /// sorted window (`blocks` of them, the largest `size` mentions).
    LargeBlock {
        rule: String,
        blocks: usize,
        size: usize,
    },
}

/// Tunables of one linking run (`[linkage]` in docs/config.md, with these defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkOptions {
    /// Match probability at or above which a pair is linked.
    pub auto_link: f64,
    /// Match probability at or above which (and below `auto_link`) a pair goes to review.
    pub review: f64,
    /// A person never grows past this many mentions by automatic linking.
    pub max_cluster_size: usize,
    /// Blocks larger than this are compared only within a sorted window.
    pub max_block_size: usize,
    /// Worker threads for blocking and scoring (0 = available parallelism).
    pub threads: usize,
    /// The blocking rules (`[linkage] blocking`).
    pub blocking: Vec<BlockingRule>,
    /// m probabilities fixed by config (`[linkage.m.<field>]`) instead of estimated.
    pub m_overrides: Vec<MOverride>,
}

/// One m probability fixed by config.
#[derive(Debug, Clone, PartialEq)]
pub struct MOverride {
    pub field: String,
    pub level: String,
    pub m: f64,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            auto_link: 0.95,
            review: 0.60,
            max_cluster_size: 200,
            max_block_size: 100,
            threads: 0,
            blocking: BlockingRule::defaults(),
            m_overrides: Vec::new(),
        }
    }
}

/// What the previous run left behind, for an incremental run.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// Pairs kept last time (band link or review) among mentions that have not changed.
    pub pairs: Vec<ScoredPair>,
    /// Every review decision ever made.
    pub decisions: Vec<Decision>,
    /// The persisted model (m, u, term frequencies); `None` estimates a new one.
    pub model: Option<model::Model>,
    /// Mention ids that are new or changed since the last run; `None` = full run
    /// (every pair is recomputed and `pairs` is ignored).
    pub changed: Option<HashSet<i64>>,
}

/// Counts of one run, for logs, `status` and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    pub mentions: usize,
    pub candidate_pairs: usize,
    pub link_pairs: usize,
    pub review_pairs: usize,
    pub persons: usize,
    /// Seconds spent in each stage.
    pub prepare_s: f64,
    pub block_s: f64,
    pub em_s: f64,
    pub score_s: f64,
    pub cluster_s: f64,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct LinkResult {
    /// Every pair in band link or review (deterministic, probabilistic, reviewed),
    /// old ones kept by an incremental run included.
    pub pairs: Vec<ScoredPair>,
    /// Persons as clusters of mention ids; every input mention is in exactly one.
    pub persons: Vec<Vec<i64>>,
    /// Pairs a person must decide (band review, not yet decided, not already in one person).
    pub review: Vec<ScoredPair>,
    pub flags: Vec<ClusterFlag>,
    /// The model used (estimated this run, or the previous one).
    pub model: model::Model,
    pub stats: LinkStats,
}

/// Links `mentions` (all of them: the whole store) into persons.
///
/// Never fails: odd data (no names, no DOB, pathological blocks) degrades to fewer
/// links and flags, not errors.
pub fn link(mentions: &[LinkMention], previous: &Previous, opts: &LinkOptions) -> LinkResult {
    engine::run(mentions, previous, opts)
}

#[cfg(test)]
mod tests;
