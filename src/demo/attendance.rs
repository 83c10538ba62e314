//! School attendance feeds: the borough's CSV export (most schools) and a Wonde-shaped
//! JSON document (the one or two schools on the MIS API), plus `write_attendance`, a
//! streaming writer of synthetic marks for benchmarks.
//!
//! Marks follow each pupil's attendance profile: mostly present (`/` AM, `\` PM),
//! some illness, appointments, unexplained and late marks, holiday blocks, and a few
//! pupils whose attendance falls away in the last two school weeks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::{Datelike, Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::names::{self, Surnames, Weighted};
use super::population::{Person, Population, Profile, Sex, UpnInFeed, UPN_ALPHABET};
use super::{iso_date, key_name, uk_date, GeneratedFile, Truth, SOURCE_ATTENDANCE, SOURCE_MIS_API};
use crate::domain::ids::upn_check_letter;
use crate::domain::Format;

/// The CSV export's headers for the canonical columns (canonical → header).
pub const CSV_COLUMNS: &[(&str, &str)] = &[
    ("school_urn", "School URN"),
    ("upn", "Pupil UPN"),
    ("surname", "Legal Surname"),
    ("forename", "Legal Forename"),
    ("dob", "Date of Birth"),
    ("gender", "Gender"),
    ("address_line1", "Address Line 1"),
    ("postcode", "Post Code"),
    ("date", "Session Date"),
    ("session", "AM/PM"),
    ("mark", "Mark"),
];

/// The CSV header row: the mapped columns plus two the config does not map (ingest
/// must ignore them).
const CSV_HEADER: &[&str] = &[
    "School URN",
    "Reg Group",
    "Pupil UPN",
    "Legal Surname",
    "Legal Forename",
    "Date of Birth",
    "Gender",
    "Year",
    "Address Line 1",
    "Post Code",
    "Session Date",
    "AM/PM",
    "Mark",
];

/// The JSON records' paths for the canonical columns: dotted paths into Wonde-shaped
/// objects, and a Wonde date object for the date of birth.
pub const JSON_COLUMNS: &[(&str, &str)] = &[
    ("school_urn", "school_urn"),
    ("upn", "education_details.data.upn"),
    ("forename", "forename"),
    ("surname", "surname"),
    ("dob", "date_of_birth"),
    ("gender", "gender"),
    ("address_line1", "address.data.address_line_1"),
    ("postcode", "address.data.address_postcode"),
    ("date", "date"),
    ("session", "session"),
    ("mark", "attendance_code"),
];

/// Why a pupil is absent, weighted by profile.
const REASONS_USUAL: &[(&str, f64)] = &[
    ("I", 60.0),
    ("M", 15.0),
    ("N", 10.0),
    ("O", 5.0),
    ("G", 3.0),
    ("U", 7.0),
];
const REASONS_POOR: &[(&str, f64)] = &[
    ("I", 30.0),
    ("M", 5.0),
    ("N", 25.0),
    ("O", 25.0),
    ("G", 5.0),
    ("U", 10.0),
];
const REASONS_FALLING: &[(&str, f64)] = &[("I", 10.0), ("N", 35.0), ("O", 35.0), ("U", 20.0)];

