//! JSON records: an array of objects, or an object holding the array at the
//! source's dotted `records_path` (`data`, `result.items`), the shape school-MIS
//! APIs such as Wonde return. A column's header may itself be a dotted path into
//! nested objects (`education_details.data.upn`). Wonde's date objects
//! (`{"date": "2002-09-29 00:00:00.000000", "timezone": ...}`) are read through
//! their `date` text.
//!
//! The document is parsed whole: API pages are small, and serde_json needs the
//! whole array to hand out owned records. Rows are the records' 1-based positions.

use serde_json::Value;

use super::record::Builder;
use super::{resolve_columns, Cell, FileRejection, RowOutcome, MAX_COLUMNS};
use crate::config::SourceSettings;
use crate::domain::Format;

/// The records of one JSON document.
pub(crate) struct JsonRows {
    records: std::vec::IntoIter<Value>,
    /// 1-based index of the next record.
    next_index: u64,
    /// Canonical column → path into a record.
    paths: Vec<Option<Vec<String>>>,
}

/// Splits a dotted path into its keys.
fn segments(path: &str) -> Vec<String> {
    path.split('.')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A key of an object: exact first, else ignoring case and surrounding space.
fn get_key<'v>(map: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key.trim()))
            .map(|(_, v)| v)
    })
}

fn get_key_mut<'v>(
    map: &'v mut serde_json::Map<String, Value>,
    key: &str,
) -> Option<&'v mut Value> {
    let actual = if map.contains_key(key) {
        key.to_string()
    } else {
        map.keys()
            .find(|k| k.trim().eq_ignore_ascii_case(key.trim()))?
            .clone()
    };
    map.get_mut(&actual)
}

/// The value at `path` in `record`, if every step exists.
fn lookup<'v>(record: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut v = record;
    for seg in path {
        v = get_key(v.as_object()?, seg)?;
    }
    Some(v)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn keys_of(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".to_string(),
    }
}

/// A JSON value as a cell.
fn cell(v: &Value) -> Cell<'_> {
    match v {
        Value::Null => Cell::Empty,
        Value::String(s) => Cell::Text(s),
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => n
                .as_f64()
                .map_or(Cell::Invalid("a number out of range"), Cell::Float),
        },
        Value::Object(m) => match m.get("date") {
            // Wonde: {"date": "2002-09-29 00:00:00.000000", "timezone_type": 3, ...}
            Some(Value::String(s)) => Cell::Text(s),
            _ => Cell::Invalid("a JSON object"),
        },
        Value::Array(_) => Cell::Invalid("a JSON array"),
    }
}

