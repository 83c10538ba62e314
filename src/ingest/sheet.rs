//! Spreadsheet rows (xlsx, xls, ods) through calamine.
//!
//! The real format is sniffed from the bytes (a `.xls` that is really an xlsx is
//! common), so the configured sheet format only says "a workbook". Before calamine
//! sees a ZIP (xlsx/ods), its central directory is checked: declared sizes above
//! the limits, or an entry that inflates beyond what it declares, reject the file
//! as a likely zip bomb. XLSX worksheets are then streamed cell by cell on a helper
//! thread into a small bounded channel, so memory stays bounded for large sheets
//! (read by the dedicated reader in [`xlsx`], or calamine's when that cannot place
//! the sheet);
//! xls and ods are read whole by calamine (they are small in practice, and the ods
//! total is capped lower for that reason).
//!
//! Rows are the sheet's own row numbers (1-based, as Excel shows them); the header
//! is the first non-blank row.

use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use calamine::{CellErrorType, Data, DataRef, Reader};

use super::record::Builder;
use super::values::excel_serial;
use super::{map_header, Cell, FileRejection, ReadSeek, RowOutcome, MAX_COLUMNS};
use crate::config::SourceSettings;
use crate::domain::Format;

mod xlsx;

/// Excel's widest sheet: cells beyond it are ignored, which also bounds a row.
const MAX_SHEET_COLUMNS: u32 = 16_384;

/// Rows per message from the streaming thread, and messages in flight.
const CHUNK_ROWS: usize = 1024;
const CHANNEL_CHUNKS: usize = 4;

/// Limits on what a ZIP workbook may declare before it is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZipLimits {
    /// Total uncompressed bytes of all entries.
    pub total: u64,
    /// Largest compression ratio allowed for an entry of at least `ratio_floor` bytes.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    /// Largest single entry that calamine reads whole (shared strings, styles, ods
    /// content); xlsx worksheets are streamed and exempt.
    pub whole_entry: u64,
}

/// XLSX worksheets are streamed, so their total may be large.
pub(crate) const XLSX_LIMITS: ZipLimits = ZipLimits {
    total: 2 << 30,
    max_ratio: 100,
    ratio_floor: 1 << 20,
    whole_entry: 512 << 20,
};

/// ODS content is parsed whole by calamine: a lower total keeps memory bounded.
pub(crate) const ODS_LIMITS: ZipLimits = ZipLimits {
    total: 512 << 20,
    max_ratio: 100,
    ratio_floor: 1 << 20,
    whole_entry: 512 << 20,
};

/// A sheet row: its 0-based sheet row and its non-empty cells by 0-based column.
type SparseRow = (u32, Vec<(u32, Data)>);

enum Msg {
    Rows(Packed),
    Failed(String),
    Done,
}

/// A chunk of cells as the streaming thread sends them: the text of every string
/// cell in one buffer, so the reader thread makes two allocations per chunk instead
/// of one per cell. Memory freed on another thread than the one that allocated it
/// contends on the allocator's lock (glibc wakes the other thread for each free),
/// which halved the XLSX rate; the rows are unpacked on the consuming thread.
#[derive(Default)]
struct Packed {
    text: String,
    cells: Vec<(u32, u32, PackedValue)>,
}

enum PackedValue {
    /// A byte range of `Packed::text`.
    Text(usize, usize),
    Other(Data),
}

impl Packed {
    fn rows(&self) -> usize {
        let mut rows = 0;
        let mut last = None;
        for (r, _, _) in &self.cells {
            if last != Some(*r) {
                rows += 1;
                last = Some(*r);
            }
        }
        rows
    }

    /// The sheet rows of this chunk, built on the calling thread.
    fn unpack(self) -> Vec<SparseRow> {
        let mut out: Vec<SparseRow> = Vec::with_capacity(self.rows());
        for (r, c, v) in self.cells {
            let data = match v {
                PackedValue::Text(a, b) => Data::String(self.text[a..b].to_owned()),
                PackedValue::Other(d) => d,
            };
            match out.last_mut() {
                Some((row, values)) if *row == r => values.push((c, data)),
                _ => out.push((r, vec![(c, data)])),
            }
        }
        out
    }
}

enum Source {
    /// XLSX cells from the streaming thread.
    Stream {
        rx: Receiver<Msg>,
        /// The streaming thread, joined when the source is dropped.
        worker: Option<std::thread::JoinHandle<()>>,
        /// Rows unpacked for the header search, handed out first.
        pending: std::vec::IntoIter<SparseRow>,
        /// The chunk being read after the header, and its next cell.
        current: Option<(Packed, usize)>,
        finished: bool,
    },
    /// A whole sheet (xls, ods).
    Range {
        range: calamine::Range<Data>,
        next: usize,
    },
}

impl Drop for Source {
    /// Closes the channel, so that a streaming thread blocked on a full one stops,
    /// then waits for the thread: a reader dropped early (a rejected file, a stop)
    /// leaves no thread behind still holding the workbook.
    fn drop(&mut self) {
        if let Source::Stream { rx, worker, .. } = self {
            drop(std::mem::replace(rx, sync_channel(0).1));
            if let Some(worker) = worker.take() {
                // A panic on the thread has already ended its rows as an error.
                let _ = worker.join();
            }
        }
    }
}

/// Rows of one worksheet after its header.
pub(crate) struct SheetRows {
    source: Source,
    /// Canonical column → sheet column (0-based).
    map: Vec<Option<usize>>,
    is_1904: bool,
    file: String,
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Xlsx,
    Ods,
    Xls,
}

