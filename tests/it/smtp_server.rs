//! A real SMTP server on loopback for the mail tests: `fixtures/smtp_server.py`
//! (aiosmtpd), started per test with the behaviour the test scripts, stopped when
//! dropped. Accepted messages land as JSON files in a folder the test reads.
//!
//! Where no Python with aiosmtpd is found the test fails with the install command,
//! unless `KINLINK_TEST_SKIP=smtp` says to skip it (never under `CI=true`; `.ci/run`
//! installs `python3-aiosmtpd`).

#![allow(dead_code)] // Not every test uses every helper.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/smtp_server.py"
);

/// What the server does.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Listen here (default: a free port).
    pub port: Option<u16>,
    /// Offer and require STARTTLS with this certificate and key.
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// Implicit TLS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require AUTH with `user:password`.
    pub auth: Option<String>,
    /// Answer 451 to the first N messages.
    pub tempfail_data: u32,
    /// Answer 550 to RCPT TO for these.
    pub reject_rcpt: Vec<String>,
    /// Answer 450 to RCPT TO for these.
    pub tempfail_rcpt: Vec<String>,
    /// Answer 554 to every message.
    pub reject_data: bool,
}

/// One message the server accepted.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
    pub connection: u32,
}

pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// The Python that has aiosmtpd (`$KINLINK_TEST_PYTHON`, `python3`, `/usr/bin/python3`).
fn python() -> Option<&'static str> {
    static FOUND: OnceLock<Option<String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut candidates: Vec<String> = Vec::new();
            if let Ok(p) = std::env::var("KINLINK_TEST_PYTHON") {
                candidates.push(p);
            }
            candidates.push("python3".into());
            candidates.push("/usr/bin/python3".into());
            candidates.into_iter().find(|p| {
                std::process::Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        })
        .as_deref()
}

fn skip_or_fail(test: &str, why: &str) -> Option<SmtpServer> {
    if !crate::helpers::may_skip("smtp") {
        panic!(
            "the SMTP test server is required: {why}; install it with \
             `apt-get install python3-aiosmtpd` (or `pip install aiosmtpd`), \
             or skip the SMTP tests with KINLINK_TEST_SKIP=smtp"
        );
    }
    eprintln!("SKIPPED {test}: no SMTP test server ({why}); apt-get install python3-aiosmtpd");
    None
}

impl SmtpServer {
    /// Starts a server writing into `dir`; `None` (printed) where none can run and
    /// `KINLINK_TEST_SKIP=smtp` allows skipping.
    pub async fn start(test: &str, dir: &Path, options: &SmtpOptions) -> Option<SmtpServer> {
        let Some(python) = python() else {
            return skip_or_fail(test, "no python3 with aiosmtpd");
        };
        let mut cmd = Command::new(python);
        cmd.arg(SCRIPT).arg("--dir").arg(dir);
        if let Some(port) = options.port {
            cmd.arg("--port").arg(port.to_string());
        }
        if let Some((cert, key)) = &options.starttls {
            cmd.arg("--starttls").arg(cert).arg(key);
        }
        if let Some((cert, key)) = &options.tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        if let Some(auth) = &options.auth {
            cmd.arg("--auth").arg(auth);
        }
        if options.tempfail_data > 0 {
            cmd.arg("--tempfail-data")
                .arg(options.tempfail_data.to_string());
        }
        for a in &options.reject_rcpt {
            cmd.arg("--reject-rcpt").arg(a);
        }
        for a in &options.tempfail_rcpt {
            cmd.arg("--tempfail-rcpt").arg(a);
        }
        if options.reject_data {
            cmd.arg("--reject-data");
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return skip_or_fail(test, &format!("cannot start {python}: {e}")),
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        let port = match ready {
            Ok(Ok(Some(line))) => line
                .strip_prefix("READY ")
                .and_then(|p| p.trim().parse::<u16>().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.kill().await;
            return skip_or_fail(test, "the server did not report READY");
        };
        Some(SmtpServer {
            port,
            dir: dir.to_path_buf(),
            child,
        })
    }

    /// Every accepted message, in the order accepted.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("msg-") && n.ends_with(".json"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.dir.join("connections.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Stops the server now (its port is then closed).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as
/// `cert.pem` and `key.pem` in `dir`.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    std::fs::create_dir_all(dir).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
