//! A dedicated reader for one XLSX worksheet's cells.
//!
//! calamine's cell reader spent about 80,000 instructions per 13-cell row of the
//! bench sheet (callgrind, 50k rows): quick-xml's buffered event reader alone was
//! half of it (each event copied and UTF-8 checked), the rest a generic attribute
//! parser, a `String` per text cell and a `Data` per value. A first version of
//! this module on quick-xml's events with calamine's per-cell work removed still
//! cost more than calamine, because the event reader dominates. So the worksheet
//! and the shared strings are read here by [`Tokens`], a small pull tokenizer that
//! hands out byte ranges of its buffer, and the cells are given the meaning
//! calamine 0.38's `XlsxCellReader::next_cell` gives them (the tests compare the
//! two on generated and hand-written sheets). The parts read once and small
//! (workbook.xml, its relationships, styles.xml) still go through quick-xml.
//!
//! calamine opens and checks the workbook and names its sheets and epoch; this
//! module finds the chosen sheet's part, and reads the shared strings and the
//! number formats that say which styles are dates (calamine keeps those private).
//! When [`locate`] does not recognise the layout, the caller falls back to
//! calamine's own reader.
//!
//! Invariant: on any input it returns cells or an error and never panics; it holds
//! the shared strings and one token (at most [`MAX_TOKEN`] bytes) at a time.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use calamine::{CellErrorType, Data, ExcelDateTime, ExcelDateTimeType};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use zip::ZipArchive;

use super::super::ReadSeek;

/// One workbook reader shared by calamine (which opens the workbook) and this
/// module (which reads the sheet afterwards): each handle keeps its own position
/// and seeks the shared reader only when another handle moved it, so a buffered
/// file keeps its buffer while one handle streams.
#[derive(Clone)]
pub(super) struct SharedReader {
    shared: Arc<Mutex<(Box<dyn ReadSeek>, u64)>>,
    pos: u64,
}

impl SharedReader {
    pub(super) fn new(inner: Box<dyn ReadSeek>) -> SharedReader {
        SharedReader {
            shared: Arc::new(Mutex::new((inner, 0))),
            pos: 0,
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other("the workbook reader failed on another thread")
}

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut guard = self.shared.lock().map_err(|_| poisoned())?;
        let (inner, at) = &mut *guard;
        if *at != self.pos {
            *at = inner.seek(SeekFrom::Start(self.pos))?;
        }
        let n = inner.read(buf)?;
        *at += n as u64;
        self.pos = *at;
        Ok(n)
    }
}

impl Seek for SharedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut guard = self.shared.lock().map_err(|_| poisoned())?;
        let (inner, at) = &mut *guard;
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self
                .pos
                .checked_add_signed(d)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?,
            SeekFrom::End(_) => {
                *at = inner.seek(to)?;
                *at
            }
        };
        Ok(self.pos)
    }
}

/// How a style shows a number: calamine's `CellFormat`, which it does not export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberKind {
    Other,
    DateTime,
    TimeDelta,
}

/// What the sheet reader needs from the rest of the workbook.
pub(super) struct Plan {
    /// The worksheet's ZIP entry.
    pub entry: String,
    pub strings: Vec<String>,
    /// By style id (`s` attribute).
    pub formats: Vec<NumberKind>,
    pub is_1904: bool,
}

type Xml<R> = Reader<BufReader<R>>;

fn xml_reader<R: Read>(r: R, capacity: usize) -> Xml<R> {
    let mut xml = Reader::from_reader(BufReader::with_capacity(capacity, r));
    // As calamine configures it, so that the two see the same events.
    let config = xml.config_mut();
    config.check_end_names = false;
    config.trim_text(false);
    config.check_comments = false;
    config.expand_empty_elements = true;
    xml
}

/// The value of the attribute `key` (compared whole, as calamine does) of a tag,
/// raw (not unescaped). Malformed attribute text yields `None`.
fn attr<'a>(e: &'a BytesStart<'_>, key: &str) -> Option<&'a str> {
    attr_where(e, |k| k == key)
}

/// Like [`attr`], but matching a key by its local name (`r:id` for `id`).
fn attr_local<'a>(e: &'a BytesStart<'_>, local: &str) -> Option<&'a str> {
    attr_where(e, |k| k.rsplit(':').next() == Some(local))
}

/// The raw value of the first attribute whose key `wanted` accepts.
fn attr_where<'a>(e: &'a BytesStart<'_>, wanted: impl Fn(&str) -> bool) -> Option<&'a str> {
    let mut rest = e.attributes_raw();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let eq = rest.find('=')?;
        let k = rest[..eq].trim_end();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let body = &after[1..];
        let end = body.find(quote)?;
        if wanted(k) {
            return Some(&body[..end]);
        }
        rest = &body[end + 1..];
    }
}

fn unescape_attr(v: &str) -> Option<String> {
    quick_xml::escape::unescape(v).ok().map(|c| c.into_owned())
}

fn open_entry<'a, R: Read + Seek>(
    zip: &'a mut ZipArchive<R>,
    name: &str,
) -> Option<Xml<zip::read::ZipFile<'a, R>>> {
    zip.by_name(name).ok().map(|f| xml_reader(f, 1 << 14))
}

/// The ZIP entry of the worksheet `sheet`, or `None` when the workbook is laid out
/// in a way this module does not handle (the caller then uses calamine's reader).
/// `names` are calamine's sheet names, which must be the ones found here.
pub(super) fn locate<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    names: &[String],
    sheet: &str,
) -> Option<String> {
    let rels = relationships(zip)?;
    let sheets = workbook_sheets(zip)?;
    if sheets.len() != names.len() || sheets.iter().zip(names).any(|((n, _), m)| n != m) {
        return None;
    }
    let (_, rid) = sheets.iter().find(|(n, _)| n == sheet)?;
    let (target, typ) = rels.get(rid)?;
    if typ.rsplit('/').next() != Some("worksheet") {
        return None;
    }
    let entry = match target.strip_prefix('/') {
        Some(abs) => abs.to_string(),
        None => format!("xl/{target}"),
    };
    zip.index_for_name(&entry)?;
    Some(entry)
}