impl Kind {
    fn format(self) -> Format {
        match self {
            Kind::Xlsx => Format::Xlsx,
            Kind::Ods => Format::Ods,
            Kind::Xls => Format::Xls,
        }
    }
}

fn unparseable(file: &str, format: Format, detail: impl Into<String>) -> FileRejection {
    FileRejection::Unparseable {
        file: file.to_string(),
        format,
        detail: detail.into(),
    }
}

/// Opens the workbook, picks the sheet and maps its header.
pub(crate) fn open(
    source: &SourceSettings,
    file: &str,
    mut reader: Box<dyn ReadSeek>,
) -> Result<(SheetRows, Builder), FileRejection> {
    let io_err = |e: io::Error| FileRejection::Io {
        file: file.to_string(),
        source: e,
    };
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if got == 0 {
        return Err(FileRejection::Empty {
            file: file.to_string(),
            kind: source.kind,
        });
    }
    let kind = if magic[..got].starts_with(b"PK") {
        check_zip(&mut reader, file, source.format)?
    } else if magic[..got].starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Kind::Xls
    } else {
        return Err(unparseable(
            file,
            source.format,
            "it is not a workbook (neither a ZIP file as xlsx/ods are, nor an OLE2 file as xls is)",
        ));
    };
    reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let format = kind.format();
    let bad = |e: String| unparseable(file, format, e);
    let panicked = || {
        unparseable(
            file,
            format,
            "the workbook reader failed on malformed content",
        )
    };

    let (src, is_1904) = match kind {
        Kind::Xlsx => {
            // calamine opens and checks the workbook; the sheet itself is read by
            // `xlsx` through a second handle on the same reader when it can find it.
            let shared = xlsx::SharedReader::new(reader);
            let handle: Box<dyn ReadSeek> = Box::new(shared.clone());
            let wb = catch_unwind(AssertUnwindSafe(|| calamine::Xlsx::new(handle)))
                .map_err(|_| panicked())?
                .map_err(|e| bad(e.to_string()))?;
            let names = wb.sheet_names();
            let sheet = pick_sheet(source, file, &names)?;
            let is_1904 = wb.has_1904_epoch();
            let located = catch_unwind(AssertUnwindSafe(|| {
                let mut zip = zip::ZipArchive::new(shared).ok()?;
                let entry = xlsx::locate(&mut zip, &names, &sheet)?;
                Some((zip, entry))
            }))
            .map_err(|_| panicked())?;
            let src = match located {
                Some((mut zip, entry)) => {
                    // Free calamine's copy of the shared strings before reading ours.
                    drop(wb);
                    let plan =
                        catch_unwind(AssertUnwindSafe(|| xlsx::load(&mut zip, entry, is_1904)))
                            .map_err(|_| panicked())?
                            .map_err(&bad)?;
                    stream_part(zip, plan).map_err(&bad)?
                }
                None => stream(wb, sheet).map_err(&bad)?,
            };
            (src, is_1904)
        }
        Kind::Ods => {
            let mut wb = catch_unwind(AssertUnwindSafe(|| calamine::Ods::new(reader)))
                .map_err(|_| panicked())?
                .map_err(|e| bad(e.to_string()))?;
            let sheet = pick_sheet(source, file, &wb.sheet_names())?;
            let range = catch_unwind(AssertUnwindSafe(|| wb.worksheet_range(&sheet)))
                .map_err(|_| panicked())?
                .map_err(|e| bad(e.to_string()))?;
            (Source::Range { range, next: 0 }, false)
        }
        Kind::Xls => {
            let mut wb = catch_unwind(AssertUnwindSafe(|| calamine::Xls::new(reader)))
                .map_err(|_| panicked())?
                .map_err(|e| bad(e.to_string()))?;
            let sheet = pick_sheet(source, file, &wb.sheet_names())?;
            let is_1904 = wb.has_1904_epoch();
            let range = catch_unwind(AssertUnwindSafe(|| wb.worksheet_range(&sheet)))
                .map_err(|_| panicked())?
                .map_err(|e| bad(e.to_string()))?;
            (Source::Range { range, next: 0 }, is_1904)
        }
    };

    let mut rows = SheetRows {
        source: src,
        map: Vec::new(),
        is_1904,
        file: file.to_string(),
        format,
    };
    // The header: the first row with any non-blank cell.
    let header = loop {
        match rows.next_row()? {
            None => {
                return Err(FileRejection::Empty {
                    file: file.to_string(),
                    kind: source.kind,
                })
            }
            Some((_, cells)) => {
                if cells.iter().any(|(_, d)| !is_blank(d)) {
                    break cells;
                }
            }
        }
    };
    let width = header
        .iter()
        .map(|(c, _)| *c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut headers = vec![String::new(); width];
    for (c, d) in &header {
        // Merged header cells arrive as one value then empties: the empties
        // simply match nothing.
        headers[*c as usize] = data_cell(d, is_1904).as_text().into_owned();
    }
    rows.map = map_header(source, file, &headers)?;
    let mut builder = Builder::new(source, rows.map.iter().map(Option::is_some).collect());
    builder.set_1904(is_1904);
    Ok((rows, builder))
}

/// The configured sheet (exact name, else ignoring case and spaces) or the first.
fn pick_sheet(
    source: &SourceSettings,
    file: &str,
    names: &[String],
) -> Result<String, FileRejection> {
    match &source.sheet {
        None => names
            .first()
            .cloned()
            .ok_or_else(|| unparseable(file, source.format, "the workbook has no sheets")),
        Some(wanted) => names
            .iter()
            .find(|n| *n == wanted)
            .or_else(|| {
                names
                    .iter()
                    .find(|n| n.trim().to_lowercase() == wanted.trim().to_lowercase())
            })
            .cloned()
            .ok_or_else(|| FileRejection::SheetNotFound {
                file: file.to_string(),
                source_name: source.name.clone(),
                sheet: wanted.clone(),
                available: names.to_vec(),
            }),
    }
}

