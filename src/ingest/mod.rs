//! Ingest: one feed file (CSV, XLSX/XLS/ODS or JSON) in, canonical [`Record`]s and
//! quarantined [`RowProblem`]s out. Pure parsing: no database, no network.
//!
//! [`open`] (or [`open_bytes`]) reads the header and maps the source's own column
//! names onto the canonical columns of docs/feeds.md; a file that cannot be used at all
//! comes back as a [`FileRejection`]. [`RowReader::next_batch`] then streams row
//! outcomes in batches, so memory stays bounded whatever the file size (JSON is the
//! exception: the document is parsed whole, as API pages are small).
//!
//! Invariants:
//! - A row is either a record or a problem with its row number, column and the
//!   row's mapped cells as read; nothing is silently dropped except blank rows.
//! - No input panics: every cell goes through a parser that returns an error.

mod csv;
mod json;
mod record;
mod sheet;
pub mod values;

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use chrono::NaiveDateTime;

use crate::config::{SourceSettings, TextEncoding};
use crate::domain::{FeedKind, Format, Record, RowProblem};

use record::Builder;

/// One row's outcome: a record, or the reason it was quarantined.
pub type RowOutcome = Result<Record, RowProblem>;

/// A whole file that cannot be ingested. Nothing from it is stored and the previous
/// data stays in force; the message says exactly why and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FileRejection {
    /// The header lacks one or more required columns.
    #[error("{}", missing_message(.file, .source_name, .missing, .found, .known))]
    MissingColumns {
        file: String,
        source_name: String,
        missing: Vec<MissingColumn>,
        /// The headers the file does have, as written.
        found: Vec<String>,
        /// The header names kinlink knows for this source (canonical columns and
        /// `[source.columns]` entries): only these are quoted in the message.
        known: Vec<String>,
    },
    /// Nothing before the end of the file: no header row.
    #[error(
        "file {file:?} is empty: it has no header row (expected the {kind} columns of docs/feeds.md)"
    )]
    Empty { file: String, kind: FeedKind },
    /// The bytes are not the declared format (corrupt, truncated, wrong type).
    #[error("file {file:?} cannot be parsed as {format}: {detail}")]
    Unparseable {
        file: String,
        format: Format,
        detail: String,
    },
    /// A CSV declared UTF-8 holds bytes that are not UTF-8.
    #[error(
        "file {file:?} is not valid UTF-8: line {line} (byte offset {byte}) holds a byte sequence \
         that is not UTF-8; if source {source_name:?} is a Windows export, set \
         encoding = \"windows-1252\" in its [[source]] settings"
    )]
    NotUtf8 {
        file: String,
        source_name: String,
        line: u64,
        byte: u64,
    },
    /// A CSV file that breaks its source's limits or quoting: a line or field too
    /// long, or a quote left open (see `csv/guard.rs`).
    #[error(
        "file {file:?} of source {source_name:?} is malformed: {problem}; nothing from this file was stored. {fix}"
    )]
    Malformed {
        file: String,
        source_name: String,
        /// The physical line the problem is on (1 = the file's first line).
        line: u64,
        problem: String,
        fix: String,
    },
    /// The configured sheet does not exist.
    #[error(
        "file {file:?} has no sheet named {sheet:?} (the sheets are: {}); fix `sheet` of source {source_name:?}",
        quoted_list(.available)
    )]
    SheetNotFound {
        file: String,
        source_name: String,
        sheet: String,
        available: Vec<String>,
    },
    /// A spreadsheet that would decompress to more than is safe (a zip bomb, or
    /// simply too big to read with bounded memory).
    #[error("file {file:?} is refused before reading: {detail}")]
    TooLarge { file: String, detail: String },
    /// JSON whose records are not where `records_path` says, or not an array.
    #[error("file {file:?} has no records array: {detail}")]
    NoRecords { file: String, detail: String },
    /// The file could not be read from disk.
    #[error("file {file:?} cannot be read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// A required column the header lacks, with what the source's map said to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingColumn {
    /// The canonical column (docs/feeds.md).
    pub canonical: String,
    /// The header that was looked for.
    pub header: String,
    /// Whether `header` came from `[source.columns]` (else it is the canonical name).
    pub mapped: bool,
    /// For "at least one of" pairs, the other column of the pair.
    pub either_with: Option<String>,
}