/// Reads the shared strings and number formats for reading `entry`.
pub(super) fn load<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    entry: String,
    is_1904: bool,
) -> Result<Plan, String> {
    let strings = shared_strings(zip)?;
    let formats =
        number_formats(zip).ok_or("the workbook's styles (xl/styles.xml) are malformed")?;
    Ok(Plan {
        entry,
        strings,
        formats,
        is_1904,
    })
}

/// Relationship id → (target, type) of xl/workbook.xml.
fn relationships<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
) -> Option<HashMap<String, (String, String)>> {
    let mut xml = open_entry(zip, "xl/_rels/workbook.xml.rels")?;
    let mut rels = HashMap::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match xml.read_event_into(&mut buf).ok()? {
            Event::Start(e) if e.local_name().as_ref() == "Relationship" => {
                if let Some(id) = attr(&e, "Id") {
                    let target = attr(&e, "Target").unwrap_or_default().to_string();
                    let typ = attr(&e, "Type").unwrap_or_default().to_string();
                    rels.insert(id.to_string(), (target, typ));
                }
            }
            Event::Eof => return Some(rels),
            _ => {}
        }
    }
}

/// (name, relationship id) of every sheet, in workbook order.
fn workbook_sheets<R: Read + Seek>(zip: &mut ZipArchive<R>) -> Option<Vec<(String, String)>> {
    let mut xml = open_entry(zip, "xl/workbook.xml")?;
    let mut sheets = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match xml.read_event_into(&mut buf).ok()? {
            Event::Start(e) if e.local_name().as_ref() == "sheet" => {
                let name = unescape_attr(attr(&e, "name")?)?;
                let rid = attr_local(&e, "id")?.to_string();
                sheets.push((name, rid));
            }
            Event::Eof => return Some(sheets),
            _ => {}
        }
    }
}

/// The number kind of each cell style (`cellXfs`), from xl/styles.xml; an empty
/// table when there is none.
fn number_formats<R: Read + Seek>(zip: &mut ZipArchive<R>) -> Option<Vec<NumberKind>> {
    let Some(mut xml) = open_entry(zip, "xl/styles.xml") else {
        return Some(Vec::new());
    };
    let mut custom: HashMap<String, String> = HashMap::new();
    let mut formats = Vec::new();
    let mut in_cell_xfs = false;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match xml.read_event_into(&mut buf).ok()? {
            Event::Start(e) => match e.local_name().as_ref() {
                "numFmt" => {
                    if let (Some(id), Some(code)) = (attr(&e, "numFmtId"), attr(&e, "formatCode")) {
                        custom.insert(id.to_string(), unescape_attr(code)?);
                    }
                }
                "cellXfs" => in_cell_xfs = true,
                "xf" if in_cell_xfs => formats.push(match attr(&e, "numFmtId") {
                    None => NumberKind::Other,
                    Some(id) => match custom.get(id) {
                        Some(code) => custom_number_kind(code),
                        None => builtin_number_kind(id),
                    },
                }),
                _ => {}
            },
            Event::End(e) if e.local_name().as_ref() == "cellXfs" => in_cell_xfs = false,
            Event::Eof => return Some(formats),
            _ => {}
        }
    }
}

/// calamine 0.38's `detect_custom_number_format`: whether a number format code
/// shows a date/time, a duration or a plain number. This function and
/// [`builtin_number_kind`] are adapted from calamine (MIT licence, copyright (c)
/// 2016 Johann Tuffe), which does not export them.
fn custom_number_kind(format: &str) -> NumberKind {
    let mut escaped = false;
    let mut is_quote = false;
    let mut brackets = 0u8;
    let mut prev = ' ';
    let mut hms = false;
    let mut ap = false;
    for s in format.chars() {
        match (s, escaped, is_quote, ap, brackets) {
            (_, true, ..) => escaped = false,
            ('_' | '\\' | '*', ..) => escaped = true,
            ('"', _, true, _, _) => is_quote = false,
            (_, _, true, _, _) => (),
            ('"', _, _, _, _) => is_quote = true,
            (';', ..) => return NumberKind::Other,
            ('[', ..) => brackets = brackets.saturating_add(1),
            (']', .., 1) if hms => return NumberKind::TimeDelta,
            (']', ..) => brackets = brackets.saturating_sub(1),
            ('a' | 'A', _, _, false, 0) => ap = true,
            ('p' | 'm' | '/' | 'P' | 'M', _, _, true, 0) => return NumberKind::DateTime,
            ('d' | 'm' | 'h' | 'y' | 's' | 'D' | 'M' | 'H' | 'Y' | 'S', _, _, false, 0) => {
                return NumberKind::DateTime
            }
            _ => {
                if !(hms && s.eq_ignore_ascii_case(&prev)) {
                    hms = prev == '[' && matches!(s, 'm' | 'h' | 's' | 'M' | 'H' | 'S');
                }
            }
        }
        prev = s;
    }
    NumberKind::Other
}

/// calamine 0.38's `builtin_format_by_id`.
fn builtin_number_kind(id: &str) -> NumberKind {
    match id {
        "14" | "15" | "16" | "17" | "18" | "19" | "20" | "21" | "22" | "45" | "47" => {
            NumberKind::DateTime
        }
        "27" | "28" | "29" | "30" | "31" | "32" | "33" | "34" | "35" | "36" | "50" | "51"
        | "52" | "53" | "54" | "55" | "56" | "57" | "58" => NumberKind::DateTime,
        "46" => NumberKind::TimeDelta,
        _ => NumberKind::Other,
    }
}

/// xl/sharedStrings.xml, or no strings when there is none.
fn shared_strings<R: Read + Seek>(zip: &mut ZipArchive<R>) -> Result<Vec<String>, String> {
    let Ok(part) = zip.by_name("xl/sharedStrings.xml") else {
        return Ok(Vec::new());
    };
    let mut xml = Tokens::new(part);
    let mut strings = Vec::new();
    let mut bufs = TextBufs::default();
    loop {
        match xml.token()? {
            Tok::Start { name, .. } if local(xml.get(name)) == b"si" => {
                let mut s = String::new();
                let closing = name;
                bufs.closing.clear();
                bufs.closing.extend_from_slice(xml.get(closing));
                read_rich(&mut xml, &mut bufs, &mut s)?;
                strings.push(s);
            }
            Tok::End { name } if local(xml.get(name)) == b"sst" => return Ok(strings),
            Tok::Eof => return Err("the shared strings end early".into()),
            _ => {}
        }
    }
}

