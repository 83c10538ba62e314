//! `kinlink review list|accept|reject|undo`: the queue ranked by impact; a decision
//! checked against what the linker will honour, shown with what it will change,
//! then recorded in one transaction; and its withdrawal. Names appear only on
//! stdout (the operator's terminal), never in logs; a refusal goes to stderr with
//! ids only and exits 2, having recorded nothing.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::info;

use super::identity::{describe_evidence, mention_line};
use super::{open_store, Failure};
use crate::cli::{DecideArgs, OutputFormat, ReviewCommand, UndoArgs};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::EmailAddress;
use crate::link::ids::parse_display_id;
use crate::link::{Decision, Verdict};
use crate::pipeline::{link_options, placement, Placement};
use crate::store::{
    Apart, Decided, DecisionRecord, ExplainMention, NewDecision, PairFacts, PairLookup, PairSide,
    Store, Undone, Withdrawal,
};

/// `kinlink review list|accept|reject|undo`.
pub(super) async fn review(
    settings: &Settings,
    clock: Clock,
    what: &ReviewCommand,
) -> Result<u8, Failure> {
    match what {
        ReviewCommand::List { format, all } => {
            let store = open_store(settings).await?;
            let out = list(&store, *format, *all).await;
            store.close().await;
            out
        }
        // Arguments are checked before the store is opened.
        ReviewCommand::Accept(args) => decide(settings, clock, args, Verdict::Accept).await,
        ReviewCommand::Reject(args) => decide(settings, clock, args, Verdict::Reject).await,
        ReviewCommand::Undo(args) => undo(settings, clock, args).await,
    }
}

async fn list(store: &Store, format: OutputFormat, all: bool) -> Result<u8, Failure> {
    let rows = store.review_rows(all).await?;
    match format {
        OutputFormat::Json => {
            let side = |m: &ExplainMention| json!({"mention": m.id, "kind": m.kind, "source": m.source, "mention_key": m.mention_key});
            let doc: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "a": r.a, "b": r.b, "probability": r.probability,
                        "status": r.status, "evidence": r.evidence,
                        "open_alert": r.open_alert, "mentions_moved": r.mentions_moved,
                        "decided_by": r.decided_by, "decided_at": r.decided_at,
                        "a_mention": side(&r.a_mention), "b_mention": side(&r.b_mention),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).context("writing the list")?
            );
        }
        OutputFormat::Table => {
            if rows.is_empty() {
                println!("the review queue is empty");
            }
            for r in &rows {
                let mut line = format!(
                    "M{} ~ M{}  probability {:.4}  {}",
                    r.a, r.b, r.probability, r.status
                );
                if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) {
                    line.push_str(&format!(" by {by} on {}", when(at)));
                }
                if r.open_alert {
                    line.push_str("  open alert");
                }
                line.push_str(&format!("  moves {}", mentions(r.mentions_moved)));
                println!("{line}");
                print!("{}", mention_line(&r.a_mention));
                print!("{}", mention_line(&r.b_mention));
                for line in describe_evidence(&r.evidence) {
                    println!("      {line}");
                }
            }
        }
    }
    Ok(0)
}

/// A mention id as `review list` prints it: `M584`, `m584` or `584`. `which` names
/// the argument in the error.
pub fn mention_arg(which: &str, given: &str) -> Result<i64, Failure> {
    if let Some(n) = parse_display_id(given, 'M') {
        return Ok(n);
    }
    let expected = "give it as `kinlink review list` prints it: M584 (or m584, 584)";
    let other = [
        ('P', "a person", "explain person"),
        ('F', "a family", "explain family"),
    ]
    .into_iter()
    .find(|(prefix, _, _)| {
        given
            .trim()
            .strip_prefix(*prefix)
            .or_else(|| given.trim().strip_prefix(prefix.to_ascii_lowercase()))
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_digit()))
    });
    Err(Failure::Config(match other {
        Some((_, what, command)) => format!(
            "{which} {given:?} is {what} id, not a mention id: {expected}; \
             `kinlink {command} {}` lists its mentions",
            given.trim()
        ),
        None => format!("{which} {given:?} is not a mention id: {expected}"),
    }))
}

