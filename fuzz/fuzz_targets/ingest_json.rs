//! Fuzz target: ingest of arbitrary JSON bytes must never panic; every input ends
//! as rows or a FileRejection.
#![no_main]

use kinlink::config::TextEncoding;
use kinlink::domain::Format;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // The third byte decides whether records sit at a path or the top level.
    let records_path = data
        .get(2)
        .is_some_and(|b| b % 2 == 1)
        .then(|| "data".to_string());
    let source = common::source(
        common::kind(data),
        Format::Json,
        b',',
        TextEncoding::Utf8,
        records_path,
    );
    common::drain(&source, data);
});
