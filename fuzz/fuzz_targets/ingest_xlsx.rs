//! Fuzz target: ingest of arbitrary spreadsheet bytes (xlsx/xls/ods, sniffed from the
//! bytes) must never panic; every input ends as rows or a FileRejection.
#![no_main]

use kinlink::config::TextEncoding;
use kinlink::domain::{FeedKind, Format};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let source = common::source(
        FeedKind::Attendance,
        Format::Xlsx,
        b',',
        TextEncoding::Utf8,
        None,
    );
    common::drain(&source, data);
});
