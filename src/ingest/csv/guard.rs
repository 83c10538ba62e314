//! The byte guard in front of the CSV parser: every byte of a CSV file passes
//! through [`Guard`] before the `csv` crate sees it, and the guard stops the read
//! with a [`GuardError`] as soon as the file breaks a limit of its source:
//!
//! - a line (a record) longer than `max_line_bytes`, or a field longer than
//!   `max_field_bytes`: the parser's record buffer never grows past them, so the
//!   memory a file takes is bounded by the limits, not by the file;
//! - a quoted field still open at the end of its line, when the source's fields
//!   never span lines (`multiline_fields = false`, the default): an unbalanced `"`
//!   would otherwise swallow the rows after it into one field, and those rows would
//!   vanish without a trace;
//! - a quoted field still open at the end of the file.
//!
//! The guard follows the quoting rules the parser uses (RFC 4180 with doubled
//! quotes, the `csv` crate's defaults): a `"` opens a quoted field only as the
//! field's first byte; inside, `""` is a quote and a lone `"` closes the field;
//! a `"` inside an unquoted field is an ordinary character. So with
//! `multiline_fields = false` every record the parser yields is exactly one
//! physical line, and records plus quarantined rows account for every data line.
//!
//! Lines without a quote take a fast path (one `memchr3` scan a line); only lines
//! with quotes, or longer than the field limit, are walked byte by byte.

use std::fmt;
use std::io::{self, Read};

use memchr::{memchr3, memrchr};

/// What the guard enforces: the CSV limits of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuardLimits {
    pub delimiter: u8,
    pub max_line_bytes: usize,
    pub max_field_bytes: usize,
    pub multiline_fields: bool,
}

/// Why the guard stopped the read. Line numbers are physical lines (1 = the first
/// line of the file); fields are counted from 1 within their record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuardError {
    LineTooLong {
        line: u64,
        limit: usize,
    },
    FieldTooLong {
        line: u64,
        field: usize,
        limit: usize,
    },
    /// A quoted field that opened on `line` is still open at that line's end.
    QuoteSpansLines {
        line: u64,
        field: usize,
    },
    /// A quoted field that opened on `line` is still open at the end of the file.
    QuoteNeverClosed {
        line: u64,
        field: usize,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuardError::LineTooLong { line, limit } => {
                write!(f, "line {line} is longer than {limit} bytes")
            }
            GuardError::FieldTooLong { line, field, limit } => {
                write!(
                    f,
                    "field {field} of line {line} is longer than {limit} bytes"
                )
            }
            GuardError::QuoteSpansLines { line, field } => write!(
                f,
                "field {field} of line {line} opens a quote `\"` that is not closed on that line"
            ),
            GuardError::QuoteNeverClosed { line, field } => write!(
                f,
                "field {field} of line {line} opens a quote `\"` that is never closed"
            ),
        }
    }
}

impl std::error::Error for GuardError {}

impl GuardError {
    /// The physical line the problem is on (or, for a quote, where it opened).
    pub(crate) fn line(&self) -> u64 {
        match *self {
            GuardError::LineTooLong { line, .. }
            | GuardError::FieldTooLong { line, .. }
            | GuardError::QuoteSpansLines { line, .. }
            | GuardError::QuoteNeverClosed { line, .. } => line,
        }
    }

    /// Takes a guard error back out of the `io::Error` the parser passed on.
    pub(crate) fn from_io(e: io::Error) -> Result<GuardError, io::Error> {
        if e.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<GuardError>().is_some())
        {
            let inner = e.into_inner().expect("checked above");
            return Ok(*inner.downcast::<GuardError>().expect("checked above"));
        }
        Err(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a field's first byte.
    FieldStart,
    /// Inside a field that did not open with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a `"` inside a quoted field: a second `"` is an escaped quote,
    /// anything else means the quote closed the field.
    QuoteInQuoted,
}

/// A reader that checks CSV bytes against [`GuardLimits`] as they pass.
pub(crate) struct Guard<R> {
    inner: R,
    limits: GuardLimits,
    state: State,
    /// The physical line being read, from 1.
    line: u64,
    /// Bytes of the current record so far (its terminator not counted).
    record_bytes: usize,
    /// Bytes of the current field so far (quotes counted).
    field_bytes: usize,
    /// The current field's number within its record, from 1.
    field: usize,
    /// Where the open quoted field opened: (line, field).
    quote_opened: (u64, usize),
    failed: Option<GuardError>,
}

impl<R: Read> Guard<R> {
    pub(crate) fn new(inner: R, limits: GuardLimits) -> Guard<R> {
        Guard {
            inner,
            limits,
            state: State::FieldStart,
            line: 1,
            record_bytes: 0,
            field_bytes: 0,
            field: 1,
            quote_opened: (0, 0),
            failed: None,
        }
    }

    fn fail(&mut self, e: GuardError) -> io::Error {
        self.failed = Some(e.clone());
        io::Error::other(e)
    }