/// Bytes read from a part at a time.
const READ: usize = 64 << 10;

/// The largest single XML token (a tag, or a run of text) held in memory. Excel
/// caps a cell at 32,767 characters, so this only stops hostile input from growing
/// the buffer without bound.
const MAX_TOKEN: usize = 16 << 20;

/// A byte range of the token buffer, valid until the next token is read.
#[derive(Debug, Clone, Copy)]
struct Span(usize, usize);

/// An XML token, as quick-xml's reader would report it with calamine's settings
/// (empty elements expanded into a start and an end).
#[derive(Debug, Clone, Copy)]
enum Tok {
    Start {
        name: Span,
        attrs: Span,
    },
    End {
        name: Span,
    },
    /// Raw (still escaped) text up to the next tag.
    Text(Span),
    CData(Span),
    /// A comment, processing instruction, declaration or DOCTYPE.
    Other,
    Eof,
}

/// A small pull tokenizer over a part: the hot loop of the sheet reader. It scans
/// with memchr and hands out byte ranges of its buffer, so a cell costs a few
/// hundred instructions instead of quick-xml's few thousand (its events validate
/// and copy every tag).
struct Tokens<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The end of an empty element (`<c/>`) still to report.
    pending_end: Option<Span>,
}

fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// The first `b` in `hay`. Tokens are short, where a plain loop beats memchr's
/// setup.
#[inline]
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    hay.iter().position(|&x| x == b)
}

impl<R: Read> Tokens<R> {
    fn new(src: R) -> Tokens<R> {
        Tokens {
            src,
            buf: Vec::with_capacity(READ * 2),
            pos: 0,
            eof: false,
            pending_end: None,
        }
    }

    fn get(&self, s: Span) -> &[u8] {
        self.buf.get(s.0..s.1).unwrap_or_default()
    }

    /// Reads more bytes after the unread ones; `false` at the end of the part.
    fn more(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() >= MAX_TOKEN {
            return Err(format!(
                "the worksheet XML has a tag or text over {} MiB",
                MAX_TOKEN >> 20
            ));
        }
        let old = self.buf.len();
        self.buf.resize(old + READ, 0);
        let n = loop {
            match self.src.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(format!("the worksheet part is unreadable ({e})"));
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// Where `pat` ends in the unread bytes from `from`, reading more as needed;
    /// `None` at the end of the part. Offsets are relative to `self.pos`.
    fn find(&mut self, from: usize, pat: &[u8]) -> Result<Option<usize>, String> {
        let mut from = from;
        loop {
            let hay = &self.buf[self.pos..];
            if let Some(i) = memchr::memmem::find(hay.get(from..).unwrap_or_default(), pat) {
                return Ok(Some(from + i + pat.len()));
            }
            from = hay.len().saturating_sub(pat.len() - 1).max(from);
            if !self.more()? {
                return Ok(None);
            }
        }
    }

    fn token(&mut self) -> Result<Tok, String> {
        if let Some(name) = self.pending_end.take() {
            return Ok(Tok::End { name });
        }
        loop {
            if self.pos >= self.buf.len() && !self.more()? {
                return Ok(Tok::Eof);
            }
            let hay = &self.buf[self.pos..];
            if hay[0] != b'<' {
                match find_byte(hay, b'<') {
                    Some(i) => {
                        let span = Span(self.pos, self.pos + i);
                        self.pos += i;
                        return Ok(Tok::Text(span));
                    }
                    None if self.eof => {
                        let span = Span(self.pos, self.buf.len());
                        self.pos = self.buf.len();
                        return Ok(Tok::Text(span));
                    }
                    None => {
                        self.more()?;
                        continue;
                    }
                }
            }
            let unclosed = || "the worksheet XML ends inside a tag".to_string();
            let Some(&second) = hay.get(1) else {
                if !self.more()? {
                    return Err(unclosed());
                }
                continue;
            };
            if second == b'!' || second == b'?' {
                // Enough bytes to tell the kind of markup.
                if hay.len() < 9 && !self.eof {
                    self.more()?;
                    continue;
                }
                return self.markup();
            }
            if hay.starts_with(b"</") {
                let end = loop {
                    let hay = &self.buf[self.pos..];
                    if let Some(i) = find_byte(&hay[2..], b'>') {
                        break i + 3;
                    }
                    if !self.more()? {
                        return Err(unclosed());
                    }
                };
                let start = self.pos + 2;
                let stop = self.pos + end - 1;
                let raw = &self.buf[start..stop];
                let len = raw
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .unwrap_or(raw.len());
                self.pos += end;
                return Ok(Tok::End {
                    name: Span(start, start + len),
                });
            }
            // A start tag: its end is the first `>` outside quotes.
            let end = self.tag_end()?;
            let start = self.pos + 1;
            let mut stop = self.pos + end;
            let empty = stop > start && self.buf[stop - 1] == b'/';
            if empty {
                stop -= 1;
            }
            let raw = &self.buf[start..stop];
            let len = raw
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(raw.len());
            self.pos += end + 1;
            let name = Span(start, start + len);
            if empty {
                self.pending_end = Some(name);
            }
            return Ok(Tok::Start {
                name,
                attrs: Span(start + len, stop),
            });
        }
    }

    /// A comment, CDATA section, processing instruction or declaration at `pos`.
    fn markup(&mut self) -> Result<Tok, String> {
        let unclosed = || "the worksheet XML ends inside a tag".to_string();
        let hay = &self.buf[self.pos..];
        if hay.starts_with(b"<!--") {
            let end = self.find(4, b"-->")?.ok_or_else(unclosed)?;
            self.pos += end;
            return Ok(Tok::Other);
        }
        if hay.starts_with(b"<![CDATA[") {
            let end = self.find(9, b"]]>")?.ok_or_else(unclosed)?;
            let span = Span(self.pos + 9, self.pos + end - 3);
            self.pos += end;
            return Ok(Tok::CData(span));
        }
        let end = if hay.starts_with(b"<?") {
            self.find(2, b"?>")?
        } else {
            self.find(2, b">")?
        };
        self.pos += end.ok_or_else(unclosed)?;
        Ok(Tok::Other)
    }

    /// Where the start tag at `pos` ends (the offset of its `>` outside quotes).
    fn tag_end(&mut self) -> Result<usize, String> {
        let mut i = 1;
        let mut quote = 0u8;
        loop {
            let hay = &self.buf[self.pos..];
            let found = hay[i..].iter().position(|&b| {
                if quote != 0 {
                    if b == quote {
                        quote = 0;
                    }
                    false
                } else if b == b'"' || b == b'\'' {
                    quote = b;
                    false
                } else {
                    b == b'>'
                }
            });
            match found {
                Some(j) => return Ok(i + j),
                None => {
                    i = hay.len();
                    if !self.more()? {
                        return Err("the worksheet XML ends inside a tag".into());
                    }
                }
            }
        }
    }

    /// Skips to the end of the element named `name` just opened (nested elements of
    /// the same name included), as quick-xml's `read_to_end` does.
    fn skip(&mut self, name: &[u8]) -> Result<(), String> {
        let mut depth = 0usize;
        loop {
            match self.token()? {
                Tok::Start { name: n, .. } if self.get(n) == name => depth += 1,
                Tok::End { name: n } if self.get(n) == name => {
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                Tok::Eof => return Err("the worksheet XML ends inside an element".into()),
                _ => {}
            }
        }
    }
}

/// The attributes of a tag as raw (key, value) pairs; stops at the first malformed
/// one.
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0;
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = &rest[start..];
        let eq = find_byte(rest, b'=')?;
        let key = rest[..eq].trim_ascii_end();
        let after = rest[eq + 1..].trim_ascii_start();
        let quote = *after.first()?;
        if quote != b'"' && quote != b'\'' {
            self.0 = &[];
            return None;
        }
        let body = &after[1..];
        let Some(end) = find_byte(body, quote) else {
            self.0 = &[];
            return None;
        };
        self.0 = &body[end + 1..];
        Some((key, &body[..end]))
    }
}

/// The raw value of the attribute `key` (compared whole) in a tag's attribute
/// bytes; `None` when it is absent or the attributes are malformed before it.
fn attr_bytes<'a>(attrs: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    Attrs(attrs).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn as_str(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "the worksheet XML is not valid UTF-8".to_string())
}

