//! Blocking: which pairs of mentions are compared at all.
//!
//! Each rule keys mentions on a few prepared values; mentions sharing a key form a
//! block and every pair inside a block is a candidate. A block larger than
//! `max_block_size` (10,000 people sharing one postcode or date of birth) is not
//! compared all-to-all: its members are sorted by name and each is compared with its
//! `WINDOW` nearest neighbours, so the pair count stays linear and a flag says so.
//!
//! Invariant: a pair is `(lower index << 32) | higher index`, sorted and unique.

use std::collections::HashSet;

use super::prepare::Prepared;

/// A value a blocking key is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    Dob,
    BirthYear,
    /// Year and month of birth.
    BirthMonth,
    ForenameCode,
    /// The forename itself, nicknames resolved (Beth → ELIZABETH).
    Forename,
    SurnameCode,
    /// The Soundex codes of forename and surname as an unordered pair: the same key
    /// for a record keyed with its names swapped.
    NameCodes,
    Postcode,
    /// The house/flat numbers and street of the address line, normalised (`F3 12`,
    /// `OAK RD`); missing unless the line has a number.
    Address,
}

impl KeyPart {
    fn value(self, p: &Prepared, i: usize) -> u64 {
        match self {
            KeyPart::Dob => u64::from(p.dob[i]),
            KeyPart::BirthYear => u64::from(p.birth_year(i)),
            KeyPart::BirthMonth => u64::from(p.dob[i] / 100),
            KeyPart::ForenameCode => u64::from(p.forename_code[i]),
            KeyPart::Forename => u64::from(p.forename_canon[i]),
            KeyPart::SurnameCode => u64::from(p.surname_code[i]),
            KeyPart::NameCodes => {
                let (f, s) = (p.forename_raw_code[i], p.surname_code[i]);
                if f == 0 || s == 0 {
                    0
                } else {
                    (u64::from(f.min(s)) << 32) | u64::from(f.max(s))
                }
            }
            KeyPart::Postcode => u64::from(p.postcode[i]),
            // A street name alone is not a dwelling: both parts, or no key.
            KeyPart::Address if p.house[i] != 0 && p.street[i] != 0 => {
                (u64::from(p.house[i]) << 32) | u64::from(p.street[i])
            }
            KeyPart::Address => 0,
        }
    }

    fn is_address(self) -> bool {
        matches!(self, KeyPart::Postcode | KeyPart::Address)
    }
}

impl KeyPart {
    fn parse(s: &str) -> Option<KeyPart> {
        Some(match s.trim() {
            "dob" => KeyPart::Dob,
            "birth_year" => KeyPart::BirthYear,
            "birth_month" => KeyPart::BirthMonth,
            "forename" => KeyPart::Forename,
            "forename_code" => KeyPart::ForenameCode,
            "surname_code" => KeyPart::SurnameCode,
            "name_codes" => KeyPart::NameCodes,
            "postcode" => KeyPart::Postcode,
            "address" => KeyPart::Address,
            _ => return None,
        })
    }
}

/// One blocking rule: mentions agreeing on every part are compared.
///
/// Named in config as its parts joined by `+` (`dob+surname_code`); the names are
/// `domain::linkage::KEY_PARTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingRule {
    pub name: String,
    pub(crate) parts: Vec<KeyPart>,
}

impl BlockingRule {
    /// Parses `a+b+c`; `None` for an unknown or repeated part.
    pub fn parse(name: &str) -> Option<BlockingRule> {
        if !crate::domain::linkage::blocking_rule_is_valid(name) {
            return None;
        }
        let parts = name
            .split('+')
            .map(KeyPart::parse)
            .collect::<Option<Vec<_>>>()?;
        Some(BlockingRule {
            name: name.trim().to_owned(),
            parts,
        })
    }

    /// The shipped rules (`domain::linkage::DEFAULT_BLOCKING`): a nickname or typo in
    /// the forename (dob+surname_code); a surname change (dob+forename — the name
    /// itself, not its sound: hundreds of children share a birthday, and Soundex puts
    /// Oliver and Olivia together); a DOB missing or mistyped (postcode+forename_code);
    /// a move with a DOB error (birth_month+surname_code+forename); no DOB and a
    /// forename spelt differently (postcode+surname_code); both names recorded
    /// differently (dob+postcode); a mistyped postcode on a record without a DOB
    /// (address+forename_code: the address line is a second, independent copy of
    /// where someone lives, and one dwelling's block is a household); forename and
    /// surname swapped (dob+name_codes, postcode+name_codes); both names recorded
    /// differently and the postcode mistyped (dob+address).
    pub fn defaults() -> Vec<BlockingRule> {
        crate::domain::linkage::DEFAULT_BLOCKING
            .iter()
            .filter_map(|r| BlockingRule::parse(r))
            .collect()
    }

    /// Whether the rule keys on where people live (such blocks are full of
    /// households: same surname and address, different people).
    pub(crate) fn keys_on_address(&self) -> bool {
        self.parts.iter().any(|p| p.is_address())
    }

