//! Fuzz target: ingest of arbitrary spreadsheet (xlsx/xls/ods, sniffed from the bytes) bytes must never panic; every input ends
//! as rows or a FileRejection.
#![no_main]

use kinlink::config::{SourceSettings, TextEncoding, Transport};
use kinlink::domain::{FeedKind, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kind = FeedKind::Attendance;
    let delimiter = b',';
    let encoding = TextEncoding::Utf8;
    let source = SourceSettings {
        name: "fuzz".into(),
        kind,
        format: Format::Xlsx,
        transport: Transport::Dir {
            path: "/nonexistent".into(),
        },
        max_bad_rows: 0.05,
        sheet: None,
        delimiter,
        encoding,
        records_path: if data.get(2).is_some_and(|b| b % 2 == 1) {
            Some("data".into())
        } else {
            None
        },
        next_path: None,
        stale_after_hours: None,
        columns: Default::default(),
    };
    if let Ok(mut reader) = kinlink::ingest::open_bytes(&source, "fuzz", data.to_vec()) {
        while let Ok(batch) = reader.next_batch(64) {
            if batch.is_empty() {
                break;
            }
        }
    }
});
