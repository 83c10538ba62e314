//! `kinlink-bench link`: identity resolution on synthetic mentions with ground truth
//! (`synth`), the way the linkage targets are measured: per size, candidate pairs, seconds
//! per stage, wall time of `link::link` (generation excluded), peak memory, and
//! cluster- and pair-level quality (`quality`); then an incremental run of new
//! mentions against an existing, already linked base.
//!
//! Each run happens in a child process of its own (`--phase`), so that its peak
//! memory (VmHWM) is its own. That peak includes the generated mentions, which any
//! real run also holds in memory; the resident size after generation is reported
//! beside it.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use kinlink::link::{self, LinkMention, LinkOptions, Previous};

use crate::cli::BenchLinkArgs;
use crate::peak_rss_kib;
use crate::quality::{evaluate_result, Quality};
use crate::synth::{synth_mentions, SynthOptions};

/// The figures of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkFigures {
    /// `full` or `incremental`.
    pub run: String,
    /// Mentions linked (base and new for an incremental run).
    pub mentions: usize,
    /// New mentions of an incremental run.
    pub new_mentions: Option<usize>,
    /// Seconds to generate the synthetic mentions (not part of `link_s`).
    pub generate_s: f64,
    /// Resident memory after generation, before linking.
    pub rss_before_link_mib: f64,
    pub candidate_pairs: usize,
    pub pairs_per_mention: f64,
    pub prepare_s: f64,
    pub block_s: f64,
    pub em_s: f64,
    pub score_s: f64,
    pub cluster_s: f64,
    /// Wall time of `link::link`.
    pub link_s: f64,
    /// Wall time of the full run on the base, before an incremental run.
    pub base_link_s: Option<f64>,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_mib: f64,
    pub quality: Quality,
}

