//! A synthetic borough at scale, straight into memory: `N` person mentions as linking
//! sees them ([`LinkMention`]) with the ground truth of every one ([`Truth`]), for
//! measuring identity resolution from 100k to millions of mentions in seconds.
//!
//! The mix is a borough's feeds: pupils in the school CSV and the MIS API (mostly
//! with valid UPNs), early-help case members, police domestic-abuse notifications
//! (victim, perpetrator, children present; one `group` per notification) and housing
//! tenants. Each agency gets names, dates and addresses wrong the way it does in
//! life, at the rates of [`NoiseRates`]; every corruption applied to a mention is
//! recorded in its truth's `noise` bits, so a benchmark can say which kinds a linker
//! misses.
//!
//! It reuses the demo's name tables, nickname table and typo helper, but not its
//! population (`population::build` scans every school per pupil and keeps every
//! identifier in ordered sets, which is fine for a demo of thousands of families and
//! too slow for a million). Households are generated and emitted one at a time, so
//! memory is the output only.
//!
//! Pure and deterministic: one seeded ChaCha8 stream, nothing iterated out of a hash
//! map, dates computed from `as_of`.

use chrono::{Datelike, Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use kinlink::demo::names::{self, Weighted};
use kinlink::demo::{
    SOURCE_ATTENDANCE, SOURCE_CASES, SOURCE_HOUSING, SOURCE_MIS_API, SOURCE_POLICE,
};
use kinlink::domain::ids::upn_check_letter;
use kinlink::domain::FeedKind;
use kinlink::link::LinkMention;

/// The truth of one mention (same index as the mention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    /// The real person (1-based).
    pub person: u64,
    /// The real household the person lives in (1-based).
    pub family: u64,
    /// The person's twin, if they have one.
    pub twin_of: Option<u64>,
    /// The corruptions applied to this mention ([`noise`] bits).
    pub noise: u16,
}

/// Where a person is named in a police notification: its id, the person's place in it
/// (1-based), their role and the incident date.
#[derive(Debug, Clone, Copy)]
struct Named<'a> {
    notification: &'a str,
    k: usize,
    role: &'static str,
    on: NaiveDate,
}

/// Bits of [`Truth::noise`]: what an agency got wrong in one mention.
pub mod noise {
    /// A one-letter keying error in the forename.
    pub const FORENAME_TYPO: u16 = 1;
    /// A one-letter keying error in the surname.
    pub const SURNAME_TYPO: u16 = 1 << 1;
    /// An informal forename (Beth for Elizabeth).
    pub const NICKNAME: u16 = 1 << 2;
    /// Day and month of the date of birth swapped.
    pub const DOB_SWAP: u16 = 1 << 3;
    /// One of day, month or year of birth wrong.
    pub const DOB_COMPONENT: u16 = 1 << 4;
    /// An adult's date of birth not recorded.
    pub const DOB_MISSING: u16 = 1 << 5;
    /// An adult woman under her other (maiden or married) surname.
    pub const SURNAME_CHANGE: u16 = 1 << 6;
    /// One character of the postcode wrong.
    pub const POSTCODE_TYPO: u16 = 1 << 7;
    /// The address line abbreviated (Road → Rd, Flat → Apartment).
    pub const ADDRESS_ABBREVIATION: u16 = 1 << 8;
    /// The household's previous address (they have moved since).
    pub const OLD_ADDRESS: u16 = 1 << 9;
    /// A UPN with a wrong check letter (not a match key).
    pub const UPN_INVALID: u16 = 1 << 10;
    /// A pupil's UPN left blank.
    pub const UPN_MISSING: u16 = 1 << 11;
    /// Every kind, with its name, for reports.
    pub const ALL: &[(u16, &str)] = &[
        (FORENAME_TYPO, "forename_typo"),
        (SURNAME_TYPO, "surname_typo"),
        (NICKNAME, "nickname"),
        (DOB_SWAP, "dob_swap"),
        (DOB_COMPONENT, "dob_component"),
        (DOB_MISSING, "dob_missing"),
        (SURNAME_CHANGE, "surname_change"),
        (POSTCODE_TYPO, "postcode_typo"),
        (ADDRESS_ABBREVIATION, "address_abbreviation"),
        (OLD_ADDRESS, "old_address"),
        (UPN_INVALID, "upn_invalid"),
        (UPN_MISSING, "upn_missing"),
    ];
}

/// How often each corruption happens. Name and date rates are those of the police
/// and housing feeds (keyed by officers from what people say); the case system makes
/// half as many, schools (legal names from the admission form) a quarter, and no
/// nicknames.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseRates {
    pub forename_typo: f64,
    pub surname_typo: f64,
    /// Of mentions whose true forename has a nickname in the table.
    pub nickname: f64,
    /// Of mentions whose day of birth is 12 or less and not the month.
    pub dob_swap: f64,
    pub dob_component: f64,
    /// Adults' dates of birth missing in police notifications.
    pub police_adult_dob_missing: f64,
    /// Tenants' dates of birth missing in housing notices.
    pub housing_dob_missing: f64,
    /// Adults' dates of birth missing in the case system.
    pub case_adult_dob_missing: f64,
    /// Of mentions of a woman whose surname changed (a quarter of mothers).
    pub surname_change: f64,
    pub postcode_typo: f64,
    /// Of mentions with an address line (police, housing, case system).
    pub address_abbreviation: f64,
    /// Households that moved in the last year.
    pub moved: f64,
    /// Of a mover's mentions in a school or the case system: the old address.
    pub stale_address: f64,
    /// Pupils whose UPN has a wrong check letter.
    pub upn_invalid: f64,
    /// Pupils whose UPN is blank.
    pub upn_missing: f64,
    /// A younger child born the same day as the previous one.
    pub twins: f64,
    /// A household whose eldest child has the name and date of birth of a child at
    /// another school.
    pub namesakes: f64,
}

