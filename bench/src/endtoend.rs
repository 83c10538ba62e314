//! `kinlink-bench e2e`: a million person rows from several agencies, written as feed
//! CSV files, then `ingest` and `link` through kinlink's pipeline with the store —
//! the time a council waits, not the in-memory core's. Then the incremental case: a
//! night's new person rows, ingested and linked against the million.
//!
//! The people are `synth`'s (households, twins, namesakes, typos); each mention
//! becomes one row of its agency's feed as docs/feeds.md lays it out (a pupil one
//! attendance mark, a police mention one notification row, a tenant one notice, a
//! case person one case row).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use kinlink::clock::Clock;
use kinlink::domain::FeedKind;
use kinlink::link::LinkMention;
use kinlink::pipeline::{self, FileOutcome, IngestRequest, LinkScope, NoProgress};
use kinlink::store::Store;

use crate::cli::BenchE2eArgs;
use crate::synth::{synth_mentions, SynthOptions};

const PG_DATABASE: &str = "kinlink_bench_e2e";

/// The figures of one store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct E2eFigures {
    pub store: String,
    pub rows: usize,
    pub files: usize,
    pub ingest_s: f64,
    pub link_s: f64,
    pub total_s: f64,
    pub new_rows: usize,
    pub new_ingest_s: f64,
    pub new_link_s: f64,
    pub new_total_s: f64,
    pub changed_mentions: usize,
    pub persons: i64,
    pub peak_rss_mib: f64,
}

/// `kinlink-bench e2e`.
pub async fn run(args: &BenchE2eArgs) -> anyhow::Result<u8> {
    let work = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let mut opts = SynthOptions::new(args.rows + args.new_rows);
    opts.seed = args.seed;
    eprintln!(
        "generating {} person rows ({} of them new) …",
        args.rows + args.new_rows,
        args.new_rows
    );
    let (mentions, _) = synth_mentions(&opts);
    let step = (mentions.len() / args.new_rows.max(1)).max(1);
    let new: HashSet<i64> = mentions
        .iter()
        .step_by(step)
        .take(args.new_rows)
        .map(|m| m.id)
        .collect();
    // A notification is one agency's record: all its rows are new or none is.
    let new_groups: HashSet<&str> = mentions
        .iter()
        .filter(|m| new.contains(&m.id))
        .filter_map(|m| m.group.as_deref())
        .collect();
    let is_new = |m: &LinkMention| {
        new.contains(&m.id) || m.group.as_deref().is_some_and(|g| new_groups.contains(g))
    };
    let base: Vec<&LinkMention> = mentions.iter().filter(|m| !is_new(m)).collect();
    let later: Vec<&LinkMention> = mentions.iter().filter(|m| is_new(m)).collect();

    let mut all = Vec::new();
    for store in &args.stores {
        let dir = work.path().join(store);
        std::fs::create_dir_all(&dir)?;
        let f = one_store(store, &dir, &base, &later, args.postgres.as_deref()).await?;
        eprintln!(
            "  {store}: ingest {:.1} s + link {:.1} s = {:.1} s; new rows {:.2} s + {:.2} s = {:.2} s",
            f.ingest_s, f.link_s, f.total_s, f.new_ingest_s, f.new_link_s, f.new_total_s
        );
        all.push(f);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!(
            "| store | person rows | files | ingest s | link s | **total s** | new rows | ingest s | link s | **total s** | changed mentions | persons | peak MiB |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for f in &all {
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | **{:.2}** | {} | {:.2} | {:.2} | **{:.2}** | {} | {} | {:.0} |",
                f.store,
                f.rows,
                f.files,
                f.ingest_s,
                f.link_s,
                f.total_s,
                f.new_rows,
                f.new_ingest_s,
                f.new_link_s,
                f.new_total_s,
                f.changed_mentions,
                f.persons,
                f.peak_rss_mib
            );
        }
        println!(
            "\nTargets: a million person rows ingested and linked in ≤ 10 s on SQLite (≤ 15 s on \
             PostgreSQL) within 2 GiB; 20,000 new rows against them in ≤ 2 s."
        );
    }
    if args.stores.iter().any(|s| s == "postgres") {
        if let Some(url) = &args.postgres {
            kinlink_test_support::drop_postgres(url, PG_DATABASE).await?;
        }
    }
    Ok(0)
}

async fn one_store(
    store_kind: &str,
    dir: &Path,
    base: &[&LinkMention],
    later: &[&LinkMention],
    postgres: Option<&str>,
) -> anyhow::Result<E2eFigures> {
    let inbox = dir.join("inbox");
    let sources = write_feeds(base, &inbox, "base")?;
    std::fs::create_dir_all(dir.join("jobs"))?;
    let mut config = format!("state_dir = \"{}\"\n\n", dir.join("state").display());
    for (source, kind) in &sources {
        config.push_str(&format!(
            "[[source]]\nname = \"{source}\"\nkind = \"{}\"\nformat = \"csv\"\n\
             transport = {{ type = \"dir\", path = \"inbox/{source}\", settle_secs = 0, \
             max_file_bytes = 4294967296 }}\nmax_bad_rows = 1.0\n\n",
            kind.as_str()
        ));
    }
    let path = dir.join("kinlink.toml");
    std::fs::write(&path, &config)?;
    let settings = kinlink::config::load_str(&config, &path)
        .map_err(|p| anyhow::anyhow!("the e2e config does not load: {p:?}"))?;
    std::fs::create_dir_all(&settings.state_dir)?;
    let store = match store_kind {
        "sqlite" => Store::open_sqlite(&settings.state_dir.join("kinlink.db")).await?,
        "postgres" => {
            let url = postgres.context("--postgres URL (or KINLINK_BENCH_POSTGRES) is needed")?;
            kinlink_test_support::fresh_postgres(url, PG_DATABASE).await?
        }
        other => bail!("unknown store {other:?}: sqlite or postgres"),
    };
    let clock = Clock::system();
    let mut f = E2eFigures {
        store: store_kind.to_owned(),
        rows: base.len(),
        files: sources.len(),
        new_rows: later.len(),
        ..E2eFigures::default()
    };

    let t = Instant::now();
    ingest(&settings, &store, clock).await?;
    f.ingest_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = pipeline::link(&settings, &store, clock, LinkScope::Incremental).await?;
    f.link_s = t.elapsed().as_secs_f64();
    f.total_s = f.ingest_s + f.link_s;

    write_feeds(later, &inbox, "night")?;
    let t = Instant::now();
    ingest(&settings, &store, clock).await?;
    f.new_ingest_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let night = pipeline::link(&settings, &store, clock, LinkScope::Incremental).await?;
    f.new_link_s = t.elapsed().as_secs_f64();
    f.new_total_s = f.new_ingest_s + f.new_link_s;
    f.changed_mentions = night.changed_mentions;
    f.persons = night.counts.persons;
    let _ = report;
    store.close().await;
    f.peak_rss_mib = crate::peak_rss_kib() as f64 / 1024.0;
    Ok(f)
}

