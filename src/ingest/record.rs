//! Turns one row of cells (indexed by canonical column) into a typed [`Record`] of
//! its feed kind, or a [`RowProblem`] saying which column is wrong and why.
//!
//! The same code serves every format: the readers only decide where each
//! canonical column's cell comes from.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

use super::values::{self, clean};
use super::{columns, Cell, Column, RowOutcome};
use crate::config::SourceSettings;
use crate::domain::UnknownValue;
use crate::domain::{
    AttendanceMark, CaseMember, CaseRole, DaPerson, DaRole, FeedKind, HousingNotice, Mark,
    NhsNumber, PersonMention, Postcode, Record, RowProblem, Upn, Uprn, Urn,
};

/// Builds records for one file, carrying what spans rows: the police per-notification
/// row counter and the workbook's date epoch.
pub(crate) struct Builder {
    kind: FeedKind,
    cols: &'static [Column],
    /// Which canonical columns the file has (mapped in the header).
    present: Vec<bool>,
    is_1904: bool,
    /// police_da: rows seen so far per notification_id (as read), for `N` in the
    /// mention key. Counts every row of the notification, quarantined ones too.
    police_counts: HashMap<String, u32>,
    /// The most characters each canonical column's value may have.
    max_len: Vec<usize>,
}

impl Builder {
    /// A builder for one file of `source`; `present` says which canonical columns
    /// the file has.
    pub(crate) fn new(source: &SourceSettings, present: Vec<bool>) -> Builder {
        let cols = columns(source.kind);
        Builder {
            kind: source.kind,
            cols,
            present,
            is_1904: false,
            police_counts: HashMap::new(),
            max_len: cols
                .iter()
                .map(|c| {
                    source
                        .limits
                        .max_lengths
                        .get(c.name)
                        .copied()
                        .unwrap_or_else(|| default_max_len(c.name))
                })
                .collect(),
        }
    }

    /// Numbers in date columns use the 1904 epoch (some Mac workbooks).
    pub(crate) fn set_1904(&mut self, is_1904: bool) {
        self.is_1904 = is_1904;
    }

    pub(crate) fn kind(&self) -> FeedKind {
        self.kind
    }

    /// The outcome of one row (`cells` indexed by canonical column), or `None` for a
    /// blank row.
    pub(crate) fn build(&mut self, row: u64, cells: &[Cell<'_>]) -> Option<RowOutcome> {
        if cells.iter().all(Cell::is_blank) {
            return None;
        }
        let r = Row {
            cells,
            row,
            cols: self.cols,
            present: &self.present,
            is_1904: self.is_1904,
            max_len: &self.max_len,
        };
        // police_da checks lengths itself, after counting the row for its notification.
        if self.kind != FeedKind::PoliceDa {
            if let Some(problem) = r.too_long(0..self.cols.len()) {
                return Some(Err(problem));
            }
        }
        Some(match self.kind {
            FeedKind::Attendance => attendance(&r),
            FeedKind::PoliceDa => police(&r, &mut self.police_counts),
            FeedKind::Housing => housing(&r),
            FeedKind::Assessment => assessment(&r),
        })
    }

    /// A problem for a row that could not even be split into cells (a JSON value that
    /// is not an object).
    pub(crate) fn whole_row_problem(row: u64, reason: String, raw: String) -> RowProblem {
        RowProblem {
            row,
            column: None,
            reason,
            raw,
        }
    }
}

/// The most characters a canonical column's value may have unless the source says
/// otherwise (`[source.max_lengths]`): names 100, addresses and free text 255,
/// everything else (ids, codes, dates, enumerations, numbers) 64. Generous for any
/// real value, and small enough that a runaway cell cannot become a stored id.
pub(crate) fn default_max_len(column: &str) -> usize {
    match column {
        "forename" | "surname" | "tenant_forename" | "tenant_surname" => 100,
        "address_line1" | "closure_reason" | "lead_professional" | "locality" | "tenure" => 255,
        _ => 64,
    }
}

/// One row being typed.
struct Row<'r, 'a> {
    cells: &'r [Cell<'a>],
    row: u64,
    cols: &'static [Column],
    present: &'r [bool],
    is_1904: bool,
    max_len: &'r [usize],
}