impl Default for NoiseRates {
    fn default() -> Self {
        NoiseRates {
            forename_typo: 0.04,
            surname_typo: 0.03,
            nickname: 0.25,
            dob_swap: 0.03,
            dob_component: 0.02,
            police_adult_dob_missing: 0.35,
            housing_dob_missing: 0.5,
            case_adult_dob_missing: 0.1,
            surname_change: 0.3,
            postcode_typo: 0.02,
            address_abbreviation: 0.3,
            moved: 0.1,
            stale_address: 0.3,
            upn_invalid: 0.015,
            upn_missing: 0.025,
            twins: 0.035,
            namesakes: 0.01,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Exactly this many mentions.
    pub mentions: usize,
    pub seed: u64,
    /// "Today": ages and dates are computed from it.
    pub as_of: NaiveDate,
    pub rates: NoiseRates,
}

impl SynthOptions {
    /// `mentions` mentions with the default rates, seed 42, as of 10 March 2025.
    pub fn new(mentions: usize) -> SynthOptions {
        SynthOptions {
            mentions,
            seed: 42,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 10).unwrap_or(NaiveDate::MIN),
            rates: NoiseRates::default(),
        }
    }
}

/// Generates `opts.mentions` mentions (ids 1..=N, in generation order) and their
/// truth, index for index.
pub fn synth_mentions(opts: &SynthOptions) -> (Vec<LinkMention>, Vec<Truth>) {
    let mut g = Generator::new(opts);
    while g.mentions.len() < opts.mentions {
        g.household();
    }
    g.mentions.truncate(opts.mentions);
    g.truth.truncate(opts.mentions);
    (g.mentions, g.truth)
}

/// Mentions per household, on average, with the default mix (sizes the borough).
const MENTIONS_PER_HOUSEHOLD: usize = 2;

/// Postcode areas of the synthetic region, each with districts 1..=40.
const AREAS: &[&str] = &["M", "BL", "OL", "SK", "WN", "WA", "BB", "PR", "L", "CH"];
/// Letters allowed in the inward code of a postcode.
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
/// First syllables that turn the demo's two-part surnames into a long rare tail.
const RARE_PREFIXES: &[&str] = &[
    "Ab", "Bar", "Cal", "Dra", "Ec", "Fen", "Gar", "Hen", "Ing", "Kel", "Lud", "Mab", "Nor", "Ot",
    "Pem", "Quen", "Rath", "Sel", "Tre", "Ul", "Ven", "Wes",
];
const HEAD_SHARE: f64 = 0.25;
const MID_SHARE: f64 = 0.35;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sex {
    Female,
    Male,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    School,
    Api,
    Case,
    Police,
    Housing,
}

impl Src {
    fn name(self) -> &'static str {
        match self {
            Src::School => SOURCE_ATTENDANCE,
            Src::Api => SOURCE_MIS_API,
            Src::Case => SOURCE_CASES,
            Src::Police => SOURCE_POLICE,
            Src::Housing => SOURCE_HOUSING,
        }
    }

    fn kind(self) -> FeedKind {
        match self {
            Src::School | Src::Api => FeedKind::Attendance,
            Src::Case => FeedKind::Assessment,
            Src::Police => FeedKind::PoliceDa,
            Src::Housing => FeedKind::Housing,
        }
    }

    /// How careful this agency is with names and dates, relative to the police.
    fn care(self) -> f64 {
        match self {
            Src::School | Src::Api => 0.25,
            Src::Case => 0.5,
            Src::Police | Src::Housing => 1.0,
        }
    }
}

#[derive(Clone)]
struct Address {
    line1: String,
    postcode: String,
    uprn: Option<i64>,
    district: usize,
}

#[derive(Clone)]
struct School {
    urn: u32,
    api: bool,
}

#[derive(Clone)]
struct Member {
    id: u64,
    sex: Sex,
    forename: &'static str,
    surname: u32,
    /// A woman's other surname (maiden or married), used by some agencies.
    other_surname: Option<u32>,
    dob: NaiveDate,
    adult: bool,
    nhs: u64,
    upn: Option<String>,
    twin_of: Option<u64>,
    /// Index into `Generator::schools`.
    school: Option<usize>,
}

struct Household {
    id: u64,
    members: Vec<Member>,
    address: Address,
    /// The previous address and the day they moved, for movers.
    previous: Option<(Address, NaiveDate)>,
}

/// A child who can be someone's namesake: name, sex, date of birth, school.
#[derive(Clone, Copy)]
struct Namesake {
    forename: &'static str,
    surname: u32,
    sex: Sex,
    dob: NaiveDate,
    school: usize,
}

struct Generator<'a> {
    opts: &'a SynthOptions,
    rng: ChaCha8Rng,
    surnames: Vec<String>,
    surname_head: Weighted,
    head_len: usize,
    mid_len: usize,
    girls: Weighted,
    boys: Weighted,
    women: Weighted,
    men: Weighted,
    kinds: Weighted,
    child_counts: Weighted,
    repeats: Weighted,
    districts: usize,
    streets_per_district: usize,
    /// Next free house number per street.
    next_number: Vec<u32>,
    /// Per district: primaries then secondaries (indices into `schools`).
    district_schools: Vec<(Vec<usize>, Vec<usize>)>,
    schools: Vec<School>,
    next_person: u64,
    next_family: u64,
    next_uprn: i64,
    next_upn: u64,
    next_notification: u64,
    next_notice: u64,
    namesakes: Vec<Namesake>,
    mentions: Vec<LinkMention>,
    truth: Vec<Truth>,
}

impl<'a> Generator<'a> {
    fn new(opts: &'a SynthOptions) -> Generator<'a> {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        rng.set_stream(77);
        let demo = names::Surnames::new();
        let head_len = names::SURNAMES_HEAD.len();
        let mid_len = demo.names.len() - head_len;
        let mut surnames = demo.names.clone();
        for p in RARE_PREFIXES {
            for mid in &demo.names[head_len..] {
                surnames.push(format!("{p}{}", mid.to_lowercase()));
            }
        }
        let households = opts.mentions / MENTIONS_PER_HOUSEHOLD + 50;
        // About 10,000 households to a postcode district, 300 to a street.
        let districts = (households / 10_000).clamp(4, AREAS.len() * 40);
        let streets_per_district = (households / districts / 300).max(3);
        let mut schools = Vec::new();
        let mut district_schools = Vec::with_capacity(districts);
        for _ in 0..districts {
            let per = households / districts;
            let primaries = (per / 250).max(1);
            let secondaries = (per / 600).max(1);
            let mut p = Vec::new();
            let mut s = Vec::new();
            for k in 0..primaries + secondaries {
                let index = schools.len();
                schools.push(School {
                    urn: 100_000 + index as u32,
                    api: rng.random_bool(0.3),
                });
                if k < primaries {
                    p.push(index);
                } else {
                    s.push(index);
                }
            }
            district_schools.push((p, s));
        }
        Generator {
            opts,
            rng,
            surnames,
            surname_head: Weighted::zipf(head_len, 3.0, 1.0),
            head_len,
            mid_len,
            girls: Weighted::zipf(names::GIRLS.len(), 4.0, 1.0),
            boys: Weighted::zipf(names::BOYS.len(), 4.0, 1.0),
            women: Weighted::zipf(names::WOMEN.len(), 4.0, 1.0),
            men: Weighted::zipf(names::MEN.len(), 4.0, 1.0),
            kinds: Weighted::from_weights([45.0, 38.0, 5.0, 12.0]),
            child_counts: Weighted::from_weights([35.0, 38.0, 18.0, 9.0]),
            repeats: Weighted::from_weights([70.0, 20.0, 10.0]),
            districts,
            streets_per_district,
            next_number: vec![0; districts * streets_per_district],
            district_schools,
            schools,
            next_person: 1,
            next_family: 1,
            next_uprn: 100_010_000_000,
            next_upn: 0,
            next_notification: 1,
            next_notice: 1,
            namesakes: Vec::new(),
            mentions: Vec::with_capacity(opts.mentions + 64),
            truth: Vec::with_capacity(opts.mentions + 64),
        }
    }

    fn surname(&mut self) -> u32 {
        let x: f64 = self.rng.random();
        if x < HEAD_SHARE {
            self.surname_head.sample(&mut self.rng) as u32
        } else if x < HEAD_SHARE + MID_SHARE {
            (self.head_len + self.rng.random_range(0..self.mid_len)) as u32
        } else {
            let rare = self.surnames.len() - self.head_len - self.mid_len;
            (self.head_len + self.mid_len + self.rng.random_range(0..rare)) as u32
        }
    }

    fn forename(&mut self, sex: Sex, adult: bool) -> &'static str {
        match (sex, adult) {
            (Sex::Female, false) => names::GIRLS[self.girls.sample(&mut self.rng)],
            (Sex::Male, false) => names::BOYS[self.boys.sample(&mut self.rng)],
            (Sex::Female, true) => names::WOMEN[self.women.sample(&mut self.rng)],
            (Sex::Male, true) => names::MEN[self.men.sample(&mut self.rng)],
        }
    }

