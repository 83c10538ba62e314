//! The pipeline's stages, instrumented. The link stage is in `linking`; the ingest
//! stage is here: for each source, recover files a stopped run left half-done,
//! fetch what is new (dir or HTTP), and store each file in one transaction — or
//! reject it whole, with the reason, leaving the previous data in force.
//!
//! Invariants:
//! - A file is stored all or nothing; the inbox copy is moved to `archive/` or
//!   `rejected/` only after its outcome is committed, so a crash at any point is
//!   repaired by the next run, which ingests the file exactly once (the ledger's
//!   sha256 makes a second delivery a no-op).
//! - A rejected file is reported, not a failed step; only the store failing (or a
//!   source that cannot be fetched) fails the step.
//! - Shutdown (the request's `stop` token) is honoured between batches and inside
//!   every fetch (request, body, page, retry wait): the file being stored is rolled
//!   back and stays waiting in the ledger and the inbox, a download in progress is
//!   discarded, no further file is taken, and the stage ends with [`Stopped`].
//! - An inbox file is taken only once it has settled (not modified for the dir
//!   transport's `settle_secs`), and its rows are committed only if it is still the
//!   file that was copied; one that changed is left in the inbox for the next run
//!   and nothing from it is stored.

mod evaluating;
mod linking;
mod purging;

pub use evaluating::{directory, evaluate, rule_input, EvaluateReport};
pub use linking::{
    compute as compute_link, link, link_options, placement, LinkReport, LinkScope, Placement,
};
pub use purging::{cutoffs as purge_cutoffs, purge, PurgeReport};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::clock::Clock;
use crate::config::{DirTransport, Settings, SourceSettings, Transport};
use crate::domain::{Record, RowProblem};
use crate::feeds::dir::{Settle, Stamp};
use crate::feeds::http::HttpOutcome;
use crate::feeds::{self, FeedError, FetchedFile, Origin, Validators};
use crate::ingest::{self, FileRejection, RowReader};
use crate::store::{self, FileCounts, NewFile, Store, StoredValidators};

/// Rows handed from the parser thread to the store per batch: two SQLite
/// statements of attendance marks.
const BATCH_ROWS: usize = 2 * store::SQLITE_MARK_CHUNK;
/// Batches parsed ahead of the store: parsing and writing overlap on two cores.
const BATCHES_AHEAD: usize = 4;
/// How many quarantined rows a rejection message quotes.
const QUOTED_PROBLEMS: usize = 3;

/// What to ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestRequest {
    /// Only this source.
    pub source: Option<String>,
    /// Only this file (needs `source`).
    pub file: Option<PathBuf>,
    /// Cancelled at shutdown: the file being stored is rolled back and left
    /// waiting for the next run, and no further file is taken.
    pub stop: CancellationToken,
}

/// The ingest stage stopped because shutdown began. Nothing of the file it was
/// storing was committed; the file stays waiting and the next run ingests it.
#[derive(Debug, thiserror::Error)]
#[error(
    "stopped by shutdown; the file being stored was rolled back and stays waiting for the next run"
)]
pub struct Stopped;

/// What the stages below [`ingest`] share for one run.
struct Run<'a> {
    clock: Clock,
    progress: &'a dyn Progress,
    stop: &'a CancellationToken,
}

impl Run<'_> {
    /// Fails with [`Stopped`] once shutdown has begun.
    fn check_stop(&self) -> anyhow::Result<()> {
        if self.stop.is_cancelled() {
            return Err(Stopped.into());
        }
        Ok(())
    }
}

/// Receives progress as rows are stored, e.g. for a progress bar.
pub trait Progress: Send + Sync {
    /// A file is starting.
    fn file_started(&self, source: &str, file_name: &str, bytes: u64);
    /// `rows` more rows of the current file were read.
    fn rows(&self, rows: u64);
    /// The current file is done.
    fn file_done(&self);
}

/// No progress reporting.
pub struct NoProgress;

impl Progress for NoProgress {
    fn file_started(&self, _: &str, _: &str, _: u64) {}
    fn rows(&self, _: u64) {}
    fn file_done(&self) {}
}

