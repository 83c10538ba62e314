//! String similarity for names without allocating: Jaro–Winkler and a one-edit test
//! on ASCII bytes (names are normalised to A–Z before they get here). Comparing is
//! the hot loop of linking — millions of pairs — and the general-purpose versions
//! allocate per call.

/// Longest name compared with stack buffers; longer ones fall back to `strsim`.
const MAX: usize = 64;

/// Jaro–Winkler similarity, equal to `strsim::jaro_winkler` (the Winkler prefix
/// bonus applies above a Jaro similarity of 0.7, for up to four letters).
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() > MAX || b.len() > MAX || !a.is_ascii() || !b.is_ascii() {
        return strsim::jaro_winkler(
            std::str::from_utf8(a).unwrap_or_default(),
            std::str::from_utf8(b).unwrap_or_default(),
        );
    }
    let sim = jaro(a, b);
    if sim > 0.7 {
        let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count() as f64;
        sim + 0.1 * prefix * (1.0 - sim)
    } else {
        sim
    }
}

fn jaro(a: &[u8], b: &[u8]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    if a == b {
        return 1.0;
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_hit = [false; MAX];
    let mut b_hit = [false; MAX];
    let mut matches = 0usize;
    for (i, &ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(range);
        let hi = (i + range + 1).min(b.len());
        for j in lo..hi {
            if !b_hit[j] && b[j] == ca {
                a_hit[i] = true;
                b_hit[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut k = 0usize;
    for (i, &ca) in a.iter().enumerate() {
        if a_hit[i] {
            while !b_hit[k] {
                k += 1;
            }
            if ca != b[k] {
                transpositions += 1;
            }
            k += 1;
        }
    }
    let m = matches as f64;
    let t = (transpositions / 2) as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0
}

/// Whether `a` and `b` are at most one insertion, deletion, substitution or
/// transposition of adjacent letters apart (optimal string alignment distance ≤ 1).
pub(crate) fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if prefix == short.len() {
        return true; // equal, or one letter added at the end
    }
    if short.len() == long.len() {
        // One substitution, or one transposition of adjacent letters.
        let (sa, la) = (&short[prefix + 1..], &long[prefix + 1..]);
        if sa == la {
            return true;
        }
        prefix + 1 < short.len()
            && short[prefix] == long[prefix + 1]
            && short[prefix + 1] == long[prefix]
            && short[prefix + 2..] == long[prefix + 2..]
    } else {
        // One letter inserted into the longer at `prefix`.
        short[prefix..] == long[prefix + 1..]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_values() {
        assert!(
            (jaro_winkler("MARTHA", "MARHTA") - strsim::jaro_winkler("MARTHA", "MARHTA")).abs()
                < 1e-12
        );
        assert_eq!(jaro_winkler("", ""), 1.0);
        assert_eq!(jaro_winkler("A", ""), 0.0);
        assert!(within_one_edit("LEO", "LOE"));
        assert!(within_one_edit("ANN", "ANNE"));
        assert!(within_one_edit("JON", "JOHN"));
        assert!(!within_one_edit("JON", "JOAN1X"));
        assert!(!within_one_edit("ABC", "CBA"));
    }

    proptest! {
        #[test]
        fn jaro_winkler_equals_strsim(a in "[A-E]{0,12}", b in "[A-E]{0,12}") {
            let ours = jaro_winkler(&a, &b);
            let theirs = strsim::jaro_winkler(&a, &b);
            prop_assert!((ours - theirs).abs() < 1e-12, "{} {} {} {}", a, b, ours, theirs);
        }

        #[test]
        fn one_edit_equals_osa(a in "[A-D]{0,8}", b in "[A-D]{0,8}") {
            prop_assert_eq!(within_one_edit(&a, &b), strsim::osa_distance(&a, &b) <= 1);
        }
    }
}
