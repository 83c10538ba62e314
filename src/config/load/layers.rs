//! The environment layer: `KINLINK__SECTION__KEY` variables (`KINLINK__KEY` for a
//! top-level key) set single keys of the parsed file before it is checked, so an
//! override is checked like a line of the file and its problems name the
//! variable. Lists of tables (`[[source]]`) and secrets cannot be overridden.

use toml_edit::{Item, Value};

use crate::jobs::walk::{describe, looks_secret, Sink};

/// Environment variables named `KINLINK__SECTION__KEY` (or `KINLINK__KEY` at the
/// top level) override that key of the config file.
pub const ENV_PREFIX: &str = "KINLINK__";

/// Top-level lists of tables: an override cannot say which one it means.
const TABLE_LISTS: &[&str] = &["source", "locality", "school"];

const LISTS_FIX: &str = "overrides set keys of tables such as [mail] (KINLINK__MAIL__TRANSPORT); \
     change lists of tables such as [[source]] in the config file";

/// Sets each `KINLINK__SECTION__KEY` override (sorted by name) in `top`: the key
/// is replaced, or added with its table when the file has neither. The value is
/// read as a TOML value when it is one (`8025`, `true`, `["a", "b"]`), else as a
/// string. Secrets are refused: they come only through `*_env` and `*_file`.
/// Whether the key exists is left to the checks that follow, which then name the
/// variable. Returns the names of the variables applied.
pub(super) fn apply_overrides(
    top: &mut toml_edit::Table,
    overrides: &[(String, String)],
    sink: &mut Sink,
) -> Vec<String> {
    let mut vars: Vec<&(String, String)> = overrides
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    'vars: for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let Some((key, sections)) = path
            .split_last()
            .filter(|_| path.iter().all(|p| !p.is_empty()))
        else {
            sink.push(
                0,
                format!("the environment variable {name} does not name a config key"),
                "name a key as KINLINK__SECTION__KEY (e.g. KINLINK__MAIL__TRANSPORT), or KINLINK__KEY for a top-level key (e.g. KINLINK__TIMEZONE)",
            );
            continue;
        };
        if looks_secret(key) {
            sink.push(
                0,
                format!("the environment variable {name} would pass a secret as a config value; it is not used"),
                format!(
                    "secrets are read only through `*_env` and `*_file` keys: unset {name}, put the secret in \
                     its own variable or credential file, and name it with `{key}_env` or \
                     `{key}_file` in the config (or with {name}_ENV / {name}_FILE)"
                ),
            );
            continue;
        }
        if sections
            .first()
            .is_some_and(|s| TABLE_LISTS.contains(&s.as_str()))
        {
            sink.push(
                0,
                format!(
                    "the environment variable {name} names a key inside [[{}]], a list of tables",
                    sections[0]
                ),
                LISTS_FIX,
            );
            continue;
        }
        let mut label = "the top level".to_string();
        let mut table: &mut dyn toml_edit::TableLike = top;
        for (depth, section) in sections.iter().enumerate() {
            if table.get(section).is_none() {
                let mut new = toml_edit::Table::new();
                new.set_implicit(true);
                table.insert(section, Item::Table(new));
                sink.env_key(&label, section, name);
            }
            if let Some(other) = table.get(section).filter(|i| !i.is_table_like()) {
                sink.push(
                    0,
                    format!(
                        "the environment variable {name} names a key inside `{section}` in {label}, which is {}, not a table",
                        describe(other)
                    ),
                    LISTS_FIX,
                );
                continue 'vars;
            }
            let Some(next) = table.get_mut(section).and_then(Item::as_table_like_mut) else {
                continue 'vars;
            };
            table = next;
            label = format!("[{}]", sections[..=depth].join("."));
        }
        let value = raw
            .trim()
            .parse::<Value>()
            .unwrap_or_else(|_| Value::from(raw.as_str()));
        table.remove(key);
        table.insert(key, Item::Value(value));
        sink.env_key(&label, key, name);
        applied.push(name.clone());
    }
    applied
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};
    use crate::config::load::summary;
    use crate::config::{DetailLevel, MailTransport};

    #[test]
    fn env_overrides_replace_and_add_keys_and_are_listed_by_name() {
        let fx = Fixture::new();
        let text = format!("{MINIMAL}\n[mail]\ntransport = \"file\"\ndetail = \"minimal\"\n");
        let s = fx
            .load_overridden(
                &text,
                &[
                    ("KINLINK__MAIL__DETAIL", "standard"),
                    ("KINLINK__MAIL__ADMIN", r#"["admin@example.gov.uk"]"#),
                    ("KINLINK__HTTP__LISTEN", "127.0.0.1:9187"),
                    ("KINLINK__TIMEZONE", "Europe/Paris"),
                    ("KINLINK__LINKAGE__AUTO_LINK", "0.97"),
                    ("KINLINK__RULES__ATTENDANCE_DROP__BELOW", "0.85"),
                    ("KINLINK_CONFIG", "not an override"),
                ],
            )
            .unwrap();
        assert_eq!(s.mail.detail, DetailLevel::Standard);
        assert_eq!(s.mail.admin, ["admin@example.gov.uk"]);
        assert_eq!(
            s.http.as_ref().map(|h| h.listen.to_string()).as_deref(),
            Some("127.0.0.1:9187")
        );
        assert_eq!(s.timezone, chrono_tz::Europe::Paris);
        assert_eq!(s.linkage.auto_link, 0.97);
        assert_eq!(s.rules.attendance_drop.below, 0.85);
        // What the file says and no variable touches stays.
        assert!(matches!(s.mail.transport, MailTransport::File { .. }));
        assert_eq!(s.sources[0].name, "police");
        assert_eq!(
            s.env_overrides,
            [
                "KINLINK__HTTP__LISTEN",
                "KINLINK__LINKAGE__AUTO_LINK",
                "KINLINK__MAIL__ADMIN",
                "KINLINK__MAIL__DETAIL",
                "KINLINK__RULES__ATTENDANCE_DROP__BELOW",
                "KINLINK__TIMEZONE",
            ]
        );
        let summary = summary(&s);
        assert!(
            summary.contains("KINLINK__MAIL__ADMIN, KINLINK__MAIL__DETAIL"),
            "{summary}"
        );
        assert!(!summary.contains("admin@example.gov.uk"), "{summary}");
    }

    #[test]
    fn a_bad_env_override_is_a_problem_that_names_the_variable() {
        let fx = Fixture::new();
        let text = format!("{MINIMAL}\n[http]\nlisten = \"127.0.0.1:9187\"\nbogus = 1\n");
        let problems = match fx.load_overridden(
            &text,
            &[
                ("KINLINK__MAIL__TRANSPRT", "smtp"),
                ("KINLINK__STORE__URL", "sqlite://x.db"),
                ("KINLINK__HTTP__LISTEN", "nowhere"),
                ("KINLINK__RETENTION__RAW_FILES_DAYS", "soon"),
                ("KINLINK__SOURCE__NAME", "police"),
                ("KINLINK__HTTP__LISTEN__PORT", "9187"),
                ("KINLINK__MAIL__SMTP_PASSWORD", "hunter2"),
                ("KINLINK__DATABASE_URL", "postgres://eh:sekrit@db/kinlink"),
                ("KINLINK____DETAIL", "full"),
            ],
        ) {
            Ok(_) => panic!("expected problems"),
            Err(p) => p.0,
        };
        let p = find(&problems, "unknown key `transprt` in [mail]");
        assert!(p.message.contains("KINLINK__MAIL__TRANSPRT"), "{p}");
        assert!(p.fix.contains("did you mean `transport`"), "{p}");
        assert_eq!(p.line, 0);
        let p = find(&problems, "unknown key `store` in the top level");
        assert!(p.message.contains("KINLINK__STORE__URL"), "{p}");
        let p = find(&problems, "`listen` in [http] is \"nowhere\"");
        assert!(p.message.contains("KINLINK__HTTP__LISTEN"), "{p}");
        assert_eq!(p.line, 0, "the value is the variable's, not line 9's");
        let p = find(
            &problems,
            "`raw_files_days` in [retention] must be an integer",
        );
        assert!(
            p.message.contains("KINLINK__RETENTION__RAW_FILES_DAYS"),
            "{p}"
        );
        let p = find(
            &problems,
            "KINLINK__SOURCE__NAME names a key inside [[source]]",
        );
        assert!(p.fix.contains("in the config file"), "{p}");
        find(
            &problems,
            "KINLINK__HTTP__LISTEN__PORT names a key inside `listen` in [http], which is a string",
        );
        let p = find(
            &problems,
            "KINLINK__MAIL__SMTP_PASSWORD would pass a secret",
        );
        assert!(p.fix.contains("smtp_password_env"), "{p}");
        let p = find(&problems, "KINLINK__DATABASE_URL");
        assert!(
            p.message.contains("password") || p.fix.contains("database_url_env"),
            "{p}"
        );
        find(&problems, "KINLINK____DETAIL does not name a config key");
        // The file's own problems keep their lines.
        assert_eq!(find(&problems, "unknown key `bogus` in [http]").line, 10);
        for p in &problems {
            let text = p.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("sekrit"),
                "{text}"
            );
        }
        assert_eq!(problems.len(), 10, "{problems:#?}");
    }
}
