//! The figures behind `/metrics`: counts read from the tables at scrape time, so
//! every instance of a multi-daemon install reports the same numbers.

use super::{Store, StoreError};

/// One labelled sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `(label, value)` pairs.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family: name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
    pub samples: Vec<Sample>,
}

fn family(name: &'static str, help: &'static str, kind: &'static str) -> Family {
    Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    }
}

impl Store {
    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: i64 =
            on_pool!(self, p => sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(p).await)?;
        Ok(())
    }

    /// Every metric family read from the store.
    pub async fn metric_families(&self) -> Result<Vec<Family>, StoreError> {
        let mut out = self.feed_families().await?;
        out.extend(self.identity_families().await?);
        out.extend(self.alert_families().await?);
        out.extend(self.job_families().await?);
        Ok(out)
    }

    /// Feed files, rows and quarantine by source; each source's last success.
    async fn feed_families(&self) -> Result<Vec<Family>, StoreError> {
        let mut out = Vec::new();

        let mut files = family(
            "kinlink_feed_files",
            "Feed files in the ledger, by source and status (fetched, ingested, rejected).",
            "gauge",
        );
        let mut rows = family(
            "kinlink_rows_ingested",
            "Records stored from ingested files, by source.",
            "gauge",
        );
        let mut quarantined = family(
            "kinlink_rows_quarantined",
            "Rows quarantined from ingested files, by source.",
            "gauge",
        );
        let mut last = family(
            "kinlink_source_last_success_timestamp_seconds",
            "When a source's last file was ingested (Unix time).",
            "gauge",
        );
        let per_source: Vec<(String, String, i64, i64, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT source, status, COUNT(*), CAST(COALESCE(SUM(records), 0) AS BIGINT), \
             CAST(COALESCE(SUM(quarantined), 0) AS BIGINT) FROM feed_files GROUP BY source, status ORDER BY source, status")
            .fetch_all(p).await)?;
        for (source, status, n, records, q) in per_source {
            files.samples.push(Sample {
                labels: vec![("source", source.clone()), ("status", status.clone())],
                value: n as f64,
            });
            if status == "ingested" {
                rows.samples.push(Sample {
                    labels: vec![("source", source.clone())],
                    value: records as f64,
                });
                quarantined.samples.push(Sample {
                    labels: vec![("source", source)],
                    value: q as f64,
                });
            }
        }
        for s in self.source_stats().await? {
            if let Some(at) = s.last_success_at {
                last.samples.push(Sample {
                    labels: vec![("source", s.name)],
                    value: at.timestamp() as f64,
                });
            }
        }
        out.extend([files, rows, quarantined, last]);

        Ok(out)
    }

    /// Mentions, persons, the review queue and the kept links.
    async fn identity_families(&self) -> Result<Vec<Family>, StoreError> {
        let mut out = Vec::new();
        let mentions: i64 = on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM mentions").fetch_one(p).await)?;
        let persons: i64 = on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM persons WHERE merged_into IS NULL").fetch_one(p).await)?;
        let pending: i64 = on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM review_queue WHERE status = 'pending'").fetch_one(p).await)?;
        out.push(scalar_family(
            "kinlink_mentions",
            "Person mentions in the store.",
            mentions,
        ));
        out.push(scalar_family(
            "kinlink_persons",
            "Persons (live ids).",
            persons,
        ));
        out.push(scalar_family(
            "kinlink_review_queue_pending",
            "Pairs waiting for a person to decide.",
            pending,
        ));

        let mut links = family("kinlink_links", "Kept pairs of mentions, by band.", "gauge");
        let by_band: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT band, COUNT(*) FROM links GROUP BY band ORDER BY band").fetch_all(p).await)?;
        for (band, n) in by_band {
            links.samples.push(Sample {
                labels: vec![("band", band)],
                value: n as f64,
            });
        }
        out.push(links);

        Ok(out)
    }

    /// Alerts by rule, severity and status; the outbox by status.
    async fn alert_families(&self) -> Result<Vec<Family>, StoreError> {
        let mut out = Vec::new();
        let mut alerts = family(
            "kinlink_alerts",
            "Alerts by rule, severity and status.",
            "gauge",
        );
        let by_rule: Vec<(String, String, String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT rule, severity, status, COUNT(*) FROM alerts GROUP BY rule, severity, status \
             ORDER BY rule, severity, status").fetch_all(p).await)?;
        for (rule, severity, status, n) in by_rule {
            alerts.samples.push(Sample {
                labels: vec![("rule", rule), ("severity", severity), ("status", status)],
                value: n as f64,
            });
        }
        out.push(alerts);

        let mut outbox = family("kinlink_emails", "Emails in the outbox by status.", "gauge");
        let o = self.outbox_counts().await?;
        for (status, n) in [
            ("queued", o.queued),
            ("sending", o.sending),
            ("sent", o.sent),
            ("failed", o.failed),
        ] {
            outbox.samples.push(Sample {
                labels: vec![("status", status.to_string())],
                value: n as f64,
            });
        }
        out.push(outbox);

        Ok(out)
    }

    /// Each job's last run: its duration, its outcome and the last success.
    async fn job_families(&self) -> Result<Vec<Family>, StoreError> {
        let mut out = Vec::new();
        // Jobs: the last run's duration and outcome, and the last success.
        let mut duration = family(
            "kinlink_job_last_duration_seconds",
            "How long each job's latest finished run took.",
            "gauge",
        );
        let mut outcome = family(
            "kinlink_job_last_run_ok",
            "1 when each job's latest run succeeded, 0 when it did not.",
            "gauge",
        );
        let mut success = family(
            "kinlink_job_last_success_timestamp_seconds",
            "When each job last finished successfully (Unix time).",
            "gauge",
        );
        for r in self.last_runs().await? {
            if let (Some(start), Some(end)) = (r.started_at, r.finished_at) {
                duration.samples.push(Sample {
                    labels: vec![("job", r.job.clone())],
                    value: (end - start).num_milliseconds() as f64 / 1000.0,
                });
            }
            if let Some(o) = r.outcome {
                outcome.samples.push(Sample {
                    labels: vec![("job", r.job.clone())],
                    value: f64::from(u8::from(o.as_str() == "ok")),
                });
            }
        }
        let last_ok: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT job, MAX(finished_at) FROM job_runs WHERE outcome = 'ok' GROUP BY job ORDER BY job")
            .fetch_all(p).await)?;
        for (job, at) in last_ok {
            if let Some(at) = at {
                success.samples.push(Sample {
                    labels: vec![("job", job)],
                    value: at.timestamp() as f64,
                });
            }
        }
        out.extend([duration, outcome, success]);
        Ok(out)
    }
}

/// A family of one unlabelled gauge.
fn scalar_family(name: &'static str, help: &'static str, value: i64) -> Family {
    Family {
        name,
        help,
        kind: "gauge",
        samples: vec![Sample {
            labels: Vec::new(),
            value: value as f64,
        }],
    }
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn render(families: &[Family]) -> String {
    let mut s = String::new();
    for f in families {
        s.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            f.name, f.help, f.name, f.kind
        ));
        for sample in &f.samples {
            s.push_str(f.name);
            if !sample.labels.is_empty() {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                s.push('{');
                s.push_str(&labels.join(","));
                s.push('}');
            }
            s.push_str(&format!(" {}\n", sample.value));
        }
    }
    s
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
