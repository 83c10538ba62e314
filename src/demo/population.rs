//! The fictional borough's people: households with realistic UK structures, their
//! addresses (some move), schools, and each person's true identifiers.
//!
//! This is the ground truth the feeds are written from. Identifiers here are always
//! the *true* values (valid UPNs and NHS numbers); the feed writers decide how a
//! partner agency gets them wrong (missing, bad check letter, nickname, typo).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::calendar;
use super::names::{self, Surnames, Weighted};
use crate::domain::ids::upn_check_letter;

/// How many school days of attendance the school feeds carry.
pub const ATTENDANCE_SCHOOL_DAYS: usize = 20;

/// The borough's localities and their postcode districts (Salford-like codes).
pub const LOCALITIES: &[(&str, &[&str])] = &[
    ("North", &["M6", "M7"]),
    ("South", &["M5", "M30", "M44"]),
    ("West", &["M27", "M28", "M38"]),
];

/// The DfE number of the borough's local authority, used in UPNs.
const LA_CODE: u32 = 355;
/// Neighbouring authorities that issued some pupils' UPNs before they moved in.
const NEIGHBOUR_LAS: &[u32] = &[350, 351, 352, 354, 356];
/// The UPN alphabet (docs/domain.md 3.1).
pub const UPN_ALPHABET: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";
/// Letters allowed in the inward code of a postcode.
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// One dwelling.
#[derive(Debug, Clone)]
pub struct Address {
    pub line1: String,
    pub postcode: String,
    pub uprn: Option<u64>,
    /// Index into [`LOCALITIES`].
    pub locality: usize,
}

/// School phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Primary,
    Secondary,
}

/// One school.
#[derive(Debug, Clone)]
pub struct School {
    pub urn: u32,
    /// DfE establishment number (4 digits), used in the UPNs it issues.
    pub estab: u32,
    pub name: String,
    pub locality: usize,
    pub phase: Phase,
    /// Whether this school's marks arrive through the MIS API (JSON) instead of the CSV.
    pub via_api: bool,
}

/// A person's place in their household.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Child,
    Parent,
    Grandparent,
    /// An adult in a household without children.
    Adult,
}

/// Recorded sex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
}

/// How a pupil attends, which the attendance writer turns into marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Good,
    Typical,
    Persistent,
    /// Attends well, then falls away in the last two school weeks.
    FallingAway,
    /// Severely absent across the whole window.
    Severe,
}

/// How a school writes a pupil's UPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpnInFeed {
    /// The true UPN.
    AsIs,
    /// The true UPN with a wrong check letter (deliberately invalid).
    Invalid(String),
    /// Blank.
    Missing,
}

/// A pupil's school record.
#[derive(Debug, Clone)]
pub struct Pupil {
    /// Index into `Population::schools`.
    pub school: usize,
    /// The true UPN (valid; temporary ones end in a letter).
    pub upn: String,
    pub upn_in_feed: UpnInFeed,
    pub profile: Profile,
    /// Index into `Population::school_days` of the first day on roll (0 for most).
    pub on_roll_from: usize,
}

/// One person.
#[derive(Debug, Clone)]
pub struct Person {
    /// 1-based generator id.
    pub id: u32,
    /// Index into `Population::families`.
    pub family: usize,
    pub forename: &'static str,
    /// Index into `Population::surnames`.
    pub surname: u32,
    pub sex: Sex,
    pub dob: NaiveDate,
    pub role: Role,
    /// A valid ten-digit NHS number.
    pub nhs: u64,
    pub pupil: Option<Pupil>,
}

/// The shape of a household.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Household {
    TwoParents,
    LoneParent,
    Grandparents,
    AdultsOnly,
    /// A man living alone: the ex-partner of a lone parent, living elsewhere.
    LivingApart,
}

