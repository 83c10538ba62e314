//! CSV rows, streamed with the `csv` crate: one reused `StringRecord`, cells
//! borrowed from it, so a row costs no allocation beyond the record it becomes.
//!
//! Rows are numbered by the line the record starts on (the header is row 1 when it
//! is the first line), which is what a person sees in an editor or in Excel unless
//! a quoted field spans lines. Short rows are allowed: missing fields are empty.

use std::io::{self, Read};

use ::csv::{ErrorKind, ReaderBuilder, StringRecord};

mod guard;

use guard::{Guard, GuardError, GuardLimits};

use super::record::Builder;
use super::{map_header, Cell, FileRejection, RowOutcome, MAX_COLUMNS};
use crate::config::SourceSettings;
use crate::domain::Format;

/// Rows of one CSV file after its header.
pub(crate) struct CsvRows {
    reader: ::csv::Reader<Box<dyn Read + Send>>,
    record: StringRecord,
    /// Canonical column → field index.
    map: Vec<Option<usize>>,
    file: String,
    source_name: String,
}

impl CsvRows {
    /// Reads up to the header (the first non-blank record) and maps it.
    pub(crate) fn open(
        source: &SourceSettings,
        file: &str,
        reader: Box<dyn Read + Send>,
    ) -> Result<(CsvRows, Builder), FileRejection> {
        let limits = GuardLimits {
            delimiter: source.delimiter,
            max_line_bytes: source.limits.max_line_bytes,
            max_field_bytes: source.limits.max_field_bytes,
            multiline_fields: source.limits.multiline_fields,
        };
        let guarded: Box<dyn Read + Send> = Box::new(Guard::new(reader, limits));
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(source.delimiter)
            .buffer_capacity(1 << 16)
            .from_reader(guarded);
        let mut record = StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {
                    let blank = record
                        .iter()
                        .all(|f| f.trim_start_matches('\u{feff}').trim().is_empty());
                    if !blank {
                        break;
                    }
                }
                Ok(false) => {
                    return Err(FileRejection::Empty {
                        file: file.to_string(),
                        kind: source.kind,
                    })
                }
                Err(e) => return Err(reject(e, file, &source.name)),
            }
        }
        let headers: Vec<String> = record.iter().map(str::to_string).collect();
        let map = map_header(source, file, &headers)?;
        let builder = Builder::new(source, map.iter().map(Option::is_some).collect());
        Ok((
            CsvRows {
                reader,
                record,
                map,
                file: file.to_string(),
                source_name: source.name.clone(),
            },
            builder,
        ))
    }

    /// Appends outcomes until `out` holds `max`; `Ok(true)` once the file is done.
    pub(crate) fn next_rows(
        &mut self,
        builder: &mut Builder,
        max: usize,
        out: &mut Vec<RowOutcome>,
    ) -> Result<bool, FileRejection> {
        while out.len() < max {
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => return Ok(true),
                Err(e) => return Err(reject(e, &self.file, &self.source_name)),
            }
            let row = self.record.position().map_or(0, |p| p.line());
            let mut cells = [Cell::Empty; MAX_COLUMNS];
            for (cell, src) in cells.iter_mut().zip(&self.map) {
                if let Some(v) = src.and_then(|i| self.record.get(i)) {
                    *cell = Cell::Text(v);
                }
            }
            let n = self.map.len().min(MAX_COLUMNS);
            if let Some(outcome) = builder.build(row, &cells[..n]) {
                out.push(outcome);
            }
        }
        Ok(false)
    }
}

fn reject(e: ::csv::Error, file: &str, source_name: &str) -> FileRejection {
    if let ErrorKind::Utf8 { pos, err } = e.kind() {
        return FileRejection::NotUtf8 {
            file: file.to_string(),
            source_name: source_name.to_string(),
            line: pos.as_ref().map_or(0, |p| p.line()),
            // The record's first byte plus the valid prefix of the bad field: exact
            // when the bad field is the first, a little early otherwise (earlier
            // fields' separators and quotes are not counted); the line is exact.
            byte: pos.as_ref().map_or(0, |p| p.byte()) + err.valid_up_to() as u64,
        };
    }
    let detail = e.to_string();
    match e.into_kind() {
        ErrorKind::Io(source) => match GuardError::from_io(source) {
            Ok(problem) => malformed(problem, file, source_name),
            Err(source) => FileRejection::Io {
                file: file.to_string(),
                source,
            },
        },
        _ => FileRejection::Unparseable {
            file: file.to_string(),
            format: Format::Csv,
            detail,
        },
    }
}

