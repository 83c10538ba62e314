//! kinlink: links partner-agency feeds for a council's Early Help service and tells
//! the one person who can act.
//!
//! The modules, in pipeline order (README "Architecture" gives each one's invariant):
#![forbid(unsafe_code)]

/// Plain data: feed kinds, enumerations, identifiers, records, rule and role names.
pub mod domain;

/// The one source of "now": system time, or a fixed instant for tests and `--as-of`.
pub mod clock;

/// Reading and checking the config file and its environment overrides.
pub mod config;

/// Reading and checking the job files, and a job's schedule.
pub mod jobs;

/// Fetching raw files from inbox folders and HTTP endpoints.
pub mod feeds;

/// One file's bytes → canonical records and quarantined rows.
pub mod ingest;

/// The store on SQLite or PostgreSQL: the only module with SQL.
pub mod store;

/// Identity resolution: mentions → persons, households, families.
pub mod link;

/// Records, persons and families → findings per rule.
pub mod rules;

/// Findings → alerts raised, escalated, resolved, and who is told.
pub mod alerts;

/// The stages (ingest, link, evaluate, purge), each one run end to end.
pub mod pipeline;

/// Digests, notices and the outbox drain over SMTP or to files.
pub mod mail;

/// Jobs at their times, claimed in the store, DST-safe.
pub mod scheduler;

/// This process as an outbox claim names it, and whether such a process is dead.
pub mod process;

/// Signals as values: the stop token, SIGHUP, the drain deadline.
pub mod shutdown;

/// `/healthz` and `/metrics`.
pub mod health;

/// Logging setup: plain or JSON lines, ids and counts only.
pub mod telemetry;

/// A seeded fictional borough for `kinlink demo`.
pub mod demo;

/// The commands and the daemon.
pub mod app;

/// The command line.
pub mod cli;