type Res<T> = Result<T, RowProblem>;

impl<'a> Row<'_, 'a> {
    fn cell(&self, c: usize) -> Cell<'a> {
        self.cells.get(c).copied().unwrap_or_default()
    }

    fn name(&self, c: usize) -> &'static str {
        self.cols.get(c).map_or("?", |col| col.name)
    }

    /// The first cell longer than its column allows, as a problem (no value in
    /// the reason).
    fn too_long(&self, columns: std::ops::Range<usize>) -> Option<RowProblem> {
        columns.into_iter().find_map(|c| {
            let Cell::Text(s) = self.cell(c) else {
                return None;
            };
            let limit = self.max_len.get(c).copied().unwrap_or(usize::MAX);
            // Bytes first: a value within the limit in bytes is within it in characters.
            (s.len() > limit && s.trim().chars().count() > limit).then(|| {
                self.problem(
                    c,
                    format!(
                        "{}: longer than {limit} characters; if the sender's values really are this long, raise it in [source.max_lengths]",
                        self.name(c)
                    ),
                )
            })
        })
    }

    /// The row's mapped cells as read, as a JSON object (canonical column → text).
    /// A cell longer than its column allows is kept only up to that length, marked
    /// as cut, so a runaway cell is not stored whole.
    fn raw(&self) -> String {
        let mut map = serde_json::Map::new();
        for (i, col) in self.cols.iter().enumerate() {
            if self.present.get(i).copied().unwrap_or(false) {
                let cell = self.cell(i);
                let text = cell.as_text();
                let limit = self.max_len.get(i).copied().unwrap_or(usize::MAX);
                let kept = match text.char_indices().nth(limit) {
                    Some((cut, _)) => format!("{}… [cut at {limit} characters]", &text[..cut]),
                    None => text.into_owned(),
                };
                map.insert(col.name.to_string(), serde_json::Value::String(kept));
            }
        }
        serde_json::Value::Object(map).to_string()
    }

    fn problem(&self, c: usize, reason: String) -> RowProblem {
        RowProblem {
            row: self.row,
            column: Some(self.name(c).to_string()),
            reason,
            raw: self.raw(),
        }
    }

    /// A value outside an enumeration: the reason names what is expected, never
    /// the value itself (reasons go to the admin's mail and the rejected folder).
    fn unknown(&self, c: usize, e: &UnknownValue) -> RowProblem {
        self.problem(
            c,
            format!(
                "{}: not a known value (expected one of: {})",
                self.name(c),
                e.expected
            ),
        )
    }

    fn missing(&self, c: usize) -> RowProblem {
        self.problem(c, format!("{} is empty; a value is required", self.name(c)))
    }

    fn invalid(&self, c: usize, what: &str) -> RowProblem {
        self.problem(
            c,
            format!("{}: the cell holds {what}, not a value", self.name(c)),
        )
    }

    /// Trimmed, whitespace-collapsed text; `None` when empty.
    fn text(&self, c: usize) -> Res<Option<String>> {
        match self.cell(c) {
            Cell::Invalid(what) => Err(self.invalid(c, what)),
            Cell::Text(s) => Ok(clean(s)),
            Cell::Empty => Ok(None),
            other => Ok(clean(&other.as_text())),
        }
    }

    /// The trimmed value for a parser, borrowed from the row when it is text (no
    /// allocation on the fast path); `None` when empty.
    fn value(&self, c: usize) -> Res<Option<Cow<'a, str>>> {
        match self.cell(c) {
            Cell::Invalid(what) => Err(self.invalid(c, what)),
            Cell::Empty => Ok(None),
            Cell::Text(s) => {
                let t = s.trim();
                Ok((!t.is_empty()).then_some(Cow::Borrowed(t)))
            }
            other => {
                let t = other.as_text().trim().to_string();
                Ok((!t.is_empty()).then_some(Cow::Owned(t)))
            }
        }
    }

    fn required_text(&self, c: usize) -> Res<String> {
        self.text(c)?.ok_or_else(|| self.missing(c))
    }

    fn date(&self, c: usize) -> Res<Option<NaiveDate>> {
        let name = self.name(c);
        match self.cell(c) {
            Cell::Empty => Ok(None),
            Cell::Text(s) if s.trim().is_empty() => Ok(None),
            Cell::Text(s) => values::parse_date(s).map(Some).map_err(|_| {
                self.problem(
                    c,
                    format!("{name}: not a date (expected {})", values::DATE_FORMS),
                )
            }),
            Cell::Int(i) => self.serial(c, i as f64).map(|dt| Some(dt.date())),
            Cell::Float(f) => self.serial(c, f).map(|dt| Some(dt.date())),
            Cell::DateTime(dt) => Ok(Some(dt.date())),
            Cell::Bool(_) => Err(self.problem(
                c,
                format!(
                    "{name}: a TRUE/FALSE cell is not a date (expected {})",
                    values::DATE_FORMS
                ),
            )),
            Cell::Invalid(what) => Err(self.invalid(c, what)),
        }
    }

    fn serial(&self, c: usize, f: f64) -> Res<chrono::NaiveDateTime> {
        values::excel_serial(f, self.is_1904).ok_or_else(|| {
            self.problem(
                c,
                format!(
                    "{}: the number is not a valid Excel date serial (expected {})",
                    self.name(c),
                    values::DATE_FORMS
                ),
            )
        })
    }

    fn required_date(&self, c: usize) -> Res<NaiveDate> {
        self.date(c)?.ok_or_else(|| self.missing(c))
    }

    fn required_datetime(&self, c: usize) -> Res<DateTime<Utc>> {
        let name = self.name(c);
        match self.cell(c) {
            Cell::Text(s) if !s.trim().is_empty() => values::parse_datetime(s).map_err(|_| {
                self.problem(
                    c,
                    format!(
                        "{name}: not a date or datetime (expected {})",
                        values::DATETIME_FORMS
                    ),
                )
            }),
            Cell::Empty | Cell::Text(_) => Err(self.missing(c)),
            Cell::Int(i) => self.serial(c, i as f64).map(values::london_to_utc),
            Cell::Float(f) => self.serial(c, f).map(values::london_to_utc),
            Cell::DateTime(dt) => Ok(values::london_to_utc(dt)),
            Cell::Bool(_) => Err(self.problem(
                c,
                format!(
                    "{name}: a TRUE/FALSE cell is not a date (expected {})",
                    values::DATETIME_FORMS
                ),
            )),
            Cell::Invalid(what) => Err(self.invalid(c, what)),
        }
    }

    /// An enumeration; an unknown value quarantines the row even when optional.
    fn enumeration<T: FromStr<Err = UnknownValue>>(&self, c: usize) -> Res<Option<T>> {
        match self.value(c)? {
            None => Ok(None),
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|e: UnknownValue| self.unknown(c, &e)),
        }
    }

    fn required_enum<T: FromStr<Err = UnknownValue>>(&self, c: usize) -> Res<T> {
        self.enumeration(c)?.ok_or_else(|| self.missing(c))
    }

    fn mark(&self, c: usize) -> Res<Mark> {
        let t = self.value(c)?.ok_or_else(|| self.missing(c))?;
        Mark::parse(&t).map_err(|e| self.unknown(c, &e))
    }

    /// A school URN; a value that is given but is not a URN quarantines the row.
    fn urn(&self, c: usize) -> Res<Option<Urn>> {
        match self.value(c)? {
            None => Ok(None),
            Some(t) => Urn::parse(&t).map(Some).map_err(|_| {
                self.problem(c, format!("{}: not a school URN (6 digits)", self.name(c)))
            }),
        }
    }

    fn required_urn(&self, c: usize) -> Res<Urn> {
        self.urn(c)?.ok_or_else(|| self.missing(c))
    }

    /// Identifiers that carry their own validity flag: kept even when invalid.
    fn postcode(&self, c: usize) -> Res<Option<Postcode>> {
        Ok(self.value(c)?.and_then(|t| Postcode::parse(&t)))
    }

    fn required_postcode(&self, c: usize) -> Res<Postcode> {
        self.postcode(c)?.ok_or_else(|| self.missing(c))
    }

    fn upn(&self, c: usize) -> Res<Option<Upn>> {
        Ok(self.value(c)?.and_then(|t| Upn::parse(&t)))
    }

    fn nhs(&self, c: usize) -> Res<Option<NhsNumber>> {
        Ok(self.value(c)?.and_then(|t| NhsNumber::parse(&t)))
    }

    /// An unparseable UPRN is dropped (the row is kept): it is only a matching aid.
    fn uprn(&self, c: usize) -> Res<Option<Uprn>> {
        Ok(self.value(c)?.and_then(|t| Uprn::parse(&t).ok()))
    }

    /// The pair (forename, surname) where at least one must be given.
    fn names(&self, fore: usize, sur: usize) -> Res<(Option<String>, Option<String>)> {
        let f = self.text(fore)?;
        let s = self.text(sur)?;
        if f.is_none() && s.is_none() {
            return Err(self.problem(
                fore,
                format!(
                    "neither {} nor {} is given; at least one is required",
                    self.name(fore),
                    self.name(sur)
                ),
            ));
        }
        Ok((f, s))
    }

    fn count(&self, c: usize) -> Res<Option<u32>> {
        let Some(t) = self.value(c)? else {
            return Ok(None);
        };
        if let Ok(n) = t.parse::<u32>() {
            return Ok(Some(n));
        }
        match t.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
                Ok(Some(f as u32))
            }
            _ => Err(self.problem(
                c,
                format!("{}: not a whole number of 0 or more", self.name(c)),
            )),
        }
    }
}

