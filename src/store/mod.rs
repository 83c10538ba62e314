//! The store: the only module that knows SQL. One API in domain terms, two
//! backends — SQLite (the embedded default: one file in the state dir, WAL, mode
//! 0600) and PostgreSQL — each with its own embedded migrations.
//!
//! SQL is written once in the subset both engines share (`$N` placeholders,
//! `ON CONFLICT … DO UPDATE`, `RETURNING`); the [`on_pool!`] and [`on_tx!`] macros
//! run the same statement on whichever backend is open.
//!
//! Invariant: a feed file is ingested in one transaction ([`FileTx`]): its records,
//! mentions, quarantined rows and the ledger flip to `ingested` commit together or
//! not at all.

use std::path::{Path, PathBuf};
#[cfg(feature = "postgres")]
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

#[cfg(feature = "postgres")]
use crate::config::redact_url;
use crate::config::DatabaseUrl;
use crate::domain::FeedKind;

/// Errors callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot prepare the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("this kinlink was built without PostgreSQL support (enable the `postgres` feature)")]
    PostgresDisabled,
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored value the code cannot read (an unknown status, a code missing from
    /// its table) or a store used against its own shape: never the caller's fault.
    #[error("the store holds something kinlink cannot read: {0}")]
    Corrupt(String),
    #[error("a database task stopped: {0}")]
    Task(String),
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs one expression against whichever pool is open; `$p` names the pool.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}

/// An open transaction on either backend.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs one expression on an open [`Tx`]; `$t` is `&mut Transaction`.
macro_rules! on_tx {
    ($tx:expr, $t:ident => $body:expr) => {
        match &mut $tx {
            $crate::store::Tx::Sqlite($t) => $body,
            #[cfg(feature = "postgres")]
            $crate::store::Tx::Postgres($t) => $body,
        }
    };
}

impl Tx {
    async fn begin(pool: &Pool) -> Result<Tx, sqlx::Error> {
        Ok(match pool {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

mod alerts;
mod digests;
mod identity;
mod ingest;
pub mod metrics;
mod outbox;
mod reroute;
mod retention;
mod review;
mod runs;
mod tallies;
mod upgrades;

pub use alerts::{AckOutcome, AlertRow, AlertSummary, AttendanceCount, AuditRow};
pub use digests::{
    ClosedTooEarly, DigestFact, DigestStored, FileNotice, PendingDelivery, PersonDetails,
    RecordInfo, Referral, SettleReport,
};
pub use reroute::{RefusedDelivery, Reroute, Rerouted};
pub use retention::{PurgeCounts, PurgeCutoffs};

pub use identity::{
    ExplainLink, ExplainMention, ExportError, ExportRow, FamilyExplain, IncidentContact, LinkInput,
    LinkState, LinkWrite, NewHousehold, PersonExplain, Restore, RunCounts,
};
pub use ingest::{FileCounts, FileTx, SQLITE_MARK_CHUNK};
pub use outbox::{
    AttemptOutcome, ClaimedMessage, Claimer, Enqueued, FailureNoticeStored, LeaseRecovery,
    NewOutboxMessage, OutboxCounts, OutboxEntry, OutboxRecipient, OutboxStatus, RecipientStatus,
    RetryOutcome, Undelivered, UndeliveredRecipient,
};
pub use review::{
    Apart, Decided, DecisionRecord, NewDecision, PairFacts, PairLookup, PairSide, ReviewRow,
    Undone, Withdrawal,
};
pub use runs::{whole_second, Claim, ClaimRequest, RunOutcome, RunRow};

/// The store handle: cheap to clone, shared by every stage.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.backend())
    }
}

/// A ledger row: one raw file taken from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFile {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub original_name: String,
    pub raw_path: PathBuf,
    pub origin: String,
    pub sha256: String,
    pub size: i64,
    pub status: String,
}

/// What is known about a file before it is ingested.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub source: &'a str,
    pub kind: FeedKind,
    pub original_name: &'a str,
    pub raw_path: &'a Path,
    /// `dir:<inbox path>` or the URL it came from (without credentials).
    pub origin: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub fetched_at: DateTime<Utc>,
}