    fn sex(&mut self) -> Sex {
        if self.rng.random_bool(0.5) {
            Sex::Female
        } else {
            Sex::Male
        }
    }

    /// A date of birth between `min_years` and `max_years` before `anchor`.
    fn dob(&mut self, anchor: NaiveDate, min_years: i64, max_years: i64) -> NaiveDate {
        let days = self
            .rng
            .random_range(min_years * 365..=max_years * 365 + 364)
            .max(0);
        anchor - Days::new(days as u64)
    }

    /// A valid NHS number, unique per person (an even body from the person id, or the
    /// odd one after it when the even one has no check digit).
    fn nhs(id: u64) -> u64 {
        let check = |body: u64| {
            let sum: u64 = body
                .to_string()
                .bytes()
                .enumerate()
                .map(|(i, b)| u64::from(b - b'0') * (10 - i as u64))
                .sum();
            match 11 - sum % 11 {
                11 => Some(0),
                10 => None,
                c => Some(c),
            }
        };
        let body = 400_000_000 + (id * 2) % 300_000_000;
        match check(body) {
            Some(c) => body * 10 + c,
            None => (body + 1) * 10 + check(body + 1).unwrap_or(0),
        }
    }

    /// A valid, never-issued UPN.
    fn upn(&mut self, yy: u32) -> String {
        loop {
            let c = self.next_upn;
            self.next_upn += 1;
            let estab = 2000 + (c / 1000) % 8000;
            let body = format!("355{estab:04}{yy:02}{:03}", c % 1000);
            if let Some(check) = upn_check_letter(&body) {
                return format!("{check}{body}");
            }
        }
    }

    /// A new dwelling in `district` (or anywhere).
    fn address(&mut self, district: Option<usize>) -> Address {
        let district = district.unwrap_or_else(|| self.rng.random_range(0..self.districts));
        let k = self.rng.random_range(0..self.streets_per_district);
        let street = district * self.streets_per_district + k;
        // Street names, courts and postcode units follow from the street's index, so
        // they need no table: a cheap hash keeps them stable.
        let h = mix(street as u64 ^ self.opts.seed.rotate_left(17));
        let base = names::STREETS[(h % names::STREETS.len() as u64) as usize];
        let court = (h >> 20) % 100 < 8;
        let step = self.rng.random_range(1..=3);
        let number = {
            let n = &mut self.next_number[street];
            *n += step;
            *n
        };
        let line1 = if court {
            format!("Flat {number}, {base} Court")
        } else {
            let own = street_suffix(h >> 8);
            if self.rng.random_bool(0.05) {
                format!(
                    "Flat {}, {number} {base} {own}",
                    self.rng.random_range(1..=4)
                )
            } else {
                format!("{number} {base} {own}")
            }
        };
        let area = AREAS[district / 40 % AREAS.len()];
        let unit = mix(h ^ u64::from(number / 20));
        let sector = 1 + (h >> 32) % 9;
        let a = INWARD_LETTERS[(unit % INWARD_LETTERS.len() as u64) as usize] as char;
        let b = INWARD_LETTERS[((unit >> 16) % INWARD_LETTERS.len() as u64) as usize] as char;
        let postcode = format!("{area}{} {sector}{a}{b}", district % 40 + 1);
        let uprn = self.rng.random_bool(0.92).then(|| {
            self.next_uprn += 1;
            self.next_uprn
        });
        Address {
            line1,
            postcode,
            uprn,
            district,
        }
    }

    fn person(
        &mut self,
        sex: Sex,
        forename: &'static str,
        surname: u32,
        dob: NaiveDate,
        adult: bool,
    ) -> Member {
        let id = self.next_person;
        self.next_person += 1;
        Member {
            id,
            sex,
            forename,
            surname,
            other_surname: None,
            dob,
            adult,
            nhs: Self::nhs(id),
            upn: None,
            twin_of: None,
            school: None,
        }
    }

