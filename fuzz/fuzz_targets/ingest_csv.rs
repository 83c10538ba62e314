//! Fuzz target: ingest of arbitrary CSV bytes must never panic; every input ends
//! as rows or a FileRejection.
#![no_main]

use kinlink::config::{SourceSettings, TextEncoding, Transport};
use kinlink::domain::{FeedKind, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kind = match data.first().map(|b| b % 4) {
        Some(0) => FeedKind::Attendance,
        Some(1) => FeedKind::PoliceDa,
        Some(2) => FeedKind::Housing,
        _ => FeedKind::Assessment,
    };
    // The second byte picks the delimiter and encoding, so both CSV paths are explored.
    let flags = data.get(1).copied().unwrap_or(0);
    let delimiter = if flags & 1 == 0 { b',' } else { b';' };
    let encoding = if flags & 2 == 0 {
        TextEncoding::Utf8
    } else {
        TextEncoding::Windows1252
    };
    let source = SourceSettings {
        name: "fuzz".into(),
        kind,
        format: Format::Csv,
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