fn malformed(problem: GuardError, file: &str, source_name: &str) -> FileRejection {
    let line = problem.line();
    let fix = match problem {
        GuardError::LineTooLong { .. } => format!(
            "Ask the sender why line {line} is so long; if such lines are genuine, raise max_line_bytes of source {source_name:?}"
        ),
        GuardError::FieldTooLong { .. } => format!(
            "Ask the sender why that field is so long; if such fields are genuine, raise max_field_bytes of source {source_name:?}"
        ),
        GuardError::QuoteSpansLines { .. } => format!(
            "An unbalanced quote would swallow the rows after it: fix the quote on line {line} and deliver the file again; \
             if this source's fields really hold line breaks, set multiline_fields = true for source {source_name:?}"
        ),
        GuardError::QuoteNeverClosed { .. } => format!(
            "An unbalanced quote swallows the rows after it: fix the quote on line {line} and deliver the file again"
        ),
    };
    FileRejection::Malformed {
        file: file.to_string(),
        source_name: source_name.to_string(),
        line,
        problem: problem.to_string(),
        fix,
    }
}

/// A streaming Windows-1252 → UTF-8 adapter over `encoding_rs::Decoder`, so a
/// file of any size is decoded in fixed buffers. A UTF-8 BOM switches the decoder
/// to UTF-8 (encoding_rs BOM sniffing), as the file then is UTF-8 whatever the
/// config says.
pub(crate) struct Windows1252Reader<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Box<[u8]>,
    in_pos: usize,
    in_len: usize,
    output: Box<[u8]>,
    out_pos: usize,
    out_len: usize,
    eof: bool,
    finished: bool,
}

impl<R: Read> Windows1252Reader<R> {
    pub(crate) fn new(inner: R) -> Self {
        const IN: usize = 1 << 15;
        Windows1252Reader {
            inner,
            decoder: encoding_rs::WINDOWS_1252.new_decoder(),
            input: vec![0; IN].into_boxed_slice(),
            in_pos: 0,
            in_len: 0,
            // Each input byte is at most 3 UTF-8 bytes; room for all of them means
            // the decoder always makes progress.
            output: vec![0; IN * 3 + 16].into_boxed_slice(),
            out_pos: 0,
            out_len: 0,
            eof: false,
            finished: false,
        }
    }
}