    /// Builds one household and writes every mention the borough's feeds hold of it.
    fn household(&mut self) {
        let as_of = self.opts.as_of;
        let rates = self.opts.rates.clone();
        let family = self.next_family;
        self.next_family += 1;
        let kind = self.kinds.sample(&mut self.rng);
        let surname = self.surname();
        let address = self.address(None);
        let previous = self.rng.random_bool(rates.moved).then(|| {
            let moved_on = as_of - Days::new(self.rng.random_range(7..330));
            let district = self.rng.random_bool(0.6).then_some(address.district);
            (self.address(district), moved_on)
        });

        // Children, eldest first; twins share a date of birth and a surname.
        let mut children: Vec<Member> = Vec::new();
        if kind != 3 {
            let n = 1 + self.child_counts.sample(&mut self.rng);
            let mut dob = self.dob(as_of, 4, 15);
            for c in 0..n {
                let twin = c > 0
                    && children.last().is_some_and(|p| p.twin_of.is_none())
                    && self.rng.random_bool(rates.twins);
                if c > 0 && !twin {
                    dob = dob + Days::new(self.rng.random_range(300..1500));
                    if dob > as_of {
                        break;
                    }
                }
                let sex = self.sex();
                let mut forename = self.forename(sex, false);
                for _ in 0..8 {
                    if !children.iter().any(|s| s.forename == forename) {
                        break;
                    }
                    forename = self.forename(sex, false);
                }
                let mut child = self.person(sex, forename, surname, dob, false);
                if twin {
                    if let Some(prev) = children.last_mut() {
                        prev.twin_of = Some(child.id);
                        child.twin_of = Some(prev.id);
                    }
                }
                children.push(child);
            }
        }
        // Schools for pupils (4 to 15 on 31 August), in the home district.
        let district = address.district;
        for child in &mut children {
            let age = academic_age(child.dob, as_of);
            if !(4..=15).contains(&age) {
                continue;
            }
            let (p, s) = &self.district_schools[district];
            let pool = if age <= 10 { p } else { s };
            child.school = Some(pool[self.rng.random_range(0..pool.len())]);
            let yy = (child.dob.year() + 5).rem_euclid(100) as u32;
            child.upn = Some(self.upn(yy));
        }
        // A namesake: the eldest pupil takes the name and date of birth of a child
        // at another school.
        if !self.namesakes.is_empty() && self.rng.random_bool(rates.namesakes) {
            let other = self.namesakes[self.rng.random_range(0..self.namesakes.len())];
            if let Some(first) = children.first_mut().filter(|c| c.school.is_some()) {
                if first.twin_of.is_none() {
                    first.forename = other.forename;
                    first.surname = other.surname;
                    first.sex = other.sex;
                    first.dob = other.dob;
                    if first.school == Some(other.school) {
                        first.school = Some((other.school + 1) % self.schools.len());
                    }
                }
            }
        }
        if let Some(c) = children.first() {
            if let Some(school) = c.school {
                let n = Namesake {
                    forename: c.forename,
                    surname: c.surname,
                    sex: c.sex,
                    dob: c.dob,
                    school,
                };
                if self.namesakes.len() < 4096 {
                    self.namesakes.push(n);
                } else {
                    let i = self.rng.random_range(0..4096);
                    self.namesakes[i] = n;
                }
            }
        }

        // Adults.
        let anchor = children.first().map(|c| c.dob).unwrap_or(as_of);
        let mut adults: Vec<Member> = Vec::new();
        match kind {
            0 => {
                let mdob = self.dob(anchor, 18, 40);
                let fdob = self.dob(mdob, 0, 6);
                let f = self.forename(Sex::Female, true);
                let mut mother = self.person(Sex::Female, f, surname, mdob, true);
                if self.rng.random_bool(0.25) {
                    mother.other_surname = Some(self.surname());
                }
                let m = self.forename(Sex::Male, true);
                let father = self.person(Sex::Male, m, surname, fdob, true);
                adults.push(mother);
                adults.push(father);
            }
            1 => {
                let sex = if self.rng.random_bool(0.9) {
                    Sex::Female
                } else {
                    Sex::Male
                };
                let own = if self.rng.random_bool(0.3) {
                    self.surname()
                } else {
                    surname
                };
                let dob = self.dob(anchor, 18, 40);
                let f = self.forename(sex, true);
                let mut parent = self.person(sex, f, own, dob, true);
                if sex == Sex::Female && own == surname && self.rng.random_bool(0.25) {
                    parent.other_surname = Some(self.surname());
                }
                adults.push(parent);
            }
            2 => {
                let dob = self.dob(anchor, 40, 60);
                let f = self.forename(Sex::Female, true);
                adults.push(self.person(Sex::Female, f, surname, dob, true));
            }
            _ => {
                let n = if self.rng.random_bool(0.6) { 1 } else { 2 };
                for _ in 0..n {
                    let sex = self.sex();
                    let dob = self.dob(as_of, 19, 80);
                    let f = self.forename(sex, true);
                    adults.push(self.person(sex, f, surname, dob, true));
                }
            }
        }

        let mut members = adults;
        members.extend(children);
        let home = Household {
            id: family,
            members,
            address,
            previous,
        };
        self.emit(&home, &rates, kind == 1);
    }

    /// Writes the mentions of one household across the feeds.
    fn emit(&mut self, home: &Household, rates: &NoiseRates, lone_parent: bool) {
        let as_of = self.opts.as_of;
        // Schools: every pupil in their school's feed; some (who changed school)
        // also in the other feed with their previous school.
        for m in home.members.iter().filter(|m| m.school.is_some()) {
            let school = m.school.unwrap_or(0);
            let src = if self.schools[school].api {
                Src::Api
            } else {
                Src::School
            };
            let stale = home.previous.is_some() && self.rng.random_bool(rates.stale_address);
            self.pupil(home, m, src, school, stale, rates);
            if self.rng.random_bool(0.06) {
                let other_src = if src == Src::Api {
                    Src::School
                } else {
                    Src::Api
                };
                let other = self.rng.random_range(0..self.schools.len());
                self.pupil(home, m, other_src, other, home.previous.is_some(), rates);
            }
        }
        let has_children = home.members.iter().any(|m| !m.adult);
        // The early-help case system: every member of a family with a case.
        let case_rate = if has_children { 0.12 } else { 0.01 };
        if self.rng.random_bool(case_rate) {
            let stale = home.previous.is_some() && self.rng.random_bool(rates.stale_address);
            for m in &home.members {
                self.case_member(home, m, stale, rates);
            }
        }
        // Police domestic-abuse notifications, some repeated.
        let adults: Vec<&Member> = home.members.iter().filter(|m| m.adult).collect();
        let police_rate = if has_children { 0.07 } else { 0.02 };
        if !adults.is_empty() && self.rng.random_bool(police_rate) {
            let notifications = 1 + self.repeats.sample(&mut self.rng);
            // A lone parent's abuser is often an ex-partner who lives elsewhere: a
            // person (and household) of his own.
            let ex = if lone_parent && self.rng.random_bool(0.6) {
                let dob = self.dob(adults[0].dob, -2, 8);
                let f = self.forename(Sex::Male, true);
                let s = self.surname();
                let family = self.next_family;
                self.next_family += 1;
                let own = self.address(None);
                Some((self.person(Sex::Male, f, s, dob, true), family, own))
            } else {
                None
            };
            for _ in 0..notifications {
                let id = format!("DA{:08}", self.next_notification);
                self.next_notification += 1;
                let on = as_of - Days::new(self.rng.random_range(1..365));
                let victim = adults
                    .iter()
                    .find(|m| m.sex == Sex::Female)
                    .unwrap_or(&adults[0]);
                let mut k = 1;
                self.police_person(
                    home,
                    home.id,
                    victim,
                    Named {
                        notification: &id,
                        k,
                        role: "victim",
                        on,
                    },
                    rates,
                );
                k += 1;
                if let Some((p, family, _)) = &ex {
                    self.police_person(
                        home,
                        *family,
                        p,
                        Named {
                            notification: &id,
                            k,
                            role: "perpetrator",
                            on,
                        },
                        rates,
                    );
                    k += 1;
                } else if let Some(p) = adults.iter().find(|m| m.id != victim.id) {
                    self.police_person(
                        home,
                        home.id,
                        p,
                        Named {
                            notification: &id,
                            k,
                            role: "perpetrator",
                            on,
                        },
                        rates,
                    );
                    k += 1;
                }
                for c in home.members.iter().filter(|m| !m.adult) {
                    if self.rng.random_bool(0.8) {
                        self.police_person(
                            home,
                            home.id,
                            c,
                            Named {
                                notification: &id,
                                k,
                                role: "child",
                                on,
                            },
                            rates,
                        );
                        k += 1;
                    }
                }
            }
            // The ex-partner is sometimes a tenant facing eviction at his own home.
            if let Some((p, family, own)) = ex {
                if self.rng.random_bool(0.1) {
                    let lone = Household {
                        id: family,
                        members: vec![p.clone()],
                        address: own,
                        previous: None,
                    };
                    self.tenant(&lone, &p, rates);
                }
            }
        }
        // Housing notices served on a tenant, sometimes twice.
        let housing_rate = if has_children { 0.04 } else { 0.02 };
        if !adults.is_empty() && self.rng.random_bool(housing_rate) {
            let notices = if self.rng.random_bool(0.2) { 2 } else { 1 };
            for _ in 0..notices {
                self.tenant(home, adults[0], rates);
            }
        }
    }