/// Checks a ZIP workbook's declared and actual sizes and says whether it is an
/// xlsx or an ods.
fn check_zip<R: Read + Seek>(
    reader: &mut R,
    file: &str,
    configured: Format,
) -> Result<Kind, FileRejection> {
    let mut zip = zip::ZipArchive::new(&mut *reader).map_err(|e| {
        unparseable(
            file,
            configured,
            format!("it is not a readable ZIP archive ({e})"),
        )
    })?;
    let mut names = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| {
            unparseable(
                file,
                configured,
                format!("ZIP entry {i} is unreadable ({e})"),
            )
        })?;
        names.push((
            entry.name().map(|n| n.into_owned()).unwrap_or_default(),
            entry.size(),
            entry.compressed_size(),
        ));
    }
    let kind = if names
        .iter()
        .any(|(n, _, _)| n == "xl/workbook.xml" || n == "xl/workbook.bin")
    {
        if names.iter().any(|(n, _, _)| n == "xl/workbook.bin") {
            return Err(unparseable(
                file,
                configured,
                "it is an xlsb (binary) workbook, which is not supported; save it as xlsx",
            ));
        }
        Kind::Xlsx
    } else if names.iter().any(|(n, _, _)| n == "content.xml") {
        Kind::Ods
    } else {
        return Err(unparseable(
            file,
            configured,
            "it is a ZIP archive but not an xlsx or ods workbook",
        ));
    };
    let limits = if kind == Kind::Xlsx {
        XLSX_LIMITS
    } else {
        ODS_LIMITS
    };
    check_declared(file, &names, &limits)?;
    for (name, size, _) in &names {
        let streamed = kind == Kind::Xlsx && name.starts_with("xl/worksheets/");
        if !streamed && *size > limits.whole_entry {
            return Err(FileRejection::TooLarge {
                file: file.to_string(),
                detail: format!(
                    "ZIP entry {name:?} declares {size} bytes, over the {} byte limit for a part \
                     that is read whole",
                    limits.whole_entry
                ),
            });
        }
    }
    // A ZIP entry can lie about its size. Inflate (into nothing, with a cap) every
    // entry that calamine reads whole; xlsx worksheets are streamed and so bounded
    // whatever they inflate to.
    for (i, (name, size, _)) in names.iter().enumerate() {
        if kind == Kind::Xlsx && name.starts_with("xl/worksheets/") {
            continue;
        }
        let entry = zip.by_index(i).map_err(|e| {
            unparseable(
                file,
                kind.format(),
                format!("ZIP entry {name:?} is unreadable ({e})"),
            )
        })?;
        let mut capped = entry.take(size.saturating_add(1));
        let inflated = io::copy(&mut capped, &mut io::sink()).map_err(|e| {
            unparseable(
                file,
                kind.format(),
                format!("ZIP entry {name:?} is corrupt ({e})"),
            )
        })?;
        if inflated > *size {
            return Err(FileRejection::TooLarge {
                file: file.to_string(),
                detail: format!(
                    "ZIP entry {name:?} inflates to more than the {size} bytes it declares, \
                     which is how zip bombs work"
                ),
            });
        }
    }
    Ok(kind)
}

/// Rejects totals and ratios above the limits, from the central directory alone.
fn check_declared(
    file: &str,
    entries: &[(String, u64, u64)],
    limits: &ZipLimits,
) -> Result<(), FileRejection> {
    let too_large = |detail: String| FileRejection::TooLarge {
        file: file.to_string(),
        detail,
    };
    let mut total = 0u64;
    for (name, size, compressed) in entries {
        total = total.saturating_add(*size);
        if *size >= limits.ratio_floor && *size / (*compressed).max(1) > limits.max_ratio {
            return Err(too_large(format!(
                "ZIP entry {name:?} declares {size} bytes from {compressed} compressed (over {}:1), \
                 which looks like a zip bomb; ask the sender for a normal export",
                limits.max_ratio
            )));
        }
    }
    if total > limits.total {
        return Err(too_large(format!(
            "the workbook would decompress to {total} bytes, over the {} byte limit; \
             ask the sender to split it or send CSV",
            limits.total
        )));
    }
    Ok(())
}

/// The streaming thread's next chunk of rows; `None` once it is done (and
/// `finished` set). A failure, or a thread that stopped without saying why (a
/// panic on malformed content), ends the sheet as an error.
fn receive(
    rx: &Receiver<Msg>,
    finished: &mut bool,
    file: &str,
    format: Format,
) -> Result<Option<Packed>, FileRejection> {
    match rx.recv() {
        Ok(Msg::Rows(packed)) => Ok(Some(packed)),
        Ok(Msg::Done) => {
            *finished = true;
            Ok(None)
        }
        Ok(Msg::Failed(e)) => {
            *finished = true;
            Err(unparseable(file, format, e))
        }
        Err(_) => {
            *finished = true;
            Err(unparseable(
                file,
                format,
                "the sheet reader stopped on malformed content",
            ))
        }
    }
}

