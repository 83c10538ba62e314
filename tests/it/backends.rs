//! Fresh stores on both backends for each test: a SQLite file in a temp folder, and
//! a new PostgreSQL database on the server at `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Where no server answers the test
//! fails saying how to get one, unless `KINLINK_TEST_SKIP=postgres` says to skip the
//! PostgreSQL half (never under `CI=true`).

use kinlink::store::Store;

/// The server URL the PostgreSQL tests use.
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh PostgreSQL store, or `None` (printed) where no server answers and
/// `KINLINK_TEST_SKIP=postgres` allows skipping.
pub async fn fresh_postgres(test: &str) -> Option<Store> {
    // One database per test name: re-created on every run, so none accumulate.
    let name = format!(
        "kinlink_it_{}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    match kinlink_test_support::fresh_postgres(&postgres_url(), &name).await {
        Ok(store) => Some(store),
        Err(e) => {
            if !crate::helpers::may_skip("postgres") {
                panic!(
                    "PostgreSQL is required but not reachable at TEST_DATABASE_URL: {e:#}; \
                     start one (`apt-get install postgresql`, trust auth on 127.0.0.1, a \
                     database `test`), point TEST_DATABASE_URL at one, or skip the \
                     PostgreSQL halves with KINLINK_TEST_SKIP=postgres"
                );
            }
            eprintln!("SKIPPED the PostgreSQL half of {test}: no server ({e:#})");
            None
        }
    }
}

/// One store per available backend, named for messages.
pub async fn stores(test: &str, dir: &std::path::Path) -> Vec<(&'static str, Store)> {
    let mut out = vec![(
        "sqlite",
        Store::open_sqlite(&dir.join("kinlink.db"))
            .await
            .expect("open SQLite"),
    )];
    if let Some(pg) = fresh_postgres(test).await {
        out.push(("postgres", pg));
    }
    out
}
