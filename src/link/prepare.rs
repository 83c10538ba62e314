//! Normalises every mention once into compact comparison keys, so that comparing a
//! pair touches integers and short interned strings only.
//!
//! Names: upper-cased letters only (accents folded, punctuation dropped), the first
//! forename token; a Soundex code; the nickname groups of `config/nicknames.csv`.
//! Addresses: the house/flat numbers and the street with its suffix abbreviated
//! (Road → RD, Apartment → FLAT), so that "Flat 3, 12 Oak Road" and "Apartment 3 12 Oak
//! Rd" agree and "12 Oak Rd" and "14 Oak Rd" do not.
//!
//! Invariant: id 0 means "missing" in every interned column.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use chrono::Datelike;

use super::LinkMention;
use crate::domain::Postcode;

/// The nickname table shipped with kinlink (`config/nicknames.csv`).
pub const NICKNAMES_CSV: &str = include_str!("../../config/nicknames.csv");

/// The Fx hash (rustc's): a multiply-rotate per word. Interning hashes millions of
/// short strings, where SipHash's resistance to flooding buys nothing (the keys are
/// our own normalised values) and costs a third of the time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Interned strings; id 0 is reserved for "missing".
#[derive(Debug, Default)]
pub(crate) struct Interner {
    pub strings: Vec<String>,
    ids: FxMap<String, u32>,
}

impl Interner {
    fn new() -> Self {
        Interner {
            strings: vec![String::new()],
            ids: FxMap::default(),
        }
    }

    pub fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

/// The nickname table: name → the groups it belongs to.
#[derive(Debug, Default)]
pub(crate) struct Nicknames {
    groups: HashMap<String, Vec<u32>>,
    /// The formal name of each group.
    formal: Vec<String>,
    /// Every name of each group, the formal one first.
    members: Vec<Vec<String>>,
}

impl Nicknames {
    pub fn parse(csv: &str) -> Nicknames {
        let mut n = Nicknames::default();
        for line in csv.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let group = n.formal.len() as u32;
            let names: Vec<String> = line
                .split(',')
                .map(|s| name_letters(s.trim()))
                .filter(|s| !s.is_empty())
                .collect();
            let Some(formal) = names.first().cloned() else {
                continue;
            };
            for name in &names {
                let g = n.groups.entry(name.clone()).or_default();
                if !g.contains(&group) {
                    g.push(group);
                }
            }
            n.formal.push(formal);
            n.members.push(names);
        }
        n
    }

    fn groups(&self, name: &str) -> &[u32] {
        self.groups.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The formal name a forename stands for, or the name itself.
    fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        match self.groups(name).first() {
            Some(&g) => &self.formal[g as usize],
            None => name,
        }
    }
}

/// The fields a comparison reads, side by side in one cache line: comparing a pair
/// touches two rows, not twelve columns.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Row {
    pub forename: u32,
    /// Every letter of the forename when it has more than one word (`LY DIA` →
    /// `LYDIA`), else 0.
    pub forename_all: u32,
    pub surname: u32,
    pub dob: u32,
    pub postcode: u32,
    pub sector: u32,
    pub district: u32,
    pub house: u32,
    pub street: u32,
    pub uprn: i64,
    pub sex: u8,
}