fn pair_args(a: &str, b: &str, by: &str) -> Result<(i64, i64), Failure> {
    let (a, b) = (mention_arg("mention A", a)?, mention_arg("mention B", b)?);
    if a == b {
        return Err(Failure::Config(format!(
            "mention A and mention B are both M{a}: a pair needs two different mentions"
        )));
    }
    if EmailAddress::parse(by).is_none() {
        return Err(Failure::Config(format!(
            "--by {by:?} is not an email address: give the reviewer's address, e.g. --by a.worker@council.gov.uk"
        )));
    }
    Ok((a.min(b), a.max(b)))
}

/// Why a decision is not recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The pair already has this verdict: nothing to do.
    Repeated(DecisionRecord),
    /// The pair has the other verdict: undo it first.
    Contradicts(DecisionRecord),
    /// An accept the linker would never honour.
    Apart(Apart),
    /// A reject of two mentions that accepted decisions join.
    AcceptedChain(Vec<DecisionRecord>),
    /// An accept that would make a person larger than the linker allows.
    TooLarge { size: usize, max: usize },
    /// The pair is not pending in the queue (and no `--force`).
    NotQueued,
}

/// What the policy says of deciding `verdict` on a pair, given its facts:
/// `None` to record it.
pub fn refusal(
    facts: &PairFacts,
    verdict: Verdict,
    force: bool,
    max_cluster_size: usize,
) -> Option<Refusal> {
    if let Some(d) = &facts.decision {
        return Some(if d.verdict == verdict {
            Refusal::Repeated(d.clone())
        } else {
            Refusal::Contradicts(d.clone())
        });
    }
    match verdict {
        Verdict::Accept => {
            if let Some(a) = facts.apart.first() {
                return Some(Refusal::Apart(a.clone()));
            }
            let size = facts.a.person_mentions.len() + facts.b.person_mentions.len();
            if !facts.same_person() && size > max_cluster_size.max(2) {
                return Some(Refusal::TooLarge {
                    size,
                    max: max_cluster_size,
                });
            }
        }
        Verdict::Reject => {
            if !facts.accepted_path.is_empty() {
                return Some(Refusal::AcceptedChain(facts.accepted_path.clone()));
            }
        }
    }
    if !force && facts.queue_status.as_deref() != Some("pending") {
        return Some(Refusal::NotQueued);
    }
    None
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn decided_words(d: &DecisionRecord) -> String {
    let mut s = format!("{} by {} on {}", d.verdict.status(), d.by, when(d.at));
    if let Some(note) = &d.note {
        s.push_str(&format!(" (note: {note})"));
    }
    s
}

fn mentions(n: impl Into<i64>) -> String {
    let n = n.into();
    format!("{n} mention{}", if n == 1 { "" } else { "s" })
}

fn missing_message(ids: &[i64]) -> String {
    let names: Vec<String> = ids.iter().map(|i| format!("M{i}")).collect();
    format!(
        "{} {}: no mention has {} (`kinlink review list` and `kinlink explain person` print mention ids); nothing recorded",
        names.join(" and "),
        if ids.len() == 1 { "does not exist" } else { "do not exist" },
        if ids.len() == 1 { "that id" } else { "those ids" },
    )
}

fn refusal_message(r: &Refusal, facts: &PairFacts, verdict: Verdict) -> String {
    let (a, b) = (facts.a.mention.id, facts.b.mention.id);
    let undo = |x: i64, y: i64| format!("`kinlink review undo M{x} M{y} --by EMAIL`");
    match r {
        Refusal::Repeated(d) => format!(
            "M{a} ~ M{b} was already {}: nothing recorded (the decision stands; {} withdraws it)",
            decided_words(d),
            undo(a, b)
        ),
        Refusal::Contradicts(d) => format!(
            "M{a} ~ M{b} was {}: to {} it, first withdraw that decision with {}, then decide again; nothing recorded",
            decided_words(d),
            if verdict == Verdict::Accept { "accept" } else { "reject" },
            undo(a, b)
        ),
        Refusal::Apart(apart) => {
            let why = match apart {
                Apart::Upn { a: x, b: y } => {
                    format!("M{x} and M{y} carry different valid UPNs")
                }
                Apart::Nhs { a: x, b: y } => {
                    format!("M{x} and M{y} carry different valid NHS numbers")
                }
                Apart::Notification { a: x, b: y } => {
                    format!("M{x} and M{y} are two people named in one police notification")
                }
                Apart::Rejected(d) => format!(
                    "M{} ~ M{} was {}; if that was wrong, withdraw it first with {}",
                    d.a,
                    d.b,
                    decided_words(d),
                    undo(d.a, d.b)
                ),
            };
            format!(
                "accepting M{a} ~ M{b} would put two people the linker always keeps apart into one person \
                 ({why}), so the next link would not honour it; nothing recorded"
            )
        }
        Refusal::AcceptedChain(path) => {
            let chain: Vec<String> = path
                .iter()
                .map(|d| format!("M{} ~ M{} {}", d.a, d.b, decided_words(d)))
                .collect();
            format!(
                "rejecting M{a} ~ M{b} contradicts accepted decisions that join them: {}; \
                 withdraw the wrong one first with `kinlink review undo`; nothing recorded",
                chain.join(", ")
            )
        }
        Refusal::TooLarge { size, max } => format!(
            "accepting M{a} ~ M{b} would make a person of {size} mentions, over [linkage] \
             max_cluster_size = {max}, so the next link would not honour it; nothing recorded"
        ),
        Refusal::NotQueued => {
            let why = match (&facts.link, facts.same_person()) {
                (Some((basis, band)), _) if band == "link" => {
                    format!("the linker joined them itself (basis {basis})")
                }
                (_, true) => format!(
                    "they are already one person, P{}",
                    facts.a.person.unwrap_or_default()
                ),
                _ => "the linker never asked about this pair".to_string(),
            };
            format!(
                "M{a} ~ M{b} is not pending in the review queue: {why}. Check the ids against \
                 `kinlink review list`, or add --force to decide this pair anyway; nothing recorded"
            )
        }
    }
}

fn side_text(s: &PairSide) -> String {
    let m = &s.mention;
    let name = [m.forename.as_deref(), m.surname.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = format!(
        "  M{}  {} from {}, key {}, {}\n",
        m.id, m.kind, m.source, m.mention_key, m.role
    );
    out.push_str(&format!(
        "        {}, born {}, postcode {}\n",
        if name.is_empty() { "(no name)" } else { &name },
        m.dob.map_or_else(|| "unknown".into(), |d| d.to_string()),
        m.postcode.as_deref().unwrap_or("unknown"),
    ));
    if let Some((file, at)) = &s.file {
        out.push_str(&format!(
            "        last from file {file} (fetched {})\n",
            at.format("%Y-%m-%d")
        ));
    }
    match (s.person, s.family) {
        (Some(p), Some(f)) => out.push_str(&format!(
            "        person P{p} ({}), family F{f} ({} person{}, {})\n",
            mentions(s.person_mentions.len() as i64),
            s.family_persons,
            if s.family_persons == 1 { "" } else { "s" },
            mentions(s.family_mentions),
        )),
        (Some(p), None) => out.push_str(&format!(
            "        person P{p} ({}), no family\n",
            mentions(s.person_mentions.len() as i64)
        )),
        _ => out.push_str("        not linked yet\n"),
    }
    out
}

/// What the decision changes, as `placement` before and after it shows: one
/// sentence per person (or family) whose mentions change. `word` is `person` or
/// `family`, `prefix` `P` or `F`.
pub fn describe_moves(
    prefix: char,
    word: &str,
    before: &HashMap<i64, i64>,
    after: &HashMap<i64, i64>,
) -> Vec<String> {
    let groups = |map: &HashMap<i64, i64>| {
        let mut g: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (&m, &id) in map {
            g.entry(id).or_default().push(m);
        }
        for v in g.values_mut() {
            v.sort_unstable();
        }
        g
    };
    let (was, now) = (groups(before), groups(after));
    let size = |old: Option<i64>| old.and_then(|o| was.get(&o)).map_or(0, Vec::len) as i64;
    let name = |old: Option<i64>| match old {
        Some(o) => format!("{prefix}{o}"),
        None => format!("no {word} yet"),
    };
    let mut out = Vec::new();
    for (&id, members) in &now {
        if was.get(&id) == Some(members) {
            continue;
        }
        // Where this group's mentions were: previous id → those mentions.
        let mut from: BTreeMap<Option<i64>, Vec<i64>> = BTreeMap::new();
        for &m in members {
            from.entry(before.get(&m).copied()).or_default().push(m);
        }
        let whole = |o: Option<i64>, ms: &[i64]| o.is_some() && size(o) == ms.len() as i64;
        let sentence = if from.len() >= 2 && from.iter().all(|(o, ms)| whole(*o, ms)) {
            let parts: Vec<String> = from
                .keys()
                .map(|&o| format!("{} ({})", name(o), mentions(size(o))))
                .collect();
            format!("{} become one {word}, {prefix}{id}.", and_list(&parts))
        } else if let [(&o, ms)] = from.iter().collect::<Vec<_>>()[..] {
            if o == Some(id) {
                format!(
                    "{prefix}{id} keeps {} of its {}{}.",
                    ms.len(),
                    mentions(size(o)),
                    listed(ms)
                )
            } else if o.is_some() {
                format!(
                    "{} of {}'s {}{} {} {}.",
                    ms.len(),
                    name(o),
                    mentions(size(o)),
                    listed(ms),
                    if ms.len() == 1 { "becomes" } else { "become" },
                    new_or(was.contains_key(&id), prefix, word, id)
                )
            } else {
                format!(
                    "{}{} {} {}.",
                    mentions(ms.len() as i64),
                    listed(ms),
                    if ms.len() == 1 { "becomes" } else { "become" },
                    new_or(was.contains_key(&id), prefix, word, id)
                )
            }
        } else {
            let parts: Vec<String> = from
                .iter()
                .map(|(&o, ms)| match o {
                    None => format!(
                        "{} not linked before{}",
                        mentions(ms.len() as i64),
                        listed(ms)
                    ),
                    Some(_) if whole(o, ms) => {
                        format!("all of {}'s {}{}", name(o), size(o), listed(ms))
                    }
                    Some(_) => format!("{} of {}'s {}{}", ms.len(), name(o), size(o), listed(ms)),
                })
                .collect();
            format!(
                "{prefix}{id}{} will hold {}: {}.",
                if was.contains_key(&id) { "" } else { " (new)" },
                mentions(members.len() as i64),
                and_list(&parts)
            )
        };
        out.push(sentence);
    }
    out
}

/// ` (M1, M2)` for up to five mention ids, else nothing.
fn listed(ms: &[i64]) -> String {
    if ms.len() > 5 {
        return String::new();
    }
    let ids: Vec<String> = ms.iter().map(|m| format!("M{m}")).collect();
    format!(" ({})", ids.join(", "))
}

fn new_or(existing: bool, prefix: char, word: &str, id: i64) -> String {
    if existing {
        format!("part of {prefix}{id}")
    } else {
        format!("a new {word}, {prefix}{id}")
    }
}

fn and_list(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The two records and what the decision will change (`before` and `after`: the
/// next link run without and with it), in plain words.
pub fn preview(
    facts: &PairFacts,
    verdict: Verdict,
    before: &Placement,
    after: &Placement,
) -> String {
    let (a, b) = (&facts.a, &facts.b);
    let mut s = format!(
        "{} M{} ~ M{} ({})\n",
        if verdict == Verdict::Accept {
            "Accept"
        } else {
            "Reject"
        },
        a.mention.id,
        b.mention.id,
        match (facts.queue_status.as_deref(), facts.probability) {
            (Some("pending"), Some(p)) =>
                format!("pending in the review queue, probability {p:.4}"),
            _ => "not in the review queue".to_string(),
        }
    );
    s.push_str(&side_text(a));
    s.push_str(&side_text(b));
    s.push_str("\nWhat it will change at the next `kinlink link`:\n");
    let persons = describe_moves('P', "person", &before.person, &after.person);
    let families = describe_moves('F', "family", &before.family, &after.family);
    if persons.is_empty() && families.is_empty() {
        s.push_str("  nothing: persons and families stay as they are.\n");
    }
    for line in persons.iter().chain(&families) {
        s.push_str(&format!("  {line}\n"));
    }
    s
}

async fn decide(
    settings: &Settings,
    clock: Clock,
    args: &DecideArgs,
    verdict: Verdict,
) -> Result<u8, Failure> {
    let (a, b) = pair_args(&args.a, &args.b, &args.by)?;
    let store = open_store(settings).await?;
    let out = decide_on(&store, settings, clock, args, (a, b), verdict).await;
    store.close().await;
    out
}

async fn decide_on(
    store: &Store,
    settings: &Settings,
    clock: Clock,
    args: &DecideArgs,
    (a, b): (i64, i64),
    verdict: Verdict,
) -> Result<u8, Failure> {
    let max = settings.linkage.max_cluster_size;
    let check = |f: &PairFacts| refusal(f, verdict, args.force, max);
    let facts = match store.pair_facts(a, b).await? {
        PairLookup::Missing(ids) => return Err(Failure::Config(missing_message(&ids))),
        PairLookup::Found(f) => f,
    };
    if let Some(r) = check(&facts) {
        return Err(Failure::Config(refusal_message(&r, &facts, verdict)));
    }
    let (before, after) = simulate(store, settings, Decision { a, b, verdict }).await?;
    print!("{}", preview(&facts, verdict, &before, &after));
    if args.dry_run {
        println!("dry run: nothing recorded");
        return Ok(0);
    }
    let decided = store
        .decide(
            &NewDecision {
                a,
                b,
                verdict,
                by: &args.by,
                note: args.note.as_deref(),
                at: clock.now(),
            },
            check,
        )
        .await?;
    match decided {
        Decided::Recorded(id, _) => {
            info!(
                decision = id,
                a,
                b,
                verdict = verdict.status(),
                forced = args.force,
                "Review decision recorded"
            );
            println!(
                "{} M{a} ~ M{b} (decision {id}); the next `kinlink link` applies it",
                verdict.status()
            );
            Ok(0)
        }
        // Something changed between the preview and the transaction.
        Decided::Refused(r) => Err(Failure::Config(refusal_message(&r, &facts, verdict))),
        Decided::Missing(ids) => Err(Failure::Config(missing_message(&ids))),
    }
}

/// The next link run's persons and families without and with the decision.
async fn simulate(
    store: &Store,
    settings: &Settings,
    decision: Decision,
) -> Result<(Placement, Placement), Failure> {
    let input = store.link_input().await.context("reading mentions")?;
    let state = store
        .link_state()
        .await
        .context("reading the last link run")?;
    let opts = link_options(&settings.linkage);
    let out = tokio::task::spawn_blocking(move || {
        let mut with = state.decisions.clone();
        with.push(decision);
        (
            placement(&input, &state, &opts, &state.decisions),
            placement(&input, &state, &opts, &with),
        )
    })
    .await
    .context("the preview's linking task stopped unexpectedly")?;
    Ok(out)
}

async fn undo(settings: &Settings, clock: Clock, args: &UndoArgs) -> Result<u8, Failure> {
    let (a, b) = pair_args(&args.a, &args.b, &args.by)?;
    let store = open_store(settings).await?;
    let out = store
        .undo_decision(&Withdrawal {
            a,
            b,
            by: &args.by,
            note: args.note.as_deref(),
            at: clock.now(),
        })
        .await;
    store.close().await;
    match out? {
        Undone::Missing(ids) => Err(Failure::Config(missing_message(&ids))),
        Undone::NothingToUndo {
            queue_status,
            last_withdrawn,
        } => {
            let mut msg = format!(
                "M{a} ~ M{b} has no decision to undo: {}",
                match queue_status.as_deref() {
                    Some("pending") => "it is pending in the review queue",
                    _ => "it is not in the review queue",
                }
            );
            if let Some(d) = last_withdrawn {
                if let Some((by, at)) = &d.withdrawn {
                    msg.push_str(&format!(
                        "; its last decision ({}) was withdrawn by {by} on {}",
                        decided_words(&d),
                        when(*at)
                    ));
                }
            }
            msg.push_str("; nothing recorded");
            Err(Failure::Config(msg))
        }
        Undone::Withdrawn {
            decision,
            persons,
            families,
            kept_ids,
        } => {
            info!(
                decision = decision.id,
                a,
                b,
                verdict = decision.verdict.status(),
                "Review decision withdrawn"
            );
            println!(
                "withdrew M{a} ~ M{b}: {} (decision {})",
                decided_words(&decision),
                decision.id
            );
            println!("{}", undo_effect(&decision, &persons, &families, kept_ids));
            Ok(0)
        }
    }
}

fn undo_effect(d: &DecisionRecord, persons: &[i64], families: &[i64], kept_ids: bool) -> String {
    let ids = |prefix: char, v: &[i64]| {
        let v: Vec<String> = v.iter().map(|i| format!("{prefix}{i}")).collect();
        and_list(&v)
    };
    let mut s = if !d.applied {
        "No link run had applied it: there is nothing to put back.".to_string()
    } else if !kept_ids {
        "It was recorded before kinlink kept the ids a decision changes: the next \
         `kinlink link` links the pair as if it had never been decided, with ids by the usual rules."
            .to_string()
    } else if persons.is_empty() && families.is_empty() {
        "It changed no person or family: there is nothing to put back.".to_string()
    } else {
        let mut what = Vec::new();
        if !persons.is_empty() {
            what.push(format!("persons {}", ids('P', persons)));
        }
        if !families.is_empty() {
            what.push(format!("families {}", ids('F', families)));
        }
        format!(
            "The next `kinlink link` puts back, as they were before it: {}.",
            what.join("; ")
        )
    };
    s.push_str(if d.queued {
        "\nThe pair is pending in the review queue again."
    } else {
        "\nThe pair leaves the review queue (it was decided with --force)."
    });
    s
}

#[cfg(test)]
mod tests {
    use super::mention_arg;
    use crate::app::Failure;

    fn message(given: &str) -> String {
        match mention_arg("mention A", given) {
            Err(Failure::Config(m)) => m,
            other => panic!("{given:?}: {other:?}"),
        }
    }

    #[test]
    fn mention_ids_are_read_as_review_list_prints_them() {
        for (given, id) in [("M584", 584), ("m584", 584), ("584", 584), (" M7 ", 7)] {
            assert_eq!(mention_arg("mention A", given).ok(), Some(id), "{given:?}");
        }
        assert!(message("P12").contains("is a person id, not a mention id"));
        assert!(message("P12").contains("kinlink explain person P12"));
        assert!(message("f3").contains("is a family id"));
        for bad in ["abc", "M0", "M-1", "A5", ""] {
            let m = message(bad);
            assert!(m.starts_with("mention A"), "{m}");
            assert!(m.contains("M584 (or m584, 584)"), "{m}");
        }
    }
}
