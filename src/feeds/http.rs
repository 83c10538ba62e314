//! The `http` transport: GET a feed URL with auth, conditional headers, retries with
//! backoff, a body size limit and, for paged JSON APIs, pagination into one file.
//!
//! Every attempt streams the body into a hidden `.part` file (or, for JSON pages,
//! memory) and is discarded whole if anything goes wrong; only a complete, hashed body
//! is renamed to `<sha256>.<ext>`. Secrets are resolved at fetch time, so a rotated
//! credential is picked up by the next run without a restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{display_url, raw_name, FeedError, FetchedFile, Origin, PartFile, Validators};
use crate::config::{HttpAuth, HttpTransport, OtherOriginPages, Secret, SourceSettings};
use crate::domain::Format;

/// Sent with every request, so a provider can tell us apart in its logs.
pub const USER_AGENT: &str = concat!("kinlink/", env!("CARGO_PKG_VERSION"));

/// The connect timeout of [`client`]: docs/config.md's default for `connect_timeout_secs`.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;

/// More pages than this means a broken or hostile next-link chain.
pub const MAX_PAGES: usize = 10_000;

/// The shared HTTP client: rustls, user agent `kinlink/<version>`, the default connect
/// timeout. A source with a different `connect_timeout_secs` gets a client of its own
/// inside [`fetch`], because reqwest sets connect timeouts per client, not per request.
pub fn client() -> Result<Client, FeedError> {
    build_client(Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS))
}

fn build_client(connect_timeout: Duration) -> Result<Client, FeedError> {
    Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| FeedError::Client(e.without_url().to_string()))
}

/// What a fetch produced.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpOutcome {
    /// The server answered 304 to our validators: nothing new, nothing written.
    NotModified,
    Fetched(FetchedFile),
}

/// How long to wait between attempts. Retries and the first backoff step come from the
/// source's [`HttpTransport`]; this only scales and caps the waits, so tests can run
/// the production schedule quickly.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Multiplies every wait, `Retry-After` included: 1.0 in production.
    pub sleep_scale: f64,
    /// No single wait is longer than this (after scaling), however long a server's
    /// `Retry-After` asks for: a feed that wants an hour is down for tonight.
    pub max_sleep: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            sleep_scale: 1.0,
            max_sleep: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry): the server's
    /// `Retry-After` if it gave one, else `backoff_ms × 2^retry` plus up to 50% jitter
    /// so many daemons do not retry in step.
    pub fn delay(&self, backoff_ms: u64, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ms = match retry_after {
            Some(wait) => wait.as_secs_f64() * 1000.0,
            None => {
                let step = backoff_ms as f64 * 2f64.powi(retry.min(40) as i32);
                step + step * rand::random_range(0.0..0.5)
            }
        };
        let scale = if self.sleep_scale.is_finite() && self.sleep_scale > 0.0 {
            self.sleep_scale
        } else {
            0.0
        };
        let cap = self.max_sleep.as_secs_f64() * 1000.0;
        // `as` saturates, and the value is already finite and non-negative.
        Duration::from_millis((ms * scale).clamp(0.0, cap) as u64)
    }
}