// Column positions, matching the tables in mod.rs (checked by a test).
mod att {
    pub const URN: usize = 0;
    pub const UPN: usize = 1;
    pub const FORENAME: usize = 2;
    pub const SURNAME: usize = 3;
    pub const DOB: usize = 4;
    pub const GENDER: usize = 5;
    pub const ADDRESS: usize = 6;
    pub const POSTCODE: usize = 7;
    pub const DATE: usize = 8;
    pub const SESSION: usize = 9;
    pub const MARK: usize = 10;
}

mod pol {
    pub const NOTIFICATION: usize = 0;
    pub const INCIDENT_AT: usize = 1;
    pub const ROLE: usize = 2;
    pub const FORENAME: usize = 3;
    pub const SURNAME: usize = 4;
    pub const DOB: usize = 5;
    pub const GENDER: usize = 6;
    pub const ADDRESS: usize = 7;
    pub const POSTCODE: usize = 8;
    pub const UPRN: usize = 9;
    pub const DASH: usize = 10;
    pub const CRIME_REF: usize = 11;
    pub const URN: usize = 12;
    pub const PERSON_REF: usize = 13;
}

mod hou {
    pub const NOTICE: usize = 0;
    pub const TYPE: usize = 1;
    pub const SERVED: usize = 2;
    pub const POSSESSION: usize = 3;
    pub const TENURE: usize = 4;
    pub const ADDRESS: usize = 5;
    pub const POSTCODE: usize = 6;
    pub const UPRN: usize = 7;
    pub const FORENAME: usize = 8;
    pub const SURNAME: usize = 9;
    pub const DOB: usize = 10;
    pub const CHILDREN: usize = 11;
}