/// What happened to one file (or one fetch).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FileOutcome {
    Ingested {
        source: String,
        file: String,
        file_id: i64,
        counts: FileCounts,
    },
    Rejected {
        source: String,
        file: String,
        file_id: i64,
        reason: String,
        /// Where the delivered file now is (dir sources).
        moved_to: Option<PathBuf>,
    },
    /// The same content was ingested before: nothing changed.
    Duplicate { source: String, file: String },
    /// The HTTP feed answered 304 Not Modified.
    NotModified { source: String },
    /// The source could not be fetched at all.
    FetchFailed { source: String, error: String },
    /// Files of a dir source modified within its `settle_secs`: probably still
    /// being written, so left for a later run. Not an error.
    Unsettled {
        source: String,
        files: usize,
        settle_secs: u64,
    },
    /// An inbox entry refused without being read: not a regular file (left where it
    /// is), or larger than `max_file_bytes` (moved to `rejected/` with the reason).
    Refused {
        source: String,
        file: String,
        reason: String,
        moved_to: Option<PathBuf>,
    },
    /// An inbox file changed while it was read or before it could be settled: it is
    /// still being written. It stays in the inbox; the next run takes it again.
    Changed {
        source: String,
        file: String,
        /// The ledger row of the copy that was read, marked rejected, when it got
        /// that far.
        file_id: Option<i64>,
        reason: String,
    },
}

/// Files an ingest run held back rather than stored or rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldBack {
    /// Still being written (modified within `settle_secs`).
    pub unsettled: usize,
    /// Changed while they were read.
    pub changed: usize,
    /// Not regular files, or too large.
    pub refused: usize,
}

/// Everything one ingest run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    pub files: Vec<FileOutcome>,
}

impl IngestReport {
    /// Whether any source could not be fetched (the step failed).
    pub fn fetch_failed(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f, FileOutcome::FetchFailed { .. }))
    }

    /// What was held back, by count.
    pub fn held_back(&self) -> HeldBack {
        let mut h = HeldBack::default();
        for f in &self.files {
            match f {
                FileOutcome::Unsettled { files, .. } => h.unsettled += files,
                FileOutcome::Changed { .. } => h.changed += 1,
                FileOutcome::Refused { .. } => h.refused += 1,
                _ => {}
            }
        }
        h
    }

    /// (files ingested, rows stored, rows quarantined, files rejected).
    pub fn totals(&self) -> (usize, i64, i64, usize) {
        let mut t = (0, 0, 0, 0);
        for f in &self.files {
            match f {
                FileOutcome::Ingested { counts, .. } => {
                    t.0 += 1;
                    t.1 += counts.records;
                    t.2 += counts.quarantined;
                }
                FileOutcome::Rejected { .. } => t.3 += 1,
                _ => {}
            }
        }
        t
    }
}

/// The ingest stage: fetch and store every configured source (or the one asked for).
#[instrument(skip_all, fields(stage = "ingest"))]
pub async fn ingest(
    settings: &Settings,
    store: &Store,
    clock: Clock,
    request: &IngestRequest,
    progress: &dyn Progress,
) -> anyhow::Result<IngestReport> {
    let sources: Vec<&SourceSettings> = match &request.source {
        Some(name) => vec![settings.source(name).with_context(|| {
            let names: Vec<_> = settings.sources.iter().map(|s| s.name.as_str()).collect();
            format!(
                "no source named {name:?} in the config (sources: {})",
                names.join(", ")
            )
        })?],
        None => settings.sources.iter().collect(),
    };
    if request.file.is_some() && request.source.is_none() {
        anyhow::bail!("--file needs --source to say which feed the file belongs to");
    }
    let run = Run {
        clock,
        progress,
        stop: &request.stop,
    };
    let mut report = IngestReport::default();
    for source in sources {
        run.check_stop()?;
        let raw_dir = settings.state_dir.join("raw").join(&source.name);
        feeds::create_raw_dir(&raw_dir)?;
        recover(store, source, &run, &mut report).await?;
        let fetched = match &request.file {
            Some(file) => ingest_given_file(store, source, file, &raw_dir, &run, &mut report).await,
            None => match &source.transport {
                Transport::Dir(dir) => {
                    ingest_dir(store, source, dir, &raw_dir, &run, &mut report).await
                }
                Transport::Http(_) => ingest_http(store, source, &raw_dir, &run, &mut report).await,
            },
        };
        if let Err(e) = fetched {
            match e.downcast::<FeedError>() {
                Ok(FeedError::Stopped) => {
                    info!(source = %source.name, "Shutdown: the fetch in progress was abandoned; nothing of it was kept");
                    return Err(Stopped.into());
                }
                Ok(feed_error) => {
                    warn!(source = %source.name, error = %feed_error, "Source could not be fetched");
                    report.files.push(FileOutcome::FetchFailed {
                        source: source.name.clone(),
                        error: feed_error.to_string(),
                    });
                }
                Err(other) => return Err(other),
            }
        }
    }
    Ok(report)
}