/// The AM and PM marks for each school day, oldest first.
pub(crate) fn pupil_marks(
    rng: &mut ChaCha8Rng,
    profile: Profile,
    days: usize,
) -> Vec<[&'static str; 2]> {
    let usual = Weighted::from_weights(REASONS_USUAL.iter().map(|r| r.1));
    let poor = Weighted::from_weights(REASONS_POOR.iter().map(|r| r.1));
    let falling = Weighted::from_weights(REASONS_FALLING.iter().map(|r| r.1));
    let recent_from = days.saturating_sub(10);
    let (base, recent) = match profile {
        Profile::Good => (rng.random_range(0.0..0.02), None),
        Profile::Typical => (rng.random_range(0.03..0.08), None),
        Profile::Persistent => (rng.random_range(0.10..0.25), None),
        Profile::FallingAway => (
            rng.random_range(0.0..0.03),
            Some(rng.random_range(0.4..0.7)),
        ),
        Profile::Severe => (
            rng.random_range(0.5..0.7),
            Some(rng.random_range(0.75..0.95)),
        ),
    };
    // A holiday in term time: a block of G days for a few pupils.
    let holiday = (matches!(profile, Profile::Typical | Profile::Persistent)
        && rng.random_bool(0.08)
        && days > 5)
        .then(|| {
            let len = rng.random_range(3..=5).min(days);
            let start = rng.random_range(0..=days - len);
            start..start + len
        });
    (0..days)
        .map(|d| {
            if holiday.as_ref().is_some_and(|h| h.contains(&d)) {
                return ["G", "G"];
            }
            let (p_absent, table, reasons) = match recent {
                Some(r) if d >= recent_from => (r, &falling, REASONS_FALLING),
                _ if matches!(profile, Profile::Good | Profile::Typical) => {
                    (base, &usual, REASONS_USUAL)
                }
                _ => (base, &poor, REASONS_POOR),
            };
            if rng.random_bool(p_absent) {
                match reasons[table.sample(rng)].0 {
                    // An appointment or a late arrival costs the morning only.
                    "M" => ["M", "\\"],
                    "U" => ["U", "\\"],
                    code => [code, code],
                }
            } else if rng.random_bool(0.003) {
                ["V", "V"]
            } else if rng.random_bool(0.03) {
                ["L", "\\"]
            } else {
                ["/", "\\"]
            }
        })
        .collect()
}

/// Which kind of system writes the marks: a hand-run MIS export (trailing spaces,
/// lower-case postcodes now and then) or the API sync (clean values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Export,
    Api,
}

/// How a school writes one pupil (constant across that pupil's rows: an MIS export
/// is consistent with itself).
struct Written {
    upn: String,
    forename: String,
    surname: String,
    dob: String,
    gender: &'static str,
    year: String,
    reg_group: String,
    address: String,
    postcode: String,
    key: String,
}

/// The pupils of the given schools, school by school, sorted as an MIS export is
/// (surname, forename), with ties broken by person id for determinism.
fn pupils_of(pop: &Population, api: bool) -> Vec<&Person> {
    let mut pupils: Vec<&Person> = pop
        .persons
        .iter()
        .filter(|p| {
            p.pupil
                .as_ref()
                .is_some_and(|pu| pop.schools[pu.school].via_api == api)
        })
        .collect();
    pupils.sort_by(|a, b| {
        let (sa, sb) = (
            a.pupil.as_ref().map(|p| p.school),
            b.pupil.as_ref().map(|p| p.school),
        );
        sa.cmp(&sb)
            .then_with(|| pop.surname(a).cmp(pop.surname(b)))
            .then_with(|| a.forename.cmp(b.forename))
            .then_with(|| a.id.cmp(&b.id))
    });
    pupils
}