/// One household (the generator's family).
#[derive(Debug, Clone)]
pub struct Family {
    /// 1-based generator id.
    pub id: u32,
    pub kind: Household,
    /// Person indices: adults first, then children eldest first.
    pub members: Vec<usize>,
    /// Address indices with the date each became home, oldest first.
    pub addresses: Vec<(usize, NaiveDate)>,
    /// A mover whose schools still hold the old address.
    pub school_address_stale: bool,
    /// For a lone-parent household: the children's other parent, living elsewhere.
    pub ex_partner: Option<usize>,
}

impl Family {
    /// The address index that was home on `d` (the first one before any record).
    pub fn address_on(&self, d: NaiveDate) -> usize {
        let mut current = self.addresses.first().map(|a| a.0).unwrap_or(0);
        for &(addr, from) in &self.addresses {
            if from <= d {
                current = addr;
            }
        }
        current
    }

    /// The address index that is home now.
    pub fn current_address(&self) -> usize {
        self.addresses.last().map(|a| a.0).unwrap_or(0)
    }
}

/// The whole borough.
#[derive(Debug, Clone)]
pub struct Population {
    pub as_of: NaiveDate,
    pub surnames: Surnames,
    pub addresses: Vec<Address>,
    pub schools: Vec<School>,
    pub families: Vec<Family>,
    pub persons: Vec<Person>,
    /// The attendance window, oldest first.
    pub school_days: Vec<NaiveDate>,
}

impl Population {
    /// The person's surname.
    pub fn surname(&self, p: &Person) -> &str {
        self.surnames.get(p.surname)
    }

    /// The adults of a family, in member order.
    pub fn adults<'a>(&'a self, f: &'a Family) -> impl Iterator<Item = usize> + 'a {
        let persons = &self.persons;
        f.members
            .iter()
            .copied()
            .filter(move |&i| persons[i].role != Role::Child)
    }

    /// The children of a family, eldest first.
    pub fn children<'a>(&'a self, f: &'a Family) -> impl Iterator<Item = usize> + 'a {
        let persons = &self.persons;
        f.members
            .iter()
            .copied()
            .filter(move |&i| persons[i].role == Role::Child)
    }
}

/// The first day of the academic year that contains `d` (1 September).
pub fn academic_year_start(d: NaiveDate) -> i32 {
    if d.month() >= 9 {
        d.year()
    } else {
        d.year() - 1
    }
}

