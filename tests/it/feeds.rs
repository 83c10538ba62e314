//! `feeds`: the dir transport against real folders and the http transport against a
//! real HTTP/1.1 server on loopback.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use kinlink::config::{
    DirTransport, HttpAuth, HttpTransport, OtherOriginPages, SecretRef, SourceSettings,
    TextEncoding, Transport,
};
use kinlink::domain::{FeedKind, Format};
use kinlink::feeds::dir::{self, Settle};
use kinlink::feeds::http::{self, HttpOutcome, RetryPolicy};
use kinlink::feeds::{FeedError, FetchedFile, Origin, Validators};
use kinlink::shutdown::CancellationToken;

use kinlink::pipeline::{self, FileOutcome, IngestRequest, NoProgress, Progress};

use crate::backends::stores;
use crate::helpers::{settings, within, BlackHole, FeedServer, Framing, Reply};

// sha256("abc"), a published test vector.
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn source(format: Format, transport: Transport) -> SourceSettings {
    SourceSettings {
        name: "test-feed".into(),
        kind: FeedKind::Attendance,
        format,
        transport,
        max_bad_rows: 0.05,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        limits: Default::default(),
        columns: Default::default(),
    }
}

/// Short timeouts and tiny backoff, so no test waits long.
fn transport(url: String) -> HttpTransport {
    HttpTransport {
        url,
        auth: HttpAuth::None,
        connect_timeout_secs: 2,
        timeout_secs: 2,
        retries: 2,
        backoff_ms: 1,
        max_body_bytes: 1024 * 1024,
        other_origin_pages: Default::default(),
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        sleep_scale: 1.0,
        max_sleep: Duration::from_millis(50),
    }
}

async fn get(
    src: &SourceSettings,
    http: &HttpTransport,
    prior: &Validators,
    raw: &Path,
    policy: &RetryPolicy,
) -> Result<HttpOutcome, FeedError> {
    let client = http::client().expect("client");
    http::fetch(
        &client,
        src,
        http,
        prior,
        raw,
        policy,
        &CancellationToken::new(),
    )
    .await
}

async fn get_csv(http: &HttpTransport, raw: &Path) -> Result<HttpOutcome, FeedError> {
    let src = source(Format::Csv, Transport::Http(http.clone()));
    get(&src, http, &Validators::default(), raw, &fast()).await
}

fn fetched(outcome: Result<HttpOutcome, FeedError>) -> FetchedFile {
    match outcome {
        Ok(HttpOutcome::Fetched(f)) => f,
        other => panic!("expected a fetched file, got {other:?}"),
    }
}

/// Everything in a folder, names sorted (hidden temp files included).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn write_at(path: &Path, content: &str, secs_after_epoch: u64) {
    fs::write(path, content).expect("write");
    let f = fs::File::options().write(true).open(path).expect("open");
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs_after_epoch))
        .expect("set mtime");
}

// ---------------------------------------------------------------- dir transport

/// `dir::take` with no size limit and no shutdown.
fn take(source: &str, file: &Path, raw: &Path) -> Result<FetchedFile, FeedError> {
    dir::take(source, file, raw, u64::MAX, &CancellationToken::new())
}

#[test]
fn pending_lists_oldest_first_and_skips_unfinished_hidden_and_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path();
    write_at(&inbox.join("b.csv"), "b", 2_000);
    write_at(&inbox.join("a.csv"), "a", 2_000);
    write_at(&inbox.join("c.csv"), "c", 1_000);
    for skipped in [
        ".hidden.csv",
        "d.csv.part",
        "e.tmp",
        "f.PARTIAL",
        "g.partial",
    ] {
        write_at(&inbox.join(skipped), "x", 10);
    }
    fs::create_dir(inbox.join("archive")).unwrap();
    fs::write(inbox.join("archive").join("old.csv"), "o").unwrap();
    fs::create_dir(inbox.join("rejected")).unwrap();

    let names: Vec<String> = dir::pending(inbox)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["c.csv", "a.csv", "b.csv"]);
}

#[test]
fn a_missing_inbox_names_the_folder_and_the_config_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("inbox").join("police");
    let err = dir::pending(&missing).unwrap_err();
    assert!(matches!(err, FeedError::InboxMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("transport.path"), "{msg}");
}

#[test]
fn take_copies_hashes_and_stores_the_same_content_once() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    let raw = tmp.path().join("state").join("raw");
    fs::create_dir(&inbox).unwrap();
    fs::write(inbox.join("Monday.CSV"), "abc").unwrap();
    fs::write(inbox.join("tuesday.csv"), "abc").unwrap();

    let first = take("police", &inbox.join("Monday.CSV"), &raw).unwrap();
    assert_eq!(first.source, "police");
    assert_eq!(first.sha256, ABC_SHA256);
    assert_eq!(first.size, 3);
    assert_eq!(first.original_name, "Monday.CSV");
    assert_eq!(first.path, raw.join(format!("{ABC_SHA256}.csv")));
    assert_eq!(fs::read_to_string(&first.path).unwrap(), "abc");
    let Origin::Dir { inbox_file, stamp } = &first.origin else {
        panic!("{:?}", first.origin)
    };
    assert_eq!(*inbox_file, inbox.join("Monday.CSV"));
    assert_eq!(stamp.size, 3);
    // The inbox file stays until it is settled.
    assert!(inbox.join("Monday.CSV").exists());

    let second = take("police", &inbox.join("tuesday.csv"), &raw).unwrap();
    assert_eq!(second.path, first.path);
    assert_eq!(listing(&raw), [format!("{ABC_SHA256}.csv")]);
}