fn missing_message(
    file: &str,
    source_name: &str,
    missing: &[MissingColumn],
    found: &[String],
    known: &[String],
) -> String {
    let mut out = format!(
        "file {file:?} of source {source_name:?} lacks required column{}: ",
        if missing.len() == 1 { "" } else { "s" }
    );
    for (i, m) in missing.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        if m.mapped {
            out.push_str(&format!(
                "{} is mapped to header {:?} in [source.columns] of source {source_name:?}",
                m.canonical, m.header
            ));
        } else {
            out.push_str(&format!(
                "{} has no entry in [source.columns] of source {source_name:?}, so header {:?} was looked for",
                m.canonical, m.header
            ));
        }
        if let Some(other) = &m.either_with {
            out.push_str(&format!(
                " (at least one of {} and {other} is needed)",
                m.canonical
            ));
        }
    }
    out.push_str(&format!(
        "; {}; fix the [source.columns] entries or ask the sender to include the columns",
        found_headers(found, known)
    ));
    out
}

/// The headers a file has, as a rejection names them. Only headers kinlink knows
/// (a canonical column or a `[source.columns]` entry, ignoring case) are quoted;
/// the rest are counted. A file sent without a header row has a person's data in
/// its first row, and a rejection reason goes to the admin's mail and beside the
/// file: it must never carry that row.
fn found_headers(found: &[String], known: &[String]) -> String {
    if found.is_empty() {
        return "headers found: none".to_string();
    }
    let (named, other): (Vec<&String>, Vec<&String>) = found
        .iter()
        .partition(|h| known.iter().any(|k| header_key(k) == header_key(h)));
    let named: Vec<String> = named.into_iter().cloned().collect();
    match (named.is_empty(), other.len()) {
        (true, n) => format!(
            "{n} header{} found, none of them a column name kinlink knows (not quoted here: a file without a header row would have data there)",
            if n == 1 { "" } else { "s" }
        ),
        (false, 0) => format!("headers found: {}", quoted_list(&named)),
        (false, n) => format!(
            "headers found: {} and {n} other{} not named in [source.columns]",
            quoted_list(&named),
            if n == 1 { "" } else { "s" }
        ),
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One cell as a format reader saw it, before the kind's parsers type it. Borrowed
/// from the reader's current row so the CSV fast path allocates nothing per cell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) enum Cell<'a> {
    #[default]
    Empty,
    Text(&'a str),
    Int(i64),
    Float(f64),
    /// A native spreadsheet date/time, already converted with the workbook's epoch.
    DateTime(NaiveDateTime),
    Bool(bool),
    /// A value that is not usable as text: a spreadsheet error (`#N/A`), a JSON
    /// object or array. Holds a description for messages.
    Invalid(&'static str),
}

impl Cell<'_> {
    /// The cell as text, as read (untrimmed for text).
    pub(crate) fn as_text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match *self {
            Cell::Empty => Cow::Borrowed(""),
            Cell::Text(s) => Cow::Borrowed(s),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Float(f) => Cow::Owned(values::number_text(f)),
            Cell::DateTime(dt) => Cow::Owned(values::datetime_text(dt)),
            Cell::Bool(b) => Cow::Borrowed(if b { "TRUE" } else { "FALSE" }),
            Cell::Invalid(what) => Cow::Borrowed(what),
        }
    }

    /// Whether the cell holds nothing but whitespace.
    pub(crate) fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(s) => s.trim().is_empty(),
            _ => false,
        }
    }
}

/// Whether a canonical column must be present and filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Required,
    /// At least one of this column and its partner (the adjacent `EitherOf`).
    EitherOf(&'static str),
    Optional,
}

/// A canonical column of a feed kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub need: Need,
}

const fn col(name: &'static str, need: Need) -> Column {
    Column { name, need }
}

use Need::{EitherOf, Optional, Required};

/// The canonical columns of each kind, in docs/feeds.md order. `record.rs` indexes these
/// by position.
pub(crate) const ATTENDANCE: &[Column] = &[
    col("school_urn", Required),
    col("upn", Optional),
    col("forename", Required),
    col("surname", Required),
    col("dob", Required),
    col("gender", Optional),
    col("address_line1", Optional),
    col("postcode", Optional),
    col("date", Required),
    col("session", Required),
    col("mark", Required),
];

