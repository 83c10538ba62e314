//! Shared test helpers: a real HTTP/1.1 feed server on loopback ([`FeedServer`]), a
//! time guard ([`within`]) so no network test can hang, and the settings and UPNs the
//! pipeline tests build on ([`settings`], [`upn`]).
//!
//! The server is written on tokio's `TcpListener` rather than a mock library so that
//! the fetch code meets real sockets: real timeouts, real truncated bodies, real
//! chunked framing. Each test scripts the replies per path and then asserts on the
//! requests that arrived.

#![allow(dead_code)] // Not every test binary module uses every helper.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kinlink::config::{
    DatabaseUrl, DetailLevel, DirTransport, LinkageSettings, MailSettings, MailTransport, Settings,
    SourceSettings, TextEncoding, Transport,
};
use kinlink::domain::rules::RulesConfig;
use kinlink::domain::{FeedKind, Format};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Runs a test body and fails the test if it takes longer than `secs`.
pub async fn within<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {secs}s"),
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// Path without the query.
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` equal to the body.
    Length,
    /// `Content-Length: n` whatever the body is: a larger `n` makes a truncated body
    /// (the server closes after sending what it has).
    Declared(u64),
    /// `Transfer-Encoding: chunked`, 1 KiB chunks.
    Chunked,
    /// No length at all: the body ends when the connection closes.
    CloseDelimited,
}

/// One scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Wait before sending anything.
    pub delay: Duration,
    /// After this many body bytes, wait this long before sending the rest.
    pub stall: Option<(usize, Duration)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Length,
            delay: Duration::ZERO,
            stall: None,
        }
    }

    /// 200 with this body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(200).body(body)
    }

    /// 200 with this JSON document.
    pub fn json(doc: &serde_json::Value) -> Reply {
        Reply::ok(doc.to_string()).header("Content-Type", "application/json")
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn framing(mut self, framing: Framing) -> Reply {
        self.framing = framing;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn stall_after(mut self, bytes: usize, wait: Duration) -> Reply {
        self.stall = Some((bytes, wait));
        self
    }
}

#[derive(Default)]
struct State {
    /// Replies per path, served in order; the last one repeats.
    routes: HashMap<String, VecDeque<Reply>>,
    requests: Vec<Request>,
}

/// A real HTTP/1.1 server on 127.0.0.1 with scripted replies. Every response closes
/// its connection, so each attempt of the client is a fresh request. Unrouted paths
/// get 404. Stops when dropped.
pub struct FeedServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FeedServer {
    pub async fn start() -> FeedServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    // A client that gives up mid-response is part of some tests.
                    let _ = serve(stream, state).await;
                });
            }
        });
        FeedServer { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Scripts the replies for `path` (query ignored): served in order, the last one
    /// repeating for every later request.
    pub fn route(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a route needs at least one reply");
        self.lock().routes.insert(path.to_string(), replies);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// How many requests arrived for `path` (query ignored).
    pub fn hits(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not hide the real failure behind a poison error.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request, records it, writes the scripted reply, closes.
async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split_whitespace();
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();

    let reply = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.requests.push(Request {
            method,
            target,
            path: path.clone(),
            headers,
            at: Instant::now(),
        });
        match st.routes.get_mut(&path) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        }
    }
    .unwrap_or_else(|| Reply::status(404).body("no such route"));

    tokio::time::sleep(reply.delay).await;
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    match reply.framing {
        Framing::Length => out.push_str(&format!("Content-Length: {}\r\n", reply.body.len())),
        Framing::Declared(n) => out.push_str(&format!("Content-Length: {n}\r\n")),
        Framing::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::CloseDelimited => {}
    }
    out.push_str("Connection: close\r\n\r\n");
    stream.write_all(out.as_bytes()).await?;

    let body = &reply.body;
    let (first, rest) = match reply.stall {
        Some((n, _)) => body.split_at(n.min(body.len())),
        None => (&body[..], &body[..0]),
    };
    write_body(&mut stream, first, reply.framing).await?;
    if let Some((_, wait)) = reply.stall {
        stream.flush().await?;
        tokio::time::sleep(wait).await;
    }
    write_body(&mut stream, rest, reply.framing).await?;
    if reply.framing == Framing::Chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}

async fn write_body(stream: &mut TcpStream, bytes: &[u8], framing: Framing) -> std::io::Result<()> {
    if framing != Framing::Chunked {
        return stream.write_all(bytes).await;
    }
    for piece in bytes.chunks(1024) {
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await?;
        stream.write_all(piece).await?;
        stream.write_all(b"\r\n").await?;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// A loopback address whose listen queue is full, so a new connection's SYN is
/// dropped and `connect` hangs: the way to exercise a connect timeout without leaving
/// the machine. Keep the returned value alive for as long as the address must hang.
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        // Backlog 0: the kernel still queues one or two; fill them and never accept.
        let listener = socket.listen(0).expect("listen");
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => fillers.push(s),
                // The queue is full: connects now hang, which is the point.
                _ => break,
            }
        }
        BlackHole {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

/// Settings for a test run in `dir`: SQLite in `dir/state`, mail to files, the given
/// sources, defaults elsewhere.
pub fn settings(dir: &Path, sources: Vec<SourceSettings>) -> Settings {
    Settings {
        config_path: dir.join("kinlink.toml"),
        state_dir: dir.join("state"),
        database: DatabaseUrl::Sqlite(PathBuf::from("kinlink.db")),
        jobs_dir: dir.join("jobs"),
        timezone: chrono_tz::Europe::London,
        mail: MailSettings {
            transport: MailTransport::File {
                dir: dir.join("state/outbox"),
            },
            from: "Early Help <eh@example.gov.uk>".into(),
            detail: DetailLevel::Minimal,
            admin: vec!["admin@example.gov.uk".into()],
            retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
        },
        http: None,
        sources,
        localities: vec![],
        schools: vec![],
        rules: RulesConfig::default(),
        linkage: LinkageSettings::default(),
        retention: Default::default(),
        jobs: vec![],
        env_overrides: vec![],
    }
}

/// A CSV `dir` source with `columns` as (canonical, header) pairs and the
/// defaults of docs/config.md elsewhere.
pub fn csv_source(
    name: &str,
    kind: FeedKind,
    inbox: &Path,
    columns: &[(&str, &str)],
) -> SourceSettings {
    SourceSettings {
        name: name.into(),
        kind,
        format: Format::Csv,
        // Test files are written whole before ingest: no settle time.
        transport: Transport::Dir(DirTransport {
            settle_secs: 0,
            ..DirTransport::new(inbox)
        }),
        max_bad_rows: 0.05,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        limits: Default::default(),
        columns: columns
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    }
}

/// A valid UPN (check letter computed) for serial `n`.
pub fn upn(n: u32) -> String {
    let body = format!("80120000{n:04}");
    let letter = kinlink::domain::ids::upn_check_letter(&body).unwrap();
    format!("{letter}{body}")
}

/// Whether a test may skip the part that needs `what` (`smtp`, `postgres`) when
/// that service is missing: only where the person running the tests said so with
/// `KINLINK_TEST_SKIP=smtp,postgres` (a comma list), and never under `CI=true`.
/// Otherwise a missing test dependency fails the test with the way to install it,
/// so a green run means every part ran.
pub fn may_skip(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return false;
    }
    std::env::var("KINLINK_TEST_SKIP")
        .is_ok_and(|list| list.split(',').any(|part| part.trim() == what))
}
