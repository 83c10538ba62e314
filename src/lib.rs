//! kinlink: links partner-agency feeds for a council's Early Help service and tells
//! the one person who can act.
//!
//! Modules in pipeline order (README "Architecture"):
//! `domain` (plain data) → `config`, `jobs` → `feeds` (fetch) → `ingest` (parse) →
//! `store` (SQL) → `pipeline` (one run) → `mail` (outbox, SMTP) → `demo` (a fictional borough) → `cli`.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod feeds;
pub mod health;
pub mod ingest;
pub mod jobs;
pub mod link;
pub mod mail;
pub mod pipeline;
pub mod process;
pub mod rules;
pub mod scheduler;
pub mod shutdown;
pub mod store;
pub mod telemetry;