/// Every mention's comparison keys, column-wise (index = position in the input).
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The compared fields of each mention, row-wise (built last from the columns).
    pub rows: Vec<Row>,
    pub names: Interner,
    /// Interned normalised forename (first token) and surname.
    pub forename: Vec<u32>,
    pub surname: Vec<u32>,
    /// Interned letters of the whole forename when it has more than one word, else 0.
    pub forename_all: Vec<u32>,
    /// Interned Soundex of the canonical forename (nickname resolved) and of the surname.
    pub forename_code: Vec<u32>,
    /// Interned Soundex of the forename as written (no nickname resolved): the key a
    /// swapped surname is compared with.
    pub forename_raw_code: Vec<u32>,
    pub surname_code: Vec<u32>,
    /// Interned canonical forename (the nickname group's formal name).
    pub forename_canon: Vec<u32>,
    /// Nickname groups of each interned name id (empty for most).
    pub name_groups: Vec<Vec<u32>>,
    /// Every name of each nickname group, interned (for a misspelt nickname).
    pub group_names: Vec<Vec<u32>>,
    /// How many mentions carry each interned name as forename / as surname.
    pub forename_count: Vec<u32>,
    pub surname_count: Vec<u32>,
    pub forenames_present: u32,
    pub surnames_present: u32,
    /// Date of birth as `yyyymmdd`, 0 when missing.
    pub dob: Vec<u32>,
    /// 0 unknown, 1 female, 2 male.
    pub sex: Vec<u8>,
    pub places: Interner,
    pub postcode: Vec<u32>,
    pub sector: Vec<u32>,
    pub district: Vec<u32>,
    /// House and flat numbers, e.g. `F3 12`.
    pub house: Vec<u32>,
    /// Street words with suffixes abbreviated, e.g. `OAK RD`.
    pub street: Vec<u32>,
    pub uprn: Vec<i64>,
    /// The pupil's school URN, 0 when none.
    pub school: Vec<u32>,
    /// What the record's role says of age: 0 unknown, 1 a child, 2 an adult.
    pub age_class: Vec<u8>,
    /// An adult: by the record's role (parent, carer, tenant), or 18 or over by the
    /// date of birth on the date the record speaks of. Unknown counts as not adult.
    pub adult: Vec<bool>,
    /// A school's own record of a pupil (legal names, never a nickname).
    pub pupil: Vec<bool>,
    /// The mention's key has named two people: never linked automatically.
    pub conflicted: Vec<bool>,
    /// Interned source name of case-system mentions (0 for other kinds): two
    /// person ids of one case system are two people unless a person says otherwise.
    pub case_source: Vec<u32>,
    pub keys: Interner,
    pub upn: Vec<u32>,
    pub nhs: Vec<u32>,
    pub group: Vec<u32>,
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.forename.len()
    }

    pub fn birth_year(&self, i: usize) -> u32 {
        self.dob[i] / 10_000
    }
}

/// Normalises all mentions.
pub(crate) fn prepare(mentions: &[LinkMention], nicknames: &Nicknames, threads: usize) -> Prepared {
    // Halves prepared in parallel, each with its own interners, then merged: below
    // this many mentions one thread is quicker than the merge.
    const PARALLEL_FROM: usize = 50_000;
    let mut p = if threads >= 2 && mentions.len() >= PARALLEL_FROM {
        let (a, b) = mentions.split_at(mentions.len() / 2);
        let (pa, pb) = std::thread::scope(|s| {
            let hb = s.spawn(|| prepare_part(b, nicknames));
            let pa = prepare_part(a, nicknames);
            (pa, hb.join())
        });
        match pb {
            Ok(pb) => merge(pa, pb),
            Err(_) => prepare_part(mentions, nicknames),
        }
    } else {
        prepare_part(mentions, nicknames)
    };
    finish(&mut p, nicknames);
    p
}

/// Appends `b` to `a`, re-numbering `b`'s interned ids into `a`'s interners.
fn merge(mut a: Prepared, b: Prepared) -> Prepared {
    fn remap(into: &mut Interner, from: &Interner) -> Vec<u32> {
        from.strings.iter().map(|s| into.intern(s)).collect()
    }
    let names = remap(&mut a.names, &b.names);
    let places = remap(&mut a.places, &b.places);
    let keys = remap(&mut a.keys, &b.keys);
    let map = |to: &mut Vec<u32>, from: &[u32], table: &[u32]| {
        to.extend(from.iter().map(|&id| table[id as usize]));
    };
    map(&mut a.forename, &b.forename, &names);
    map(&mut a.surname, &b.surname, &names);
    map(&mut a.forename_all, &b.forename_all, &names);
    map(&mut a.forename_code, &b.forename_code, &names);
    map(&mut a.forename_raw_code, &b.forename_raw_code, &names);
    map(&mut a.surname_code, &b.surname_code, &names);
    map(&mut a.forename_canon, &b.forename_canon, &names);
    map(&mut a.postcode, &b.postcode, &places);
    map(&mut a.sector, &b.sector, &places);
    map(&mut a.district, &b.district, &places);
    map(&mut a.house, &b.house, &places);
    map(&mut a.street, &b.street, &places);
    map(&mut a.upn, &b.upn, &keys);
    map(&mut a.nhs, &b.nhs, &keys);
    map(&mut a.group, &b.group, &keys);
    map(&mut a.case_source, &b.case_source, &keys);
    a.dob.extend_from_slice(&b.dob);
    a.sex.extend_from_slice(&b.sex);
    a.uprn.extend_from_slice(&b.uprn);
    a.school.extend_from_slice(&b.school);
    a.age_class.extend_from_slice(&b.age_class);
    a.adult.extend_from_slice(&b.adult);
    a.pupil.extend_from_slice(&b.pupil);
    a.conflicted.extend_from_slice(&b.conflicted);
    a
}

