//! Value parsers shared by every format: dates and datetimes (ISO, UK day-first,
//! `D-Mon-YYYY`, Excel serials in the 1900 and 1904 systems), Europe/London local
//! time to UTC, text normalisation and spreadsheet numbers as text.
//!
//! The common ISO and UK shapes are parsed by hand from bytes: this sits on the
//! CSV fast path (over a million rows a second), where going through chrono's
//! format parser for every cell would dominate. Month-first (US) dates are never
//! tried, because `03/04/2025` read the wrong way round still looks valid.

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Europe::London;

/// What a date column accepts, for error messages.
pub const DATE_FORMS: &str =
    "YYYY-MM-DD, DD/MM/YYYY (day first), D-Mon-YYYY or an Excel date serial";

/// What a datetime column accepts, for error messages.
pub const DATETIME_FORMS: &str =
    "a date (YYYY-MM-DD, DD/MM/YYYY day first, D-Mon-YYYY) optionally followed by HH:MM[:SS]";

/// The largest serial Excel can hold (9999-12-31).
const MAX_SERIAL: f64 = 2_958_465.0;

/// Days between the 1900 and 1904 epochs.
const EPOCH_1904_OFFSET: f64 = 1462.0;

/// A parsed date with an optional time and an optional explicit UTC offset in
/// seconds (`Z`, `+01:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    date: NaiveDate,
    time: Option<NaiveTime>,
    offset_secs: Option<i32>,
}

/// Parses a date. A datetime is accepted too and its date part kept (exports often
/// write a date of birth as `04/03/2025 00:00:00`); the date is never shifted
/// through UTC. A plain number is read as an Excel serial in the 1900 system.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let t = s.trim();
    if let Some(p) = parse_parts(t) {
        return Ok(p.date);
    }
    if let Some(dt) = text_serial(t) {
        return Ok(dt.date());
    }
    Err(format!("{t:?} is not a date (expected {DATE_FORMS})"))
}

/// Parses a datetime. Without an explicit zone the text is Europe/London wall-clock
/// time (see [`london_to_utc`]); a date alone means 00:00 local that day.
pub fn parse_datetime(s: &str) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Some(p) = parse_parts(t) {
        let local = p.date.and_time(p.time.unwrap_or(NaiveTime::MIN));
        return Ok(match p.offset_secs {
            Some(off) => Utc.from_utc_datetime(&(local - chrono::Duration::seconds(off.into()))),
            None => london_to_utc(local),
        });
    }
    if let Some(dt) = text_serial(t) {
        return Ok(london_to_utc(dt));
    }
    Err(format!(
        "{t:?} is not a date or datetime (expected {DATETIME_FORMS})"
    ))
}

/// Europe/London wall-clock time to an instant.
///
/// - In the October fold (01:00–01:59 happens twice) the **earlier** instant is
///   taken (the BST reading), so an incident is never placed later than it could
///   have happened.
/// - In the March gap (01:00–01:59 does not exist) the time is read with the offset
///   in force just before the gap (GMT), which lands the same distance **after** the
///   gap: `01:30` becomes 01:30 UTC = 02:30 BST. This is what java.time and
///   Temporal's "compatible" disambiguation do.
pub fn london_to_utc(local: NaiveDateTime) -> DateTime<Utc> {
    match London.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        chrono::LocalResult::None => {
            // Offset just before the gap: three hours earlier is outside any
            // London transition window.
            let before = local - chrono::Duration::hours(3);
            let offset = match London.from_local_datetime(&before) {
                chrono::LocalResult::Single(t) => t.offset().fix().local_minus_utc(),
                chrono::LocalResult::Ambiguous(a, _) => a.offset().fix().local_minus_utc(),
                chrono::LocalResult::None => 0,
            };
            Utc.from_utc_datetime(&(local - chrono::Duration::seconds(offset.into())))
        }
    }
}