/// GET the source URL with auth, conditional headers from `prior`, retries, size limit;
/// for `format = json` with `next_path` set, follows pagination and writes ONE combined
/// file: the records of every page concatenated into one array placed at
/// `records_path` (e.g. records_path "data" → `{"data":[...]}`; no records_path → a
/// bare array).
///
/// Credentials go only to the configured URL's origin (scheme, host, port): a
/// next-page link elsewhere is an error unless `other_origin_pages` allows it, and
/// then it is fetched without them; an https feed never follows a link to http.
///
/// Once `stop` is cancelled the request, the body, every page and every retry
/// wait end at once with [`FeedError::Stopped`], leaving nothing behind.
pub async fn fetch(
    client: &Client,
    source: &SourceSettings,
    http: &HttpTransport,
    prior: &Validators,
    raw_dir: &Path,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) -> Result<HttpOutcome, FeedError> {
    let feed = source.name.as_str();
    let url = parse_url(feed, &http.url)?;
    let auth = Auth::resolve(feed, &http.auth)?;
    let own_client;
    let client = if http.connect_timeout_secs == DEFAULT_CONNECT_TIMEOUT_SECS {
        client
    } else {
        own_client = build_client(Duration::from_secs(http.connect_timeout_secs))?;
        &own_client
    };
    super::create_private_dir(raw_dir)
        .map_err(|e| FeedError::io("create raw folder", raw_dir, e))?;
    let fetcher = Fetcher {
        client,
        feed,
        http,
        auth,
        origin: origin(&url),
        policy,
        stop,
    };
    let ext = source.format.as_str();
    let original_name = name_from_url(&url).unwrap_or_else(|| format!("{feed}.{ext}"));

    let (sha256, size, path, validators) = match (source.format, &source.next_path) {
        (Format::Json, Some(next_path)) => {
            let Some((combined, validators)) = fetcher
                .fetch_pages(&url, prior, source.records_path.as_deref(), next_path)
                .await?
            else {
                return Ok(HttpOutcome::NotModified);
            };
            let (sha256, size, path) = write_raw(raw_dir, &combined, ext).await?;
            (sha256, size, path, validators)
        }
        _ => {
            let sink = || FileSink::create(raw_dir);
            let got = fetcher
                .get(&url, Some(prior), http.max_body_bytes, sink)
                .await?;
            let Got::Body { sink, validators } = got else {
                return Ok(HttpOutcome::NotModified);
            };
            let (sha256, size, path) = sink.keep(raw_dir, ext)?;
            (sha256, size, path, validators)
        }
    };
    tracing::info!(
        feed,
        url = %display_url(url.as_str()),
        bytes = size,
        sha256 = %sha256,
        "Fetched feed"
    );
    Ok(HttpOutcome::Fetched(FetchedFile {
        source: feed.to_string(),
        path,
        original_name,
        sha256,
        size,
        origin: Origin::Http {
            // Shown form only: this is stored and reported, and a query string may
            // carry an API key.
            url: display_url(&http.url),
            validators,
        },
    }))
}

/// Credentials, resolved for this fetch only.
enum Auth {
    None,
    Bearer(HeaderValue),
    Basic { user: Secret, password: Secret },
}

impl Auth {
    fn resolve(feed: &str, auth: &HttpAuth) -> Result<Auth, FeedError> {
        let secret = |r: &crate::config::SecretRef| {
            r.resolve().map_err(|error| FeedError::Secret {
                feed: feed.to_string(),
                error,
            })
        };
        Ok(match auth {
            HttpAuth::None => Auth::None,
            HttpAuth::Bearer(token) => {
                let token = secret(token)?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| FeedError::BadCredential {
                        feed: feed.to_string(),
                    })?;
                // Keeps the value out of reqwest's and hyper's debug output.
                value.set_sensitive(true);
                Auth::Bearer(value)
            }
            HttpAuth::Basic { user, password } => Auth::Basic {
                user: secret(user)?,
                password: secret(password)?,
            },
        })
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Bearer(value) => req.header(header::AUTHORIZATION, value.clone()),
            Auth::Basic { user, password } => {
                req.basic_auth(user.expose(), Some(password.expose()))
            }
        }
    }
}

/// Where one attempt's body goes: a `.part` file for a plain download, memory for a
/// JSON page that must be parsed. A fresh sink per attempt, so a failed attempt's
/// bytes are simply dropped.
trait Sink {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), FeedError>;
    async fn finish(&mut self) -> Result<(), FeedError>;
}

/// A body streamed to disk and hashed on the way. Dropping it deletes the `.part` file.
struct FileSink {
    part: PartFile,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
}

impl FileSink {
    async fn create(raw_dir: &Path) -> Result<FileSink, FeedError> {
        let part = PartFile::new(raw_dir);
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        // The body is personal data: only the service user may read it.
        #[cfg(unix)]
        options.mode(0o600);
        let file = options
            .open(&part.path)
            .await
            .map_err(|e| FeedError::io("create", &part.path, e))?;
        Ok(FileSink {
            part,
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Renames the finished body to `<sha256>.<ext>`; returns (sha256, size, path).
    fn keep(self, raw_dir: &Path, ext: &str) -> Result<(String, u64, PathBuf), FeedError> {
        let sha256 = hex::encode(self.hasher.finalize());
        let path = raw_dir.join(raw_name(&sha256, Some(ext)));
        self.part.keep(&path)?;
        Ok((sha256, self.size, path))
    }
}

impl Sink for FileSink {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), FeedError> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| FeedError::io("write", &self.part.path, e))
    }