/// Appends raw XML text with entities resolved and line ends normalised (as
/// quick-xml's `xml10_content` and calamine's entity handling do).
fn push_text(raw: &[u8], out: &mut String) -> Result<(), String> {
    let raw = as_str(raw)?;
    if !raw.bytes().any(|b| b == b'&' || b == b'\r') {
        out.push_str(raw);
        return Ok(());
    }
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\r']) {
        out.push_str(&rest[..i]);
        if rest.as_bytes()[i] == b'\r' {
            out.push('\n');
            rest = rest[i + 1..].strip_prefix('\n').unwrap_or(&rest[i + 1..]);
            continue;
        }
        let after = &rest[i + 1..];
        let semi = after
            .find(';')
            .ok_or("the worksheet XML has an unterminated entity")?;
        push_entity(&after[..semi], out)?;
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// CDATA text: line ends normalised, nothing unescaped.
fn push_cdata(raw: &[u8], out: &mut String) -> Result<(), String> {
    let raw = as_str(raw)?;
    if !raw.contains('\r') {
        out.push_str(raw);
        return Ok(());
    }
    out.push_str(&raw.replace("\r\n", "\n").replace('\r', "\n"));
    Ok(())
}

/// An entity reference (`amp`, `#233`, `#xE9`) as calamine resolves it.
fn push_entity(name: &str, out: &mut String) -> Result<(), String> {
    let known = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    };
    let c = known.or_else(|| {
        let num = name.strip_prefix('#')?;
        let code = match num.strip_prefix('x') {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        if code == 0 {
            return None;
        }
        char::from_u32(code)
    });
    match c {
        Some(c) => {
            out.push(c);
            Ok(())
        }
        None => Err(format!("the worksheet XML has an unknown entity &{name};")),
    }
}

/// Scratch buffers, reused from cell to cell.
#[derive(Default)]
struct TextBufs {
    /// The qualified name of the element being read to its end.
    closing: Vec<u8>,
    t_name: Vec<u8>,
    text: String,
}

/// A rich or simple string (`<is>`, `<si>`, whose name is in `bufs.closing`) up to
/// its closing tag, appended to `out`: the text of every `<t>` outside phonetic
/// runs, each trimmed unless `xml:space="preserve"` and with Excel's `_xHHHH_`
/// escapes decoded (as calamine's `read_string` does).
fn read_rich<R: Read>(
    xml: &mut Tokens<R>,
    bufs: &mut TextBufs,
    out: &mut String,
) -> Result<(), String> {
    let mut phonetic = false;
    loop {
        match xml.token()? {
            Tok::Start { name, .. } if local(xml.get(name)) == b"rPh" => phonetic = true,
            Tok::End { name } if xml.get(name) == bufs.closing.as_slice() => return Ok(()),
            Tok::End { name } if local(xml.get(name)) == b"rPh" => phonetic = false,
            Tok::Start { name, attrs } if local(xml.get(name)) == b"t" && !phonetic => {
                let preserve = attr_bytes(xml.get(attrs), b"xml:space") == Some(b"preserve");
                bufs.t_name.clear();
                bufs.t_name.extend_from_slice(xml.get(name));
                bufs.text.clear();
                loop {
                    match xml.token()? {
                        Tok::Text(s) => push_text(xml.get(s), &mut bufs.text)?,
                        Tok::CData(s) => push_cdata(xml.get(s), &mut bufs.text)?,
                        Tok::End { name } if xml.get(name) == bufs.t_name.as_slice() => break,
                        Tok::Eof => return Err("the worksheet XML ends inside a <t>".into()),
                        _ => {}
                    }
                }
                let text = if preserve {
                    bufs.text.as_str()
                } else {
                    bufs.text.trim_matches([' ', '\t', '\r', '\n'])
                };
                push_unescaped(text, out);
            }
            Tok::Eof => return Err("the worksheet XML ends inside a string".into()),
            _ => {}
        }
    }
}

const ESCAPE_LEN: usize = 7; // _xHHHH_

/// calamine's `parse_xml_escape`: the UTF-16 unit of an `_xHHHH_` at `i`.
fn xml_escape_at(s: &str, i: usize) -> Option<u16> {
    let b = s.as_bytes().get(i..i + ESCAPE_LEN)?;
    if b[0] != b'_' || b[1] != b'x' || b[6] != b'_' || !b[2..6].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(&b[2..6]).ok()?, 16).ok()
}