#[test]
fn take_of_a_vanished_file_is_an_io_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let err = take("s", &tmp.path().join("gone.csv"), &raw).unwrap_err();
    assert!(matches!(err, FeedError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("gone.csv"));
    assert!(listing(&raw).is_empty());
}

#[test]
fn settle_archives_and_rejects_with_a_reason_without_overwriting() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path();

    fs::write(inbox.join("a.csv"), "first").unwrap();
    let to = dir::settle(&inbox.join("a.csv"), Settle::Archived).unwrap();
    assert_eq!(to, inbox.join("archive").join("a.csv"));
    assert!(!inbox.join("a.csv").exists());

    // Same name again: a suffix, and the first copy is untouched.
    fs::write(inbox.join("a.csv"), "second").unwrap();
    let to = dir::settle(&inbox.join("a.csv"), Settle::Archived).unwrap();
    assert_eq!(to, inbox.join("archive").join("a-1.csv"));
    assert_eq!(
        fs::read_to_string(inbox.join("archive/a.csv")).unwrap(),
        "first"
    );
    assert_eq!(fs::read_to_string(&to).unwrap(), "second");

    fs::write(inbox.join("b.csv"), "bad").unwrap();
    let reason = "header lacks required column school_urn";
    let to = dir::settle(&inbox.join("b.csv"), Settle::Rejected { reason }).unwrap();
    assert_eq!(to, inbox.join("rejected").join("b.csv"));
    let why = fs::read_to_string(inbox.join("rejected/b.csv.reason.txt")).unwrap();
    assert_eq!(why.trim_end(), reason);

    fs::write(inbox.join("b.csv"), "bad again").unwrap();
    let to = dir::settle(&inbox.join("b.csv"), Settle::Rejected { reason: "other" }).unwrap();
    assert_eq!(to, inbox.join("rejected").join("b-1.csv"));
    assert_eq!(
        fs::read_to_string(inbox.join("rejected/b-1.csv.reason.txt"))
            .unwrap()
            .trim_end(),
        "other"
    );
    assert_eq!(
        fs::read_to_string(inbox.join("rejected/b.csv.reason.txt"))
            .unwrap()
            .trim_end(),
        reason
    );
    // Settled files are no longer pending.
    assert!(dir::pending(inbox).unwrap().is_empty());
}

// ---------------------------------------------------------------- http transport

#[tokio::test]
async fn a_plain_get_streams_the_body_into_raw_and_returns_validators() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route(
            "/exports/attendance.csv",
            [Reply::ok("abc")
                .header("ETag", "\"v1\"")
                .header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")],
        );
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        let url = server.url("/exports/attendance.csv?since=2025-01-01");
        let file = fetched(get_csv(&transport(url.clone()), &raw).await);

        assert_eq!(file.sha256, ABC_SHA256);
        assert_eq!(file.size, 3);
        assert_eq!(file.original_name, "attendance.csv");
        assert_eq!(file.path, raw.join(format!("{ABC_SHA256}.csv")));
        assert_eq!(fs::read_to_string(&file.path).unwrap(), "abc");
        assert_eq!(
            file.origin,
            Origin::Http {
                url: server.url("/exports/attendance.csv"),
                validators: Validators {
                    etag: Some("\"v1\"".into()),
                    last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
                },
            }
        );
        assert_eq!(listing(&raw), [format!("{ABC_SHA256}.csv")]);

        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(reqs[0].target, "/exports/attendance.csv?since=2025-01-01");
        let ua = reqs[0].header("user-agent").unwrap();
        assert_eq!(ua, format!("kinlink/{}", env!("CARGO_PKG_VERSION")));
        // No conditional headers without validators, no auth without config.
        assert_eq!(reqs[0].header("if-none-match"), None);
        assert_eq!(reqs[0].header("if-modified-since"), None);
        assert_eq!(reqs[0].header("authorization"), None);
    })
    .await;
}

#[tokio::test]
async fn bearer_token_is_read_from_a_file_at_fetch_time() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::ok("x")]);
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("token");
        fs::write(&secret, "t0ken-1\n").unwrap();
        let mut http = transport(server.url("/f"));
        http.auth = HttpAuth::Bearer(SecretRef::File(secret.clone()));
        fetched(get_csv(&http, &tmp.path().join("raw")).await);

        // Rotated between runs: the next fetch sends the new token.
        fs::write(&secret, "t0ken-2").unwrap();
        fetched(get_csv(&http, &tmp.path().join("raw")).await);

        let auth: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.header("authorization").unwrap_or("").to_string())
            .collect();
        assert_eq!(auth, ["Bearer t0ken-1", "Bearer t0ken-2"]);
    })
    .await;
}

#[tokio::test]
async fn basic_auth_is_read_from_env() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::ok("x")]);
        // Names unique to this test: tests run in parallel in one process.
        std::env::set_var("KINLINK_IT_FEEDS_BASIC_USER", "alice");
        std::env::set_var("KINLINK_IT_FEEDS_BASIC_PW", "pw1");
        let mut http = transport(server.url("/f"));
        http.auth = HttpAuth::Basic {
            user: SecretRef::Env("KINLINK_IT_FEEDS_BASIC_USER".into()),
            password: SecretRef::Env("KINLINK_IT_FEEDS_BASIC_PW".into()),
        };
        let tmp = tempfile::tempdir().unwrap();
        fetched(get_csv(&http, tmp.path()).await);
        let reqs = server.requests();
        assert_eq!(reqs[0].header("authorization"), Some("Basic YWxpY2U6cHcx"));
    })
    .await;
}

