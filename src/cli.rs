//! The command line of docs/design.md, as clap types. Handlers live in `app`.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::telemetry::LogFormat;

/// kinlink: links partner-agency feeds for Early Help and tells the one person who can act.
#[derive(Debug, Parser)]
#[command(name = "kinlink", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: $KINLINK_CONFIG, else config/kinlink.toml).
    #[arg(long, global = true, env = "KINLINK_CONFIG")]
    pub config: Option<PathBuf>,

    /// Treat this Europe/London date as today (tests, back-fills, re-runs).
    #[arg(long, global = true, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,

    /// Log lines as JSON objects instead of plain text.
    #[arg(long, global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log format asked for.
    pub fn log_format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            LogFormat::Plain
        }
    }
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and jobs; list every problem with its line, then what would run.
    CheckConfig,
    /// Fetch new files (or the given one) and ingest them.
    Ingest(IngestArgs),
    /// The daemon: run the jobs of the jobs folder at their times until SIGTERM or
    /// SIGINT (SIGHUP reloads the config and jobs).
    Run,
    /// Every stage once, in order (ingest, link, evaluate, send); a rejected file is
    /// reported and the run goes on; exit 1 only if a stage itself failed.
    RunOnce {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Sources, jobs (last and next run) and the outbox at a glance.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Make a fictional borough's feeds and run every stage once on the embedded defaults.
    Demo(DemoArgs),
    /// Link person mentions into persons, households and families (incremental:
    /// only mentions new or changed since the last run are compared).
    Link(LinkArgs),
    /// Run the rules for today (or --as-of): raise, escalate and resolve alerts, and
    /// decide who is to be told (idempotent).
    Evaluate {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Alerts: list them, or acknowledge one.
    Alerts {
        #[command(subcommand)]
        what: AlertsCommand,
    },
    /// The audit trail: who was told about a family and why, or what a recipient
    /// has been sent.
    Audit(AuditArgs),
    /// Delete raw data past its retention period (`[retention]`); alerts and the
    /// audit trail stay.
    Purge {
        /// Count what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show why: every mention and link of a person or family, in plain words.
    Explain {
        #[command(subcommand)]
        what: ExplainCommand,
    },
    /// The review queue: pairs a person must decide.
    Review {
        #[command(subcommand)]
        what: ReviewCommand,
    },
    /// Persons and their mentions.
    Persons {
        #[command(subcommand)]
        what: PersonsCommand,
    },
    /// Compose a digest per recipient from the pending deliveries, then send what the
    /// outbox holds that is due (SMTP, or .eml files with the file transport).
    Send(SendArgs),
    /// The mail outbox: what is queued, sent or failed.
    Outbox {
        #[command(subcommand)]
        what: OutboxCommand,
    },
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only this file (with --source).
    #[arg(long, requires = "source")]
    pub file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// List what would go and change nothing (no connection, no file, no status).
    #[arg(long)]
    pub dry_run: bool,
    /// Also compose the managers' weekly digest (re-referral warnings and rate per
    /// locality): the `weekly-managers` job's send.
    #[arg(long)]
    pub manager_digest: bool,
    /// Print the report as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Every message with its status, attempts and recipients.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// One message: its state, each recipient's and the full message as stored.
    Show { id: i64 },
    /// Queue a failed message (or its refused recipients) again, due now.
    Retry { id: i64 },
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Recompute every pair instead of only those of new or changed mentions.
    #[arg(long)]
    pub full: bool,
    /// Print the figures as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alerts, oldest first (JSON: the shape of docs/feeds.md).
    List {
        /// Only this rule (da_notification, attendance_drop, eviction_risk,
        /// emerging_risk, closed_too_early).
        #[arg(long)]
        rule: Option<String>,
        /// Only this status (new, sent, acknowledged, resolved).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Someone has picked the alert up.
    Ack {
        /// Alert id: `A12` or `12`.
        id: String,
        /// Who (email address), for the record.
        #[arg(long, value_name = "EMAIL")]
        by: String,
        /// What is being done, for the record.
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["family", "recipient"])))]
pub struct AuditArgs {
    /// Every disclosure about this family: `F3` or `3`.
    #[arg(long)]
    pub family: Option<String>,
    /// Everything this address has been sent.
    #[arg(long, value_name = "EMAIL")]
    pub recipient: Option<String>,
    /// Only from this date (Europe/London).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<NaiveDate>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// A person: `P12` or `12` (an id merged into another still works).
    Person { id: String },
    /// A family: `F3` or `3`.
    Family { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Pairs waiting for a decision, those behind an open alert first, then those
    /// moving the most mentions, then the most probable (with --all, decided ones too).
    List {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
        /// Decided pairs too.
        #[arg(long)]
        all: bool,
    },
    /// The two mentions are the same person; the next `link` joins them.
    Accept(DecideArgs),
    /// The two mentions are different people; the next `link` and every later one keep
    /// them apart (until `review undo`).
    Reject(DecideArgs),
    /// Withdraw the decision on a pair; the next `link` puts persons and families
    /// back as they were before it.
    Undo(UndoArgs),
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// Mention id as `review list` prints it: `M584` (or `m584`, `584`).
    #[arg(value_name = "A")]
    pub a: String,
    /// The other mention id.
    #[arg(value_name = "B")]
    pub b: String,
    /// Who decided (email address), for the record.
    #[arg(long, value_name = "EMAIL")]
    pub by: String,
    /// Why, for the record.
    #[arg(long)]
    pub note: Option<String>,
    /// Decide a pair that is not pending in the queue (an automatic link, or two
    /// mentions never compared).
    #[arg(long)]
    pub force: bool,
    /// Show the two records and what the decision would change; record nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// Mention id as `review list` prints it: `M584` (or `m584`, `584`).
    #[arg(value_name = "A")]
    pub a: String,
    /// The other mention id.
    #[arg(value_name = "B")]
    pub b: String,
    /// Who withdraws it (email address), for the record.
    #[arg(long, value_name = "EMAIL")]
    pub by: String,
    /// Why, for the record.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PersonsCommand {
    /// One row per mention: person_id,family_id,kind,source,mention_key,forename,surname,dob,postcode.
    Export {
        #[arg(long, value_enum, default_value_t)]
        format: ExportFormat,
    },
}

/// Format of `persons export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ExportFormat {
    #[default]
    Csv,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// About this many families.
    #[arg(long, default_value_t = 5000)]
    pub families: usize,
    /// Random seed: the same seed makes the same borough.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to write the borough (config, feeds, state).
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
}
