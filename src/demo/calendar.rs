//! A simple, fixed English school calendar for the fictional borough: weekdays, less
//! Christmas, Easter, summer and three half-term weeks computed by rule (so that the
//! same `as_of` always gives the same school days, with no table to maintain).

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// The Monday of the week (Mon–Sun) that contains `d`.
fn monday_of(d: NaiveDate) -> NaiveDate {
    d - Days::new(u64::from(d.weekday().num_days_from_monday()))
}

/// Easter Sunday (anonymous Gregorian algorithm).
fn easter(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// Whether `d` falls in the Mon–Fri week starting on `monday`.
fn in_week(d: NaiveDate, monday: NaiveDate) -> bool {
    d >= monday && d <= monday + Days::new(4)
}

/// Whether the borough's schools are open on `d`.
pub fn is_school_day(d: NaiveDate) -> bool {
    if matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
        return false;
    }
    let (y, m, day) = (d.year(), d.month(), d.day());
    // Summer holiday and Christmas.
    if (m == 7 && day >= 23) || m == 8 || (m == 12 && day >= 21) || (m == 1 && day <= 3) {
        return false;
    }
    // October half-term: the last full Mon–Fri week of October.
    if m == 10 {
        if let Some(last) = NaiveDate::from_ymd_opt(y, 10, 31) {
            let mut monday = monday_of(last);
            if monday + Days::new(4) > last {
                monday = monday - Days::new(7);
            }
            if in_week(d, monday) {
                return false;
            }
        }
    }
    // February half-term (the week of 14 Feb) and May half-term (the week of 31 May).
    for (hm, hd) in [(2, 14), (5, 31)] {
        if let Some(anchor) = NaiveDate::from_ymd_opt(y, hm, hd) {
            if in_week(d, monday_of(anchor)) {
                return false;
            }
        }
    }
    // Easter: Holy Week and the week after Easter Sunday.
    if let Some(sunday) = easter(y) {
        let holy_monday = sunday - Days::new(6);
        if in_week(d, holy_monday) || in_week(d, sunday + Days::new(1)) {
            return false;
        }
    }
    // Early May bank holiday: the first Monday of May.
    if m == 5 && d.weekday() == Weekday::Mon && day <= 7 {
        return false;
    }
    true
}

/// The `n` school days strictly before `as_of`, oldest first.
pub fn school_days_before(as_of: NaiveDate, n: usize) -> Vec<NaiveDate> {
    let mut days = Vec::with_capacity(n);
    let mut d = as_of;
    // A school year never has a gap longer than the summer holiday, so 400 days back
    // always finds enough; the bound keeps this loop finite whatever the input.
    for _ in 0..(n * 7 + 400) {
        if days.len() == n {
            break;
        }
        match d.pred_opt() {
            Some(p) => d = p,
            None => break,
        }
        if is_school_day(d) {
            days.push(d);
        }
    }
    days.reverse();
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_dates_are_right() {
        assert_eq!(easter(2025), Some(ymd(2025, 4, 20)));
        assert_eq!(easter(2026), Some(ymd(2026, 4, 5)));
        assert_eq!(easter(2024), Some(ymd(2024, 3, 31)));
    }

    #[test]
    fn holidays_and_weekends_are_skipped() {
        assert!(is_school_day(ymd(2025, 3, 4)));
        assert!(!is_school_day(ymd(2025, 3, 8))); // Saturday
        assert!(!is_school_day(ymd(2025, 2, 14))); // February half-term
        assert!(!is_school_day(ymd(2025, 2, 10)));
        assert!(is_school_day(ymd(2025, 2, 17)));
        assert!(!is_school_day(ymd(2025, 10, 27))); // last full week of October 2025
        assert!(!is_school_day(ymd(2025, 10, 31)));
        assert!(is_school_day(ymd(2025, 10, 24)));
        assert!(!is_school_day(ymd(2025, 4, 22))); // Easter week
        assert!(!is_school_day(ymd(2025, 8, 12)));
    }

    #[test]
    fn school_days_are_counted_back_from_as_of() {
        let days = school_days_before(ymd(2025, 3, 10), 20);
        assert_eq!(days.len(), 20);
        assert_eq!(days.last(), Some(&ymd(2025, 3, 7)));
        assert!(days.windows(2).all(|w| w[0] < w[1]));
        assert!(days.iter().all(|&d| is_school_day(d)));
        // The half-term week of 10–14 Feb 2025 is inside the span and skipped.
        assert!(!days.contains(&ymd(2025, 2, 12)));
        assert_eq!(days[0], ymd(2025, 2, 3));
    }
}