/// Parses the document, finds the records array and checks the columns.
pub(crate) fn open(
    source: &SourceSettings,
    file: &str,
    bytes: &[u8],
) -> Result<(JsonRows, Builder), FileRejection> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FileRejection::Empty {
            file: file.to_string(),
            kind: source.kind,
        });
    }
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut doc: Value = serde_json::from_slice(bytes).map_err(|e| FileRejection::Unparseable {
        file: file.to_string(),
        format: Format::Json,
        detail: e.to_string(),
    })?;
    let no_records = |detail: String| FileRejection::NoRecords {
        file: file.to_string(),
        detail,
    };
    let records = match source.records_path.as_deref().map(segments) {
        Some(path) if !path.is_empty() => {
            let mut v = &mut doc;
            for (i, seg) in path.iter().enumerate() {
                let here = path[..i].join(".");
                let keys = keys_of(v);
                let kind = type_name(v);
                let Some(map) = v.as_object_mut() else {
                    return Err(no_records(format!(
                        "records_path {:?} expects an object at {:?} but found {kind}; fix records_path of source {:?}",
                        path.join("."),
                        if here.is_empty() { "the top" } else { &here },
                        source.name
                    )));
                };
                match get_key_mut(map, seg) {
                    Some(next) => v = next,
                    None => {
                        return Err(no_records(format!(
                            "records_path {:?} not found: no key {seg:?} (keys there: {keys}); fix records_path of source {:?}",
                            path.join("."),
                            source.name
                        )))
                    }
                }
            }
            match v {
                Value::Array(items) => std::mem::take(items),
                other => {
                    return Err(no_records(format!(
                        "records_path {:?} leads to {}, not an array of records",
                        path.join("."),
                        type_name(other)
                    )))
                }
            }
        }
        _ => match doc {
            Value::Array(items) => items,
            other => {
                return Err(no_records(format!(
                    "the document is {}, not an array (keys: {}); set records_path of source {:?} to where the records are",
                    type_name(&other),
                    keys_of(&other),
                    source.name
                )))
            }
        },
    };

    let n = super::columns(source.kind).len();
    let (paths, present) = if records.is_empty() {
        // Nothing to check a header against: a valid empty delivery.
        (vec![None; n], vec![false; n])
    } else {
        let found: Vec<String> = records
            .iter()
            .find_map(|r| r.as_object())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let paths = resolve_columns(source, file, &found, |wanted| {
            let path = segments(wanted);
            let whole = vec![wanted.to_string()];
            if records.iter().any(|r| lookup(r, &path).is_some()) {
                Some(path)
            } else if records.iter().any(|r| lookup(r, &whole).is_some()) {
                // A key that itself contains dots.
                Some(whole)
            } else {
                None
            }
        })?;
        let present = paths.iter().map(Option::is_some).collect();
        (paths, present)
    };
    Ok((
        JsonRows {
            records: records.into_iter(),
            next_index: 1,
            paths,
        },
        Builder::new(source, present),
    ))
}

impl JsonRows {
    /// Appends outcomes until `out` holds `max`; `Ok(true)` once the file is done.
    pub(crate) fn next_rows(
        &mut self,
        builder: &mut Builder,
        max: usize,
        out: &mut Vec<RowOutcome>,
    ) -> Result<bool, FileRejection> {
        while out.len() < max {
            let Some(record) = self.records.next() else {
                return Ok(true);
            };
            let row = self.next_index;
            self.next_index += 1;
            if !record.is_object() {
                out.push(Err(Builder::whole_row_problem(
                    row,
                    format!("record {row} is {}, not an object", type_name(&record)),
                    record.to_string(),
                )));
                continue;
            }
            let mut cells = [Cell::Empty; MAX_COLUMNS];
            for (c, path) in cells.iter_mut().zip(&self.paths) {
                if let Some(v) = path.as_ref().and_then(|p| lookup(&record, p)) {
                    *c = cell(v);
                }
            }
            let n = self.paths.len().min(MAX_COLUMNS);
            if let Some(outcome) = builder.build(row, &cells[..n]) {
                out.push(outcome);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FeedKind, Record};
    use crate::ingest::{open_bytes, read_all, test_source};
    use proptest::prelude::*;

    fn att(columns: &[(&str, &str)]) -> SourceSettings {
        test_source(FeedKind::Attendance, Format::Json, columns)
    }

    fn read(source: &SourceSettings, text: &str) -> Result<Vec<RowOutcome>, FileRejection> {
        read_all(open_bytes(source, "page.json", text.as_bytes().to_vec())?)
    }

    const ROW: &str = r#"{"school_urn": 100001, "forename": "Ann", "surname": "Smith", "dob": "2015-04-03", "date": "2025-03-04", "session": "AM", "mark": "/"}"#;

    #[test]
    fn a_plain_array_of_objects() {
        let out = read(&att(&[]), &format!("[{ROW}, {ROW}, null]")).unwrap();
        assert_eq!(out.len(), 3);
        let Ok(Record::Attendance(a)) = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert_eq!(a.pupil.mention_key, "100001/SMITH/ANN/2015-04-03");
        assert_eq!(out[1], out[0]);
        let p = out[2].as_ref().unwrap_err();
        assert_eq!(p.row, 3);
        assert!(p.reason.contains("not an object"), "{}", p.reason);
    }

    #[test]
    fn wonde_shape_with_records_path_nested_upn_and_date_objects() {
        let mut source = att(&[
            ("upn", "education_details.data.upn"),
            ("dob", "date_of_birth"),
            ("school_urn", "urn"),
        ]);
        source.records_path = Some("data".into());
        let text = r#"{"data": [
            {"urn": "100001", "forename": "Ann", "surname": "Smith",
             "date_of_birth": {"date": "2002-09-29 00:00:00.000000", "timezone_type": 3, "timezone": "Europe/London"},
             "education_details": {"data": {"upn": "B801200005001"}},
             "date": "2025-03-04", "session": "pm", "mark": "N"},
            {"urn": 100001, "forename": "Bob", "surname": "Smith",
             "date_of_birth": {"date": "2003-13-01 00:00:00.000000", "timezone_type": 3, "timezone": "Europe/London"},
             "education_details": {"data": {"upn": null}},
             "date": "2025-03-04", "session": "pm", "mark": "N"}
          ],
          "meta": {"pagination": {"next": null, "more": false}}}"#;
        let out = read(&source, text).unwrap();
        let Ok(Record::Attendance(a)) = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert_eq!(a.pupil.mention_key, "B801200005001");
        assert_eq!(a.pupil.dob, chrono::NaiveDate::from_ymd_opt(2002, 9, 29));
        let p = out[1].as_ref().unwrap_err();
        assert_eq!((p.row, p.column.as_deref()), (2, Some("dob")));
    }