#[tokio::test]
async fn an_unreadable_secret_is_named_and_nothing_is_requested() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::ok("x")]);
        let tmp = tempfile::tempdir().unwrap();

        let mut http = transport(server.url("/f"));
        http.auth = HttpAuth::Bearer(SecretRef::Env("KINLINK_IT_FEEDS_NEVER_SET".into()));
        let err = get_csv(&http, tmp.path()).await.unwrap_err();
        assert!(matches!(err, FeedError::Secret { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("KINLINK_IT_FEEDS_NEVER_SET") && msg.contains("test-feed"),
            "{msg}"
        );

        let missing = tmp.path().join("no-such-credential");
        http.auth = HttpAuth::Basic {
            user: SecretRef::File(missing.clone()),
            password: SecretRef::File(missing.clone()),
        };
        let err = get_csv(&http, tmp.path()).await.unwrap_err();
        assert!(err.to_string().contains("no-such-credential"), "{err}");
        assert_eq!(server.requests().len(), 0);
    })
    .await;
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/401", [Reply::status(401)]);
        server.route("/403", [Reply::status(403)]);
        server.route("/404", [Reply::status(404)]);
        server.route("/400", [Reply::status(400)]);
        server.route("/410", [Reply::status(410)]);
        let tmp = tempfile::tempdir().unwrap();

        let err = get_csv(&transport(server.url("/401")), tmp.path())
            .await
            .unwrap_err();
        assert!(
            matches!(err, FeedError::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        let err = get_csv(&transport(server.url("/403")), tmp.path())
            .await
            .unwrap_err();
        assert!(
            matches!(err, FeedError::Unauthorized { status: 403, .. }),
            "{err:?}"
        );
        let err = get_csv(&transport(server.url("/404")), tmp.path())
            .await
            .unwrap_err();
        assert!(matches!(err, FeedError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("transport.url"));
        let err = get_csv(&transport(server.url("/400")), tmp.path())
            .await
            .unwrap_err();
        assert!(
            matches!(err, FeedError::Rejected { status: 400, .. }),
            "{err:?}"
        );
        let err = get_csv(&transport(server.url("/410")), tmp.path())
            .await
            .unwrap_err();
        assert!(
            matches!(err, FeedError::Rejected { status: 410, .. }),
            "{err:?}"
        );

        for path in ["/401", "/403", "/404", "/400", "/410"] {
            assert_eq!(server.hits(path), 1, "{path} was retried");
        }
        assert!(listing(tmp.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn messages_never_carry_the_query_string_or_credentials() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::status(503)]);
        let tmp = tempfile::tempdir().unwrap();
        let url = server
            .url("/f?api_key=SUPERSECRETKEY")
            .replace("http://", "http://bob:PASSWORDX@");
        let mut http = transport(url);
        http.retries = 0;
        let err = get_csv(&http, tmp.path()).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/f"), "{msg}");
        assert!(
            !msg.contains("SUPERSECRETKEY") && !msg.contains("PASSWORDX"),
            "{msg}"
        );
        assert!(!format!("{err:?}").contains("SUPERSECRETKEY"));
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route(
            "/f",
            [Reply::status(503), Reply::status(502), Reply::ok("abc")],
        );
        let tmp = tempfile::tempdir().unwrap();
        let file = fetched(get_csv(&transport(server.url("/f")), tmp.path()).await);
        assert_eq!(file.sha256, ABC_SHA256);
        assert_eq!(server.hits("/f"), 3);
        assert_eq!(listing(tmp.path()), [format!("{ABC_SHA256}.csv")]);
    })
    .await;
}