/// Appends `s` with Excel's `_xHHHH_` escapes decoded (calamine's `unescape_xml`).
fn push_unescaped(s: &str, out: &mut String) {
    if !s.contains("_x") {
        out.push_str(s);
        return;
    }
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = s[i..].find('_') {
        let at = i + off;
        let Some(unit) = xml_escape_at(s, at) else {
            i = at + 1;
            continue;
        };
        out.push_str(&s[copied..at]);
        let mut next = at + ESCAPE_LEN;
        match unit {
            0xD800..=0xDBFF => match xml_escape_at(s, next) {
                Some(low @ 0xDC00..=0xDFFF) => {
                    let cp =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                    next += ESCAPE_LEN;
                }
                _ => out.push(char::REPLACEMENT_CHARACTER),
            },
            0xDC00..=0xDFFF => out.push(char::REPLACEMENT_CHARACTER),
            _ => out.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER)),
        }
        copied = next;
        i = next;
    }
    out.push_str(&s[copied..]);
}

/// A cell reference (`B12`, or a row alone) as (0-based row, 0-based column); like
/// calamine's, but a reference too long for u32 is an error rather than a wrap.
fn cell_ref(r: &str) -> Result<(u32, Option<u32>), String> {
    let bad = || format!("the worksheet has a bad cell reference {r:?}");
    let b = r.as_bytes();
    let mut i = 0;
    let mut col: u32 = 0;
    let mut row: u32 = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        let letter = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'0'..=b'9' => {
                row = u32::from(c - b'0');
                break;
            }
            _ => return Err(bad()),
        };
        col = col
            .checked_mul(26)
            .and_then(|v| v.checked_add(u32::from(letter) + 1))
            .ok_or_else(bad)?;
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if !c.is_ascii_digit() {
            return Err(bad());
        }
        row = row
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(c - b'0')))
            .ok_or_else(bad)?;
    }
    let row = row.checked_sub(1).ok_or_else(bad)?;
    Ok((row, col.checked_sub(1)))
}

/// A cell's value as the sheet reader hands it over.
pub(super) enum Value {
    Empty,
    /// The text this call appended to the caller's buffer.
    Text,
    Other(Data),
}

/// Streams the cells of one worksheet part.
pub(super) struct SheetReader<R: Read> {
    xml: Tokens<R>,
    plan: Plan,
    row: u32,
    col: u32,
    bufs: TextBufs,
    done: bool,
}

impl<R: Read> SheetReader<R> {
    /// Reads up to `<sheetData>`.
    pub(super) fn new(part: R, plan: Plan) -> Result<SheetReader<R>, String> {
        let mut xml = Tokens::new(part);
        let mut first: Option<String> = None;
        loop {
            match xml.token()? {
                Tok::Start { name, .. } => match local(xml.get(name)) {
                    b"sheetData" => break,
                    other => {
                        if first.is_none() {
                            first = Some(String::from_utf8_lossy(other).into_owned());
                        }
                    }
                },
                Tok::Eof => {
                    return Err(match first {
                        Some(t) => format!("the sheet is not a worksheet (it is a {t})"),
                        None => "the worksheet XML ends before its cells".into(),
                    })
                }
                _ => {}
            }
        }
        Ok(SheetReader {
            xml,
            plan,
            row: 0,
            col: 0,
            bufs: TextBufs::default(),
            done: false,
        })
    }

