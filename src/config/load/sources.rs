//! `[[source]]`: name, kind, format and transport (a `dir` inbox or an `http`
//! feed), then the keys that mean something for one format only (sheet; csv
//! delimiter, encoding and limits; json paths), the column map and the per-column
//! length limits, both checked against ingest's canonical columns of the kind. A
//! feed URL is https (plain http only to this machine) with no credentials in it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::secrets::secret;
use super::values::{choice, is_loopback, non_empty_string, url_userinfo};
use super::Cx;
use crate::config::{
    redact_url, DirTransport, HttpAuth, HttpTransport, OtherOriginPages, SourceLimits,
    SourceSettings, TextEncoding, Transport,
};
use crate::domain::{FeedKind, Format};
use crate::ingest;
use crate::jobs;
use crate::jobs::walk::{closest, Entry, Section};

const SOURCE_KEYS: &[&str] = &[
    "name",
    "kind",
    "format",
    "transport",
    "max_bad_rows",
    "sheet",
    "delimiter",
    "encoding",
    "records_path",
    "next_path",
    "stale_after_hours",
    "columns",
    "max_line_bytes",
    "max_field_bytes",
    "multiline_fields",
    "max_lengths",
];

/// Keys of an http transport besides `type`; none of them belongs on a dir one.
const HTTP_TRANSPORT_KEYS: &[&str] = &[
    "url",
    "bearer_env",
    "bearer_file",
    "basic_user_env",
    "basic_user_file",
    "basic_password_env",
    "basic_password_file",
    "connect_timeout_secs",
    "timeout_secs",
    "retries",
    "backoff_ms",
    "max_body_bytes",
    "other_origin_pages",
];

/// Keys of a dir transport besides `type` and `path`; none of them belongs on an
/// http one.
const DIR_TRANSPORT_KEYS: &[&str] = &["settle_secs", "max_file_bytes"];

pub(super) fn sources(cx: &mut Cx<'_>, root: &Section<'_>) -> Vec<SourceSettings> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (table, line)) in root
        .array_of_tables(&mut cx.sink, "source")
        .into_iter()
        .enumerate()
    {
        let mut sec = Section::new(format!("[[source]] #{}", i + 1), table, line, &cx.sink);
        let name = if sec.require(
            &mut cx.sink,
            "name",
            "a short name, e.g. \"police-encompass\"",
        ) {
            sec.string(&mut cx.sink, "name")
        } else {
            None
        };
        let name = name.and_then(|(name, name_line)| {
            if !jobs::is_name(&name) {
                cx.sink.push(
                    name_line,
                    format!("source name {name:?} is not a usable name"),
                    "use letters, digits, `-` and `_` only, e.g. \"police-encompass\"",
                );
                return None;
            }
            if let Some(first) = names.get(&name) {
                cx.sink.push(
                    name_line,
                    format!("source name {name:?} is already used on line {first}"),
                    "give every [[source]] its own name",
                );
                return None;
            }
            names.insert(name.clone(), name_line);
            Some(name)
        });
        if let Some(name) = &name {
            sec.label = format!("[[source]] {name:?}");
        }
        if let Some(source) = source(cx, &sec, name) {
            out.push(source);
        }
    }
    out
}