/// Works out how the school writes this pupil, and the mention key that gives. A
/// pupil without a UPN whose name-and-date key another pupil already has (twins
/// with one name are not generated, but namesakes can collide) keeps the UPN.
fn written(
    pop: &Population,
    p: &Person,
    rng: &mut ChaCha8Rng,
    source: &'static str,
    truth: &Truth,
    by: Writer,
) -> Written {
    let messy = by == Writer::Export;
    let Some(pupil) = p.pupil.as_ref() else {
        return Written {
            upn: String::new(),
            forename: String::new(),
            surname: String::new(),
            dob: String::new(),
            gender: "",
            year: String::new(),
            reg_group: String::new(),
            address: String::new(),
            postcode: String::new(),
            key: String::new(),
        };
    };
    let school = &pop.schools[pupil.school];
    let urn = format!("{:06}", school.urn);
    let family = &pop.families[p.family];
    let addr = if family.school_address_stale {
        family.addresses.first().map(|a| a.0).unwrap_or(0)
    } else {
        family.current_address()
    };
    let address = &pop.addresses[addr];
    let trailing = messy && rng.random_bool(0.03);
    let pad = |s: &str| {
        if trailing {
            format!("{s} ")
        } else {
            s.to_string()
        }
    };
    let forename = pad(p.forename);
    let surname = pad(pop.surname(p));
    let name_key = format!(
        "{urn}/{}/{}/{}",
        key_name(&surname),
        key_name(&forename),
        iso_date(p.dob)
    );
    let mut upn = match &pupil.upn_in_feed {
        UpnInFeed::AsIs => pupil.upn.clone(),
        UpnInFeed::Invalid(bad) => bad.clone(),
        UpnInFeed::Missing if truth.contains(source, &name_key) => pupil.upn.clone(),
        UpnInFeed::Missing => String::new(),
    };
    let key = if upn.is_empty() {
        name_key
    } else {
        upn.trim().to_uppercase()
    };
    if messy && !upn.is_empty() && rng.random_bool(0.02) {
        upn.push(' ');
    }
    let postcode = if messy && rng.random_bool(0.08) {
        address.postcode.to_lowercase()
    } else {
        address.postcode.clone()
    };
    let age =
        super::population::academic_age(p.dob, super::population::academic_year_start(pop.as_of));
    let year = if age == 4 {
        "R".to_string()
    } else {
        format!("Y{}", age - 4)
    };
    let reg_group = format!(
        "{}{}",
        if age == 4 {
            "R".to_string()
        } else {
            (age - 4).to_string()
        },
        ["A", "B", "C"][(p.id % 3) as usize]
    );
    Written {
        upn,
        forename,
        surname,
        dob: uk_date(p.dob),
        gender: match p.sex {
            Sex::Female => "F",
            Sex::Male => "M",
        },
        year,
        reg_group,
        address: address.line1.clone(),
        postcode,
        key,
    }
}

/// Writes the borough's attendance CSV (every school not on the MIS API).
pub(crate) fn write_csv(
    pop: &Population,
    rng: &mut ChaCha8Rng,
    path: &Path,
    truth: &mut Truth,
) -> io::Result<GeneratedFile> {
    let pupils = pupils_of(pop, false);
    let days = &pop.school_days;
    let day_text: Vec<String> = days.iter().map(|&d| uk_date(d)).collect();
    let total: usize = pupils
        .iter()
        .map(|p| {
            p.pupil
                .as_ref()
                .map_or(0, |pu| (days.len() - pu.on_roll_from.min(days.len())) * 2)
        })
        .sum();
    // A handful of bad rows, well under the 5% that would reject the file.
    let mut bad = BTreeSet::new();
    let want = (total / 2000).max(3).min(total / 50);
    while bad.len() < want {
        bad.insert(rng.random_range(0..total));
    }
    let bad_february = format!("31/02/{:04}", pop.as_of.year());

    let mut w = csv::WriterBuilder::new()
        .from_writer(BufWriter::with_capacity(1 << 20, File::create(path)?));
    w.write_record(CSV_HEADER)?;
    let mut row = 0usize;
    let mut bad_written = 0usize;
    for p in pupils {
        let Some(pupil) = p.pupil.as_ref() else {
            continue;
        };
        let urn = format!("{:06}", pop.schools[pupil.school].urn);
        let wr = written(pop, p, rng, SOURCE_ATTENDANCE, truth, Writer::Export);
        let marks = pupil_marks(rng, pupil.profile, days.len());
        let mut recorded = false;
        for (d, pair) in marks.iter().enumerate().skip(pupil.on_roll_from) {
            for (s, session) in ["AM", "PM"].iter().enumerate() {
                let mut rec: [&str; 13] = [
                    &urn,
                    &wr.reg_group,
                    &wr.upn,
                    &wr.surname,
                    &wr.forename,
                    &wr.dob,
                    wr.gender,
                    &wr.year,
                    &wr.address,
                    &wr.postcode,
                    &day_text[d],
                    session,
                    pair[s],
                ];
                if bad.contains(&row) {
                    match bad_written % 3 {
                        0 => rec[12] = "Q9",
                        1 => rec[10] = &bad_february,
                        _ => rec[3] = "",
                    }
                    bad_written += 1;
                } else if !recorded {
                    truth.add(pop, SOURCE_ATTENDANCE, wr.key.clone(), p);
                    recorded = true;
                }
                w.write_record(rec)?;
                row += 1;
            }
        }
    }
    w.flush()?;
    Ok(GeneratedFile {
        source: SOURCE_ATTENDANCE.to_string(),
        path: path.to_path_buf(),
        rows: row,
        bad_rows: bad_written,
    })
}

