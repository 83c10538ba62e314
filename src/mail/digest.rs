//! Digests: every delivery still pending becomes part of one email per recipient
//! per run — grouped by rule, most severe first — rendered from the templates in
//! `config/templates/` (plain text and HTML, simple tables with inline styles so
//! Outlook and a phone show the same thing) and stored in the outbox together with
//! the flip of its deliveries to `queued`.
//!
//! What an email may say about a person depends on `[mail] detail`:
//! - `minimal` (the default): the person reference (P34), initials and year of
//!   birth — no full name, no date of birth, no address;
//! - `standard`: full name and age in years — no date of birth, no address;
//! - `full`: full name, date of birth, address line and postcode.
//!
//! Every level carries the family reference (F12), the locality or school, the rule,
//! the dates, the records' agencies and ids (never an attendance record's key, which
//! may be built from a name) and the alert's explanation, which the rules write
//! without personal details.
//!
//! Invariant: a subject line is built from counts, rule names and the locality or
//! school name only — never from anything about a person.
//! Invariant: the idempotency key is `digest:<recipient>:<hash of the sorted
//! delivery ids>`, so composing the same deliveries again (a run that stopped
//! before its transaction committed, or two runs at once) stores one message.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use minijinja::value::Serde;
use minijinja::Environment;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{compose, MailError, Mailer, OutgoingMessage};
use crate::clock::Clock;
use crate::config::{DetailLevel, Settings};
use crate::domain::rules::{DeliveryKind, Role, RuleId, Severity};
use crate::domain::RunMode;
use crate::store::{DigestFact, PendingDelivery, PersonDetails, RecordInfo, Store};

const TEXT_TEMPLATE: &str = include_str!("../../config/templates/digest.txt");
const HTML_TEMPLATE: &str = include_str!("../../config/templates/digest.html");

/// What composing needs besides the store.
#[derive(Debug, Clone)]
pub struct DigestOptions {
    pub detail: DetailLevel,
    /// School URN → name, for the EWOs' digests.
    pub schools: HashMap<i64, String>,
    /// The run's date in the council's time zone (ages, headings).
    pub today: NaiveDate,
    pub timezone: chrono_tz::Tz,
}

impl DigestOptions {
    /// The options `settings` give on `today`.
    pub fn from_settings(settings: &Settings, today: NaiveDate) -> DigestOptions {
        DigestOptions {
            detail: settings.mail.detail,
            schools: settings
                .schools
                .iter()
                .map(|s| (i64::from(s.urn.get()), s.name.clone()))
                .collect(),
            today,
            timezone: settings.timezone,
        }
    }
}

/// One recipient's digest, ready to render.
#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    pub recipient: String,
    pub subject: String,
    pub title: String,
    pub summary: String,
    pub footer: String,
    pub groups: Vec<Group>,
    /// The deliveries it carries, sorted.
    #[serde(skip)]
    pub deliveries: Vec<i64>,
}

/// The items of one rule.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub rule: String,
    pub title: String,
    pub items: Vec<Item>,
}

/// One alert, as one recipient is told about it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub alert_id: i64,
    pub severity: String,
    /// `URGENT`, `PRIORITY` or `FOR INFORMATION`.
    pub label: String,
    /// The severity's colour in the HTML (white text on it passes WCAG AA).
    pub colour: String,
    /// An escalation of an alert this recipient was told about before.
    pub update: bool,
    pub headline: String,
    pub what: String,
    pub when: String,
    pub records: Vec<RecordLine>,
    pub people: Vec<String>,
    pub unrouted: Option<String>,
    pub why: String,
    pub explanation: Vec<String>,
    pub lookup: String,
}

/// A record behind an item: which agency holds it, and which one it is.
#[derive(Debug, Clone, Serialize)]
pub struct RecordLine {
    pub agency: String,
    pub text: String,
}

/// A digest rendered to text and HTML.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a compose pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DigestRun {
    /// Digests composed: one per recipient with pending deliveries.
    pub digests: usize,
    /// Deliveries they carry.
    pub deliveries: usize,
    /// Digests newly stored in the outbox (0 in a dry run).
    pub stored: usize,
    /// (recipient, subject) of each digest.
    pub subjects: Vec<(String, String)>,
}

/// Renders digests from the built-in templates.
pub struct Renderer {
    env: Environment<'static>,
}