    /// The next cell as (row, column, value), its text appended to `text`; `None`
    /// after the last. Cells without a value come back as [`Value::Empty`].
    pub(super) fn next_cell(
        &mut self,
        text: &mut String,
    ) -> Result<Option<(u32, u32, Value)>, String> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.xml.token()? {
                Tok::Start { name, attrs } => match local(self.xml.get(name)) {
                    b"row" => {
                        if let Some(r) = attr_bytes(self.xml.get(attrs), b"r") {
                            self.row = cell_ref(as_str(r)?)?.0;
                        }
                    }
                    b"c" => {
                        let (mut r, mut st, mut t) = (None, None, None);
                        for (k, v) in Attrs(self.xml.get(attrs)) {
                            match k {
                                b"r" if r.is_none() => r = Some(v),
                                b"s" if st.is_none() => st = Some(v),
                                b"t" if t.is_none() => t = Some(v),
                                _ => {}
                            }
                        }
                        let pos = match r {
                            Some(r) => {
                                let r = as_str(r)?;
                                let (r_row, r_col) = cell_ref(r)?;
                                let r_col = r_col.ok_or_else(|| {
                                    format!(
                                        "the worksheet has a cell reference without a column {r:?}"
                                    )
                                })?;
                                self.col = r_col;
                                (r_row, r_col)
                            }
                            None => (self.row, self.col),
                        };
                        let formats = &self.plan.formats;
                        let kind = match st {
                            Some(s) => as_str(s)?
                                .parse::<usize>()
                                .map_or(formats.first().copied(), |id| formats.get(id).copied()),
                            None => Some(NumberKind::Other),
                        };
                        let typ = CellType::of(t.map(as_str).transpose()?);
                        let value = self.cell_value(Cell { kind, typ }, text)?;
                        self.col = self.col.wrapping_add(1);
                        return Ok(Some((pos.0, pos.1, value)));
                    }
                    _ => {}
                },
                Tok::End { name } => match local(self.xml.get(name)) {
                    b"row" => {
                        self.row = self.row.wrapping_add(1);
                        self.col = 0;
                    }
                    b"sheetData" => {
                        self.done = true;
                        return Ok(None);
                    }
                    _ => {}
                },
                Tok::Eof => return Err("the worksheet XML ends before its last cell".into()),
                _ => {}
            }
        }
    }

    /// The children of a `<c>` up to its end: the last child gives the value.
    fn cell_value(&mut self, cell: Cell, text: &mut String) -> Result<Value, String> {
        if let Some(value) = self.plain_cell(cell, text)? {
            return Ok(value);
        }
        let mark = text.len();
        let mut value = Value::Empty;
        loop {
            match self.xml.token()? {
                Tok::Start { name, .. } => {
                    text.truncate(mark);
                    self.bufs.closing.clear();
                    self.bufs.closing.extend_from_slice(self.xml.get(name));
                    value = self.read_value(cell, text)?;
                }
                Tok::End { name } if local(self.xml.get(name)) == b"c" => return Ok(value),
                Tok::Eof => return Err("the worksheet XML ends inside a cell".into()),
                _ => {}
            }
        }
    }

    /// The two shapes nearly every cell has, `<v>…</v></c>` and
    /// `<is><t>…</t></is></c>` (no prefixes or attributes), read straight from the
    /// buffer when they are there whole: the same value as the token by token
    /// reading, in about a fifth of the work. `None` leaves the reading to it.
    fn plain_cell(&mut self, cell: Cell, text: &mut String) -> Result<Option<Value>, String> {
        const INLINE: &[u8] = b"<is><t>";
        const INLINE_END: &[u8] = b"</t></is></c>";
        if self.xml.pending_end.is_some() {
            return Ok(None);
        }
        let hay = self.xml.buf.get(self.xml.pos..).unwrap_or_default();
        if cell.typ == CellType::Inline && hay.starts_with(INLINE) {
            let body = &hay[INLINE.len()..];
            let Some(lt) = find_byte(body, b'<') else {
                return Ok(None);
            };
            if !body[lt..].starts_with(INLINE_END) {
                return Ok(None);
            }
            let bufs = &mut self.bufs;
            bufs.text.clear();
            push_text(&body[..lt], &mut bufs.text)?;
            push_unescaped(bufs.text.trim_matches([' ', '\t', '\r', '\n']), text);
            self.xml.pos += INLINE.len() + lt + INLINE_END.len();
            return Ok(Some(Value::Text));
        }
        if cell.typ.is_plain() && hay.starts_with(b"<v>") {
            let body = &hay[3..];
            let Some(lt) = find_byte(body, b'<') else {
                return Ok(None);
            };
            let raw = &body[..lt];
            if !body[lt..].starts_with(b"</v></c>") || raw.contains(&b'&') {
                return Ok(None);
            }
            let value = if raw.is_empty() {
                Value::Empty
            } else {
                plain_value(as_str(raw)?, cell, &self.plan, text)?
            };
            self.xml.pos += 3 + lt + 8;
            return Ok(Some(value));
        }
        Ok(None)
    }

    /// One child of a `<c>` (its name in `bufs.closing`), as calamine's
    /// `read_value` reads it.
    fn read_value(&mut self, cell: Cell, text: &mut String) -> Result<Value, String> {
        let xml = &mut self.xml;
        let bufs = &mut self.bufs;
        match local(&bufs.closing) {
            b"is" => {
                read_rich(xml, bufs, text)?;
                Ok(Value::Text)
            }
            b"v" if cell.typ == CellType::Inline => {
                xml.skip(&bufs.closing)?;
                Ok(Value::Empty)
            }
            b"v" if cell.typ.is_plain() => {
                let value = match xml.token()? {
                    Tok::Text(s) => {
                        // quick-xml reports text up to the first entity.
                        let raw = xml.get(s);
                        let raw = &raw[..find_byte(raw, b'&').unwrap_or(raw.len())];
                        if raw.is_empty() {
                            Value::Empty
                        } else {
                            plain_value(as_str(raw)?, cell, &self.plan, text)?
                        }
                    }
                    Tok::End { name } if xml.get(name) == bufs.closing.as_slice() => {
                        return Ok(Value::Empty)
                    }
                    Tok::Eof => return Err("the worksheet XML ends inside a value".into()),
                    _ => Value::Empty,
                };
                xml.skip(&bufs.closing)?;
                Ok(value)
            }
            b"v" => {
                let s = &mut bufs.text;
                s.clear();
                loop {
                    match xml.token()? {
                        Tok::Text(t) => push_text(xml.get(t), s)?,
                        Tok::End { name } if xml.get(name) == bufs.closing.as_slice() => break,
                        Tok::Eof => return Err("the worksheet XML ends inside a value".into()),
                        _ => {}
                    }
                }
                match cell.typ {
                    CellType::Date => Ok(Value::Other(Data::DateTimeIso(s.clone()))),
                    CellType::Str => {
                        push_unescaped(s, text);
                        Ok(Value::Text)
                    }
                    _ => Err("the worksheet has a cell of an unknown type".into()),
                }
            }
            b"f" => {
                xml.skip(&bufs.closing)?;
                Ok(Value::Empty)
            }
            _ => Err("the worksheet has an unexpected element in a cell".into()),
        }
    }
}

/// What a cell's attributes say about its value.
#[derive(Clone, Copy)]
struct Cell {
    /// The style's number kind; `None` for a style id outside the table.
    kind: Option<NumberKind>,
    typ: CellType,
}

/// A cell's `t` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellType {
    /// No `t`: a number, or text when it does not parse as one.
    Untyped,
    Number,
    Shared,
    Bool,
    Error,
    Inline,
    Str,
    Date,
    Unknown,
}

impl CellType {
    fn of(t: Option<&str>) -> CellType {
        match t {
            None => CellType::Untyped,
            Some("n") => CellType::Number,
            Some("s") => CellType::Shared,
            Some("b") => CellType::Bool,
            Some("e") => CellType::Error,
            Some("inlineStr" | "is") => CellType::Inline,
            Some("str") => CellType::Str,
            Some("d") => CellType::Date,
            Some(_) => CellType::Unknown,
        }
    }

    /// Types whose `<v>` is plain ASCII, read from its first text event.
    fn is_plain(self) -> bool {
        matches!(
            self,
            CellType::Untyped
                | CellType::Number
                | CellType::Shared
                | CellType::Bool
                | CellType::Error
        )
    }
}