/// A random date between `from` and `to` inclusive (or `from` if the range is empty).
pub fn date_between(rng: &mut ChaCha8Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = (to - from).num_days();
    if span <= 0 {
        return from;
    }
    from + Days::new(rng.random_range(0..=span) as u64)
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// A date of birth for a child of academic age `age` (age on 31 August at the start
/// of the academic year: 4 = Reception, 10 = Year 6, 11 = Year 7).
fn child_dob(rng: &mut ChaCha8Rng, age: i32, year_start: i32) -> NaiveDate {
    let from = ymd(year_start - age - 1, 9, 1);
    let to = ymd(year_start - age, 8, 31);
    date_between(rng, from, to)
}

/// A date of birth `years` (a range) before `anchor`.
fn dob_years_before(
    rng: &mut ChaCha8Rng,
    anchor: NaiveDate,
    min_years: i32,
    max_years: i32,
) -> NaiveDate {
    let years = rng.random_range(min_years..=max_years);
    let base = anchor
        .with_year(anchor.year() - years)
        .unwrap_or_else(|| ymd(anchor.year() - years, 3, 1));
    date_between(rng, base - Days::new(180), base + Days::new(180))
}

/// A street in the catalogue, with its postcode units and the next free house number.
struct Street {
    name: String,
    locality: usize,
    units: Vec<String>,
    next_number: u32,
    /// A block of flats ("Flat 4, Rowan Court") rather than a street of houses.
    court: bool,
}

/// Builds the street catalogue and hands out new addresses.
struct AddressBook {
    streets: Vec<Street>,
    addresses: Vec<Address>,
}

impl AddressBook {
    fn new(rng: &mut ChaCha8Rng, families: usize) -> AddressBook {
        let suffixes =
            Weighted::from_weights(names::STREET_SUFFIXES.iter().map(|&(_, w)| f64::from(w)));
        let n = families / 20 + 12;
        let mut streets = Vec::with_capacity(n);
        let mut used = BTreeSet::new();
        for i in 0..n {
            let locality = i % LOCALITIES.len();
            let districts = LOCALITIES[locality].1;
            let district = districts[rng.random_range(0..districts.len())];
            let sector = rng.random_range(1..=9u32);
            let court = rng.random_bool(0.08);
            let base = names::STREETS[rng.random_range(0..names::STREETS.len())];
            let name = if court {
                format!("{base} Court")
            } else {
                let suffix = names::STREET_SUFFIXES[suffixes.sample(rng)].0;
                format!("{base} {suffix}")
            };
            // The same street name may recur in another district, as in real
            // boroughs, but not twice in one district.
            let name = if used.insert((name.clone(), district)) {
                name
            } else {
                format!("{} {name}", ["Upper", "Lower", "New", "Old"][i % 4])
            };
            let units = (0..rng.random_range(2..=5))
                .map(|_| {
                    let a = INWARD_LETTERS[rng.random_range(0..INWARD_LETTERS.len())] as char;
                    let b = INWARD_LETTERS[rng.random_range(0..INWARD_LETTERS.len())] as char;
                    format!("{district} {sector}{a}{b}")
                })
                .collect();
            streets.push(Street {
                name,
                locality,
                units,
                next_number: rng.random_range(1..=4),
                court,
            });
        }
        AddressBook {
            streets,
            addresses: Vec::new(),
        }
    }

    /// A new, never-used dwelling, in `locality` when given.
    fn new_address(&mut self, rng: &mut ChaCha8Rng, locality: Option<usize>) -> usize {
        let n = self.streets.len();
        let mut s = rng.random_range(0..n);
        if let Some(loc) = locality {
            // Streets are dealt round-robin over localities, so stepping to the
            // next index with the right remainder stays in range for n ≥ 3.
            while self.streets[s].locality != loc {
                s = (s + 1) % n;
            }
        }
        let street = &mut self.streets[s];
        let number = street.next_number;
        street.next_number += rng.random_range(1..=3);
        let line1 = if street.court {
            format!("Flat {number}, {}", street.name)
        } else if rng.random_bool(0.05) {
            format!("Flat {}, {number} {}", rng.random_range(1..=4), street.name)
        } else {
            format!("{number} {}", street.name)
        };
        let postcode = street.units[(number as usize / 16) % street.units.len()].clone();
        let index = self.addresses.len();
        let uprn = rng
            .random_bool(0.92)
            .then(|| 100_010_000_000 + index as u64 * 3 + rng.random_range(0..3u64));
        self.addresses.push(Address {
            line1,
            postcode,
            uprn,
            locality: street.locality,
        });
        index
    }
}

/// Builds the borough's schools: about one primary per 250 families and one
/// secondary per 600, spread over the localities.
fn build_schools(rng: &mut ChaCha8Rng, families: usize) -> Vec<School> {
    let primaries = ((families as f64 / 250.0).round() as usize).max(1);
    let secondaries = ((families as f64 / 600.0).round() as usize).max(1);
    let mut urns = BTreeSet::new();
    let mut schools = Vec::with_capacity(primaries + secondaries);
    for i in 0..primaries + secondaries {
        let phase = if i < primaries {
            Phase::Primary
        } else {
            Phase::Secondary
        };
        let k = if phase == Phase::Primary {
            i
        } else {
            i - primaries
        };
        let mut urn = rng.random_range(100_000..150_000u32);
        while !urns.insert(urn) {
            urn = rng.random_range(100_000..150_000u32);
        }
        let place = names::PLACES[k % names::PLACES.len()];
        let round = k / names::PLACES.len();
        let mut name = match (phase, k % 3) {
            (Phase::Primary, 0) => format!("{place} Primary School"),
            (Phase::Primary, 1) => format!("{place} Community Primary School"),
            (Phase::Primary, _) => format!(
                "{} RC Primary School, {place}",
                names::SAINTS[k % names::SAINTS.len()]
            ),
            (Phase::Secondary, 0) => format!("{place} High School"),
            (Phase::Secondary, 1) => format!("{place} Academy"),
            (Phase::Secondary, _) => format!("{place} Community High School"),
        };
        if round > 0 {
            name = format!("{name} ({})", round + 1);
        }
        let estab = match phase {
            Phase::Primary => 2000 + k as u32,
            Phase::Secondary => 4000 + k as u32,
        };
        schools.push(School {
            urn,
            estab,
            name,
            locality: i % LOCALITIES.len(),
            phase,
            via_api: false,
        });
    }
    // One or two schools send their marks through the MIS API instead of the CSV:
    // the first primary when there is more than one, and the second secondary when
    // there are two or more; never every school.
    let prim: Vec<usize> = (0..primaries).collect();
    let sec: Vec<usize> = (primaries..primaries + secondaries).collect();
    if prim.len() >= 2 {
        schools[prim[0]].via_api = true;
    }
    if sec.len() >= 2 {
        schools[sec[1]].via_api = true;
    }
    if !schools.iter().any(|s| s.via_api) {
        schools[0].via_api = true;
    }
    schools
}

/// Hands out unique, valid identifiers.
struct Identifiers {
    nhs: BTreeSet<u64>,
    upns: BTreeSet<String>,
    serials: BTreeMap<(u32, u32, u32), u32>,
}

impl Identifiers {
    fn nhs(&mut self, rng: &mut ChaCha8Rng) -> u64 {
        loop {
            let body: u64 = rng.random_range(400_000_000..700_000_000);
            let digits = body.to_string();
            let sum: u32 = digits
                .bytes()
                .enumerate()
                .map(|(i, b)| u32::from(b - b'0') * (10 - i as u32))
                .sum();
            let check = match 11 - sum % 11 {
                11 => 0,
                10 => continue,
                c => c,
            };
            let n = body * 10 + u64::from(check);
            if self.nhs.insert(n) {
                return n;
            }
        }
    }

    /// A valid UPN issued by `la`/`estab` in the year `yy`; temporary ones (a two-digit
    /// serial and a letter) for a few pupils.
    fn upn(&mut self, rng: &mut ChaCha8Rng, la: u32, estab: u32, yy: u32) -> String {
        loop {
            let serial = self.serials.entry((la, estab, yy)).or_insert(0);
            *serial += 1;
            let body = if rng.random_bool(0.003) {
                let letter = UPN_ALPHABET[rng.random_range(0..UPN_ALPHABET.len())] as char;
                format!("{la:03}{estab:04}{yy:02}{:02}{letter}", *serial % 100)
            } else {
                format!("{la:03}{estab:04}{yy:02}{:03}", *serial % 1000)
            };
            let Some(check) = upn_check_letter(&body) else {
                continue;
            };
            let upn = format!("{check}{body}");
            if self.upns.insert(upn.clone()) {
                return upn;
            }
        }
    }
}

/// A UPN with a wrong check letter.
fn spoil_upn(rng: &mut ChaCha8Rng, upn: &str) -> String {
    let first = upn.as_bytes().first().copied().unwrap_or(b'A');
    let mut letter = first;
    while letter == first {
        letter = UPN_ALPHABET[rng.random_range(0..UPN_ALPHABET.len())];
    }
    format!("{}{}", letter as char, upn.get(1..).unwrap_or(""))
}

/// Forename pools with Zipf weights.
struct Forenames {
    girls: Weighted,
    boys: Weighted,
    women: Weighted,
    men: Weighted,
}

impl Forenames {
    fn new() -> Forenames {
        Forenames {
            girls: Weighted::zipf(names::GIRLS.len(), 4.0, 1.0),
            boys: Weighted::zipf(names::BOYS.len(), 4.0, 1.0),
            women: Weighted::zipf(names::WOMEN.len(), 4.0, 1.0),
            men: Weighted::zipf(names::MEN.len(), 4.0, 1.0),
        }
    }

    fn child(&self, rng: &mut ChaCha8Rng, sex: Sex) -> &'static str {
        match sex {
            Sex::Female => names::GIRLS[self.girls.sample(rng)],
            Sex::Male => names::BOYS[self.boys.sample(rng)],
        }
    }

    fn adult(&self, rng: &mut ChaCha8Rng, sex: Sex) -> &'static str {
        match sex {
            Sex::Female => names::WOMEN[self.women.sample(rng)],
            Sex::Male => names::MEN[self.men.sample(rng)],
        }
    }
}