fn source(cx: &mut Cx<'_>, sec: &Section<'_>, name: Option<String>) -> Option<SourceSettings> {
    sec.check_keys(&mut cx.sink, SOURCE_KEYS);
    let kind = if sec.require(
        &mut cx.sink,
        "kind",
        "attendance, police_da, housing or assessment",
    ) {
        let kinds: Vec<&str> = FeedKind::ALL.iter().map(|k| k.as_str()).collect();
        choice(cx, sec, "kind", &kinds).map(|i| FeedKind::ALL[i])
    } else {
        None
    };
    let format = if sec.require(&mut cx.sink, "format", "csv, xlsx, xls, ods or json") {
        let formats: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
        choice(cx, sec, "format", &formats).map(|i| Format::ALL[i])
    } else {
        None
    };
    let transport = if sec.require(
        &mut cx.sink,
        "transport",
        "where files come from, e.g. { type = \"dir\", path = \"inbox/police\" }",
    ) {
        let label = format!("the transport of {}", sec.label);
        sec.table(
            &mut cx.sink,
            "transport",
            label,
            "{ type = \"dir\", path = \"inbox/police\" }",
        )
        .and_then(|t| transport(cx, &t))
    } else {
        None
    };
    let max_bad_rows = sec
        .fraction(&mut cx.sink, "max_bad_rows")
        .map_or(0.05, |(f, _)| f);

    let mut source = SourceSettings {
        name: name.unwrap_or_default(),
        kind: kind.unwrap_or(FeedKind::Attendance),
        format: format.unwrap_or(Format::Csv),
        transport: transport
            .clone()
            .unwrap_or_else(|| Transport::Dir(DirTransport::new(PathBuf::new()))),
        max_bad_rows,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        columns: BTreeMap::new(),
        limits: SourceLimits::default(),
    };

    // Format-specific keys: each only where it means something.
    if let Some(format) = format {
        let is_sheet = matches!(format, Format::Xlsx | Format::Xls | Format::Ods);
        if is_sheet {
            source.sheet = non_empty_string(cx, sec, "sheet").map(|(s, _)| s);
        } else {
            sec.forbid(
                &mut cx.sink,
                "sheet",
                &format!("is only for xlsx, xls and ods, not {format}"),
                "remove it",
            );
        }
        if format == Format::Csv {
            if let Some((d, line)) = sec.string(&mut cx.sink, "delimiter") {
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii() && !matches!(c, '"' | '\n' | '\r') => {
                        source.delimiter = c as u8;
                    }
                    _ => cx.sink.push(
                        line,
                        format!(
                            "`delimiter` in {} is {d:?}, not a single character",
                            sec.label
                        ),
                        "use one ASCII character such as \";\", \"|\" or \"\\t\"",
                    ),
                }
            }
            if let Some(i) = choice(cx, sec, "encoding", &["utf-8", "windows-1252"]) {
                source.encoding = [TextEncoding::Utf8, TextEncoding::Windows1252][i];
            }
            csv_limits(cx, sec, &mut source.limits);
        } else {
            for key in [
                "delimiter",
                "encoding",
                "max_line_bytes",
                "max_field_bytes",
                "multiline_fields",
            ] {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    &format!("is only for csv, not {format}"),
                    "remove it",
                );
            }
        }
        if format == Format::Json {
            source.records_path = json_path(cx, sec, "records_path");
            source.next_path = json_path(cx, sec, "next_path");
        } else {
            for key in ["records_path", "next_path"] {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    &format!("is only for json, not {format}"),
                    "remove it",
                );
            }
        }
    }
    source.stale_after_hours = sec
        .integer_in(&mut cx.sink, "stale_after_hours", 1, i64::from(u32::MAX))
        .and_then(|(h, _)| u32::try_from(h).ok());

    let columns_label = format!("the columns of {}", sec.label);
    if let Some(columns) = sec.table(
        &mut cx.sink,
        "columns",
        columns_label,
        "a [source.columns] table: canonical = \"their header\"",
    ) {
        for entry in columns.entries() {
            if kind.is_some_and(|kind| !is_column_of(cx, entry, kind)) {
                continue;
            }
            match entry.item.as_str() {
                Some(header) if !header.trim().is_empty() => {
                    source
                        .columns
                        .insert(entry.key.clone(), header.trim().to_string());
                }
                _ => cx.sink.push(
                    entry.line,
                    format!(
                        "column `{}` in {} must name a header",
                        entry.key, columns.label
                    ),
                    format!("write {} = \"Their Header\"", entry.key),
                ),
            }
        }
    }

    if let Some(kind) = kind {
        source.limits.max_lengths = max_lengths(cx, sec, kind);
    }

    (kind.is_some() && format.is_some() && transport.is_some() && !source.name.is_empty())
        .then_some(source)
}