/// calamine's `read_v` for numbers, shared strings, booleans and errors.
fn plain_value(v: &str, cell: Cell, plan: &Plan, text: &mut String) -> Result<Value, String> {
    match cell.typ {
        CellType::Shared => {
            if v.is_empty() {
                return Ok(Value::Empty);
            }
            let i = v.parse::<usize>().unwrap_or(0);
            let s = plan
                .strings
                .get(i)
                .ok_or("a cell's string index is not in the shared strings table")?;
            text.push_str(s);
            Ok(Value::Text)
        }
        CellType::Bool => {
            let b = v.trim();
            if b.is_empty() {
                Ok(Value::Empty)
            } else if b == "0" || b.eq_ignore_ascii_case("false") {
                Ok(Value::Other(Data::Bool(false)))
            } else if b == "1" || b.eq_ignore_ascii_case("true") {
                Ok(Value::Other(Data::Bool(true)))
            } else {
                Err(format!("the worksheet has a bad boolean {v:?}"))
            }
        }
        CellType::Error => v
            .parse::<CellErrorType>()
            .map(|e| Value::Other(Data::Error(e)))
            .map_err(|e| format!("the worksheet has a bad error value ({e})")),
        _ => {
            if v.is_empty() {
                return Ok(Value::Empty);
            }
            match v.parse::<f64>() {
                Ok(n) => Ok(Value::Other(match cell.kind {
                    Some(NumberKind::DateTime) => Data::DateTime(ExcelDateTime::new(
                        n,
                        ExcelDateTimeType::DateTime,
                        plan.is_1904,
                    )),
                    Some(NumberKind::TimeDelta) => Data::DateTime(ExcelDateTime::new(
                        n,
                        ExcelDateTimeType::TimeDelta,
                        plan.is_1904,
                    )),
                    _ => Data::Float(n),
                })),
                Err(_) if cell.typ == CellType::Untyped => {
                    // No explicit type: calamine falls back to text; `t="n"` is an error.
                    text.push_str(v);
                    Ok(Value::Text)
                }
                Err(e) => Err(format!("the worksheet has a bad number {v:?} ({e})")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use calamine::{DataRef, Reader as _};
    use proptest::prelude::*;
    use rust_xlsxwriter::{Format as XFormat, Workbook};

    use super::*;

    type Cells = Vec<(u32, u32, Data)>;

    /// Hands out at most `step` bytes a read, so tokens straddle every refill.
    struct Trickle<R>(R, usize);

    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    /// The non-empty cells of `sheet` as calamine's own cell reader sees them.
    fn calamine_cells(bytes: &[u8], sheet: &str) -> Result<Cells, String> {
        let mut wb = calamine::Xlsx::new(Cursor::new(bytes.to_vec())).map_err(|e| e.to_string())?;
        let mut cells = wb
            .worksheet_cells_reader(sheet)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(cell) = cells.next_cell().map_err(|e| e.to_string())? {
            let (r, c) = cell.get_position();
            if !matches!(cell.get_value(), DataRef::Empty) {
                out.push((r, c, Data::from(cell.get_value().clone())));
            }
        }
        Ok(out)
    }

    /// The same through this module, reading the part `step` bytes at a time.
    fn our_cells(bytes: &[u8], sheet: &str, step: usize) -> Result<Cells, String> {
        let wb = calamine::Xlsx::new(Cursor::new(bytes.to_vec())).map_err(|e| e.to_string())?;
        let names = wb.sheet_names();
        let is_1904 = wb.has_1904_epoch();
        let shared = SharedReader::new(Box::new(Cursor::new(bytes.to_vec())));
        let mut zip = ZipArchive::new(shared).map_err(|e| e.to_string())?;
        let entry = locate(&mut zip, &names, sheet).ok_or("the sheet was not located")?;
        let plan = load(&mut zip, entry.clone(), is_1904)?;
        let part = zip.by_name(&entry).map_err(|e| e.to_string())?;
        let mut reader = SheetReader::new(Trickle(part, step), plan)?;
        let mut out = Vec::new();
        let mut text = String::new();
        while let Some((r, c, v)) = reader.next_cell(&mut text)? {
            match v {
                Value::Empty => {}
                Value::Text => out.push((r, c, Data::String(text.clone()))),
                Value::Other(d) => out.push((r, c, d)),
            }
            text.clear();
        }
        Ok(out)
    }

    fn check_same(bytes: &[u8], sheet: &str) -> Cells {
        let theirs = calamine_cells(bytes, sheet);
        for step in [1, 7, 1 << 20] {
            assert_eq!(
                our_cells(bytes, sheet, step),
                theirs,
                "read {step} bytes at a time"
            );
        }
        theirs.unwrap()
    }

    /// Replaces a workbook's first worksheet XML.
    fn with_sheet_xml(xlsx: &[u8], sheet_xml: &str) -> Vec<u8> {
        super::super::tests::with_entry(xlsx, "xl/worksheets/sheet1.xml", |_| {
            sheet_xml.as_bytes().to_vec()
        })
    }

    #[test]
    fn hand_written_sheet_xml_reads_as_calamine_reads_it() {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.write_string(0, 0, "shared one").unwrap();
        ws.write_string(0, 1, "shared two").unwrap();
        let date = XFormat::new().set_num_format("dd/mm/yyyy");
        ws.write_number_with_format(0, 2, 45000.0, &date).unwrap();
        let base = wb.save_to_buffer().unwrap();
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><x:dimension ref="A1:E9"/><!-- a comment with <row> inside --><x:sheetData>
<x:row r="2" spans="1:5"><x:c r="A2" t="s"><x:v>1</x:v></x:c><x:c r="B2" s="1"><x:v>45000.5</x:v></x:c><x:c r="C2" t="inlineStr"><x:is><x:t xml:space="preserve">  a &amp; b &#233;&#x41; </x:t></x:is></x:c><x:c r="D2" t="inlineStr"><x:is><x:t>  trimmed_x000D_ </x:t></x:is></x:c></x:row>
<x:row><x:c t="b"><x:v>1</x:v></x:c><x:c t="e"><x:v>#N/A</x:v></x:c><x:c t="str"><x:f>A1&amp;"x"</x:f><x:v>p &lt; q</x:v></x:c><x:c r="E3" t="d"><x:v>2025-01-02T00:00:00</x:v></x:c></x:row>
<x:row r="5"><x:c r="A5" t="inlineStr"><x:is><x:r><x:t>rich </x:t></x:r><x:r><x:t>text</x:t></x:r><x:rPh><x:t>phonetic</x:t></x:rPh></x:is></x:c><x:c r="B5" t="inlineStr"><x:is><x:t><![CDATA[<cdata> & more]]></x:t></x:is></x:c><x:c r="C5"/><x:c r="D5" s="0" t="n"><x:v>-1.5e3</x:v></x:c><x:c r="E5" s="1"><x:f>TODAY()</x:f><x:v>45001</x:v></x:c></x:row>
<x:row r="6"/><x:row r="7" x14ac:dyDescent="0.25" note='a > b'><x:c r="A7"><x:v>not a number</x:v></x:c><x:c r="B7" t="inlineStr"><x:is/></x:c><x:c r="C7" t="s"><x:v></x:v></x:c><x:c r="D7" t="inlineStr"><x:is><x:t>line&#13;&#10;break</x:t></x:is></x:c></x:row>
<?pi ignored?></x:sheetData><x:pageMargins left="0.7"/></x:worksheet>"#;
        let bytes = with_sheet_xml(&base, xml);
        let cells = check_same(&bytes, "Sheet1");
        // A spot check that the comparison saw real values (each <t> is trimmed).
        assert!(
            cells.contains(&(1, 0, Data::String("shared two".into()))),
            "{cells:?}"
        );
        assert!(
            cells.contains(&(4, 0, Data::String("richtext".into()))),
            "{cells:?}"
        );
        assert!(cells.len() > 12, "{cells:?}");
    }

    #[test]
    fn malformed_sheet_xml_is_an_error_not_a_panic() {
        let base = Workbook::new().save_to_buffer().unwrap();
        for xml in [
            "<worksheet><sheetData><row><c r=\"A1\" t=\"s\"><v>9</v></c></row></sheetData></worksheet>",
            "<worksheet><sheetData><row><c r=\"AAAAAAAAAAAAA1\"><v>1</v></c></row></sheetData></worksheet>",
            "<worksheet><sheetData><row><c r=\"A0\"><v>1</v></c></row></sheetData></worksheet>",
            "<worksheet><sheetData><row><c><v>1</v>",
            "<worksheet><sheetData><row><c t=\"inlineStr\"><is><t>&bogus;</t></is></c></row></sheetData></worksheet>",
            "<worksheet><sheetData><row><c t=\"q\"><v>1</v></c></row></sheetData></worksheet>",
            "<worksheet><sheetData><row><c><bad/></c></row></sheetData></worksheet>",
            "<worksheet><sheetData><row><c t=\"b\"><v>2</v></c></row></sheetData></worksheet>",
            "<chartsheet/>",
            "<worksheet><sheetData><row><c r=\"A1\"",
            "<worksheet><sheetData><row><c r=\"A1\" t=\"inlineStr\"><is><t>\u{e9}",
        ] {
            let bytes = with_sheet_xml(&base, xml);
            for step in [1, 5, 1 << 20] {
                assert!(our_cells(&bytes, "Sheet1", step).is_err(), "{xml}");
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Put {
        Text(String),
        Number(f64),
        Bool(bool),
        Date(f64, usize),
        Formula,
        Blank,
    }

    fn put() -> impl Strategy<Value = Option<Put>> {
        prop_oneof![
            2 => Just(None),
            4 => "[ a-zA-Z0-9&<>'\"_\\r\\n\\t\u{e9}\u{1F600}]{0,12}".prop_map(|s| Some(Put::Text(s))),
            1 => Just(Some(Put::Text("_x000D_ x".into()))),
            2 => (-1e9f64..1e9).prop_map(|n| Some(Put::Number(n))),
            1 => (0i32..100_000).prop_map(|n| Some(Put::Number(f64::from(n)))),
            1 => any::<bool>().prop_map(|b| Some(Put::Bool(b))),
            2 => (0f64..80_000.0, 0usize..3).prop_map(|(d, f)| Some(Put::Date(d, f))),
            1 => Just(Some(Put::Formula)),
            1 => Just(Some(Put::Blank)),
        ]
    }

    fn workbook(rows: &[Vec<Option<Put>>], inline: bool, gap: u32) -> Vec<u8> {
        let mut wb = Workbook::new();
        let ws = if inline {
            wb.add_worksheet_with_constant_memory().unwrap()
        } else {
            wb.add_worksheet()
        };
        let formats = [
            XFormat::new().set_num_format("dd/mm/yyyy"),
            XFormat::new().set_num_format("[h]:mm:ss"),
            XFormat::new().set_num_format("0.00"),
        ];
        for (r, row) in rows.iter().enumerate() {
            let r = r as u32 * (gap + 1);
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16 * 2;
                match cell {
                    None => {}
                    Some(Put::Text(s)) => {
                        ws.write_string(r, c, s).unwrap();
                    }
                    Some(Put::Number(n)) => {
                        ws.write_number(r, c, *n).unwrap();
                    }
                    Some(Put::Bool(b)) => {
                        ws.write_boolean(r, c, *b).unwrap();
                    }
                    Some(Put::Date(d, f)) => {
                        ws.write_number_with_format(r, c, *d, &formats[*f]).unwrap();
                    }
                    Some(Put::Formula) => {
                        ws.write_formula(r, c, "=1+1").unwrap();
                    }
                    Some(Put::Blank) => {
                        ws.write_blank(r, c, &formats[0]).unwrap();
                    }
                }
            }
        }
        wb.save_to_buffer().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// On generated workbooks (shared or inline strings, numbers, booleans,
        /// dates and durations, formulas, blanks, gaps between rows) this reader
        /// returns exactly calamine's cells, whatever the read sizes.
        #[test]
        fn generated_workbooks_read_as_calamine_reads_them(
            rows in prop::collection::vec(prop::collection::vec(put(), 0..8), 0..30),
            inline in any::<bool>(),
            gap in 0u32..3,
        ) {
            let bytes = workbook(&rows, inline, gap);
            let theirs = calamine_cells(&bytes, "Sheet1");
            for step in [3, 1 << 20] {
                prop_assert_eq!(our_cells(&bytes, "Sheet1", step), theirs.clone());
            }
        }
    }
}
