//! Scheduled jobs, one TOML file each in the jobs folder (docs/config.md): a name, a
//! six-field cron schedule in the config timezone, the steps to run in order, and
//! whether a missed run is caught up on start.

mod load;
mod schedule;
pub(crate) mod walk;

pub(crate) use load::is_name;
pub use load::{load_dir, load_file, load_job_str};
pub use schedule::{check_schedule, Schedule, ScheduleError};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// One job file, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    /// `sec min hour dom mon dow`, checked when loaded.
    pub schedule: String,
    pub steps: Vec<Step>,
    pub catch_up: bool,
    pub file: PathBuf,
}

/// A pipeline stage a job can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Ingest,
    Link,
    Evaluate,
    Send,
    /// `send`, and the managers' weekly digest composed first.
    ManagerDigest,
    Purge,
}

impl Step {
    /// Every step, in pipeline order.
    pub const ALL: &'static [Step] = &[
        Step::Ingest,
        Step::Link,
        Step::Evaluate,
        Step::Send,
        Step::ManagerDigest,
        Step::Purge,
    ];

    /// The name used in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Link => "link",
            Step::Evaluate => "evaluate",
            Step::Send => "send",
            Step::ManagerDigest => "manager-digest",
            Step::Purge => "purge",
        }
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .iter()
            .copied()
            .find(|step| step.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<_> = Step::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown step {s:?}; the steps are: {}", names.join(", "))
            })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