impl Renderer {
    pub fn new() -> Result<Renderer, MailError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| MailError::Compose(format!("template syntax: {e}")))?;
        env.set_syntax(syntax);
        // The file extension turns HTML escaping on for the HTML template only.
        for (name, source) in [
            ("digest.txt", TEXT_TEMPLATE),
            ("digest.html", HTML_TEMPLATE),
        ] {
            env.add_template(name, source)
                .map_err(|e| MailError::Compose(format!("template {name}: {e}")))?;
        }
        Ok(Renderer { env })
    }

    /// Adds a template (the managers' and admin emails use the same environment).
    pub(super) fn add(
        &mut self,
        name: &'static str,
        source: &'static str,
    ) -> Result<(), MailError> {
        self.env
            .add_template(name, source)
            .map_err(|e| MailError::Compose(format!("template {name}: {e}")))
    }

    /// Renders a template with a serialisable context.
    pub(super) fn render<T: Serialize>(&self, name: &str, ctx: &T) -> Result<String, MailError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| MailError::Compose(format!("template {name}: {e}")))?;
        t.render(Serde(ctx))
            .map_err(|e| MailError::Compose(format!("rendering {name}: {e}")))
    }

    /// The digest as text and HTML.
    pub fn digest(&self, d: &Digest) -> Result<Rendered, MailError> {
        Ok(Rendered {
            subject: d.subject.clone(),
            text: self.render("digest.txt", d)?,
            html: self.render("digest.html", d)?,
        })
    }
}

/// The rule's name, singular and plural, as a subject line says it.
pub fn rule_title(rule: RuleId, n: usize) -> &'static str {
    let (one, many) = match rule {
        RuleId::DaNotification => ("DA notification", "DA notifications"),
        RuleId::AttendanceDrop => ("attendance drop", "attendance drops"),
        RuleId::EvictionRisk => ("eviction risk", "eviction risks"),
        RuleId::EmergingRisk => ("emerging risk", "emerging risks"),
        RuleId::ClosedTooEarly => ("re-referral warning", "re-referral warnings"),
    };
    if n == 1 {
        one
    } else {
        many
    }
}

/// What happened, in plain words.
fn rule_what(rule: RuleId) -> &'static str {
    match rule {
        RuleId::DaNotification => {
            "A police domestic-abuse notification involves a child, or an address where a child lives."
        }
        RuleId::AttendanceDrop => "A pupil's school attendance has fallen away.",
        RuleId::EvictionRisk => {
            "An eviction or possession notice was served on a household with children."
        }
        RuleId::EmergingRisk => {
            "A family shows several different risk signals and has no open case."
        }
        RuleId::ClosedTooEarly => {
            "A family's case was closed and a new signal or referral has arrived since."
        }
    }
}

/// Why it matters: the rule's reason.
fn rule_why(rule: RuleId) -> &'static str {
    match rule {
        RuleId::DaNotification => {
            "Children who live with domestic abuse need the school and the DV champion to know before the next school day (Operation Encompass)."
        }
        RuleId::AttendanceDrop => {
            "A fall in attendance is often the first sign that something is wrong at home; acting early stops it becoming persistent absence."
        }
        RuleId::EvictionRisk => {
            "A family with children at risk of losing its home is owed help to prevent homelessness, and the earlier the better."
        }
        RuleId::EmergingRisk => {
            "Several agencies each see part of the picture; together the signals suggest the family needs early help now."
        }
        RuleId::ClosedTooEarly => {
            "A new concern soon after a case closed is a re-referral: the case may have been closed too early."
        }
    }
}

fn agency(kind: &str) -> &'static str {
    match kind {
        "police_da" => "Police",
        "attendance" => "School",
        "housing" => "Housing",
        "assessment" => "Case system",
        _ => "Other",
    }
}

fn severity_label(s: Severity) -> (&'static str, &'static str) {
    match s {
        Severity::Urgent => ("URGENT", "#b42318"),
        Severity::Priority => ("PRIORITY", "#b54708"),
        Severity::Info => ("FOR INFORMATION", "#1d4ed8"),
    }
}

/// `4 Mar 2025`: day first and the month in words, so no reader can swap them.
pub fn human_date(d: NaiveDate) -> String {
    d.format("%-d %b %Y").to_string()
}

fn initial(s: Option<&str>) -> String {
    s.and_then(|s| s.trim().chars().next())
        .map(|c| format!("{}.", c.to_uppercase()))
        .unwrap_or_else(|| "?.".to_string())
}