/// Starts the streaming thread for an xlsx worksheet.
fn stream(wb: calamine::Xlsx<Box<dyn ReadSeek>>, sheet: String) -> Result<Source, String> {
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let worker = std::thread::Builder::new()
        .name("kinlink-xlsx".into())
        .spawn(move || stream_cells(wb, &sheet, &tx))
        .map_err(|e| format!("cannot start the sheet reader thread ({e})"))?;
    Ok(Source::Stream {
        rx,
        worker: Some(worker),
        pending: Vec::new().into_iter(),
        current: None,
        finished: false,
    })
}

/// Starts the streaming thread for an xlsx worksheet read by [`xlsx::SheetReader`].
fn stream_part(
    zip: zip::ZipArchive<xlsx::SharedReader>,
    plan: xlsx::Plan,
) -> Result<Source, String> {
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let worker = std::thread::Builder::new()
        .name("kinlink-xlsx".into())
        .spawn(move || read_part(zip, plan, &tx))
        .map_err(|e| format!("cannot start the sheet reader thread ({e})"))?;
    Ok(Source::Stream {
        rx,
        worker: Some(worker),
        pending: Vec::new().into_iter(),
        current: None,
        finished: false,
    })
}

/// Runs on the streaming thread: reads the worksheet part and sends its non-empty
/// cells in chunks of whole rows, as [`stream_cells`] does with calamine's reader.
fn read_part(mut zip: zip::ZipArchive<xlsx::SharedReader>, plan: xlsx::Plan, tx: &SyncSender<Msg>) {
    let part = match zip.by_name(&plan.entry) {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Msg::Failed(format!(
                "the worksheet part is unreadable ({e})"
            )));
            return;
        }
    };
    let mut cells = match xlsx::SheetReader::new(part, plan) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Msg::Failed(e));
            return;
        }
    };
    let mut chunk = Packed::default();
    let mut rows_in_chunk = 0usize;
    let mut last_row: Option<u32> = None;
    loop {
        let mark = chunk.text.len();
        match cells.next_cell(&mut chunk.text) {
            Ok(Some((r, c, value))) => {
                // The bytes this cell appended (they move if the chunk is sent).
                let text_len = chunk.text.len().saturating_sub(mark);
                let value = match value {
                    _ if c >= MAX_SHEET_COLUMNS => None,
                    xlsx::Value::Empty => None,
                    xlsx::Value::Text => Some(None),
                    xlsx::Value::Other(d) => Some(Some(d)),
                };
                let Some(value) = value else {
                    chunk.text.truncate(mark);
                    continue;
                };
                if last_row != Some(r) {
                    // A chunk ends only between rows; this cell's text moves on.
                    if rows_in_chunk >= CHUNK_ROWS {
                        let mut next = Packed::default();
                        next.text
                            .push_str(chunk.text.get(mark..).unwrap_or_default());
                        chunk.text.truncate(mark);
                        if tx
                            .send(Msg::Rows(std::mem::replace(&mut chunk, next)))
                            .is_err()
                        {
                            return;
                        }
                        rows_in_chunk = 0;
                    }
                    rows_in_chunk += 1;
                    last_row = Some(r);
                }
                let value = match value {
                    None => {
                        let end = chunk.text.len();
                        PackedValue::Text(end.saturating_sub(text_len), end)
                    }
                    Some(d) => PackedValue::Other(d),
                };
                chunk.cells.push((r, c, value));
            }
            Ok(None) => break,
            Err(e) => {
                if !chunk.cells.is_empty() && tx.send(Msg::Rows(chunk)).is_err() {
                    return;
                }
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
    if !chunk.cells.is_empty() && tx.send(Msg::Rows(chunk)).is_err() {
        return;
    }
    let _ = tx.send(Msg::Done);
}

/// Runs on the streaming thread: groups cells into rows and sends them in chunks.
/// Stops quietly when the reader is dropped (the receiver hangs up).
fn stream_cells(mut wb: calamine::Xlsx<Box<dyn ReadSeek>>, sheet: &str, tx: &SyncSender<Msg>) {
    let mut cells = match wb.worksheet_cells_reader(sheet) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Msg::Failed(e.to_string()));
            return;
        }
    };
    let mut chunk = Packed::default();
    let mut rows_in_chunk = 0usize;
    let mut last_row: Option<u32> = None;
    loop {
        match cells.next_cell() {
            Ok(Some(cell)) => {
                let (r, c) = cell.get_position();
                if c >= MAX_SHEET_COLUMNS || matches!(cell.get_value(), DataRef::Empty) {
                    continue;
                }
                if last_row != Some(r) {
                    // A chunk ends only between rows.
                    if rows_in_chunk >= CHUNK_ROWS {
                        if tx.send(Msg::Rows(std::mem::take(&mut chunk))).is_err() {
                            return;
                        }
                        rows_in_chunk = 0;
                    }
                    rows_in_chunk += 1;
                    last_row = Some(r);
                }
                let value = match cell.get_value() {
                    DataRef::String(s) => push_text(&mut chunk.text, s),
                    DataRef::SharedString(s) => push_text(&mut chunk.text, s),
                    other => PackedValue::Other(Data::from(other.clone())),
                };
                chunk.cells.push((r, c, value));
            }
            Ok(None) => break,
            Err(e) => {
                if !chunk.cells.is_empty() && tx.send(Msg::Rows(chunk)).is_err() {
                    return;
                }
                let _ = tx.send(Msg::Failed(e.to_string()));
                return;
            }
        }
    }
    if !chunk.cells.is_empty() && tx.send(Msg::Rows(chunk)).is_err() {
        return;
    }
    let _ = tx.send(Msg::Done);
}

