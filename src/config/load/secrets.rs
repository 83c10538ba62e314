//! Secrets are only ever named in the file: `<stem>_env` names an environment
//! variable, `<stem>_file` a file (a relative one inside `$CREDENTIALS_DIRECTORY`
//! when systemd sets it, else beside the config file). [`check_secrets`] tries to
//! read every secret the settings name, for `check-config`; the loader never does.

use std::path::Path;

use super::values::{is_env_name, non_empty_string};
use super::{Cx, Problem};
use crate::config::{HttpAuth, MailTransport, SecretError, SecretRef, Settings, Transport};
use crate::jobs::walk::Section;

/// A `<stem>_env` or `<stem>_file` secret; `None` when neither is given.
pub(super) fn secret(cx: &mut Cx<'_>, sec: &Section<'_>, stem: &str) -> Option<SecretRef> {
    let env_key = format!("{stem}_env");
    let file_key = format!("{stem}_file");
    if sec.has(&env_key) && sec.has(&file_key) {
        cx.sink.push(
            sec.line_of(&file_key),
            format!("both `{env_key}` and `{file_key}` are set in {}", sec.label),
            "keep one of them",
        );
        return None;
    }
    if let Some((name, line)) = non_empty_string(cx, sec, &env_key) {
        if !is_env_name(&name) {
            cx.sink.push(
                line,
                format!(
                    "`{env_key}` in {} is {name:?}, not an environment variable name",
                    sec.label
                ),
                format!(
                    "name the variable that holds the secret (letters, digits, `_`), e.g. {env_key} = \"KINLINK_{}\"",
                    stem.to_ascii_uppercase()
                ),
            );
            return None;
        }
        return Some(SecretRef::Env(name));
    }
    let (file, _) = non_empty_string(cx, sec, &file_key)?;
    let p = Path::new(&file);
    let path = if p.is_absolute() {
        p.to_path_buf()
    } else {
        match &cx.credentials {
            Some(dir) => dir.join(p),
            None => cx.base.join(p),
        }
    };
    Some(SecretRef::File(path))
}

/// Tries to read every secret the settings name. A failure is a problem; the
/// value itself is never printed.
pub fn check_secrets(settings: &Settings) -> Vec<Problem> {
    let mut named: Vec<(String, &SecretRef)> = Vec::new();
    if let MailTransport::Smtp(smtp) = &settings.mail.transport {
        if let Some(user) = &smtp.user {
            named.push(("the SMTP user of [mail]".into(), user));
        }
        if let Some(password) = &smtp.password {
            named.push(("the SMTP password of [mail]".into(), password));
        }
    }
    for source in &settings.sources {
        if let Transport::Http(http) = &source.transport {
            match &http.auth {
                HttpAuth::None => {}
                HttpAuth::Bearer(token) => {
                    named.push((
                        format!("the bearer token of source {:?}", source.name),
                        token,
                    ));
                }
                HttpAuth::Basic { user, password } => {
                    named.push((
                        format!("the basic-auth user of source {:?}", source.name),
                        user,
                    ));
                    named.push((
                        format!("the basic-auth password of source {:?}", source.name),
                        password,
                    ));
                }
            }
        }
    }
    named
        .into_iter()
        .filter_map(|(what, secret)| {
            let (message, fix) = match secret.resolve() {
                Ok(value) if value.expose().trim().is_empty() => (
                    format!("{what} is empty"),
                    "put the secret in it".to_string(),
                ),
                Ok(_) => return None,
                Err(e @ SecretError::EnvMissing(_)) => (
                    format!("cannot read {what}: {e}"),
                    "set it in the service's environment (systemd Environment= or EnvironmentFile=), or use the `_file` form with LoadCredential=".to_string(),
                ),
                Err(e @ SecretError::File { .. }) => (
                    format!("cannot read {what}: {e}"),
                    "create the file readable by the kinlink user, or let systemd LoadCredential= put it in $CREDENTIALS_DIRECTORY".to_string(),
                ),
            };
            Some(Problem {
                file: settings.config_path.clone(),
                line: 0,
                message,
                fix,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::fixture::{find, Fixture};
    use crate::config::load::Problems;

    #[test]
    fn secrets_in_plain_keys_are_rejected() {
        let fx = Fixture::new();
        let text = r#"
database_url = "postgres://kin:hunter2@db.example.gov.uk/kinlink"
[mail]
transport = "smtp"
smtp_host = "smtp.example.gov.uk"
smtp_user_env = "SMTP_USER"
smtp_password = "hunter2"
[[source]]
name = "mis"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://feeds.example.gov.uk/a", bearer = "hunter2" }
[[source]]
name = "mis2"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://me:hunter2@feeds.example.gov.uk/a" }
"#;
        let problems = fx.problems(text);
        let shown = Problems(problems.clone()).to_string();
        assert!(!shown.contains("hunter2"), "a secret leaked:\n{shown}");
        let p = find(&problems, "`database_url`");
        assert_eq!(p.line, 2);
        assert!(
            p.fix
                .contains("database_url_env = \"KINLINK_DATABASE_URL\""),
            "{p}"
        );
        let p = find(&problems, "`smtp_password` in [mail] would keep a secret");
        assert_eq!(p.line, 7);
        assert!(p.fix.contains("smtp_password_env") && p.fix.contains("smtp_password_file"));
        let p = find(&problems, "`bearer` in the transport");
        assert_eq!(p.line, 12);
        assert!(p.fix.contains("bearer_env"), "{p}");
        let p = find(&problems, "carries credentials");
        assert_eq!(p.line, 17);
        assert!(p.fix.contains("basic_password_env"), "{p}");
        // The user without a password is its own problem.
        find(&problems, "SMTP user without a password");
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn check_secrets_reports_unreadable_secrets_without_values() {
        let fx = Fixture::new();
        std::fs::write(fx.dir.path().join("token"), "s3cret-token\n").unwrap();
        std::fs::write(fx.dir.path().join("empty"), "\n").unwrap();
        let text = r#"
[[source]]
name = "a"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/a", bearer_file = "token" }
[[source]]
name = "b"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/b", bearer_file = "missing" }
[[source]]
name = "c"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/c", bearer_file = "empty" }
[[source]]
name = "d"
kind = "attendance"
format = "json"
transport = { type = "http", url = "https://x.example/d", bearer_env = "KINLINK_TEST_SURELY_UNSET_9F2C" }
"#;
        let s = fx.load(text).unwrap();
        let problems = check_secrets(&s);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].message.contains("source \"b\""));
        assert!(
            problems[1].message.contains("source \"c\"") && problems[1].message.contains("empty")
        );
        assert!(problems[2]
            .message
            .contains("KINLINK_TEST_SURELY_UNSET_9F2C"));
        let shown = Problems(problems).to_string();
        assert!(!shown.contains("s3cret"));
    }
}
