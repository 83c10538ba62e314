//! Housing eviction and possession notices over the last year, as the council's
//! housing-options team keeps them in a spreadsheet: two blank rows above
//! the header, served dates as native Excel dates, possession dates as text.
//!
//! Some households go through the whole chain (notice, claim, order, warrant) and a
//! few have a bailiff date within the next fortnight.

use std::io;
use std::path::Path;

use chrono::{Datelike, Days, NaiveDate};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, XlsxError};

use super::names;
use super::population::{date_between, Household, Population};
use super::{uk_date, GeneratedFile, Truth, SOURCE_HOUSING};
use crate::domain::{NoticeType, Tenure};

/// The spreadsheet's headers for the canonical columns (canonical → header).
pub const COLUMNS: &[(&str, &str)] = &[
    ("notice_id", "Case Ref"),
    ("notice_type", "Notice Type"),
    ("served_on", "Date Served"),
    ("possession_date", "Possession/Bailiff Date"),
    ("tenure", "Tenure"),
    ("address_line1", "Property Address"),
    ("postcode", "Property Postcode"),
    ("uprn", "UPRN"),
    ("tenant_forename", "Tenant First Name"),
    ("tenant_surname", "Tenant Surname"),
    ("tenant_dob", "Tenant DOB"),
    ("children_in_household", "No. of Children"),
];

/// The sheet the notices are on.
pub const SHEET: &str = "Notices";

const HEADER: &[&str] = &[
    "Case Ref",
    "Notice Type",
    "Date Served",
    "Possession/Bailiff Date",
    "Tenure",
    "Property Address",
    "Property Postcode",
    "UPRN",
    "Tenant First Name",
    "Tenant Surname",
    "Tenant DOB",
    "No. of Children",
    "Officer Notes",
];

/// One notice, before it is written.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub family: usize,
    /// The person index of the tenant named on it.
    pub tenant: usize,
    pub kind: NoticeType,
    pub tenure: Tenure,
    pub served_on: NaiveDate,
    pub possession_date: Option<NaiveDate>,
    pub address: usize,
    pub children: usize,
}

/// Document properties with a fixed creation time: rust_xlsxwriter stamps the
/// current time otherwise, and the file would differ on every run.
pub(crate) fn fixed_properties() -> DocProperties {
    let properties = DocProperties::new().set_author("kinlink demo");
    match ExcelDateTime::from_ymd(2025, 1, 1) {
        Ok(created) => properties.set_creation_datetime(&created),
        Err(_) => properties,
    }
}

fn days_after(rng: &mut ChaCha8Rng, d: NaiveDate, min: u64, max: u64) -> NaiveDate {
    d + Days::new(rng.random_range(min..=max))
}

/// The date possession is sought, or the bailiff date, for a notice served on `d`.
fn possession_date(rng: &mut ChaCha8Rng, kind: NoticeType, d: NaiveDate) -> Option<NaiveDate> {
    match kind {
        NoticeType::Section21 => Some(days_after(rng, d, 61, 68)),
        NoticeType::Section8 => Some(days_after(rng, d, 28, 120)),
        NoticeType::NoticeToQuit => Some(days_after(rng, d, 28, 35)),
        NoticeType::PossessionClaim => Some(days_after(rng, d, 42, 70)),
        NoticeType::PossessionOrder => Some(days_after(rng, d, 14, 42)),
        NoticeType::Warrant => Some(days_after(rng, d, 14, 21)),
        NoticeType::Other => None,
    }
}