/// Runs the benchmark (or, with `--phase`, one run of it).
pub async fn run(args: &BenchLinkArgs) -> anyhow::Result<u8> {
    if let Some(phase) = &args.phase {
        let phase = phase.clone();
        let (mentions, seed) = (args.mentions.clone(), args.seed);
        let (base, new) = (args.incremental_base, args.incremental_new);
        let options = options(args)?;
        let figures = tokio::task::spawn_blocking(move || match phase.as_str() {
            "full" => Ok(full(
                mentions.first().copied().unwrap_or(100_000),
                seed,
                &options,
            )),
            "incremental" => Ok(incremental(base, new, seed, &options)),
            other => bail!("unknown phase {other:?}: expected full or incremental"),
        })
        .await??;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(0);
    }
    if args.mentions.is_empty() || args.mentions.contains(&0) {
        bail!("--mentions needs one or more sizes above 0, e.g. --mentions 100000,1000000");
    }
    let exe = std::env::current_exe().context("finding the kinlink-bench binary")?;
    let child = |extra: Vec<String>| -> anyhow::Result<LinkFigures> {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["link", "--seed", &args.seed.to_string()])
            .args(&extra);
        if let Some(v) = args.auto_link {
            cmd.args(["--auto-link", &v.to_string()]);
        }
        if let Some(v) = args.review {
            cmd.args(["--review", &v.to_string()]);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running bench link {}", extra.join(" ")))?;
        if !out.status.success() {
            bail!(
                "bench link {} failed: {}",
                extra.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or("");
        serde_json::from_str(line.trim())
            .with_context(|| format!("reading the figures of bench link {}", extra.join(" ")))
    };
    let mut results = Vec::new();
    for &n in &args.mentions {
        if !args.json {
            eprintln!("linking {n} synthetic mentions …");
        }
        results.push(child(vec![
            "--phase".into(),
            "full".into(),
            "--mentions".into(),
            n.to_string(),
        ])?);
    }
    if args.incremental_base > 0 && args.incremental_new > 0 {
        if !args.json {
            eprintln!(
                "incremental: {} new mentions against {} …",
                args.incremental_new, args.incremental_base
            );
        }
        results.push(child(vec![
            "--phase".into(),
            "incremental".into(),
            "--incremental-base".into(),
            args.incremental_base.to_string(),
            "--incremental-new".into(),
            args.incremental_new.to_string(),
        ])?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", markdown(&results));
    }
    Ok(0)
}

/// The default link options with the bands given on the command line.
fn options(args: &BenchLinkArgs) -> anyhow::Result<LinkOptions> {
    let mut o = LinkOptions::default();
    o.auto_link = args.auto_link.unwrap_or(o.auto_link);
    o.review = args.review.unwrap_or(o.review);
    if !(0.0 < o.review && o.review < o.auto_link && o.auto_link <= 1.0) {
        bail!(
            "--review {} and --auto-link {} must satisfy 0 < review < auto_link <= 1",
            o.review,
            o.auto_link
        );
    }
    Ok(o)
}

/// A full run of `n` mentions.
fn full(n: usize, seed: u64, options: &LinkOptions) -> LinkFigures {
    let t = Instant::now();
    let mut opts = SynthOptions::new(n);
    opts.seed = seed;
    let (mentions, truth) = synth_mentions(&opts);
    let generate_s = t.elapsed().as_secs_f64();
    let rss = rss_kib() as f64 / 1024.0;
    let t = Instant::now();
    let result = link::link(&mentions, &Previous::default(), options);
    let link_s = t.elapsed().as_secs_f64();
    let peak = peak_rss_kib() as f64 / 1024.0;
    let ids: Vec<i64> = mentions.iter().map(|m| m.id).collect();
    let quality = evaluate_result(&ids, &truth, &result);
    figures(
        "full",
        &result.stats,
        quality,
        generate_s,
        rss,
        link_s,
        peak,
    )
}

/// `base` mentions linked in full, then `new` more linked incrementally against them.
/// The new ones are spread evenly through the generated mentions, so they come from
/// every feed and many are new mentions of people already in the base.
fn incremental(base: usize, new: usize, seed: u64, options: &LinkOptions) -> LinkFigures {
    let t = Instant::now();
    let mut opts = SynthOptions::new(base + new);
    opts.seed = seed;
    let (mentions, truth) = synth_mentions(&opts);
    let generate_s = t.elapsed().as_secs_f64();
    let changed = spread(&mentions, new);
    let old: Vec<LinkMention> = mentions
        .iter()
        .filter(|m| !changed.contains(&m.id))
        .cloned()
        .collect();
    let rss = rss_kib() as f64 / 1024.0;
    let t = Instant::now();
    let first = link::link(&old, &Previous::default(), options);
    let base_link_s = t.elapsed().as_secs_f64();
    drop(old);
    let previous = Previous {
        pairs: first.pairs,
        decisions: Vec::new(),
        model: Some(first.model),
        changed: Some(changed),
    };
    let t = Instant::now();
    let result = link::link(&mentions, &previous, options);
    let link_s = t.elapsed().as_secs_f64();
    let peak = peak_rss_kib() as f64 / 1024.0;
    let ids: Vec<i64> = mentions.iter().map(|m| m.id).collect();
    let quality = evaluate_result(&ids, &truth, &result);
    let mut f = figures(
        "incremental",
        &result.stats,
        quality,
        generate_s,
        rss,
        link_s,
        peak,
    );
    f.new_mentions = Some(new);
    f.base_link_s = Some(base_link_s);
    f
}

/// `new` mention ids picked at an even stride through `mentions`.
fn spread(mentions: &[LinkMention], new: usize) -> HashSet<i64> {
    let stride = (mentions.len() / new.max(1)).max(1);
    mentions
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % stride == 0)
        .map(|(_, m)| m.id)
        .take(new)
        .collect()
}

fn figures(
    run: &str,
    stats: &link::LinkStats,
    quality: Quality,
    generate_s: f64,
    rss_before_link_mib: f64,
    link_s: f64,
    peak_rss_mib: f64,
) -> LinkFigures {
    LinkFigures {
        run: run.to_string(),
        mentions: quality.mentions,
        new_mentions: None,
        generate_s,
        rss_before_link_mib,
        candidate_pairs: stats.candidate_pairs,
        pairs_per_mention: stats.candidate_pairs as f64 / quality.mentions.max(1) as f64,
        prepare_s: stats.prepare_s,
        block_s: stats.block_s,
        em_s: stats.em_s,
        score_s: stats.score_s,
        cluster_s: stats.cluster_s,
        link_s,
        base_link_s: None,
        peak_rss_mib,
        quality,
    }
}

/// Current resident memory of this process, from /proc (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The figures as two markdown tables (speed, quality) and the linkage targets.
pub fn markdown(results: &[LinkFigures]) -> String {
    let mut out = String::new();
    let label = |f: &LinkFigures| match f.new_mentions {
        Some(new) => format!(
            "{} new + {} (incremental)",
            thousands(new),
            thousands(f.mentions - new)
        ),
        None => thousands(f.mentions),
    };
    out.push_str("\n### Speed and memory\n\n");
    out.push_str(
        "| mentions | candidate pairs | pairs/mention | prepare s | block s | EM s | score s \
         | cluster s | link wall s | peak MiB | MiB before link | generate s |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for f in results {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** | {:.0} | {:.0} | {:.2} |\n",
            label(f),
            thousands(f.candidate_pairs),
            f.pairs_per_mention,
            f.prepare_s,
            f.block_s,
            f.em_s,
            f.score_s,
            f.cluster_s,
            f.link_s,
            f.peak_rss_mib,
            f.rss_before_link_mib,
            f.generate_s,
        ));
    }
    for f in results {
        if let (Some(new), Some(base_s)) = (f.new_mentions, f.base_link_s) {
            out.push_str(&format!(
                "\nIncremental: {} new mentions against {} existing linked in **{:.2} s** \
                 (the full run of the {} existing took {:.2} s).\n",
                thousands(new),
                thousands(f.mentions - new),
                f.link_s,
                thousands(f.mentions - new),
                base_s
            ));
        }
    }
    out.push_str("\n### Quality against the truth\n\n");
    out.push_str(
        "| mentions | true persons | persons found | cluster P | cluster R | cluster F1 \
         | pair P | pair R | pair F1 | review queue | review % | twins merged | largest person |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for f in results {
        let q = &f.quality;
        out.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.2} | {} of {} | {} |\n",
            label(f),
            thousands(q.true_persons),
            thousands(q.predicted_persons),
            q.cluster_precision,
            q.cluster_recall,
            q.cluster_f1,
            q.pair_precision,
            q.pair_recall,
            q.pair_f1,
            thousands(q.review_pairs),
            q.review_percent,
            q.twins_merged,
            q.twin_pairs,
            q.largest_cluster,
        ));
    }
    if let Some(f) = results.iter().rfind(|f| f.new_mentions.is_none()) {
        let q = &f.quality;
        out.push_str(&format!(
            "\nMisses by corruption at {} mentions: {} mentions stranded (their person has \
             other mentions, none in theirs). Stranded / with the corruption:",
            thousands(f.mentions),
            thousands(q.stranded)
        ));
        for (kind, stranded, of) in &q.stranded_by_noise {
            out.push_str(&format!(
                " {kind} {}/{};",
                thousands(*stranded),
                thousands(*of)
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "\nTargets: 1,000,000 mentions in ≤ 10 s wall with peak ≤ 2 GiB; \
         20,000 new against 1,000,000 in ≤ 2 s; cluster precision ≥ 0.998 and recall ≥ 0.98; \
         no twins merged; review queue ≤ 1% of mentions.\n\
         Pair P/R/F1 count the scored pairs in band link against every true pair (a true \
         pair never scored is missed).\n",
    );
    out
}

/// 1234567 → "1,234,567".
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(3_000_000), "3,000,000");
    }

    #[test]
    fn a_small_full_run_measures_and_scores() {
        let f = full(3_000, 9, &LinkOptions::default());
        assert_eq!(f.run, "full");
        assert_eq!(f.mentions, 3_000);
        assert!(f.quality.true_pairs > 0);
        // Whatever the engine, every mention is in one person.
        assert!(f.quality.predicted_persons <= 3_000);
        let table = markdown(&[f]);
        assert!(table.contains("| 3,000 |"), "{table}");
    }

    #[test]
    fn new_mentions_are_spread_and_counted() {
        let (mentions, _) = synth_mentions(&SynthOptions::new(1_020));
        let changed = spread(&mentions, 20);
        assert_eq!(changed.len(), 20);
        assert!(changed.contains(&51) && changed.contains(&1020));
        let f = incremental(500, 25, 3, &LinkOptions::default());
        assert_eq!((f.mentions, f.new_mentions), (525, Some(25)));
        assert!(f.base_link_s.is_some());
        assert!(markdown(&[f]).contains("25 new mentions against 500 existing"));
    }
}
