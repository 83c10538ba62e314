//! The identity commands: `link`, `explain person|family` and `persons export`
//! (`review` is in `review.rs`). Names appear only on stdout (the operator's terminal),
//! never in logs.

use std::io::Write;

use anyhow::Context;
use tracing::info;

use super::{open_store, Failure};
use crate::cli::{ExplainCommand, ExportFormat, LinkArgs, OutputFormat, PersonsCommand};
use crate::clock::Clock;
use crate::config::Settings;
use crate::link::ids::parse_display_id;
use crate::pipeline::{self, LinkReport};
use crate::store::{ExplainLink, ExplainMention, ExportError, ExportRow, Store};

/// `kinlink link [--full]`.
pub(super) async fn link(
    settings: &Settings,
    clock: Clock,
    args: &LinkArgs,
) -> Result<u8, Failure> {
    let store = open_store(settings).await?;
    let report = pipeline::link(
        settings,
        &store,
        clock,
        if args.full {
            pipeline::LinkScope::Full
        } else {
            pipeline::LinkScope::Incremental
        },
    )
    .await;
    store.close().await;
    let report = report?;
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report")?
        ),
        OutputFormat::Table => print_link_report(&report),
    }
    Ok(0)
}

/// The figures of a link run, one line each.
pub fn print_link_report(r: &LinkReport) {
    let c = &r.counts;
    println!(
        "linked ({}): {} mentions, {} new or changed",
        if r.full { "full" } else { "incremental" },
        c.mentions,
        r.changed_mentions
    );
    println!(
        "  pairs: {} link, {} review ({} candidate pairs scored)",
        c.link_pairs, c.review_pairs, c.candidate_pairs
    );
    println!(
        "  persons: {} ({} new, {} merged into an older id)",
        c.persons, r.persons_created, r.persons_merged
    );
    println!("  households: {}", c.households);
    println!("  families: {}", c.families);
    println!("  review queue: {} pending", c.review_pending);
    println!("  flags: {}", c.flags);
    if r.split_by_guard > 0 {
        println!(
            "  {} person(s) split to honour rejected review pairs",
            r.split_by_guard
        );
    }
    println!(
        "  time: read {:.2}s, link {:.2}s, write {:.2}s",
        r.read_s, r.link_s, r.write_s
    );
}

fn bad_id(what: &str, id: &str, prefix: char) -> Failure {
    Failure::Config(format!(
        "{what} id {id:?} is not valid: give it as {prefix}12 or 12"
    ))
}

/// `kinlink explain person|family ID`.
pub(super) async fn explain(settings: &Settings, what: &ExplainCommand) -> Result<u8, Failure> {
    let store = open_store(settings).await?;
    let out = match what {
        ExplainCommand::Person { id } => {
            let n = parse_display_id(id, 'P').ok_or_else(|| bad_id("person", id, 'P'))?;
            explain_person(&store, n).await
        }
        ExplainCommand::Family { id } => {
            let n = parse_display_id(id, 'F').ok_or_else(|| bad_id("family", id, 'F'))?;
            explain_family(&store, n).await
        }
    };
    store.close().await;
    print!("{}", out?);
    Ok(0)
}

async fn explain_person(store: &Store, id: i64) -> Result<String, Failure> {
    let p = store.explain_person(id).await?;
    let mut s = String::new();
    s.push_str(&format!("Person P{}", p.id));
    if p.asked != p.id {
        s.push_str(&format!(" (P{} was merged into it)", p.asked));
    }
    s.push('\n');
    if let Some(f) = p.family {
        s.push_str(&format!("  family: F{f}\n"));
    }
    if let Some((h, key)) = &p.household {
        s.push_str(&format!("  household: H{h} ({key})\n"));
    }
    s.push_str(&format!("\nMentions ({}):\n", p.mentions.len()));
    for m in &p.mentions {
        s.push_str(&mention_line(m));
    }
    s.push_str(&links_text(&p.links));
    Ok(s)
}