mod ass {
    pub const CASE: usize = 0;
    pub const FAMILY: usize = 1;
    pub const PERSON: usize = 2;
    pub const ROLE: usize = 3;
    pub const FORENAME: usize = 4;
    pub const SURNAME: usize = 5;
    pub const DOB: usize = 6;
    pub const GENDER: usize = 7;
    pub const UPN: usize = 8;
    pub const NHS: usize = 9;
    pub const ADDRESS: usize = 10;
    pub const POSTCODE: usize = 11;
    pub const UPRN: usize = 12;
    pub const REFERRAL: usize = 13;
    pub const OPENED: usize = 14;
    pub const CLOSED: usize = 15;
    pub const CLOSURE: usize = 16;
    pub const LEVEL: usize = 17;
    pub const LOCALITY: usize = 18;
    pub const LEAD: usize = 19;
}

fn attendance(r: &Row<'_, '_>) -> RowOutcome {
    use att::*;
    let school_urn = r.required_urn(URN)?;
    let upn = r.upn(UPN)?;
    let forename = r.required_text(FORENAME)?;
    let surname = r.required_text(SURNAME)?;
    let dob = r.required_date(DOB)?;
    let gender = r.text(GENDER)?;
    let address_line1 = r.text(ADDRESS)?;
    let postcode = r.postcode(POSTCODE)?;
    let date = r.required_date(DATE)?;
    let session = r.required_enum(SESSION)?;
    let mark = r.mark(MARK)?;
    let mention_key = match &upn {
        Some(u) => u.as_str().to_string(),
        None => pupil_key(school_urn, &surname, &forename, dob),
    };
    Ok(Record::Attendance(AttendanceMark {
        school_urn,
        pupil: PersonMention {
            mention_key,
            forename: Some(forename),
            surname: Some(surname),
            dob: Some(dob),
            gender,
            address_line1,
            postcode,
            uprn: None,
            upn,
            nhs_number: None,
            role: "pupil".to_string(),
            school_urn: Some(school_urn),
        },
        date,
        session,
        mark,
    }))
}