    #[test]
    fn deeper_records_path() {
        let mut source = att(&[]);
        source.records_path = Some("result.items".into());
        let out = read(&source, &format!(r#"{{"result": {{"items": [{ROW}]}}}}"#)).unwrap();
        assert!(out[0].is_ok());
        let empty = read(&source, r#"{"result": {"items": []}}"#).unwrap();
        assert!(empty.is_empty(), "an empty page is a valid empty delivery");
    }

    #[test]
    fn records_path_problems_are_rejections() {
        let mut source = att(&[]);
        source.records_path = Some("data".into());
        let err = read(&source, r#"{"results": []}"#).unwrap_err();
        assert!(matches!(err, FileRejection::NoRecords { .. }));
        assert!(err.to_string().contains(r#"no key "data""#), "{err}");
        let err = read(&source, r#"{"data": {"a": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("not an array"), "{err}");
        let err = read(&att(&[]), r#"{"data": []}"#).unwrap_err();
        assert!(err.to_string().contains("set records_path"), "{err}");
    }

    #[test]
    fn invalid_and_empty_json_are_rejections() {
        let err = read(&att(&[]), "[{\"a\": ").unwrap_err();
        assert!(matches!(err, FileRejection::Unparseable { .. }), "{err}");
        assert!(
            err.to_string().contains("cannot be parsed as json"),
            "{err}"
        );
        let err = read(&att(&[]), "  \n").unwrap_err();
        assert!(matches!(err, FileRejection::Empty { .. }), "{err}");
    }

    #[test]
    fn a_required_key_absent_from_every_record_rejects() {
        let err = read(&att(&[("mark", "attendance_code")]), &format!("[{ROW}]")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"mark is mapped to header "attendance_code""#),
            "{msg}"
        );
        assert!(msg.contains(r#""school_urn""#), "{msg}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = open_bytes(&att(&[]), "fuzz.json", bytes) {
                let _ = read_all(r);
            }
        }

        #[test]
        fn arbitrary_values_in_records_never_panic(v in "[-0-9a-zA-Z/:. ]{0,20}", n in any::<f64>()) {
            let text = serde_json::json!([{
                "school_urn": v, "forename": n, "surname": {"x": 1}, "dob": n,
                "date": v, "session": [1], "mark": v
            }]).to_string();
            let r = open_bytes(&att(&[]), "fuzz.json", text.into_bytes()).unwrap();
            let _ = read_all(r);
        }
    }
}