async fn ingest(
    settings: &kinlink::config::Settings,
    store: &Store,
    clock: Clock,
) -> anyhow::Result<()> {
    let report = pipeline::ingest(
        settings,
        store,
        clock,
        &IngestRequest::default(),
        &NoProgress,
    )
    .await?;
    for file in &report.files {
        if !matches!(file, FileOutcome::Ingested { .. }) {
            bail!("an e2e file was not ingested: {file:?}");
        }
    }
    Ok(())
}

/// Writes one CSV file per source into `inbox/<source>/<name>.csv`; returns the
/// sources and their kinds.
fn write_feeds(
    mentions: &[&LinkMention],
    inbox: &Path,
    name: &str,
) -> anyhow::Result<Vec<(String, FeedKind)>> {
    let mut by_source: BTreeMap<(String, FeedKind), Vec<&LinkMention>> = BTreeMap::new();
    for m in mentions {
        by_source
            .entry((m.source.clone(), m.kind))
            .or_default()
            .push(m);
    }
    for ((source, kind), ms) in &by_source {
        let folder = inbox.join(source);
        std::fs::create_dir_all(&folder)?;
        let mut w = csv::Writer::from_path(folder.join(format!("{name}.csv")))?;
        write_rows(&mut w, *kind, ms)?;
        w.flush()?;
    }
    Ok(by_source.into_keys().collect())
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn date(d: Option<chrono::NaiveDate>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn write_rows(
    w: &mut csv::Writer<std::fs::File>,
    kind: FeedKind,
    ms: &[&LinkMention],
) -> anyhow::Result<()> {
    match kind {
        FeedKind::Attendance => {
            w.write_record([
                "school_urn",
                "upn",
                "forename",
                "surname",
                "dob",
                "gender",
                "address_line1",
                "postcode",
                "date",
                "session",
                "mark",
            ])?;
            for m in ms {
                w.write_record([
                    m.school_urn
                        .map(|u| u.to_string())
                        .unwrap_or_default()
                        .as_str(),
                    opt(&m.upn),
                    opt(&m.forename),
                    opt(&m.surname),
                    &date(m.dob),
                    opt(&m.gender),
                    opt(&m.address_line1),
                    opt(&m.postcode),
                    &date(m.seen_on),
                    "AM",
                    "/",
                ])?;
            }
        }
        FeedKind::PoliceDa => {
            w.write_record([
                "notification_id",
                "incident_at",
                "role",
                "forename",
                "surname",
                "dob",
                "gender",
                "address_line1",
                "postcode",
                "school_urn",
            ])?;
            for m in ms {
                w.write_record([
                    opt(&m.group),
                    &date(m.seen_on),
                    &m.role,
                    opt(&m.forename),
                    opt(&m.surname),
                    &date(m.dob),
                    opt(&m.gender),
                    opt(&m.address_line1),
                    opt(&m.postcode),
                    &m.school_urn.map(|u| u.to_string()).unwrap_or_default(),
                ])?;
            }
        }
        FeedKind::Housing => {
            w.write_record([
                "notice_id",
                "notice_type",
                "served_on",
                "address_line1",
                "postcode",
                "tenant_forename",
                "tenant_surname",
                "tenant_dob",
            ])?;
            for m in ms {
                w.write_record([
                    m.mention_key.as_str(),
                    "section_8",
                    &date(m.seen_on),
                    opt(&m.address_line1),
                    opt(&m.postcode),
                    opt(&m.forename),
                    opt(&m.surname),
                    &date(m.dob),
                ])?;
            }
        }
        FeedKind::Assessment => {
            w.write_record([
                "case_id",
                "family_id",
                "person_id",
                "role",
                "forename",
                "surname",
                "dob",
                "gender",
                "upn",
                "nhs_number",
                "address_line1",
                "postcode",
                "referral_date",
            ])?;
            for m in ms {
                w.write_record([
                    format!("C-{}", m.mention_key).as_str(),
                    &format!("F-{}", m.mention_key),
                    &m.mention_key,
                    &m.role,
                    opt(&m.forename),
                    opt(&m.surname),
                    &date(m.dob),
                    opt(&m.gender),
                    opt(&m.upn),
                    opt(&m.nhs_number),
                    opt(&m.address_line1),
                    opt(&m.postcode),
                    &date(m.seen_on),
                ])?;
            }
        }
    }
    Ok(())
}
