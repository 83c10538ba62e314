//! Households and families (docs/design.md "Identity" and the last bullet of "Rules").
//!
//! - A person's *home* is the address of their latest non-police mention (by
//!   `seen_on`, then mention id); a person known only to the police lives at their
//!   latest incident address.
//! - A *household* is the persons with the same home address key: the UPRN when any
//!   mention of that address gives one, else the normalised first line + postcode.
//! - A *family* is the union of the case system's family ids and the households. A
//!   person named in a police notification joins the family of the household at the
//!   incident address only if that address is also one of their own known addresses
//!   (or they have no other); otherwise they stay linked to the incident only.
//! - Family ids stay stable across nights by the same rule as person ids
//!   ([`super::ids`]), reckoned on the families' mentions.
//!
//! Pure: no IO.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;

use super::ids;
use crate::domain::{FeedKind, Postcode};

/// What family building needs to know about one mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionFacts {
    pub mention: i64,
    pub kind: FeedKind,
    pub uprn: Option<i64>,
    pub address_line1: Option<String>,
    pub postcode: Option<String>,
    pub seen_on: Option<NaiveDate>,
    /// `source/family_id` of every case this mention is a member of.
    pub case_families: Vec<String>,
    /// The police notification id, for a `police_da` mention.
    pub notification: Option<String>,
}

/// One person (after linking) with its mentions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonFacts {
    pub id: i64,
    pub mentions: Vec<MentionFacts>,
}

/// How a person came into a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// A member of one of the family's cases in the case system.
    Case,
    /// Lives at the family's address.
    Household,
    /// Named in a police notification at the family's address, which is their own.
    Police,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Case => "case",
            Via::Household => "household",
            Via::Police => "police",
        }
    }

    pub fn parse(s: &str) -> Option<Via> {
        [Via::Case, Via::Household, Via::Police]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Persons sharing a home address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Household {
    /// `uprn:N` or `addr:LINE|POSTCODE` (normalised).
    pub key: String,
    pub uprn: Option<i64>,
    pub address_line1: Option<String>,
    pub postcode: Option<String>,
    /// Person ids, ascending.
    pub members: Vec<i64>,
}

/// A family with its stable id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub id: i64,
    /// `(person id, via)`, by person id.
    pub members: Vec<(i64, Via)>,
}

/// A person named in a notification at an address that is not theirs: linked to
/// the incident, not merged into the family living there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentLink {
    pub person: i64,
    pub notification: String,
    /// The household key of the incident address.
    pub address_key: String,
}

/// Households and families of one night.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyResult {
    /// By key.
    pub households: Vec<Household>,
    /// By id.
    pub families: Vec<Family>,
    pub incident_links: Vec<IncidentLink>,
    /// `(old, new)` family ids merged this night.
    pub aliases: Vec<(i64, i64)>,
    /// Family ids handed out for the first time this night.
    pub created: Vec<i64>,
    pub next_family_id: i64,
}