    /// Ends the current record at a terminator byte (outside quotes).
    fn end_record(&mut self, terminator: u8) {
        if terminator == b'\n' {
            self.line += 1;
        }
        self.state = State::FieldStart;
        self.record_bytes = 0;
        self.field_bytes = 0;
        self.field = 1;
    }

    /// Counts a delimiter: a byte of the record, not of either field.
    fn delimiter(&mut self) -> Result<(), GuardError> {
        self.record_bytes += 1;
        self.state = State::FieldStart;
        self.field += 1;
        self.field_bytes = 0;
        self.check_line()
    }

    fn check_line(&self) -> Result<(), GuardError> {
        if self.record_bytes > self.limits.max_line_bytes {
            return Err(GuardError::LineTooLong {
                line: self.line,
                limit: self.limits.max_line_bytes,
            });
        }
        Ok(())
    }

    fn grow(&mut self, n: usize) -> Result<(), GuardError> {
        self.record_bytes += n;
        self.field_bytes += n;
        if self.field_bytes > self.limits.max_field_bytes {
            let line = if self.state == State::Quoted || self.state == State::QuoteInQuoted {
                self.quote_opened.0
            } else {
                self.line
            };
            return Err(GuardError::FieldTooLong {
                line,
                field: self.field,
                limit: self.limits.max_field_bytes,
            });
        }
        self.check_line()
    }

    /// Checks one chunk of the file.
    fn scan(&mut self, data: &[u8]) -> Result<(), GuardError> {
        let delim = self.limits.delimiter;
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            if matches!(self.state, State::FieldStart | State::Unquoted) {
                // Fast path: the rest of this line holds no quote and, with what
                // came before, fits the field limit, so no field can break a limit
                // and the quoting state cannot change before the line ends. One
                // scan finds the line's end or its first quote.
                let hit = memchr3(b'\n', b'\r', b'"', rest);
                let quoted = hit.is_some_and(|j| rest[j] == b'"');
                let end = hit.unwrap_or(rest.len());
                let seg = &rest[..end];
                if !quoted && self.record_bytes + seg.len() <= self.limits.max_field_bytes {
                    self.record_bytes += seg.len();
                    if end < rest.len() {
                        self.end_record(rest[end]);
                        i += end + 1;
                    } else {
                        // The chunk ends inside the line: where does the field stand?
                        match memrchr(delim, seg) {
                            Some(k) => {
                                self.field += memchr::memchr_iter(delim, seg).count();
                                self.field_bytes = seg.len() - k - 1;
                            }
                            None => self.field_bytes += seg.len(),
                        }
                        if !seg.is_empty() {
                            self.state = if self.field_bytes == 0 {
                                State::FieldStart
                            } else {
                                State::Unquoted
                            };
                        }
                        i = data.len();
                    }
                    continue;
                }
            }
            i += self.step(rest)?;
        }
        Ok(())
    }