    fn key(&self, p: &Prepared, i: usize, salt: u64) -> Option<u64> {
        let mut h = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for part in &self.parts {
            let v = part.value(p, i);
            if v == 0 {
                return None;
            }
            h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        }
        Some(h)
    }

    /// Whether mentions `i` and `j` share this rule's key.
    pub(crate) fn holds(&self, p: &Prepared, i: usize, j: usize) -> bool {
        self.parts.iter().all(|part| {
            let v = part.value(p, i);
            v != 0 && v == part.value(p, j)
        })
    }
}

/// Neighbours each member of an oversized block is compared with.
pub(crate) const WINDOW: usize = 10;

/// The blocks of one rule that were too large to compare all-to-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LargeBlock {
    pub rule: String,
    /// How many blocks were compared within a window.
    pub blocks: usize,
    /// The largest of them.
    pub size: usize,
}

#[inline]
pub(crate) fn pair(i: usize, j: usize) -> u64 {
    let (a, b) = if i < j { (i, j) } else { (j, i) };
    ((a as u64) << 32) | b as u64
}

#[inline]
pub(crate) fn unpair(x: u64) -> (usize, usize) {
    ((x >> 32) as usize, (x & 0xFFFF_FFFF) as usize)
}

/// Candidate pairs of all rules, sorted and unique. With `changed`, only pairs with
/// at least one changed mention.
pub(crate) fn candidates(
    p: &Prepared,
    rules: &[BlockingRule],
    changed: Option<&[bool]>,
    max_block: usize,
    threads: usize,
) -> (Vec<u64>, Vec<LargeBlock>) {
    let threads = threads.clamp(1, rules.len().max(1));
    let mut results: Vec<(Vec<u64>, Vec<LargeBlock>)> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut pairs = Vec::new();
                    let mut large = Vec::new();
                    for (r, rule) in rules.iter().enumerate() {
                        if r % threads == t {
                            rule_pairs(
                                p, rule, r as u64, changed, max_block, &mut pairs, &mut large,
                            );
                        }
                    }
                    pairs.sort_unstable();
                    pairs.dedup();
                    (pairs, large)
                })
            })
            .collect();
        for h in handles {
            results.push(h.join().unwrap_or_default());
        }
    });
    let mut large = Vec::new();
    let mut all: Vec<u64> = Vec::with_capacity(results.iter().map(|r| r.0.len()).sum());
    for (pairs, l) in results {
        all.extend_from_slice(&pairs);
        large.extend(l);
    }
    all.sort_unstable();
    all.dedup();
    (all, large)
}

fn rule_pairs(
    p: &Prepared,
    rule: &BlockingRule,
    salt: u64,
    changed: Option<&[bool]>,
    max_block: usize,
    out: &mut Vec<u64>,
    large: &mut Vec<LargeBlock>,
) {
    let n = p.len();
    let mut keyed: Vec<(u64, u32)> = match changed {
        None => (0..n)
            .filter_map(|i| rule.key(p, i, salt).map(|k| (k, i as u32)))
            .collect(),
        Some(changed) => {
            let wanted: HashSet<u64> = (0..n)
                .filter(|&i| changed[i])
                .filter_map(|i| rule.key(p, i, salt))
                .collect();
            (0..n)
                .filter_map(|i| {
                    rule.key(p, i, salt)
                        .filter(|k| wanted.contains(k))
                        .map(|k| (k, i as u32))
                })
                .collect()
        }
    };
    keyed.sort_unstable();
    let mut start = 0;
    while start < keyed.len() {
        let key = keyed[start].0;
        let mut end = start + 1;
        while end < keyed.len() && keyed[end].0 == key {
            end += 1;
        }
        let block = &mut keyed[start..end];
        if block.len() > max_block {
            match large.last_mut().filter(|l| l.rule == rule.name) {
                Some(l) => {
                    l.blocks += 1;
                    l.size = l.size.max(block.len());
                }
                None => large.push(LargeBlock {
                    rule: rule.name.clone(),
                    blocks: 1,
                    size: block.len(),
                }),
            }
            // The rule's own values are equal inside the block, so this orders by
            // the others: the same person's records sort next to each other.
            block.sort_unstable_by_key(|&(_, i)| {
                let i = i as usize;
                (
                    p.surname_code[i],
                    p.forename_code[i],
                    p.dob[i],
                    p.postcode[i],
                    i,
                )
            });
            for a in 0..block.len() {
                for b in a + 1..(a + 1 + WINDOW).min(block.len()) {
                    push(out, changed, block[a].1 as usize, block[b].1 as usize);
                }
            }
        } else {
            for a in 0..block.len() {
                for b in a + 1..block.len() {
                    push(out, changed, block[a].1 as usize, block[b].1 as usize);
                }
            }
        }
        start = end;
    }
}

#[inline]
fn push(out: &mut Vec<u64>, changed: Option<&[bool]>, i: usize, j: usize) {
    if let Some(c) = changed {
        if !c[i] && !c[j] {
            return;
        }
    }
    out.push(pair(i, j));
}
