//! Field-by-field comparison of two prepared mentions into comparison levels (the
//! Fellegi–Sunter "gamma" vector), packed four bits per field into a `u32`.
//!
//! Fields and levels (most to least agreeing; `missing` when either side lacks it):
//! - forename: exact, nickname, jw_high, similar, initial, other, missing
//! - surname: exact, jw_high, similar, part, other, missing
//! - dob: exact, day_month_swapped, one_part_differs, within_a_year, other, missing
//! - address (address line and postcode together, so that one dwelling is not counted
//!   twice): uprn, full, postcode, postcode_other_house, street, sector, district,
//!   other, missing
//! - sex: agree, disagree, missing

use chrono::{Datelike, NaiveDate};

use super::prepare::{Prepared, Row};
use super::strings;
use crate::domain::linkage;

/// A compared field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Field {
    pub name: &'static str,
    pub levels: &'static [&'static str],
    /// Default m probabilities (true matches), one per level except `missing`.
    pub prior_m: &'static [f64],
}

pub(crate) const FORENAME: usize = 0;
pub(crate) const SURNAME: usize = 1;
pub(crate) const DOB: usize = 2;
pub(crate) const ADDRESS: usize = 3;
pub(crate) const SEX: usize = 4;

/// The compared fields in gamma order. The last level of each is `missing`.
pub(crate) const FIELDS: [Field; 5] = [
    Field {
        name: "forename",
        levels: linkage::FORENAME_LEVELS,
        prior_m: &[0.82, 0.05, 0.05, 0.03, 0.02, 0.03],
    },
    Field {
        name: "surname",
        levels: linkage::SURNAME_LEVELS,
        prior_m: &[0.88, 0.04, 0.02, 0.01, 0.05],
    },
    Field {
        name: "dob",
        levels: linkage::DOB_LEVELS,
        prior_m: &[0.88, 0.03, 0.06, 0.01, 0.02],
    },
    Field {
        name: "address",
        levels: linkage::ADDRESS_LEVELS,
        prior_m: &[0.20, 0.45, 0.08, 0.02, 0.02, 0.04, 0.05, 0.14],
    },
    Field {
        name: "sex",
        levels: linkage::SEX_LEVELS,
        prior_m: &[0.98, 0.02],
    },
];

pub(crate) const N_FIELDS: usize = FIELDS.len();

/// Level indexes used by the guards.
pub(crate) mod level {
    pub const EXACT: u8 = 0;
    pub const FORENAME_JW_HIGH: u8 = 2;
    pub const FORENAME_SIMILAR: u8 = 3;
    pub const FORENAME_INITIAL: u8 = 4;
    pub const SURNAME_JW_HIGH: u8 = 1;
    pub const SURNAME_SIMILAR: u8 = 2;
    pub const FORENAME_OTHER: u8 = 5;
    pub const SURNAME_OTHER: u8 = 4;
    pub const DOB_ONE_PART: u8 = 2;
    pub const DOB_OTHER: u8 = 4;
    pub const ADDRESS_POSTCODE: u8 = 2;
    pub const SEX_DISAGREE: u8 = 1;
    pub const ADDRESS_OTHER_HOUSE: u8 = 3;
    pub const ADDRESS_STREET: u8 = 4;
    pub const ADDRESS_DISTRICT: u8 = 6;
}

/// The `missing` level of field `f`.
pub(crate) fn missing(f: usize) -> u8 {
    (FIELDS[f].levels.len() - 1) as u8
}

/// Level of field `f` in a packed gamma.
#[inline]
pub(crate) fn get(gamma: u32, f: usize) -> u8 {
    ((gamma >> (4 * f)) & 0xF) as u8
}

#[inline]
fn pack(levels: [u8; N_FIELDS]) -> u32 {
    levels
        .iter()
        .enumerate()
        .fold(0, |g, (f, &l)| g | (u32::from(l) << (4 * f)))
}

