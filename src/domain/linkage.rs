//! The vocabulary of linkage settings that config validates and `link` implements:
//! the values a blocking rule may key on, and the compared fields with their
//! comparison levels (the names `[linkage.m.<field>]` overrides use and `explain`
//! prints).

/// Values a blocking rule may combine with `+` (e.g. `dob+surname_code`).
pub const KEY_PARTS: &[&str] = &[
    "dob",
    "birth_year",
    "birth_month",
    "forename",
    "forename_code",
    "surname_code",
    "name_codes",
    "postcode",
    "address",
];

/// The default blocking rules, each catching what the others miss.
pub const DEFAULT_BLOCKING: &[&str] = &[
    "dob+surname_code",
    "dob+forename",
    "postcode+forename_code",
    "birth_month+surname_code+forename",
    "postcode+surname_code",
    "dob+postcode",
    "address+forename_code",
    "dob+name_codes",
    "postcode+name_codes",
    "dob+address",
];

pub const FORENAME_LEVELS: &[&str] = &[
    "exact", "nickname", "jw_high", "similar", "initial", "other", "missing",
];
pub const SURNAME_LEVELS: &[&str] = &["exact", "jw_high", "similar", "part", "other", "missing"];
pub const DOB_LEVELS: &[&str] = &[
    "exact",
    "day_month_swapped",
    "one_part_differs",
    "within_a_year",
    "other",
    "missing",
];
pub const ADDRESS_LEVELS: &[&str] = &[
    "uprn",
    "full",
    "postcode",
    "postcode_other_house",
    "street",
    "sector",
    "district",
    "other",
    "missing",
];
pub const SEX_LEVELS: &[&str] = &["agree", "disagree", "missing"];

/// Compared fields and their levels, in comparison order. The last level of each,
/// `missing`, has no m of its own (it weighs nothing).
pub const FIELDS: &[(&str, &[&str])] = &[
    ("forename", FORENAME_LEVELS),
    ("surname", SURNAME_LEVELS),
    ("dob", DOB_LEVELS),
    ("address", ADDRESS_LEVELS),
    ("sex", SEX_LEVELS),
];

/// Whether `rule` is a `+`-joined list of known key parts, each at most once.
pub fn blocking_rule_is_valid(rule: &str) -> bool {
    let parts: Vec<&str> = rule.split('+').map(str::trim).collect();
    !parts.is_empty()
        && parts.iter().all(|p| KEY_PARTS.contains(p))
        && parts
            .iter()
            .enumerate()
            .all(|(i, p)| !parts[..i].contains(p))
}