    fn pupil(
        &mut self,
        home: &Household,
        m: &Member,
        src: Src,
        school: usize,
        stale: bool,
        rates: &NoiseRates,
    ) {
        let mut bits = 0u16;
        let (forename, surname, dob) = self.corrupt_person(m, src, rates, &mut bits);
        let (addr, seen_on) = self.address_for(home, stale, &mut bits);
        let postcode = self.corrupt_postcode(&addr.postcode, src, rates, &mut bits);
        let roll: f64 = self.rng.random();
        let written = if roll < rates.upn_invalid {
            bits |= noise::UPN_INVALID;
            m.upn.as_deref().map(spoil_upn)
        } else if roll < rates.upn_invalid + rates.upn_missing {
            bits |= noise::UPN_MISSING;
            None
        } else {
            m.upn.clone()
        };
        let urn = self.schools[school].urn;
        let mention_key = match &written {
            Some(u) => u.clone(),
            None => format!(
                "{urn}/{}/{}/{}",
                surname.as_deref().unwrap_or("").to_uppercase(),
                forename.as_deref().unwrap_or("").to_uppercase(),
                dob.map(|d| d.to_string()).unwrap_or_default()
            ),
        };
        let valid = (bits & noise::UPN_INVALID == 0)
            .then_some(written)
            .flatten();
        let mention = LinkMention {
            id: 0,
            source: src.name().to_string(),
            kind: src.kind(),
            mention_key,
            role: "pupil".to_string(),
            forename,
            surname,
            dob,
            gender: Some(sex_code(m.sex).to_string()),
            address_line1: None,
            postcode: Some(postcode),
            uprn: None,
            upn: valid,
            nhs_number: None,
            school_urn: Some(urn),
            group: None,
            seen_on: Some(seen_on),
            identity_conflict: false,
        };
        self.push(mention, home.id, m, bits);
    }

    fn case_member(&mut self, home: &Household, m: &Member, stale: bool, rates: &NoiseRates) {
        let mut bits = 0u16;
        let (forename, surname, mut dob) = self.corrupt_person(m, Src::Case, rates, &mut bits);
        if m.adult && self.rng.random_bool(rates.case_adult_dob_missing) {
            dob = None;
            bits = (bits & !(noise::DOB_SWAP | noise::DOB_COMPONENT)) | noise::DOB_MISSING;
        }
        let (addr, seen_on) = self.address_for(home, stale, &mut bits);
        let line1 = self.corrupt_line(&addr.line1, Src::Case, rates, &mut bits);
        let postcode = self.corrupt_postcode(&addr.postcode, Src::Case, rates, &mut bits);
        let (upn, nhs) = if m.adult {
            (None, None)
        } else {
            (
                m.upn.clone().filter(|_| self.rng.random_bool(0.5)),
                self.rng.random_bool(0.4).then(|| m.nhs.to_string()),
            )
        };
        let role = if m.adult { "parent" } else { "child" };
        let mention = LinkMention {
            id: 0,
            source: SOURCE_CASES.to_string(),
            kind: FeedKind::Assessment,
            mention_key: format!("CP{:09}", m.id),
            role: role.to_string(),
            forename,
            surname,
            dob,
            gender: Some(sex_code(m.sex).to_string()),
            address_line1: Some(line1),
            postcode: Some(postcode),
            uprn: addr.uprn.filter(|_| self.rng.random_bool(0.5)),
            upn,
            nhs_number: nhs,
            school_urn: None,
            group: None,
            seen_on: Some(seen_on),
            identity_conflict: false,
        };
        self.push(mention, home.id, m, bits);
    }

    fn police_person(
        &mut self,
        home: &Household,
        family: u64,
        m: &Member,
        at: Named<'_>,
        rates: &NoiseRates,
    ) {
        let Named {
            notification,
            k,
            role,
            on,
        } = at;
        let mut bits = 0u16;
        let (forename, surname, mut dob) = self.corrupt_person(m, Src::Police, rates, &mut bits);
        let missing = if m.adult {
            rates.police_adult_dob_missing
        } else {
            0.05
        };
        if self.rng.random_bool(missing) {
            dob = None;
            bits = (bits & !(noise::DOB_SWAP | noise::DOB_COMPONENT)) | noise::DOB_MISSING;
        }
        // The incident address: the household's home at the time.
        let addr = match &home.previous {
            Some((old, moved_on)) if on < *moved_on => {
                bits |= noise::OLD_ADDRESS;
                old.clone()
            }
            _ => home.address.clone(),
        };
        let line1 = self.corrupt_line(&addr.line1, Src::Police, rates, &mut bits);
        let postcode = self.corrupt_postcode(&addr.postcode, Src::Police, rates, &mut bits);
        // Officers often type names in capitals.
        let upper = self.rng.random_bool(0.3);
        let shout = |s: Option<String>| s.map(|s| if upper { s.to_uppercase() } else { s });
        let school_urn = m
            .school
            .filter(|_| self.rng.random_bool(0.3))
            .map(|s| self.schools[s].urn);
        let gender = self
            .rng
            .random_bool(0.9)
            .then(|| sex_code(m.sex).to_string());
        let mention = LinkMention {
            id: 0,
            source: SOURCE_POLICE.to_string(),
            kind: FeedKind::PoliceDa,
            mention_key: format!("{notification}/{k}"),
            role: role.to_string(),
            forename: shout(forename),
            surname: shout(surname),
            dob,
            gender,
            address_line1: Some(line1),
            postcode: Some(postcode),
            uprn: addr.uprn.filter(|_| self.rng.random_bool(0.3)),
            upn: None,
            nhs_number: None,
            school_urn,
            group: Some(notification.to_string()),
            seen_on: Some(on),
            identity_conflict: false,
        };
        self.push(mention, family, m, bits);
    }

