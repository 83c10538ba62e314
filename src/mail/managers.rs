//! The managers' weekly digest (`kinlink send --manager-digest`, the
//! `weekly-managers` job): per locality, the cases flagged `closed_too_early` this
//! week or still open, and the re-referral rate of the last 12 months as a small
//! chart (a PNG inline through its Content-ID) with the same figures as a table.
//!
//! A re-referral is a child's referral within 365 days of an earlier referral of the
//! same child (docs/domain.md §9.11, the Children in Need census definition); the rate of
//! a month is its re-referrals over its referrals, for cases whose case-system
//! locality is the locality. Like every digest it carries references (F12), never
//! a name.
//!
//! Invariant: one email per manager, locality and ISO week (its idempotency key),
//! however often the job runs that week.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use super::digest::{human_date, Renderer};
use super::{chart, compose, InlineImage, MailError, Mailer, OutgoingMessage};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::rules::Severity;
use crate::domain::RunMode;
use crate::store::{ClosedTooEarly, Referral, Store};

const TEXT_TEMPLATE: &str = include_str!("../../config/templates/managers.txt");
const HTML_TEMPLATE: &str = include_str!("../../config/templates/managers.html");

/// Days within which a referral of the same child counts as a re-referral.
pub const RE_REFERRAL_DAYS: i64 = 365;

/// One month of the rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthRate {
    /// `Mar 2025`.
    pub month: String,
    pub referrals: usize,
    pub re_referrals: usize,
    /// `None` when the month had no referral.
    pub rate: Option<f64>,
    /// `12.5%`, or `–`.
    pub rate_text: String,
    /// The fixed-width line of the text table.
    pub row: String,
}

/// What the managers' pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManagerRun {
    /// Emails composed: one per manager of each locality.
    pub digests: usize,
    /// Newly stored (a second run in the same week stores none).
    pub stored: usize,
}

fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn add_months(d: NaiveDate, n: i32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + n;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).unwrap_or(d)
}

fn rate_text(re: usize, all: usize) -> (Option<f64>, String) {
    if all == 0 {
        (None, "–".to_string())
    } else {
        let r = re as f64 / all as f64;
        (Some(r), format!("{:.1}%", r * 100.0))
    }
}

fn row(month: &str, referrals: usize, re: usize, rate: &str) -> String {
    format!("{month:<11} {referrals:>9}  {re:>12}  {rate:>5}")
}

/// The first day of the earliest month shown on `today`, less the look-back a
/// re-referral needs: read referrals from here.
pub fn history_start(today: NaiveDate) -> NaiveDate {
    add_months(month_start(today), -11) - Duration::days(RE_REFERRAL_DAYS)
}

/// The re-referral rate of each of the 12 months up to `today`'s, oldest first,
/// and the total, for referrals in `locality` (case-insensitive). Pure.
pub fn re_referral_rates(
    referrals: &[Referral],
    locality: &str,
    today: NaiveDate,
) -> (Vec<MonthRate>, MonthRate) {
    let first = add_months(month_start(today), -11);
    // Each child's referrals (one per case), oldest first; any locality counts as
    // the earlier referral, since a family may move.
    let mut by_person: HashMap<&str, Vec<(NaiveDate, &str)>> = HashMap::new();
    for r in referrals {
        by_person
            .entry(r.person.as_str())
            .or_default()
            .push((r.referral_date, r.case.as_str()));
    }
    for v in by_person.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    let mut counts = [(0usize, 0usize); 12];
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in referrals {
        if !r
            .locality
            .as_deref()
            .is_some_and(|l| l.trim().eq_ignore_ascii_case(locality))
        {
            continue;
        }
        if r.referral_date < first || r.referral_date > today {
            continue;
        }
        // A child counted once per case.
        let key = (r.person.as_str(), r.case.as_str());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let m = (r.referral_date.year() - first.year()) * 12 + r.referral_date.month0() as i32
            - first.month0() as i32;
        let Ok(m) = usize::try_from(m) else { continue };
        let Some(slot) = counts.get_mut(m) else {
            continue;
        };
        slot.0 += 1;
        let earlier = by_person.get(r.person.as_str()).is_some_and(|v| {
            v.iter().any(|(d, case)| {
                *case != r.case
                    && *d < r.referral_date
                    && (r.referral_date - *d).num_days() <= RE_REFERRAL_DAYS
            })
        });
        if earlier {
            slot.1 += 1;
        }
    }
    let months: Vec<MonthRate> = counts
        .iter()
        .enumerate()
        .map(|(i, &(all, re))| {
            let month = add_months(first, i as i32).format("%b %Y").to_string();
            let (rate, text) = rate_text(re, all);
            MonthRate {
                row: row(&month, all, re, &text),
                month,
                referrals: all,
                re_referrals: re,
                rate,
                rate_text: text,
            }
        })
        .collect();
    let all: usize = counts.iter().map(|c| c.0).sum();
    let re: usize = counts.iter().map(|c| c.1).sum();
    let (rate, text) = rate_text(re, all);
    let total = MonthRate {
        row: row("Total", all, re, &text),
        month: "Total".to_string(),
        referrals: all,
        re_referrals: re,
        rate,
        rate_text: text,
    };
    (months, total)
}