pub(crate) const POLICE_DA: &[Column] = &[
    col("notification_id", Required),
    col("incident_at", Required),
    col("role", Required),
    col("forename", EitherOf("surname")),
    col("surname", EitherOf("forename")),
    col("dob", Optional),
    col("gender", Optional),
    col("address_line1", Required),
    col("postcode", Required),
    col("uprn", Optional),
    col("dash_risk", Optional),
    col("crime_ref", Optional),
    col("school_urn", Optional),
    col("person_ref", Optional),
];

pub(crate) const HOUSING: &[Column] = &[
    col("notice_id", Required),
    col("notice_type", Required),
    col("served_on", Required),
    col("possession_date", Optional),
    col("tenure", Optional),
    col("address_line1", Required),
    col("postcode", Required),
    col("uprn", Optional),
    col("tenant_forename", EitherOf("tenant_surname")),
    col("tenant_surname", EitherOf("tenant_forename")),
    col("tenant_dob", Optional),
    col("children_in_household", Optional),
];

pub(crate) const ASSESSMENT: &[Column] = &[
    col("case_id", Required),
    col("family_id", Required),
    col("person_id", Required),
    col("role", Required),
    col("forename", EitherOf("surname")),
    col("surname", EitherOf("forename")),
    // Required for a child, checked per row.
    col("dob", Optional),
    col("gender", Optional),
    col("upn", Optional),
    col("nhs_number", Optional),
    col("address_line1", Optional),
    col("postcode", Optional),
    col("uprn", Optional),
    col("referral_date", Required),
    col("opened_on", Optional),
    col("closed_on", Optional),
    col("closure_reason", Optional),
    col("level", Optional),
    col("locality", Optional),
    col("lead_professional", Optional),
];

/// The most canonical columns any kind has (assessment).
pub(crate) const MAX_COLUMNS: usize = 20;

/// The canonical columns of a kind.
pub(crate) fn columns(kind: FeedKind) -> &'static [Column] {
    match kind {
        FeedKind::Attendance => ATTENDANCE,
        FeedKind::PoliceDa => POLICE_DA,
        FeedKind::Housing => HOUSING,
        FeedKind::Assessment => ASSESSMENT,
    }
}

/// The canonical column names of a kind, in docs/feeds.md order: the names
/// `[source.columns]` and `[source.max_lengths]` may use (config checks them here).
pub fn canonical_columns(kind: FeedKind) -> Vec<&'static str> {
    columns(kind).iter().map(|c| c.name).collect()
}

/// The header a canonical column is looked up under: the `[source.columns]` entry,
/// else its own name.
pub(crate) fn wanted_header<'s>(source: &'s SourceSettings, canonical: &'s str) -> (&'s str, bool) {
    match source.columns.get(canonical) {
        Some(h) => (h.as_str(), true),
        None => (canonical, false),
    }
}

/// A header cell as compared: trimmed, without a UTF-8 BOM, lower case.
pub(crate) fn header_key(s: &str) -> String {
    s.trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// Decides, for each canonical column, which of `present` satisfies it, and rejects
/// the file naming every required column that is missing. `find` returns the
/// position of a header (or `None`).
pub(crate) fn resolve_columns<T>(
    source: &SourceSettings,
    file: &str,
    found_headers: &[String],
    mut find: impl FnMut(&str) -> Option<T>,
) -> Result<Vec<Option<T>>, FileRejection> {
    let cols = columns(source.kind);
    let mut map = Vec::with_capacity(cols.len());
    for c in cols {
        let (header, _) = wanted_header(source, c.name);
        map.push(find(header));
    }
    let mut missing = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        if map[i].is_some() {
            continue;
        }
        let (header, mapped) = wanted_header(source, c.name);
        let either_with = match c.need {
            Need::Required => None,
            Need::Optional => continue,
            Need::EitherOf(other) => {
                let other_present = cols
                    .iter()
                    .position(|o| o.name == other)
                    .is_some_and(|j| map[j].is_some());
                if other_present {
                    continue;
                }
                Some(other.to_string())
            }
        };
        missing.push(MissingColumn {
            canonical: c.name.to_string(),
            header: header.to_string(),
            mapped,
            either_with,
        });
    }
    if missing.is_empty() {
        Ok(map)
    } else {
        Err(FileRejection::MissingColumns {
            file: file.to_string(),
            source_name: source.name.clone(),
            missing,
            found: found_headers
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            known: cols
                .iter()
                .map(|c| c.name.to_string())
                .chain(source.columns.values().cloned())
                .collect(),
        })
    }
}

