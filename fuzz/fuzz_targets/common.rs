//! What every ingest fuzz target shares: a source of the given shape, and draining
//! a reader of arbitrary bytes to its end. The property is the same for all formats:
//! no input panics; every input ends as rows or a `FileRejection`.

// Not every target uses every helper.
#![allow(dead_code)]

use kinlink::config::{SourceSettings, TextEncoding, Transport};
use kinlink::domain::{FeedKind, Format};

/// The feed kind the first byte picks, so every kind's column checks are explored.
pub fn kind(data: &[u8]) -> FeedKind {
    match data.first().map(|b| b % 4) {
        Some(0) => FeedKind::Attendance,
        Some(1) => FeedKind::PoliceDa,
        Some(2) => FeedKind::Housing,
        _ => FeedKind::Assessment,
    }
}

/// A source with no column map (canonical headers) and the given shape.
pub fn source(
    kind: FeedKind,
    format: Format,
    delimiter: u8,
    encoding: TextEncoding,
    records_path: Option<String>,
) -> SourceSettings {
    SourceSettings {
        name: "fuzz".into(),
        kind,
        format,
        transport: Transport::Dir {
            path: "/nonexistent".into(),
        },
        max_bad_rows: 0.05,
        sheet: None,
        delimiter,
        encoding,
        records_path,
        next_path: None,
        stale_after_hours: None,
        columns: Default::default(),
    }
}

/// Opens `data` as a file of `source` and reads every batch.
pub fn drain(source: &SourceSettings, data: &[u8]) {
    if let Ok(mut reader) = kinlink::ingest::open_bytes(source, "fuzz", data.to_vec()) {
        while let Ok(batch) = reader.next_batch(64) {
            if batch.is_empty() {
                break;
            }
        }
    }
}