/// Ingests files an earlier run took into the state dir but did not finish.
async fn recover(
    store: &Store,
    source: &SourceSettings,
    run: &Run<'_>,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    let clock = run.clock;
    for waiting in store.waiting_files(&source.name).await? {
        run.check_stop()?;
        info!(source = %source.name, file_id = waiting.id, "Resuming a file an earlier run did not finish");
        if !waiting.raw_path.exists() {
            let reason = format!(
                "the raw copy {} is missing from the state directory; deliver the file again",
                waiting.raw_path.display()
            );
            store
                .reject_file(waiting.id, &reason, FileCounts::default(), clock.now())
                .await?;
            report.files.push(FileOutcome::Rejected {
                source: source.name.clone(),
                file: waiting.original_name.clone(),
                file_id: waiting.id,
                reason,
                moved_to: None,
            });
            continue;
        }
        if store
            .ingested_file(&source.name, &waiting.sha256)
            .await?
            .is_some()
        {
            store
                .reject_file(
                    waiting.id,
                    "the same content was ingested already",
                    FileCounts::default(),
                    clock.now(),
                )
                .await?;
            continue;
        }
        let outcome = store_watched(
            store,
            source,
            waiting.id,
            &waiting.original_name,
            &waiting.raw_path,
            run,
            None,
        )
        .await?;
        report.files.push(outcome);
    }
    Ok(())
}