async fn explain_family(store: &Store, id: i64) -> Result<String, Failure> {
    let f = store.explain_family(id).await?;
    let mut s = format!("Family F{}", f.id);
    if f.asked != f.id {
        s.push_str(&format!(" (F{} was merged into it)", f.asked));
    }
    s.push_str(&format!(": {} person(s)\n", f.members.len()));
    for (h, key, persons) in &f.households {
        let ps: Vec<String> = persons.iter().map(|p| format!("P{p}")).collect();
        s.push_str(&format!("  household H{h} ({key}): {}\n", ps.join(", ")));
    }
    for (person, via, mentions) in &f.members {
        s.push_str(&format!("\nP{person} (member by {})\n", via_words(via)));
        for m in mentions {
            s.push_str(&mention_line(m));
        }
    }
    if !f.incident_contacts.is_empty() {
        s.push_str("\nAlso named in the family's police notifications (linked to the incident, not members):\n");
        for c in &f.incident_contacts {
            s.push_str(&format!(
                "  P{} as {} in notification {}\n",
                c.person, c.role, c.notification_id
            ));
        }
    }
    s.push_str(&links_text(&f.links));
    Ok(s)
}

fn via_words(via: &str) -> &str {
    match via {
        "case" => "the case system's family id",
        "household" => "living at the family's address",
        "police" => "a police notification at their own address",
        other => other,
    }
}

pub(super) fn mention_line(m: &ExplainMention) -> String {
    let name = [m.forename.as_deref(), m.surname.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let dob = m
        .dob
        .map(|d| d.to_string())
        .unwrap_or_else(|| "no dob".into());
    let mut keys = Vec::new();
    if m.upn_valid {
        keys.push("valid UPN");
    }
    if m.nhs_valid {
        keys.push("valid NHS number");
    }
    format!(
        "  M{:<8} {:<11} {:<20} {:<28} {:<8} {} ({}), {} {}{}\n",
        m.id,
        m.kind,
        m.source,
        m.mention_key,
        m.role,
        if name.is_empty() { "(no name)" } else { &name },
        dob,
        m.address_line1.as_deref().unwrap_or("-"),
        m.postcode.as_deref().unwrap_or("-"),
        if keys.is_empty() {
            String::new()
        } else {
            format!(" [{}]", keys.join(", "))
        }
    )
}

fn links_text(links: &[ExplainLink]) -> String {
    if links.is_empty() {
        return "\nLinks: none\n".into();
    }
    let mut s = format!("\nLinks ({}):\n", links.len());
    for l in links {
        s.push_str(&format!(
            "  M{} ~ M{}: {} by {}, probability {:.4}{}{}\n",
            l.a,
            l.b,
            l.band.replace('_', " "),
            basis_words(&l.basis),
            l.probability,
            match l.weight {
                Some(w) => format!(", weight {w:+.1} bits"),
                None => String::new(),
            },
            match &l.review {
                Some(r) => format!(" [review: {r}]"),
                None => String::new(),
            }
        ));
        for line in describe_evidence(&l.evidence) {
            s.push_str(&format!("      {line}\n"));
        }
    }
    s
}

fn basis_words(basis: &str) -> &str {
    match basis {
        "upn" => "the same valid UPN",
        "nhs_number" => "the same valid NHS number",
        "case_person_id" => "the same case-system person id",
        "probabilistic" => "match probability",
        "reviewed" => "a reviewer's decision",
        other => other,
    }
}

/// Evidence text (`forename=nickname:+5.21;…;prior:-16.20;cap=forename_disagrees`)
/// in plain words, one line per field. Lenient: a part it does not understand is
/// shown as written.
pub fn describe_evidence(evidence: &str) -> Vec<String> {
    evidence
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            if let Some(reason) = part.strip_prefix("cap=") {
                return format!("capped: {}", reason.replace('_', " "));
            }
            let (name, rest) = match part.split_once('=') {
                Some((f, r)) => (f, Some(r)),
                None => (part, None),
            };
            let (level, weight) = match rest {
                Some(r) => match r
                    .rsplit_once(':')
                    .and_then(|(l, w)| w.parse::<f64>().ok().map(|w| (l, w)))
                {
                    Some((l, w)) => (Some(l), Some(w)),
                    None => (Some(r), None),
                },
                None => match name.split_once(':') {
                    Some((n, w)) => {
                        return match w.parse::<f64>() {
                            Ok(w) => format!("{}: {w:+.1} bits", n.replace('_', " ")),
                            Err(_) => part.to_string(),
                        }
                    }
                    None => (None, None),
                },
            };
            let field = name.replace('_', " ");
            match (level, weight) {
                (Some(l), Some(w)) => format!("{field}: {} ({w:+.1} bits)", l.replace('_', " ")),
                (Some(l), None) => format!("{field}: {}", l.replace('_', " ")),
                _ => part.to_string(),
            }
        })
        .collect()
}