#[tokio::test]
async fn persistent_server_errors_end_unavailable_after_every_retry() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::status(500)]);
        let tmp = tempfile::tempdir().unwrap();
        let mut http = transport(server.url("/f"));
        http.retries = 3;
        let err = get_csv(&http, tmp.path()).await.unwrap_err();
        match &err {
            FeedError::Unavailable { attempts, last, .. } => {
                assert_eq!(*attempts, 4);
                assert!(last.contains("HTTP 500"), "{last}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(err.to_string().contains("test-feed"));
        assert_eq!(server.hits("/f"), 4);
        assert!(listing(tmp.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn backoff_grows_between_attempts() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::status(503)]);
        let tmp = tempfile::tempdir().unwrap();
        let mut http = transport(server.url("/f"));
        http.retries = 2;
        http.backoff_ms = 100; // waits of 100–150 ms, then 200–300 ms
        let src = source(Format::Csv, Transport::Http(http.clone()));
        let policy = RetryPolicy::default();
        get(&src, &http, &Validators::default(), tmp.path(), &policy)
            .await
            .unwrap_err();
        let at: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
        assert_eq!(at.len(), 3);
        let first = at[1] - at[0];
        let second = at[2] - at[1];
        assert!(first >= Duration::from_millis(95), "{first:?}");
        assert!(second >= Duration::from_millis(195), "{second:?}");
    })
    .await;
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route(
            "/f",
            [
                Reply::status(429).header("Retry-After", "2"),
                Reply::ok("abc"),
            ],
        );
        let tmp = tempfile::tempdir().unwrap();
        let http = transport(server.url("/f")); // backoff 1 ms: any long wait is Retry-After's
        let src = source(Format::Csv, Transport::Http(http.clone()));
        let policy = RetryPolicy {
            sleep_scale: 0.2, // 2 s → 400 ms
            max_sleep: Duration::from_secs(5),
        };
        fetched(get(&src, &http, &Validators::default(), tmp.path(), &policy).await);
        let at: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
        assert_eq!(at.len(), 2);
        let gap = at[1] - at[0];
        assert!(gap >= Duration::from_millis(380), "{gap:?}");

        // A huge Retry-After is capped.
        server.route(
            "/g",
            [
                Reply::status(503).header("Retry-After", "86400"),
                Reply::ok("x"),
            ],
        );
        let http = transport(server.url("/g"));
        let policy = RetryPolicy {
            sleep_scale: 1.0,
            max_sleep: Duration::from_millis(100),
        };
        let started = Instant::now();
        fetched(get(&src, &http, &Validators::default(), tmp.path(), &policy).await);
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn conditional_get_sends_validators_and_304_writes_nothing() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::status(304)]);
        let tmp = tempfile::tempdir().unwrap();
        let http = transport(server.url("/f"));
        let src = source(Format::Csv, Transport::Http(http.clone()));
        let prior = Validators {
            etag: Some("\"v7\"".into()),
            last_modified: Some("Tue, 04 Mar 2025 01:30:00 GMT".into()),
        };
        let out = get(&src, &http, &prior, tmp.path(), &fast()).await.unwrap();
        assert_eq!(out, HttpOutcome::NotModified);
        let req = &server.requests()[0];
        assert_eq!(req.header("if-none-match"), Some("\"v7\""));
        assert_eq!(
            req.header("if-modified-since"),
            Some("Tue, 04 Mar 2025 01:30:00 GMT")
        );
        assert!(listing(tmp.path()).is_empty());
        assert_eq!(server.hits("/f"), 1);
    })
    .await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_unread() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/f", [Reply::ok(vec![b'x'; 2000])]);
        let tmp = tempfile::tempdir().unwrap();
        let mut http = transport(server.url("/f"));
        http.max_body_bytes = 1000;
        let err = get_csv(&http, tmp.path()).await.unwrap_err();
        assert!(
            matches!(err, FeedError::TooLarge { limit: 1000, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("max_body_bytes"));
        assert_eq!(server.hits("/f"), 1, "a too-large body is not retried");
        assert!(listing(tmp.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn bodies_without_a_length_are_cut_off_at_the_limit() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route(
            "/chunked",
            [Reply::ok(vec![b'x'; 5000]).framing(Framing::Chunked)],
        );
        server.route(
            "/close",
            [Reply::ok(vec![b'x'; 5000]).framing(Framing::CloseDelimited)],
        );
        server.route(
            "/fits",
            [Reply::ok(vec![b'y'; 1000]).framing(Framing::Chunked)],
        );
        let tmp = tempfile::tempdir().unwrap();
        for path in ["/chunked", "/close"] {
            let mut http = transport(server.url(path));
            http.max_body_bytes = 1000;
            let err = get_csv(&http, tmp.path()).await.unwrap_err();
            assert!(matches!(err, FeedError::TooLarge { .. }), "{path}: {err:?}");
            assert!(listing(tmp.path()).is_empty(), "{path} left a file");
        }
        // Exactly at the limit is fine.
        let mut http = transport(server.url("/fits"));
        http.max_body_bytes = 1000;
        let file = fetched(get_csv(&http, tmp.path()).await);
        assert_eq!(file.size, 1000);
    })
    .await;
}

#[tokio::test]
async fn a_truncated_body_is_retried_then_reported_and_leaves_nothing() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route(
            "/f",
            [Reply::ok("only ten b").framing(Framing::Declared(1000))],
        );
        let tmp = tempfile::tempdir().unwrap();
        let err = get_csv(&transport(server.url("/f")), tmp.path())
            .await
            .unwrap_err();
        match &err {
            FeedError::Truncated {
                received, expected, ..
            } => {
                assert_eq!(*received, 10);
                assert_eq!(expected, "1000");
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert_eq!(server.hits("/f"), 3, "first try plus two retries");
        assert!(listing(tmp.path()).is_empty());

        // A later good attempt wins over an earlier cut-off one.
        server.route(
            "/g",
            [
                Reply::ok("abcdef").framing(Framing::Declared(50)),
                Reply::ok("abc"),
            ],
        );
        let file = fetched(get_csv(&transport(server.url("/g")), tmp.path()).await);
        assert_eq!(file.sha256, ABC_SHA256);
        assert_eq!(listing(tmp.path()), [format!("{ABC_SHA256}.csv")]);
    })
    .await;
}

#[tokio::test]
async fn the_total_timeout_covers_a_slow_answer_and_a_stalled_body() {
    within(15, async {
        let server = FeedServer::start().await;
        server.route("/slow", [Reply::ok("abc").delay(Duration::from_secs(5))]);
        server.route(
            "/stall",
            [Reply::ok(vec![b'z'; 4000]).stall_after(100, Duration::from_secs(5))],
        );
        let tmp = tempfile::tempdir().unwrap();
        for path in ["/slow", "/stall"] {
            let mut http = transport(server.url(path));
            http.timeout_secs = 1;
            http.retries = 1;
            let started = Instant::now();
            let err = get_csv(&http, tmp.path()).await.unwrap_err();
            let took = started.elapsed();
            match &err {
                FeedError::Unavailable { attempts, last, .. } => {
                    assert_eq!(*attempts, 2);
                    assert!(last.contains("timed out"), "{path}: {last}");
                }
                other => panic!("{path}: expected Unavailable, got {other:?}"),
            }
            assert!(took < Duration::from_millis(3500), "{path} took {took:?}");
            assert_eq!(server.hits(path), 2);
            assert!(listing(tmp.path()).is_empty(), "{path} left a file");
        }
    })
    .await;
}

