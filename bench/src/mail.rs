//! `kinlink-bench mail`: compose and send N digests (default 5,000: one per
//! recipient, two alerts each) from a fresh SQLite store, through the file
//! transport and through a real SMTP server on loopback (the aiosmtpd fixture of the
//! tests, `tests/it/fixtures/smtp_server.py`, started by the bench; or `--relay
//! HOST:PORT`). Each transport runs in a process of its own so its peak memory is
//! its own. Reports compose+store, drain and settle times, messages/s and peak memory.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use kinlink::clock::Clock;
use kinlink::config::{DetailLevel, MailSettings, MailTransport, SmtpSettings, SmtpTls};
use kinlink::domain::RunMode;
use kinlink::mail::digest::{enqueue_digests, DigestOptions};
use kinlink::mail::{DrainOptions, Mailer};
use kinlink::store::Store;

use crate::cli::BenchMailArgs;

/// One transport's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailPhase {
    pub transport: String,
    pub digests: usize,
    pub compose_s: f64,
    pub drain_s: f64,
    pub settle_s: f64,
    /// Digests per second, composing and sending together.
    pub per_sec: f64,
    /// Sending alone.
    pub send_per_sec: f64,
    pub peak_rss_mib: f64,
}

pub async fn run(args: &BenchMailArgs) -> anyhow::Result<u8> {
    if let Some(phase) = &args.phase {
        let result = phase_run(phase, args).await?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(0);
    }
    let exe = std::env::current_exe().context("finding the kinlink-bench binary")?;
    println!(
        "Composing and sending {} digests (two alerts each), SQLite, detail minimal …",
        args.digests
    );
    for phase in ["file", "smtp"] {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["mail", "--phase", phase, "--digests"])
            .arg(args.digests.to_string());
        if let Some(relay) = &args.relay {
            cmd.arg("--relay").arg(relay);
        }
        let out = cmd
            .output()
            .await
            .with_context(|| format!("running phase {phase}"))?;
        if !out.status.success() {
            bail!(
                "phase {phase} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let r: MailPhase = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
            .with_context(|| format!("reading the figures of phase {phase}"))?;
        println!(
            "  {:<5} {} digests: compose+store {:.2} s, send {:.2} s, settle {:.2} s = {:.0} digests/s overall, {:.0}/s sending; peak memory {:.1} MiB",
            r.transport,
            r.digests,
            r.compose_s,
            r.drain_s,
            r.settle_s,
            r.per_sec,
            r.send_per_sec,
            r.peak_rss_mib
        );
    }
    Ok(0)
}

async fn phase_run(phase: &str, args: &BenchMailArgs) -> anyhow::Result<MailPhase> {
    let temp = tempfile::tempdir().context("creating a temporary folder")?;
    let dir = temp.path();
    let store = Store::open_sqlite(&dir.join("bench.db")).await?;
    let clock = Clock::system();
    store
        .seed_bench_deliveries(args.digests, clock.now())
        .await
        .context("seeding deliveries")?;
    let mut server = None;
    let transport = match phase {
        "file" => MailTransport::File {
            dir: dir.join("outbox"),
        },
        "smtp" => {
            let (host, port) = match &args.relay {
                Some(r) => {
                    let (h, p) = r.rsplit_once(':').context("--relay is HOST:PORT")?;
                    (h.to_string(), p.parse::<u16>().context("--relay port")?)
                }
                None => {
                    let (child, port) = start_fixture(&dir.join("smtp")).await?;
                    server = Some(child);
                    ("127.0.0.1".to_string(), port)
                }
            };
            MailTransport::Smtp(SmtpSettings {
                host,
                port,
                tls: SmtpTls::None,
                user: None,
                password: None,
                ca_file: None,
            })
        }
        other => bail!("unknown phase {other}"),
    };
    let mailer = Mailer::new(&MailSettings {
        transport,
        from: "Early Help Alerts <eh-alerts@example.gov.uk>".into(),
        detail: DetailLevel::Minimal,
        admin: vec![],
        retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
    })?;
    let options = DigestOptions {
        detail: DetailLevel::Minimal,
        schools: Default::default(),
        today: clock.today(chrono_tz::Europe::London),
        timezone: chrono_tz::Europe::London,
    };
    let t0 = Instant::now();
    let composed = enqueue_digests(&mailer, &store, clock, &options, RunMode::Apply).await?;
    let compose_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let report = mailer
        .drain(&store, clock, &DrainOptions::default())
        .await?;
    let drain_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let settled = store.settle_deliveries(clock.now()).await?;
    let settle_s = t2.elapsed().as_secs_f64();
    if let Some(mut child) = server {
        let _ = child.kill().await;
    }
    if report.sent.len() != composed.stored || settled.sent as usize != composed.deliveries {
        bail!(
            "sent {} of {} digests, settled {} of {} deliveries ({:?})",
            report.sent.len(),
            composed.stored,
            settled.sent,
            composed.deliveries,
            report.connection_error
        );
    }
    let total = compose_s + drain_s + settle_s;
    store.close().await;
    Ok(MailPhase {
        transport: phase.to_string(),
        digests: composed.stored,
        compose_s,
        drain_s,
        settle_s,
        per_sec: composed.stored as f64 / total,
        send_per_sec: composed.stored as f64 / drain_s,
        peak_rss_mib: crate::peak_rss_kib() as f64 / 1024.0,
    })
}

/// Starts the tests' aiosmtpd fixture on a free loopback port.
async fn start_fixture(dir: &Path) -> anyhow::Result<(tokio::process::Child, u16)> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/it/fixtures/smtp_server.py"
    );
    // The same interpreters the tests try: $KINLINK_TEST_PYTHON, python3, /usr/bin/python3.
    let candidates: Vec<String> = std::env::var("KINLINK_TEST_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()])
        .collect();
    let python = candidates
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .context("no python3 with aiosmtpd (apt-get install python3-aiosmtpd), or pass --relay")?;
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {python} {script} (needs aiosmtpd; or pass --relay)"))?;
    let stdout = child.stdout.take().context("the fixture's stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .context("the SMTP fixture did not start in 20 s")??
        .unwrap_or_default();
    let port = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .with_context(|| format!("the SMTP fixture said {line:?}"))?;
    Ok((child, port))
}