    fn tenant(&mut self, home: &Household, m: &Member, rates: &NoiseRates) {
        let mut bits = 0u16;
        let (forename, surname, mut dob) = self.corrupt_person(m, Src::Housing, rates, &mut bits);
        if self.rng.random_bool(rates.housing_dob_missing) {
            dob = None;
            bits = (bits & !(noise::DOB_SWAP | noise::DOB_COMPONENT)) | noise::DOB_MISSING;
        }
        let line1 = self.corrupt_line(&home.address.line1, Src::Housing, rates, &mut bits);
        let postcode =
            self.corrupt_postcode(&home.address.postcode, Src::Housing, rates, &mut bits);
        let served = self.opts.as_of - Days::new(self.rng.random_range(1..120));
        let mention = LinkMention {
            id: 0,
            source: SOURCE_HOUSING.to_string(),
            kind: FeedKind::Housing,
            mention_key: format!("HN{:08}", self.next_notice),
            role: "tenant".to_string(),
            forename,
            surname,
            dob,
            gender: None,
            address_line1: Some(line1),
            postcode: Some(postcode),
            uprn: home.address.uprn.filter(|_| self.rng.random_bool(0.8)),
            upn: None,
            nhs_number: None,
            school_urn: None,
            group: None,
            seen_on: Some(served),
            identity_conflict: false,
        };
        self.next_notice += 1;
        self.push(mention, home.id, m, bits);
    }

    fn push(&mut self, mut mention: LinkMention, family: u64, m: &Member, bits: u16) {
        mention.id = self.mentions.len() as i64 + 1;
        self.mentions.push(mention);
        self.truth.push(Truth {
            person: m.id,
            family,
            twin_of: m.twin_of,
            noise: bits,
        });
    }

    /// The address a record holds: the old one for a stale record of a mover.
    fn address_for(
        &mut self,
        home: &Household,
        stale: bool,
        bits: &mut u16,
    ) -> (Address, NaiveDate) {
        let as_of = self.opts.as_of;
        match (&home.previous, stale) {
            (Some((old, moved_on)), true) => {
                *bits |= noise::OLD_ADDRESS;
                let back = self.rng.random_range(1..30);
                (old.clone(), *moved_on - Days::new(back))
            }
            _ => (
                home.address.clone(),
                as_of - Days::new(self.rng.random_range(1..6)),
            ),
        }
    }

    /// Forename, surname and date of birth as `src` writes them.
    fn corrupt_person(
        &mut self,
        m: &Member,
        src: Src,
        rates: &NoiseRates,
        bits: &mut u16,
    ) -> (Option<String>, Option<String>, Option<NaiveDate>) {
        let care = src.care();
        let agency = !matches!(src, Src::School | Src::Api);
        let mut forename = m.forename.to_string();
        let nick = agency
            .then(|| names::nickname(m.forename, &mut self.rng))
            .flatten();
        match nick {
            Some(n) if self.rng.random_bool(rates.nickname) => {
                forename = n.to_string();
                *bits |= noise::NICKNAME;
            }
            _ => {
                if self.rng.random_bool(rates.forename_typo * care) {
                    forename = names::typo(&forename, &mut self.rng);
                    *bits |= noise::FORENAME_TYPO;
                }
            }
        }
        let mut surname_index = m.surname;
        if let Some(other) = m.other_surname {
            if agency && self.rng.random_bool(rates.surname_change) {
                surname_index = other;
                *bits |= noise::SURNAME_CHANGE;
            }
        }
        let mut surname = self.surnames[surname_index as usize].clone();
        if self.rng.random_bool(rates.surname_typo * care) {
            surname = names::typo(&surname, &mut self.rng);
            *bits |= noise::SURNAME_TYPO;
        }
        let mut dob = m.dob;
        let swappable = dob.day() <= 12 && dob.day() != dob.month();
        if swappable && self.rng.random_bool(rates.dob_swap * care) {
            if let Some(d) = NaiveDate::from_ymd_opt(dob.year(), dob.day(), dob.month()) {
                dob = d;
                *bits |= noise::DOB_SWAP;
            }
        } else if self.rng.random_bool(rates.dob_component * care) {
            let changed = match self.rng.random_range(0..3) {
                0 => {
                    let day = if dob.day() >= 28 {
                        dob.day() - self.rng.random_range(1..=9)
                    } else {
                        dob.day() + self.rng.random_range(1..=9).min(28 - dob.day())
                    };
                    dob.with_day(day.max(1))
                }
                1 => {
                    let month = 1 + (dob.month() - 1 + self.rng.random_range(1..=11)) % 12;
                    dob.with_day(dob.day().min(28))
                        .and_then(|d| d.with_month(month))
                }
                _ => {
                    let year = dob.year() + if self.rng.random_bool(0.5) { 1 } else { -1 };
                    dob.with_day(dob.day().min(28))
                        .and_then(|d| d.with_year(year))
                }
            };
            if let Some(d) = changed.filter(|d| *d != m.dob) {
                dob = d;
                *bits |= noise::DOB_COMPONENT;
            }
        }
        (Some(forename), Some(surname), Some(dob))
    }

    fn corrupt_postcode(
        &mut self,
        pc: &str,
        src: Src,
        rates: &NoiseRates,
        bits: &mut u16,
    ) -> String {
        if !self
            .rng
            .random_bool(rates.postcode_typo * src.care().max(0.5))
        {
            return pc.to_string();
        }
        *bits |= noise::POSTCODE_TYPO;
        // One inward letter replaced by another: still a well-formed postcode.
        let mut b: Vec<u8> = pc.as_bytes().to_vec();
        let i = b.len() - 1 - self.rng.random_range(0..2usize);
        let old = b[i];
        let mut new = old;
        while new == old {
            new = INWARD_LETTERS[self.rng.random_range(0..INWARD_LETTERS.len())];
        }
        b[i] = new;
        String::from_utf8(b).unwrap_or_else(|_| pc.to_string())
    }

    fn corrupt_line(&mut self, line: &str, src: Src, rates: &NoiseRates, bits: &mut u16) -> String {
        let rate = if src == Src::Case {
            rates.address_abbreviation / 2.0
        } else {
            rates.address_abbreviation
        };
        if !self.rng.random_bool(rate) {
            return line.to_string();
        }
        let mut out = line.to_string();
        for (long, short) in names::SUFFIX_ABBREVIATIONS {
            if let Some(stem) = out.strip_suffix(long) {
                out = format!("{stem}{short}");
                break;
            }
        }
        if let Some(rest) = out.strip_prefix("Flat ") {
            out = format!("Apartment {rest}");
        }
        if out == line {
            // Nothing to abbreviate ("Rowan Court"): officers drop the comma instead.
            out = line.replace(',', "");
        }
        if out != line {
            *bits |= noise::ADDRESS_ABBREVIATION;
        }
        out
    }
}