/// Header matching for row formats (CSV, sheets): canonical column → header index.
pub(crate) fn map_header(
    source: &SourceSettings,
    file: &str,
    headers: &[String],
) -> Result<Vec<Option<usize>>, FileRejection> {
    let keys: Vec<String> = headers.iter().map(|h| header_key(h)).collect();
    resolve_columns(source, file, headers, |wanted| {
        let w = header_key(wanted);
        keys.iter().position(|k| *k == w)
    })
}

/// A reader that can also seek, owned and sendable (spreadsheets need `Seek`).
pub(crate) trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// Streams row outcomes from one opened file.
///
/// Invariant: the header has been checked, so every row outcome is a record or a
/// row-level problem; only a failure part-way through the bytes (a corrupt tail)
/// can still reject the file.
pub struct RowReader {
    inner: Inner,
    builder: Builder,
    rows_read: u64,
    done: bool,
}

enum Inner {
    Csv(csv::CsvRows),
    Sheet(sheet::SheetRows),
    Json(json::JsonRows),
}

impl fmt::Debug for RowReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowReader")
            .field("kind", &self.builder.kind())
            .field("rows_read", &self.rows_read)
            .field("done", &self.done)
            .finish()
    }
}

impl RowReader {
    fn new(inner: Inner, builder: Builder) -> RowReader {
        RowReader {
            inner,
            builder,
            rows_read: 0,
            done: false,
        }
    }

