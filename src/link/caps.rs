//! The caps on a pair's band: rules on top of the Fellegi–Sunter probability.
//!
//! They exist because its independence assumption fails exactly where it hurts:
//! people of one household share surname, address and postcode, and twins a date of
//! birth too. A probability alone would link them; the caps make a forename or DOB
//! disagreement outweigh a shared address, and never auto-link on name + postcode
//! alone (docs/domain.md 6). Clustering applies the same caps between whole persons, so a
//! chain of individually plausible links cannot join what a direct comparison would
//! keep apart.

use super::compare::{self, level};
use super::prepare::Prepared;
use super::Band;

/// Years between two dates of birth from which two records of one name are a parent
/// and a child (a father and a son of one name at one address), never one person.
pub(crate) const GENERATION_YEARS: u32 = 14;

/// What a pair's records say beyond the compared fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PairFacts {
    /// Both name a school (a pupil's, or the school the police notified), different ones.
    pub schools_differ: bool,
    /// Both name the same school.
    pub schools_agree: bool,
    /// One record's role is a child's and the other's an adult's.
    pub ages_conflict: bool,
    /// Both are person ids of one case system.
    pub same_case_source: bool,
    /// Both are schools' own pupil records.
    pub both_pupils: bool,
    /// Either mention's key has named two people.
    pub conflicted: bool,
    /// Both records are of adults (see `Prepared::adult`).
    pub adults: bool,
    /// Years between the two dates of birth (0 when either is missing).
    pub years_apart: u32,
}

impl PairFacts {
    pub(crate) fn of(p: &Prepared, i: usize, j: usize) -> PairFacts {
        PairFacts {
            schools_differ: p.school[i] != 0 && p.school[j] != 0 && p.school[i] != p.school[j],
            schools_agree: p.school[i] != 0 && p.school[i] == p.school[j],
            ages_conflict: p.age_class[i] != 0
                && p.age_class[j] != 0
                && p.age_class[i] != p.age_class[j],
            same_case_source: p.case_source[i] != 0 && p.case_source[i] == p.case_source[j],
            both_pupils: p.pupil[i] && p.pupil[j],
            conflicted: p.conflicted[i] || p.conflicted[j],
            adults: p.adult[i] && p.adult[j],
            years_apart: if p.dob[i] == 0 || p.dob[j] == 0 {
                0
            } else {
                p.birth_year(i).abs_diff(p.birth_year(j))
            },
        }
    }
}