/// Normalises one run of mentions (no nickname groups or counts yet).
fn prepare_part(mentions: &[LinkMention], nicknames: &Nicknames) -> Prepared {
    let mut part = Part::new(mentions.len(), nicknames);
    for m in mentions {
        part.names(m);
        part.dates_and_sex(m);
        part.places(m);
        part.record_facts(m);
        part.keys(m);
    }
    part.p
}

/// One run of mentions being normalised, with the caches that let each distinct
/// written value (a name, a postcode, an address line, a source) be worked out once:
/// they repeat (a household, a source of thousands).
struct Part<'m> {
    p: Prepared,
    nicknames: &'m Nicknames,
    buf: String,
    /// Soundex and canonical name per distinct forename / surname id.
    code_of: FxMap<u32, (u32, u32)>,
    raw_code_of: FxMap<u32, u32>,
    postcode_of: FxMap<&'m str, (u32, u32, u32)>,
    address_of: FxMap<&'m str, (u32, u32)>,
    case_source_of: FxMap<&'m str, u32>,
}

impl<'m> Part<'m> {
    fn new(n: usize, nicknames: &'m Nicknames) -> Self {
        let mut p = Prepared {
            names: Interner::new(),
            places: Interner::new(),
            keys: Interner::new(),
            ..Prepared::default()
        };
        for v in [
            &mut p.forename,
            &mut p.surname,
            &mut p.forename_all,
            &mut p.forename_code,
            &mut p.forename_raw_code,
            &mut p.surname_code,
            &mut p.forename_canon,
            &mut p.dob,
            &mut p.postcode,
            &mut p.sector,
            &mut p.district,
            &mut p.house,
            &mut p.street,
            &mut p.upn,
            &mut p.nhs,
            &mut p.group,
        ] {
            v.reserve_exact(n);
        }
        Part {
            p,
            nicknames,
            buf: String::new(),
            code_of: FxMap::default(),
            raw_code_of: FxMap::default(),
            postcode_of: FxMap::default(),
            address_of: FxMap::default(),
            case_source_of: FxMap::default(),
        }
    }

    /// Forename (first word, whole, canonical, Soundex of both) and surname.
    fn names(&mut self, m: &LinkMention) {
        let (p, buf, nicknames) = (&mut self.p, &mut self.buf, self.nicknames);
        let fore = m
            .forename
            .as_deref()
            .map(|s| first_token_letters(s, buf))
            .unwrap_or(0);
        let fore = if fore == 0 { 0 } else { p.names.intern(buf) };
        let (fcode, fcanon) = if fore == 0 {
            (0, 0)
        } else {
            *self.code_of.entry(fore).or_insert_with(|| {
                let name = p.names.get(fore).to_owned();
                let canon = nicknames.canonical(&name).to_owned();
                let code = soundex(&canon);
                (p.names.intern(&code), p.names.intern(&canon))
            })
        };
        p.forename.push(fore);
        let whole = match m.forename.as_deref() {
            Some(f) if fore != 0 && all_letters(f, buf) > p.names.get(fore).len() => {
                p.names.intern(buf)
            }
            _ => 0,
        };
        p.forename_all.push(whole);
        p.forename_code.push(fcode);
        let raw_code = if fore == 0 {
            0
        } else {
            *self.raw_code_of.entry(fore).or_insert_with(|| {
                let code = soundex(p.names.get(fore));
                p.names.intern(&code)
            })
        };
        p.forename_raw_code.push(raw_code);
        p.forename_canon.push(fcanon);

        let sur = m
            .surname
            .as_deref()
            .map(|s| all_letters(s, buf))
            .unwrap_or(0);
        let sur = if sur == 0 { 0 } else { p.names.intern(buf) };
        let scode = if sur == 0 {
            0
        } else {
            self.code_of
                .entry(sur | 0x8000_0000)
                .or_insert_with(|| {
                    let code = soundex(p.names.get(sur));
                    (p.names.intern(&code), 0)
                })
                .0
        };
        p.surname.push(sur);
        p.surname_code.push(scode);
    }