    /// Up to `max` row outcomes; an empty Vec means the file is done. Blank rows are
    /// skipped (they are neither records nor problems).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RowOutcome>, FileRejection> {
        let max = max.max(1);
        // Sized for the pipeline's batches up front: growing a Vec of rows moves them.
        let mut out = Vec::with_capacity(max.min(1 << 15));
        if self.done {
            return Ok(out);
        }
        let finished = match &mut self.inner {
            Inner::Csv(r) => r.next_rows(&mut self.builder, max, &mut out),
            Inner::Sheet(r) => r.next_rows(&mut self.builder, max, &mut out),
            Inner::Json(r) => r.next_rows(&mut self.builder, max, &mut out),
        };
        match finished {
            Ok(done) => {
                self.done = done;
                self.rows_read += out.len() as u64;
                Ok(out)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// Data rows seen so far (records and problems; not blank rows, not the header).
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }
}

/// Opens a file and checks its header. Whole-file problems come back as a
/// [`FileRejection`].
///
/// `file_name` names the file in every message: the name it was delivered under
/// (`attendance-2025-11-20.csv`), not the sha256-named raw copy at `path`, so a
/// rejection tells the sender which of their files to fix.
pub fn open(
    source: &SourceSettings,
    path: &Path,
    file_name: &str,
) -> Result<RowReader, FileRejection> {
    let file = if file_name.is_empty() {
        path.display().to_string()
    } else {
        file_name.to_string()
    };
    let io = |e| FileRejection::Io {
        file: file.clone(),
        source: e,
    };
    match source.format {
        Format::Csv => {
            let f = File::open(path).map_err(io)?;
            open_csv(source, &file, Box::new(f))
        }
        Format::Xlsx | Format::Xls | Format::Ods => {
            let f = File::open(path).map_err(io)?;
            let reader = Box::new(BufReader::with_capacity(1 << 16, f));
            let (inner, builder) = sheet::open(source, &file, reader)?;
            Ok(RowReader::new(Inner::Sheet(inner), builder))
        }
        Format::Json => {
            let bytes = std::fs::read(path).map_err(io)?;
            open_bytes(source, &file, bytes)
        }
    }
}

/// [`open`] from bytes in memory; `file_name` names the file in messages. Used by
/// tests, fuzzing and HTTP feeds.
pub fn open_bytes(
    source: &SourceSettings,
    file_name: &str,
    bytes: Vec<u8>,
) -> Result<RowReader, FileRejection> {
    match source.format {
        Format::Csv => open_csv(source, file_name, Box::new(Cursor::new(bytes))),
        Format::Xlsx | Format::Xls | Format::Ods => {
            let (inner, builder) = sheet::open(source, file_name, Box::new(Cursor::new(bytes)))?;
            Ok(RowReader::new(Inner::Sheet(inner), builder))
        }
        Format::Json => {
            let (inner, builder) = json::open(source, file_name, &bytes)?;
            Ok(RowReader::new(Inner::Json(inner), builder))
        }
    }
}

fn open_csv(
    source: &SourceSettings,
    file: &str,
    raw: Box<dyn Read + Send>,
) -> Result<RowReader, FileRejection> {
    let reader: Box<dyn Read + Send> = match source.encoding {
        TextEncoding::Utf8 => raw,
        TextEncoding::Windows1252 => Box::new(csv::Windows1252Reader::new(raw)),
    };
    let (inner, builder) = csv::CsvRows::open(source, file, reader)?;
    Ok(RowReader::new(Inner::Csv(inner), builder))
}

/// A `SourceSettings` for tests, without going through the config loader.
#[cfg(test)]
pub(crate) fn test_source(
    kind: FeedKind,
    format: Format,
    columns: &[(&str, &str)],
) -> SourceSettings {
    SourceSettings {
        name: "test".into(),
        kind,
        format,
        transport: crate::config::Transport::Dir(crate::config::DirTransport::new("/nonexistent")),
        max_bad_rows: 0.05,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        limits: Default::default(),
        columns: columns
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Reads every outcome of a reader, for tests.
#[cfg(test)]
pub(crate) fn read_all(mut r: RowReader) -> Result<Vec<RowOutcome>, FileRejection> {
    let mut all = Vec::new();
    loop {
        let batch = r.next_batch(7)?;
        if batch.is_empty() {
            return Ok(all);
        }
        all.extend(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reader_can_move_to_a_blocking_thread() {
        fn assert_send_static<T: Send + 'static>() {}
        assert_send_static::<RowReader>();
        assert_send_static::<FileRejection>();
    }

    #[test]
    fn kind_tables_fit_the_cell_array() {
        for kind in FeedKind::ALL {
            assert!(columns(*kind).len() <= MAX_COLUMNS);
        }
        assert_eq!(ASSESSMENT.len(), MAX_COLUMNS);
    }

    #[test]
    fn missing_columns_are_all_named_with_their_map_entries() {
        let source = test_source(
            FeedKind::Attendance,
            Format::Csv,
            &[("dob", "DOB"), ("school_urn", "URN")],
        );
        let headers: Vec<String> = ["URN", "Forename", "surname", "date", "session"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let err = map_header(&source, "a.csv", &headers).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, FileRejection::MissingColumns { ref missing, .. } if missing.len() == 2)
        );
        assert!(
            msg.contains(r#"dob is mapped to header "DOB" in [source.columns] of source "test""#),
            "{msg}"
        );
        assert!(
            msg.contains(r#"mark has no entry in [source.columns]"#),
            "{msg}"
        );
        assert!(msg.contains(r#"headers found: "URN", "Forename""#), "{msg}");

        // A file without a header row: its first row is data, never quoted.
        let data_row: Vec<String> = ["100001", "Ann", "Smith", "04/03/2015", "/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let msg = map_header(&source, "a.csv", &data_row)
            .unwrap_err()
            .to_string();
        for value in &data_row {
            assert!(!msg.contains(value.as_str()), "{msg}");
        }
        assert!(msg.contains("5 headers found, none of them"), "{msg}");
        assert!(msg.contains(r#""a.csv""#), "{msg}");
    }

    #[test]
    fn either_of_columns_need_only_one() {
        let source = test_source(FeedKind::Housing, Format::Csv, &[]);
        let base = [
            "notice_id",
            "notice_type",
            "served_on",
            "address_line1",
            "postcode",
        ];
        let with = |extra: &[&str]| -> Vec<String> {
            base.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        assert!(map_header(&source, "h.csv", &with(&["tenant_surname"])).is_ok());
        let err = map_header(&source, "h.csv", &with(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least one of tenant_forename and tenant_surname"),
            "{err}"
        );
    }

    #[test]
    fn headers_match_ignoring_case_space_and_bom() {
        let source = test_source(FeedKind::Housing, Format::Csv, &[("notice_id", "Ref No")]);
        let headers: Vec<String> = [
            "\u{feff} REF NO ",
            "Notice_Type",
            "SERVED_ON",
            "address_line1",
            "postcode",
            "tenant_surname",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let map = map_header(&source, "h.csv", &headers).unwrap();
        assert_eq!(map[0], Some(0));
        assert_eq!(map[1], Some(1));
    }
}
