//! Fuzz target: ingest of arbitrary CSV bytes must never panic; every input ends
//! as rows or a FileRejection.
#![no_main]

use kinlink::config::TextEncoding;
use kinlink::domain::Format;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // The second byte picks the delimiter and encoding, so both CSV paths are explored.
    let flags = data.get(1).copied().unwrap_or(0);
    let delimiter = if flags & 1 == 0 { b',' } else { b';' };
    let encoding = if flags & 2 == 0 {
        TextEncoding::Utf8
    } else {
        TextEncoding::Windows1252
    };
    let source = common::source(common::kind(data), Format::Csv, delimiter, encoding, None);
    common::drain(&source, data);
});