    async fn finish(&mut self) -> Result<(), FeedError> {
        self.file
            .flush()
            .await
            .map_err(|e| FeedError::io("write", &self.part.path, e))?;
        self.file
            .sync_all()
            .await
            .map_err(|e| FeedError::io("sync", &self.part.path, e))
    }
}

impl Sink for Vec<u8> {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), FeedError> {
        self.extend_from_slice(chunk);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), FeedError> {
        Ok(())
    }
}

/// The result of one successful GET.
enum Got<S> {
    NotModified,
    Body { sink: S, validators: Validators },
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt: network trouble, a timeout, 5xx, 429, a cut-off body.
    Transient {
        detail: String,
        retry_after: Option<Duration>,
        /// Bytes received and expected, when the body was cut off.
        truncated: Option<(u64, Option<u64>)>,
    },
    /// Retrying cannot help.
    Fatal(FeedError),
}

impl Failure {
    fn transient(detail: String) -> Failure {
        Failure::Transient {
            detail,
            retry_after: None,
            truncated: None,
        }
    }
}

struct Fetcher<'a> {
    client: &'a Client,
    feed: &'a str,
    http: &'a HttpTransport,
    auth: Auth,
    /// The configured URL's origin: the only one the credentials are sent to.
    origin: UrlOrigin,
    policy: &'a RetryPolicy,
    stop: &'a CancellationToken,
}