    fn dates_and_sex(&mut self, m: &LinkMention) {
        let p = &mut self.p;
        p.dob.push(
            m.dob
                .map(|d| d.year().max(0) as u32 * 10_000 + d.month() * 100 + d.day())
                .unwrap_or(0),
        );
        p.sex.push(sex_code(m.gender.as_deref()));
    }

    /// Postcode, its sector and district; house number and street; UPRN.
    fn places(&mut self, m: &'m LinkMention) {
        let p = &mut self.p;
        let (pc, sector, district) = match m.postcode.as_deref() {
            Some(raw) => *self.postcode_of.entry(raw).or_insert_with(|| {
                // A postcode without a letter or digit ("-", "?") says nothing
                // about where someone lives: missing, never an agreement.
                let Some(pc) = Postcode::parse(raw)
                    .filter(|pc| pc.as_str().bytes().any(|b| b.is_ascii_alphanumeric()))
                else {
                    return (0, 0, 0);
                };
                // Too short for an inward code: its own sector and district.
                let s = p.places.intern(pc.sector().unwrap_or(pc.as_str()));
                let d = p.places.intern(pc.district());
                (p.places.intern(pc.as_str()), s, d)
            }),
            None => (0, 0, 0),
        };
        p.postcode.push(pc);
        p.sector.push(sector);
        p.district.push(district);

        let (h, s) = match m.address_line1.as_deref() {
            Some(raw) => *self.address_of.entry(raw).or_insert_with(|| {
                let (house, street) = address_parts(raw);
                (p.places.intern(&house), p.places.intern(&street))
            }),
            None => (0, 0),
        };
        p.house.push(h);
        p.street.push(s);
        p.uprn.push(m.uprn.unwrap_or(0));
    }

    /// What the record says beyond the compared fields: school, age, pupil record,
    /// a conflicted key, a case system.
    fn record_facts(&mut self, m: &'m LinkMention) {
        let p = &mut self.p;
        p.school.push(m.school_urn.unwrap_or(0));
        let class = age_class(&m.role);
        p.age_class.push(class);
        p.adult.push(match class {
            2 => true,
            1 => false,
            _ => matches!((m.dob, m.seen_on), (Some(d), Some(at)) if at.years_since(d).is_some_and(|y| y >= 18)),
        });
        p.pupil.push(m.kind == crate::domain::FeedKind::Attendance);
        p.conflicted.push(m.identity_conflict);
        p.case_source
            .push(if m.kind == crate::domain::FeedKind::Assessment {
                *self
                    .case_source_of
                    .entry(m.source.as_str())
                    .or_insert_with(|| p.keys.intern(&format!("case\u{1}{}", m.source)))
            } else {
                0
            });
    }

    /// The deterministic keys (UPN, NHS number) and the notification group.
    fn keys(&mut self, m: &LinkMention) {
        let p = &mut self.p;
        // A key that has named two people is no key.
        let trusted = !m.identity_conflict;
        let upn = m
            .upn
            .as_deref()
            .filter(|_| trusted)
            .map(|s| p.keys.intern(s))
            .unwrap_or(0);
        let nhs = m
            .nhs_number
            .as_deref()
            .filter(|_| trusted)
            .map(|s| p.keys.intern(&format!("nhs:{s}")))
            .unwrap_or(0);
        let group = m
            .group
            .as_deref()
            .map(|s| p.keys.intern(&format!("{}\u{1}{s}", m.source)))
            .unwrap_or(0);
        p.upn.push(upn);
        p.nhs.push(nhs);
        p.group.push(group);
    }
}

/// Nickname groups, name counts and comparison rows over all mentions.
fn finish(p: &mut Prepared, nicknames: &Nicknames) {
    let n = p.len();
    p.rows = (0..n)
        .map(|i| Row {
            forename: p.forename[i],
            forename_all: p.forename_all[i],
            surname: p.surname[i],
            dob: p.dob[i],
            postcode: p.postcode[i],
            sector: p.sector[i],
            district: p.district[i],
            house: p.house[i],
            street: p.street[i],
            uprn: p.uprn[i],
            sex: p.sex[i],
        })
        .collect();
    p.group_names = nicknames
        .members
        .iter()
        .map(|names| names.iter().map(|n| p.names.intern(n)).collect())
        .collect();
    let names = p.names.strings.len();
    p.name_groups = p
        .names
        .strings
        .iter()
        .map(|s| nicknames.groups(s).to_vec())
        .collect();
    p.forename_count = vec![0; names];
    p.surname_count = vec![0; names];
    for i in 0..n {
        if p.forename[i] != 0 {
            p.forename_count[p.forename[i] as usize] += 1;
            p.forenames_present += 1;
        }
        if p.surname[i] != 0 {
            p.surname_count[p.surname[i] as usize] += 1;
            p.surnames_present += 1;
        }
    }
}