/// The best band a pair with levels `g` may have whatever its probability, and why.
///
/// Evidence comes in three groups — name, date of birth, address — each *strong*
/// (forename exact/nickname/close spelling and surname exact/close; DOB exact or day
/// and month swapped; the same dwelling or postcode) or *weak* (a looser spelling or
/// an initial; a DOB one part off). A forename or DOB that disagrees outright, or a
/// child's record against an adult's, outweighs any shared address:
/// - a mention whose key has named two people: review at most;
/// - DOB disagrees outright (both given): no link (a father and son of one name);
/// - a child's role against an adult's without the DOB agreeing: no link (a mother and
///   daughter of one name, the mother's DOB unrecorded);
/// - fewer than two strong groups: review if at least one more is weak, else no link
///   (two Mia Smiths born a few days apart across the borough); no link either when
///   the records themselves say two people — pupils of two schools, or two person ids
///   of one case system — or place the person in different postcode sectors (a DOB a
///   part off *and* another neighbourhood), for a reviewer could only confirm it;
/// - forename disagrees outright: review at most (twins share everything else); no
///   link between two schools' records (legal names) or two person ids of one case
///   system (twins, whom their own records already tell apart);
/// - sex disagrees and the forename is not the same: review at most (Oliver and
///   Olivia, twins);
/// - two schools' records of a pupil whose forenames differ at all: review at most
///   (schools keep legal names, so Jake and Jacob, or Amelia and Amelie, are two
///   children — twins, as often as not);
/// - pupils of two schools not sharing an address: review at most (namesakes);
/// - two person ids of one case system: review at most (its own records say two);
/// - a forename missing on either record, unless both are adults: review at most
///   (an unnamed newborn and its twin);
/// - no DOB to compare and only the postcode, not the house, agreeing: review at most
///   ("never auto-merge on name + postcode alone", docs/domain.md 6) — unless both
///   records name the same school (a police notification naming the pupil's school).
///   Sharing a school is no evidence otherwise: classmates and siblings do.
pub(crate) fn guard(g: u32, facts: PairFacts) -> Option<(Band, &'static str)> {
    let fore = compare::get(g, compare::FORENAME);
    let sur = compare::get(g, compare::SURNAME);
    let dob = compare::get(g, compare::DOB);
    let addr = compare::get(g, compare::ADDRESS);
    let name_close = fore <= level::FORENAME_JW_HIGH && sur <= level::SURNAME_JW_HIGH;
    let same_dwelling = addr < level::ADDRESS_POSTCODE;
    if dob == level::DOB_OTHER {
        // An adult's date of birth keyed wrongly: the same name at the same dwelling,
        // born less than a generation apart. A generation apart it is a parent and a
        // child of one name; for children it is two children.
        let miskeyed =
            facts.adults && name_close && same_dwelling && facts.years_apart < GENERATION_YEARS;
        if !miskeyed {
            return Some((Band::NoLink, "dob_disagrees"));
        }
    }
    if facts.conflicted {
        return Some((Band::Review, "reused_identifier"));
    }
    let dob_strong = dob < level::DOB_ONE_PART;
    if facts.ages_conflict && !dob_strong {
        return Some((Band::NoLink, "child_and_adult"));
    }
    // Between adults one of the two names may be spelt loosely (a keying error in a
    // name, everything else the same, is one person); between children that is how
    // twins are named (Oliver and Olivia), so both must agree closely.
    let loosely = |f: u8, s: u8| f <= level::FORENAME_SIMILAR && s <= level::SURNAME_SIMILAR;
    let name_strong = name_close
        || (facts.adults
            && loosely(fore, sur)
            && (fore <= level::FORENAME_JW_HIGH || sur <= level::SURNAME_JW_HIGH));
    let name_weak = !name_strong && fore <= level::FORENAME_INITIAL && sur < level::SURNAME_OTHER;
    let dob_weak = dob == level::DOB_ONE_PART;
    // Another house number in the same postcode is a neighbour — or a house number
    // keyed wrongly, which is what it is for an adult whose date of birth agrees too.
    let address_strong = addr <= level::ADDRESS_STREET
        && (addr != level::ADDRESS_OTHER_HOUSE || (facts.adults && dob == level::EXACT));
    let strong = u8::from(name_strong) + u8::from(dob_strong) + u8::from(address_strong);
    let weak = u8::from(name_weak) + u8::from(dob_weak);
    // Records that already say "two people" (pupils of two schools; two person ids of
    // one case system) need more than weak evidence to be worth anyone's time.
    let records_say_two = facts.schools_differ || facts.same_case_source;
    // Both addresses known and not even in one postcode sector: the records place
    // the person in different neighbourhoods.
    let lives_elsewhere =
        addr >= level::ADDRESS_DISTRICT && addr != compare::missing(compare::ADDRESS);
    if strong < 2 {
        // One strong group and a weak one is worth a reviewer's time unless the
        // records contradict it further: a DOB a part off *and* another
        // neighbourhood against one agreeing name are two Amelia Smiths.
        return if strong == 1 && weak >= 1 && !records_say_two && !lives_elsewhere {
            Some((Band::Review, "weak_evidence"))
        } else {
            Some((Band::NoLink, "weak_evidence"))
        };
    }
    if fore == compare::missing(compare::FORENAME) && !facts.adults {
        // A child with no forename on a record (a newborn, "Baby Haddad"): the same
        // surname, DOB and home is that child or a twin, and only a person can tell.
        return Some((Band::Review, "forename_missing"));
    }
    if fore == level::FORENAME_OTHER {
        // Schools keep legal names and a case system its own ids: there a forename
        // that disagrees outright is a second child (a twin), not a question. An
        // adult with the same surname, date of birth and home under another forename
        // is one person under a known-as or middle name far more often than a twin.
        if facts.both_pupils || facts.same_case_source {
            return Some((Band::NoLink, "forename_disagrees"));
        }
        let known_as =
            facts.adults && sur <= level::SURNAME_JW_HIGH && dob_strong && address_strong;
        if !known_as {
            return Some((Band::Review, "forename_disagrees"));
        }
    }
    let sex = compare::get(g, compare::SEX);
    if sex == level::SEX_DISAGREE && fore != level::EXACT {
        return Some((Band::Review, "sex_and_forename_differ"));
    }
    if facts.both_pupils && fore != level::EXACT {
        return Some((Band::Review, "pupil_forenames_differ"));
    }
    if facts.schools_differ && !address_strong {
        return Some((Band::Review, "different_schools"));
    }
    if facts.same_case_source {
        return Some((Band::Review, "two_case_person_ids"));
    }
    if dob == compare::missing(compare::DOB)
        && addr == level::ADDRESS_POSTCODE
        && !facts.schools_agree
    {
        return Some((Band::Review, "name_and_postcode_only"));
    }
    None
}