impl Fetcher<'_> {
    /// GETs `url` with retries; `conditional` adds If-None-Match / If-Modified-Since.
    /// Each attempt starts a fresh sink, so a failed attempt leaves nothing behind.
    async fn get<S, F, Fut>(
        &self,
        url: &Url,
        conditional: Option<&Validators>,
        limit: u64,
        new_sink: F,
    ) -> Result<Got<S>, FeedError>
    where
        S: Sink,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<S, FeedError>>,
    {
        let shown = display_url(url.as_str());
        let mut retry = 0u32;
        loop {
            if self.stop.is_cancelled() {
                return Err(FeedError::Stopped);
            }
            let attempt = retry + 1;
            let sink = new_sink().await?;
            let (detail, retry_after, truncated) = match self
                .attempt(url, &shown, conditional, limit, sink)
                .await
            {
                Ok(got) => {
                    tracing::debug!(feed = self.feed, url = %shown, attempt, "Request succeeded");
                    return Ok(got);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient {
                    detail,
                    retry_after,
                    truncated,
                }) => (detail, retry_after, truncated),
            };
            if retry >= self.http.retries {
                tracing::warn!(feed = self.feed, url = %shown, attempt, error = %detail, "Fetch failed; no retries left");
                return Err(match truncated {
                    Some((received, expected)) => FeedError::Truncated {
                        feed: self.feed.to_string(),
                        url: shown,
                        received,
                        expected: expected
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "an unknown number of".to_string()),
                    },
                    None => FeedError::Unavailable {
                        feed: self.feed.to_string(),
                        url: shown,
                        attempts: attempt,
                        last: detail,
                    },
                });
            }
            let delay = self.policy.delay(self.http.backoff_ms, retry, retry_after);
            tracing::warn!(
                feed = self.feed,
                url = %shown,
                attempt,
                error = %detail,
                delay_ms = delay.as_millis() as u64,
                "Fetch failed; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.cancelled() => return Err(FeedError::Stopped),
            }
            retry += 1;
        }
    }

    /// One request and its body, classified.
    async fn attempt<S: Sink>(
        &self,
        url: &Url,
        shown: &str,
        conditional: Option<&Validators>,
        limit: u64,
        mut sink: S,
    ) -> Result<Got<S>, Failure> {
        let mut req = self
            .client
            .get(url.clone())
            .timeout(Duration::from_secs(self.http.timeout_secs));
        if origin(url) == self.origin {
            req = self.auth.apply(req);
        }
        if let Some(prior) = conditional {
            if let Some(etag) = &prior.etag {
                req = req.header(header::IF_NONE_MATCH, etag.as_str());
            }
            if let Some(date) = &prior.last_modified {
                req = req.header(header::IF_MODIFIED_SINCE, date.as_str());
            }
        }
        let stopped = || Err(Failure::Fatal(FeedError::Stopped));
        let sent = tokio::select! {
            sent = req.send() => sent,
            _ = self.stop.cancelled() => return stopped(),
        };
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Err(Failure::transient(self.describe(&e))),
        };
        let status = resp.status();
        tracing::debug!(feed = self.feed, url = %shown, status = status.as_u16(), "Response");
        let fatal = |e: FeedError| Err(Failure::Fatal(e));
        match status {
            StatusCode::NOT_MODIFIED if conditional.is_some() => return Ok(Got::NotModified),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return fatal(FeedError::Unauthorized {
                    feed: self.feed.to_string(),
                    url: shown.to_string(),
                    status: status.as_u16(),
                })
            }
            StatusCode::NOT_FOUND => {
                return fatal(FeedError::NotFound {
                    feed: self.feed.to_string(),
                    url: shown.to_string(),
                })
            }
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                return Err(Failure::Transient {
                    detail: format!("HTTP {}", s.as_u16()),
                    retry_after: retry_after(resp.headers()),
                    truncated: None,
                });
            }
            s if !s.is_success() => {
                return fatal(FeedError::Rejected {
                    feed: self.feed.to_string(),
                    url: shown.to_string(),
                    status: s.as_u16(),
                })
            }
            _ => {}
        }
        let too_large = || {
            Err(Failure::Fatal(FeedError::TooLarge {
                feed: self.feed.to_string(),
                url: shown.to_string(),
                limit: self.http.max_body_bytes,
            }))
        };
        let declared = resp.content_length();
        if declared.is_some_and(|n| n > limit) {
            return too_large();
        }
        let validators = validators(resp.headers());
        let mut received = 0u64;
        loop {
            let chunk = tokio::select! {
                chunk = resp.chunk() => chunk,
                _ = self.stop.cancelled() => return stopped(),
            };
            match chunk {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    // Checked as bytes arrive: a server may send no length, or lie.
                    if received > limit {
                        return too_large();
                    }
                    sink.write(&chunk).await.map_err(Failure::Fatal)?;
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(Failure::transient(self.describe(&e))),
                Err(e) => {
                    return Err(Failure::Transient {
                        detail: format!("{} after {received} bytes", self.describe(&e)),
                        retry_after: None,
                        truncated: Some((received, declared)),
                    })
                }
            }
        }
        if let Some(expected) = declared.filter(|&n| received < n) {
            return Err(Failure::Transient {
                detail: format!("body cut off after {received} of {expected} bytes"),
                retry_after: None,
                truncated: Some((received, Some(expected))),
            });
        }
        sink.finish().await.map_err(Failure::Fatal)?;
        tracing::debug!(feed = self.feed, url = %shown, status = status.as_u16(), bytes = received, "Body received");
        Ok(Got::Body { sink, validators })
    }

    /// A transport error in words, without the URL (it may carry a query-string key).
    fn describe(&self, e: &reqwest::Error) -> String {
        let what = if e.is_connect() && e.is_timeout() {
            format!(
                "connect timed out after {}s (transport.connect_timeout_secs)",
                self.http.connect_timeout_secs
            )
        } else if e.is_timeout() {
            format!(
                "timed out after {}s (transport.timeout_secs)",
                self.http.timeout_secs
            )
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else if e.is_body() {
            "body cut off".to_string()
        } else {
            "request failed".to_string()
        };
        // The innermost cause is the useful part ("connection refused").
        let mut cause = std::error::Error::source(e);
        let mut innermost = None;
        while let Some(c) = cause {
            innermost = Some(c.to_string());
            cause = c.source();
        }
        match innermost {
            Some(c) if !e.is_timeout() => format!("{what}: {c}"),
            _ => what,
        }
    }

    /// Follows next-page links from `first`, collecting each page's records. Returns
    /// the combined document and the first page's validators, or `None` on a 304.
    async fn fetch_pages(
        &self,
        first: &Url,
        prior: &Validators,
        records_path: Option<&str>,
        next_path: &str,
    ) -> Result<Option<(Vec<u8>, Validators)>, FeedError> {
        let mut records: Vec<Value> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut url = first.clone();
        let mut first_validators = None;
        let mut total = 0u64;
        let bad_json = |url: &Url, page: usize, detail: String| FeedError::BadJson {
            feed: self.feed.to_string(),
            url: display_url(url.as_str()),
            page,
            detail,
        };
        let pagination = |detail: String| FeedError::Pagination {
            feed: self.feed.to_string(),
            url: display_url(first.as_str()),
            detail,
        };
        for page in 1.. {
            if page > MAX_PAGES {
                return Err(pagination(format!("more than {MAX_PAGES} pages")));
            }
            if !seen.insert(url.as_str().to_string()) {
                return Err(pagination(format!(
                    "page {} links back to a page already fetched ({})",
                    page - 1,
                    display_url(url.as_str())
                )));
            }
            // Conditional headers only on the first page: whether the feed changed is
            // decided there; later pages must always come back whole.
            let conditional = (page == 1).then_some(prior);
            let limit = self.http.max_body_bytes.saturating_sub(total);
            let got = self
                .get(&url, conditional, limit, || async { Ok(Vec::new()) })
                .await;
            let got = match got {
                // The limit covers all pages together; name the configured figure.
                Err(FeedError::TooLarge { feed, url, .. }) => {
                    return Err(FeedError::TooLarge {
                        feed,
                        url,
                        limit: self.http.max_body_bytes,
                    })
                }
                other => other?,
            };
            let (bytes, validators) = match got {
                Got::NotModified => return Ok(None),
                Got::Body { sink, validators } => (sink, validators),
            };
            total += bytes.len() as u64;
            if first_validators.is_none() {
                first_validators = Some(validators);
            }
            let mut doc: Value = serde_json::from_slice(&bytes)
                .map_err(|e| bad_json(&url, page, format!("is not valid JSON ({e})")))?;
            drop(bytes);

            // The next link is read before the records are moved out of `doc`.
            let next = next_link(&doc, next_path)
                .map_err(|detail| pagination(format!("page {page}: {detail}")))?;

            let found = match records_path {
                Some(path) if !path.is_empty() => lookup_mut(&mut doc, path),
                _ => Some(&mut doc),
            };
            let where_ = records_path.unwrap_or("the top level");
            match found {
                Some(Value::Array(items)) => records.append(items),
                Some(other) => {
                    return Err(bad_json(
                        &url,
                        page,
                        format!(
                            "has {} at {where_} where an array of records was expected",
                            type_name(other)
                        ),
                    ))
                }
                None => {
                    return Err(bad_json(
                        &url,
                        page,
                        format!("has nothing at records_path {where_}"),
                    ))
                }
            }
            tracing::debug!(feed = self.feed, page, records = records.len(), "Page read");

            let Some(next) = next else { break };
            let next_url = url
                .join(&next)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    pagination(format!(
                        "page {page} links to {} which is not an http(s) URL",
                        display_url(&next)
                    ))
                })?;
            check_next(first, &next_url, self.http.other_origin_pages)
                .map_err(|detail| pagination(format!("page {page} {detail}")))?;
            url = next_url;
        }
        tracing::info!(feed = self.feed, records = records.len(), "Pages combined");
        let combined = wrap(records, records_path);
        let bytes = serde_json::to_vec(&combined)
            .map_err(|e| pagination(format!("cannot write the combined file ({e})")))?;
        Ok(Some((bytes, first_validators.unwrap_or_default())))
    }
}