#[derive(Debug, Serialize)]
struct Warning {
    label: String,
    colour: String,
    family: String,
    raised: String,
    status: String,
    explanation: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Context<'a> {
    subject: &'a str,
    title: String,
    summary: String,
    locality: &'a str,
    warnings: Vec<Warning>,
    months: &'a [MonthRate],
    total: &'a MonthRate,
    header_row: String,
    chart_cid: &'a str,
    chart_alt: String,
    footer: String,
}

/// The managers' digest of one locality: (subject, text, HTML, chart PNG). Pure
/// apart from drawing the chart.
pub fn render(
    renderer: &Renderer,
    locality: &str,
    warnings: &[ClosedTooEarly],
    referrals: &[Referral],
    today: NaiveDate,
    timezone: chrono_tz::Tz,
) -> Result<(String, String, String, Vec<u8>), MailError> {
    let (months, total) = re_referral_rates(referrals, locality, today);
    let mine: Vec<&ClosedTooEarly> = warnings
        .iter()
        .filter(|w| {
            w.locality
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(locality))
        })
        .collect();
    let urgent = mine.iter().filter(|w| w.severity == "urgent").count();
    let mut subject = format!(
        "Weekly summary for {locality}: {} re-referral {}",
        mine.len(),
        if mine.len() == 1 {
            "warning"
        } else {
            "warnings"
        }
    );
    if urgent > 0 {
        subject.push_str(&format!(" — {urgent} urgent"));
    }
    let last = months.last();
    let summary = format!(
        "{} cases flagged as closed too early; re-referral rate {} over the last 12 months ({} of {} referrals){}.",
        mine.len(),
        total.rate_text,
        total.re_referrals,
        total.referrals,
        months
            .iter()
            .rev()
            .find(|m| m.rate.is_some())
            .map_or(String::new(), |m| format!("; {} in {}", m.rate_text, m.month))
    );
    let chart_alt = format!(
        "Line chart of the monthly re-referral rate in {locality} from {} to {}; the table below gives every figure.",
        months.first().map_or("", |m| m.month.as_str()),
        last.map_or("", |m| m.month.as_str())
    );
    let png = chart::rate_chart(&months.iter().map(|m| m.rate).collect::<Vec<_>>())?;
    let chart_cid = "rereferral-chart";
    let ctx = Context {
        subject: &subject,
        title: format!("Weekly summary for {locality}, {}", human_date(today)),
        summary,
        locality,
        warnings: mine
            .iter()
            .map(|w| {
                let severity = Severity::parse(&w.severity).unwrap_or(Severity::Info);
                let (label, colour) = match severity {
                    Severity::Urgent => ("URGENT", "#b42318"),
                    Severity::Priority => ("PRIORITY", "#b54708"),
                    Severity::Info => ("FOR INFORMATION", "#1d4ed8"),
                };
                Warning {
                    label: label.into(),
                    colour: colour.into(),
                    family: w
                        .family_id
                        .map_or_else(|| format!("A{}", w.alert_id), |f| format!("F{f}")),
                    raised: human_date(w.raised_at.with_timezone(&timezone).date_naive()),
                    status: w.status.clone(),
                    explanation: w.explanation.clone(),
                }
            })
            .collect(),
        months: &months,
        total: &total,
        header_row: format!(
            "{:<11} {:>9}  {:>12}  {:>5}",
            "Month", "Referrals", "Re-referrals", "Rate"
        ),
        chart_cid,
        chart_alt,
        footer: "You get this every Monday as a manager of this locality in kinlink's config. Families are shown by reference only: look them up in the case system.".to_string(),
    };
    let text = renderer.render("managers.txt", &ctx)?;
    let html = renderer.render("managers.html", &ctx)?;
    Ok((subject, text, html, png))
}

