//! Identifiers with check rules: UPN (mod-23 check letter), NHS number (mod 11),
//! and UPRN (≤ 12 digits). Postcodes are in [`super::postcode`].
//!
//! An identifier that fails its check is kept and flagged, never dropped: the row
//! stays, but the value is not used as a deterministic match key (docs/domain.md 9.5).

use std::fmt;

/// The UPN alphabet: A–Z without I, O and S; index = value.
const UPN_ALPHABET: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

/// A Unique Pupil Number as written (trimmed, upper case), with whether it passes
/// its check letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upn {
    text: String,
    valid: bool,
}

impl Upn {
    /// Normalises (trim, upper case, inner spaces removed) and checks. Returns `None`
    /// for an empty value.
    pub fn parse(s: &str) -> Option<Upn> {
        let text: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if text.is_empty() {
            return None;
        }
        let valid = upn_is_valid(&text);
        Some(Upn { text, valid })
    }

    /// The UPN as written (trimmed, upper case).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the check letter is right (full or temporary UPN).
    pub fn is_valid(&self) -> bool {
        self.valid
    }
}

fn upn_index(b: u8) -> Option<u32> {
    UPN_ALPHABET.iter().position(|&c| c == b).map(|i| i as u32)
}

/// The check letter for the twelve characters after it, or `None` if they are not
/// eleven digits followed by a digit or an alphabet letter.
pub fn upn_check_letter(rest: &str) -> Option<char> {
    let bytes = rest.as_bytes();
    if bytes.len() != 12 {
        return None;
    }
    let mut sum = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let weight = i as u32 + 2;
        let value = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else if i == 11 {
            upn_index(b)?
        } else {
            return None;
        };
        sum += value * weight;
    }
    Some(UPN_ALPHABET[(sum % 23) as usize] as char)
}

fn upn_is_valid(text: &str) -> bool {
    if text.len() != 13 || !text.is_ascii() {
        return false;
    }
    let first = text.as_bytes()[0];
    upn_index(first).is_some() && upn_check_letter(&text[1..]) == Some(first as char)
}

impl fmt::Display for Upn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An NHS number as ten digits (spaces and dashes removed), with whether it passes
/// mod 11.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber {
    text: String,
    valid: bool,
}

impl NhsNumber {
    /// Normalises (drops spaces and dashes) and checks. `None` for an empty value.
    pub fn parse(s: &str) -> Option<NhsNumber> {
        let text: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if text.is_empty() {
            return None;
        }
        let valid = nhs_is_valid(&text);
        Some(NhsNumber { text, valid })
    }

    /// The number as written, without separators.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the mod-11 check passes.
    pub fn is_valid(&self) -> bool {
        self.valid
    }
}

fn nhs_is_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = bytes[..9]
        .iter()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * (10 - i as u32))
        .sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == u32::from(bytes[9] - b'0')
}

/// A Unique Property Reference Number: up to 12 digits, compared numerically
/// (zero-padded forms are the same UPRN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uprn(u64);

impl Uprn {
    /// Parses 1–12 digits (a trailing `.0` from a spreadsheet number is accepted).
    pub fn parse(s: &str) -> Result<Uprn, String> {
        let t = s.trim();
        let t = t.strip_suffix(".0").unwrap_or(t);
        if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{t:?} is not a UPRN (1 to 12 digits)"));
        }
        t.parse().map(Uprn).map_err(|e| e.to_string())
    }

    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Uprn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn upn_worked_examples_from_domain_md() {
        assert_eq!(upn_check_letter("801200005001"), Some('B'));
        assert!(Upn::parse("B801200005001").unwrap().is_valid());
        assert!(!Upn::parse("A801200005001").unwrap().is_valid());
        assert_eq!(upn_check_letter("80120000500A"), Some('M'));
        assert!(Upn::parse(" m80120000500a ").unwrap().is_valid());
        assert!(!Upn::parse("UN1").unwrap().is_valid());
        assert!(Upn::parse("   ").is_none());
    }

    #[test]
    fn nhs_worked_examples_from_domain_md() {
        assert!(NhsNumber::parse("943 476 5870").unwrap().is_valid());
        assert!(NhsNumber::parse("4010232137").unwrap().is_valid());
        assert!(!NhsNumber::parse("4010232138").unwrap().is_valid());
        assert!(!NhsNumber::parse("401023213").unwrap().is_valid());
        assert!(!NhsNumber::parse("abcdefghij").unwrap().is_valid());
    }

    #[test]
    fn uprns_compare_numerically() {
        assert_eq!(Uprn::parse("000000199356"), Uprn::parse("199356"));
        assert!(Uprn::parse("1234567890123").is_err());
        assert!(Uprn::parse("12a").is_err());
    }

    proptest! {
        #[test]
        fn every_valid_upn_body_has_exactly_one_check_letter(body in "[0-9]{11}[0-9A-HJ-NP-RT-Z]") {
            let letter = upn_check_letter(&body).unwrap();
            let valid = format!("{letter}{body}");
            prop_assert!(Upn::parse(&valid).unwrap().is_valid());
            for &other in UPN_ALPHABET.iter().filter(|&&c| c as char != letter) {
                let invalid = format!("{}{body}", other as char);
                prop_assert!(!Upn::parse(&invalid).unwrap().is_valid());
            }
        }

        #[test]
        fn nhs_single_digit_changes_are_caught(digits in "[0-9]{9}", pos in 0usize..9, delta in 1u8..10) {
            let sum: u32 = digits.bytes().enumerate().map(|(i, b)| u32::from(b - b'0') * (10 - i as u32)).sum();
            let check = match 11 - sum % 11 { 11 => 0, 10 => return Ok(()), c => c };
            let good = format!("{digits}{check}");
            prop_assert!(NhsNumber::parse(&good).unwrap().is_valid());
            let mut bad = good.into_bytes();
            bad[pos] = b'0' + (bad[pos] - b'0' + delta) % 10;
            prop_assert!(!NhsNumber::parse(std::str::from_utf8(&bad).unwrap()).unwrap().is_valid());
        }

    }
}
