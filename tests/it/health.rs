//! `/healthz` and `/metrics` over real sockets on both backends: counts from the
//! store in the Prometheus text format, a failed job or an unreachable database
//! turning health to 503, and nothing served but the two routes; a database that
//! hangs (PostgreSQL behind a loopback proxy that stops forwarding) is 503 within 2 s.

use std::sync::Arc;

use kinlink::health::{self, Endpoints, JobHealth};
use kinlink::store::Store;
use tokio::net::TcpListener;

use crate::backends::stores;
use crate::helpers::within;

async fn start(store: Store, failed_job: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe: health::JobsProbe = Arc::new(move |_store| {
        Box::pin(async move {
            vec![JobHealth {
                name: "nightly".into(),
                last_outcome: if failed_job { "failed" } else { "ok" }.into(),
                last_finished_at: None,
            }]
        })
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(health::serve(
        listener,
        Endpoints {
            store,
            jobs: Some(probe),
        },
        async move {
            let _ = rx.await;
        },
    ));
    (format!("http://{addr}"), tx)
}

#[tokio::test]
async fn healthz_and_metrics_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("health_endpoints", dir.path()).await {
        within(30, async {
            let (base, stop) = start(store.clone(), false).await;
            let client = reqwest::Client::new();
            let r = client.get(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{backend}");
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(body["status"], "ok", "{backend}");
            assert_eq!(body["database"], "ok");
            assert_eq!(body["jobs"][0]["name"], "nightly");

            let r = client.get(format!("{base}/metrics")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(r
                .headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"));
            let text = r.text().await.unwrap();
            for line in [
                "# TYPE kinlink_mentions gauge",
                "kinlink_mentions 0",
                "kinlink_persons 0",
                "kinlink_review_queue_pending 0",
                "# TYPE kinlink_alerts gauge",
                "kinlink_emails{status=\"queued\"} 0",
                "# TYPE kinlink_feed_files gauge",
                "# TYPE kinlink_job_last_success_timestamp_seconds gauge",
                "# TYPE kinlink_job_last_duration_seconds gauge",
            ] {
                assert!(
                    text.lines().any(|l| l == line),
                    "{backend}: {line} in\n{text}"
                );
            }
            // Every sample line is NAME[{labels}] VALUE.
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                let value = l.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{l}");
            }

            let r = client.get(format!("{base}/other")).send().await.unwrap();
            assert_eq!(r.status(), 404);
            let r = client.post(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 405);
            stop.send(()).unwrap();

            // A failed job makes the service degraded.
            let (base, stop) = start(store.clone(), true).await;
            let r = client.get(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 503);
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(body["failed_jobs"][0], "nightly");
            // And so does a database that has gone away.
            store.close().await;
            let r = client.get(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 503);
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(body["database"], "unreachable", "{backend}");
            stop.send(()).unwrap();
        })
        .await;
    }
}

/// A TCP proxy on loopback in front of PostgreSQL that can be told to stop
/// forwarding (a database that hangs: a stalled server, a dropped network path),
/// while every socket stays open.
struct StallingProxy {
    port: u16,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: std::net::SocketAddr) -> StallingProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                // One direction: bytes pass until the proxy is stalled, then are held
                // (never forwarded, never answered; the sockets stay open).
                async fn pipe(
                    from: &mut tokio::net::tcp::OwnedReadHalf,
                    to: &mut tokio::net::tcp::OwnedWriteHalf,
                    stalled: &AtomicBool,
                ) {
                    let mut buf = vec![0u8; 16384];
                    loop {
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while stalled.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
                let (f1, f2) = (flag.clone(), flag.clone());
                tokio::spawn(async move { pipe(&mut cr, &mut sw, &f1).await });
                tokio::spawn(async move { pipe(&mut sr, &mut cw, &f2).await });
            }
        });
        StallingProxy { port, stalled }
    }

    fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `/healthz` answers within 2 s whatever the database does: PostgreSQL behind a
/// loopback proxy that stops forwarding (the server hangs, every socket stays
/// open) gives 503 "not answering" in about 1.5 s, not after the pool's 30 s.
#[tokio::test]
async fn healthz_answers_within_two_seconds_when_the_database_hangs() {
    let name = "health_db_hangs";
    let Some(direct) = crate::backends::fresh_postgres(name).await else {
        return;
    };
    direct.close().await;
    let url = crate::backends::postgres_url();
    let server: std::net::SocketAddr = {
        let host_port = url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("127.0.0.1:5432");
        let host_port = if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:5432")
        };
        let host_port = host_port.replace("localhost", "127.0.0.1");
        host_port
            .parse()
            .expect("TEST_DATABASE_URL's host as an IP address")
    };
    let proxy = StallingProxy::start(server).await;
    let via_proxy = kinlink_test_support::with_database(
        &url.replace(
            &url.split('@')
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or("127.0.0.1:5432")
                .to_string(),
            &format!("127.0.0.1:{}", proxy.port),
        ),
        &format!("kinlink_it_{name}"),
    );
    let store = Store::open_postgres(&via_proxy)
        .await
        .expect("through the proxy");
    within(60, async {
        let (base, stop) = start(store.clone(), false).await;
        let client = reqwest::Client::new();
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "through the proxy, before the stall");

        proxy.stall();
        for attempt in 0..2 {
            let t0 = std::time::Instant::now();
            let r = client
                .get(format!("{base}/healthz"))
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
                .expect("an answer within 10 s");
            let took = t0.elapsed();
            assert_eq!(r.status(), 503, "attempt {attempt}");
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert!(
                took < std::time::Duration::from_secs(2),
                "attempt {attempt}: /healthz took {took:?}"
            );
            assert_eq!(body["status"], "degraded");
            assert_eq!(body["database"], "not answering", "{body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("did not answer within 1.5 s") && message.contains("database_url"),
                "{body}"
            );
        }
        stop.send(()).unwrap();
    })
    .await;
}