async fn ingest_dir(
    store: &Store,
    source: &SourceSettings,
    dir: &DirTransport,
    raw_dir: &Path,
    run: &Run<'_>,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    let inbox = feeds::dir::scan(
        &dir.path,
        Duration::from_secs(dir.settle_secs),
        feeds::dir::file_clock(),
    )?;
    if inbox.unsettled > 0 {
        info!(
            source = %source.name,
            files = inbox.unsettled,
            settle_secs = dir.settle_secs,
            "Inbox files modified within settle_secs are left for the next run"
        );
        report.files.push(FileOutcome::Unsettled {
            source: source.name.clone(),
            files: inbox.unsettled,
            settle_secs: dir.settle_secs,
        });
    }
    for refused in inbox.refused {
        let e = FeedError::NotRegularFile {
            path: refused.path.clone(),
            what: refused.what,
        };
        report.files.push(refuse(source, &refused.path, e, None));
    }
    for inbox_file in inbox.ready {
        run.check_stop()?;
        let fetched = match feeds::dir::take(
            &source.name,
            &inbox_file,
            raw_dir,
            dir.max_file_bytes,
            run.stop,
        ) {
            Ok(f) => f,
            Err(e @ FeedError::NotRegularFile { .. }) => {
                report.files.push(refuse(source, &inbox_file, e, None));
                continue;
            }
            Err(e @ FeedError::FileTooLarge { .. }) => {
                // Out of the inbox with its reason, so it is not refused every night.
                let reason = e.to_string();
                let moved = feeds::dir::settle(&inbox_file, Settle::Rejected { reason: &reason })?;
                report
                    .files
                    .push(refuse(source, &inbox_file, e, Some(moved)));
                continue;
            }
            Err(e @ FeedError::Changed { .. }) => {
                report.files.push(changed(source, &inbox_file, None, &e));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let outcome = take_and_store(store, source, &fetched, run).await?;
        if let FileOutcome::Changed { .. } = outcome {
            report.files.push(outcome);
            continue;
        }
        // Committed (or rejected) as read; if the file changed since, it is left
        // in the inbox: the next run ingests the complete file.
        if let Origin::Dir { stamp, .. } = &fetched.origin {
            if let Err(e) = feeds::dir::unchanged(&source.name, &inbox_file, stamp) {
                report
                    .files
                    .push(changed(source, &inbox_file, outcome_file_id(&outcome), &e));
                continue;
            }
        }
        let moved = settle_inbox(&inbox_file, &outcome)?;
        report.files.push(with_moved_to(outcome, moved));
    }
    Ok(())
}

/// A refused inbox entry, logged by name (never content) and reported.
fn refuse(
    source: &SourceSettings,
    path: &Path,
    e: FeedError,
    moved_to: Option<PathBuf>,
) -> FileOutcome {
    let file = file_name(path);
    warn!(source = %source.name, entry = %file, error = %e, "Inbox entry refused without being read");
    FileOutcome::Refused {
        source: source.name.clone(),
        file,
        reason: e.to_string(),
        moved_to,
    }
}

/// A file that changed while it was read, logged by name and reported.
fn changed(
    source: &SourceSettings,
    path: &Path,
    file_id: Option<i64>,
    e: &FeedError,
) -> FileOutcome {
    let file = file_name(path);
    warn!(source = %source.name, entry = %file, file_id, error = %e, "Inbox file changed while it was read; left in the inbox");
    FileOutcome::Changed {
        source: source.name.clone(),
        file,
        file_id,
        reason: e.to_string(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn outcome_file_id(outcome: &FileOutcome) -> Option<i64> {
    match outcome {
        FileOutcome::Ingested { file_id, .. } | FileOutcome::Rejected { file_id, .. } => {
            Some(*file_id)
        }
        FileOutcome::Changed { file_id, .. } => *file_id,
        _ => None,
    }
}

async fn ingest_given_file(
    store: &Store,
    source: &SourceSettings,
    file: &Path,
    raw_dir: &Path,
    run: &Run<'_>,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    // Named by the operator: taken at once (no settle time), but still only a
    // regular file, within the size limit, and unchanged while it is read.
    let max_bytes = match &source.transport {
        Transport::Dir(dir) => dir.max_file_bytes,
        Transport::Http(_) => DirTransport::DEFAULT_MAX_FILE_BYTES,
    };
    let fetched = feeds::dir::take(&source.name, file, raw_dir, max_bytes, run.stop)?;
    let outcome = take_and_store(store, source, &fetched, run).await?;
    // A file handed over from the source's own inbox is settled like any other;
    // a file elsewhere belongs to whoever named it and is left where it is.
    let in_inbox = match &source.transport {
        Transport::Dir(dir) => file.parent().is_some_and(|p| same_dir(p, &dir.path)),
        Transport::Http(_) => false,
    };
    if in_inbox && !matches!(outcome, FileOutcome::Changed { .. }) {
        let moved = settle_inbox(file, &outcome)?;
        report.files.push(with_moved_to(outcome, moved));
    } else {
        report.files.push(outcome);
    }
    Ok(())
}

async fn ingest_http(
    store: &Store,
    source: &SourceSettings,
    raw_dir: &Path,
    run: &Run<'_>,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    let clock = run.clock;
    let Transport::Http(http) = &source.transport else {
        return Ok(());
    };
    let stored = store.http_validators(&source.name).await?;
    let prior = Validators {
        etag: stored.etag,
        last_modified: stored.last_modified,
    };
    let client = feeds::http::client()?;
    let policy = feeds::http::RetryPolicy::default();
    match feeds::http::fetch(&client, source, http, &prior, raw_dir, &policy, run.stop).await? {
        HttpOutcome::NotModified => {
            info!(source = %source.name, "Feed not modified since the last fetch");
            report.files.push(FileOutcome::NotModified {
                source: source.name.clone(),
            });
        }
        HttpOutcome::Fetched(fetched) => {
            let outcome = take_and_store(store, source, &fetched, run).await?;
            if let Origin::Http { validators, .. } = &fetched.origin {
                let v = StoredValidators {
                    etag: validators.etag.clone(),
                    last_modified: validators.last_modified.clone(),
                };
                store
                    .set_http_validators(&source.name, &v, clock.now())
                    .await?;
            }
            report.files.push(outcome);
        }
    }
    Ok(())
}

/// Ledger, idempotency check, then store.
async fn take_and_store(
    store: &Store,
    source: &SourceSettings,
    fetched: &FetchedFile,
    run: &Run<'_>,
) -> anyhow::Result<FileOutcome> {
    let clock = run.clock;
    if store
        .ingested_file(&source.name, &fetched.sha256)
        .await?
        .is_some()
    {
        info!(source = %source.name, sha256 = %fetched.sha256, "File ingested before; nothing to do");
        return Ok(FileOutcome::Duplicate {
            source: source.name.clone(),
            file: fetched.original_name.clone(),
        });
    }
    let origin = match &fetched.origin {
        Origin::Dir { inbox_file, .. } => format!("dir:{}", inbox_file.display()),
        Origin::Http { url, .. } => url.clone(),
    };
    let file_id = store
        .record_fetched(&NewFile {
            source: &source.name,
            kind: source.kind,
            original_name: &fetched.original_name,
            raw_path: &fetched.path,
            origin: &origin,
            sha256: &fetched.sha256,
            size: fetched.size,
            fetched_at: clock.now(),
        })
        .await?;
    info!(source = %source.name, file_id, bytes = fetched.size, "Feed file taken");
    let guard = match &fetched.origin {
        Origin::Dir { inbox_file, stamp } => Some((inbox_file.as_path(), stamp)),
        Origin::Http { .. } => None,
    };
    store_watched(
        store,
        source,
        file_id,
        &fetched.original_name,
        &fetched.path,
        run,
        guard,
    )
    .await
}

/// An inbox file and its [`Stamp`] as copied: checked again before the rows commit.
type Guard<'a> = Option<(&'a Path, &'a Stamp)>;

/// Parses a raw file on a blocking thread and stores it in one transaction, or
/// rejects it whole.
pub async fn store_file(
    store: &Store,
    source: &SourceSettings,
    file_id: i64,
    file_name: &str,
    raw_path: &Path,
    clock: Clock,
    progress: &dyn Progress,
) -> anyhow::Result<FileOutcome> {
    let run = Run {
        clock,
        progress,
        stop: &CancellationToken::new(),
    };
    store_watched(store, source, file_id, file_name, raw_path, &run, None).await
}

/// [`store_file`], stopping at the next batch once shutdown begins.
#[instrument(name = "store_file", skip_all, fields(source = %source.name, file_id))]
async fn store_watched(
    store: &Store,
    source: &SourceSettings,
    file_id: i64,
    file_name: &str,
    raw_path: &Path,
    run: &Run<'_>,
    guard: Guard<'_>,
) -> anyhow::Result<FileOutcome> {
    let (clock, progress) = (run.clock, run.progress);
    let size = std::fs::metadata(raw_path).map(|m| m.len()).unwrap_or(0);
    progress.file_started(&source.name, file_name, size);
    let result = parse_and_store(store, source, file_id, file_name, raw_path, run, guard).await;
    progress.file_done();
    let (counts, rejection) = match result? {
        Stored::Committed(counts) => {
            info!(
                rows = counts.rows_read,
                records = counts.records,
                quarantined = counts.quarantined,
                "Feed file ingested"
            );
            return Ok(FileOutcome::Ingested {
                source: source.name.clone(),
                file: file_name.to_string(),
                file_id,
                counts,
            });
        }
        Stored::Rejected(counts, reason) => (counts, reason),
        Stored::Changed(counts, e) => {
            // Nothing stored; the ledger row of this copy is closed so no later run
            // resumes it, and the inbox file is left for the next run.
            let reason = e.to_string();
            warn!(
                rows = counts.rows_read,
                error = %e,
                "Feed file changed while it was read; rolled back and left in the inbox"
            );
            store
                .reject_file(file_id, &reason, counts, clock.now())
                .await?;
            return Ok(FileOutcome::Changed {
                source: source.name.clone(),
                file: file_name.to_string(),
                file_id: Some(file_id),
                reason,
            });
        }
        Stored::Stopped(counts) => {
            info!(
                rows = counts.rows_read,
                "Shutdown: the file's transaction was rolled back; it stays waiting for the next run"
            );
            return Err(Stopped.into());
        }
    };
    warn!(
        rows = counts.rows_read,
        quarantined = counts.quarantined,
        "Feed file rejected"
    );
    store
        .reject_file(file_id, &rejection, counts, clock.now())
        .await?;
    Ok(FileOutcome::Rejected {
        source: source.name.clone(),
        file: file_name.to_string(),
        file_id,
        reason: rejection,
        moved_to: None,
    })
}

enum Stored {
    Committed(FileCounts),
    Rejected(FileCounts, String),
    /// Shutdown began: rolled back after the rows counted.
    Stopped(FileCounts),
    /// The inbox file changed after it was copied: rolled back.
    Changed(FileCounts, FeedError),
}

type Batch = Result<Vec<Result<Record, RowProblem>>, FileRejection>;

async fn parse_and_store(
    store: &Store,
    source: &SourceSettings,
    file_id: i64,
    file_name: &str,
    raw_path: &Path,
    run: &Run<'_>,
    guard: Guard<'_>,
) -> anyhow::Result<Stored> {
    let (clock, progress) = (run.clock, run.progress);
    let (tx_batches, mut rx_batches) = mpsc::channel::<Batch>(BATCHES_AHEAD);
    // Stored batches go back to the parser thread to be dropped there: a row's
    // strings are freed by the thread that allocated them, which keeps the
    // allocator on its fast thread-local path on both sides (freeing them on the
    // store side cost about a fifth of the store rate in contention).
    let (tx_spent, rx_spent) = std::sync::mpsc::channel::<Vec<ingest::RowOutcome>>();
    let source_owned = source.clone();
    let path = raw_path.to_path_buf();
    let name = file_name.to_string();
    let parser = tokio::task::spawn_blocking(move || {
        let mut reader: RowReader = match ingest::open(&source_owned, &path, &name) {
            Ok(r) => r,
            Err(rejection) => {
                let _ = tx_batches.blocking_send(Err(rejection));
                return;
            }
        };
        loop {
            while let Ok(spent) = rx_spent.try_recv() {
                drop(spent);
            }
            let batch = reader.next_batch(BATCH_ROWS);
            let done = matches!(&batch, Ok(b) if b.is_empty()) || batch.is_err();
            if tx_batches.blocking_send(batch).is_err() || done {
                return;
            }
        }
    });

    let mut counts = FileCounts::default();
    let mut quoted: Vec<RowProblem> = Vec::new();
    let mut tx = None;
    let mut rejection = None;
    let mut stopped = false;
    while let Some(batch) = rx_batches.recv().await {
        if run.stop.is_cancelled() {
            stopped = true;
            break;
        }
        let rows = match batch {
            Ok(rows) if rows.is_empty() => break,
            Ok(rows) => rows,
            Err(r) => {
                rejection = Some(r.to_string());
                break;
            }
        };
        let tx = match &mut tx {
            Some(tx) => tx,
            None => {
                debug!(file_id, "Storing the file's rows in one transaction");
                tx.insert(store.begin_file(file_id).await?)
            }
        };
        counts.rows_read += rows.len() as i64;
        progress.rows(rows.len() as u64);
        // Borrowed, not moved: the rows stay in the batch the parser will free.
        let mut records: Vec<&Record> = Vec::with_capacity(rows.len());
        let mut problems: Vec<RowProblem> = Vec::new();
        for row in &rows {
            match row {
                Ok(r) => records.push(r),
                Err(p) => problems.push(p.clone()),
            }
        }
        counts.records += records.len() as i64;
        counts.quarantined += problems.len() as i64;
        tx.add_records(&records).await?;
        if !problems.is_empty() {
            let room = QUOTED_PROBLEMS.saturating_sub(quoted.len());
            quoted.extend(problems.iter().take(room).cloned());
            tx.add_problems(&problems).await?;
        }
        drop(records);
        // The parser may have finished already; then the batch is dropped here.
        let _ = tx_spent.send(rows);
    }
    drop(rx_batches);
    drop(tx_spent);
    parser
        .await
        .context("the parser thread stopped unexpectedly")?;
    if stopped {
        if let Some(tx) = tx {
            tx.rollback().await?;
        }
        return Ok(Stored::Stopped(counts));
    }
    // Whatever the rows came to, they are kept (or the file rejected) only if the
    // inbox file is still the one that was copied: a file still being written is
    // neither stored in part nor moved to rejected/.
    if let Some((inbox_file, stamp)) = guard {
        if let Err(e) = feeds::dir::unchanged(&source.name, inbox_file, stamp) {
            if let Some(tx) = tx {
                tx.rollback().await?;
            }
            return match e {
                FeedError::Changed { .. } => Ok(Stored::Changed(counts, e)),
                other => Err(other.into()),
            };
        }
    }

    if rejection.is_none() && counts.rows_read > 0 {
        let share = counts.quarantined as f64 / counts.rows_read as f64;
        if share > source.max_bad_rows {
            rejection = Some(too_many_bad_rows(source, file_name, counts, share, &quoted));
        }
    }
    match (rejection, tx) {
        (Some(reason), tx) => {
            if let Some(tx) = tx {
                tx.rollback().await?;
            }
            Ok(Stored::Rejected(counts, reason))
        }
        (None, Some(tx)) => {
            tx.commit(counts, clock.now()).await?;
            Ok(Stored::Committed(counts))
        }
        (None, None) => {
            // A header-only file: a valid, empty delivery.
            let tx = store.begin_file(file_id).await?;
            tx.commit(counts, clock.now()).await?;
            Ok(Stored::Committed(counts))
        }
    }
}

fn too_many_bad_rows(
    source: &SourceSettings,
    file_name: &str,
    counts: FileCounts,
    share: f64,
    quoted: &[RowProblem],
) -> String {
    let mut msg = format!(
        "file {file_name:?}: {} of {} rows ({:.1}%) could not be used, more than max_bad_rows = {} of source {:?} allows; \
         nothing from this file was stored. Fix the rows and deliver the file again",
        counts.quarantined,
        counts.rows_read,
        share * 100.0,
        source.max_bad_rows,
        source.name
    );
    for p in quoted {
        msg.push_str(&format!(
            "\n  row {}{}: {}",
            p.row,
            p.column
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            p.reason
        ));
    }
    if counts.quarantined as usize > quoted.len() {
        msg.push_str(&format!(
            "\n  … and {} more",
            counts.quarantined as usize - quoted.len()
        ));
    }
    msg
}

fn settle_inbox(inbox_file: &Path, outcome: &FileOutcome) -> anyhow::Result<Option<PathBuf>> {
    let settle = match outcome {
        FileOutcome::Rejected { reason, .. } => Settle::Rejected { reason },
        FileOutcome::Ingested { .. } | FileOutcome::Duplicate { .. } => Settle::Archived,
        FileOutcome::NotModified { .. }
        | FileOutcome::FetchFailed { .. }
        | FileOutcome::Unsettled { .. }
        | FileOutcome::Refused { .. }
        | FileOutcome::Changed { .. } => return Ok(None),
    };
    Ok(Some(feeds::dir::settle(inbox_file, settle)?))
}

fn with_moved_to(outcome: FileOutcome, moved: Option<PathBuf>) -> FileOutcome {
    match outcome {
        FileOutcome::Rejected {
            source,
            file,
            file_id,
            reason,
            ..
        } => FileOutcome::Rejected {
            source,
            file,
            file_id,
            reason,
            moved_to: moved,
        },
        other => other,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