/// Whether a table key names a canonical column of `kind`; if not, a problem that
/// suggests the closest column.
fn is_column_of(cx: &mut Cx<'_>, entry: &Entry<'_>, kind: FeedKind) -> bool {
    let valid = ingest::canonical_columns(kind);
    if valid.contains(&entry.key.as_str()) {
        return true;
    }
    let list = valid.join(", ");
    let fix = match closest(&entry.key, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? the columns of {kind} are: {list}"),
        None => format!("the columns of {kind} are: {list}"),
    };
    cx.sink.push(
        entry.line,
        format!("`{}` is not a column of kind {kind}", entry.key),
        fix,
    );
    false
}

/// The largest `max_line_bytes` / `max_field_bytes` accepted: 64 MiB. The parser
/// holds a line in memory, so the limits are what bound a file's memory.
const MAX_CSV_LIMIT: i64 = 64 << 20;

/// `max_line_bytes`, `max_field_bytes` and `multiline_fields` of a csv source.
fn csv_limits(cx: &mut Cx<'_>, sec: &Section<'_>, limits: &mut SourceLimits) {
    let line = sec.integer_in(&mut cx.sink, "max_line_bytes", 64, MAX_CSV_LIMIT);
    let field = sec.integer_in(&mut cx.sink, "max_field_bytes", 16, MAX_CSV_LIMIT);
    if let Some((n, _)) = line {
        limits.max_line_bytes = n as usize;
    }
    if let Some((n, _)) = field {
        limits.max_field_bytes = n as usize;
    }
    if limits.max_field_bytes > limits.max_line_bytes {
        let at = field.or(line).map_or(sec.line, |(_, l)| l);
        cx.sink.push(
            at,
            format!(
                "`max_field_bytes` ({}) in {} is more than `max_line_bytes` ({}): a field is part of a line",
                limits.max_field_bytes, sec.label, limits.max_line_bytes
            ),
            "make max_field_bytes at most max_line_bytes",
        );
    }
    if let Some((on, _)) = sec.boolean(&mut cx.sink, "multiline_fields") {
        limits.multiline_fields = on;
    }
}

/// `[source.max_lengths]`: canonical column = the most characters its value may have.
fn max_lengths(cx: &mut Cx<'_>, sec: &Section<'_>, kind: FeedKind) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let label = format!("the max_lengths of {}", sec.label);
    let Some(table) = sec.table(
        &mut cx.sink,
        "max_lengths",
        label,
        "a [source.max_lengths] table: canonical column = characters, e.g. notification_id = 128",
    ) else {
        return out;
    };
    for entry in table.entries() {
        if !is_column_of(cx, entry, kind) {
            continue;
        }
        match entry.item.as_integer() {
            Some(n) if (1..=1_000_000).contains(&n) => {
                out.insert(entry.key.clone(), n as usize);
            }
            _ => cx.sink.push(
                entry.line,
                format!(
                    "`{}` in {} must be a number of characters from 1 to 1000000",
                    entry.key, table.label
                ),
                format!("write {} = 128", entry.key),
            ),
        }
    }
    out
}

/// A dotted path into a JSON document (`meta.pagination.next`).
fn json_path(cx: &mut Cx<'_>, sec: &Section<'_>, key: &str) -> Option<String> {
    let (path, line) = sec.string(&mut cx.sink, key)?;
    let path = path.trim();
    if path.is_empty()
        || path
            .split('.')
            .any(|part| part.is_empty() || part.chars().any(char::is_whitespace))
    {
        cx.sink.push(
            line,
            format!("`{key}` in {} is {path:?}, not a dotted path", sec.label),
            format!("name the JSON keys from the top, separated by dots, e.g. {key} = \"meta.pagination.next\""),
        );
        return None;
    }
    Some(path.to_string())
}