/// A child's age on 31 August at the start of the academic year containing `as_of`.
fn academic_age(dob: NaiveDate, as_of: NaiveDate) -> i32 {
    let year_start = if as_of.month() >= 9 {
        as_of.year()
    } else {
        as_of.year() - 1
    };
    let y = if dob.month() >= 9 {
        dob.year() + 1
    } else {
        dob.year()
    };
    year_start - y
}

fn sex_code(s: Sex) -> &'static str {
    match s {
        Sex::Female => "F",
        Sex::Male => "M",
    }
}

/// The UPN with its check letter moved on by one (so never right).
fn spoil_upn(upn: &str) -> String {
    const ALPHABET: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";
    let first = upn.as_bytes().first().copied().unwrap_or(b'A');
    let i = ALPHABET.iter().position(|&c| c == first).unwrap_or(0);
    let letter = ALPHABET[(i + 1) % ALPHABET.len()] as char;
    format!("{letter}{}", upn.get(1..).unwrap_or(""))
}

/// A street suffix by the demo's weights, chosen by a hash.
fn street_suffix(h: u64) -> &'static str {
    let total: u32 = names::STREET_SUFFIXES.iter().map(|s| s.1).sum();
    let mut x = (h % u64::from(total.max(1))) as u32;
    for &(suffix, w) in names::STREET_SUFFIXES {
        if x < w {
            return suffix;
        }
        x -= w;
    }
    "Road"
}