/// Composes and stores the managers' digest of every locality with managers.
pub async fn enqueue_manager_digests(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    mode: RunMode,
) -> Result<ManagerRun, MailError> {
    let now = clock.now();
    let today = clock.today(settings.timezone);
    let warnings = store
        .closed_too_early_alerts(now - Duration::days(7))
        .await?;
    let referrals = store.child_referrals(history_start(today)).await?;
    let mut renderer = Renderer::new()?;
    renderer.add("managers.txt", TEXT_TEMPLATE)?;
    renderer.add("managers.html", HTML_TEMPLATE)?;
    let week = today.iso_week();
    let sender = mailer.from.email.to_string();
    let mut run = ManagerRun::default();
    for locality in settings
        .localities
        .iter()
        .filter(|l| !l.managers.is_empty())
    {
        let (subject, text, html, png) = render(
            &renderer,
            &locality.name,
            &warnings,
            &referrals,
            today,
            settings.timezone,
        )?;
        for manager in &locality.managers {
            run.digests += 1;
            if mode.is_dry_run() {
                continue;
            }
            let message = OutgoingMessage {
                idempotency_key: format!(
                    "managers:{manager}:{}:{}-W{:02}",
                    locality.name,
                    week.year(),
                    week.week()
                ),
                to: vec![manager.clone()],
                subject: subject.clone(),
                text: text.clone(),
                html: Some(html.clone()),
                inline_images: vec![InlineImage {
                    content_id: "rereferral-chart".into(),
                    png: png.clone(),
                }],
            };
            let composed = compose::compose(&mailer.from, &message, now)?;
            let stored = store
                .enqueue_outbox(&composed.outbox(&message, &sender, now))
                .await?;
            if stored.created {
                run.stored += 1;
            }
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn referral(person: &str, case: &str, date: &str, locality: &str) -> Referral {
        Referral {
            person: person.into(),
            case: case.into(),
            referral_date: d(date),
            locality: Some(locality.into()),
        }
    }

    #[test]
    fn a_referral_within_365_days_of_the_same_childs_earlier_one_is_a_re_referral() {
        let today = d("2025-03-10");
        let referrals = vec![
            // P1: referred in 2024-06, again in 2025-03 (within a year): re-referral.
            referral("P1", "c1", "2024-06-01", "North"),
            referral("P1", "c2", "2025-03-02", "North"),
            // P2: earlier referral more than 365 days before: not a re-referral.
            referral("P2", "c3", "2023-01-01", "South"),
            referral("P2", "c4", "2025-03-05", "North"),
            // P3: one referral in the window; P4 in another locality.
            referral("P3", "c5", "2025-01-15", "North"),
            referral("P4", "c6", "2025-01-15", "South"),
        ];
        let (months, total) = re_referral_rates(&referrals, "north", today);
        assert_eq!(months.len(), 12);
        assert_eq!(months[0].month, "Apr 2024");
        assert_eq!(months[11].month, "Mar 2025");
        let june = months.iter().find(|m| m.month == "Jun 2024").unwrap();
        assert_eq!((june.referrals, june.re_referrals), (1, 0));
        let march = &months[11];
        assert_eq!((march.referrals, march.re_referrals), (2, 1));
        assert_eq!(march.rate_text, "50.0%");
        let jan = months.iter().find(|m| m.month == "Jan 2025").unwrap();
        assert_eq!((jan.referrals, jan.re_referrals), (1, 0));
        assert_eq!(months[1].rate, None);
        assert_eq!(months[1].rate_text, "–");
        assert_eq!((total.referrals, total.re_referrals), (4, 1));
        assert_eq!(total.rate_text, "25.0%");
    }

    #[test]
    fn history_reaches_back_a_year_before_the_first_month() {
        assert_eq!(history_start(d("2025-03-10")), d("2023-04-02"));
    }
}