/// Upper-case ASCII letters of the first word of `s` into `buf`; returns its length.
fn first_token_letters(s: &str, buf: &mut String) -> usize {
    buf.clear();
    let word = s
        .split(|c: char| c.is_whitespace())
        .find(|w| w.chars().any(char::is_alphabetic))
        .unwrap_or("");
    push_letters(word, buf);
    buf.len()
}

/// Upper-case ASCII letters of all of `s` into `buf` (so `O'Brien-Smith` →
/// `OBRIENSMITH`); returns its length.
fn all_letters(s: &str, buf: &mut String) -> usize {
    buf.clear();
    push_letters(s, buf);
    buf.len()
}

fn push_letters(s: &str, buf: &mut String) {
    for c in s.chars() {
        if c.is_ascii_alphabetic() {
            buf.push(c.to_ascii_uppercase());
        } else if !c.is_ascii() {
            if let Some(f) = fold_accent(c) {
                buf.push(f);
            }
        }
    }
}

/// The plain letter of a Latin letter with an accent (É → E), for the names UK
/// registers hold.
fn fold_accent(c: char) -> Option<char> {
    let up = c.to_uppercase().next()?;
    let folded = match up {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ą' => 'A',
        'Ç' | 'Ć' | 'Č' => 'C',
        'Ð' | 'Ď' => 'D',
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => 'E',
        'Ğ' => 'G',
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'İ' => 'I',
        'Ł' => 'L',
        'Ñ' | 'Ń' | 'Ň' => 'N',
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ő' => 'O',
        'Ř' => 'R',
        'Ś' | 'Š' | 'Ş' => 'S',
        'Ť' | 'Ţ' => 'T',
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' => 'U',
        'Ý' | 'Ÿ' => 'Y',
        'Ź' | 'Ż' | 'Ž' => 'Z',
        _ => return None,
    };
    Some(folded)
}

/// Name letters of a nickname-table entry.
fn name_letters(s: &str) -> String {
    let mut buf = String::new();
    push_letters(s, &mut buf);
    buf
}

/// American Soundex (letter + three digits) of upper-case ASCII letters.
pub(crate) fn soundex(name: &str) -> String {
    fn digit(c: u8) -> u8 {
        match c {
            b'B' | b'F' | b'P' | b'V' => b'1',
            b'C' | b'G' | b'J' | b'K' | b'Q' | b'S' | b'X' | b'Z' => b'2',
            b'D' | b'T' => b'3',
            b'L' => b'4',
            b'M' | b'N' => b'5',
            b'R' => b'6',
            _ => b'0',
        }
    }
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return String::new();
    };
    let mut out = vec![first];
    let mut last = digit(first);
    for &c in &bytes[1..] {
        let d = digit(c);
        if d != b'0' && d != last {
            out.push(d);
            if out.len() == 4 {
                break;
            }
        }
        // H and W do not separate letters of the same code; vowels do.
        if c != b'H' && c != b'W' {
            last = d;
        }
    }
    while out.len() < 4 {
        out.push(b'0');
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Roles that only a child or only an adult has (a police victim may be either).
fn age_class(role: &str) -> u8 {
    match role.trim().to_ascii_lowercase().as_str() {
        "pupil" | "child" => 1,
        "parent" | "carer" | "tenant" => 2,
        _ => 0,
    }
}

fn sex_code(g: Option<&str>) -> u8 {
    let Some(g) = g else { return 0 };
    match g.trim().chars().next().map(|c| c.to_ascii_uppercase()) {
        Some('F' | 'G' | 'W') => 1,
        Some('M' | 'B') => 2,
        _ => 0,
    }
}

/// Street-suffix and flat words as kinlink compares them.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("ROAD", "RD"),
    ("STREET", "ST"),
    ("AVENUE", "AVE"),
    ("AV", "AVE"),
    ("LANE", "LN"),
    ("DRIVE", "DR"),
    ("CLOSE", "CL"),
    ("COURT", "CT"),
    ("CRESCENT", "CRES"),
    ("CRES", "CRES"),
    ("PLACE", "PL"),
    ("GARDENS", "GDNS"),
    ("GDN", "GDNS"),
    ("TERRACE", "TER"),
    ("TERR", "TER"),
    ("GROVE", "GR"),
    ("GRV", "GR"),
    ("SQUARE", "SQ"),
    ("WAY", "WAY"),
    ("PARK", "PK"),
    ("MEWS", "MEWS"),
    ("HOUSE", "HO"),
    ("NORTH", "N"),
    ("SOUTH", "S"),
    ("EAST", "E"),
    ("WEST", "W"),
    ("SAINT", "ST"),
];