/// SplitMix64: a cheap, stable hash for street attributes.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn sample(n: usize, seed: u64) -> (Vec<LinkMention>, Vec<Truth>) {
        let mut opts = SynthOptions::new(n);
        opts.seed = seed;
        synth_mentions(&opts)
    }

    fn share(hit: usize, of: usize) -> f64 {
        hit as f64 / of.max(1) as f64
    }

    #[test]
    fn the_same_seed_gives_the_same_mentions() {
        let (a, ta) = sample(5_000, 7);
        let (b, tb) = sample(5_000, 7);
        let (c, _) = sample(5_000, 8);
        assert_eq!(a.len(), 5_000);
        assert_eq!(ta.len(), 5_000);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_ne!(a, c);
        assert!(a.iter().enumerate().all(|(i, m)| m.id == i as i64 + 1));
    }

    #[test]
    fn the_mix_is_a_boroughs_feeds() {
        let (ms, truth) = sample(60_000, 1);
        let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &ms {
            *by_source.entry(m.source.as_str()).or_default() += 1;
        }
        let schools = by_source[SOURCE_ATTENDANCE] + by_source[SOURCE_MIS_API];
        assert!(share(schools, ms.len()) > 0.5, "{by_source:?}");
        for s in [SOURCE_CASES, SOURCE_POLICE, SOURCE_HOUSING] {
            assert!(by_source[s] > 300, "{by_source:?}");
        }
        // Mention keys are unique within a source, as in the store.
        let keys: BTreeSet<(&str, &str)> = ms
            .iter()
            .map(|m| (m.source.as_str(), m.mention_key.as_str()))
            .collect();
        assert_eq!(keys.len(), ms.len());
        // Pupils mostly have a valid UPN; no adult has one.
        let pupils: Vec<&LinkMention> = ms.iter().filter(|m| m.role == "pupil").collect();
        let with_upn = pupils.iter().filter(|m| m.upn.is_some()).count();
        assert!(share(with_upn, pupils.len()) > 0.95);
        assert!(ms
            .iter()
            .filter(|m| m.upn.is_some())
            .all(
                |m| kinlink::domain::Upn::parse(m.upn.as_deref().unwrap_or(""))
                    .is_some_and(|u| u.is_valid())
            ));
        assert!(ms
            .iter()
            .filter_map(|m| m.nhs_number.as_deref())
            .all(|n| kinlink::domain::NhsNumber::parse(n).is_some_and(|n| n.is_valid())));
        // A valid UPN or NHS number never names two people.
        let mut owner: BTreeMap<&str, u64> = BTreeMap::new();
        for (m, t) in ms.iter().zip(&truth) {
            for key in [m.upn.as_deref(), m.nhs_number.as_deref()]
                .into_iter()
                .flatten()
            {
                assert_eq!(*owner.entry(key).or_insert(t.person), t.person, "{key}");
            }
        }
        // People in one police notification are different people; some
        // notifications name someone of another household (an ex-partner).
        let mut groups: BTreeMap<&str, Vec<&Truth>> = BTreeMap::new();
        for (m, t) in ms.iter().zip(&truth) {
            assert_eq!(m.group.is_some(), m.source == SOURCE_POLICE);
            if let Some(g) = &m.group {
                groups.entry(g.as_str()).or_default().push(t);
            }
        }
        for members in groups.values() {
            let persons: BTreeSet<u64> = members.iter().map(|t| t.person).collect();
            assert_eq!(persons.len(), members.len());
        }
        assert!(groups
            .values()
            .any(|g| g.iter().any(|t| t.family != g[0].family)));
        // The point of linking: many people appear in more than one source.
        let mut sources: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
        for (m, t) in ms.iter().zip(&truth) {
            sources
                .entry(t.person)
                .or_default()
                .insert(m.source.as_str());
        }
        assert!(sources.values().filter(|s| s.len() > 1).count() > 1_000);
        // Very common names: Smith heads the surnames; several households share a
        // postcode.
        let mut surnames: BTreeMap<&str, usize> = BTreeMap::new();
        let mut postcode_families: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        for (m, t) in ms.iter().zip(&truth) {
            *surnames
                .entry(m.surname.as_deref().unwrap_or(""))
                .or_default() += 1;
            if let Some(pc) = &m.postcode {
                postcode_families.entry(pc).or_default().insert(t.family);
            }
        }
        let top = surnames.iter().max_by_key(|(_, n)| **n).map(|(s, _)| *s);
        assert_eq!(top, Some("Smith"));
        assert!(share(surnames["Smith"], ms.len()) < 0.05);
        assert!(postcode_families.values().filter(|f| f.len() >= 3).count() > 100);
    }

    #[test]
    fn every_corruption_happens_at_about_its_rate() {
        let rates = NoiseRates::default();
        let (ms, truth) = sample(200_000, 3);
        let count = |pred: &dyn Fn(&LinkMention, &Truth) -> bool, bit: u16| {
            let of: Vec<&Truth> = ms
                .iter()
                .zip(&truth)
                .filter(|(m, t)| pred(m, t))
                .map(|(_, t)| t)
                .collect();
            (of.iter().filter(|t| t.noise & bit != 0).count(), of.len())
        };
        let police = |m: &LinkMention, _: &Truth| m.source == SOURCE_POLICE;
        let police_adult = |m: &LinkMention, _: &Truth| {
            m.source == SOURCE_POLICE && (m.role == "victim" || m.role == "perpetrator")
        };
        let pupil = |m: &LinkMention, _: &Truth| m.role == "pupil";
        let near = |(hit, of): (usize, usize), rate: f64, what: &str| {
            let got = share(hit, of);
            assert!(
                of > 1_000 && got > rate * 0.7 && got < rate * 1.3,
                "{what}: {hit} of {of} = {got:.4}, expected about {rate}"
            );
        };
        near(
            count(&police_adult, noise::DOB_MISSING),
            rates.police_adult_dob_missing,
            "police adult dob missing",
        );
        near(
            count(&police, noise::POSTCODE_TYPO),
            rates.postcode_typo,
            "postcode typo",
        );
        near(
            count(&police, noise::SURNAME_TYPO),
            rates.surname_typo,
            "surname typo",
        );
        near(
            count(&police, noise::ADDRESS_ABBREVIATION),
            rates.address_abbreviation,
            "address abbreviation",
        );
        near(
            count(&pupil, noise::UPN_INVALID),
            rates.upn_invalid,
            "upn invalid",
        );
        near(
            count(&pupil, noise::UPN_MISSING),
            rates.upn_missing,
            "upn missing",
        );
        // Forename typos are drawn only when no nickname was used.
        let no_nick = |m: &LinkMention, t: &Truth| police(m, t) && t.noise & noise::NICKNAME == 0;
        near(
            count(&no_nick, noise::FORENAME_TYPO),
            rates.forename_typo,
            "forename typo",
        );
        // Date errors among police mentions with a date: the swap needs a day of 12
        // or less (about 35% of dates), the one-part error needs no swap.
        let dated = |m: &LinkMention, t: &Truth| police(m, t) && m.dob.is_some();
        let (swaps, of) = count(&dated, noise::DOB_SWAP);
        near((swaps, of), rates.dob_swap * 0.355, "dob swap");
        near(
            count(&dated, noise::DOB_COMPONENT),
            rates.dob_component,
            "dob component",
        );
        // Every kind is present somewhere.
        for &(bit, name) in noise::ALL {
            assert!(
                truth.iter().any(|t| t.noise & bit != 0),
                "{name} never happens"
            );
        }
    }

    #[test]
    fn corruptions_are_what_their_bits_say() {
        let (ms, truth) = sample(100_000, 4);
        // The clean forename and date of birth of each person, from mentions with no
        // name or date errors.
        let name_bits = noise::FORENAME_TYPO | noise::NICKNAME;
        let dob_bits = noise::DOB_SWAP | noise::DOB_COMPONENT | noise::DOB_MISSING;
        let mut forename: BTreeMap<u64, String> = BTreeMap::new();
        let mut dob: BTreeMap<u64, NaiveDate> = BTreeMap::new();
        for (m, t) in ms.iter().zip(&truth) {
            if t.noise & name_bits == 0 {
                if let Some(f) = &m.forename {
                    forename.insert(t.person, f.to_lowercase());
                }
            }
            if t.noise & dob_bits == 0 {
                if let Some(d) = m.dob {
                    dob.insert(t.person, d);
                }
            }
        }
        let (mut swaps, mut nicks, mut parts) = (0, 0, 0);
        for (m, t) in ms.iter().zip(&truth) {
            if t.noise & noise::DOB_SWAP != 0 {
                if let (Some(clean), Some(d)) = (dob.get(&t.person), m.dob) {
                    assert_eq!(
                        (d.day(), d.month(), d.year()),
                        (clean.month(), clean.day(), clean.year())
                    );
                    swaps += 1;
                }
            }
            if t.noise & noise::DOB_COMPONENT != 0 {
                if let (Some(clean), Some(d)) = (dob.get(&t.person), m.dob) {
                    let same = [
                        d.day() == clean.day(),
                        d.month() == clean.month(),
                        d.year() == clean.year(),
                    ];
                    assert!(same.iter().filter(|s| **s).count() >= 1 && d != *clean);
                    parts += 1;
                }
            }
            if t.noise & noise::NICKNAME != 0 {
                if let (Some(clean), Some(f)) = (forename.get(&t.person), &m.forename) {
                    let formal = names::NICKNAMES
                        .iter()
                        .find(|(formal, _)| formal.to_lowercase() == *clean);
                    let (_, short) = formal.unwrap_or_else(|| panic!("{clean} has no nickname"));
                    assert!(
                        short.iter().any(|s| s.eq_ignore_ascii_case(f)),
                        "{f} for {clean}"
                    );
                    nicks += 1;
                }
            }
        }
        assert!(
            swaps > 10 && nicks > 100 && parts > 10,
            "{swaps} {nicks} {parts}"
        );
    }

    #[test]
    fn twins_and_namesakes_are_there() {
        let (ms, truth) = sample(100_000, 5);
        // Twins: same surname, date of birth and household, different forenames.
        let mut clean: BTreeMap<u64, (&LinkMention, &Truth)> = BTreeMap::new();
        for (m, t) in ms.iter().zip(&truth) {
            if m.role == "pupil" && t.noise == 0 {
                clean.insert(t.person, (m, t));
            }
        }
        let mut twins = 0;
        for (m, t) in clean.values() {
            let Some(other) = t.twin_of else { continue };
            let Some((n, u)) = clean.get(&other) else {
                continue;
            };
            assert_eq!(u.twin_of, Some(t.person));
            assert_eq!((&m.surname, m.dob, t.family), (&n.surname, n.dob, u.family));
            assert_ne!(m.forename, n.forename);
            twins += 1;
        }
        let pupils: BTreeSet<u64> = ms
            .iter()
            .zip(&truth)
            .filter(|(m, _)| m.role == "pupil")
            .map(|(_, t)| t.person)
            .collect();
        assert!(twins > 50, "{twins} twins among {} pupils", pupils.len());
        // Namesakes: two pupils (different people) with the same name and date of
        // birth at different schools.
        // (forename, surname, dob) → (person, school) of each pupil of that name.
        type ByName<'a> = BTreeMap<(&'a str, &'a str, NaiveDate), Vec<(u64, Option<u32>)>>;
        let mut by_name: ByName = BTreeMap::new();
        for (m, t) in clean.values() {
            if let (Some(f), Some(s), Some(d)) = (&m.forename, &m.surname, m.dob) {
                by_name
                    .entry((f, s, d))
                    .or_default()
                    .push((t.person, m.school_urn));
            }
        }
        let namesakes = by_name
            .values()
            .filter(|v| v.len() > 1 && v.iter().any(|x| x.0 != v[0].0 && x.1 != v[0].1))
            .count();
        assert!(namesakes > 50, "{namesakes}");
    }
}