/// Builds the borough for `families` households (plus the households of lone
/// parents' ex-partners, who live elsewhere).
pub fn build(rng: &mut ChaCha8Rng, families: usize, as_of: NaiveDate) -> Population {
    let families = families.max(1);
    let surnames = Surnames::new();
    let forenames = Forenames::new();
    let mut book = AddressBook::new(rng, families);
    let schools = build_schools(rng, families);
    let school_days = calendar::school_days_before(as_of, ATTENDANCE_SCHOOL_DAYS);
    let year_start = academic_year_start(as_of);
    let mut ids = Identifiers {
        nhs: BTreeSet::new(),
        upns: BTreeSet::new(),
        serials: BTreeMap::new(),
    };
    let primaries: Vec<usize> = (0..schools.len())
        .filter(|&i| schools[i].phase == Phase::Primary)
        .collect();
    let kinds = Weighted::from_weights([45.0, 38.0, 5.0, 12.0]);
    let child_counts = Weighted::from_weights([35.0, 38.0, 18.0, 9.0]);
    let mut persons: Vec<Person> = Vec::with_capacity(families * 4);
    let mut fams: Vec<Family> = Vec::with_capacity(families + families / 10);
    let mut namesake_pool: Vec<usize> = Vec::new();
    let mut apart: Vec<(usize, u32)> = Vec::new();

    for fi in 0..families {
        let kind = [
            Household::TwoParents,
            Household::LoneParent,
            Household::Grandparents,
            Household::AdultsOnly,
        ][kinds.sample(rng)];
        let mut surname = surnames.sample(rng);
        let mut members = Vec::new();

        // Children first (eldest first), so parents' ages can follow them.
        let mut child_specs: Vec<(Sex, &'static str, NaiveDate)> = Vec::new();
        if kind != Household::AdultsOnly {
            let n = if kind == Household::Grandparents {
                1 + child_counts.sample(rng).min(2)
            } else {
                1 + child_counts.sample(rng)
            };
            let mut age = rng.random_range(4..=15);
            let mut dob = child_dob(rng, age, year_start);
            for c in 0..n {
                if c > 0 {
                    let twin = rng.random_bool(0.04);
                    if !twin {
                        age -= rng.random_range(1..=4);
                        if age < 0 {
                            break;
                        }
                        dob = child_dob(rng, age, year_start);
                    }
                }
                let sex = if rng.random_bool(0.5) {
                    Sex::Female
                } else {
                    Sex::Male
                };
                let mut forename = forenames.child(rng, sex);
                for _ in 0..8 {
                    if !child_specs.iter().any(|s| s.1 == forename) {
                        break;
                    }
                    forename = forenames.child(rng, sex);
                }
                child_specs.push((sex, forename, dob));
            }
            // A namesake: the eldest shares a common name and a close date of birth
            // with a child in another family.
            if !namesake_pool.is_empty() && rng.random_bool(0.01) {
                let other = &persons[namesake_pool[rng.random_range(0..namesake_pool.len())]];
                surname = other.surname;
                let shift = rng.random_range(-30..=30i64);
                let dob = if shift >= 0 {
                    other.dob + Days::new(shift as u64)
                } else {
                    other.dob - Days::new(shift.unsigned_abs())
                };
                if !child_specs.iter().skip(1).any(|c| c.1 == other.forename) {
                    if let Some(first) = child_specs.first_mut() {
                        *first = (other.sex, other.forename, dob);
                    }
                }
            }
        }
        let eldest_dob = child_specs.first().map(|c| c.2);

        // Adults.
        let family_index = fams.len();
        let mut adult_specs: Vec<(Sex, &'static str, u32, NaiveDate, Role)> = Vec::new();
        let mut ex_partner_surname = None;
        match kind {
            Household::TwoParents => {
                let anchor = eldest_dob.unwrap_or(as_of);
                let mother_dob = dob_years_before(rng, anchor, 18, 40);
                let father_dob = dob_years_before(rng, mother_dob, -1, 6);
                let mother_surname = if rng.random_bool(0.25) {
                    surnames.sample(rng)
                } else {
                    surname
                };
                adult_specs.push((
                    Sex::Female,
                    forenames.adult(rng, Sex::Female),
                    mother_surname,
                    mother_dob,
                    Role::Parent,
                ));
                adult_specs.push((
                    Sex::Male,
                    forenames.adult(rng, Sex::Male),
                    surname,
                    father_dob,
                    Role::Parent,
                ));
            }
            Household::LoneParent => {
                let anchor = eldest_dob.unwrap_or(as_of);
                let sex = if rng.random_bool(0.9) {
                    Sex::Female
                } else {
                    Sex::Male
                };
                let parent_surname = if rng.random_bool(0.3) {
                    // The children keep their father's surname.
                    ex_partner_surname = Some(surname);
                    surnames.sample(rng)
                } else {
                    surname
                };
                adult_specs.push((
                    sex,
                    forenames.adult(rng, sex),
                    parent_surname,
                    dob_years_before(rng, anchor, 18, 40),
                    Role::Parent,
                ));
            }
            Household::Grandparents => {
                let anchor = eldest_dob.unwrap_or(as_of);
                let gm_dob = dob_years_before(rng, anchor, 40, 60);
                adult_specs.push((
                    Sex::Female,
                    forenames.adult(rng, Sex::Female),
                    if rng.random_bool(0.6) {
                        surname
                    } else {
                        surnames.sample(rng)
                    },
                    gm_dob,
                    Role::Grandparent,
                ));
                if rng.random_bool(0.4) {
                    let surname_gf = adult_specs[0].2;
                    adult_specs.push((
                        Sex::Male,
                        forenames.adult(rng, Sex::Male),
                        surname_gf,
                        dob_years_before(rng, gm_dob, 0, 5),
                        Role::Grandparent,
                    ));
                }
            }
            Household::AdultsOnly | Household::LivingApart => {
                let n = if rng.random_bool(0.6) { 1 } else { 2 };
                let first_dob = dob_years_before(rng, as_of, 19, 80);
                for k in 0..n {
                    let sex = if rng.random_bool(0.5) {
                        Sex::Female
                    } else {
                        Sex::Male
                    };
                    let s = if k == 0 || rng.random_bool(0.4) {
                        surname
                    } else {
                        surnames.sample(rng)
                    };
                    let dob = if k == 0 {
                        first_dob
                    } else {
                        dob_years_before(rng, first_dob, -5, 5)
                    };
                    adult_specs.push((sex, forenames.adult(rng, sex), s, dob, Role::Adult));
                }
            }
        }

        for (sex, forename, s, dob, role) in adult_specs {
            let nhs = ids.nhs(rng);
            members.push(persons.len());
            persons.push(Person {
                id: persons.len() as u32 + 1,
                family: family_index,
                forename,
                surname: s,
                sex,
                dob,
                role,
                nhs,
                pupil: None,
            });
        }

        // Address history: most families stay put; some moved within the last year.
        let first = book.new_address(rng, None);
        let settled = date_between(rng, as_of - Days::new(365 * 12), as_of - Days::new(365 * 2));
        let mut addresses = vec![(first, settled)];
        let moves = rng.random_bool(if child_specs.is_empty() { 0.08 } else { 0.12 });
        if moves {
            let moved_on = date_between(rng, as_of - Days::new(330), as_of - Days::new(7));
            let locality = rng
                .random_bool(0.6)
                .then_some(book.addresses[first].locality);
            let second = book.new_address(rng, locality);
            addresses.push((second, moved_on));
        }
        let locality = book.addresses[addresses[addresses.len() - 1].0].locality;
        let school_address_stale = moves && !child_specs.is_empty() && rng.random_bool(0.3);

        for (sex, forename, dob) in child_specs {
            let person_index = persons.len();
            let nhs = ids.nhs(rng);
            let age = academic_age(dob, year_start);
            let pupil = (4..=15).contains(&age).then(|| {
                let phase = if age <= 10 {
                    Phase::Primary
                } else {
                    Phase::Secondary
                };
                let local: Vec<usize> = (0..schools.len())
                    .filter(|&i| schools[i].phase == phase && schools[i].locality == locality)
                    .collect();
                let any: Vec<usize> = (0..schools.len())
                    .filter(|&i| schools[i].phase == phase)
                    .collect();
                let pool = if local.is_empty() { &any } else { &local };
                let school = pool[rng.random_range(0..pool.len())];
                let (la, estab) = if rng.random_bool(0.08) {
                    (
                        NEIGHBOUR_LAS[rng.random_range(0..NEIGHBOUR_LAS.len())],
                        rng.random_range(2000..2400),
                    )
                } else if phase == Phase::Primary {
                    (LA_CODE, schools[school].estab)
                } else {
                    (
                        LA_CODE,
                        schools[primaries[rng.random_range(0..primaries.len())]].estab,
                    )
                };
                let yy = (year_start - (age - 4)).rem_euclid(100) as u32;
                let upn = ids.upn(rng, la, estab, yy);
                let roll = rng.random::<f64>();
                let upn_in_feed = if roll < 0.01 {
                    UpnInFeed::Invalid(spoil_upn(rng, &upn))
                } else if roll < 0.03 {
                    UpnInFeed::Missing
                } else {
                    UpnInFeed::AsIs
                };
                let roll = rng.random::<f64>();
                let profile = if roll < 0.70 {
                    Profile::Good
                } else if roll < 0.90 {
                    Profile::Typical
                } else if roll < 0.98 {
                    Profile::Persistent
                } else if roll < 0.995 {
                    Profile::FallingAway
                } else {
                    Profile::Severe
                };
                let on_roll_from = if rng.random_bool(0.01) && school_days.len() > 1 {
                    rng.random_range(1..school_days.len())
                } else {
                    0
                };
                Pupil {
                    school,
                    upn,
                    upn_in_feed,
                    profile,
                    on_roll_from,
                }
            });
            if pupil.is_some() {
                namesake_pool.push(person_index);
            }
            members.push(person_index);
            persons.push(Person {
                id: person_index as u32 + 1,
                family: family_index,
                forename,
                surname,
                sex,
                dob,
                role: Role::Child,
                nhs,
                pupil,
            });
        }

        if kind == Household::LoneParent && rng.random_bool(0.35) {
            apart.push((family_index, ex_partner_surname.unwrap_or(surname)));
        }
        fams.push(Family {
            id: fi as u32 + 1,
            kind,
            members,
            addresses,
            school_address_stale,
            ex_partner: None,
        });
    }

    // Lone parents' ex-partners live elsewhere, each a household of his own.
    for (family_index, surname) in apart {
        let index = fams.len();
        let anchor = persons[fams[family_index].members[0]].dob;
        let dob = dob_years_before(rng, anchor, -1, 8);
        let nhs = ids.nhs(rng);
        let person_index = persons.len();
        persons.push(Person {
            id: person_index as u32 + 1,
            family: index,
            forename: forenames.adult(rng, Sex::Male),
            surname,
            sex: Sex::Male,
            dob,
            role: Role::Adult,
            nhs,
            pupil: None,
        });
        let addr = book.new_address(rng, None);
        let settled = date_between(rng, as_of - Days::new(365 * 6), as_of - Days::new(400));
        fams.push(Family {
            id: index as u32 + 1,
            kind: Household::LivingApart,
            members: vec![person_index],
            addresses: vec![(addr, settled)],
            school_address_stale: false,
            ex_partner: None,
        });
        fams[family_index].ex_partner = Some(person_index);
    }

    Population {
        as_of,
        surnames,
        addresses: book.addresses,
        schools,
        families: fams,
        persons,
        school_days,
    }
}

/// A child's academic age: their age on 31 August at the start of the academic year
/// that begins in `year_start` (born 1 Sep (Y-a-1) to 31 Aug (Y-a) → a).
pub fn academic_age(dob: NaiveDate, year_start: i32) -> i32 {
    let y = if dob.month() >= 9 {
        dob.year() + 1
    } else {
        dob.year()
    };
    year_start - y
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn academic_ages_follow_the_31_august_cut_off() {
        // Academic year starting Sept 2024: born Sep 2019..Aug 2020 → Reception (4).
        let y = 2024;
        assert_eq!(academic_age(ymd(2019, 9, 1), y), 4);
        assert_eq!(academic_age(ymd(2020, 8, 31), y), 4);
        assert_eq!(academic_age(ymd(2019, 8, 31), y), 5);
        assert_eq!(academic_age(ymd(2013, 8, 31), y), 11);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for age in 0..16 {
            let dob = child_dob(&mut rng, age, y);
            assert_eq!(academic_age(dob, y), age);
        }
    }

    #[test]
    fn households_have_realistic_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let pop = build(&mut rng, 1000, ymd(2025, 3, 10));
        assert!(pop.families.len() > 1000, "ex-partners have households");
        let pupils = pop.persons.iter().filter(|p| p.pupil.is_some()).count();
        assert!(pupils > 1000 && pupils < 2500, "{pupils}");
        for f in &pop.families {
            assert!(!f.members.is_empty());
            let children = pop.children(f).count();
            let adults = pop.adults(f).count();
            match f.kind {
                Household::AdultsOnly | Household::LivingApart => assert_eq!(children, 0),
                Household::TwoParents => assert_eq!(adults, 2),
                Household::LoneParent => assert_eq!(adults, 1),
                Household::Grandparents => assert!(adults >= 1),
            }
            for &m in &f.members {
                assert_eq!(pop.persons[m].family + 1, f.id as usize);
            }
        }
        // Twins: two children of one family with the same date of birth.
        let twins = pop
            .families
            .iter()
            .filter(|f| {
                let dobs: Vec<_> = pop.children(f).map(|c| pop.persons[c].dob).collect();
                dobs.windows(2).any(|w| w[0] == w[1])
            })
            .count();
        assert!(twins > 0);
        // Namesakes: same forename and surname, close dates of birth, two families.
        let pupils: Vec<&Person> = pop.persons.iter().filter(|p| p.pupil.is_some()).collect();
        let namesakes = pupils
            .iter()
            .enumerate()
            .filter(|(i, a)| {
                pupils[i + 1..].iter().any(|b| {
                    a.family != b.family
                        && a.forename == b.forename
                        && a.surname == b.surname
                        && (a.dob - b.dob).num_days().abs() <= 30
                })
            })
            .count();
        assert!(namesakes >= 3, "{namesakes}");
        // Every pupil's school is of the right phase for their age.
        for p in &pop.persons {
            if let Some(pupil) = &p.pupil {
                let age = academic_age(p.dob, academic_year_start(pop.as_of));
                let phase = pop.schools[pupil.school].phase;
                assert_eq!(phase == Phase::Primary, age <= 10);
            }
        }
    }
}