/// `URN/SURNAME/FORENAME/YYYY-MM-DD`, built in one buffer (this is on the CSV fast
/// path for pupils without a UPN).
fn pupil_key(urn: Urn, surname: &str, forename: &str, dob: NaiveDate) -> String {
    use chrono::Datelike;
    use std::fmt::Write;
    let mut key = String::with_capacity(surname.len() + forename.len() + 20);
    fn push_upper(key: &mut String, name: &str) {
        if name.is_ascii() {
            key.push_str(&name.to_ascii_uppercase());
        } else {
            key.extend(name.chars().flat_map(char::to_uppercase));
        }
    }
    let _ = write!(key, "{urn}/");
    push_upper(&mut key, surname);
    key.push('/');
    push_upper(&mut key, forename);
    let _ = write!(
        key,
        "/{:04}-{:02}-{:02}",
        dob.year(),
        dob.month(),
        dob.day()
    );
    key
}

fn police(r: &Row<'_, '_>, counts: &mut HashMap<String, u32>) -> RowOutcome {
    use pol::*;
    // Count the row for its notification before anything else can quarantine it:
    // N is the order among *all* rows of the notification in the file. A runaway
    // notification id names no real notification, so it is not counted.
    if let Some(problem) = r.too_long(NOTIFICATION..NOTIFICATION + 1) {
        return Err(problem);
    }
    let notification = r.text(NOTIFICATION)?;
    let n = notification.as_ref().map(|id| match counts.get_mut(id) {
        Some(c) => {
            *c += 1;
            *c
        }
        None => {
            counts.insert(id.clone(), 1);
            1
        }
    });
    let (Some(notification_id), Some(n)) = (notification, n) else {
        return Err(r.missing(NOTIFICATION));
    };
    if let Some(problem) = r.too_long(0..r.cols.len()) {
        return Err(problem);
    }
    let incident_at = r.required_datetime(INCIDENT_AT)?;
    let role: DaRole = r.required_enum(ROLE)?;
    let (forename, surname) = r.names(FORENAME, SURNAME)?;
    let dob = r.date(DOB)?;
    let gender = r.text(GENDER)?;
    let address_line1 = r.required_text(ADDRESS)?;
    let postcode = r.required_postcode(POSTCODE)?;
    let uprn = r.uprn(UPRN)?;
    let dash_risk = r.enumeration(DASH)?;
    let crime_ref = r.text(CRIME_REF)?;
    let school_urn = r.urn(URN)?;
    let person_ref = r.text(PERSON_REF)?;
    let person_key = person_ref.unwrap_or_else(|| n.to_string());
    Ok(Record::PoliceDa(DaPerson {
        person: PersonMention {
            mention_key: format!("{notification_id}/{person_key}"),
            forename,
            surname,
            dob,
            gender,
            address_line1: Some(address_line1.clone()),
            postcode: Some(postcode.clone()),
            uprn,
            upn: None,
            nhs_number: None,
            role: role.as_str().to_string(),
            school_urn: if role == DaRole::Child {
                school_urn
            } else {
                None
            },
        },
        notification_id,
        person_key,
        incident_at,
        role,
        address_line1,
        postcode,
        uprn,
        dash_risk,
        crime_ref,
        school_urn,
    }))
}