/// Whether a pair is held back only because its surnames differ: the forename
/// strong, one dwelling, sex not disagreeing, no DOB to settle it (or one a part off).
/// That is a woman recorded under her maiden and her married name at home, DOB
/// unrecorded — or, as far as these fields go, another adult of that forename in the
/// house. Two police notifications that also name someone in common (the same
/// partner, the same children) tell the two apart; see `engine`.
pub(crate) fn held_by_surname_alone(g: u32, facts: PairFacts) -> bool {
    let fore = compare::get(g, compare::FORENAME);
    let sur = compare::get(g, compare::SURNAME);
    let addr = compare::get(g, compare::ADDRESS);
    let sex = compare::get(g, compare::SEX);
    matches!(guard(g, facts), Some((_, "weak_evidence")))
        && fore <= level::FORENAME_JW_HIGH
        && sur > level::SURNAME_JW_HIGH
        && addr <= level::ADDRESS_STREET
        && addr != level::ADDRESS_OTHER_HOUSE
        && sex != level::SEX_DISAGREE
}

/// Whether a cap says two records are different people, not merely short of
/// evidence: what clustering refuses between whole persons. Between adults a
/// forename that disagrees (for review) is a known-as name as often as not: their
/// dates of birth, sex and identifiers tell two adults apart, and one record under
/// another forename must not split a person the others join.
pub(crate) fn says_different(cap: Option<(Band, &'static str)>, facts: PairFacts) -> bool {
    if facts.adults && cap == Some((Band::Review, "forename_disagrees")) {
        return false;
    }
    matches!(
        cap,
        Some((
            _,
            "dob_disagrees"
                | "child_and_adult"
                | "forename_disagrees"
                | "sex_and_forename_differ"
                | "pupil_forenames_differ"
                | "different_schools"
                | "two_case_person_ids"
                | "reused_identifier"
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gamma from levels in field order (forename, surname, dob, address, sex).
    fn gamma(levels: [u8; compare::N_FIELDS]) -> u32 {
        levels
            .iter()
            .enumerate()
            .fold(0, |g, (f, &l)| g | (u32::from(l) << (4 * f)))
    }

    const OTHER_ADDRESS: u8 = 7;
    const POSTCODE: u8 = level::ADDRESS_POSTCODE;

    #[test]
    fn weak_evidence_between_records_that_say_two_people_is_not_reviewed() {
        // One name, a DOB a part off, nothing known about where they live.
        let g = gamma([
            0,
            0,
            level::DOB_ONE_PART,
            compare::missing(compare::ADDRESS),
            0,
        ]);
        let anywhere = PairFacts::default();
        assert_eq!(guard(g, anywhere), Some((Band::Review, "weak_evidence")));
        let two_schools = PairFacts {
            schools_differ: true,
            both_pupils: true,
            ..PairFacts::default()
        };
        assert_eq!(guard(g, two_schools), Some((Band::NoLink, "weak_evidence")));
        let one_case_system = PairFacts {
            same_case_source: true,
            ..PairFacts::default()
        };
        assert_eq!(
            guard(g, one_case_system),
            Some((Band::NoLink, "weak_evidence"))
        );
    }

    #[test]
    fn a_name_against_a_dob_a_part_off_and_another_neighbourhood_is_not_reviewed() {
        let anywhere = PairFacts::default();
        // Same name, DOB a part off: review while nothing about the address
        // disagrees (unknown, or neighbours in one sector)…
        for addr in [compare::missing(compare::ADDRESS), 5] {
            let g = gamma([0, 0, level::DOB_ONE_PART, addr, 0]);
            assert_eq!(guard(g, anywhere), Some((Band::Review, "weak_evidence")));
        }
        // …no link once the two records live in different sectors or districts.
        for addr in [level::ADDRESS_DISTRICT, OTHER_ADDRESS] {
            let g = gamma([0, 0, level::DOB_ONE_PART, addr, 0]);
            assert_eq!(guard(g, anywhere), Some((Band::NoLink, "weak_evidence")));
        }
    }

    #[test]
    fn twins_in_school_or_case_records_are_not_reviewed_elsewhere_they_are() {
        // Twins: surname, DOB and postcode agree, the forenames do not at all.
        let g = gamma([level::FORENAME_OTHER, 0, 0, POSTCODE, 0]);
        let schools = PairFacts {
            both_pupils: true,
            schools_agree: true,
            ..PairFacts::default()
        };
        let case_system = PairFacts {
            same_case_source: true,
            ..PairFacts::default()
        };
        for facts in [schools, case_system] {
            let cap = guard(g, facts);
            assert_eq!(cap, Some((Band::NoLink, "forename_disagrees")));
            assert!(
                says_different(cap, facts),
                "clustering must still refuse them"
            );
        }
        // A police record against a school's may carry a name the child goes by.
        let cap = guard(g, PairFacts::default());
        assert_eq!(cap, Some((Band::Review, "forename_disagrees")));
        assert!(says_different(cap, PairFacts::default()));
    }
}
