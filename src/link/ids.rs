//! Stable ids across nights, for persons and (the same logic) families.
//!
//! A night's clustering knows only groups of items (mention ids); this module gives
//! each group the id it had before wherever that is well defined:
//! - a group whose items all had one id keeps it;
//! - a merge keeps the oldest (smallest) id and records an alias for every other;
//! - a split keeps the id on the part holding the id's oldest item (smallest item id)
//!   and gives the other parts new ids;
//! - a group of new items gets a new id.
//!
//! Invariant: an id whose items are unchanged is never renumbered.
//! Invariant: the result depends only on the input sets, not on their order.

use std::collections::HashMap;

/// The ids of one night.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The id of each input group, in input order.
    pub ids: Vec<i64>,
    /// `(old, new)`: the old id was merged into the new one this night.
    pub aliases: Vec<(i64, i64)>,
    /// Ids handed out for the first time this night, ascending.
    pub created: Vec<i64>,
    /// The next free id after this night.
    pub next_id: i64,
}

/// Gives every group an id, reusing `previous` (item → id) as the module doc says.
/// `next_id` is the smallest id never handed out (ids are never reused).
pub fn assign(groups: &[Vec<i64>], previous: &HashMap<i64, i64>, next_id: i64) -> Assignment {
    // Where each previous id's oldest surviving item is now: that group inherits it.
    let mut oldest: HashMap<i64, (i64, usize)> = HashMap::new();
    for (g, items) in groups.iter().enumerate() {
        for &item in items {
            if let Some(&id) = previous.get(&item) {
                let e = oldest.entry(id).or_insert((item, g));
                if item < e.0 {
                    *e = (item, g);
                }
            }
        }
    }
    let mut claims: Vec<Vec<i64>> = vec![Vec::new(); groups.len()];
    for (&id, &(_, g)) in &oldest {
        claims[g].push(id);
    }
    let mut ids = vec![0i64; groups.len()];
    let mut aliases = Vec::new();
    let mut fresh: Vec<(i64, usize)> = Vec::new();
    for (g, claimed) in claims.iter_mut().enumerate() {
        claimed.sort_unstable();
        match claimed.split_first() {
            Some((&keep, merged)) => {
                ids[g] = keep;
                aliases.extend(merged.iter().map(|&old| (old, keep)));
            }
            None => {
                let first = groups[g].iter().copied().min().unwrap_or(i64::MAX);
                fresh.push((first, g));
            }
        }
    }
    // New ids in the order of each group's oldest item, so the same input always
    // numbers the same way.
    fresh.sort_unstable();
    let mut next = next_id;
    let mut created = Vec::with_capacity(fresh.len());
    for (_, g) in fresh {
        ids[g] = next;
        created.push(next);
        next += 1;
    }
    aliases.sort_unstable();
    Assignment {
        ids,
        aliases,
        created,
        next_id: next,
    }
}

/// Parses a displayed id: `P12`, `p12` or `12` with prefix `P` (digits only after
/// the prefix: no sign, no space).
pub fn parse_display_id(s: &str, prefix: char) -> Option<i64> {
    let t = s.trim();
    let digits = t
        .strip_prefix(prefix)
        .or_else(|| t.strip_prefix(prefix.to_ascii_lowercase()))
        .unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prev(pairs: &[(i64, i64)]) -> HashMap<i64, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn new_items_get_new_ids_in_item_order() {
        let a = assign(&[vec![7, 3], vec![1], vec![5]], &HashMap::new(), 1);
        assert_eq!(a.ids, vec![2, 1, 3]);
        assert_eq!(a.created, vec![1, 2, 3]);
        assert!(a.aliases.is_empty());
        assert_eq!(a.next_id, 4);
    }

    #[test]
    fn unchanged_groups_keep_their_ids_and_new_mentions_join() {
        let p = prev(&[(1, 10), (2, 10), (3, 11)]);
        let a = assign(&[vec![3], vec![1, 2, 4]], &p, 12);
        assert_eq!(a.ids, vec![11, 10]);
        assert!(a.created.is_empty());
        assert_eq!(a.next_id, 12);
    }

    #[test]
    fn a_merge_keeps_the_older_id_and_records_the_alias() {
        let p = prev(&[(1, 20), (2, 14), (3, 17)]);
        let a = assign(&[vec![1, 2, 3]], &p, 30);
        assert_eq!(a.ids, vec![14]);
        assert_eq!(a.aliases, vec![(17, 14), (20, 14)]);
        assert_eq!(a.next_id, 30);
    }

    #[test]
    fn a_split_keeps_the_id_on_the_part_with_the_oldest_mention() {
        let p = prev(&[(4, 9), (2, 9), (8, 9)]);
        let a = assign(&[vec![4, 8], vec![2]], &p, 50);
        assert_eq!(a.ids, vec![50, 9]);
        assert_eq!(a.created, vec![50]);
        assert!(a.aliases.is_empty());
    }

    #[test]
    fn a_split_and_a_merge_in_one_night() {
        // Person 5 = {1, 2}, person 6 = {3}; now {1} alone and {2, 3} together.
        let p = prev(&[(1, 5), (2, 5), (3, 6)]);
        let a = assign(&[vec![2, 3], vec![1]], &p, 7);
        assert_eq!(a.ids, vec![6, 5]);
        assert!(a.aliases.is_empty());
    }

    #[test]
    fn the_same_night_twice_gives_the_same_ids() {
        let groups = vec![vec![1, 2], vec![3], vec![4, 5, 6]];
        let first = assign(&groups, &HashMap::new(), 1);
        let map: HashMap<i64, i64> = groups
            .iter()
            .zip(&first.ids)
            .flat_map(|(g, &id)| g.iter().map(move |&m| (m, id)))
            .collect();
        let mut reversed = groups.clone();
        reversed.reverse();
        let second = assign(&reversed, &map, first.next_id);
        let mut ids = second.ids.clone();
        ids.reverse();
        assert_eq!(ids, first.ids);
        assert!(second.created.is_empty() && second.aliases.is_empty());
        assert_eq!(second.next_id, first.next_id);
    }

    #[test]
    fn ids_of_vanished_items_are_not_reused() {
        let p = prev(&[(1, 3)]);
        let a = assign(&[vec![2]], &p, 4);
        assert_eq!(a.ids, vec![4]);
    }

    #[test]
    fn display_ids_parse_with_or_without_prefix() {
        assert_eq!(parse_display_id("P12", 'P'), Some(12));
        assert_eq!(parse_display_id("p12", 'P'), Some(12));
        assert_eq!(parse_display_id(" 12 ", 'P'), Some(12));
        assert_eq!(parse_display_id("F3", 'F'), Some(3));
        assert_eq!(parse_display_id("F3", 'P'), None);
        assert_eq!(parse_display_id("P0", 'P'), None);
        assert_eq!(parse_display_id("x", 'P'), None);
        assert_eq!(parse_display_id("M584", 'M'), Some(584));
        assert_eq!(parse_display_id("m584", 'M'), Some(584));
        assert_eq!(parse_display_id("584", 'M'), Some(584));
        for bad in [
            "P12", "F3", "abc", "M", "M+5", "M-5", "+5", "M 5", "M5x", "",
        ] {
            assert_eq!(parse_display_id(bad, 'M'), None, "{bad:?}");
        }
    }
}