const FLAT_WORDS: &[&str] = &["FLAT", "APARTMENT", "APT", "UNIT", "ROOM", "FLT"];

/// (house numbers, street words) of an address line.
pub(crate) fn address_parts(line: &str) -> (String, String) {
    let upper = line.to_ascii_uppercase();
    let mut numbers: Vec<String> = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    let mut flat_next = false;
    for token in upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        if FLAT_WORDS.contains(&token) {
            flat_next = true;
            continue;
        }
        if token.as_bytes()[0].is_ascii_digit() {
            let tag = if flat_next { "F" } else { "" };
            numbers.push(format!("{tag}{token}"));
            flat_next = false;
            continue;
        }
        flat_next = false;
        let word = ABBREVIATIONS
            .iter()
            .find(|(long, _)| *long == token)
            .map(|(_, short)| *short)
            .unwrap_or(token);
        words.push(word);
    }
    (numbers.join(" "), words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soundex_matches_the_textbook_examples() {
        assert_eq!(soundex("ROBERT"), "R163");
        assert_eq!(soundex("RUPERT"), "R163");
        assert_eq!(soundex("ASHCRAFT"), "A261");
        assert_eq!(soundex("TYMCZAK"), "T522");
        assert_eq!(soundex("PFISTER"), "P236");
        assert_eq!(soundex("LEE"), "L000");
        assert_eq!(soundex(""), "");
    }

    #[test]
    fn addresses_agree_across_abbreviations_and_flat_words() {
        assert_eq!(
            address_parts("Flat 3, 12 Oak Road"),
            address_parts("Apartment 3 12 Oak Rd")
        );
        assert_eq!(address_parts("12 Oak Road").0, "12");
        assert_eq!(address_parts("12 Oak Road").1, "OAK RD");
        assert_ne!(address_parts("12 Oak Rd").0, address_parts("14 Oak Rd").0);
        assert_eq!(address_parts(""), (String::new(), String::new()));
    }

    #[test]
    fn nickname_groups_resolve_to_the_formal_name() {
        let n = Nicknames::parse(NICKNAMES_CSV);
        assert_eq!(n.canonical("BETH"), "ELIZABETH");
        assert_eq!(n.canonical("LIZ"), "ELIZABETH");
        assert_eq!(n.canonical("ZEBEDEE"), "ZEBEDEE");
        assert!(
            n.groups("ALEX").len() >= 2,
            "Alex is Alexander or Alexandra"
        );
        assert!(n.groups("JON").len() >= 2);
    }

    #[test]
    fn names_are_letters_only_and_accents_fold() {
        let mut buf = String::new();
        all_letters("O'Brien-Smith", &mut buf);
        assert_eq!(buf, "OBRIENSMITH");
        first_token_letters("  Zoë  Ann", &mut buf);
        assert_eq!(buf, "ZOE");
        assert_eq!(first_token_letters("  ", &mut buf), 0);
    }

    /// (sector, district) as `prepare` interns them.
    fn postcode_parts(pc: &str) -> (String, String) {
        let pc = Postcode::parse(pc).unwrap();
        let sector = pc.sector().unwrap_or(pc.as_str()).to_owned();
        (sector, pc.district().to_owned())
    }

    #[test]
    fn postcode_parts_split_sector_and_district() {
        assert_eq!(
            postcode_parts("M65AB"),
            ("M6 5".to_owned(), "M6".to_owned())
        );
        assert_eq!(
            postcode_parts("SW1A1AA"),
            ("SW1A 1".to_owned(), "SW1A".to_owned())
        );
        assert_eq!(postcode_parts("M6"), ("M6".to_owned(), "M6".to_owned()));
    }
}