/// Builds households and families. `previous` maps mention id → the family id it
/// was in after the last run; `next_family_id` is the smallest id never used.
pub fn build(
    persons: &[PersonFacts],
    previous: &HashMap<i64, i64>,
    next_family_id: i64,
) -> FamilyResult {
    let keys = AddressKeys::new(persons);
    // Home address and the set of known (non-police) addresses of each person.
    let mut homes: Vec<Option<&MentionFacts>> = Vec::with_capacity(persons.len());
    let mut known: Vec<HashSet<String>> = Vec::with_capacity(persons.len());
    for p in persons {
        let mut best: Option<&MentionFacts> = None;
        let mut best_police: Option<&MentionFacts> = None;
        let mut own = HashSet::new();
        for m in &p.mentions {
            if keys.key(m).is_none() {
                continue;
            }
            let slot = if m.kind == FeedKind::PoliceDa {
                &mut best_police
            } else {
                own.extend(keys.key(m));
                &mut best
            };
            if slot.is_none_or(|b| (m.seen_on, m.mention) > (b.seen_on, b.mention)) {
                *slot = Some(m);
            }
        }
        homes.push(best.or(best_police));
        known.push(own);
    }

    // Households.
    let mut by_key: BTreeMap<String, Household> = BTreeMap::new();
    let mut home_key: Vec<Option<String>> = vec![None; persons.len()];
    for (i, (p, home)) in persons.iter().zip(&homes).enumerate() {
        let Some(m) = home else { continue };
        let Some(key) = keys.key(m) else { continue };
        let h = by_key.entry(key.clone()).or_insert_with(|| Household {
            key: key.clone(),
            uprn: keys.uprn_of(m),
            address_line1: m.address_line1.clone(),
            postcode: m.postcode.clone(),
            members: Vec::new(),
        });
        h.members.push(p.id);
        home_key[i] = Some(key);
    }
    for h in by_key.values_mut() {
        h.members.sort_unstable();
    }

    // Families: union of households, case families and the police rule.
    let index: HashMap<i64, usize> = persons.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let mut uf = UnionFind::new(persons.len());
    for h in by_key.values() {
        for w in h.members.windows(2) {
            uf.union(index[&w[0]], index[&w[1]]);
        }
    }
    let mut case_first: HashMap<&str, usize> = HashMap::new();
    let mut in_case = vec![false; persons.len()];
    for (i, p) in persons.iter().enumerate() {
        for f in p.mentions.iter().flat_map(|m| &m.case_families) {
            in_case[i] = true;
            match case_first.get(f.as_str()) {
                Some(&j) => uf.union(i, j),
                None => {
                    case_first.insert(f, i);
                }
            }
        }
    }
    let mut via_police = vec![false; persons.len()];
    let mut incident_links = Vec::new();
    for (i, p) in persons.iter().enumerate() {
        for m in p.mentions.iter().filter(|m| m.kind == FeedKind::PoliceDa) {
            let Some(key) = keys.key(m) else { continue };
            let own = known[i].is_empty() || known[i].contains(&key);
            if own {
                if let Some(h) = by_key.get(&key) {
                    if let Some(&first) = h.members.first() {
                        uf.union(i, index[&first]);
                    }
                }
                if home_key[i].as_deref() != Some(key.as_str()) || known[i].is_empty() {
                    via_police[i] = true;
                }
            } else if let Some(n) = &m.notification {
                incident_links.push(IncidentLink {
                    person: p.id,
                    notification: n.clone(),
                    address_key: key,
                });
            }
        }
    }

    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..persons.len() {
        groups.entry(uf.find(i)).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let items: Vec<Vec<i64>> = groups
        .iter()
        .map(|g| {
            g.iter()
                .flat_map(|&i| persons[i].mentions.iter().map(|m| m.mention))
                .collect()
        })
        .collect();
    let assignment = ids::assign(&items, previous, next_family_id);
    let mut families: Vec<Family> = groups
        .iter()
        .zip(&assignment.ids)
        .map(|(g, &id)| {
            let mut members: Vec<(i64, Via)> = g
                .iter()
                .map(|&i| {
                    let via = if in_case[i] {
                        Via::Case
                    } else if via_police[i] {
                        Via::Police
                    } else {
                        Via::Household
                    };
                    (persons[i].id, via)
                })
                .collect();
            members.sort_unstable();
            Family { id, members }
        })
        .collect();
    families.sort_unstable_by_key(|f| f.id);
    incident_links
        .sort_unstable_by(|a, b| (a.person, &a.notification).cmp(&(b.person, &b.notification)));
    incident_links.dedup();
    FamilyResult {
        households: by_key.into_values().collect(),
        families,
        incident_links,
        aliases: assignment.aliases,
        created: assignment.created,
        next_family_id: assignment.next_id,
    }
}

/// Address keys: the UPRN where known (also for a mention of the same address
/// written without one), else the normalised line + postcode.
struct AddressKeys {
    uprn_by_address: HashMap<String, i64>,
}

impl AddressKeys {
    fn new(persons: &[PersonFacts]) -> AddressKeys {
        let mut uprn_by_address = HashMap::new();
        for m in persons.iter().flat_map(|p| &p.mentions) {
            if let (Some(u), Some(a)) = (m.uprn, written_key(m)) {
                uprn_by_address.entry(a).or_insert(u);
            }
        }
        AddressKeys { uprn_by_address }
    }

    fn uprn_of(&self, m: &MentionFacts) -> Option<i64> {
        m.uprn
            .or_else(|| written_key(m).and_then(|a| self.uprn_by_address.get(&a).copied()))
    }

    fn key(&self, m: &MentionFacts) -> Option<String> {
        match self.uprn_of(m) {
            Some(u) => Some(format!("uprn:{u}")),
            None => written_key(m),
        }
    }
}

/// Every household key an address can have: `uprn:N` when the UPRN is known and
/// `addr:LINE|POSTCODE` (normalised) when both are written. Two addresses are the
/// same when they share any key, which copes with a feed that leaves the UPRN out.
pub fn address_keys(uprn: Option<i64>, line: Option<&str>, postcode: Option<&str>) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(u) = uprn {
        keys.push(format!("uprn:{u}"));
    }
    keys.extend(written_address_key(line, postcode));
    keys
}