fn transport(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<Transport> {
    let mut known = vec!["type", "path"];
    known.extend_from_slice(HTTP_TRANSPORT_KEYS);
    known.extend_from_slice(DIR_TRANSPORT_KEYS);
    sec.check_keys(&mut cx.sink, &known);
    if !sec.require(&mut cx.sink, "type", "\"dir\" or \"http\"") {
        return None;
    }
    match choice(cx, sec, "type", &["dir", "http"])? {
        0 => {
            for key in HTTP_TRANSPORT_KEYS {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    "is only used with type = \"http\"",
                    "remove it, or make this an http transport",
                );
            }
            if !sec.require(
                &mut cx.sink,
                "path",
                "the folder files are dropped into, e.g. \"inbox/police\"",
            ) {
                return None;
            }
            let settle_secs = sec
                .integer_in(&mut cx.sink, "settle_secs", 0, 86_400)
                .map(|(n, _)| n);
            let max_file_bytes = sec
                .integer_in(&mut cx.sink, "max_file_bytes", 1, i64::MAX)
                .map(|(n, _)| n);
            let (path, _) = non_empty_string(cx, sec, "path")?;
            let mut dir = DirTransport::new(cx.path(&path));
            if let Some(n) = settle_secs {
                dir.settle_secs = u64::try_from(n).ok()?;
            }
            if let Some(n) = max_file_bytes {
                dir.max_file_bytes = u64::try_from(n).ok()?;
            }
            Some(Transport::Dir(dir))
        }
        _ => {
            sec.forbid(
                &mut cx.sink,
                "path",
                "is only used with type = \"dir\"",
                "remove it; an http transport has a `url`",
            );
            for key in DIR_TRANSPORT_KEYS {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    "is only used with type = \"dir\"",
                    "remove it, or make this a dir transport",
                );
            }
            http_transport(cx, sec).map(Transport::Http)
        }
    }
}

fn http_transport(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<HttpTransport> {
    let url = if sec.require(&mut cx.sink, "url", "the feed's https:// address") {
        non_empty_string(cx, sec, "url").and_then(|(url, line)| check_feed_url(cx, &url, line))
    } else {
        None
    };
    let bearer = secret(cx, sec, "bearer");
    let user = secret(cx, sec, "basic_user");
    let password = secret(cx, sec, "basic_password");
    let has = |stem: &str| sec.has(&format!("{stem}_env")) || sec.has(&format!("{stem}_file"));
    let mut auth_ok = true;
    if has("bearer") && (has("basic_user") || has("basic_password")) {
        cx.sink.push(
            sec.line,
            format!("{} has both bearer and basic authentication", sec.label),
            "keep one: bearer_env/bearer_file, or basic_user_* with basic_password_*",
        );
        auth_ok = false;
    }
    if has("basic_user") != has("basic_password") {
        cx.sink.push(
            sec.line,
            format!("{} has half of basic authentication", sec.label),
            "give both basic_user_env/basic_user_file and basic_password_env/basic_password_file",
        );
        auth_ok = false;
    }
    let auth = match (bearer, user, password) {
        (Some(token), None, None) => Some(HttpAuth::Bearer(token)),
        (None, Some(user), Some(password)) => Some(HttpAuth::Basic { user, password }),
        (None, None, None) => Some(HttpAuth::None),
        // Any other mix was reported above, or a secret key was malformed.
        _ => None,
    };
    let int = |cx: &mut Cx<'_>, key: &str, min: i64, max: i64, default: i64| {
        sec.integer_in(&mut cx.sink, key, min, max)
            .map_or(default, |(n, _)| n)
    };
    let connect_timeout_secs = int(cx, "connect_timeout_secs", 1, 3600, 10);
    let timeout_secs = int(cx, "timeout_secs", 1, 86_400, 300);
    let retries = int(cx, "retries", 0, 100, 3);
    let backoff_ms = int(cx, "backoff_ms", 0, 3_600_000, 1000);
    let max_body_bytes = int(cx, "max_body_bytes", 1, i64::MAX, 536_870_912);
    let other_origin_pages = if sec.has("other_origin_pages") {
        match choice(
            cx,
            sec,
            "other_origin_pages",
            &["refuse", "without_credentials"],
        ) {
            Some(0) => Some(OtherOriginPages::Refuse),
            Some(_) => Some(OtherOriginPages::WithoutCredentials),
            None => None,
        }
    } else {
        Some(OtherOriginPages::Refuse)
    };
    if !auth_ok {
        return None;
    }
    Some(HttpTransport {
        url: url?,
        auth: auth?,
        connect_timeout_secs: u64::try_from(connect_timeout_secs).ok()?,
        timeout_secs: u64::try_from(timeout_secs).ok()?,
        retries: u32::try_from(retries).ok()?,
        backoff_ms: u64::try_from(backoff_ms).ok()?,
        max_body_bytes: u64::try_from(max_body_bytes).ok()?,
        other_origin_pages: other_origin_pages?,
    })
}

