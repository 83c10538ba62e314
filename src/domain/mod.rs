//! Plain data shared by every stage: feed kinds, identifiers, enumerations and the
//! canonical records that ingest produces. No IO here.
//!
//! Values that cross an edge (a spreadsheet cell, a config field) become one of these
//! types through `parse`, so inner code never re-checks them.

pub mod email;
pub mod ids;
pub mod linkage;
pub mod postcode;
pub mod problem;
pub mod records;
pub mod rules;

pub use email::EmailAddress;
pub use ids::{NhsNumber, Upn, Uprn};
pub use postcode::{Postcode, PostcodePrefix};
pub use problem::Problem;
pub use records::{
    AttendanceMark, CaseMember, DaPerson, HousingNotice, PersonMention, Record, RowProblem,
};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a closed enumeration with its canonical spelling and accepted aliases.
/// Parsing trims and ignores case, as docs/feeds.md asks of every enumeration.
macro_rules! enumeration {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $canon:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical (stored) spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $canon),+ }
            }

            /// The canonical spellings, for error messages.
            pub fn expected() -> String {
                [$($canon),+].join(", ")
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(
                    if t.eq_ignore_ascii_case($canon) $(|| t.eq_ignore_ascii_case($alias))* {
                        return Ok($name::$variant);
                    }
                )+
                Err(UnknownValue { value: t.to_string(), expected: Self::expected() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A value outside a closed enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {value:?} (expected one of: {expected})")]
pub struct UnknownValue {
    pub value: String,
    pub expected: String,
}

enumeration!(
    /// The four feed kinds of docs/feeds.md.
    FeedKind {
        Attendance => "attendance",
        PoliceDa => "police_da",
        Housing => "housing",
        Assessment => "assessment",
    }
);

enumeration!(
    /// File formats a source may deliver.
    Format {
        Csv => "csv",
        Xlsx => "xlsx",
        Xls => "xls",
        Ods => "ods",
        Json => "json",
    }
);

enumeration!(
    /// A school session.
    Session {
        Am => "AM",
        Pm => "PM",
    }
);

enumeration!(
    /// A person's role in a police domestic-abuse notification.
    DaRole {
        Victim => "victim" | "v",
        Perpetrator => "perpetrator" | "p",
        Child => "child" | "c",
        Other => "other" | "o",
    }
);

enumeration!(
    /// DASH risk level.
    DashRisk {
        Standard => "standard",
        Medium => "medium",
        High => "high",
    }
);

enumeration!(
    /// Type of an eviction or possession notice, in escalating stage order.
    NoticeType {
        Section21 => "section_21",
        Section8 => "section_8",
        NoticeToQuit => "notice_to_quit",
        PossessionClaim => "possession_claim",
        PossessionOrder => "possession_order",
        Warrant => "warrant",
        Other => "other",
    }
);

enumeration!(
    /// Tenure of a household served with a notice.
    Tenure {
        Council => "council",
        HousingAssociation => "housing_association",
        Private => "private",
        Other => "other",
    }
);

enumeration!(
    /// A person's role on an early-help / social-care case.
    CaseRole {
        Child => "child",
        Parent => "parent",
        Carer => "carer",
        Other => "other",
    }
);

enumeration!(
    /// Why a case closed.
    ClosureReason {
        OutcomesMet => "outcomes_met",
        StepUp => "step_up",
        StepDown => "step_down",
        Disengaged => "disengaged",
        MovedAway => "moved_away",
        Other => "other",
    }
);

enumeration!(
    /// Level of need of a case.
    CaseLevel {
        EarlyHelp => "early_help",
        ChildInNeed => "child_in_need",
        ChildProtection => "child_protection",
        LookedAfter => "looked_after",
    }
);

/// The statistical category of a DfE attendance mark (docs/domain.md 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkCategory {
    /// Present (`/ \ L`).
    Present,
    /// Approved educational activity: counts as attendance.
    ApprovedActivity,
    /// Authorised absence.
    Authorised,
    /// Unauthorised absence.
    Unauthorised,
    /// Not a possible session: excluded from numerator and denominator.
    NotPossible,
}

impl MarkCategory {
    /// Short stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkCategory::Present => "P",
            MarkCategory::ApprovedActivity => "AEA",
            MarkCategory::Authorised => "AA",
            MarkCategory::Unauthorised => "UA",
            MarkCategory::NotPossible => "NP",
        }
    }
}

/// A DfE attendance mark that passed the code table: its code as written in the
/// national list and its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    code: &'static str,
    category: MarkCategory,
}

