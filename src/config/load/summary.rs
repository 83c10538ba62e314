//! The `check-config` summary: what would run (database, mail, sources,
//! localities, schools, jobs, which rules are on) as aligned plain text. It names
//! overrides and secrets, never their values.

use super::rules;
use crate::config::{
    redact_url, DatabaseUrl, DetailLevel, HttpAuth, MailTransport, Settings, SmtpTls, Transport,
};

/// The `check-config` summary: what would run, as aligned plain text.
pub fn summary(settings: &Settings) -> String {
    let mut out = String::new();
    let head = head(settings);
    let width = head.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &head {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }

    tables(settings, &mut out);
    out
}

/// The settings that are one value each, as (label, value).
fn head(settings: &Settings) -> Vec<(&'static str, String)> {
    let database = match &settings.database {
        DatabaseUrl::Sqlite(path) => format!("SQLite {}", path.display()),
        DatabaseUrl::Postgres(url) => format!("PostgreSQL {}", redact_url(url)),
    };
    let detail = match settings.mail.detail {
        DetailLevel::Minimal => "minimal",
        DetailLevel::Standard => "standard",
        DetailLevel::Full => "full",
    };
    let transport = mail_transport(settings);
    let rules: Vec<String> = rules::in_order()
        .map(|rule| {
            if settings.rules.common(rule).enabled {
                rule.to_string()
            } else {
                format!("{rule} (off)")
            }
        })
        .collect();
    let mut head = vec![
        ("config", settings.config_path.display().to_string()),
        ("database", database),
        ("state dir", settings.state_dir.display().to_string()),
        ("jobs dir", settings.jobs_dir.display().to_string()),
        ("timezone", settings.timezone.name().to_string()),
        ("mail", transport),
        ("mail from", settings.mail.from.clone()),
        ("mail detail", detail.to_string()),
        (
            "admin",
            format!("{} address(es)", settings.mail.admin.len()),
        ),
        (
            "http",
            settings.http.as_ref().map_or("off".to_string(), |h| {
                format!("/healthz and /metrics on {}", h.listen)
            }),
        ),
        (
            "linkage",
            format!(
                "auto_link {:.2} / review {:.2}",
                settings.linkage.auto_link, settings.linkage.review
            ),
        ),
        ("rules", rules.join(", ")),
    ];
    if !settings.env_overrides.is_empty() {
        // Names only: a value may be an address or a host nobody should read here.
        head.push(("env overrides", settings.env_overrides.join(", ")));
    }
    head
}

/// How mail leaves: a folder of .eml files, or an SMTP relay (never its password).
fn mail_transport(settings: &Settings) -> String {
    match &settings.mail.transport {
        MailTransport::File { dir } => format!(".eml files in {}", dir.display()),
        MailTransport::Smtp(smtp) => {
            let tls = match smtp.tls {
                SmtpTls::Starttls => "starttls",
                SmtpTls::Tls => "tls",
                SmtpTls::None => "no tls",
            };
            let auth = if smtp.user.is_some() {
                ", with login"
            } else {
                ""
            };
            format!("SMTP {}:{} ({tls}{auth})", smtp.host, smtp.port)
        }
    }
}

/// The sources, localities, schools and jobs, a table each.
fn tables(settings: &Settings, out: &mut String) {
    let source_rows = settings
        .sources
        .iter()
        .map(|s| {
            let transport = match &s.transport {
                Transport::Dir(d) => format!("dir {}", d.path.display()),
                Transport::Http(h) => {
                    let auth = match h.auth {
                        HttpAuth::None => "",
                        HttpAuth::Bearer(_) => " (bearer)",
                        HttpAuth::Basic { .. } => " (basic)",
                    };
                    format!("http {}{auth}", redact_url(&h.url))
                }
            };
            vec![
                s.name.clone(),
                s.kind.to_string(),
                s.format.to_string(),
                transport,
            ]
        })
        .collect();
    section(
        out,
        "sources",
        &["name", "kind", "format", "transport"],
        source_rows,
    );
    let locality_rows = settings
        .localities
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.postcodes.len().to_string(),
                l.dv_champions.len().to_string(),
                l.champions.len().to_string(),
                l.managers.len().to_string(),
            ]
        })
        .collect();
    section(
        out,
        "localities",
        &["name", "prefixes", "dv_champions", "champions", "managers"],
        locality_rows,
    );
    let school_rows = settings
        .schools
        .iter()
        .map(|s| {
            vec![
                s.urn.to_string(),
                s.name.clone(),
                s.locality.clone(),
                s.ewos.len().to_string(),
            ]
        })
        .collect();
    section(
        out,
        "schools",
        &["urn", "name", "locality", "ewos"],
        school_rows,
    );
    let job_rows = settings
        .jobs
        .iter()
        .map(|j| {
            vec![
                j.name.clone(),
                j.schedule.clone(),
                j.steps
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if j.catch_up { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    section(
        out,
        "jobs",
        &["name", "schedule", "steps", "catch_up"],
        job_rows,
    );
}

/// Appends a titled table with aligned columns.
fn section(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    out.push_str(&format!("\n{title} ({})\n", rows.len()));
    if rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::from(" ");
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            line.push(' ');
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w.saturating_sub(cell.chars().count()) + 1));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