/// An Excel serial date (days since the epoch, fraction = time of day) to a naive
/// datetime. 1900 system: 1 = 1900-01-01, 60 is the non-existent 1900-02-29 of the
/// Lotus bug (an error here), 61 = 1900-03-01. 1904 system: 0 = 1904-01-01.
/// Negative, non-finite and beyond-9999 serials are errors.
pub fn excel_serial(serial: f64, is_1904: bool) -> Option<NaiveDateTime> {
    if !serial.is_finite() || serial < 0.0 {
        return None;
    }
    let s = if is_1904 {
        serial + EPOCH_1904_OFFSET
    } else {
        serial
    };
    if !(1.0..MAX_SERIAL + 1.0).contains(&s) {
        return None;
    }
    let whole = s.floor();
    if whole == 60.0 && !is_1904 {
        return None;
    }
    // Serials before the phantom leap day count from 1899-12-31; after it from
    // 1899-12-30 (the bug's extra day).
    let base = if whole < 60.0 {
        NaiveDate::from_ymd_opt(1899, 12, 31)?
    } else {
        NaiveDate::from_ymd_opt(1899, 12, 30)?
    };
    let mut date = base.checked_add_days(Days::new(whole as u64))?;
    // Round to the second: Excel stores milliseconds, and a float 23:59:59.9996
    // must not become 24:00:00 of the same day.
    let mut secs = ((s - whole) * 86_400.0).round() as u32;
    if secs >= 86_400 {
        secs = 0;
        date = date.checked_add_days(Days::new(1))?;
    }
    let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?;
    Some(date.and_time(time))
}

/// Text that is a plain number in Excel's range, read as a 1900-system serial (a
/// CSV saved from a sheet whose date column lost its format).
fn text_serial(t: &str) -> Option<NaiveDateTime> {
    let b = t.as_bytes();
    if b.is_empty() || b.len() > 16 || !b[0].is_ascii_digit() {
        return None;
    }
    if !b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return None;
    }
    let f: f64 = t.parse().ok()?;
    excel_serial(f, false)
}