fn push_text(text: &mut String, s: &str) -> PackedValue {
    let start = text.len();
    text.push_str(s);
    PackedValue::Text(start, text.len())
}

fn is_blank(d: &Data) -> bool {
    match d {
        Data::Empty => true,
        Data::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn error_text(e: &CellErrorType) -> &'static str {
    match e {
        CellErrorType::Div0 => "the spreadsheet error #DIV/0!",
        CellErrorType::NA => "the spreadsheet error #N/A",
        CellErrorType::Name => "the spreadsheet error #NAME?",
        CellErrorType::Null => "the spreadsheet error #NULL!",
        CellErrorType::Num => "the spreadsheet error #NUM!",
        CellErrorType::Ref => "the spreadsheet error #REF!",
        CellErrorType::Value => "the spreadsheet error #VALUE!",
        CellErrorType::GettingData => "the spreadsheet error #DATA!",
    }
}

/// A calamine cell as an ingest cell. Native dates are converted here with the
/// workbook's epoch (1900 with the Lotus leap day, or 1904).
fn data_cell(d: &Data, is_1904: bool) -> Cell<'_> {
    match d {
        Data::Empty => Cell::Empty,
        Data::String(s) | Data::DateTimeIso(s) => Cell::Text(s),
        Data::Int(i) => Cell::Int(*i),
        Data::Float(f) => Cell::Float(*f),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(dt) if dt.is_duration() => Cell::Invalid("a duration"),
        Data::DateTime(dt) => match excel_serial(dt.as_f64(), is_1904) {
            Some(v) => Cell::DateTime(v),
            None => Cell::Invalid("a date outside what Excel can hold"),
        },
        Data::DurationIso(_) => Cell::Invalid("a duration"),
        Data::Error(e) => Cell::Invalid(error_text(e)),
    }
}

impl SheetRows {
    /// The next sheet row (possibly blank), or `None` at the end.
    fn next_row(&mut self) -> Result<Option<SparseRow>, FileRejection> {
        match &mut self.source {
            Source::Stream {
                rx,
                pending,
                finished,
                ..
            } => loop {
                if let Some(row) = pending.next() {
                    return Ok(Some(row));
                }
                if *finished {
                    return Ok(None);
                }
                if let Some(packed) = receive(rx, finished, &self.file, self.format)? {
                    *pending = packed.unpack().into_iter();
                }
            },
            Source::Range { range, next } => {
                let (height, width) = range.get_size();
                if *next >= height {
                    return Ok(None);
                }
                let (start_row, start_col) = range.start().unwrap_or((0, 0));
                let rel = *next;
                *next += 1;
                let mut cells = Vec::new();
                for j in 0..width {
                    if let Some(d) = range.get((rel, j)) {
                        if *d != Data::Empty {
                            cells.push((start_col.saturating_add(j as u32), d.clone()));
                        }
                    }
                }
                Ok(Some((start_row.saturating_add(rel as u32), cells)))
            }
        }
    }

    /// [`SheetRows::next_rows`] for a streamed sheet: after the rows unpacked for the
    /// header, rows are built straight from the chunks, their text borrowed from the
    /// chunk's buffer rather than copied into a `String` per cell.
    fn next_streamed_rows(
        &mut self,
        builder: &mut Builder,
        max: usize,
        out: &mut Vec<RowOutcome>,
    ) -> Result<bool, FileRejection> {
        let n = self.map.len().min(MAX_COLUMNS);
        while out.len() < max {
            let Source::Stream {
                rx,
                pending,
                current,
                finished,
                ..
            } = &mut self.source
            else {
                return Ok(true);
            };
            let mut cells = [Cell::Empty; MAX_COLUMNS];
            if let Some((row, values)) = pending.next() {
                for (col, data) in &values {
                    for (cell, m) in cells.iter_mut().zip(&self.map) {
                        if *m == Some(*col as usize) {
                            *cell = data_cell(data, self.is_1904);
                        }
                    }
                }
                if let Some(outcome) = builder.build(u64::from(row) + 1, &cells[..n]) {
                    out.push(outcome);
                }
                continue;
            }
            if let Some((packed, next)) = current {
                if let Some(&(row, _, _)) = packed.cells.get(*next) {
                    while let Some((r, col, value)) = packed.cells.get(*next) {
                        if *r != row {
                            break;
                        }
                        *next += 1;
                        let cell = match value {
                            PackedValue::Text(a, b) => {
                                Cell::Text(packed.text.get(*a..*b).unwrap_or_default())
                            }
                            PackedValue::Other(d) => data_cell(d, self.is_1904),
                        };
                        for (slot, m) in cells.iter_mut().zip(&self.map) {
                            if *m == Some(*col as usize) {
                                *slot = cell;
                            }
                        }
                    }
                    if let Some(outcome) = builder.build(u64::from(row) + 1, &cells[..n]) {
                        out.push(outcome);
                    }
                    continue;
                }
            }
            if *finished {
                return Ok(true);
            }
            if let Some(packed) = receive(rx, finished, &self.file, self.format)? {
                *current = Some((packed, 0));
            }
        }
        Ok(false)
    }