/// Chooses the households served with notices in the year before `as_of`.
pub(crate) fn plan(pop: &Population, rng: &mut ChaCha8Rng) -> Vec<Notice> {
    let as_of = pop.as_of;
    let yesterday = as_of - Days::new(1);
    let year_ago = as_of - Days::new(365);
    let mut children: Vec<usize> = Vec::new();
    let mut adults_only: Vec<usize> = Vec::new();
    let mut apart: Vec<usize> = Vec::new();
    for (i, f) in pop.families.iter().enumerate() {
        match f.kind {
            Household::AdultsOnly => adults_only.push(i),
            Household::LivingApart => apart.push(i),
            _ => children.push(i),
        }
    }
    children.shuffle(rng);
    adults_only.shuffle(rng);
    apart.shuffle(rng);
    let main = children.len() + adults_only.len();
    let n = ((main as f64 * 0.035).round() as usize).max(4);
    let with_children = (n * 3 / 4).min(children.len());
    let mut households: Vec<usize> = children[..with_children].to_vec();
    households.extend(adults_only.iter().take(n - with_children));
    // Some ex-partners living elsewhere face eviction at their own address.
    households.extend(apart.iter().take(apart.len() / 10));

    let urgent = (households.len() / 15).max(2);
    let mut notices = Vec::new();
    for (k, &fi) in households.iter().enumerate() {
        let f = &pop.families[fi];
        let Some(tenant) = pop.adults(f).next() else {
            continue;
        };
        let tenure = match rng.random::<f64>() {
            x if x < 0.55 => Tenure::Private,
            x if x < 0.75 => Tenure::Council,
            x if x < 0.97 => Tenure::HousingAssociation,
            _ => Tenure::Other,
        };
        let first = match tenure {
            Tenure::Private if rng.random_bool(0.55) => NoticeType::Section21,
            Tenure::Private => NoticeType::Section8,
            Tenure::Other => NoticeType::NoticeToQuit,
            _ if rng.random_bool(0.8) => NoticeType::Section8,
            _ if rng.random_bool(0.5) => NoticeType::NoticeToQuit,
            _ => NoticeType::Other,
        };
        let chain = [
            NoticeType::PossessionClaim,
            NoticeType::PossessionOrder,
            NoticeType::Warrant,
        ];
        let mut steps: Vec<(NoticeType, NaiveDate, Option<NaiveDate>)> = Vec::new();
        if k < urgent {
            // The whole chain, ending with a bailiff date within the next 14 days.
            let mut d = as_of - Days::new(rng.random_range(200..300));
            steps.push((first, d, possession_date(rng, first, d)));
            for kind in chain {
                d = days_after(rng, d, 40, 60);
                steps.push((kind, d, possession_date(rng, kind, d)));
            }
            if let Some(last) = steps.last_mut() {
                last.1 = as_of - Days::new(rng.random_range(2..=10));
                last.2 = Some(as_of + Days::new(rng.random_range(1..=14)));
            }
        } else {
            let mut d = date_between(rng, year_ago, yesterday);
            steps.push((first, d, possession_date(rng, first, d)));
            let mut p = 0.4;
            for kind in chain {
                if !rng.random_bool(p) {
                    break;
                }
                d = days_after(rng, d, 30, 90);
                if d > yesterday {
                    break;
                }
                steps.push((kind, d, possession_date(rng, kind, d)));
                p = 0.55;
            }
        }
        let children_count = pop.children(f).count();
        for (kind, served_on, possession) in steps {
            // Not every officer records the date on every stage.
            let possession =
                possession.filter(|_| kind == NoticeType::Warrant || rng.random_bool(0.8));
            notices.push(Notice {
                family: fi,
                tenant,
                kind,
                tenure,
                served_on,
                possession_date: possession,
                address: f.address_on(served_on),
                children: children_count,
            });
        }
    }
    notices.sort_by(|a, b| a.served_on.cmp(&b.served_on).then(a.family.cmp(&b.family)));
    notices
}

fn xlsx_io(e: XlsxError) -> io::Error {
    io::Error::other(e.to_string())
}

fn excel_date(d: NaiveDate) -> io::Result<ExcelDateTime> {
    ExcelDateTime::from_ymd(d.year() as u16, d.month() as u8, d.day() as u8).map_err(xlsx_io)
}