#[tokio::test]
async fn the_connect_timeout_applies_when_nothing_answers() {
    within(10, async {
        let hole = BlackHole::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let mut http = transport(format!("http://{}/f", hole.addr));
        http.connect_timeout_secs = 1;
        http.timeout_secs = 30;
        http.retries = 0;
        let started = Instant::now();
        let err = get_csv(&http, tmp.path()).await.unwrap_err();
        let took = started.elapsed();
        match &err {
            FeedError::Unavailable { last, .. } => {
                assert!(last.contains("connect timed out"), "{last}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(took < Duration::from_secs(3), "took {took:?}");
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_unavailable() {
    within(10, async {
        // Bind a port, then free it: nothing listens there now.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let tmp = tempfile::tempdir().unwrap();
        let err = get_csv(&transport(format!("http://{addr}/f")), tmp.path())
            .await
            .unwrap_err();
        match &err {
            FeedError::Unavailable { attempts, last, .. } => {
                assert_eq!(*attempts, 3);
                assert!(last.contains("cannot connect"), "{last}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    })
    .await;
}

// ---------------------------------------------------------------- JSON pagination

fn paged(http: &HttpTransport, records_path: Option<&str>, next_path: &str) -> SourceSettings {
    let mut src = source(Format::Json, Transport::Http(http.clone()));
    src.records_path = records_path.map(str::to_string);
    src.next_path = Some(next_path.to_string());
    src
}

#[tokio::test]
async fn pages_are_followed_and_combined_into_one_file() {
    within(10, async {
        let server = FeedServer::start().await;
        let p2 = server.url("/api/pupils/2?cursor=abc");
        server.route(
            "/api/pupils",
            [Reply::json(&json!({
                "data": [{"upn": "A1"}, {"upn": "A2"}],
                "meta": {"pagination": {"next": p2}}
            }))
            .header("ETag", "\"p1\"")],
        );
        server.route(
            "/api/pupils/2",
            [Reply::json(&json!({
                "data": [{"upn": "A3"}],
                // Relative to the current page's URL.
                "meta": {"pagination": {"next": "3"}}
            }))],
        );
        server.route(
            "/api/pupils/3",
            [Reply::json(&json!({
                "data": [{"upn": "A4"}],
                "meta": {"pagination": {"next": null}}
            }))],
        );
        let tmp = tempfile::tempdir().unwrap();
        let mut http = transport(server.url("/api/pupils"));
        http.auth = HttpAuth::Bearer(SecretRef::File(tmp.path().join("tok")));
        fs::write(tmp.path().join("tok"), "pagetoken").unwrap();
        let raw = tmp.path().join("raw");
        let src = paged(&http, Some("data"), "meta.pagination.next");
        let prior = Validators {
            etag: Some("\"p0\"".into()),
            last_modified: None,
        };
        let file = fetched(get(&src, &http, &prior, &raw, &fast()).await);

        let combined: serde_json::Value =
            serde_json::from_slice(&fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(
            combined,
            json!({"data": [{"upn": "A1"}, {"upn": "A2"}, {"upn": "A3"}, {"upn": "A4"}]})
        );
        assert!(file.path.to_string_lossy().ends_with(".json"));
        assert_eq!(listing(&raw).len(), 1);
        match &file.origin {
            Origin::Http { validators, .. } => {
                assert_eq!(validators.etag.as_deref(), Some("\"p1\""))
            }
            other => panic!("{other:?}"),
        }

        let reqs = server.requests();
        let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/api/pupils", "/api/pupils/2?cursor=abc", "/api/pupils/3"]
        );
        for r in &reqs {
            assert_eq!(r.header("authorization"), Some("Bearer pagetoken"));
        }
        assert_eq!(reqs[0].header("if-none-match"), Some("\"p0\""));
        assert_eq!(reqs[1].header("if-none-match"), None);
        assert_eq!(reqs[2].header("if-none-match"), None);
    })
    .await;
}

#[tokio::test]
async fn pagination_stops_on_more_false_and_writes_a_bare_array_without_records_path() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route(
            "/p1",
            [Reply::json(
                &json!({"items": [1, 2], "page": {"next": "/p2", "more": true}}),
            )],
        );
        server.route(
            "/p2",
            [Reply::json(
                &json!({"items": [3], "page": {"next": "/p3", "more": false}}),
            )],
        );
        server.route("/p3", [Reply::status(500)]);
        let tmp = tempfile::tempdir().unwrap();
        let http = transport(server.url("/p1"));
        let src = paged(&http, Some("items"), "page.next");
        let file = fetched(get(&src, &http, &Validators::default(), tmp.path(), &fast()).await);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(v, json!({"items": [1, 2, 3]}));
        assert_eq!(server.hits("/p3"), 0);

        // No records_path: the page is the array itself, so it holds no next link and
        // the combined file is a bare array.
        server.route("/bare", [Reply::json(&json!([{"a": 1}, {"a": 2}]))]);
        let http = transport(server.url("/bare"));
        let src = paged(&http, None, "next");
        let file = fetched(get(&src, &http, &Validators::default(), tmp.path(), &fast()).await);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(v, json!([{"a": 1}, {"a": 2}]));
    })
    .await;
}

#[tokio::test]
async fn pagination_loops_are_stopped() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/a", [Reply::json(&json!({"data": [1], "next": "/b"}))]);
        server.route("/b", [Reply::json(&json!({"data": [2], "next": "/a"}))]);
        let tmp = tempfile::tempdir().unwrap();
        let http = transport(server.url("/a"));
        let src = paged(&http, Some("data"), "next");
        let err = get(&src, &http, &Validators::default(), tmp.path(), &fast())
            .await
            .unwrap_err();
        assert!(matches!(err, FeedError::Pagination { .. }), "{err:?}");
        assert!(err.to_string().contains("already fetched"), "{err}");
        assert_eq!(server.hits("/a"), 1);
        assert_eq!(server.hits("/b"), 1);
        assert!(listing(tmp.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_page_without_a_records_array_is_bad_json_naming_the_page() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/1", [Reply::json(&json!({"data": [1], "next": "/2"}))]);
        server.route(
            "/2",
            [Reply::json(&json!({"data": {"oops": true}, "next": null}))],
        );
        server.route(
            "/x",
            [Reply::ok("{not json").header("Content-Type", "application/json")],
        );
        let tmp = tempfile::tempdir().unwrap();

        let http = transport(server.url("/1"));
        let src = paged(&http, Some("data"), "next");
        let err = get(&src, &http, &Validators::default(), tmp.path(), &fast())
            .await
            .unwrap_err();
        match &err {
            FeedError::BadJson { page, .. } => assert_eq!(*page, 2),
            other => panic!("expected BadJson, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("page 2") && msg.contains("an object"), "{msg}");

        let http = transport(server.url("/x"));
        let src = paged(&http, Some("data"), "next");
        let err = get(&src, &http, &Validators::default(), tmp.path(), &fast())
            .await
            .unwrap_err();
        assert!(matches!(err, FeedError::BadJson { page: 1, .. }), "{err:?}");
        assert!(listing(tmp.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn every_page_gets_retries_and_a_304_on_page_one_means_unchanged() {
    within(10, async {
        let server = FeedServer::start().await;
        server.route("/1", [Reply::json(&json!({"data": [1], "next": "/2"}))]);
        server.route(
            "/2",
            [
                Reply::status(503),
                Reply::json(&json!({"data": [2], "next": ""})),
            ],
        );
        let tmp = tempfile::tempdir().unwrap();
        let http = transport(server.url("/1"));
        let src = paged(&http, Some("data"), "next");
        let file = fetched(get(&src, &http, &Validators::default(), tmp.path(), &fast()).await);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(v, json!({"data": [1, 2]}));
        assert_eq!(server.hits("/2"), 2);

        server.route("/1", [Reply::status(304)]);
        let prior = Validators {
            etag: Some("\"e\"".into()),
            last_modified: None,
        };
        let raw = tmp.path().join("second");
        let out = get(&src, &http, &prior, &raw, &fast()).await.unwrap();
        assert_eq!(out, HttpOutcome::NotModified);
        assert!(listing(&raw).is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_size_limit_covers_all_pages_together() {
    within(10, async {
        let server = FeedServer::start().await;
        let filler = "x".repeat(600);
        server.route(
            "/1",
            [Reply::json(&json!({"data": [filler], "next": "/2"}))],
        );
        server.route(
            "/2",
            [Reply::json(&json!({"data": [filler], "next": null}))],
        );
        let tmp = tempfile::tempdir().unwrap();
        let mut http = transport(server.url("/1"));
        http.max_body_bytes = 1000;
        let src = paged(&http, Some("data"), "next");
        let err = get(&src, &http, &Validators::default(), tmp.path(), &fast())
            .await
            .unwrap_err();
        assert!(
            matches!(err, FeedError::TooLarge { limit: 1000, .. }),
            "{err:?}"
        );
        assert!(listing(tmp.path()).is_empty());
    })
    .await;
}

// ------------------------------------------------- credentials stay on their origin

/// Page 1 on one loopback server links to page 2 on another port: another origin.
async fn two_origins() -> (FeedServer, FeedServer) {
    let home = FeedServer::start().await;
    let elsewhere = FeedServer::start().await;
    home.route(
        "/p1",
        [Reply::json(
            &json!({"data": [{"upn": "A1"}], "next": elsewhere.url("/p2")}),
        )],
    );
    elsewhere.route(
        "/p2",
        [Reply::json(&json!({"data": [{"upn": "A2"}], "next": null}))],
    );
    (home, elsewhere)
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_and_gets_no_credentials() {
    within(10, async {
        let (home, elsewhere) = two_origins().await;
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("tok"), "origin-bound-token").unwrap();
        let mut http = transport(home.url("/p1"));
        http.auth = HttpAuth::Bearer(SecretRef::File(tmp.path().join("tok")));
        let raw = tmp.path().join("raw");
        let src = paged(&http, Some("data"), "next");

        let err = get(&src, &http, &Validators::default(), &raw, &fast())
            .await
            .unwrap_err();
        assert!(matches!(err, FeedError::Pagination { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("another origin"), "{msg}");
        assert!(msg.contains("other_origin_pages"), "{msg}");
        assert!(!msg.contains("origin-bound-token"), "{msg}");
        assert_eq!(
            elsewhere.hits("/p2"),
            0,
            "nothing was sent to the other origin"
        );
        assert_eq!(
            home.requests()[0].header("authorization"),
            Some("Bearer origin-bound-token")
        );
        assert!(listing(&raw).is_empty(), "{:?}", listing(&raw));

        // Allowed explicitly: followed, but the other origin gets no credentials.
        http.other_origin_pages = OtherOriginPages::WithoutCredentials;
        let src = paged(&http, Some("data"), "next");
        let file = fetched(get(&src, &http, &Validators::default(), &raw, &fast()).await);
        let combined: serde_json::Value =
            serde_json::from_slice(&fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(combined, json!({"data": [{"upn": "A1"}, {"upn": "A2"}]}));
        let there = elsewhere.requests();
        assert_eq!(there.len(), 1, "{there:?}");
        assert_eq!(there[0].header("authorization"), None, "{there:?}");
        assert!(home
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer origin-bound-token")));
    })
    .await;
}

#[tokio::test]
async fn basic_credentials_stay_on_their_origin_too() {
    within(10, async {
        let (home, elsewhere) = two_origins().await;
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("u"), "feeduser").unwrap();
        fs::write(tmp.path().join("p"), "feedpass").unwrap();
        let mut http = transport(home.url("/p1"));
        http.auth = HttpAuth::Basic {
            user: SecretRef::File(tmp.path().join("u")),
            password: SecretRef::File(tmp.path().join("p")),
        };
        http.other_origin_pages = OtherOriginPages::WithoutCredentials;
        let src = paged(&http, Some("data"), "next");
        fetched(
            get(
                &src,
                &http,
                &Validators::default(),
                &tmp.path().join("raw"),
                &fast(),
            )
            .await,
        );
        assert!(home.requests()[0].header("authorization").is_some());
        assert_eq!(elsewhere.requests()[0].header("authorization"), None);
    })
    .await;
}

// ------------------------------------------------------------ shutdown while fetching

#[tokio::test]
async fn a_stop_ends_a_stalled_body_a_slow_page_and_a_retry_wait_at_once() {
    within(20, async {
        let server = FeedServer::start().await;
        // Headers, 10 bytes of body, then nothing for a minute.
        server.route(
            "/stalled",
            [Reply::ok(vec![b'x'; 1000]).stall_after(10, Duration::from_secs(60))],
        );
        // Page 1 at once, page 2 after a minute.
        server.route("/p1", [Reply::json(&json!({"data": [1], "next": "/p2"}))]);
        server.route(
            "/p2",
            [Reply::json(&json!({"data": [2], "next": null})).delay(Duration::from_secs(60))],
        );
        // 503 asking for two minutes' wait.
        server.route("/busy", [Reply::status(503).header("Retry-After", "120")]);

        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        let policy = RetryPolicy::default();
        for (path, paged_json) in [("/stalled", false), ("/p1", true), ("/busy", false)] {
            let mut http = transport(server.url(path));
            http.timeout_secs = 300;
            http.retries = 3;
            let src = if paged_json {
                paged(&http, Some("data"), "next")
            } else {
                source(Format::Csv, Transport::Http(http.clone()))
            };
            let stop = CancellationToken::new();
            let cancel = stop.clone();
            let client = http::client().unwrap();
            let prior = Validators::default();
            let fetch = http::fetch(&client, &src, &http, &prior, &raw, &policy, &stop);
            let t0 = Instant::now();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                cancel.cancel();
            });
            let err = fetch.await.unwrap_err();
            let took = t0.elapsed();
            assert!(matches!(err, FeedError::Stopped), "{path}: {err:?}");
            assert!(
                took < Duration::from_secs(3),
                "{path}: stopped after {took:?}"
            );
            assert!(listing(&raw).is_empty(), "{path}: {:?}", listing(&raw));
        }
    })
    .await;
}

// ------------------------------------------- inbox files: settled, unchanged, capped

/// An attendance dir source reading `inbox`, with the generator's columns.
fn attendance_dir_source(
    inbox: &Path,
    columns: &std::collections::BTreeMap<String, String>,
    settle_secs: u64,
) -> SourceSettings {
    let pairs: Vec<(&str, &str)> = columns
        .iter()
        .map(|(c, h)| (c.as_str(), h.as_str()))
        .collect();
    let mut src = crate::helpers::csv_source("schools", FeedKind::Attendance, inbox, &pairs);
    src.transport = Transport::Dir(DirTransport {
        settle_secs,
        ..DirTransport::new(inbox)
    });
    src
}

async fn ingest_with(
    settings: &kinlink::config::Settings,
    store: &kinlink::store::Store,
    progress: &dyn Progress,
) -> Vec<FileOutcome> {
    pipeline::ingest(
        settings,
        store,
        kinlink::clock::Clock::system(),
        &IngestRequest::default(),
        progress,
    )
    .await
    .expect("ingest")
    .files
}

fn ingested_rows(files: &[FileOutcome]) -> Vec<i64> {
    files
        .iter()
        .filter_map(|f| match f {
            FileOutcome::Ingested { counts, .. } => Some(counts.rows_read),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_being_written_is_left_until_it_settles_then_ingested_whole() {
    const ROWS: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    for (backend, store) in stores("feeds_settle", tmp.path()).await {
        let dir = tmp.path().join(backend);
        let inbox = dir.join("inbox");
        fs::create_dir_all(&inbox).unwrap();
        let staged = dir.join("staged.csv");
        let columns = kinlink::demo::write_attendance(&staged, Format::Csv, ROWS, 5).unwrap();
        let bytes = fs::read(&staged).unwrap();
        let settings = settings(&dir, vec![attendance_dir_source(&inbox, &columns, 1)]);

        // An SFTP-like writer: the final name from the start, written in chunks.
        let target = inbox.join("marks.csv");
        let writing = target.clone();
        let writer = std::thread::spawn(move || {
            let mut f = fs::File::create(&writing).unwrap();
            for chunk in bytes.chunks(bytes.len() / 60 + 1) {
                f.write_all(chunk).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        while fs::metadata(&target).map_or(0, |m| m.len()) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Runs while it is being written take nothing from it.
        for _ in 0..3 {
            let files = ingest_with(&settings, &store, &NoProgress).await;
            assert_eq!(
                files,
                [FileOutcome::Unsettled {
                    source: "schools".into(),
                    files: 1,
                    settle_secs: 1
                }],
                "{backend}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        writer.join().unwrap();
        assert_eq!(
            store.table_counts().await.unwrap().attendance_marks,
            0,
            "{backend}"
        );
        assert!(
            store.ledger("schools").await.unwrap().is_empty(),
            "{backend}"
        );
        assert!(
            target.exists() && !inbox.join("archive").exists(),
            "{backend}"
        );

        // Once it has been quiet for settle_secs it is ingested whole, once.
        std::thread::sleep(Duration::from_millis(1_100));
        let files = ingest_with(&settings, &store, &NoProgress).await;
        assert_eq!(ingested_rows(&files), [ROWS as i64], "{backend}: {files:?}");
        assert!(inbox.join("archive/marks.csv").exists(), "{backend}");
        assert!(ingest_with(&settings, &store, &NoProgress).await.is_empty());
        store.close().await;
    }
}

/// Appends one more row to the inbox file as soon as ingest starts reading its raw
/// copy: the file changes after it was taken, deterministically.
struct AppendWhenStarted {
    inbox_file: std::path::PathBuf,
    line: Vec<u8>,
    done: std::sync::atomic::AtomicBool,
}

impl Progress for AppendWhenStarted {
    fn file_started(&self, _: &str, _: &str, _: u64) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&self.inbox_file)
                .unwrap();
            f.write_all(&self.line).unwrap();
        }
    }
    fn rows(&self, _: u64) {}
    fn file_done(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_after_it_was_taken_stores_nothing_and_stays_in_the_inbox() {
    const ROWS: usize = 500;
    let tmp = tempfile::tempdir().unwrap();
    for (backend, store) in stores("feeds_changed", tmp.path()).await {
        let dir = tmp.path().join(backend);
        let inbox = dir.join("inbox");
        fs::create_dir_all(&inbox).unwrap();
        let target = inbox.join("marks.csv");
        let columns = kinlink::demo::write_attendance(&target, Format::Csv, ROWS, 9).unwrap();
        let text = fs::read_to_string(&target).unwrap();
        let last_line = format!("{}\n", text.trim_end().lines().last().unwrap());
        let settings = settings(&dir, vec![attendance_dir_source(&inbox, &columns, 0)]);

        let appender = AppendWhenStarted {
            inbox_file: target.clone(),
            line: last_line.into_bytes(),
            done: Default::default(),
        };
        let files = ingest_with(&settings, &store, &appender).await;
        assert_eq!(files.len(), 1, "{backend}: {files:?}");
        let FileOutcome::Changed {
            file_id: Some(file_id),
            reason,
            ..
        } = &files[0]
        else {
            panic!("{backend}: {files:?}")
        };
        assert!(
            reason.contains("marks.csv") && reason.contains("changed while kinlink was reading it"),
            "{reason}"
        );
        assert!(reason.contains("settle_secs"), "{reason}");
        assert_eq!(
            store.table_counts().await.unwrap().attendance_marks,
            0,
            "{backend}"
        );
        // Its ledger row is closed, so no later run resumes the partial copy.
        assert_eq!(
            store.ledger_file(*file_id).await.unwrap().status,
            "rejected"
        );
        assert!(target.exists(), "{backend}: left in the inbox");
        assert!(!inbox.join("archive").exists() && !inbox.join("rejected").exists());

        // The complete file is ingested by the next run, every row of it.
        let files = ingest_with(&settings, &store, &NoProgress).await;
        assert_eq!(
            ingested_rows(&files),
            [ROWS as i64 + 1],
            "{backend}: {files:?}"
        );
        assert!(inbox.join("archive/marks.csv").exists());
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dir_file_over_max_file_bytes_is_rejected_unread_with_the_setting_named() {
    let tmp = tempfile::tempdir().unwrap();
    for (backend, store) in stores("feeds_too_large", tmp.path()).await {
        let dir = tmp.path().join(backend);
        let inbox = dir.join("inbox");
        fs::create_dir_all(&inbox).unwrap();
        let columns =
            kinlink::demo::write_attendance(&inbox.join("small.csv"), Format::Csv, 5, 1).unwrap();
        let small = fs::metadata(inbox.join("small.csv")).unwrap().len();
        // 20 GiB, sparse: reading it would take minutes and memory would not hold it.
        fs::File::create(inbox.join("huge.csv"))
            .unwrap()
            .set_len(20 << 30)
            .unwrap();
        let mut src = attendance_dir_source(&inbox, &columns, 0);
        let settings_default = settings(&dir, vec![src.clone()]);
        let t0 = Instant::now();
        let files = ingest_with(&settings_default, &store, &NoProgress).await;
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        let refused: Vec<&FileOutcome> = files
            .iter()
            .filter(|f| matches!(f, FileOutcome::Refused { .. }))
            .collect();
        let [FileOutcome::Refused {
            file,
            reason,
            moved_to: Some(moved),
            ..
        }] = refused[..]
        else {
            panic!("{backend}: {files:?}")
        };
        assert_eq!(file, "huge.csv");
        assert!(
            reason.contains("536870912-byte limit") && reason.contains("max_file_bytes"),
            "{reason}"
        );
        assert_eq!(*moved, inbox.join("rejected/huge.csv"));
        let why = fs::read_to_string(inbox.join("rejected/huge.csv.reason.txt")).unwrap();
        assert!(why.contains("max_file_bytes"), "{why}");
        assert_eq!(
            ingested_rows(&files),
            [5],
            "{backend}: the small file is unaffected"
        );

        // A limit of its own: one byte under the file's size refuses it, its size passes.
        let src_path = inbox.join("again.csv");
        fs::copy(inbox.join("archive/small.csv"), &src_path).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&src_path)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        let Transport::Dir(d) = &mut src.transport else {
            unreachable!()
        };
        d.max_file_bytes = small;
        let files = ingest_with(&settings(&dir, vec![src.clone()]), &store, &NoProgress).await;
        assert!(
            matches!(&files[..], [FileOutcome::Refused { reason, .. }] if reason.contains(&format!("{}-byte limit", small))),
            "{backend}: {files:?}"
        );
        let ledger = store.ledger("schools").await.unwrap();
        assert_eq!(
            ledger.len(),
            1,
            "{backend}: refused files leave no ledger row: {ledger:?}"
        );
        store.close().await;
    }
}