/// The `addr:LINE|POSTCODE` key of a written address (normalised), when both
/// parts are there: the key the store keeps for each mention (`mentions.address_key`).
pub fn written_address_key(line: Option<&str>, postcode: Option<&str>) -> Option<String> {
    let line = normalise_address_line(line?);
    let postcode = Postcode::parse(postcode?)?;
    (!line.is_empty()).then(|| format!("addr:{line}|{postcode}"))
}

fn written_key(m: &MentionFacts) -> Option<String> {
    written_address_key(m.address_line1.as_deref(), m.postcode.as_deref())
}

/// Upper case, punctuation to spaces, common street words abbreviated, so that
/// `12 Acacia Road,` and `12 ACACIA RD` agree.
pub fn normalise_address_line(line: &str) -> String {
    let upper = line.to_uppercase();
    let cleaned: String = upper
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .map(|w| match w {
            "ROAD" => "RD",
            "STREET" => "ST",
            "AVENUE" => "AVE",
            "LANE" => "LN",
            "DRIVE" => "DR",
            "CLOSE" => "CL",
            "COURT" => "CT",
            "PLACE" => "PL",
            "CRESCENT" => "CRES",
            "GARDENS" => "GDNS",
            "TERRACE" => "TER",
            "APARTMENT" | "APT" => "FLAT",
            other => other,
        })
        .collect();
    words.join(" ")
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller root wins, so groups come out in a stable order.
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi] = lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2025, 1, d)
    }

    fn m(mention: i64, kind: FeedKind, line: &str, postcode: &str, seen: u32) -> MentionFacts {
        MentionFacts {
            mention,
            kind,
            uprn: None,
            address_line1: Some(line.to_string()),
            postcode: Some(postcode.to_string()),
            seen_on: day(seen),
            case_families: Vec::new(),
            notification: None,
        }
    }

    fn police(mention: i64, line: &str, postcode: &str, n: &str) -> MentionFacts {
        MentionFacts {
            notification: Some(n.to_string()),
            ..m(mention, FeedKind::PoliceDa, line, postcode, 20)
        }
    }

    fn person(id: i64, mentions: Vec<MentionFacts>) -> PersonFacts {
        PersonFacts { id, mentions }
    }

    fn family_of(r: &FamilyResult, person: i64) -> &Family {
        r.families
            .iter()
            .find(|f| f.members.iter().any(|(p, _)| *p == person))
            .expect("every person is in a family")
    }

    /// Mum and child at 1 Oak Road (housing, school), the child's father named in a
    /// notification at that address but living at 9 Elm Street, and a neighbour.
    fn borough() -> Vec<PersonFacts> {
        use FeedKind::*;
        vec![
            person(1, vec![m(10, Housing, "1 Oak Road", "m6 5ab", 5)]),
            person(
                2,
                vec![
                    m(11, Attendance, "1 OAK RD", "M6 5AB", 6),
                    police(12, "1 Oak Rd.", "M65AB", "N1"),
                ],
            ),
            person(
                3,
                vec![
                    m(13, Housing, "9 Elm Street", "M7 1AA", 3),
                    police(14, "1 Oak Road", "M6 5AB", "N1"),
                ],
            ),
            person(4, vec![m(15, Housing, "3 Oak Road", "M6 5AB", 4)]),
        ]
    }

    #[test]
    fn households_share_a_normalised_address() {
        let r = build(&borough(), &HashMap::new(), 1);
        let keys: Vec<(&str, &[i64])> = r
            .households
            .iter()
            .map(|h| (h.key.as_str(), h.members.as_slice()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("addr:1 OAK RD|M6 5AB", &[1, 2][..]),
                ("addr:3 OAK RD|M6 5AB", &[4][..]),
                ("addr:9 ELM ST|M7 1AA", &[3][..]),
            ]
        );
    }

    #[test]
    fn a_police_adult_living_elsewhere_is_linked_to_the_incident_not_the_family() {
        let r = build(&borough(), &HashMap::new(), 1);
        let f = family_of(&r, 1);
        assert_eq!(f.members, vec![(1, Via::Household), (2, Via::Household)]);
        assert_ne!(family_of(&r, 3).id, f.id);
        assert_eq!(
            r.incident_links,
            vec![IncidentLink {
                person: 3,
                notification: "N1".into(),
                address_key: "addr:1 OAK RD|M6 5AB".into(),
            }]
        );
    }

    #[test]
    fn a_police_adult_whose_own_address_it_is_joins_the_family() {
        let mut people = borough();
        // The father also gave 1 Oak Road to the housing team before moving out.
        people[2]
            .mentions
            .push(m(16, FeedKind::Housing, "1 Oak Road", "M6 5AB", 1));
        let r = build(&people, &HashMap::new(), 1);
        let f = family_of(&r, 1);
        assert_eq!(
            f.members,
            vec![(1, Via::Household), (2, Via::Household), (3, Via::Police)]
        );
        assert!(r.incident_links.is_empty());
    }

    #[test]
    fn a_person_known_only_to_the_police_lives_at_the_incident() {
        let mut people = borough();
        people.push(person(5, vec![police(17, "1 Oak Road", "M6 5AB", "N1")]));
        let r = build(&people, &HashMap::new(), 1);
        let f = family_of(&r, 1);
        assert!(f.members.contains(&(5, Via::Police)));
    }

    #[test]
    fn case_families_join_households_at_different_addresses() {
        let mut people = borough();
        people[3].mentions[0].case_families = vec!["cases/FAM9".into()];
        people[0].mentions[0].case_families = vec!["cases/FAM9".into()];
        let r = build(&people, &HashMap::new(), 1);
        let f = family_of(&r, 4);
        assert_eq!(
            f.members,
            vec![(1, Via::Case), (2, Via::Household), (4, Via::Case)]
        );
    }

    #[test]
    fn the_latest_non_police_address_is_home_and_uprn_wins() {
        let mut a = m(20, FeedKind::Housing, "5 Old Lane", "M1 1AA", 1);
        a.uprn = Some(77);
        let b = m(21, FeedKind::Assessment, "8 New Lane", "M2 2BB", 9);
        let mut c = m(22, FeedKind::Housing, "8 new lane", "m2 2bb", 2);
        c.uprn = Some(88);
        let r = build(
            &[person(1, vec![a, b]), person(2, vec![c])],
            &HashMap::new(),
            1,
        );
        let h: Vec<(&str, Vec<i64>)> = r
            .households
            .iter()
            .map(|h| (h.key.as_str(), h.members.clone()))
            .collect();
        assert_eq!(h, vec![("uprn:88", vec![1, 2])]);
    }

    #[test]
    fn family_ids_are_stable_on_a_second_night_and_merges_keep_the_older() {
        let people = borough();
        let first = build(&people, &HashMap::new(), 1);
        let map: HashMap<i64, i64> = first
            .families
            .iter()
            .flat_map(|f| {
                f.members.iter().flat_map(|(p, _)| {
                    let person = people.iter().find(|x| x.id == *p).unwrap();
                    person.mentions.iter().map(|m| (m.mention, f.id))
                })
            })
            .collect();
        let second = build(&people, &map, first.next_family_id);
        assert_eq!(second.families, first.families);
        assert!(second.created.is_empty() && second.aliases.is_empty());

        // The neighbour turns out to be in the same case as the mother: one family,
        // the older id kept, the other recorded as its alias.
        let mut merged = people.clone();
        merged[0].mentions[0].case_families = vec!["cases/F1".into()];
        merged[3].mentions[0].case_families = vec!["cases/F1".into()];
        let third = build(&merged, &map, second.next_family_id);
        let (old_mother, old_neighbour) = (family_of(&first, 1).id, family_of(&first, 4).id);
        let keep = old_mother.min(old_neighbour);
        assert_eq!(family_of(&third, 4).id, keep);
        assert_eq!(third.aliases, vec![(old_mother.max(old_neighbour), keep)]);
    }

    #[test]
    fn persons_without_an_address_are_families_of_their_own() {
        let mut lone = m(30, FeedKind::Attendance, "", "", 1);
        lone.address_line1 = None;
        let r = build(&[person(9, vec![lone])], &HashMap::new(), 4);
        assert!(r.households.is_empty());
        assert_eq!(r.families.len(), 1);
        assert_eq!(r.families[0].id, 4);
        assert_eq!(r.families[0].members, vec![(9, Via::Household)]);
    }

    #[test]
    fn postcodes_and_lines_normalise() {
        // The postcode half of the key is `Postcode`'s text.
        assert_eq!(
            written_address_key(Some("12 Acacia Road"), Some(" m65ab ")).as_deref(),
            Some("addr:12 ACACIA RD|M6 5AB")
        );
        assert_eq!(
            normalise_address_line("Apartment 3, 12 Acacia Avenue"),
            "FLAT 3 12 ACACIA AVE"
        );
    }
}
