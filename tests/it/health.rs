//! `/healthz` and `/metrics` over real sockets on both backends: counts from the
//! store in the Prometheus text format, a failed job or an unreachable database
//! turning health to 503, and nothing served but the two routes.

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