/// `kinlink persons export --format csv`.
pub(super) async fn persons(settings: &Settings, what: &PersonsCommand) -> Result<u8, Failure> {
    let PersonsCommand::Export { format } = what;
    let ExportFormat::Csv = format;
    let store = open_store(settings).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = export_csv(&store, &mut out).await;
    store.close().await;
    let written = written?;
    out.flush().context("writing the export")?;
    info!(rows = written, "Persons exported");
    Ok(0)
}

/// The header of `persons export --format csv` (docs/feeds.md "Exports").
pub const EXPORT_HEADER: [&str; 9] = [
    "person_id",
    "family_id",
    "kind",
    "source",
    "mention_key",
    "forename",
    "surname",
    "dob",
    "postcode",
];

/// Writes the CSV export to `out`; returns the number of mention rows.
pub async fn export_csv(store: &Store, out: &mut dyn Write) -> Result<usize, Failure> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(EXPORT_HEADER)
        .context("writing the export")?;
    let n = store
        .export_persons(|r: ExportRow| {
            w.write_record(
                [
                    r.person_id.map(|p| format!("P{p}")).unwrap_or_default(),
                    r.family_id.map(|f| format!("F{f}")).unwrap_or_default(),
                    r.kind,
                    r.source,
                    r.mention_key,
                    r.forename.unwrap_or_default(),
                    r.surname.unwrap_or_default(),
                    r.dob
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                    r.postcode.unwrap_or_default(),
                ]
                .map(spreadsheet_safe),
            )
            .map_err(std::io::Error::other)
        })
        .await
        .map_err(|e| match e {
            ExportError::Store(s) => Failure::from(s),
            ExportError::Write(io) => {
                Failure::Step(anyhow::Error::new(io).context("writing the export"))
            }
        })?;
    w.flush().context("writing the export")?;
    Ok(n)
}

/// A CSV cell that a spreadsheet will not run as a formula: text that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return (what spreadsheets read as the
/// start of a formula) gets a leading apostrophe, as OWASP's advice on CSV
/// injection has it. Feed values are staff-typed or partner-sent text, so an
/// export opened in a spreadsheet must not execute any of them.
pub fn spreadsheet_safe(cell: String) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::{describe_evidence, spreadsheet_safe};

    #[test]
    fn formula_cells_are_neutralised() {
        for bad in [
            "=HYPERLINK(\"x\")",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(spreadsheet_safe(bad.to_string()), format!("'{bad}"));
        }
        for fine in [
            "",
            "Smith",
            "P12",
            "2015-03-04",
            "M6 5AB",
            "'quoted",
            " =space first",
        ] {
            assert_eq!(spreadsheet_safe(fine.to_string()), fine);
        }
    }

    #[test]
    fn evidence_reads_in_plain_words() {
        let e = "forename=nickname:+5.21;surname=exact:+6.80;dob=day_month_swapped:+9.90;prior:-16.20;cap=forename_disagrees";
        assert_eq!(
            describe_evidence(e),
            vec![
                "forename: nickname (+5.2 bits)",
                "surname: exact (+6.8 bits)",
                "dob: day month swapped (+9.9 bits)",
                "prior: -16.2 bits",
                "capped: forename disagrees",
            ]
        );
        assert_eq!(describe_evidence("upn=exact"), vec!["upn: exact"]);
        assert_eq!(describe_evidence("sex=agree"), vec!["sex: agree"]);
        // Unknown shapes come through as written; nothing panics.
        assert_eq!(describe_evidence("odd;;x=y:z"), vec!["odd", "x: y:z"]);
        assert!(describe_evidence("").is_empty());
    }
}