/// Writes the notices workbook and records each notice's mention.
pub(crate) fn write(
    pop: &Population,
    notices: &[Notice],
    rng: &mut ChaCha8Rng,
    path: &Path,
    truth: &mut Truth,
) -> io::Result<GeneratedFile> {
    let mut workbook = Workbook::new();
    workbook.set_properties(&fixed_properties());
    let sheet = workbook.add_worksheet();
    sheet.set_name(SHEET).map_err(xlsx_io)?;
    let date_format = Format::new().set_num_format("dd/mm/yyyy");
    let bold = Format::new().set_bold();
    // Rows 0 and 1 stay blank, as exports often leave them: the header is the
    // first non-empty row (docs/feeds.md), so a title row above it is not allowed.
    for (c, h) in HEADER.iter().enumerate() {
        sheet
            .write_string_with_format(2, c as u16, *h, &bold)
            .map_err(xlsx_io)?;
    }
    // One notice with no served date, which ingest must quarantine, once the sheet
    // is big enough for it to stay under the 5% limit.
    let bad_at = (notices.len() >= 40).then(|| rng.random_range(0..notices.len()));
    let mut next_id: u32 = rng.random_range(10_000..20_000);
    let mut bad_rows = 0usize;
    // Data rows start under the two blank rows and the header.
    for (r, (k, n)) in (3u32..).zip(notices.iter().enumerate()) {
        let id = format!("HN-{next_id:06}");
        next_id += rng.random_range(1..=9);
        let p = &pop.persons[n.tenant];
        let addr = &pop.addresses[n.address];
        let upper = rng.random_bool(0.3);
        let kind = if rng.random_bool(0.2) {
            n.kind.as_str().to_uppercase()
        } else {
            n.kind.as_str().to_string()
        };
        let tenure = if rng.random_bool(0.2) {
            n.tenure.as_str().to_uppercase()
        } else {
            n.tenure.as_str().to_string()
        };
        let line1 = if upper {
            addr.line1.to_uppercase()
        } else {
            addr.line1.clone()
        };
        let forename = if rng.random_bool(0.05) {
            names::nickname(p.forename, rng)
                .unwrap_or(p.forename)
                .to_string()
        } else {
            p.forename.to_string()
        };
        let c = |i: usize| i as u16;
        sheet.write_string(r, c(0), id.as_str()).map_err(xlsx_io)?;
        sheet.write_string(r, c(1), kind).map_err(xlsx_io)?;
        if bad_at == Some(k) {
            bad_rows += 1;
        } else {
            sheet
                .write_datetime_with_format(r, c(2), &excel_date(n.served_on)?, &date_format)
                .map_err(xlsx_io)?;
        }
        if let Some(d) = n.possession_date {
            sheet.write_string(r, c(3), uk_date(d)).map_err(xlsx_io)?;
        }
        sheet.write_string(r, c(4), tenure).map_err(xlsx_io)?;
        sheet.write_string(r, c(5), line1).map_err(xlsx_io)?;
        sheet
            .write_string(r, c(6), addr.postcode.as_str())
            .map_err(xlsx_io)?;
        if let Some(u) = addr.uprn.filter(|_| rng.random_bool(0.85)) {
            sheet.write_number(r, c(7), u as f64).map_err(xlsx_io)?;
        }
        sheet.write_string(r, c(8), forename).map_err(xlsx_io)?;
        sheet
            .write_string(r, c(9), pop.surname(p))
            .map_err(xlsx_io)?;
        if rng.random_bool(0.7) {
            sheet
                .write_datetime_with_format(r, c(10), &excel_date(p.dob)?, &date_format)
                .map_err(xlsx_io)?;
        }
        // The count is sometimes left blank, more often for households without
        // children.
        if (n.children > 0 || rng.random_bool(0.7)) && rng.random_bool(0.85) {
            sheet
                .write_number(r, c(11), n.children as f64)
                .map_err(xlsx_io)?;
        }
        let note = match n.kind {
            NoticeType::Section8 => "Rent arrears",
            NoticeType::Warrant => "Bailiff appointment booked",
            NoticeType::Section21 => "No-fault notice",
            _ => "",
        };
        if !note.is_empty() {
            sheet.write_string(r, c(12), note).map_err(xlsx_io)?;
        }
        if bad_at != Some(k) {
            truth.add(pop, SOURCE_HOUSING, id, p);
        }
    }
    workbook.save(path).map_err(xlsx_io)?;
    Ok(GeneratedFile {
        source: SOURCE_HOUSING.to_string(),
        path: path.to_path_buf(),
        rows: notices.len(),
        bad_rows,
    })
}