/// A Wonde date object.
#[derive(Serialize)]
struct WondeDate {
    date: String,
    timezone_type: u8,
    timezone: &'static str,
}

impl WondeDate {
    fn new(d: NaiveDate) -> WondeDate {
        WondeDate {
            date: format!("{} 00:00:00.000000", iso_date(d)),
            timezone_type: 3,
            timezone: "Europe/London",
        }
    }
}

/// Wonde wraps every include in `{"data": …}`.
#[derive(Serialize)]
struct Data<T> {
    data: T,
}

#[derive(Serialize)]
struct EducationDetails {
    upn: Option<String>,
}

#[derive(Serialize)]
struct WondeAddress {
    address_line_1: String,
    address_postcode: String,
}

/// One session mark with the student's details, as the API sync writes it.
#[derive(Serialize)]
struct WondeRecord<'a> {
    id: String,
    student_id: String,
    school_urn: &'a str,
    forename: &'a str,
    surname: &'a str,
    gender: &'static str,
    date_of_birth: &'a WondeDate,
    education_details: &'a Data<EducationDetails>,
    address: &'a Data<WondeAddress>,
    date: &'a str,
    session: &'static str,
    attendance_code: &'static str,
}

/// Writes the MIS API's attendance as one Wonde-shaped JSON page.
pub(crate) fn write_json(
    pop: &Population,
    rng: &mut ChaCha8Rng,
    path: &Path,
    truth: &mut Truth,
) -> io::Result<GeneratedFile> {
    let pupils = pupils_of(pop, true);
    let days: Vec<String> = pop.school_days.iter().map(|&d| iso_date(d)).collect();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(b"{\"data\":[")?;
    let mut rows = 0usize;
    for p in pupils {
        let Some(pupil) = p.pupil.as_ref() else {
            continue;
        };
        let urn = format!("{:06}", pop.schools[pupil.school].urn);
        let wr = written(pop, p, rng, SOURCE_MIS_API, truth, Writer::Api);
        let marks = pupil_marks(rng, pupil.profile, days.len());
        let dob = WondeDate::new(p.dob);
        let education = Data {
            data: EducationDetails {
                upn: (!wr.upn.is_empty()).then(|| wr.upn.clone()),
            },
        };
        let address = Data {
            data: WondeAddress {
                address_line_1: wr.address.clone(),
                address_postcode: wr.postcode.clone(),
            },
        };
        let student_id = format!("A{:09}", (u64::from(p.id) * 7_919_311) % 1_000_000_000);
        for (d, pair) in marks.iter().enumerate().skip(pupil.on_roll_from) {
            for (s, session) in ["AM", "PM"].into_iter().enumerate() {
                if rows > 0 {
                    out.write_all(b",")?;
                }
                let record = WondeRecord {
                    id: format!("{student_id}-{}-{session}", days[d]),
                    student_id: student_id.clone(),
                    school_urn: &urn,
                    forename: &wr.forename,
                    surname: &wr.surname,
                    gender: match p.sex {
                        Sex::Female => "FEMALE",
                        Sex::Male => "MALE",
                    },
                    date_of_birth: &dob,
                    education_details: &education,
                    address: &address,
                    date: &days[d],
                    session,
                    attendance_code: pair[s],
                };
                serde_json::to_writer(&mut out, &record).map_err(io::Error::other)?;
                rows += 1;
            }
        }
        if pupil.on_roll_from < days.len() {
            truth.add(pop, SOURCE_MIS_API, wr.key.clone(), p);
        }
    }
    out.write_all(
        b"],\"meta\":{\"pagination\":{\"next\":null,\"previous\":null,\"more\":false,\"per_page\":",
    )?;
    write!(out, "{rows}")?;
    out.write_all(b",\"current_page\":1}}}\n")?;
    out.flush()?;
    Ok(GeneratedFile {
        source: SOURCE_MIS_API.to_string(),
        path: path.to_path_buf(),
        rows,
        bad_rows: 0,
    })
}