/// A URL's origin: scheme, host and port (the scheme's default when not written).
type UrlOrigin = (String, Option<String>, Option<u16>);

fn origin(url: &Url) -> UrlOrigin {
    (
        url.scheme().to_ascii_lowercase(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

/// Whether the URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a next-page link may be followed: never from https to plain http, plain
/// http only to this machine (as for transport.url), and to another origin only when
/// `other_origin_pages` allows it (then without credentials: see
/// [`Fetcher::attempt`]). The error completes "page N …".
fn check_next(first: &Url, next: &Url, other_origin: OtherOriginPages) -> Result<(), String> {
    let shown = display_url(next.as_str());
    if first.scheme() == "https" && next.scheme() == "http" {
        return Err(format!(
            "links to {shown}, plain http from an https feed; kinlink never downgrades a feed to plain http (ask the provider to correct its next links)"
        ));
    }
    if next.scheme() == "http" && !is_loopback(next) {
        return Err(format!(
            "links to {shown}, plain http to another machine; personal data would travel unencrypted"
        ));
    }
    if origin(next) != origin(first) && other_origin == OtherOriginPages::Refuse {
        return Err(format!(
            "links to {shown}, another origin (scheme, host or port) than transport.url; the source's credentials go only to its own origin. If the provider really serves pages from there, set transport.other_origin_pages = \"without_credentials\" to follow such links without them"
        ));
    }
    Ok(())
}

/// Writes an in-memory body to the raw folder the same way a streamed one is written.
async fn write_raw(
    raw_dir: &Path,
    bytes: &[u8],
    ext: &str,
) -> Result<(String, u64, PathBuf), FeedError> {
    let mut sink = FileSink::create(raw_dir).await?;
    sink.write(bytes).await?;
    sink.finish().await?;
    sink.keep(raw_dir, ext)
}

/// Parses a configured or linked URL; only http(s) is fetched.
fn parse_url(feed: &str, url: &str) -> Result<Url, FeedError> {
    let bad = |detail: String| FeedError::BadUrl {
        feed: feed.to_string(),
        url: display_url(url),
        detail,
    };
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(bad(format!("scheme {other} is not supported"))),
    }
}

/// The last non-empty path segment, as the delivered file's name.
fn name_from_url(url: &Url) -> Option<String> {
    url.path_segments()?
        .rev()
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

fn validators(headers: &HeaderMap) -> Validators {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    Validators {
        etag: get(header::ETAG),
        last_modified: get(header::LAST_MODIFIED),
    }
}

/// `Retry-After` as a wait: delta-seconds, or an HTTP-date measured against the
/// response's own `Date` header (so no local clock is needed; without `Date` the
/// date form is ignored and normal backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let now = headers.get(header::DATE)?.to_str().ok()?;
    let now = chrono::DateTime::parse_from_rfc2822(now.trim()).ok()?;
    let secs = (at - now).num_seconds().max(0);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The next-page link at `next_path`: `None` when absent, null, empty, or when a
/// `more` field beside it is `false`.
fn next_link(doc: &Value, next_path: &str) -> Result<Option<String>, String> {
    let (parent, last) = match next_path.rsplit_once('.') {
        Some((parent, last)) => (lookup(doc, parent), last),
        None => (Some(doc), next_path),
    };
    let Some(parent) = parent else {
        return Ok(None);
    };
    if parent.get("more") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    match parent.get(last) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => Err(format!(
            "the next link at {next_path} is {}, not a URL",
            type_name(other)
        )),
    }
}

/// Follows a dotted path (`meta.pagination.next`; numeric segments index arrays).
fn lookup<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(doc, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => items.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

fn lookup_mut<'v>(doc: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    path.split('.').try_fold(doc, |v, seg| match v {
        Value::Object(map) => map.get_mut(seg),
        Value::Array(items) => items.get_mut(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Places the records at `records_path` (`"a.b"` → `{"a":{"b":[...]}}`), or returns
/// the bare array, so ingest reads the combined file with the source's own settings.
fn wrap(records: Vec<Value>, records_path: Option<&str>) -> Value {
    let array = Value::Array(records);
    match records_path {
        Some(path) if !path.is_empty() => path.rsplit('.').fold(array, |inner, seg| {
            let mut map = serde_json::Map::new();
            map.insert(seg.to_string(), inner);
            Value::Object(map)
        }),
        _ => array,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 0..4 {
            let d = p.delay(1000, retry, None).as_millis() as u64;
            let step = 1000 * 2u64.pow(retry);
            assert!(d >= step && d <= step * 3 / 2, "retry {retry}: {d}ms");
        }
        assert_eq!(p.delay(1000, 30, None), Duration::from_secs(300));
        let fast = RetryPolicy {
            sleep_scale: 0.01,
            max_sleep: Duration::from_secs(1),
        };
        assert_eq!(
            fast.delay(1000, 0, Some(Duration::from_secs(5))),
            Duration::from_millis(50)
        );
        let broken = RetryPolicy {
            sleep_scale: f64::NAN,
            max_sleep: Duration::from_secs(1),
        };
        assert_eq!(broken.delay(1000, 0, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_reads_both_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT"),
        );
        assert_eq!(retry_after(&h), None, "no Date header to measure against");
        h.insert(
            header::DATE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn next_links_stop_on_null_empty_and_more_false() {
        let path = "meta.pagination.next";
        let d = json!({"meta":{"pagination":{"next":"/p2"}}});
        assert_eq!(next_link(&d, path), Ok(Some("/p2".into())));
        for d in [
            json!({"meta":{"pagination":{"next":null}}}),
            json!({"meta":{"pagination":{"next":" "}}}),
            json!({"meta":{"pagination":{"next":"/p2","more":false}}}),
            json!({"meta":{}}),
            json!({}),
        ] {
            assert_eq!(next_link(&d, path), Ok(None), "{d}");
        }
        assert!(next_link(&json!({"next": 3}), "next").is_err());
    }

    #[test]
    fn records_are_wrapped_at_their_path() {
        assert_eq!(wrap(vec![json!(1)], Some("a.b")), json!({"a":{"b":[1]}}));
        assert_eq!(wrap(vec![json!(1)], None), json!([1]));
        let mut d = json!({"a":[{"b":[7]}]});
        assert_eq!(lookup_mut(&mut d, "a.0.b"), Some(&mut json!([7])));
    }

    #[test]
    fn names_come_from_the_url() {
        let u = Url::parse("https://x.example/api/attendance.csv?key=1").unwrap();
        assert_eq!(name_from_url(&u).as_deref(), Some("attendance.csv"));
        let u = Url::parse("https://x.example/").unwrap();
        assert_eq!(name_from_url(&u), None);
    }

    #[test]
    fn next_links_never_downgrade_and_stay_on_their_origin_unless_allowed() {
        let u = |s: &str| Url::parse(s).unwrap();
        let first = u("https://feeds.example/api/p1");
        let refuse = OtherOriginPages::Refuse;
        let allow = OtherOriginPages::WithoutCredentials;
        assert_eq!(
            check_next(&first, &u("https://feeds.example/api/p2"), refuse),
            Ok(())
        );
        for setting in [refuse, allow] {
            for next in ["http://feeds.example/api/p2", "http://127.0.0.1:8080/p2"] {
                let e = check_next(&first, &u(next), setting).unwrap_err();
                assert!(e.contains("never downgrades"), "{e}");
            }
        }
        let e = check_next(&first, &u("https://other.example/p2"), refuse).unwrap_err();
        assert!(e.contains("other_origin_pages"), "{e}");
        let e = check_next(&first, &u("https://feeds.example:8443/p2"), refuse).unwrap_err();
        assert!(e.contains("another origin"), "{e}");
        assert_eq!(
            check_next(&first, &u("https://other.example/p2"), allow),
            Ok(())
        );
        let local = u("http://127.0.0.1:8080/p1");
        let e = check_next(&local, &u("http://feeds.example/p2"), allow).unwrap_err();
        assert!(e.contains("unencrypted"), "{e}");
        assert_eq!(
            check_next(&local, &u("https://feeds.example/p2"), allow),
            Ok(())
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            origin(&u("https://X.example/a")),
            origin(&u("https://x.example:443/b?c"))
        );
        assert_ne!(
            origin(&u("https://x.example/a")),
            origin(&u("http://x.example/a"))
        );
        assert_ne!(
            origin(&u("http://127.0.0.1:80/a")),
            origin(&u("http://127.0.0.1:81/a"))
        );
        assert!(is_loopback(&u("http://127.0.0.1:9/")));
        assert!(is_loopback(&u("http://[::1]:9/")));
        assert!(is_loopback(&u("http://localhost/")));
        assert!(!is_loopback(&u("http://feeds.example/")));
    }

    #[test]
    fn only_http_urls_are_fetched() {
        assert!(parse_url("s", "ftp://x/y").is_err());
        assert!(parse_url("s", "not a url").is_err());
        assert!(parse_url("s", "https://x/y").is_ok());
    }
}
