//! The scheduler: runs each job of `jobs/*.toml` at its times in the config
//! timezone, once per scheduled time across every daemon on the database.
//!
//! - `schedule`: a job's [`Schedule`] (read by `jobs`, the one cron parser, so
//!   check-config and the scheduler agree) → the next UTC instant, DST-safe (the
//!   rules are there).
//! - `engine`: claims, runs, heartbeats, catch-up, overlap, take-over, drain.
//! - `steps`: step names → pipeline stages, in one `match`.
//! - `notify`: systemd's READY/STATUS/WATCHDOG/STOPPING.

mod engine;
mod notify;
mod schedule;
mod steps;

pub use engine::{instance_id, FailureNotifier, Scheduler, SchedulerOptions};
pub use notify::Notifier;
pub use schedule::{next_run, previous_run, Schedule, ScheduleError};
pub use steps::{PipelineSteps, StepContext, StepError, StepReport, StepRunner};