    /// Appends outcomes until `out` holds `max`; `Ok(true)` once the sheet is done.
    pub(crate) fn next_rows(
        &mut self,
        builder: &mut Builder,
        max: usize,
        out: &mut Vec<RowOutcome>,
    ) -> Result<bool, FileRejection> {
        if matches!(self.source, Source::Stream { .. }) {
            return self.next_streamed_rows(builder, max, out);
        }
        while out.len() < max {
            let Some((row, values)) = self.next_row()? else {
                return Ok(true);
            };
            let mut cells = [Cell::Empty; MAX_COLUMNS];
            for (col, data) in &values {
                for (cell, m) in cells.iter_mut().zip(&self.map) {
                    if *m == Some(*col as usize) {
                        *cell = data_cell(data, self.is_1904);
                    }
                }
            }
            let n = self.map.len().min(MAX_COLUMNS);
            if let Some(outcome) = builder.build(u64::from(row) + 1, &cells[..n]) {
                out.push(outcome);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use chrono::NaiveDate;
    use proptest::prelude::*;
    use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};

    use super::*;
    use crate::domain::{FeedKind, Record};
    use crate::ingest::{open_bytes, read_all, test_source};

    const HEADER: [&str; 8] = [
        "URN", "Forename", "Surname", "DOB", "Date", "Session", "Mark", "Notes",
    ];

    fn att(format: Format) -> SourceSettings {
        test_source(
            FeedKind::Attendance,
            format,
            &[("school_urn", "URN"), ("dob", "DOB")],
        )
    }

    /// A workbook whose "Marks" sheet has two blank leading rows, a merged header
    /// cell over two unmapped columns, native dates, serial numbers and a URN
    /// stored as a number.
    fn marks_workbook() -> Vec<u8> {
        let mut wb = Workbook::new();
        let cover = wb.add_worksheet();
        cover.set_name("Cover").unwrap();
        cover.write_string(0, 0, "Attendance export").unwrap();
        let ws = wb.add_worksheet();
        ws.set_name("Marks").unwrap();
        let date_fmt = XFormat::new().set_num_format("dd/mm/yyyy");
        for (c, h) in HEADER.iter().enumerate() {
            if *h != "Notes" {
                ws.write_string(2, c as u16, *h).unwrap();
            }
        }
        ws.merge_range(2, 7, 2, 8, "Notes", &XFormat::new())
            .unwrap();
        // Row 4: native date cells, URN as a number.
        ws.write_number(3, 0, 100001.0).unwrap();
        ws.write_string(3, 1, "Ann").unwrap();
        ws.write_string(3, 2, "Smith").unwrap();
        ws.write_datetime_with_format(
            3,
            3,
            ExcelDateTime::from_ymd(2015, 4, 3).unwrap(),
            &date_fmt,
        )
        .unwrap();
        ws.write_datetime_with_format(
            3,
            4,
            ExcelDateTime::from_ymd(2025, 3, 4).unwrap(),
            &date_fmt,
        )
        .unwrap();
        ws.write_string(3, 5, "AM").unwrap();
        ws.write_string(3, 6, "/").unwrap();
        ws.write_string(3, 7, "x").unwrap();
        ws.write_string(3, 8, "y").unwrap();
        // Row 5 is blank. Row 6: plain serial numbers and UK text dates.
        ws.write_string(5, 0, "100001").unwrap();
        ws.write_string(5, 1, "Bob").unwrap();
        ws.write_string(5, 2, "Jones").unwrap();
        ws.write_number(5, 3, 42005.0).unwrap(); // 2015-01-01
        ws.write_string(5, 4, "03/04/2025").unwrap();
        ws.write_string(5, 5, "pm").unwrap();
        ws.write_string(5, 6, "N").unwrap();
        // Row 7: an unknown mark.
        ws.write_number(6, 0, 100001.0).unwrap();
        ws.write_string(6, 1, "Cat").unwrap();
        ws.write_string(6, 2, "Jones").unwrap();
        ws.write_string(6, 3, "2015-01-01").unwrap();
        ws.write_string(6, 4, "2025-04-03").unwrap();
        ws.write_string(6, 5, "PM").unwrap();
        ws.write_string(6, 6, "??").unwrap();
        wb.save_to_buffer().unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn attendance(outcome: &RowOutcome) -> &crate::domain::AttendanceMark {
        match outcome {
            Ok(Record::Attendance(a)) => a,
            other => panic!("expected an attendance record, got {other:?}"),
        }
    }

    #[test]
    fn xlsx_rows_with_native_dates_serials_and_sheet_row_numbers() {
        let mut source = att(Format::Xlsx);
        source.sheet = Some("marks".into());
        let r = open_bytes(&source, "m.xlsx", marks_workbook()).unwrap();
        let out = read_all(r).unwrap();
        assert_eq!(out.len(), 3, "{out:?}");
        let a = attendance(&out[0]);
        assert_eq!(a.school_urn.to_string(), "100001");
        assert_eq!(a.pupil.dob, Some(day(2015, 4, 3)));
        assert_eq!(a.date, day(2025, 3, 4));
        let b = attendance(&out[1]);
        assert_eq!(b.pupil.dob, Some(day(2015, 1, 1)));
        assert_eq!(b.date, day(2025, 4, 3), "UK text dates are day first");
        let p = out[2].as_ref().unwrap_err();
        assert_eq!((p.row, p.column.as_deref()), (7, Some("mark")));
        let raw: serde_json::Value = serde_json::from_str(&p.raw).unwrap();
        assert_eq!(raw["school_urn"], "100001");
    }

    /// Found by `cargo fuzz run ingest_xlsx`: a cell reference with twelve column
    /// letters overflows calamine 0.38's u32 column arithmetic. With overflow checks on
    /// (debug builds, the fuzz build) calamine panics on the streaming thread; a release
    /// build wraps and the bad cell lands outside the mapped columns. Either way the
    /// file must end as a clean rejection, never a panic out of `open_bytes`/`next_batch`.
    #[test]
    fn an_overflowing_cell_reference_is_a_clean_rejection() {
        let bytes = include_bytes!("testdata/overflowing_cell_ref.xlsx").to_vec();
        let source = test_source(FeedKind::Attendance, Format::Xlsx, &[]);
        let result = open_bytes(&source, "bad.xlsx", bytes).and_then(read_all);
        let err = result.expect_err("the mark cell is unreadable, so the file is rejected");
        assert!(err.to_string().contains("bad.xlsx"), "{err}");
    }

    #[test]
    fn an_overflowing_cell_reference_in_calamine_s_reader_is_a_clean_rejection() {
        // Found by the ingest_xlsx fuzz target: a sheet kinlink's own reader hands to
        // calamine's, whose cell-reference arithmetic overflows (it panics where
        // overflow checks are on, as in this test). The panic stays on the reader
        // thread; the file ends as a rejection, and the drop joins the thread.
        let bytes = include_bytes!("testdata/overflowing_cell_ref_fallback.xlsx").to_vec();
        let source = test_source(FeedKind::Attendance, Format::Xlsx, &[]);
        let result = open_bytes(&source, "odd.xlsx", bytes).and_then(read_all);
        let err = result.expect_err("the sheet is unreadable, so the file is rejected");
        assert!(err.to_string().contains("odd.xlsx"), "{err}");
    }

    #[test]
    fn the_first_sheet_is_the_default_and_a_missing_sheet_names_the_others() {
        // The first sheet ("Cover") has no attendance header.
        let err = open_bytes(&att(Format::Xlsx), "m.xlsx", marks_workbook()).unwrap_err();
        assert!(matches!(err, FileRejection::MissingColumns { .. }), "{err}");

        let mut source = att(Format::Xlsx);
        source.sheet = Some("Register".into());
        let err = open_bytes(&source, "m.xlsx", marks_workbook()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, FileRejection::SheetNotFound { .. }), "{msg}");
        assert!(
            msg.contains(r#""Register""#) && msg.contains(r#""Cover", "Marks""#),
            "{msg}"
        );
    }

    #[test]
    fn header_only_and_empty_sheets() {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        for (c, h) in HEADER.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        let empty = wb.add_worksheet();
        empty.set_name("Empty").unwrap();
        let bytes = wb.save_to_buffer().unwrap();
        let r = open_bytes(&att(Format::Xlsx), "h.xlsx", bytes.clone()).unwrap();
        assert!(read_all(r).unwrap().is_empty());
        let mut source = att(Format::Xlsx);
        source.sheet = Some("Empty".into());
        let err = open_bytes(&source, "h.xlsx", bytes).unwrap_err();
        assert!(matches!(err, FileRejection::Empty { .. }), "{err}");
    }

    #[test]
    fn police_incident_times_from_native_datetimes() {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        let heads = [
            "notification_id",
            "incident_at",
            "role",
            "surname",
            "address_line1",
            "postcode",
            "uprn",
        ];
        for (c, h) in heads.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        let fmt = XFormat::new().set_num_format("dd/mm/yyyy hh:mm");
        let at = ExcelDateTime::from_ymd(2025, 7, 4)
            .unwrap()
            .and_hms(23, 40, 0)
            .unwrap();
        ws.write_number(1, 0, 5551.0).unwrap();
        ws.write_datetime_with_format(1, 1, at, &fmt).unwrap();
        ws.write_string(1, 2, "V").unwrap();
        ws.write_string(1, 3, "Khan").unwrap();
        ws.write_string(1, 4, "2 Low St").unwrap();
        ws.write_string(1, 5, "m7 1aa").unwrap();
        ws.write_number(1, 6, 10_000_000_123.0).unwrap();
        let bytes = wb.save_to_buffer().unwrap();
        let source = test_source(FeedKind::PoliceDa, Format::Xlsx, &[]);
        let out = read_all(open_bytes(&source, "p.xlsx", bytes).unwrap()).unwrap();
        let Ok(Record::PoliceDa(p)) = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert_eq!(p.notification_id, "5551");
        assert_eq!(p.person.mention_key, "5551/1");
        assert_eq!(p.incident_at.to_rfc3339(), "2025-07-04T22:40:00+00:00");
        assert_eq!(p.uprn.map(|u| u.get()), Some(10_000_000_123));
    }

    /// A copy of a workbook with the entry `name` passed through `edit`.
    pub(super) fn with_entry(
        xlsx: &[u8],
        name: &str,
        edit: impl Fn(Vec<u8>) -> Vec<u8>,
    ) -> Vec<u8> {
        let mut zin = zip::ZipArchive::new(Cursor::new(xlsx)).unwrap();
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for i in 0..zin.len() {
            let mut entry = zin.by_index(i).unwrap();
            let entry_name = entry.name().unwrap().to_string();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            if entry_name == name {
                body = edit(body);
            }
            out.start_file(entry_name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(&body).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    /// Rewrites a workbook with `date1904` set, as a Mac Excel workbook has it.
    fn with_1904(xlsx: &[u8]) -> Vec<u8> {
        with_entry(xlsx, "xl/workbook.xml", |body| {
            let text = String::from_utf8(body).unwrap();
            assert!(text.contains("<workbookPr"), "{text}");
            text.replace("<workbookPr", "<workbookPr date1904=\"1\"")
                .into_bytes()
        })
    }

    #[test]
    fn the_1904_date_system_is_honoured() {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        for (c, h) in HEADER.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        let date_fmt = XFormat::new().set_num_format("dd/mm/yyyy");
        ws.write_number(1, 0, 100001.0).unwrap();
        ws.write_string(1, 1, "Ann").unwrap();
        ws.write_string(1, 2, "Smith").unwrap();
        // Serial 40543 in the 1904 system is 2015-01-01 (42005 in the 1900 system).
        ws.write_number_with_format(1, 3, 40543.0, &date_fmt)
            .unwrap();
        ws.write_number(1, 4, 45658.0 - 1462.0).unwrap();
        ws.write_string(1, 5, "AM").unwrap();
        ws.write_string(1, 6, "/").unwrap();
        let bytes = with_1904(&wb.save_to_buffer().unwrap());
        let out = read_all(open_bytes(&att(Format::Xlsx), "mac.xlsx", bytes).unwrap()).unwrap();
        let a = attendance(&out[0]);
        assert_eq!(a.pupil.dob, Some(day(2015, 1, 1)));
        assert_eq!(a.date, day(2025, 1, 1));
    }

    #[test]
    fn a_workbook_named_xls_that_is_really_xlsx_is_read() {
        let mut source = att(Format::Xls);
        source.sheet = Some("Marks".into());
        let out = read_all(open_bytes(&source, "m.xls", marks_workbook()).unwrap()).unwrap();
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn corrupt_and_truncated_workbooks_are_rejected() {
        let good = marks_workbook();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "random",
                (0..4000u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect(),
            ),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("zip header only", b"PK\x03\x04garbage".to_vec()),
            (
                "ole2 header only",
                vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0, 0],
            ),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            for format in [Format::Xlsx, Format::Ods, Format::Xls] {
                match open_bytes(&att(format), "bad.xlsx", bytes.clone()) {
                    Err(FileRejection::Unparseable { .. } | FileRejection::Empty { .. }) => {}
                    Err(other) => panic!("{what}: unexpected rejection {other}"),
                    Ok(_) => panic!("{what}: accepted"),
                }
            }
        }
        // A ZIP that is not a workbook.
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        z.start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"hello").unwrap();
        let bytes = z.finish().unwrap().into_inner();
        let err = open_bytes(&att(Format::Xlsx), "r.xlsx", bytes).unwrap_err();
        assert!(
            err.to_string().contains("not an xlsx or ods workbook"),
            "{err}"
        );
    }

    #[test]
    fn a_zip_bomb_is_refused_before_calamine_reads_it() {
        // 8 MiB of zeros deflates to a few KiB: a ratio far over 100:1.
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("xl/workbook.xml", opts).unwrap();
        z.write_all(b"<workbook/>").unwrap();
        z.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..8 {
            z.write_all(&zeros).unwrap();
        }
        let bytes = z.finish().unwrap().into_inner();
        assert!(bytes.len() < 100_000);
        let err = open_bytes(&att(Format::Xlsx), "bomb.xlsx", bytes).unwrap_err();
        assert!(matches!(err, FileRejection::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("zip bomb"), "{err}");
    }

    #[test]
    fn declared_totals_over_the_limit_are_refused() {
        let limits = ZipLimits {
            total: 1000,
            max_ratio: 100,
            ratio_floor: 1 << 20,
            whole_entry: 1000,
        };
        let entries = vec![("a".to_string(), 600, 300), ("b".to_string(), 600, 300)];
        let err = check_declared("x.xlsx", &entries, &limits).unwrap_err();
        assert!(
            err.to_string().contains("over the 1000 byte limit"),
            "{err}"
        );
        assert!(check_declared("x.xlsx", &entries[..1], &limits).is_ok());
        // Small entries may compress well without being bombs.
        let small = vec![("s".to_string(), 500_000, 10)];
        assert!(check_declared("x.xlsx", &small, &XLSX_LIMITS).is_ok());
    }

    /// A minimal OpenDocument spreadsheet.
    fn ods(rows: &[&[&str]]) -> Vec<u8> {
        let mut body = String::new();
        for row in rows {
            body.push_str("<table:table-row>");
            for cell in *row {
                body.push_str(&format!(
                    "<table:table-cell office:value-type=\"string\"><text:p>{cell}</text:p></table:table-cell>"
                ));
            }
            body.push_str("</table:table-row>");
        }
        let content = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="Sheet1">{body}</table:table></office:spreadsheet></office:body></office:document-content>"#
        );
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("mimetype", stored).unwrap();
        z.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
            .unwrap();
        z.start_file("META-INF/manifest.xml", stored).unwrap();
        z.write_all(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#,
        )
        .unwrap();
        z.start_file("content.xml", stored).unwrap();
        z.write_all(content.as_bytes()).unwrap();
        z.finish().unwrap().into_inner()
    }

    #[test]
    fn ods_sheets_are_read() {
        let bytes = ods(&[
            &HEADER[..7],
            &[
                "100001",
                "Ann",
                "Smith",
                "03/04/2015",
                "2025-03-04",
                "AM",
                "/",
            ],
        ]);
        let out = read_all(open_bytes(&att(Format::Ods), "m.ods", bytes).unwrap()).unwrap();
        assert_eq!(attendance(&out[0]).pupil.dob, Some(day(2015, 4, 3)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn damaged_workbooks_never_panic(pos in 0usize..4000, len in 1usize..64, byte in any::<u8>()) {
            let mut bytes = marks_workbook();
            let start = pos.min(bytes.len().saturating_sub(1));
            let end = (start + len).min(bytes.len());
            for b in &mut bytes[start..end] {
                *b ^= byte | 1;
            }
            let mut source = att(Format::Xlsx);
            source.sheet = Some("Marks".into());
            if let Ok(r) = open_bytes(&source, "d.xlsx", bytes) {
                let _ = read_all(r);
            }
        }
    }
}