/// The largest number of data rows an XLSX sheet holds under a header row.
pub const XLSX_MAX_ROWS: usize = 1_048_575;

/// Benchmark data: an attendance feed of exactly `rows` session marks for synthetic
/// pupils at synthetic schools, streamed (CSV through a buffered writer; XLSX through
/// a constant-memory worksheet). Returns the column map (canonical → header).
pub fn write_attendance(
    path: &Path,
    format: Format,
    rows: usize,
    seed: u64,
) -> io::Result<BTreeMap<String, String>> {
    let columns: BTreeMap<String, String> = CSV_COLUMNS
        .iter()
        .map(|(c, h)| ((*c).to_string(), (*h).to_string()))
        .collect();
    let mut sink: Box<dyn RowSink> = match format {
        Format::Csv => Box::new(CsvSink::new(path)?),
        Format::Xlsx => {
            if rows > XLSX_MAX_ROWS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("an xlsx sheet holds at most {XLSX_MAX_ROWS} data rows, {rows} asked"),
                ));
            }
            Box::new(XlsxSink::new(path)?)
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("write_attendance writes csv or xlsx, not {other}"),
            ))
        }
    };
    sink.header(CSV_HEADER)?;

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let as_of = NaiveDate::from_ymd_opt(2025, 3, 21).unwrap_or(NaiveDate::MIN);
    let days = super::calendar::school_days_before(as_of, 40);
    let day_text: Vec<String> = days.iter().map(|&d| uk_date(d)).collect();
    let surnames = Surnames::new();
    let girls = Weighted::zipf(names::GIRLS.len(), 4.0, 1.0);
    let boys = Weighted::zipf(names::BOYS.len(), 4.0, 1.0);
    let profiles = Weighted::from_weights([70.0, 20.0, 8.0, 1.5, 0.5]);
    let mut written = 0usize;
    let mut pupil = 0u32;
    while written < rows {
        pupil += 1;
        let school = 100_000 + (pupil / 300) * 7 + 13;
        let urn = format!("{school:06}");
        let female = rng.random_bool(0.5);
        let forename = if female {
            names::GIRLS[girls.sample(&mut rng)]
        } else {
            names::BOYS[boys.sample(&mut rng)]
        };
        let surname = surnames.get(surnames.sample(&mut rng)).to_string();
        let dob = NaiveDate::from_ymd_opt(2010, 9, 1).unwrap_or(NaiveDate::MIN)
            + Days::new(rng.random_range(0..365 * 11));
        let body = format!(
            "355{:04}{:02}{:03}",
            2000 + (pupil / 300) % 10_000,
            dob.year() % 100,
            pupil % 1000
        );
        let upn = upn_check_letter(&body)
            .map(|c| format!("{c}{body}"))
            .unwrap_or_default();
        let address = format!(
            "{} {} Road",
            rng.random_range(1..200),
            names::STREETS[rng.random_range(0..names::STREETS.len())]
        );
        let postcode = format!(
            "M{} {}{}{}",
            [5, 6, 7, 27, 28, 30][rng.random_range(0..6)],
            rng.random_range(1..10),
            UPN_ALPHABET[rng.random_range(0..20)] as char,
            UPN_ALPHABET[rng.random_range(0..20)] as char
        );
        let profile = [
            Profile::Good,
            Profile::Typical,
            Profile::Persistent,
            Profile::FallingAway,
            Profile::Severe,
        ][profiles.sample(&mut rng)];
        let marks = pupil_marks(&mut rng, profile, days.len());
        let dob_text = uk_date(dob);
        let gender = if female { "F" } else { "M" };
        let year = format!("Y{}", (2024 - dob.year()).clamp(1, 11));
        'days: for (d, pair) in marks.iter().enumerate() {
            for (s, session) in ["AM", "PM"].iter().enumerate() {
                if written == rows {
                    break 'days;
                }
                sink.row(
                    [
                        &urn,
                        "1A",
                        &upn,
                        &surname,
                        forename,
                        &dob_text,
                        gender,
                        &year,
                        &address,
                        &postcode,
                        &day_text[d],
                        session,
                        pair[s],
                    ],
                    days[d],
                )?;
                written += 1;
            }
        }
    }
    sink.finish()?;
    Ok(columns)
}