/// Set in a gamma when the names agree only with forename and surname swapped
/// (`BRADLEY MATTHEWS` / `MATTHEWS BRADLEY`); the name levels are then those of the
/// swapped comparison. Not a field: the model never sees it.
pub(crate) const SWAPPED: u32 = 1 << 28;

/// Compares mentions `i` and `j`.
pub(crate) fn compare(p: &Prepared, i: usize, j: usize) -> u32 {
    let (ra, rb) = (&p.rows[i], &p.rows[j]);
    let (fore, sur, swapped) = names(p, ra, rb);
    let g = pack([
        fore,
        sur,
        dob(ra.dob, rb.dob),
        address(ra, rb),
        sex(ra.sex, rb.sex),
    ]);
    if swapped {
        g | SWAPPED
    } else {
        g
    }
}

/// Forename and surname levels, and whether they come from the swapped comparison:
/// when each record's forename is compared with the other's surname and that agrees
/// closely on more of the two names than the names as written, the record was keyed
/// with its names swapped (and perhaps one of them replaced or misspelt).
fn names(p: &Prepared, ra: &Row, rb: &Row) -> (u8, u8, bool) {
    let fore = forename(p, ra, rb);
    let sur = surname(p, ra.surname, rb.surname);
    let close = |f: u8, s: u8| {
        u8::from(f <= level::FORENAME_JW_HIGH) + u8::from(s <= level::SURNAME_JW_HIGH)
    };
    let direct = close(fore, sur);
    if direct == 2 {
        return (fore, sur, false);
    }
    // Names compared crosswise as surnames are (no nickname: a surname has none).
    let cross = |a: u32, b: u32| surname(p, a, b);
    let (sf, ss) = (
        cross(ra.forename, rb.surname),
        cross(ra.surname, rb.forename),
    );
    let as_forename = |l: u8| match l {
        0 => level::EXACT,
        1 => level::FORENAME_JW_HIGH,
        2 => level::FORENAME_SIMILAR,
        l if l == missing(SURNAME) => missing(FORENAME),
        _ => level::FORENAME_OTHER,
    };
    let (sf, ss) = (as_forename(sf), ss);
    if close(sf, ss) > direct && sf != missing(FORENAME) && ss != missing(SURNAME) {
        (sf, ss, true)
    } else {
        (fore, sur, false)
    }
}

const JW_HIGH: f64 = 0.92;
const JW_SIMILAR: f64 = 0.85;

fn forename(p: &Prepared, ra: &Row, rb: &Row) -> u8 {
    let (a, b) = (ra.forename, rb.forename);
    if a == 0 || b == 0 {
        return missing(FORENAME);
    }
    if a == b {
        return 0;
    }
    // A forename split by a space (`LY DIA` / `LYDIA`).
    let whole = |x: &Row, y: &Row| {
        x.forename_all != 0 && (x.forename_all == y.forename || x.forename_all == y.forename_all)
    };
    if whole(ra, rb) || whole(rb, ra) {
        return level::FORENAME_JW_HIGH;
    }
    let (ga, gb) = (&p.name_groups[a as usize], &p.name_groups[b as usize]);
    if ga.iter().any(|g| gb.contains(g)) {
        return 1;
    }
    let (sa, sb) = (p.names.get(a), p.names.get(b));
    if misspelt_nickname(p, a, sb) || misspelt_nickname(p, b, sa) {
        return 1;
    }
    if sa.len() == 1 || sb.len() == 1 {
        return if sa.as_bytes()[0] == sb.as_bytes()[0] {
            4
        } else {
            5
        };
    }
    let jw = strings::jaro_winkler(sa, sb);
    if jw >= JW_HIGH {
        2
    } else if jw >= JW_SIMILAR || one_edit(sa, sb) {
        3
    } else {
        5
    }
}

/// Whether `other` is a close spelling of a name in one of `name`'s nickname groups
/// (ANDY / ANDRWE for Andrew).
fn misspelt_nickname(p: &Prepared, name: u32, other: &str) -> bool {
    other.len() >= 3
        && p.name_groups[name as usize].iter().any(|&g| {
            p.group_names[g as usize]
                .iter()
                .any(|&n| strings::jaro_winkler(p.names.get(n), other) >= JW_HIGH)
        })
}