/// Splits `date[ T]time[zone]` and parses both parts.
fn parse_parts(t: &str) -> Option<Parsed> {
    let b = t.as_bytes();
    let (date, rest) = parse_date_part(b)?;
    if rest.is_empty() {
        return Some(Parsed {
            date,
            time: None,
            offset_secs: None,
        });
    }
    let rest = match rest[0] {
        b'T' | b't' => &rest[1..],
        b' ' => trim_start(rest),
        _ => return None,
    };
    let (time, rest) = parse_time_part(rest)?;
    let offset_secs = parse_zone(rest)?;
    Some(Parsed {
        date,
        time: Some(time),
        offset_secs,
    })
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Reads up to `max` ASCII digits; returns the value and how many were read.
fn digits(b: &[u8], max: usize) -> (u32, usize) {
    let mut v = 0u32;
    let mut n = 0;
    while n < max && n < b.len() && b[n].is_ascii_digit() {
        v = v * 10 + u32::from(b[n] - b'0');
        n += 1;
    }
    (v, n)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const MONTH_NAMES: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A month name: the three-letter abbreviation, `Sept`, or the full name.
fn month_from_name(name: &[u8]) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let lower = std::str::from_utf8(&lower).ok()?;
    if lower == "sept" {
        return Some(9);
    }
    MONTHS
        .iter()
        .zip(MONTH_NAMES.iter())
        .position(|(short, long)| lower == *short || lower == *long)
        .map(|i| i as u32 + 1)
}

/// The date at the start of `b` and what follows it.
fn parse_date_part(b: &[u8]) -> Option<(NaiveDate, &[u8])> {
    let (first, n1) = digits(b, 4);
    if n1 == 0 {
        return None;
    }
    let sep = *b.get(n1)?;
    if n1 == 4 && sep == b'-' {
        // ISO YYYY-MM-DD (also single-digit month and day).
        let rest = &b[n1 + 1..];
        let (m, n2) = digits(rest, 2);
        if n2 == 0 || rest.get(n2) != Some(&b'-') {
            return None;
        }
        let rest = &rest[n2 + 1..];
        let (d, n3) = digits(rest, 2);
        if n3 == 0 {
            return None;
        }
        let date = NaiveDate::from_ymd_opt(first as i32, m, d)?;
        return Some((date, &rest[n3..]));
    }
    if n1 > 2 {
        return None;
    }
    let day = first;
    match sep {
        b'/' => {
            // UK DD/MM/YYYY, day first always.
            let rest = &b[n1 + 1..];
            let (m, n2) = digits(rest, 2);
            if n2 == 0 || rest.get(n2) != Some(&b'/') {
                return None;
            }
            let rest = &rest[n2 + 1..];
            let (y, n3) = digits(rest, 4);
            // Two-digit years are refused: 04/03/25 could be 1925 or 2025, and a
            // wrong century on a date of birth is worse than a quarantined row.
            if n3 != 4 {
                return None;
            }
            let date = NaiveDate::from_ymd_opt(y as i32, m, day)?;
            Some((date, &rest[n3..]))
        }
        b'-' | b' ' => {
            // D-Mon-YYYY / D Mon YYYY.
            let rest = &b[n1 + 1..];
            let letters = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            if letters < 3 || rest.get(letters) != Some(&sep) {
                return None;
            }
            let m = month_from_name(&rest[..letters])?;
            let rest = &rest[letters + 1..];
            let (y, n3) = digits(rest, 4);
            if n3 != 4 {
                return None;
            }
            let date = NaiveDate::from_ymd_opt(y as i32, m, day)?;
            Some((date, &rest[n3..]))
        }
        _ => None,
    }
}

/// `HH:MM[:SS[.fraction]]` at the start of `b` and what follows it. The fraction
/// (Wonde writes microseconds) is dropped: incident times are minutes at best.
fn parse_time_part(b: &[u8]) -> Option<(NaiveTime, &[u8])> {
    let (h, n1) = digits(b, 2);
    if n1 == 0 || b.get(n1) != Some(&b':') {
        return None;
    }
    let rest = &b[n1 + 1..];
    let (m, n2) = digits(rest, 2);
    if n2 != 2 {
        return None;
    }
    let mut rest = &rest[n2..];
    let mut sec = 0;
    if rest.first() == Some(&b':') {
        let (s, n3) = digits(&rest[1..], 2);
        if n3 != 2 {
            return None;
        }
        sec = s;
        rest = &rest[1 + n3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            rest = &rest[1 + n..];
        }
    }
    let time = NaiveTime::from_hms_opt(h, m, sec)?;
    Some((time, rest))
}

/// An optional zone suffix: nothing (local), `Z`, `UTC`/`GMT`, or `±HH:MM` / `±HHMM`.
/// `Some(None)` = no zone; `None` = not a zone (the text is not a datetime).
fn parse_zone(b: &[u8]) -> Option<Option<i32>> {
    let b = trim_start(b);
    if b.is_empty() {
        return Some(None);
    }
    if b.eq_ignore_ascii_case(b"z") || b.eq_ignore_ascii_case(b"utc") {
        return Some(Some(0));
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &b[1..];
    let (h, n1) = digits(rest, 2);
    if n1 != 2 {
        return None;
    }
    let rest = &rest[2..];
    let rest = rest.strip_prefix(b":").unwrap_or(rest);
    let (m, n2) = digits(rest, 2);
    if n2 != 2 || rest.len() != 2 || h > 14 || m > 59 {
        return None;
    }
    Some(Some(sign * (h as i32 * 3600 + m as i32 * 60)))
}

/// Trims and collapses inner whitespace to one space; `None` when nothing is left.
pub fn clean(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    // Fast path (almost every cell): ASCII with no control characters and no run
    // of spaces needs no rewriting.
    let b = t.as_bytes();
    let simple = b.iter().all(|&c| (0x21..0x7f).contains(&c) || c == b' ')
        && !b.windows(2).any(|w| w == b"  ");
    if simple {
        return Some(t.to_string());
    }
    Some(t.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A spreadsheet or JSON number as text: integral values without a fraction
/// (a URN read as `100001.0` becomes `100001`), others in shortest form.
pub fn number_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A naive datetime as text for `raw` and text columns: the date alone at
/// midnight, else ISO with seconds.
pub fn datetime_text(dt: NaiveDateTime) -> String {
    if dt.time() == NaiveTime::MIN {
        dt.date().format("%Y-%m-%d").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn dates_in_every_accepted_form() {
        assert_eq!(parse_date("2025-03-04"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date(" 2025-3-4 "), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("04/03/2025"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("4/3/2025"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("4-Mar-2025"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("04-mar-2025"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("4 March 2025"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("4-Sept-2025"), Ok(d(2025, 9, 4)));
        assert_eq!(parse_date("45658"), Ok(d(2025, 1, 1)));
        assert_eq!(parse_date("2002-09-29 00:00:00.000000"), Ok(d(2002, 9, 29)));
        assert_eq!(parse_date("04/03/2025 00:00:00"), Ok(d(2025, 3, 4)));
        assert_eq!(parse_date("2025-03-04T23:40"), Ok(d(2025, 3, 4)));
    }

    #[test]
    fn uk_dates_are_day_first_always() {
        assert_eq!(parse_date("03/04/2025"), Ok(d(2025, 4, 3)));
        assert_eq!(parse_date("12/01/2025"), Ok(d(2025, 1, 12)));
        // Month 13 does not exist: a US-format date is not silently swapped.
        assert!(parse_date("01/13/2025").is_err());
    }

    #[test]
    fn bad_dates_are_errors_that_say_what_was_expected() {
        for bad in [
            "",
            "31/02/2025",
            "2025-13-01",
            "04/03/25",
            "4-Foo-2025",
            "yesterday",
            "2025/03/04",
            "04/03/2025 25:00",
            "2025-03-04X",
            "0",
            "60",
            "99999999",
        ] {
            let err = parse_date(bad).unwrap_err();
            assert!(err.contains("DD/MM/YYYY"), "{bad}: {err}");
        }
    }

    #[test]
    fn excel_serials_in_both_systems() {
        let midnight = |y, m, day| d(y, m, day).and_time(NaiveTime::MIN);
        assert_eq!(excel_serial(1.0, false), Some(midnight(1900, 1, 1)));
        assert_eq!(excel_serial(59.0, false), Some(midnight(1900, 2, 28)));
        assert_eq!(excel_serial(60.0, false), None, "the Lotus 1900-02-29");
        assert_eq!(excel_serial(61.0, false), Some(midnight(1900, 3, 1)));
        assert_eq!(excel_serial(45658.0, false), Some(midnight(2025, 1, 1)));
        assert_eq!(excel_serial(0.0, true), Some(midnight(1904, 1, 1)));
        assert_eq!(
            excel_serial(45658.0 - 1462.0, true),
            Some(midnight(2025, 1, 1))
        );
        assert_eq!(
            excel_serial(45658.75, false),
            Some(d(2025, 1, 1).and_hms_opt(18, 0, 0).unwrap())
        );
        assert_eq!(
            excel_serial(45_658.999_999_9, false),
            Some(midnight(2025, 1, 2)),
            "rounding up to midnight moves to the next day"
        );
        assert_eq!(excel_serial(-1.0, false), None);
        assert_eq!(excel_serial(f64::NAN, false), None);
        assert_eq!(excel_serial(3e6, false), None);
    }

    #[test]
    fn datetimes_are_london_local_time() {
        // Winter: GMT.
        assert_eq!(
            parse_datetime("2025-01-10 23:40").unwrap(),
            utc("2025-01-10T23:40:00Z")
        );
        // Summer: BST = UTC+1.
        assert_eq!(
            parse_datetime("04/07/2025 23:40").unwrap(),
            utc("2025-07-04T22:40:00Z")
        );
        assert_eq!(
            parse_datetime("2025-07-04T23:40:15").unwrap(),
            utc("2025-07-04T22:40:15Z")
        );
        // A date alone is local midnight.
        assert_eq!(
            parse_datetime("04/07/2025").unwrap(),
            utc("2025-07-03T23:00:00Z")
        );
        // Explicit zones are honoured.
        assert_eq!(
            parse_datetime("2025-07-04T23:40:00Z").unwrap(),
            utc("2025-07-04T23:40:00Z")
        );
        assert_eq!(
            parse_datetime("2025-07-04T23:40:00+02:00").unwrap(),
            utc("2025-07-04T21:40:00Z")
        );
        assert!(parse_datetime("2025-07-04 23:61").is_err());
        assert!(parse_datetime("2025-07-04 23:40 tomorrow").is_err());
    }

    #[test]
    fn the_october_fold_takes_the_earlier_instant() {
        // 2025-10-26 01:30 happens at 00:30 UTC (BST) and 01:30 UTC (GMT).
        assert_eq!(
            parse_datetime("26/10/2025 01:30").unwrap(),
            utc("2025-10-26T00:30:00Z")
        );
    }

    #[test]
    fn the_march_gap_moves_after_the_gap() {
        // 2025-03-30 01:30 does not exist; read with GMT it is 01:30 UTC = 02:30 BST.
        assert_eq!(
            parse_datetime("30/03/2025 01:30").unwrap(),
            utc("2025-03-30T01:30:00Z")
        );
        // Just outside the gap on either side.
        assert_eq!(
            parse_datetime("30/03/2025 00:59").unwrap(),
            utc("2025-03-30T00:59:00Z")
        );
        assert_eq!(
            parse_datetime("30/03/2025 02:00").unwrap(),
            utc("2025-03-30T01:00:00Z")
        );
    }

    #[test]
    fn text_is_trimmed_and_collapsed() {
        assert_eq!(
            clean("  Mary   Ann \t Smith "),
            Some("Mary Ann Smith".into())
        );
        assert_eq!(clean("Zoë"), Some("Zoë".into()));
        assert_eq!(clean(" \t "), None);
        assert_eq!(clean("a\nb"), Some("a b".into()));
    }

    #[test]
    fn numbers_become_integer_text_when_integral() {
        assert_eq!(number_text(100001.0), "100001");
        assert_eq!(number_text(10_000_000_123.0), "10000000123");
        assert_eq!(number_text(2.5), "2.5");
        assert_eq!(number_text(-3.0), "-3");
    }

    proptest! {
        #[test]
        fn date_parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_date(&s);
            let _ = parse_datetime(&s);
            let _ = clean(&s);
        }

        #[test]
        fn date_like_text_never_panics(s in "[0-9]{1,5}[-/ .:T]?[0-9A-Za-z]{0,9}[-/ ]?[0-9]{0,5}[ T]?[0-9:.+Z]{0,12}") {
            let _ = parse_date(&s);
            let _ = parse_datetime(&s);
        }

        #[test]
        fn iso_and_uk_forms_round_trip(days in 0i64..80_000) {
            let date = d(1900, 1, 1) + chrono::Duration::days(days);
            let iso = date.format("%Y-%m-%d").to_string();
            let uk = date.format("%d/%m/%Y").to_string();
            let mon = date.format("%-d-%b-%Y").to_string();
            prop_assert_eq!(parse_date(&iso), Ok(date));
            prop_assert_eq!(parse_date(&uk), Ok(date));
            prop_assert_eq!(parse_date(&mon), Ok(date));
            // ISO → date → UK text → date.
            let back = parse_date(&iso).unwrap().format("%d/%m/%Y").to_string();
            prop_assert_eq!(parse_date(&back), Ok(date));
        }

        #[test]
        fn serials_never_panic_and_stay_in_range(f in proptest::num::f64::ANY, is_1904 in any::<bool>()) {
            if let Some(dt) = excel_serial(f, is_1904) {
                prop_assert!(dt.date() >= d(1900, 1, 1));
            }
        }

        #[test]
        fn london_conversion_is_within_an_hour(secs in 0i64..(200 * 365 * 86_400)) {
            let local = d(1950, 1, 1).and_time(NaiveTime::MIN) + chrono::Duration::seconds(secs);
            let instant = london_to_utc(local);
            let diff = (local - instant.naive_utc()).num_minutes().abs();
            prop_assert!(diff <= 120, "{local} -> {instant}");
        }
    }
}