impl<R: Read> Read for Windows1252Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out_len {
                let n = buf.len().min(self.out_len - self.out_pos);
                buf[..n].copy_from_slice(&self.output[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            if self.in_pos == self.in_len && !self.eof {
                let n = self.inner.read(&mut self.input)?;
                self.in_pos = 0;
                self.in_len = n;
                self.eof = n == 0;
            }
            let (result, read, written, _) = self.decoder.decode_to_utf8(
                &self.input[self.in_pos..self.in_len],
                &mut self.output,
                self.eof,
            );
            self.in_pos += read;
            self.out_pos = 0;
            self.out_len = written;
            if self.eof
                && self.in_pos == self.in_len
                && result == encoding_rs::CoderResult::InputEmpty
            {
                self.finished = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TextEncoding;
    use crate::domain::{FeedKind, Record};
    use crate::ingest::{open_bytes, read_all, test_source};
    use proptest::prelude::*;

    const HEADER: &str =
        "school_urn,upn,forename,surname,dob,gender,address_line1,postcode,date,session,mark";

    fn att() -> SourceSettings {
        test_source(FeedKind::Attendance, Format::Csv, &[])
    }

    fn read(source: &SourceSettings, text: &str) -> Result<Vec<RowOutcome>, FileRejection> {
        read_all(open_bytes(source, "marks.csv", text.as_bytes().to_vec())?)
    }

    fn records(outcomes: &[RowOutcome]) -> Vec<&Record> {
        outcomes.iter().filter_map(|o| o.as_ref().ok()).collect()
    }

    #[test]
    fn reads_attendance_rows_with_mention_keys() {
        let text = format!(
            "{HEADER}\n100001,B801200005001,Ann,Smith,03/04/2015,F,1 High St,m6 5ab,2025-03-04,AM,/\n\
             100001,,Bob,  van  Dyk ,2014-01-02,,,,04/03/2025,pm,N\n"
        );
        let out = read(&att(), &text).unwrap();
        assert_eq!(out.len(), 2);
        let Record::Attendance(a) = records(&out)[0] else {
            panic!("not attendance")
        };
        assert_eq!(a.pupil.mention_key, "B801200005001");
        assert_eq!(a.pupil.dob, chrono::NaiveDate::from_ymd_opt(2015, 4, 3));
        assert_eq!(a.pupil.role, "pupil");
        let Record::Attendance(b) = records(&out)[1] else {
            panic!("not attendance")
        };
        assert_eq!(b.pupil.mention_key, "100001/VAN DYK/BOB/2014-01-02");
        assert_eq!(b.date, chrono::NaiveDate::from_ymd_opt(2025, 3, 4).unwrap());
        assert_eq!(b.mark.code(), "N");
    }

    #[test]
    fn an_invalid_upn_is_still_the_mention_key() {
        let text =
            format!("{HEADER}\n100001, a801200005001 ,Ann,Smith,03/04/2015,F,,,2025-03-04,AM,/\n");
        let out = read(&att(), &text).unwrap();
        let Record::Attendance(a) = records(&out)[0] else {
            panic!("not attendance")
        };
        assert_eq!(a.pupil.mention_key, "A801200005001");
        assert!(!a.pupil.upn.as_ref().unwrap().is_valid());
    }

    #[test]
    fn bad_values_are_quarantined_with_row_and_column() {
        let text = format!(
            "{HEADER}\n\
             100001,,Ann,Smith,31/02/2015,F,,,2025-03-04,AM,/\n\
             100001,,Ann,Smith,01/02/2015,F,,,2025-03-04,AM,Q9\n\
             100001,,,Smith,01/02/2015,F,,,2025-03-04,AM,/\n\
             \n\
             ,,,,,,,,,,\n\
             100001,,Ann,Smith,01/02/2015,F,,,2025-03-04,XX,/\n\
             10A001,,Ann,Smith,01/02/2015,F,,,2025-03-04,AM,/\n"
        );
        let out = read(&att(), &text).unwrap();
        let problems: Vec<_> = out.iter().filter_map(|o| o.as_ref().err()).collect();
        let got: Vec<(u64, &str)> = problems
            .iter()
            .map(|p| (p.row, p.column.as_deref().unwrap_or("")))
            .collect();
        // Line 5 is empty and line 6 is all separators: skipped, not problems.
        assert_eq!(
            got,
            vec![
                (2, "dob"),
                (3, "mark"),
                (4, "forename"),
                (7, "session"),
                (8, "school_urn")
            ]
        );
        assert!(
            problems[0].reason.contains("dob: not a date"),
            "{}",
            problems[0].reason
        );
        // Reasons reach the admin's mail and the rejected folder: never a value.
        for (p, value) in problems
            .iter()
            .zip(["31/02/2015", "Q9", "", "XX", "10A001"])
        {
            assert!(
                value.is_empty() || !p.reason.contains(value),
                "{}",
                p.reason
            );
        }
        assert!(
            problems[1].reason.contains("DfE attendance code"),
            "{}",
            problems[1].reason
        );
        assert!(
            problems[2].reason.contains("forename is empty"),
            "{}",
            problems[2].reason
        );
        assert!(
            problems[3].reason.contains("AM, PM"),
            "{}",
            problems[3].reason
        );
        // Nothing is lost: the raw row holds every mapped cell as read.
        let raw: serde_json::Value = serde_json::from_str(&problems[0].raw).unwrap();
        assert_eq!(raw["dob"], "31/02/2015");
        assert_eq!(raw["school_urn"], "100001");
    }

    #[test]
    fn counts_rows_read_without_blank_rows() {
        let text = format!("{HEADER}\n\n100001,,Ann,Smith,03/04/2015,F,,,2025-03-04,AM,/\n  ,  \n");
        let mut r = open_bytes(&att(), "m.csv", text.into_bytes()).unwrap();
        assert_eq!(r.next_batch(100).unwrap().len(), 1);
        assert!(r.next_batch(100).unwrap().is_empty());
        assert_eq!(r.rows_read(), 1);
    }

    #[test]
    fn duplicate_rows_are_both_returned() {
        let row = "100001,,Ann,Smith,03/04/2015,F,,,2025-03-04,AM,/";
        let out = read(&att(), &format!("{HEADER}\n{row}\n{row}\n")).unwrap();
        assert_eq!(records(&out).len(), 2);
        assert_eq!(records(&out)[0], records(&out)[1]);
    }

    #[test]
    fn empty_file_is_rejected_and_header_only_is_empty_delivery() {
        let err = read(&att(), "").unwrap_err();
        assert!(matches!(err, FileRejection::Empty { .. }), "{err}");
        assert!(err.to_string().contains("no header row"), "{err}");
        let err = read(&att(), "\n\n , ,\n").unwrap_err();
        assert!(matches!(err, FileRejection::Empty { .. }), "{err}");
        assert!(read(&att(), HEADER).unwrap().is_empty());
    }

    #[test]
    fn missing_required_column_rejects_the_file() {
        let source = test_source(FeedKind::Attendance, Format::Csv, &[("dob", "DOB")]);
        let err = read(&source, "school_urn,forename,surname,date,session,mark\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"dob is mapped to header "DOB" in [source.columns] of source "test""#),
            "{msg}"
        );
        assert!(msg.contains(r#""marks.csv""#), "{msg}");
    }

    #[test]
    fn bom_delimiter_mapping_and_short_rows() {
        let mut source = test_source(
            FeedKind::Attendance,
            Format::Csv,
            &[
                ("school_urn", "URN"),
                ("dob", "Date of Birth"),
                ("mark", "Code"),
            ],
        );
        source.delimiter = b';';
        let text = "\u{feff}URN;Forename;Surname;Date of Birth;Date;Session;Code;Ignored\n\
                    100001;Ann;Smith;03/04/2015;2025-03-04;AM;/;x\n\
                    100001;Ann;Smith;03/04/2015;2025-03-04;AM\n";
        let out = read(&source, text).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok(), "{:?}", out[0]);
        let p = out[1].as_ref().unwrap_err();
        assert_eq!((p.row, p.column.as_deref()), (3, Some("mark")));
    }

    #[test]
    fn quoted_fields_and_multiline_rows_keep_line_numbers() {
        let text = format!(
            "{HEADER}\n100001,,\"Ann\nMarie\",Smith,03/04/2015,F,\"1, High St\",,2025-03-04,AM,/\n\
             100001,,Ann,Smith,03/04/2015,F,,,2025-03-04,AM,??\n"
        );
        // By default a quoted field never spans lines: the file is refused.
        let err = read(&att(), &text).unwrap_err();
        assert!(
            matches!(err, FileRejection::Malformed { line: 2, .. }),
            "{err}"
        );
        let mut source = att();
        source.limits.multiline_fields = true;
        let out = read(&source, &text).unwrap();
        let Record::Attendance(a) = records(&out)[0] else {
            panic!("not attendance")
        };
        assert_eq!(a.pupil.forename.as_deref(), Some("Ann Marie"));
        assert_eq!(a.pupil.address_line1.as_deref(), Some("1, High St"));
        assert_eq!(out[1].as_ref().unwrap_err().row, 4);
    }

    #[test]
    fn non_utf8_is_rejected_with_the_fix() {
        let mut bytes = format!("{HEADER}\n").into_bytes();
        bytes.extend_from_slice(b"100001,,Zo\xEB,Smith,03/04/2015,F,,,2025-03-04,AM,/\n");
        let err = read_all(open_bytes(&att(), "w.csv", bytes.clone()).unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, FileRejection::NotUtf8 { line: 2, .. }),
            "{msg}"
        );
        assert!(msg.contains("encoding = \"windows-1252\""), "{msg}");

        let mut source = att();
        source.encoding = TextEncoding::Windows1252;
        let out = read_all(open_bytes(&source, "w.csv", bytes).unwrap()).unwrap();
        let Record::Attendance(a) = records(&out)[0] else {
            panic!("not attendance")
        };
        assert_eq!(a.pupil.forename.as_deref(), Some("Zoë"));
    }

    #[test]
    fn windows_1252_decoding_streams_across_buffers() {
        let mut source = att();
        source.encoding = TextEncoding::Windows1252;
        let mut bytes = format!("{HEADER}\n").into_bytes();
        let n = 5000;
        for _ in 0..n {
            bytes.extend_from_slice(b"100001,,Zo\xEB,Smith,03/04/2015,F,,,2025-03-04,AM,/\n");
        }
        let out = read_all(open_bytes(&source, "w.csv", bytes).unwrap()).unwrap();
        assert_eq!(out.len(), n);
        assert!(out.iter().all(
            |o| matches!(o, Ok(Record::Attendance(a)) if a.pupil.forename.as_deref() == Some("Zoë"))
        ));
    }

    #[test]
    fn a_utf8_bom_overrides_windows_1252() {
        let mut source = att();
        source.encoding = TextEncoding::Windows1252;
        let text = format!("\u{feff}{HEADER}\n100001,,Zoë,Smith,03/04/2015,F,,,2025-03-04,AM,/\n");
        let out = read(&source, &text).unwrap();
        let Record::Attendance(a) = records(&out)[0] else {
            panic!("not attendance")
        };
        assert_eq!(a.pupil.forename.as_deref(), Some("Zoë"));
    }

    #[test]
    fn police_n_counts_every_row_of_the_notification() {
        let source = test_source(FeedKind::PoliceDa, Format::Csv, &[]);
        let text = "notification_id,incident_at,role,forename,surname,address_line1,postcode,person_ref,dob\n\
                    N1,26/10/2025 01:30,victim,Ann,Smith,1 High St,M6 5AB,P77,\n\
                    N2,2025-03-30 01:30,V,,Khan,2 Low St,M7 1AA,,\n\
                    N1,26/10/2025 01:30,perpetrator,Bob,Smith,1 High St,M6 5AB,,\n\
                    N1,26/10/2025 01:30,child,Cat,Smith,1 High St,M6 5AB,,not a date\n\
                    N1,26/10/2025 01:30,C,Dan,Smith,1 High St,M6 5AB,,2019-01-01\n\
                    N3,2025-01-01,other,,,3 Mid St,M8 1AA,,\n";
        let out = read(&source, text).unwrap();
        let keys: Vec<String> = out
            .iter()
            .map(|o| match o {
                Ok(r) => r.mention().mention_key.clone(),
                Err(p) => format!("row {} {}", p.row, p.column.as_deref().unwrap_or("")),
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                "N1/P77",
                "N2/1",
                "N1/2",
                "row 5 dob",
                "N1/4",
                "row 7 forename"
            ]
        );
        let Ok(Record::PoliceDa(first)) = &out[0] else {
            panic!("not police")
        };
        // The October fold: the earlier instant (BST).
        assert_eq!(first.incident_at.to_rfc3339(), "2025-10-26T00:30:00+00:00");
        assert_eq!(first.person.address_line1.as_deref(), Some("1 High St"));
        assert_eq!(first.person.role, "victim");
        let Ok(Record::PoliceDa(gap)) = &out[1] else {
            panic!("not police")
        };
        // The March gap: after the gap.
        assert_eq!(gap.incident_at.to_rfc3339(), "2025-03-30T01:30:00+00:00");
        assert_eq!(gap.person_key, "1");
        let Ok(Record::PoliceDa(child)) = &out[4] else {
            panic!("not police")
        };
        assert_eq!(child.role, crate::domain::DaRole::Child);
        assert_eq!(child.person.role, "child");
    }

    #[test]
    fn housing_and_assessment_rows() {
        let source = test_source(FeedKind::Housing, Format::Csv, &[]);
        let text = "notice_id,notice_type,served_on,possession_date,tenure,address_line1,postcode,uprn,tenant_forename,tenant_surname,children_in_household\n\
                    H1,Section_21,01/02/2025,,Private,1 High St,m65ab,000000199356,,Khan,3\n\
                    H2,section_21,01/02/2025,,private,1 High St,m65ab,not-a-uprn,Ann,,three\n\
                    H3,eviction,01/02/2025,,,1 High St,m65ab,,Ann,,\n\
                    H4,warrant,01/02/2025,31/31/2025,,1 High St,m65ab,,Ann,,\n";
        let out = read(&source, text).unwrap();
        let Ok(Record::Housing(h)) = &out[0] else {
            panic!("not housing: {:?}", out[0])
        };
        assert_eq!(h.tenant.mention_key, "H1");
        assert_eq!(h.tenant.role, "tenant");
        assert_eq!(h.postcode.as_str(), "M6 5AB");
        assert_eq!(h.uprn.map(|u| u.get()), Some(199356));
        assert_eq!(h.children_in_household, Some(3));
        let cols: Vec<_> = out[1..]
            .iter()
            .map(|o| o.as_ref().unwrap_err().column.clone().unwrap())
            .collect();
        assert_eq!(
            cols,
            vec!["children_in_household", "notice_type", "possession_date"]
        );

        let source = test_source(FeedKind::Assessment, Format::Csv, &[]);
        let text = "case_id,family_id,person_id,role,forename,surname,dob,nhs_number,referral_date,closed_on,level\n\
                    C1,F1,P1,Child,,Smith,2020-01-01,9434765870,01/01/2025,,child_in_need\n\
                    C1,F1,P2,child,Baby,Smith,,,01/01/2025,,\n\
                    C1,F1,P3,parent,Ann,Smith,,943 476 5871,01/01/2025,,\n";
        let out = read(&source, text).unwrap();
        let Ok(Record::Assessment(c)) = &out[0] else {
            panic!("not assessment: {:?}", out[0])
        };
        assert_eq!(c.person.mention_key, "P1");
        assert_eq!(c.person.role, "child");
        assert!(c.person.nhs_number.as_ref().unwrap().is_valid());
        let p = out[1].as_ref().unwrap_err();
        assert_eq!((p.row, p.column.as_deref()), (3, Some("dob")));
        let Ok(Record::Assessment(parent)) = &out[2] else {
            panic!("not assessment: {:?}", out[2])
        };
        assert!(
            !parent.person.nhs_number.as_ref().unwrap().is_valid(),
            "kept and flagged"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), semi in any::<bool>()) {
            let mut source = att();
            if semi { source.delimiter = b';'; source.encoding = TextEncoding::Windows1252; }
            if let Ok(r) = open_bytes(&source, "fuzz.csv", bytes) {
                let _ = read_all(r);
            }
        }

        #[test]
        fn arbitrary_rows_under_a_good_header_never_panic(body in "[ -~\n,\"]{0,300}") {
            let text = format!("{HEADER}\n{body}");
            if let Ok(r) = open_bytes(&att(), "fuzz.csv", text.into_bytes()) {
                let _ = read_all(r);
            }
        }

        /// Every data line is accounted for: either each line is exactly one record
        /// or quarantined row (problems numbered by their line, in order), or the
        /// file is refused naming a line of the body. Each line starts with a letter, so none is blank.
        #[test]
        fn every_data_line_is_a_row_or_the_file_is_refused(
            lines in proptest::collection::vec("[A-Za-z][ -~]{0,40}", 1..30),
        ) {
            let text = format!("{HEADER}\n{}\n", lines.join("\n"));
            let outcome = open_bytes(&att(), "lines.csv", text.into_bytes()).and_then(read_all);
            match outcome {
                Ok(rows) => {
                    prop_assert_eq!(rows.len(), lines.len());
                    let mut last = 1;
                    for p in rows.iter().filter_map(|r| r.as_ref().err()) {
                        prop_assert!(p.row > last && p.row <= lines.len() as u64 + 1);
                        last = p.row;
                    }
                }
                Err(FileRejection::Malformed { line, .. }) => {
                    prop_assert!((2..=lines.len() as u64 + 1).contains(&line));
                    prop_assert!(lines.iter().any(|l| l.contains('"')));
                }
                Err(other) => prop_assert!(false, "unexpected rejection: {other}"),
            }
        }
    }
}