/// Where `write_attendance` puts rows.
trait RowSink {
    fn header(&mut self, header: &[&str]) -> io::Result<()>;
    /// One row in `CSV_HEADER` order; `date` is the session date (column 10).
    fn row(&mut self, row: [&str; 13], date: NaiveDate) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

struct CsvSink {
    w: csv::Writer<BufWriter<File>>,
}

impl CsvSink {
    fn new(path: &Path) -> io::Result<CsvSink> {
        Ok(CsvSink {
            w: csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, File::create(path)?)),
        })
    }
}

impl RowSink for CsvSink {
    fn header(&mut self, header: &[&str]) -> io::Result<()> {
        Ok(self.w.write_record(header)?)
    }
    fn row(&mut self, row: [&str; 13], _date: NaiveDate) -> io::Result<()> {
        Ok(self.w.write_record(row)?)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// An XLSX sheet written row by row to a temporary file (constant memory), with the
/// session date as a native Excel date and the date of birth as text, so both paths
/// of the reader are exercised.
struct XlsxSink {
    path: std::path::PathBuf,
    workbook: rust_xlsxwriter::Workbook,
    date_format: rust_xlsxwriter::Format,
    next_row: u32,
}

fn xlsx_io(e: rust_xlsxwriter::XlsxError) -> io::Error {
    io::Error::other(e.to_string())
}

impl XlsxSink {
    fn new(path: &Path) -> io::Result<XlsxSink> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        workbook.set_properties(&super::housing::fixed_properties());
        let sheet = workbook
            .add_worksheet_with_constant_memory()
            .map_err(xlsx_io)?;
        sheet.set_name("Attendance").map_err(xlsx_io)?;
        Ok(XlsxSink {
            path: path.to_path_buf(),
            workbook,
            date_format: rust_xlsxwriter::Format::new().set_num_format("dd/mm/yyyy"),
            next_row: 0,
        })
    }

    fn sheet(&mut self) -> io::Result<&mut rust_xlsxwriter::Worksheet> {
        self.workbook.worksheet_from_index(0).map_err(xlsx_io)
    }
}

impl RowSink for XlsxSink {
    fn header(&mut self, header: &[&str]) -> io::Result<()> {
        let row = self.next_row;
        let sheet = self.sheet()?;
        for (c, h) in header.iter().enumerate() {
            sheet.write_string(row, c as u16, *h).map_err(xlsx_io)?;
        }
        self.next_row += 1;
        Ok(())
    }

    fn row(&mut self, row: [&str; 13], date: NaiveDate) -> io::Result<()> {
        let r = self.next_row;
        let excel_date = rust_xlsxwriter::ExcelDateTime::from_ymd(
            date.year() as u16,
            date.month() as u8,
            date.day() as u8,
        )
        .map_err(xlsx_io)?;
        let XlsxSink {
            workbook,
            date_format,
            ..
        } = self;
        let sheet = workbook.worksheet_from_index(0).map_err(xlsx_io)?;
        for (c, v) in row.iter().enumerate() {
            if c == 10 {
                sheet
                    .write_datetime_with_format(r, c as u16, &excel_date, date_format)
                    .map_err(xlsx_io)?;
            } else if c == 0 {
                // URNs are numbers in most MIS spreadsheets.
                let n: f64 = v.parse().unwrap_or(0.0);
                sheet.write_number(r, c as u16, n).map_err(xlsx_io)?;
            } else if !v.is_empty() {
                sheet.write_string(r, c as u16, *v).map_err(xlsx_io)?;
            }
        }
        self.next_row += 1;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let path = self.path.clone();
        self.workbook.save(&path).map_err(xlsx_io)
    }
}
