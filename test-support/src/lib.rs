//! Throwaway PostgreSQL databases for kinlink's tests and for `kinlink-bench`: the
//! only code of the workspace that creates or drops a database. A dev-dependency of
//! `kinlink` and a dependency of `kinlink-bench`; never part of the daemon.
//!
//! The SQL here is administration of the server (CREATE/DROP DATABASE), not the
//! product's data: that stays in `kinlink::store`.
#![forbid(unsafe_code)]

use anyhow::Context;
use kinlink::store::Store;
use sqlx::Connection;

/// Drops and re-creates the database `name` on the server at `url` and opens it.
///
/// `name` is interpolated into SQL as an identifier: callers pass fixed names or
/// names made of ASCII letters, digits and `_` only.
pub async fn fresh_postgres(url: &str, name: &str) -> anyhow::Result<Store> {
    check_name(name)?;
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(&drop).execute(&mut admin).await?;
    let create = format!("CREATE DATABASE {name}");
    sqlx::query(&create).execute(&mut admin).await?;
    admin.close().await?;
    let db_url = with_database(url, name);
    Ok(Store::open_postgres(&db_url).await?)
}

/// Drops the database `name` on the server at `url`, if it is there.
pub async fn drop_postgres(url: &str, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// The same server URL with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[after_scheme..].find('/').map(|i| i + after_scheme);
    let mut out = match path_start {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => format!("{base}/{name}"),
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database name is spliced into SQL unquoted: letters, digits and `_` only.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("not a plain database name: {name:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_name, with_database};

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://127.0.0.1:5432/test", "x"),
            "postgres://127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn only_plain_names_are_spliced() {
        assert!(check_name("kinlink_it_a_b1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("x; DROP DATABASE test").is_err());
    }
}