/// How a person appears at a detail level (see the module doc).
pub fn person_line(
    id: i64,
    p: Option<&PersonDetails>,
    detail: DetailLevel,
    today: NaiveDate,
) -> String {
    let Some(p) = p else {
        return format!("P{id}");
    };
    let name = || {
        let n = [p.forename.as_deref(), p.surname.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        if n.is_empty() {
            "name not recorded".to_string()
        } else {
            n
        }
    };
    match detail {
        DetailLevel::Minimal => {
            let initials = format!(
                "{}{}",
                initial(p.forename.as_deref()),
                initial(p.surname.as_deref())
            );
            match p.dob {
                Some(dob) => format!("P{id} ({initials}, born {})", dob.format("%Y")),
                None => format!("P{id} ({initials})"),
            }
        }
        DetailLevel::Standard => match p.dob.and_then(|dob| today.years_since(dob)) {
            Some(age) => format!("P{id} {}, age {age}", name()),
            None => format!("P{id} {}", name()),
        },
        DetailLevel::Full => {
            let mut parts = vec![format!("P{id} {}", name())];
            if let Some(dob) = p.dob {
                parts.push(format!("born {}", human_date(dob)));
            }
            let address: Vec<&str> = [p.address_line1.as_deref(), p.postcode.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if !address.is_empty() {
                parts.push(address.join(", "));
            }
            parts.join(", ")
        }
    }
}

/// Everything read from the store for one compose pass.
#[derive(Debug, Clone, Default)]
pub struct DigestInput {
    pub deliveries: Vec<PendingDelivery>,
    pub facts: Vec<DigestFact>,
    pub persons: HashMap<i64, PersonDetails>,
    pub records: HashMap<(String, String), RecordInfo>,
}

impl DigestInput {
    /// Reads the pending deliveries and what their items show.
    pub async fn read(store: &Store) -> Result<DigestInput, MailError> {
        let deliveries = store.pending_deliveries().await?;
        if deliveries.is_empty() {
            return Ok(DigestInput::default());
        }
        let mut alerts: Vec<i64> = deliveries.iter().map(|d| d.alert_id).collect();
        alerts.sort_unstable();
        alerts.dedup();
        let facts = store.digest_facts(&alerts).await?;
        let mut persons: Vec<i64> = facts.iter().filter_map(|f| f.person_id).collect();
        persons.sort_unstable();
        persons.dedup();
        let persons = store.person_details(&persons).await?;
        let mut refs: Vec<(String, String)> = facts
            .iter()
            .map(|f| (f.record_kind.clone(), f.record_id.clone()))
            .collect();
        refs.sort();
        refs.dedup();
        let records = store.record_info(&refs).await?;
        Ok(DigestInput {
            deliveries,
            facts,
            persons,
            records,
        })
    }
}

/// Groups the pending deliveries into one digest per recipient. Pure.
pub fn build(input: &DigestInput, options: &DigestOptions) -> Vec<Digest> {
    let mut facts_by_alert: HashMap<i64, Vec<&DigestFact>> = HashMap::new();
    for f in &input.facts {
        facts_by_alert.entry(f.alert_id).or_default().push(f);
    }
    // recipient → alert → its pending deliveries to that recipient.
    let mut by_recipient: BTreeMap<&str, BTreeMap<i64, Vec<&PendingDelivery>>> = BTreeMap::new();
    for d in &input.deliveries {
        by_recipient
            .entry(d.recipient.as_str())
            .or_default()
            .entry(d.alert_id)
            .or_default()
            .push(d);
    }
    let mut out = Vec::with_capacity(by_recipient.len());
    for (recipient, alerts) in by_recipient {
        let mut items: Vec<(RuleId, Severity, DateTime<Utc>, Item)> = Vec::new();
        let mut deliveries = Vec::new();
        let mut places: Vec<String> = Vec::new();
        let mut admin = true;
        for (alert_id, ds) in alerts {
            deliveries.extend(ds.iter().map(|d| d.id));
            let Some(first) = ds.first() else { continue };
            let (rule, severity) = (first.rule, first.severity);
            admin &= ds.iter().all(|d| d.role == Role::Admin);
            let place = place_of(first, options);
            if let Some(p) = &place {
                if !places.contains(p) {
                    places.push(p.clone());
                }
            }
            let item = item(
                &ds,
                facts_by_alert.get(&alert_id).map_or(&[][..], |v| &v[..]),
                place,
                input,
                options,
            );
            items.push((rule, severity, first.raised_at, item));
        }
        deliveries.sort_unstable();
        deliveries.dedup();
        if items.is_empty() {
            continue;
        }
        out.push(digest(
            recipient, items, deliveries, &places, admin, options,
        ));
    }
    out
}

fn place_of(d: &PendingDelivery, options: &DigestOptions) -> Option<String> {
    match (d.role, d.school_urn) {
        (Role::Ewo, Some(urn)) => Some(
            options
                .schools
                .get(&urn)
                .cloned()
                .unwrap_or_else(|| format!("school {urn:06}")),
        ),
        _ => d.locality.clone(),
    }
}

/// One alert of a digest: `ds` are the recipient's pending deliveries of it (one
/// alert, so they share its rule, severity and place), `facts` the records behind it.
fn item(
    ds: &[&PendingDelivery],
    facts: &[&DigestFact],
    place: Option<String>,
    input: &DigestInput,
    options: &DigestOptions,
) -> Item {
    let first = ds[0];
    let (alert_id, rule, severity) = (first.alert_id, first.rule, first.severity);
    // An update only when every pending delivery of it is one: a recipient who
    // never got the first revision is told about the alert as new.
    let update = ds.iter().all(|d| d.kind == DeliveryKind::Update);
    let revisions: Vec<i64> = ds.iter().map(|d| d.revision).collect();
    let top = revisions.iter().copied().max().unwrap_or(first.revision);
    let shown: Vec<&&DigestFact> = facts
        .iter()
        .filter(|f| {
            if update {
                revisions.contains(&f.revision)
            } else {
                f.revision <= top
            }
        })
        .collect();
    let mut records: Vec<RecordLine> = Vec::new();
    let mut dates: Vec<NaiveDate> = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for f in &shown {
        let key = (f.record_kind.as_str(), f.record_id.as_str());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let info = input
            .records
            .get(&(f.record_kind.clone(), f.record_id.clone()));
        if let Some(i) = info {
            dates.push(i.date);
        }
        records.push(RecordLine {
            agency: agency(&f.record_kind).to_string(),
            text: record_text(f, info, first.school_urn, options),
        });
    }
    let mut persons: Vec<i64> = shown.iter().filter_map(|f| f.person_id).collect();
    persons.sort_unstable();
    persons.dedup();
    let people: Vec<String> = persons
        .iter()
        .map(|&p| person_line(p, input.persons.get(&p), options.detail, options.today))
        .collect();
    let raised = first
        .raised_at
        .with_timezone(&options.timezone)
        .date_naive();
    let refs = References {
        alert_id,
        family: first.family_id.map(|f| format!("F{f}")),
        persons: &persons,
    };
    let (label, colour) = severity_label(severity);
    let mut what = rule_what(rule).to_string();
    if update {
        what.push_str(" Update: new facts since you were last told, listed below.");
    }
    Item {
        alert_id,
        severity: severity.as_str().to_string(),
        label: label.to_string(),
        colour: colour.to_string(),
        update,
        headline: refs.headline(place.as_deref()),
        what,
        when: when_line(&mut dates, raised),
        records,
        people,
        unrouted: first.unrouted.clone(),
        why: rule_why(rule).to_string(),
        explanation: first.explanation.iter().map(|l| redact_keys(l)).collect(),
        lookup: refs.lookup(),
    }
}

/// What a record behind an alert is, in words and without personal details.
fn record_text(
    f: &DigestFact,
    info: Option<&RecordInfo>,
    school_urn: Option<i64>,
    options: &DigestOptions,
) -> String {
    match f.record_kind.as_str() {
        "police_da" => match info {
            Some(i) => format!(
                "notification {}, incident {}",
                f.record_id,
                human_date(i.date)
            ),
            None => format!("notification {}", f.record_id),
        },
        "housing" => match info {
            Some(i) => format!(
                "{} {}, served {}",
                i.note.as_deref().unwrap_or("notice"),
                f.record_id,
                human_date(i.date)
            ),
            None => format!("notice {}", f.record_id),
        },
        "assessment" => match info.and_then(|i| i.note.as_deref()) {
            Some(note) => format!("case {} ({note})", f.record_id),
            None => format!("case {}", f.record_id),
        },
        // An attendance record's key may be built from the pupil's name and date
        // of birth: the school and the person reference identify it.
        "attendance" => match school_urn {
            Some(urn) => format!(
                "attendance register, {}",
                options
                    .schools
                    .get(&urn)
                    .cloned()
                    .unwrap_or_else(|| format!("school {urn:06}"))
            ),
            None => "attendance register".to_string(),
        },
        _ => "a record".to_string(),
    }
}

/// When the records are dated and when the alert was raised.
fn when_line(dates: &mut [NaiveDate], raised: NaiveDate) -> String {
    dates.sort_unstable();
    match (dates.first(), dates.last()) {
        (Some(a), Some(b)) if a == b => {
            format!("{}; alert raised {}", human_date(*a), human_date(raised))
        }
        (Some(a), Some(b)) => format!(
            "{} to {}; alert raised {}",
            human_date(*a),
            human_date(*b),
            human_date(raised)
        ),
        _ => format!("alert raised {}", human_date(raised)),
    }
}

/// The references an item gives to look up: the family, the persons, the alert.
struct References<'a> {
    alert_id: i64,
    family: Option<String>,
    persons: &'a [i64],
}

impl References<'_> {
    /// The item's first line: the family (or first person, or the alert) and place.
    fn headline(&self, place: Option<&str>) -> String {
        let alert_id = self.alert_id;
        match (&self.family, place) {
            (Some(f), Some(p)) => format!("Family {f}, {p}"),
            (Some(f), None) => format!("Family {f}"),
            (None, Some(p)) => match self.persons.first() {
                Some(id) => format!("Person P{id}, {p}"),
                None => format!("Alert A{alert_id}, {p}"),
            },
            (None, None) => match self.persons.first() {
                Some(id) => format!("Person P{id}"),
                None => format!("Alert A{alert_id}"),
            },
        }
    }

    /// Every reference, for the "look up" line.
    fn lookup(&self) -> String {
        let alert_id = self.alert_id;
        let refs: Vec<String> = self.persons.iter().map(|p| format!("P{p}")).collect();
        match (&self.family, refs.is_empty()) {
            (Some(f), false) => format!(
                "family {f} (persons {}), alert A{alert_id}",
                refs.join(", ")
            ),
            (Some(f), true) => format!("family {f}, alert A{alert_id}"),
            (None, false) => format!("persons {}, alert A{alert_id}", refs.join(", ")),
            (None, true) => format!("alert A{alert_id}"),
        }
    }
}