/// A feed URL: https (plain http only to this machine), no credentials inside it.
fn check_feed_url(cx: &mut Cx<'_>, url: &str, line: usize) -> Option<String> {
    let shown = redact_url(url);
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        cx.sink.push(
            line,
            format!("`url` {shown:?} is not an http(s) address"),
            "write the full address, e.g. \"https://feeds.example.gov.uk/attendance\"",
        );
        return None;
    };
    if url_userinfo(url).is_some() {
        cx.sink.push(
            line,
            format!("`url` {shown:?} carries credentials, which would keep a secret in the config file"),
            "remove `user:password@` from the URL; use basic_user_env/basic_user_file with basic_password_env/basic_password_file (or bearer_env/bearer_file)",
        );
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    if host.is_empty() {
        cx.sink.push(
            line,
            format!("`url` {shown:?} has no host"),
            "write the full address, e.g. \"https://feeds.example.gov.uk/attendance\"",
        );
        return None;
    }
    if url.starts_with("http://") && !is_loopback(host) {
        cx.sink.push(
            line,
            format!("`url` {shown:?} is plain http: personal data would travel unencrypted"),
            "use https:// (plain http is only accepted to this machine, e.g. a test server)",
        );
        return None;
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};
    use crate::config::{OtherOriginPages, SourceLimits, Transport};

    #[test]
    fn source_limits_are_read_and_checked() {
        let fx = Fixture::new();
        let ok = fx
            .load(&format!(
                "{MINIMAL}max_line_bytes = 4096\nmax_field_bytes = 1024\nmultiline_fields = true\n\
                 [source.max_lengths]\nnotification_id = 128\n"
            ))
            .unwrap();
        let limits = &ok.sources[0].limits;
        assert_eq!(
            (
                limits.max_line_bytes,
                limits.max_field_bytes,
                limits.multiline_fields
            ),
            (4096, 1024, true)
        );
        assert_eq!(limits.max_lengths.get("notification_id"), Some(&128));
        let defaults = &fx.load(MINIMAL).unwrap().sources[0].limits;
        assert_eq!(*defaults, SourceLimits::default());

        let text = format!(
            "{MINIMAL}max_line_bytes = 100\nmax_field_bytes = 200\n[source.max_lengths]\nnotificaton_id = 9\nsurname = 0\n"
        );
        let problems = fx.problems(&text);
        assert!(
            find(&problems, "`max_field_bytes` (200)")
                .fix
                .contains("at most max_line_bytes"),
            "{problems:#?}"
        );
        assert!(find(
            &problems,
            "`notificaton_id` is not a column of kind police_da"
        )
        .fix
        .contains("`notification_id`"));
        assert_eq!(find(&problems, "`surname` in the max_lengths").line, 11);
        assert_eq!(problems.len(), 3, "{problems:#?}");

        let sheet = MINIMAL.replace("format = \"csv\"", "format = \"xlsx\"");
        let problems = fx.problems(&format!("{sheet}multiline_fields = true\n"));
        assert!(find(&problems, "`multiline_fields`")
            .message
            .contains("only for csv"));
    }

    #[test]
    fn dir_settle_and_size_keys_and_the_other_origin_setting() {
        let fx = Fixture::new();
        let s = fx.load(MINIMAL).unwrap();
        let Transport::Dir(d) = &s.sources[0].transport else {
            panic!("not dir")
        };
        assert_eq!((d.settle_secs, d.max_file_bytes), (60, 536_870_912));
        let s = fx
            .load(
                r#"
[[source]]
name = "a"
kind = "housing"
format = "csv"
transport = { type = "dir", path = "in", settle_secs = 0, max_file_bytes = 1000 }

[[source]]
name = "b"
kind = "housing"
format = "json"
transport = { type = "http", url = "https://x.example/b", other_origin_pages = "without_credentials" }
"#,
            )
            .unwrap();
        let Transport::Dir(d) = &s.sources[0].transport else {
            panic!("not dir")
        };
        assert_eq!((d.settle_secs, d.max_file_bytes), (0, 1000));
        let Transport::Http(h) = &s.sources[1].transport else {
            panic!("not http")
        };
        assert_eq!(h.other_origin_pages, OtherOriginPages::WithoutCredentials);

        let problems = fx.problems(
            r#"
[[source]]
name = "a"
kind = "housing"
format = "csv"
transport = { type = "dir", path = "in", settle_secs = -1, max_file_bytes = "1G", other_origin_pages = "refuse" }

[[source]]
name = "b"
kind = "housing"
format = "json"
transport = { type = "http", url = "https://x.example/b", settle_secs = 5, max_file_bytes = 9, other_origin_pages = "anyone" }
"#,
        );
        let of =
            |key: &str, source: &str| format!("`{key}` in the transport of [[source]] {source:?}");
        assert_eq!(find(&problems, &of("settle_secs", "a")).line, 6);
        assert_eq!(find(&problems, &of("max_file_bytes", "a")).line, 6);
        let p = find(&problems, &of("other_origin_pages", "a"));
        assert!(p.fix.contains("http transport"), "{p:?}");
        let p = find(&problems, &of("settle_secs", "b"));
        assert_eq!(p.line, 12);
        assert!(p.fix.contains("dir transport"), "{p:?}");
        find(&problems, &of("max_file_bytes", "b"));
        let p = find(&problems, &of("other_origin_pages", "b"));
        assert_eq!(p.line, 12);
        assert!(p.fix.contains("without_credentials"), "{p:?}");
    }

    #[test]
    fn format_specific_source_keys() {
        let fx = Fixture::new();
        let text = r#"
[[source]]
name = "a"
kind = "attendance"
format = "json"
transport = { type = "dir", path = "in", url = "https://x.example" }
sheet = "One"
records_path = "data..items"

[[source]]
name = "b"
kind = "housing"
format = "csv"
transport = { type = "http", url = "http://feeds.example.gov.uk/h", path = "x" }
next_path = "next"
delimiter = ";;"
encoding = "latin1"

[[source]]
name = "bad name"
kind = "housing"
format = "ods"
transport = { type = "http", url = "http://127.0.0.1:8080/h", basic_user_env = "U" }
sheet = "Notices"
"#;
        let problems = fx.problems(text);
        assert_eq!(find(&problems, "`url` in the transport").line, 6);
        assert_eq!(find(&problems, "`sheet`").line, 7);
        assert_eq!(find(&problems, "not a dotted path").line, 8);
        assert_eq!(find(&problems, "plain http").line, 14);
        assert_eq!(find(&problems, "`path` in the transport").line, 14);
        assert_eq!(find(&problems, "`next_path`").line, 15);
        assert_eq!(find(&problems, "not a single character").line, 16);
        assert_eq!(find(&problems, "`encoding`").line, 17);
        assert_eq!(
            find(&problems, "\"bad name\" is not a usable name").line,
            20
        );
        assert_eq!(find(&problems, "half of basic authentication").line, 23);
        assert_eq!(problems.len(), 10, "{problems:#?}");
    }
}
