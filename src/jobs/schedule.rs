//! A job's schedule: six cron fields (`sec min hour dom mon dow`), read once by
//! [`Schedule::parse`] (the `croner` crate) for check-config and the scheduler
//! alike; [`check_schedule`] explains a bad one field by field.

use std::fmt;

use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A schedule that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("schedule {text:?} cannot be read: {reason}")]
pub struct ScheduleError {
    text: String,
    reason: String,
}

impl Schedule {
    /// Reads six cron fields: the one read of a schedule, for `check-config` (through
    /// [`check_schedule`], which explains a refusal field by field) and for the
    /// scheduler alike, so a schedule check-config accepts is one the daemon runs.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let fields = text.split_whitespace().count();
        let error = |reason: String| ScheduleError {
            text: text.to_string(),
            reason,
        };
        if fields != 6 {
            return Err(error(format!("has {fields} fields, not six")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(text)
            .map_err(|e| error(e.to_string()))?;
        Ok(Schedule {
            cron,
            text: text.to_string(),
        })
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed cron expression, for the scheduler's search for run times.
    pub(crate) fn cron(&self) -> &Cron {
        &self.cron
    }
}

/// One cron field's range and its optional names (the name at index `i` means
/// `first_name_value + i`).
struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    first_name_value: u32,
}

const FIELDS: [Field; 6] = [
    Field {
        what: "seconds",
        min: 0,
        max: 59,
        names: &[],
        first_name_value: 0,
    },
    Field {
        what: "minutes",
        min: 0,
        max: 59,
        names: &[],
        first_name_value: 0,
    },
    Field {
        what: "hours",
        min: 0,
        max: 23,
        names: &[],
        first_name_value: 0,
    },
    Field {
        what: "day of month",
        min: 1,
        max: 31,
        names: &[],
        first_name_value: 0,
    },
    Field {
        what: "month",
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        first_name_value: 1,
    },
    Field {
        // 0 and 7 are both Sunday, as in classic cron.
        what: "day of week",
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        first_name_value: 0,
    },
];

/// Checks a six-field cron schedule (`sec min hour dom mon dow`) and returns one
/// message per bad field (empty when it is sound). A schedule is sound when every
/// field passes the field checks (which name the field and what is wrong) *and*
/// [`Schedule::parse`] reads it, so check-config never accepts a schedule the
/// scheduler would refuse.
pub fn check_schedule(schedule: &str) -> Vec<String> {
    let parts: Vec<&str> = schedule.split_whitespace().collect();
    if parts.len() != 6 {
        return vec![format!(
            "has {} fields; kinlink schedules have six (`sec min hour dom mon dow`)",
            parts.len()
        )];
    }
    let problems: Vec<String> = parts
        .iter()
        .zip(FIELDS.iter())
        .filter_map(|(part, field)| {
            check_field(part, field)
                .err()
                .map(|e| format!("{} field {part:?}: {e}", field.what))
        })
        .collect();
    if !problems.is_empty() {
        return problems;
    }
    match Schedule::parse(schedule) {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("the scheduler cannot read it: {}", e.reason)],
    }
}

fn check_field(text: &str, field: &Field) -> Result<(), String> {
    for element in text.split(',') {
        if element.is_empty() {
            return Err("has an empty list element".into());
        }
        let (base, step) = match element.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (element, None),
        };
        if let Some(step) = step {
            let n: u32 = step
                .parse()
                .map_err(|_| format!("step {step:?} is not a whole number"))?;
            if n == 0 || n > field.max.max(1) {
                return Err(format!("step {n} must be from 1 to {}", field.max.max(1)));
            }
        }
        if base == "*" {
            continue;
        }
        match base.split_once('-') {
            Some((from, to)) => {
                let from = value(from, field)?;
                let to = value(to, field)?;
                if from > to {
                    return Err(format!("range {base:?} runs backwards"));
                }
            }
            None => {
                value(base, field)?;
            }
        }
    }
    Ok(())
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        if n < field.min || n > field.max {
            return Err(format!("{n} is out of range ({}-{})", field.min, field.max));
        }
        return Ok(n);
    }
    field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| i + field.first_name_value)
        .ok_or_else(|| {
            if field.names.is_empty() {
                format!(
                    "{text:?} is not a number from {} to {}",
                    field.min, field.max
                )
            } else {
                format!(
                    "{text:?} is neither a number from {} to {} nor one of {}",
                    field.min,
                    field.max,
                    field.names.join(" ")
                )
            }
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_schedule_the_scheduler_cannot_read_is_refused_by_the_check() {
        // Each field is in range, but croner reads `7/1` (a single number with a
        // step) as an error: check-config must say so, not the daemon at start.
        let problems = check_schedule("0 0 0 * * 7/1");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("the scheduler cannot read it"),
            "{problems:?}"
        );
    }

    proptest! {
        /// Whatever check-config accepts, the scheduler reads.
        #[test]
        fn every_schedule_the_check_accepts_parses(
            fields in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        Just("*".to_string()),
                        "[1-7]",
                        "[1-3]-[3-7]",
                        "[1-7]/[1-5]",
                        "\\*/[1-5]",
                        "[1-3]-[3-7]/[1-5]",
                        "(MON|SUN|JAN|MAR)(-(FRI|SAT|JUL))?",
                    ],
                    1..3,
                )
                .prop_map(|parts| parts.join(",")),
                6,
            ),
        ) {
            let text = fields.join(" ");
            if check_schedule(&text).is_empty() {
                prop_assert!(Schedule::parse(&text).is_ok(), "{}", text);
            }
        }
    }

    #[test]
    fn cron_fields_are_checked() {
        assert!(check_schedule("0 30 1 * * *").is_empty());
        assert!(check_schedule("0 0 7 * * MON-FRI").is_empty());
        assert!(check_schedule("0 0 8 * * mon").is_empty());
        assert!(check_schedule("0 0 3 * * SUN").is_empty());
        assert!(check_schedule("*/15 0-30/5 1,2,3 1-31 JAN-DEC 0-7").is_empty());
        assert!(check_schedule("0 0 12 1 jan,jul 7").is_empty());

        assert_eq!(check_schedule("0 30 1 * *").len(), 1);
        assert_eq!(check_schedule("0 30 1 * * * 2025").len(), 1);
        assert!(check_schedule("60 0 0 * * *")[0].contains("seconds"));
        assert!(check_schedule("0 0 24 * * *")[0].contains("hours"));
        assert!(check_schedule("0 0 0 0 * *")[0].contains("day of month"));
        assert!(check_schedule("0 0 0 * 13 *")[0].contains("month"));
        assert!(check_schedule("0 0 0 * * 8")[0].contains("day of week"));
        assert!(check_schedule("0 0 0 * * FUN")[0].contains("SUN MON"));
        assert!(check_schedule("0 0 0 * * FRI-MON")[0].contains("backwards"));
        assert!(check_schedule("*/0 0 0 * * *")[0].contains("step"));
        assert!(check_schedule("0 0 1,,2 * * *")[0].contains("empty"));
        assert!(check_schedule("0 0 ? * * *")[0].contains("hours"));
        // every bad field is named, not only the first
        assert_eq!(check_schedule("99 99 99 * * *").len(), 3);
    }
}
