//! UK postcodes and the postcode prefixes (districts and sectors) that localities
//! own: the one place where a postcode is normalised, split and matched.

use std::fmt;

/// A UK postcode, normalised to upper case with one space before the inward code,
/// with whether it passes the strict format (a warning, never a rejection).
///
/// The one rule: every whitespace character is removed and the rest upper-cased;
/// a value of at least 5 ASCII characters gets one space before its last 3 (the
/// inward code). Anything shorter, or with a non-ASCII character, is kept without
/// spaces and has no inward code, so no sector. Other characters (`-`, `.`) are
/// kept: such a postcode is flagged invalid and equals only the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postcode {
    text: String,
    valid: bool,
}

impl Postcode {
    /// Normalises (`" b33  8th "` → `B33 8TH`) and validates. A value too short to
    /// have an inward code is kept compact (`"M6 5"` → `M65`) and flagged.
    /// `None` for an empty value.
    pub fn parse(s: &str) -> Option<Postcode> {
        let compact: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        if compact.is_empty() {
            return None;
        }
        if compact.len() < 5 || !compact.is_ascii() {
            return Some(Postcode {
                text: compact,
                valid: false,
            });
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        let text = format!("{outward} {inward}");
        let valid = postcode_is_valid(outward, inward);
        Some(Postcode { text, valid })
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it passes the strict BS 7666 format.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// The outward code, e.g. `M6` of `M6 5AB`, when the postcode has an inward code.
    pub fn outward(&self) -> Option<&str> {
        self.text.split_once(' ').map(|(outward, _)| outward)
    }

    /// The district: the outward code, or the whole text of a postcode too short
    /// to have an inward code (`M6` of `M6 5AB`; `M6` of `M6`).
    pub fn district(&self) -> &str {
        self.outward().unwrap_or(&self.text)
    }

    /// The sector, e.g. `M6 5` of `M6 5AB`, when the postcode has an inward code.
    pub fn sector(&self) -> Option<&str> {
        let space = self.text.find(' ')?;
        self.text.get(..space + 2)
    }
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A postcode district (`M7`, `SW1A`) or sector (`M6 5`) as a locality lists it,
/// upper case with one space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PostcodePrefix(String);

impl PostcodePrefix {
    /// A district is 1–2 letters, a digit and an optional letter or digit; a sector
    /// is a district, a space and one digit. `None` for anything else.
    pub fn parse(text: &str) -> Option<PostcodePrefix> {
        let norm = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let (district, sector) = match norm.split_once(' ') {
            Some((d, s)) => (d, Some(s)),
            None => (norm.as_str(), None),
        };
        let b = district.as_bytes();
        let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let rest = &b[letters..];
        let district_ok = (1..=2).contains(&letters)
            && match rest {
                [d] => d.is_ascii_digit(),
                [d, e] => d.is_ascii_digit() && e.is_ascii_alphanumeric(),
                _ => false,
            };
        let sector_ok = match sector {
            None => true,
            Some(s) => s.len() == 1 && s.as_bytes()[0].is_ascii_digit(),
        };
        (district_ok && sector_ok).then_some(PostcodePrefix(norm))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether this is a sector (`M6 5`) rather than a district (`M7`).
    pub fn is_sector(&self) -> bool {
        self.0.contains(' ')
    }

    /// Whether the postcode lies in this district or sector, whole: `M7` matches
    /// `M7 1AA`, not `M70 1AA`; `M6 5` matches `M6 5AB`. A postcode without an
    /// inward code matches nothing.
    pub fn matches(&self, postcode: &Postcode) -> bool {
        let target = if self.is_sector() {
            postcode.sector()
        } else {
            postcode.outward()
        };
        target == Some(self.0.as_str())
    }

    /// The most specific of `prefixes` that matches the postcode (a sector beats
    /// its district), with its item.
    pub fn most_specific<'a, T>(
        postcode: &Postcode,
        prefixes: impl IntoIterator<Item = (&'a PostcodePrefix, T)>,
    ) -> Option<T> {
        let mut best: Option<(T, usize)> = None;
        for (p, item) in prefixes {
            if p.matches(postcode) && best.as_ref().is_none_or(|(_, len)| p.0.len() > *len) {
                best = Some((item, p.0.len()));
            }
        }
        best.map(|(item, _)| item)
    }
}

impl fmt::Display for PostcodePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The strict regex of docs/domain.md 3.4, written out by hand so that no regex engine
/// is needed for one pattern.
fn postcode_is_valid(outward: &str, inward: &str) -> bool {
    if outward == "GIR" && inward == "0AA" {
        return true;
    }
    let inward_ok = {
        let b = inward.as_bytes();
        b.len() == 3
            && b[0].is_ascii_digit()
            && b[1..].iter().all(|c| b"ABDEFGHJLNPQRSTUWXYZ".contains(c))
    };
    if !inward_ok {
        return false;
    }
    let o = outward.as_bytes();
    let first = |c: u8| b"ABCDEFGHIJKLMNOPRSTUWYZ".contains(&c);
    let second = |c: u8| b"ABCDEFGHKLMNOPQRSTUVWXY".contains(&c);
    let third_a9a = |c: u8| b"ABCDEFGHJKPSTUW".contains(&c);
    let fourth_aa9a = |c: u8| b"ABEHMNPRVWXY".contains(&c);
    let d = |c: u8| c.is_ascii_digit();
    match o {
        // A9, A99
        [a, n] => first(*a) && d(*n),
        [a, n, m] if d(*n) && d(*m) => first(*a),
        // A9A
        [a, n, x] if d(*n) => first(*a) && third_a9a(*x),
        // AA9
        [a, b, n] => first(*a) && second(*b) && d(*n),
        // AA99, AA9A
        [a, b, n, m] => first(*a) && second(*b) && d(*n) && (d(*m) || fourth_aa9a(*m)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn postcodes_normalise_and_validate() {
        for good in [
            "M1 1AA", "M60 1NW", "CR2 6XH", "DN55 1PT", "W1A 1HQ", "EC1A 1BB", "SW1A 2AA",
            "GIR 0AA",
        ] {
            let p = Postcode::parse(good).unwrap();
            assert!(p.is_valid(), "{good}");
            assert_eq!(p.as_str(), good);
        }
        let p = Postcode::parse(" b33  8th ").unwrap();
        assert_eq!(p.as_str(), "B33 8TH");
        assert!(p.is_valid());
        assert_eq!(Postcode::parse("m6 5ab").unwrap().as_str(), "M6 5AB");
        assert_eq!(Postcode::parse("M65AB").unwrap().sector(), Some("M6 5"));
        assert_eq!(Postcode::parse("M65AB").unwrap().district(), "M6");
        assert!(!Postcode::parse("ZZ99 9ZZ").unwrap().is_valid());
        assert!(!Postcode::parse("hello").unwrap().is_valid());
        assert!(!Postcode::parse("M6").unwrap().is_valid());
    }

    #[test]
    fn short_values_are_kept_compact_without_a_sector() {
        let p = Postcode::parse(" m6  5 ").unwrap();
        assert_eq!(p.as_str(), "M65");
        assert!(!p.is_valid());
        assert_eq!((p.outward(), p.sector(), p.district()), (None, None, "M65"));
        // The rules of the old `link::family::normalise_postcode`, whose tests these were.
        assert_eq!(Postcode::parse(" m65ab ").unwrap().as_str(), "M6 5AB");
        assert_eq!(Postcode::parse("SW1A 1AA").unwrap().as_str(), "SW1A 1AA");
        assert_eq!(Postcode::parse("SW1A 1AA").unwrap().outward(), Some("SW1A"));
        assert_eq!(Postcode::parse(" \t "), None);
    }

    #[test]
    fn postcode_prefixes() {
        let prefix = |s: &str| PostcodePrefix::parse(s).map(|p| p.as_str().to_owned());
        assert_eq!(prefix("m7").as_deref(), Some("M7"));
        assert_eq!(prefix(" m6   5 ").as_deref(), Some("M6 5"));
        assert_eq!(prefix("SW1A").as_deref(), Some("SW1A"));
        assert_eq!(prefix("M27").as_deref(), Some("M27"));
        for bad in ["", "7M", "M", "MMM1", "M6 5A", "M6 X", "M123", "M6 5 1"] {
            assert_eq!(prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefixes_match_whole_districts_and_the_most_specific_wins() {
        let pc = |s: &str| Postcode::parse(s).unwrap();
        let m7 = PostcodePrefix::parse("M7").unwrap();
        assert!(m7.matches(&pc("M7 1AA")));
        assert!(!m7.matches(&pc("M70 1AA")));
        assert!(!m7.matches(&pc("M7")));
        let m6 = PostcodePrefix::parse("M6").unwrap();
        let m65 = PostcodePrefix::parse("M6 5").unwrap();
        let table = [(&m6, "district"), (&m65, "sector"), (&m7, "other")];
        assert_eq!(
            PostcodePrefix::most_specific(&pc("M6 5AB"), table),
            Some("sector")
        );
        assert_eq!(
            PostcodePrefix::most_specific(&pc("M6 4AB"), table),
            Some("district")
        );
        assert_eq!(PostcodePrefix::most_specific(&pc("M60 1AB"), table), None);
    }

    /// The routing rule before one parser (`link::family::normalise_postcode` and
    /// `alerts::Directory::locality_of_postcode`), kept to check against.
    fn old_routing_hit(prefix: &str, postcode: &str) -> bool {
        let compact: String = postcode
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let pc = if compact.len() > 3 && compact.is_ascii() {
            let (out, inward) = compact.split_at(compact.len() - 3);
            format!("{out} {inward}")
        } else {
            compact
        };
        let Some((outward, inward)) = pc.split_once(' ') else {
            return false;
        };
        let sector = inward.get(..1).map(|d| format!("{outward} {d}"));
        prefix == outward || sector.as_deref() == Some(prefix)
    }

    /// The linker's key before one parser (`link::prepare`): (postcode, sector, district).
    fn old_link_parts(raw: &str) -> Option<(String, String, String)> {
        let pc: String = raw
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if pc.is_empty() {
            return None;
        }
        if pc.len() >= 5 {
            let (outward, inward) = pc.split_at(pc.len() - 3);
            Some((
                pc.clone(),
                format!("{outward} {}", &inward[..1]),
                outward.to_owned(),
            ))
        } else {
            Some((pc.clone(), pc.clone(), pc))
        }
    }

    fn new_link_parts(raw: &str) -> Option<(String, String, String)> {
        let p = Postcode::parse(raw)?;
        let sector = p.sector().unwrap_or(p.as_str()).to_owned();
        Some((p.as_str().to_owned(), sector, p.district().to_owned()))
    }

    fn postcode_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z]{1,2}[0-9][0-9A-Za-z]? ?[0-9][A-Za-z]{2}",
            "[ A-Za-z0-9]{0,9}",
            "[ \\t\\-.A-Z0-9a-zß\u{131}]{0,9}",
            "\\PC{0,12}",
        ]
    }

    fn prefix_like() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Z]{1,2}[0-9][0-9A-Z]?( [0-9])?", "[ A-Za-z0-9]{0,6}",]
    }

    proptest! {
        #[test]
        fn postcode_parse_never_panics_and_is_idempotent(s in "\\PC{0,12}") {
            if let Some(p) = Postcode::parse(&s) {
                let again = Postcode::parse(p.as_str()).unwrap();
                prop_assert_eq!(again.as_str(), p.as_str());
            }
        }

        #[test]
        fn prefix_parse_never_panics_and_is_idempotent(s in "\\PC{0,8}") {
            if let Some(p) = PostcodePrefix::parse(&s) {
                prop_assert_eq!(PostcodePrefix::parse(p.as_str()), Some(p.clone()));
            }
        }

        /// Routing is unchanged for every input, valid postcode or not.
        #[test]
        fn prefix_matches_iff_the_old_routing_did(pc in postcode_like(), prefix in prefix_like(), own in any::<bool>()) {
            // Half the time, take the prefix from the postcode itself so that hits happen.
            let prefix = if own { pc.chars().take(prefix.len().min(4)).collect() } else { prefix };
            if let Some(p) = PostcodePrefix::parse(&prefix) {
                let new = Postcode::parse(&pc).is_some_and(|c| p.matches(&c));
                prop_assert_eq!(new, old_routing_hit(p.as_str(), &pc), "{:?} {:?}", p, pc);
            }
        }

        /// The linker's postcode, sector and district comparisons agree with the old
        /// ones for every pair of values made of letters, digits and spaces (the old
        /// key also dropped punctuation and non-ASCII letters: see `new_link_parts`).
        #[test]
        fn link_comparisons_are_unchanged_for_letters_digits_and_spaces(a in "[ A-Za-z0-9]{0,9}", b in "[ A-Za-z0-9]{0,9}") {
            let (oa, ob) = (old_link_parts(&a), old_link_parts(&b));
            let (na, nb) = (new_link_parts(&a), new_link_parts(&b));
            prop_assert_eq!(oa.is_some(), na.is_some());
            if let (Some(oa), Some(ob), Some(na), Some(nb)) = (oa, ob, na, nb) {
                prop_assert_eq!(oa.0 == ob.0, na.0 == nb.0);
                prop_assert_eq!(oa.1 == ob.1, na.1 == nb.1);
                prop_assert_eq!(oa.2 == ob.2, na.2 == nb.2);
            }
        }
    }
}
