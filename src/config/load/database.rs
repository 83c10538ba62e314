//! `database_url` (SQLite, or PostgreSQL without a password in it) and
//! `database_url_env` (a URL that may carry a password, read from the environment
//! now). A relative SQLite path lives inside `state_dir`; no message prints a
//! password.

use std::path::Path;

use super::values::{is_env_name, non_empty_string, url_userinfo};
use super::Cx;
use crate::config::{redact_url, DatabaseUrl};
use crate::jobs::walk::Section;

pub(super) fn database(cx: &mut Cx<'_>, root: &Section<'_>, state_dir: &Path) -> DatabaseUrl {
    let default = || DatabaseUrl::Sqlite(state_dir.join("kinlink.db"));
    if root.has("database_url") && root.has("database_url_env") {
        cx.sink.push(
            root.line_of("database_url_env"),
            "both `database_url` and `database_url_env` are set",
            "keep one: `database_url` for SQLite or a password-less URL, `database_url_env` for a URL with a password",
        );
        return default();
    }
    if let Some((url, line)) = non_empty_string(cx, root, "database_url") {
        return match parse_database_url(&url, state_dir, false) {
            Ok(db) => db,
            Err((message, fix)) => {
                cx.sink.push(line, message, fix);
                default()
            }
        };
    }
    if let Some((name, line)) = non_empty_string(cx, root, "database_url_env") {
        if !is_env_name(&name) {
            cx.sink.push(
                line,
                format!("`database_url_env` is {name:?}, not an environment variable name"),
                "name the variable, e.g. database_url_env = \"KINLINK_DATABASE_URL\"",
            );
            return default();
        }
        // Read now: the store needs a typed URL, and the daemon cannot start
        // without it anyway.
        return match (cx.env)(&name) {
            Some(url) => match parse_database_url(&url, state_dir, true) {
                Ok(db) => db,
                Err((message, fix)) => {
                    cx.sink
                        .push(line, format!("environment variable {name}: {message}"), fix);
                    default()
                }
            },
            None => {
                cx.sink.push(
                    line,
                    format!("environment variable {name} (named by `database_url_env`) is not set"),
                    format!("set {name} to the database URL in the service's environment (systemd Environment= or EnvironmentFile=)"),
                );
                default()
            }
        };
    }
    default()
}

/// Parses a database URL. The message never contains a password.
fn parse_database_url(
    url: &str,
    state_dir: &Path,
    password_allowed: bool,
) -> Result<DatabaseUrl, (String, String)> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest.is_empty() {
            return Err((
                "the SQLite URL names no file".into(),
                "write database_url = \"sqlite://kinlink.db\" (a file inside state_dir) or \"sqlite:///absolute/path.db\"".into(),
            ));
        }
        if rest.contains('?') {
            return Err((
                format!("SQLite URL {url:?} has query options"),
                "remove `?...`: kinlink opens SQLite in WAL mode and creates the file when it is missing".into(),
            ));
        }
        if rest == ":memory:" {
            return Err((
                "an in-memory SQLite database forgets everything at exit".into(),
                "use a file: database_url = \"sqlite://kinlink.db\"".into(),
            ));
        }
        let p = Path::new(rest);
        return Ok(DatabaseUrl::Sqlite(if p.is_absolute() {
            p.to_path_buf()
        } else {
            state_dir.join(p)
        }));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if !cfg!(feature = "postgres") {
            return Err((
                "this build of kinlink has no PostgreSQL support".into(),
                "build with the `postgres` feature (on by default), or use database_url = \"sqlite://kinlink.db\"".into(),
            ));
        }
        if !password_allowed && url_has_password(url) {
            return Err((
                format!("`database_url` {} carries a password", redact_url(url)),
                "remove the line and put the whole URL in an environment variable: database_url_env = \"KINLINK_DATABASE_URL\"".into(),
            ));
        }
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    Err((
        format!(
            "database URL {} is neither SQLite nor PostgreSQL",
            redact_url(url)
        ),
        "write \"sqlite://kinlink.db\" (a file inside state_dir) or \"postgres://host/dbname\""
            .into(),
    ))
}

fn url_has_password(url: &str) -> bool {
    url_userinfo(url).is_some_and(|u| u.contains(':'))
        || url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("password=")))
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};
    use crate::config::load::summary;
    use crate::config::DatabaseUrl;

    #[test]
    fn database_url_env_is_read_and_may_carry_a_password() {
        let fx = Fixture::new();
        let text = format!("database_url_env = \"KINLINK_DATABASE_URL\"\n{MINIMAL}");
        let s = fx
            .load_env(
                &text,
                &[("KINLINK_DATABASE_URL", "postgres://kin:pw@db/kin")],
            )
            .unwrap();
        assert_eq!(
            s.database,
            DatabaseUrl::Postgres("postgres://kin:pw@db/kin".into())
        );
        assert!(summary(&s).contains("postgres://kin:***@db/kin"));
        let problems = fx.load(&text).unwrap_err().0;
        let p = find(&problems, "KINLINK_DATABASE_URL");
        assert_eq!(p.line, 1);
        assert!(p.message.contains("is not set"));
    }
}