fn surname(p: &Prepared, a: u32, b: u32) -> u8 {
    if a == 0 || b == 0 {
        return missing(SURNAME);
    }
    if a == b {
        return 0;
    }
    let (sa, sb) = (p.names.get(a), p.names.get(b));
    let jw = strings::jaro_winkler(sa, sb);
    if jw >= JW_HIGH {
        1
    } else if jw >= JW_SIMILAR {
        2
    } else {
        let (short, long) = if sa.len() <= sb.len() {
            (sa, sb)
        } else {
            (sb, sa)
        };
        // One part of a double-barrelled name (SMITH / SMITHJONES).
        if short.len() >= 3 && (long.starts_with(short) || long.ends_with(short)) {
            3
        } else {
            4
        }
    }
}

/// One insertion, deletion, substitution or transposition apart, for names of three
/// letters or more (LEO / LOE, which Jaro–Winkler scores low because they are short).
fn one_edit(a: &str, b: &str) -> bool {
    a.len() >= 3 && b.len() >= 3 && strings::within_one_edit(a, b)
}

/// Compares two `yyyymmdd` dates (0 = missing).
pub(crate) fn dob(a: u32, b: u32) -> u8 {
    if a == 0 || b == 0 {
        return missing(DOB);
    }
    if a == b {
        return 0;
    }
    let split = |x: u32| (x / 10_000, x / 100 % 100, x % 100);
    let (ya, ma, da) = split(a);
    let (yb, mb, db) = split(b);
    if ya == yb && ma == db && da == mb {
        return 1;
    }
    let same = u8::from(ya == yb) + u8::from(ma == mb) + u8::from(da == db);
    if same == 2 {
        return 2;
    }
    let day = |y: u32, m: u32, d: u32| {
        NaiveDate::from_ymd_opt(y as i32, m, d).map(|x| x.num_days_from_ce())
    };
    match (day(ya, ma, da), day(yb, mb, db)) {
        (Some(x), Some(y)) if (x - y).abs() <= 366 => 3,
        _ => 4,
    }
}

fn address(ra: &Row, rb: &Row) -> u8 {
    if ra.uprn != 0 && ra.uprn == rb.uprn {
        return 0;
    }
    let (pa, pb) = (ra.postcode, rb.postcode);
    let (ha, hb) = (ra.house, rb.house);
    if pa != 0 && pa == pb {
        return if ha != 0 && hb != 0 {
            if ha == hb {
                1
            } else {
                3
            }
        } else {
            2
        };
    }
    if ha != 0 && ha == hb && ra.street != 0 && ra.street == rb.street {
        return 4;
    }
    if pa == 0 || pb == 0 {
        return missing(ADDRESS);
    }
    if ra.sector == rb.sector {
        5
    } else if ra.district == rb.district {
        6
    } else {
        7
    }
}

fn sex(a: u8, b: u8) -> u8 {
    match (a, b) {
        (0, _) | (_, 0) => 2,
        (x, y) if x == y => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dob_levels() {
        assert_eq!(dob(20150304, 20150304), 0);
        assert_eq!(dob(20150304, 20150403), 1, "day and month swapped");
        assert_eq!(dob(20150304, 20150305), 2, "one part differs");
        assert_eq!(dob(20150304, 20160304), 2, "year differs by one");
        assert_eq!(dob(20151231, 20160101), 3, "a day apart across a new year");
        assert_eq!(dob(20150304, 19800101), 4);
        assert_eq!(dob(0, 20150304), missing(DOB));
    }

    #[test]
    fn every_field_has_a_prior_for_each_level_but_missing() {
        for f in FIELDS {
            assert_eq!(f.prior_m.len() + 1, f.levels.len(), "{}", f.name);
            assert_eq!(*f.levels.last().unwrap(), "missing");
            let total: f64 = f.prior_m.iter().sum();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{} priors sum to {total}",
                f.name
            );
            assert!(f.levels.len() <= 16, "four bits per field");
        }
    }
}
