//! The one place that reads the wall clock. Everything else asks a [`Clock`], so
//! tests and `--as-of` runs are deterministic (clippy's `disallowed-methods` bans
//! `Utc::now` and `SystemTime::now` elsewhere).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

/// "Now" for a run: the system clock, or a fixed instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock { fixed: Some(at) }
    }

    /// The current instant.
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    /// Today's date in `tz` (Europe/London for a council).
    pub fn today(&self, tz: Tz) -> NaiveDate {
        self.now().with_timezone(&tz).date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn today_is_the_local_date() {
        // 23:30 UTC on 1 July is 00:30 on 2 July in London (BST).
        let c = Clock::fixed(Utc.with_ymd_and_hms(2025, 7, 1, 23, 30, 0).unwrap());
        assert_eq!(
            c.today(chrono_tz::Europe::London),
            NaiveDate::from_ymd_opt(2025, 7, 2).unwrap()
        );
        // In winter London is on UTC.
        let c = Clock::fixed(Utc.with_ymd_and_hms(2025, 1, 1, 23, 30, 0).unwrap());
        assert_eq!(
            c.today(chrono_tz::Europe::London),
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
        );
    }
}