/// Per-source figures for `status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceStats {
    pub name: String,
    pub files_ingested: i64,
    pub files_rejected: i64,
    pub files_waiting: i64,
    pub rows: i64,
    pub quarantined: i64,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Conditional-GET validators remembered for an HTTP source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredValidators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Row counts of the record tables, for the demo and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCounts {
    pub mentions: i64,
    pub attendance_marks: i64,
    pub da_persons: i64,
    pub housing_notices: i64,
    pub case_members: i64,
    pub quarantined: i64,
}

/// A quarantined row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    pub file_id: i64,
    pub row_number: i64,
    pub column: Option<String>,
    pub reason: String,
    pub raw: String,
}

impl Store {
    /// Opens (creating if needed) the configured database and runs migrations.
    pub async fn connect(db: &DatabaseUrl, state_dir: &Path) -> Result<Store, StoreError> {
        match db {
            DatabaseUrl::Sqlite(path) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    state_dir.join(path)
                };
                Store::open_sqlite(&path).await
            }
            DatabaseUrl::Postgres(url) => Store::open_postgres(url).await,
        }
    }

    /// Opens a SQLite file: created with mode 0600 in a folder made 0700, WAL.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let state_err = |source| StoreError::StateDir {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(state_err)?;
        }
        create_private_file(path).map_err(state_err)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode never corrupts and never loses a committed
            // transaction to a process crash; only a power cut may roll back the
            // last commit, which a re-run of the idempotent night repeats.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // The connection's thread hands rows to the async side through a
            // channel; 50 (the default) woke the reader every few rows of the
            // million-row reads of linking and the rules.
            .row_buffer_size(4096);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                target: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&pool)
            .await?;
        // WAL and shared-memory files appear on first write: make them private too.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            restrict_mode(Path::new(&side));
        }
        let store = Store {
            pool: Pool::Sqlite(pool),
        };
        store.finish_upgrades().await?;
        Ok(store)
    }

    /// Opens a PostgreSQL database by URL and runs migrations.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|source| {
            StoreError::Connect {
                target: redact_url(url),
                source,
            }
        })?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                target: redact_url(url),
                source,
            })?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&pool)
            .await?;
        let store = Store {
            pool: Pool::Postgres(pool),
        };
        store.finish_upgrades().await?;
        Ok(store)
    }

    /// Without the `postgres` feature a PostgreSQL URL is a clear error.
    #[cfg(not(feature = "postgres"))]
    pub async fn open_postgres(_url: &str) -> Result<Store, StoreError> {
        Err(StoreError::PostgresDisabled)
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match &self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection (flushes the SQLite WAL on the last one).
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// The file of this source already ingested with this content, if any.
    pub async fn ingested_file(
        &self,
        source: &str,
        sha256: &str,
    ) -> Result<Option<i64>, StoreError> {
        let sql =
            "SELECT id FROM feed_files WHERE source = $1 AND sha256 = $2 AND status = 'ingested'";
        let id: Option<i64> = on_pool!(self, p => sqlx::query_scalar(sql).bind(source).bind(sha256).fetch_optional(p).await)?;
        Ok(id)
    }

    /// Records a file taken into the state dir (status `fetched`), or returns the
    /// waiting row for the same content if an earlier run took it and stopped
    /// before ingesting it.
    pub async fn record_fetched(&self, file: &NewFile<'_>) -> Result<i64, StoreError> {
        let existing = "SELECT id FROM feed_files WHERE source = $1 AND sha256 = $2 AND status = 'fetched' ORDER BY id LIMIT 1";
        let found: Option<i64> = on_pool!(self, p => sqlx::query_scalar(existing).bind(file.source).bind(file.sha256).fetch_optional(p).await)?;
        if let Some(id) = found {
            return Ok(id);
        }
        let insert = "INSERT INTO feed_files (source, kind, original_name, raw_path, origin, sha256, size, fetched_at, status) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'fetched') RETURNING id";
        let raw_path = file.raw_path.to_string_lossy().into_owned();
        let id: i64 = on_pool!(self, p => sqlx::query_scalar(insert)
            .bind(file.source)
            .bind(file.kind.as_str())
            .bind(file.original_name)
            .bind(&raw_path)
            .bind(file.origin)
            .bind(file.sha256)
            .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
            .bind(file.fetched_at)
            .fetch_one(p)
            .await)?;
        Ok(id)
    }

    /// Files of a source taken but not yet ingested (a run stopped between fetch
    /// and ingest), oldest first.
    pub async fn waiting_files(&self, source: &str) -> Result<Vec<LedgerFile>, StoreError> {
        let sql = "SELECT id, source, kind, original_name, raw_path, origin, sha256, size, status \
                   FROM feed_files WHERE source = $1 AND status = 'fetched' ORDER BY id";
        let rows: Vec<LedgerTuple> =
            on_pool!(self, p => sqlx::query_as(sql).bind(source).fetch_all(p).await)?;
        Ok(rows.into_iter().map(ledger_from_tuple).collect())
    }

    /// One ledger row.
    pub async fn ledger_file(&self, id: i64) -> Result<LedgerFile, StoreError> {
        let sql = "SELECT id, source, kind, original_name, raw_path, origin, sha256, size, status FROM feed_files WHERE id = $1";
        let row: Option<LedgerTuple> =
            on_pool!(self, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        row.map(ledger_from_tuple)
            .ok_or_else(|| StoreError::NotFound(format!("feed file {id}")))
    }

    /// Marks a file rejected whole, with the reason. Nothing from it is stored.
    pub async fn reject_file(
        &self,
        id: i64,
        reason: &str,
        counts: FileCounts,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE feed_files SET status = 'rejected', reason = $2, rows_read = $3, records = $4, \
                   quarantined = $5, finished_at = $6 WHERE id = $1";
        on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .bind(reason)
            .bind(counts.rows_read)
            .bind(counts.records)
            .bind(counts.quarantined)
            .bind(at)
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Starts the one transaction in which a file's content is stored.
    pub async fn begin_file(&self, file_id: i64) -> Result<FileTx, StoreError> {
        FileTx::begin(self, file_id).await
    }

    /// The validators of the last successful fetch of an HTTP source.
    pub async fn http_validators(&self, source: &str) -> Result<StoredValidators, StoreError> {
        let sql = "SELECT etag, last_modified FROM http_validators WHERE source = $1";
        let row: Option<(Option<String>, Option<String>)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(source).fetch_optional(p).await)?;
        Ok(row
            .map(|(etag, last_modified)| StoredValidators {
                etag,
                last_modified,
            })
            .unwrap_or_default())
    }

    /// Remembers the validators of a successful fetch.
    pub async fn set_http_validators(
        &self,
        source: &str,
        v: &StoredValidators,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO http_validators (source, etag, last_modified, updated_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (source) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, \
                   updated_at = excluded.updated_at";
        on_pool!(self, p => sqlx::query(sql).bind(source).bind(&v.etag).bind(&v.last_modified).bind(at).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Per-source ledger figures, for every source that has a ledger row.
    pub async fn source_stats(&self) -> Result<Vec<SourceStats>, StoreError> {
        let sql = "SELECT source, \
                     CAST(SUM(CASE WHEN status = 'ingested' THEN 1 ELSE 0 END) AS BIGINT), \
                     CAST(SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) AS BIGINT), \
                     CAST(SUM(CASE WHEN status = 'fetched' THEN 1 ELSE 0 END) AS BIGINT), \
                     CAST(SUM(CASE WHEN status = 'ingested' THEN records ELSE 0 END) AS BIGINT), \
                     CAST(SUM(CASE WHEN status = 'ingested' THEN quarantined ELSE 0 END) AS BIGINT), \
                     MAX(CASE WHEN status = 'ingested' THEN finished_at END) \
                   FROM feed_files GROUP BY source ORDER BY source";
        type StatsRow = (
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<StatsRow> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(
                |(name, ingested, rejected, waiting, rows, quarantined, last)| SourceStats {
                    name,
                    files_ingested: ingested.unwrap_or(0),
                    files_rejected: rejected.unwrap_or(0),
                    files_waiting: waiting.unwrap_or(0),
                    rows: rows.unwrap_or(0),
                    quarantined: quarantined.unwrap_or(0),
                    last_success_at: last,
                },
            )
            .collect())
    }

    /// How many rows each record table holds.
    pub async fn table_counts(&self) -> Result<TableCounts, StoreError> {
        let sql =
            "SELECT (SELECT COUNT(*) FROM mentions), (SELECT COUNT(*) FROM attendance_marks), \
                   (SELECT COUNT(*) FROM da_persons), (SELECT COUNT(*) FROM housing_notices), \
                   (SELECT COUNT(*) FROM case_members), (SELECT COUNT(*) FROM quarantine)";
        let r: (i64, i64, i64, i64, i64, i64) =
            on_pool!(self, p => sqlx::query_as(sql).fetch_one(p).await)?;
        Ok(TableCounts {
            mentions: r.0,
            attendance_marks: r.1,
            da_persons: r.2,
            housing_notices: r.3,
            case_members: r.4,
            quarantined: r.5,
        })
    }

    /// The first `limit` quarantined rows of one file, in row order.
    pub async fn quarantined_rows(
        &self,
        file_id: i64,
        limit: usize,
    ) -> Result<Vec<QuarantinedRow>, StoreError> {
        let sql = "SELECT file_id, row_number, column_name, reason, raw FROM quarantine \
                   WHERE file_id = $1 ORDER BY row_number, id LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, Option<String>, String, String)> = on_pool!(self, p =>
            sqlx::query_as(sql).bind(file_id).bind(limit).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(
                |(file_id, row_number, column, reason, raw)| QuarantinedRow {
                    file_id,
                    row_number,
                    column,
                    reason,
                    raw,
                },
            )
            .collect())
    }

    /// Ledger rows of a source, newest first (for status and tests).
    pub async fn ledger(&self, source: &str) -> Result<Vec<LedgerFile>, StoreError> {
        let sql = "SELECT id, source, kind, original_name, raw_path, origin, sha256, size, status \
                   FROM feed_files WHERE source = $1 ORDER BY id DESC";
        let rows: Vec<LedgerTuple> =
            on_pool!(self, p => sqlx::query_as(sql).bind(source).fetch_all(p).await)?;
        Ok(rows.into_iter().map(ledger_from_tuple).collect())
    }

    /// Runs a read-only scalar query; for tests that check stored values.
    pub async fn scalar_i64(&self, sql: &'static str) -> Result<i64, StoreError> {
        let v: i64 = on_pool!(self, p => sqlx::query_scalar(sql).fetch_one(p).await)?;
        Ok(v)
    }

    /// Runs a read-only text query returning one column; for tests.
    pub async fn column_text(&self, sql: &'static str) -> Result<Vec<Option<String>>, StoreError> {
        let v: Vec<Option<String>> =
            on_pool!(self, p => sqlx::query_scalar(sql).fetch_all(p).await)?;
        Ok(v)
    }
}

type LedgerTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
);

fn ledger_from_tuple(t: LedgerTuple) -> LedgerFile {
    LedgerFile {
        id: t.0,
        source: t.1,
        kind: t.2,
        original_name: t.3,
        raw_path: PathBuf::from(t.4),
        origin: t.5,
        sha256: t.6,
        size: t.7,
        status: t.8,
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    restrict_mode(path);
    Ok(())
}

fn restrict_mode(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            // Best effort: a file we cannot chmod is reported by the next open.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}