/// An attendance record's key without a UPN is `URN/SURNAME/FORENAME/YYYY-MM-DD`
/// (docs/feeds.md), and the rules quote record keys in some explanation lines: such a
/// token is replaced, so no name or date of birth reaches an email that way.
pub fn redact_keys(line: &str) -> String {
    let looks_like_key = |token: &str| {
        let t = token.trim_end_matches(['.', ',', ';', ':', ')']);
        let t = t.trim_start_matches('(');
        let parts: Vec<&str> = t.split('/').collect();
        parts.len() >= 4
            && parts[0].len() == 6
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && parts
                .last()
                .is_some_and(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
    };
    line.split(' ')
        .map(|token| {
            if looks_like_key(token) {
                let tail: String = token
                    .chars()
                    .rev()
                    .take_while(|c| matches!(c, '.' | ',' | ';' | ':' | ')'))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("(a pupil record){tail}")
            } else {
                token.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn digest(
    recipient: &str,
    mut items: Vec<(RuleId, Severity, DateTime<Utc>, Item)>,
    deliveries: Vec<i64>,
    places: &[String],
    admin: bool,
    options: &DigestOptions,
) -> Digest {
    items.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(a.2.cmp(&b.2))
            .then(a.3.alert_id.cmp(&b.3.alert_id))
    });
    let mut by_rule: BTreeMap<RuleId, Vec<(Severity, Item)>> = BTreeMap::new();
    for (rule, severity, _, item) in items {
        by_rule.entry(rule).or_default().push((severity, item));
    }
    // Groups: the one holding the most severe item first, then the rules' order.
    let mut groups: Vec<(Severity, RuleId, Vec<Item>)> = by_rule
        .into_iter()
        .map(|(rule, v)| {
            let top = v.iter().map(|(s, _)| *s).max().unwrap_or(Severity::Info);
            (top, rule, v.into_iter().map(|(_, i)| i).collect())
        })
        .collect();
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let total: usize = groups.iter().map(|g| g.2.len()).sum();
    let urgent = groups
        .iter()
        .flat_map(|g| &g.2)
        .filter(|i| i.severity == "urgent")
        .count();
    let updates = groups
        .iter()
        .flat_map(|g| &g.2)
        .filter(|i| i.update)
        .count();
    let place = match places {
        [] => None,
        [one] => Some(one.clone()),
        [init @ .., last] => Some(format!("{} and {last}", init.join(", "))),
    };
    let counts: Vec<String> = groups
        .iter()
        .map(|(_, rule, items)| format!("{} {}", items.len(), rule_title(*rule, items.len())))
        .collect();
    let place_text = place
        .as_ref()
        .map_or(String::new(), |p| format!(" for {p}"));
    let what = if groups.len() == 1 {
        format!("{}{place_text}", counts.join(""))
    } else {
        format!(
            "{total} {}{place_text}: {}",
            if total == 1 { "alert" } else { "alerts" },
            counts.join(", ")
        )
    };
    let what = if admin {
        format!("Unrouted: {what}")
    } else {
        what
    };
    let mut tail = Vec::new();
    if urgent > 0 {
        tail.push(format!("{urgent} urgent"));
    }
    if updates > 0 {
        tail.push(format!(
            "{updates} {}",
            if updates == 1 { "update" } else { "updates" }
        ));
    }
    let subject = if tail.is_empty() {
        what.clone()
    } else {
        format!("{what} — {}", tail.join(", "))
    };
    let title = match &place {
        Some(p) => format!("Early Help alerts for {p}, {}", human_date(options.today)),
        None => format!("Early Help alerts, {}", human_date(options.today)),
    };
    let summary = if tail.is_empty() {
        format!("{what}. Most severe first.")
    } else {
        format!("{what} ({}). Most severe first.", tail.join(", "))
    };
    let detail = match options.detail {
        DetailLevel::Minimal => {
            "People are shown by reference, initials and year of birth only: look them up in the case system"
        }
        DetailLevel::Standard => "People are shown by reference, name and age",
        DetailLevel::Full => "People are shown by reference, name, date of birth and address",
    };
    let why = if admin {
        "You are on kinlink's admin list: these alerts matched no locality, school or recipient (the reason is on each), so they came to you instead. Fix the routing in the config, or pass them on."
    } else {
        "You get this because kinlink routes these alerts to your role in your locality or school."
    };
    let footer = format!(
        "{why} {detail}. Please do not forward this email: it is about children and families, and every disclosure is recorded in kinlink's audit log. Sent by kinlink to {recipient}."
    );
    Digest {
        recipient: recipient.to_string(),
        subject,
        title,
        summary,
        footer,
        groups: groups
            .into_iter()
            .map(|(_, rule, items)| Group {
                rule: rule.as_str().to_string(),
                title: capitalise(rule_title(rule, items.len())),
                items,
            })
            .collect(),
        deliveries,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// `digest:<recipient>:<first 16 bytes of SHA-256 of the sorted delivery ids, hex>`.
pub fn idempotency_key(recipient: &str, deliveries: &[i64]) -> String {
    let mut ids = deliveries.to_vec();
    ids.sort_unstable();
    let joined = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let digest = Sha256::digest(joined.as_bytes());
    format!("digest:{recipient}:{}", hex::encode(&digest[..16]))
}

/// Composes a digest for every recipient with pending deliveries and stores each
/// in the outbox with the flip of its deliveries (nothing is stored in a dry run).
pub async fn enqueue_digests(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    options: &DigestOptions,
    mode: RunMode,
) -> Result<DigestRun, MailError> {
    let input = DigestInput::read(store).await?;
    let digests = build(&input, options);
    let renderer = Renderer::new()?;
    let mut run = DigestRun::default();
    let now = clock.now();
    let sender = mailer.from.email.to_string();
    for d in &digests {
        let rendered = renderer.digest(d)?;
        run.digests += 1;
        run.deliveries += d.deliveries.len();
        run.subjects.push((d.recipient.clone(), d.subject.clone()));
        if mode.is_dry_run() {
            continue;
        }
        let message = OutgoingMessage {
            idempotency_key: idempotency_key(&d.recipient, &d.deliveries),
            to: vec![d.recipient.clone()],
            subject: rendered.subject,
            text: rendered.text,
            html: Some(rendered.html),
            inline_images: vec![],
        };
        let composed = compose::compose(&mailer.from, &message, now)?;
        let stored = store
            .enqueue_digest(
                &composed.outbox(&message, &sender, now),
                &d.deliveries,
                options.detail.as_str(),
            )
            .await?;
        if stored.outbox.created {
            run.stored += 1;
        }
    }
    if !mode.is_dry_run() && run.digests > 0 {
        tracing::info!(
            digests = run.digests,
            stored = run.stored,
            deliveries = run.deliveries,
            "Digests queued"
        );
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn delivery(id: i64, alert: i64, rule: &str, severity: &str, kind: &str) -> PendingDelivery {
        PendingDelivery {
            id,
            alert_id: alert,
            revision: if kind == "update" { 2 } else { 1 },
            recipient: "dv.north@example.gov.uk".into(),
            role: Role::DvChampion,
            kind: DeliveryKind::parse(kind).unwrap(),
            rule: RuleId::parse(rule).unwrap(),
            severity: Severity::parse(severity).unwrap(),
            family_id: Some(10 + alert),
            school_urn: None,
            locality: Some("North".into()),
            unrouted: None,
            raised_at: Utc.with_ymd_and_hms(2025, 3, 3, 2, 0, 0).unwrap(),
            explanation: vec![format!(
                "Explanation of alert {alert}: thresholds and counts, no names."
            )],
        }
    }

    fn fact(alert: i64, revision: i64, kind: &str, id: &str, person: i64) -> DigestFact {
        DigestFact {
            alert_id: alert,
            revision,
            record_kind: kind.into(),
            record_id: id.into(),
            person_id: Some(person),
        }
    }

    fn person(id: i64, forename: &str, surname: &str, dob: &str, address: &str) -> PersonDetails {
        PersonDetails {
            person_id: id,
            forename: Some(forename.into()),
            surname: Some(surname.into()),
            dob: Some(d(dob)),
            address_line1: Some(address.into()),
            postcode: Some("M7 1AA".into()),
        }
    }

    /// Three alerts for one DV champion: an urgent update, a new info alert and an
    /// eviction risk; persons with names, dates of birth and addresses.
    fn input(child: &PersonDetails, adult: &PersonDetails) -> DigestInput {
        let mut records = HashMap::new();
        records.insert(
            ("police_da".to_string(), "N100".to_string()),
            RecordInfo {
                date: d("2025-03-01"),
                note: None,
            },
        );
        records.insert(
            ("police_da".to_string(), "N101".to_string()),
            RecordInfo {
                date: d("2025-03-02"),
                note: None,
            },
        );
        records.insert(
            ("housing".to_string(), "H7".to_string()),
            RecordInfo {
                date: d("2025-02-20"),
                note: Some("section 21 notice".into()),
            },
        );
        let mut evict = delivery(3, 3, "eviction_risk", "priority", "new");
        evict.explanation = vec!["Served 2025-02-20; possession date ahead.".into()];
        DigestInput {
            deliveries: vec![
                delivery(1, 1, "da_notification", "info", "new"),
                delivery(2, 2, "da_notification", "urgent", "update"),
                evict,
            ],
            facts: vec![
                fact(1, 1, "police_da", "N100", child.person_id),
                fact(2, 1, "police_da", "N100", child.person_id),
                fact(2, 2, "police_da", "N101", adult.person_id),
                fact(3, 1, "housing", "H7", adult.person_id),
                fact(
                    3,
                    1,
                    "attendance",
                    "100001/SURNAME/FORENAME/2015-06-01",
                    child.person_id,
                ),
            ],
            persons: [child.clone(), adult.clone()]
                .into_iter()
                .map(|p| (p.person_id, p))
                .collect(),
            records,
        }
    }

    fn options(detail: DetailLevel) -> DigestOptions {
        DigestOptions {
            detail,
            schools: [(100001, "St Example Primary".to_string())]
                .into_iter()
                .collect(),
            today: d("2025-03-04"),
            timezone: chrono_tz::Europe::London,
        }
    }

    fn child() -> PersonDetails {
        person(34, "Amelia", "Brown", "2015-06-01", "12 High Street")
    }

    fn adult() -> PersonDetails {
        person(35, "Carla", "Brown", "1988-11-23", "12 High Street")
    }

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/digests")
            .join(name);
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(
            actual,
            expected,
            "{} differs (UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }

    fn render_one(detail: DetailLevel, child: &PersonDetails, adult: &PersonDetails) -> Rendered {
        let digests = build(&input(child, adult), &options(detail));
        assert_eq!(digests.len(), 1);
        Renderer::new().unwrap().digest(&digests[0]).unwrap()
    }

    #[test]
    fn text_digest_at_each_detail_level_matches_its_snapshot() {
        for (detail, name) in [
            (DetailLevel::Minimal, "minimal.txt"),
            (DetailLevel::Standard, "standard.txt"),
            (DetailLevel::Full, "full.txt"),
        ] {
            let r = render_one(detail, &child(), &adult());
            golden(name, &format!("Subject: {}\n\n{}", r.subject, r.text));
        }
    }

    #[test]
    fn the_digest_is_grouped_by_rule_most_severe_first_and_marks_updates() {
        let digests = build(&input(&child(), &adult()), &options(DetailLevel::Minimal));
        let d = &digests[0];
        assert_eq!(d.deliveries, vec![1, 2, 3]);
        let rules: Vec<&str> = d.groups.iter().map(|g| g.rule.as_str()).collect();
        assert_eq!(rules, vec!["da_notification", "eviction_risk"]);
        let da: Vec<(i64, bool)> = d.groups[0]
            .items
            .iter()
            .map(|i| (i.alert_id, i.update))
            .collect();
        assert_eq!(da, vec![(2, true), (1, false)]);
        // The update shows only what is new in its revision.
        assert_eq!(d.groups[0].items[0].records.len(), 1);
        assert!(d.groups[0].items[0].records[0].text.contains("N101"));
        assert_eq!(
            d.subject,
            "3 alerts for North: 2 DA notifications, 1 eviction risk — 1 urgent, 1 update"
        );
        let r = Renderer::new().unwrap().digest(d).unwrap();
        assert!(
            r.text.contains("[URGENT] [UPDATE] Family F12, North"),
            "{}",
            r.text
        );
        assert!(r.html.contains(">UPDATE</span>"));
        // An attendance record's key (built from a name) is never shown.
        assert!(!r.text.contains("SURNAME") && !r.html.contains("SURNAME"));
        assert!(
            r.text.contains("School: attendance register\n"),
            "{}",
            r.text
        );
    }

    #[test]
    fn an_admin_digest_says_why_each_alert_was_not_routed() {
        let mut i = input(&child(), &adult());
        i.deliveries.truncate(1);
        i.deliveries[0].recipient = "admin@example.gov.uk".into();
        i.deliveries[0].role = Role::Admin;
        i.deliveries[0].locality = None;
        i.deliveries[0].unrouted = Some("postcode ZZ9 matches no locality".into());
        let digests = build(&i, &options(DetailLevel::Minimal));
        let r = Renderer::new().unwrap().digest(&digests[0]).unwrap();
        assert_eq!(r.subject, "Unrouted: 1 DA notification");
        assert!(
            r.text
                .contains("Not routed:     postcode ZZ9 matches no locality"),
            "{}",
            r.text
        );
        assert!(r.html.contains("postcode ZZ9 matches no locality"));
        assert!(r.text.contains("admin list"));
    }

    #[test]
    fn a_record_key_built_from_a_name_is_redacted_from_explanation_lines() {
        assert_eq!(
            redact_keys(
                "1 new signal since: attendance 100001/BROWN/AMELIA/2015-06-01 (2026-11-19)."
            ),
            "1 new signal since: attendance (a pupil record) (2026-11-19)."
        );
        assert_eq!(
            redact_keys("signals: attendance 100001/BROWN/AMELIA/2015-06-01, police_da N1."),
            "signals: attendance (a pupil record), police_da N1."
        );
        let kept = "attendance U355200025030 (2026-11-19); window 2026-10-01 to 2026-11-19.";
        assert_eq!(redact_keys(kept), kept);
    }

    #[test]
    fn the_idempotency_key_depends_on_the_set_of_deliveries_only() {
        let a = idempotency_key("x@example.gov.uk", &[3, 1, 2]);
        assert_eq!(a, idempotency_key("x@example.gov.uk", &[1, 2, 3]));
        assert_ne!(a, idempotency_key("x@example.gov.uk", &[1, 2]));
        assert_ne!(a, idempotency_key("y@example.gov.uk", &[1, 2, 3]));
        assert!(a.starts_with("digest:x@example.gov.uk:"));
    }

    #[test]
    fn standard_shows_age_not_date_of_birth_and_full_shows_both_and_the_address() {
        let p = child();
        let today = d("2025-03-04");
        assert_eq!(
            person_line(34, Some(&p), DetailLevel::Minimal, today),
            "P34 (A.B., born 2015)"
        );
        assert_eq!(
            person_line(34, Some(&p), DetailLevel::Standard, today),
            "P34 Amelia Brown, age 9"
        );
        assert_eq!(
            person_line(34, Some(&p), DetailLevel::Full, today),
            "P34 Amelia Brown, born 1 Jun 2015, 12 High Street, M7 1AA"
        );
        assert_eq!(person_line(9, None, DetailLevel::Full, today), "P9");
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Z][a-z]{4,11}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn minimal_digests_and_every_subject_carry_no_name_date_of_birth_or_address(
            forename in name(),
            surname in name(),
            adult_surname in name(),
            house in 1u32..400,
            street in name(),
            year in 1950i32..2020,
            day in 1u32..=28,
            month in 1u32..=12,
        ) {
            let dob = format!("{year:04}-{month:02}-{day:02}");
            let address = format!("{house} {street} Road");
            let c = person(34, &forename, &surname, &dob, &address);
            let a = person(35, "Dorothea", &adult_surname, "1980-02-03", &address);
            // Template words cannot count as a leak: skip names the digest's own
            // text contains with other people in it.
            let baseline = render_one(DetailLevel::Minimal, &child(), &adult());
            for n in [&forename, &surname, &adult_surname, &street] {
                prop_assume!(!baseline.text.contains(n.as_str()) && !baseline.html.contains(n.as_str()));
            }
            let min = render_one(DetailLevel::Minimal, &c, &a);
            let dob = d(&dob);
            let secrets = [
                format!("{forename} {surname}"),
                surname.clone(),
                adult_surname.clone(),
                address.clone(),
                street.clone(),
                dob.format("%Y-%m-%d").to_string(),
                dob.format("%d/%m/%Y").to_string(),
                human_date(dob),
            ];
            for s in &secrets {
                prop_assert!(!min.text.contains(s.as_str()), "text has {s:?}");
                prop_assert!(!min.html.contains(s.as_str()), "HTML has {s:?}");
                prop_assert!(!min.subject.contains(s.as_str()), "subject has {s:?}");
            }
            for detail in [DetailLevel::Standard, DetailLevel::Full] {
                let r = render_one(detail, &c, &a);
                for s in &secrets {
                    prop_assert!(!r.subject.contains(s.as_str()), "{detail:?} subject has {s:?}");
                }
                // The other levels do show the name (the test would catch nothing otherwise).
                let full_name = format!("{forename} {surname}");
                prop_assert!(r.text.contains(&full_name));
            }
        }
    }
}
