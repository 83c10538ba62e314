//! `/healthz` and `/metrics` on a local address (`[http] listen`, default
//! 127.0.0.1:9187; no table, no listener).
//!
//! A deliberately small HTTP/1.1 responder on tokio's `TcpListener`: two GET
//! routes, one request per connection, `Connection: close`. It serves a local
//! scraper and a load balancer's health check, nothing else, so it needs no web
//! framework in the dependency tree.
//!
//! - `/healthz`: 200 with `{"status":"ok",…}` when the database answers and no
//!   job's last run failed; 503 otherwise, with what is wrong. It answers within
//!   [`DATABASE_WAIT`] (1.5 s) of reading the request whatever the database does:
//!   a database that does not answer in time (a hung server, a dropped network
//!   path, a pool whose connections are all busy) is 503 `"not answering"`, so a
//!   load balancer's 2 s health check never times out on us.
//! - `/metrics`: the Prometheus text format, counts read from the store.
//!
//! Invariant: no personal data is ever served: counts and ids only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::store::{metrics, Store};

/// How long `/healthz` waits for the database (the ping and the job history
/// together) before it answers 503 "not answering".
pub const DATABASE_WAIT: Duration = Duration::from_millis(1500);

/// The last run of one job, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobHealth {
    pub name: String,
    /// `ok`, `failed`, … or `never`.
    pub last_outcome: String,
    pub last_finished_at: Option<String>,
}

/// Where `/healthz` learns about jobs (the scheduler's run history).
pub type JobsProbe = Arc<
    dyn Fn(Store) -> std::pin::Pin<Box<dyn Future<Output = Vec<JobHealth>> + Send>> + Send + Sync,
>;

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    pub store: Store,
    pub jobs: Option<JobsProbe>,
}

/// Serves until `shutdown` completes; connections in flight finish on their own.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // A full accept queue or a reset: keep serving.
                        warn!(error = %e, "Health endpoint accept failed");
                        continue;
                    }
                };
                let endpoints = endpoints.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &endpoints).await {
                        debug!(error = %e, "Health endpoint connection ended");
                    }
                });
            }
        }
    }
}

async fn handle(mut stream: TcpStream, endpoints: &Endpoints) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // The request head within 5 s and 8 KiB, or the connection is dropped.
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if len == buf.len() {
                return Ok(false);
            }
        }
    })
    .await;
    let complete = matches!(head, Ok(Ok(true)));
    if !complete {
        return respond(&mut stream, 400, "text/plain", "bad request\n").await;
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET\n").await;
    }
    match path {
        "/healthz" => {
            let (code, body) = health(endpoints).await;
            respond(&mut stream, code, "application/json", &body).await
        }
        "/metrics" => match endpoints.store.metric_families().await {
            Ok(f) => {
                respond(
                    &mut stream,
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    &metrics::render(&f),
                )
                .await
            }
            Err(e) => {
                warn!(error = %e, "Metrics could not be read from the store");
                respond(&mut stream, 503, "text/plain", "database unavailable\n").await
            }
        },
        _ => respond(&mut stream, 404, "text/plain", "not found\n").await,
    }
}

async fn health(endpoints: &Endpoints) -> (u16, String) {
    // One deadline for everything the answer reads from the database: the pool
    // would otherwise wait 30 s for a connection, and a query on a connection to
    // a hung server waits for ever.
    let deadline = tokio::time::Instant::now() + DATABASE_WAIT;
    let database = match tokio::time::timeout_at(deadline, endpoints.store.ping()).await {
        Ok(Ok(())) => Database::Ok,
        Ok(Err(e)) => {
            warn!(error = %e, "Health check: the database is unreachable");
            Database::Unreachable
        }
        Err(_) => Database::NotAnswering,
    };
    let jobs = match (&endpoints.jobs, database) {
        (Some(probe), Database::Ok) => {
            tokio::time::timeout_at(deadline, probe(endpoints.store.clone()))
                .await
                .ok()
        }
        _ => Some(Vec::new()),
    };
    let (database, jobs) = match jobs {
        Some(jobs) => (database, jobs),
        // The ping answered but the run history did not, in time.
        None => (Database::NotAnswering, Vec::new()),
    };
    if database == Database::NotAnswering {
        warn!(
            wait_ms = DATABASE_WAIT.as_millis() as u64,
            "Health check: the database did not answer in time"
        );
    }
    let failed: Vec<&str> = jobs
        .iter()
        .filter(|j| j.last_outcome == "failed")
        .map(|j| j.name.as_str())
        .collect();
    let ok = database == Database::Ok && failed.is_empty();
    let mut body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": database.as_str(),
        "failed_jobs": failed,
        "jobs": jobs,
    });
    if let Some(message) = database.message() {
        body["message"] = json!(message);
    }
    (if ok { 200 } else { 503 }, body.to_string())
}

/// What the database did for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    Ok,
    /// It refused or failed (closed pool, refused connection, an error reply).
    Unreachable,
    /// Nothing came back within [`DATABASE_WAIT`].
    NotAnswering,
}

impl Database {
    fn as_str(self) -> &'static str {
        match self {
            Database::Ok => "ok",
            Database::Unreachable => "unreachable",
            Database::NotAnswering => "not answering",
        }
    }

    fn message(self) -> Option<&'static str> {
        match self {
            Database::Ok => None,
            Database::Unreachable => Some(
                "the database refused or failed the health query: check that it is running and that database_url points at it",
            ),
            Database::NotAnswering => Some(
                "the database did not answer within 1.5 s (a hung or overloaded server, a dropped network path, or every connection busy): check the database server and the path to it (database_url)",
            ),
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