/// The national codes from 19 Aug 2024 plus the retired ones still found in older
/// data, mapped as docs/domain.md 1.2 says (`H`/`F` authorised, `J` approved activity,
/// plain `Y` not possible). `-` (no mark) is a data-quality error and is not here.
const MARKS: &[(&str, MarkCategory)] = {
    use MarkCategory::*;
    &[
        ("/", Present),
        ("\\", Present),
        ("L", Present),
        ("K", ApprovedActivity),
        ("V", ApprovedActivity),
        ("P", ApprovedActivity),
        ("W", ApprovedActivity),
        ("B", ApprovedActivity),
        ("D", NotPossible),
        ("C1", Authorised),
        ("C2", Authorised),
        ("C", Authorised),
        ("M", Authorised),
        ("J1", Authorised),
        ("S", Authorised),
        ("T", Authorised),
        ("R", Authorised),
        ("I", Authorised),
        ("E", Authorised),
        ("G", Unauthorised),
        ("N", Unauthorised),
        ("O", Unauthorised),
        ("U", Unauthorised),
        ("Q", NotPossible),
        ("Y1", NotPossible),
        ("Y2", NotPossible),
        ("Y3", NotPossible),
        ("Y4", NotPossible),
        ("Y5", NotPossible),
        ("Y6", NotPossible),
        ("Y7", NotPossible),
        ("X", NotPossible),
        ("Z", NotPossible),
        ("#", NotPossible),
        // Retired codes still present in history.
        ("H", Authorised),
        ("F", Authorised),
        ("J", ApprovedActivity),
        ("Y", NotPossible),
    ]
};

impl Mark {
    /// Parses a mark: trimmed, case-insensitive. Unknown and local codes are errors
    /// (never guessed), so the row is quarantined.
    pub fn parse(s: &str) -> Result<Mark, UnknownValue> {
        let t = s.trim();
        MARKS
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(t))
            .map(|&(code, category)| Mark { code, category })
            .ok_or_else(|| UnknownValue {
                value: t.to_string(),
                expected: "a DfE attendance code (/ \\ L K V P W B D C C1 C2 M J1 S T R I E G N O U Q Y1-Y7 X Z #)".into(),
            })
    }

    /// Every mark of the code table, in table order (present codes first).
    pub fn all() -> impl Iterator<Item = Mark> {
        MARKS
            .iter()
            .map(|&(code, category)| Mark { code, category })
    }

    /// The code in its national spelling.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The statistical category.
    pub fn category(self) -> MarkCategory {
        self.category
    }
}

/// A six-digit school URN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Urn(u32);

impl Urn {
    /// Parses a URN: six digits after trimming (a spreadsheet may have dropped a
    /// leading zero, so 5 digits are padded back).
    pub fn parse(s: &str) -> Result<Urn, String> {
        let t = s.trim();
        let t = t.strip_suffix(".0").unwrap_or(t);
        if !(5..=6).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{t:?} is not a 6-digit school URN"));
        }
        t.parse().map(Urn).map_err(|e| e.to_string())
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Urn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerations_ignore_case_and_accept_aliases() {
        assert_eq!("Victim ".parse::<DaRole>(), Ok(DaRole::Victim));
        assert_eq!("P".parse::<DaRole>(), Ok(DaRole::Perpetrator));
        assert_eq!("MEDIUM".parse::<DashRisk>(), Ok(DashRisk::Medium));
        assert_eq!("am".parse::<Session>(), Ok(Session::Am));
        let err = "sometimes".parse::<DashRisk>().unwrap_err();
        assert!(err.to_string().contains("standard, medium, high"), "{err}");
    }

    #[test]
    fn marks_follow_the_national_table() {
        assert_eq!(Mark::parse("/").unwrap().category(), MarkCategory::Present);
        assert_eq!(Mark::parse("l").unwrap().category(), MarkCategory::Present);
        assert_eq!(
            Mark::parse("y1").unwrap().category(),
            MarkCategory::NotPossible
        );
        assert_eq!(
            Mark::parse("J1").unwrap().category(),
            MarkCategory::Authorised
        );
        assert_eq!(
            Mark::parse("J").unwrap().category(),
            MarkCategory::ApprovedActivity
        );
        assert_eq!(
            Mark::parse("N").unwrap().category(),
            MarkCategory::Unauthorised
        );
        assert!(Mark::parse("-").is_err());
        assert!(Mark::parse("Q9").is_err());
        assert!(Mark::parse("").is_err());
    }

    #[test]
    fn urns_are_six_digits() {
        assert_eq!(Urn::parse(" 100001 ").unwrap().to_string(), "100001");
        assert_eq!(Urn::parse("12345").unwrap().to_string(), "012345");
        assert!(Urn::parse("1234567").is_err());
        assert!(Urn::parse("10A001").is_err());
    }
}

/// Whether a step changes anything: `DryRun` reports what it would do and writes
/// nothing; `Apply` does it. A mode, not a `bool`, so that a call reads as what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    DryRun,
    Apply,
}

impl RunMode {
    /// `DryRun` when `dry_run` (a command-line flag or a report field) says so.
    pub fn from_dry_run(dry_run: bool) -> RunMode {
        if dry_run {
            RunMode::DryRun
        } else {
            RunMode::Apply
        }
    }

    pub fn is_dry_run(self) -> bool {
        self == RunMode::DryRun
    }
}