fn housing(r: &Row<'_, '_>) -> RowOutcome {
    use hou::*;
    let notice_id = r.required_text(NOTICE)?;
    let notice_type = r.required_enum(TYPE)?;
    let served_on = r.required_date(SERVED)?;
    let possession_date = r.date(POSSESSION)?;
    let tenure = r.enumeration(TENURE)?;
    let address_line1 = r.required_text(ADDRESS)?;
    let postcode = r.required_postcode(POSTCODE)?;
    let uprn = r.uprn(UPRN)?;
    let (forename, surname) = r.names(FORENAME, SURNAME)?;
    let dob = r.date(DOB)?;
    let children_in_household = r.count(CHILDREN)?;
    Ok(Record::Housing(HousingNotice {
        tenant: PersonMention {
            mention_key: notice_id.clone(),
            forename,
            surname,
            dob,
            gender: None,
            address_line1: Some(address_line1.clone()),
            postcode: Some(postcode.clone()),
            uprn,
            upn: None,
            nhs_number: None,
            role: "tenant".to_string(),
            school_urn: None,
        },
        notice_id,
        notice_type,
        served_on,
        possession_date,
        tenure,
        address_line1,
        postcode,
        uprn,
        children_in_household,
    }))
}

fn assessment(r: &Row<'_, '_>) -> RowOutcome {
    use ass::*;
    let case_id = r.required_text(CASE)?;
    let family_id = r.required_text(FAMILY)?;
    let person_id = r.required_text(PERSON)?;
    let role: CaseRole = r.required_enum(ROLE)?;
    let (forename, surname) = r.names(FORENAME, SURNAME)?;
    let dob = r.date(DOB)?;
    if role == CaseRole::Child && dob.is_none() {
        return Err(r.problem(
            DOB,
            "dob is empty; a date of birth is required for a person whose role is child".into(),
        ));
    }
    let gender = r.text(GENDER)?;
    let upn = r.upn(UPN)?;
    let nhs_number = r.nhs(NHS)?;
    let address_line1 = r.text(ADDRESS)?;
    let postcode = r.postcode(POSTCODE)?;
    let uprn = r.uprn(UPRN)?;
    let referral_date = r.required_date(REFERRAL)?;
    let opened_on = r.date(OPENED)?;
    let closed_on = r.date(CLOSED)?;
    let closure_reason = r.enumeration(CLOSURE)?;
    let level = r.enumeration(LEVEL)?;
    let locality = r.text(LOCALITY)?;
    let lead_professional = r.text(LEAD)?;
    Ok(Record::Assessment(CaseMember {
        person: PersonMention {
            mention_key: person_id.clone(),
            forename,
            surname,
            dob,
            gender,
            address_line1,
            postcode,
            uprn,
            upn,
            nhs_number,
            role: role.as_str().to_string(),
            school_urn: None,
        },
        case_id,
        family_id,
        person_id,
        role,
        referral_date,
        opened_on,
        closed_on,
        closure_reason,
        level,
        locality,
        lead_professional,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{ASSESSMENT, ATTENDANCE, HOUSING, POLICE_DA};

    #[test]
    fn column_constants_match_the_tables() {
        assert_eq!(ATTENDANCE[att::URN].name, "school_urn");
        assert_eq!(ATTENDANCE[att::MARK].name, "mark");
        assert_eq!(ATTENDANCE[att::POSTCODE].name, "postcode");
        assert_eq!(POLICE_DA[pol::PERSON_REF].name, "person_ref");
        assert_eq!(POLICE_DA[pol::URN].name, "school_urn");
        assert_eq!(POLICE_DA[pol::DASH].name, "dash_risk");
        assert_eq!(HOUSING[hou::CHILDREN].name, "children_in_household");
        assert_eq!(HOUSING[hou::FORENAME].name, "tenant_forename");
        assert_eq!(ASSESSMENT[ass::LEAD].name, "lead_professional");
        assert_eq!(ASSESSMENT[ass::REFERRAL].name, "referral_date");
        assert_eq!(ASSESSMENT[ass::NHS].name, "nhs_number");
    }

    fn build(kind: FeedKind, cells: &[Cell<'_>]) -> Option<RowOutcome> {
        let n = columns(kind).len();
        let source = super::super::test_source(kind, crate::domain::Format::Csv, &[]);
        let mut b = Builder::new(&source, vec![true; n]);
        b.build(9, cells)
    }

    #[test]
    fn blank_rows_are_skipped() {
        let cells = [Cell::Text("  "); 11];
        assert!(build(FeedKind::Attendance, &cells).is_none());
    }

    #[test]
    fn spreadsheet_numbers_and_dates_feed_typed_columns() {
        let dob = NaiveDate::from_ymd_opt(2015, 5, 6)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let cells = [
            Cell::Float(100001.0),
            Cell::Empty,
            Cell::Text("  Zoë  Ann "),
            Cell::Text("smith"),
            Cell::DateTime(dob),
            Cell::Empty,
            Cell::Empty,
            Cell::Text("m6 5ab"),
            Cell::Int(45658),
            Cell::Text("am"),
            Cell::Text("/"),
        ];
        let Some(Ok(Record::Attendance(a))) = build(FeedKind::Attendance, &cells) else {
            panic!("expected a record");
        };
        assert_eq!(a.school_urn.to_string(), "100001");
        assert_eq!(a.pupil.mention_key, "100001/SMITH/ZOË ANN/2015-05-06");
        assert_eq!(a.pupil.forename.as_deref(), Some("Zoë Ann"));
        assert_eq!(a.pupil.postcode.unwrap().as_str(), "M6 5AB");
        assert_eq!(a.date, NaiveDate::from_ymd_opt(2025, 1, 1).unwrap());
    }

    #[test]
    fn spreadsheet_errors_quarantine_with_the_column() {
        let mut cells = [Cell::Text("x"); 12];
        cells[hou::SERVED] = Cell::Invalid("the spreadsheet error #N/A");
        cells[hou::TYPE] = Cell::Text("Section_21");
        let Some(Err(p)) = build(FeedKind::Housing, &cells) else {
            panic!("expected a problem");
        };
        assert_eq!(p.column.as_deref(), Some("served_on"));
        assert!(p.reason.contains("#N/A"), "{}", p.reason);
        assert_eq!(p.row, 9);
    }
}