    /// The slow path: walks `rest` from the current state until the current
    /// record ends or the chunk does; returns the bytes consumed.
    fn step(&mut self, rest: &[u8]) -> Result<usize, GuardError> {
        let delim = self.limits.delimiter;
        let mut i = 0;
        while i < rest.len() {
            match self.state {
                State::FieldStart => {
                    let b = rest[i];
                    if b == b'"' {
                        self.state = State::Quoted;
                        self.quote_opened = (self.line, self.field);
                        self.grow(1)?;
                        i += 1;
                    } else if b == delim {
                        self.delimiter()?;
                        i += 1;
                    } else if b == b'\n' || b == b'\r' {
                        self.end_record(b);
                        return Ok(i + 1);
                    } else {
                        self.state = State::Unquoted;
                    }
                }
                State::Unquoted => {
                    let here = &rest[i..];
                    match memchr3(delim, b'\n', b'\r', here) {
                        None => {
                            self.grow(here.len())?;
                            return Ok(rest.len());
                        }
                        Some(j) => {
                            self.grow(j)?;
                            let b = here[j];
                            i += j + 1;
                            if b == delim {
                                self.delimiter()?;
                            } else {
                                self.end_record(b);
                                return Ok(i);
                            }
                        }
                    }
                }
                State::Quoted => {
                    let here = &rest[i..];
                    match memchr3(b'"', b'\n', b'\r', here) {
                        None => {
                            self.grow(here.len())?;
                            return Ok(rest.len());
                        }
                        Some(j) => {
                            self.grow(j + 1)?;
                            let b = here[j];
                            i += j + 1;
                            if b == b'"' {
                                self.state = State::QuoteInQuoted;
                            } else if !self.limits.multiline_fields {
                                let (line, field) = self.quote_opened;
                                return Err(GuardError::QuoteSpansLines { line, field });
                            } else if b == b'\n' {
                                self.line += 1;
                            }
                        }
                    }
                }
                State::QuoteInQuoted => {
                    let b = rest[i];
                    if b == b'"' {
                        self.state = State::Quoted;
                        self.grow(1)?;
                        i += 1;
                    } else if b == delim {
                        self.delimiter()?;
                        i += 1;
                    } else if b == b'\n' || b == b'\r' {
                        self.end_record(b);
                        return Ok(i + 1);
                    } else {
                        // `"ab"c`: the parser keeps reading the field unquoted.
                        self.state = State::Unquoted;
                    }
                }
            }
        }
        Ok(rest.len())
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::other(e.clone()));
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.state == State::Quoted {
                let (line, field) = self.quote_opened;
                return Err(self.fail(GuardError::QuoteNeverClosed { line, field }));
            }
            return Ok(0);
        }
        if let Err(e) = self.scan(&buf[..n]) {
            return Err(self.fail(e));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GuardLimits = GuardLimits {
        delimiter: b',',
        max_line_bytes: 64,
        max_field_bytes: 16,
        multiline_fields: false,
    };

    /// Reads all of `data` through a guard in chunks of `chunk` bytes.
    fn check(data: &[u8], limits: GuardLimits, chunk: usize) -> Result<(), GuardError> {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut g = Guard::new(Chunks(data, chunk), limits);
        let mut out = Vec::new();
        match g.read_to_end(&mut out) {
            Ok(_) => {
                assert_eq!(out, data, "the guard passes bytes through unchanged");
                Ok(())
            }
            Err(e) => Err(GuardError::from_io(e).expect("a guard error")),
        }
    }

    fn all_chunkings(data: &[u8], limits: GuardLimits) -> Result<(), GuardError> {
        let first = check(data, limits, data.len().max(1));
        for chunk in 1..=data.len().max(1) {
            assert_eq!(check(data, limits, chunk), first, "chunk size {chunk}");
        }
        first
    }

    #[test]
    fn well_formed_csv_passes_whatever_the_chunking() {
        let data = b"a,b,c\r\n1,\"x,\"\"y\"\"\",3\n\"\"\"\",,\n4,5\"6,7\n\"ab\"c,d\n";
        assert_eq!(all_chunkings(data, LIMITS), Ok(()));
    }

    #[test]
    fn an_unbalanced_quote_is_found_on_its_line() {
        let data = b"a,b,c\n1,2,3\n4,\"5,6\n7,8,9\n10,11,\"12\n";
        assert_eq!(
            all_chunkings(data, LIMITS),
            Err(GuardError::QuoteSpansLines { line: 3, field: 2 })
        );
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_an_ordinary_character() {
        let data = b"a,b\nsaid \"hi,2\n5'10\",3\n";
        assert_eq!(all_chunkings(data, LIMITS), Ok(()));
    }

    #[test]
    fn multiline_fields_are_allowed_when_the_source_says_so() {
        let multi = GuardLimits {
            multiline_fields: true,
            ..LIMITS
        };
        let data = b"a,b\n\"Flat 2\nHigh St\",x\n\"q\"\n";
        assert_eq!(all_chunkings(data, multi), Ok(()));
        assert_eq!(
            all_chunkings(b"a,b\n1,\"open\nstill\n", multi),
            Err(GuardError::QuoteNeverClosed { line: 2, field: 2 })
        );
        assert_eq!(
            all_chunkings(data, LIMITS),
            Err(GuardError::QuoteSpansLines { line: 2, field: 1 })
        );
    }

    #[test]
    fn a_quote_open_at_the_end_of_the_file_is_an_error() {
        assert_eq!(
            all_chunkings(b"a,b\n1,\"2", LIMITS),
            Err(GuardError::QuoteNeverClosed { line: 2, field: 2 })
        );
    }

    #[test]
    fn long_fields_and_lines_are_stopped_at_their_limits() {
        let long_field = format!("a,b\n1,{}\n", "x".repeat(17));
        assert_eq!(
            all_chunkings(long_field.as_bytes(), LIMITS),
            Err(GuardError::FieldTooLong {
                line: 2,
                field: 2,
                limit: 16
            })
        );
        let quoted = format!("a,b\n1,\"{}\"\n", "x".repeat(15));
        assert_eq!(
            all_chunkings(quoted.as_bytes(), LIMITS),
            Err(GuardError::FieldTooLong {
                line: 2,
                field: 2,
                limit: 16
            })
        );
        let fits = format!("a,b\n1,{}\n", "x".repeat(16));
        assert_eq!(all_chunkings(fits.as_bytes(), LIMITS), Ok(()));
        let fits_before_a_delimiter = format!("a,b\n{},1\n", "x".repeat(16));
        assert_eq!(
            all_chunkings(fits_before_a_delimiter.as_bytes(), LIMITS),
            Ok(())
        );
        let long_line = format!("h\n{}\n", vec!["x".repeat(15); 5].join(","));
        assert_eq!(
            all_chunkings(long_line.as_bytes(), LIMITS),
            Err(GuardError::LineTooLong { line: 2, limit: 64 })
        );
    }

    #[test]
    fn other_delimiters_and_bare_carriage_returns() {
        let semi = GuardLimits {
            delimiter: b';',
            ..LIMITS
        };
        assert_eq!(all_chunkings(b"a;b\r1;\"x;y\"\r", semi), Ok(()));
        assert_eq!(
            all_chunkings(b"a;b\n1;\"x\r2;3\n", semi),
            Err(GuardError::QuoteSpansLines { line: 2, field: 2 })
        );
    }
}
