//! Linking quality on the demo borough's ground truth: the demo's feeds are read
//! with the real ingest path (the config the demo writes, `ingest::open`), turned into
//! the mentions the store would hold (one per source and mention key, the last record
//! winning, as the store's upsert does), linked, and scored against
//! `truth/mentions.csv` with `kinlink_bench::quality` (a dev-dependency).
//!
//! The synthetic borough must meet the linkage quality targets (below) and never merge twins.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use kinlink::config::Transport;
use kinlink::demo::{generate, DemoOptions};
use kinlink::domain::records::Record;
use kinlink::link::{self, LinkMention, LinkOptions, Previous};
use kinlink_bench::quality::evaluate_result;
use kinlink_bench::synth::Truth;

/// cluster-level pairwise precision on the generator's default corruption.
const TARGET_CLUSTER_PRECISION: f64 = 0.998;
/// cluster-level pairwise recall on the generator's default corruption.
const TARGET_CLUSTER_RECALL: f64 = 0.98;
/// the review queue as a share of mentions, in percent.
const TARGET_REVIEW_PERCENT: f64 = 1.0;

/// The mention a record makes, as the store would keep it.
fn mention(source: &str, record: &Record) -> LinkMention {
    let p = record.mention();
    let mut m = LinkMention {
        id: 0,
        source: source.to_string(),
        kind: record.kind(),
        mention_key: p.mention_key.clone(),
        role: p.role.clone(),
        forename: p.forename.clone(),
        surname: p.surname.clone(),
        dob: p.dob,
        gender: p.gender.clone(),
        address_line1: p.address_line1.clone(),
        postcode: p.postcode.as_ref().map(|pc| pc.as_str().to_string()),
        uprn: p.uprn.map(|u| u.get() as i64),
        upn: p
            .upn
            .as_ref()
            .filter(|u| u.is_valid())
            .map(|u| u.as_str().to_string()),
        nhs_number: p
            .nhs_number
            .as_ref()
            .filter(|n| n.is_valid())
            .map(|n| n.as_str().to_string()),
        school_urn: p.school_urn.map(|u| u.get()),
        group: None,
        seen_on: None,
        identity_conflict: false,
    };
    let seen: NaiveDate = match record {
        Record::Attendance(a) => {
            m.school_urn = m.school_urn.or(Some(a.school_urn.get()));
            a.date
        }
        Record::PoliceDa(d) => {
            m.group = Some(d.notification_id.clone());
            m.address_line1 = m.address_line1.or(Some(d.address_line1.clone()));
            m.postcode = m.postcode.or(Some(d.postcode.as_str().to_string()));
            m.uprn = m.uprn.or(d.uprn.map(|u| u.get() as i64));
            m.school_urn = m.school_urn.or(d.school_urn.map(|u| u.get()));
            d.incident_at.date_naive()
        }
        Record::Housing(h) => {
            m.address_line1 = m.address_line1.or(Some(h.address_line1.clone()));
            m.postcode = m.postcode.or(Some(h.postcode.as_str().to_string()));
            m.uprn = m.uprn.or(h.uprn.map(|u| u.get() as i64));
            h.served_on
        }
        Record::Assessment(c) => c.referral_date,
    };
    m.seen_on = Some(seen);
    m
}

/// Every mention of the demo's feeds, in (source, file, row) order of first
/// appearance, with ids 1..=N.
fn demo_mentions(dir: &Path) -> Vec<LinkMention> {
    let settings = kinlink::config::load(&dir.join("kinlink.toml")).expect("demo config loads");
    let mut mentions: Vec<LinkMention> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    for source in &settings.sources {
        let Transport::Dir(kinlink::config::DirTransport { path, .. }) = &source.transport else {
            panic!("demo source {} is not a folder", source.name);
        };
        let mut files: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut reader = kinlink::ingest::open(source, &file, &name).expect("demo file opens");
            loop {
                let batch = reader.next_batch(4096).expect("demo file reads");
                if batch.is_empty() {
                    break;
                }
                for record in batch.into_iter().flatten() {
                    let mut m = mention(&source.name, &record);
                    let key = (m.source.clone(), m.mention_key.clone());
                    match at.get(&key) {
                        Some(&i) => {
                            // The store keeps the latest record's values.
                            let seen = mentions[i].seen_on.max(m.seen_on);
                            m.id = mentions[i].id;
                            m.seen_on = seen;
                            mentions[i] = m;
                        }
                        None => {
                            m.id = mentions.len() as i64 + 1;
                            at.insert(key, mentions.len());
                            mentions.push(m);
                        }
                    }
                }
            }
        }
    }
    mentions
}

/// `truth/mentions.csv` as (source, mention key) → truth.
fn demo_truth(dir: &Path) -> HashMap<(String, String), Truth> {
    let mut r = csv::Reader::from_path(dir.join("truth/mentions.csv")).unwrap();
    let number = |s: &str| s[1..].parse::<u64>().expect("P/F + digits");
    r.records()
        .map(|row| {
            let row = row.unwrap();
            (
                (row[0].to_string(), row[1].to_string()),
                Truth {
                    person: number(&row[2]),
                    family: number(&row[3]),
                    twin_of: None,
                    noise: 0,
                },
            )
        })
        .collect()
}

#[test]
fn demo_borough_linking_quality() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&DemoOptions {
        families: 300,
        seed: 11,
        out_dir: dir.path().to_path_buf(),
        ..DemoOptions::default()
    })
    .unwrap();
    let mentions = demo_mentions(dir.path());
    let truth_by_key = demo_truth(dir.path());
    let missing: Vec<(&str, &str)> = mentions
        .iter()
        .filter(|m| !truth_by_key.contains_key(&(m.source.clone(), m.mention_key.clone())))
        .map(|m| (m.source.as_str(), m.mention_key.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "mentions without truth: {missing:?}");
    assert_eq!(
        mentions.len(),
        summary.mentions,
        "one mention per truth row"
    );
    let truth: Vec<Truth> = mentions
        .iter()
        .map(|m| truth_by_key[&(m.source.clone(), m.mention_key.clone())])
        .collect();
    let ids: Vec<i64> = mentions.iter().map(|m| m.id).collect();

    let result = link::link(&mentions, &Previous::default(), &LinkOptions::default());
    let q = evaluate_result(&ids, &truth, &result);
    println!(
        "demo (300 families, seed 11): {} mentions, {} true persons, {} found; cluster P {:.4} \
         R {:.4} F1 {:.4}; pair P {:.4} R {:.4} F1 {:.4}; review {} ({:.2}%); largest {}",
        q.mentions,
        q.true_persons,
        q.predicted_persons,
        q.cluster_precision,
        q.cluster_recall,
        q.cluster_f1,
        q.pair_precision,
        q.pair_recall,
        q.pair_f1,
        q.review_pairs,
        q.review_percent,
        q.largest_cluster
    );

    // Every mention is in exactly one person, whatever the engine.
    let mut seen: Vec<i64> = result.persons.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, ids);
    // There is linking to do: people appear in several feeds.
    assert!(q.true_pairs > 100, "{}", q.true_pairs);
    assert!(q.cluster_recall > 0.0);

    assert!(q.cluster_precision >= TARGET_CLUSTER_PRECISION, "{q:?}");
    assert!(q.cluster_recall >= TARGET_CLUSTER_RECALL, "{q:?}");
    assert!(q.review_percent <= TARGET_REVIEW_PERCENT, "{q:?}");
    assert_eq!(q.twins_merged, 0, "{q:?}");
}
