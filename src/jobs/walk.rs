//! Walking a parsed TOML document by hand: typed getters that record a [`Problem`]
//! (with its 1-based line) instead of stopping, so one pass reports every mistake
//! in a file a person wrote.
//!
//! It lives under `jobs` because both loaders use it and docs/style.md lets `config`
//! depend on `jobs` (a `Settings` holds `JobSpec`s) but not the other way round.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike, Value};

use crate::domain::Problem;

/// Collects problems for one file and turns byte spans into line numbers.
pub(crate) struct Sink {
    file: PathBuf,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
    pub(crate) problems: Vec<Problem>,
    /// Keys set by environment variables (`KINLINK__SECTION__KEY`): (table label,
    /// key, variable). They have no line in the file, so each gets a line past its
    /// end, and a problem on that line names the variable instead.
    env_keys: Vec<(String, String, String)>,
}

impl Sink {
    /// A sink for `file`, whose text is `text`.
    pub(crate) fn new(file: &Path, text: &str) -> Sink {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Sink {
            file: file.to_path_buf(),
            line_starts,
            problems: Vec::new(),
            env_keys: Vec::new(),
        }
    }

    /// Notes that `key` of the table labelled `label` was set by the environment
    /// variable `var`.
    pub(crate) fn env_key(&mut self, label: &str, key: &str, var: &str) {
        self.env_keys
            .push((label.to_string(), key.to_string(), var.to_string()));
    }

    /// The line standing for a key set from the environment, if it was.
    fn env_line(&self, label: &str, key: &str) -> Option<usize> {
        let i = self
            .env_keys
            .iter()
            .rposition(|(l, k, _)| l == label && k == key)?;
        Some(self.line_starts.len() + 1 + i)
    }

    /// The 1-based line of a span's start; 0 when there is no span.
    pub(crate) fn line(&self, span: Option<Range<usize>>) -> usize {
        match span {
            Some(span) => self
                .line_starts
                .partition_point(|&start| start <= span.start),
            None => 0,
        }
    }

    /// Records a problem.
    /// Parses TOML text, or records the syntax error (with its line) and returns
    /// that line.
    pub(crate) fn parse(&mut self, text: &str) -> Result<toml_edit::Document<String>, usize> {
        toml_edit::Document::parse(text.to_string()).map_err(|e| {
            let line = self.line(e.span());
            self.push(
                line,
                format!("not valid TOML: {}", e.message().trim_end_matches('.')),
                "correct the TOML syntax on this line",
            );
            line
        })
    }

    pub(crate) fn push(&mut self, line: usize, message: impl Into<String>, fix: impl Into<String>) {
        let problem = self.problem(line, message, fix);
        self.problems.push(problem);
    }

    /// A problem of this file at `line`; on a key set from the environment, it
    /// names the variable.
    pub(crate) fn problem(
        &self,
        line: usize,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Problem {
        let mut message = message.into();
        let mut line = line;
        if let Some((_, _, var)) = line
            .checked_sub(self.line_starts.len() + 1)
            .and_then(|i| self.env_keys.get(i))
        {
            message = format!("{message} (set by the environment variable {var})");
            line = 0;
        }
        Problem {
            file: self.file.clone(),
            line,
            message,
            fix: fix.into(),
        }
    }
}

/// One key of a table, with the line it is on.
pub(crate) struct Entry<'d> {
    pub(crate) key: String,
    pub(crate) line: usize,
    pub(crate) item: &'d Item,
}

/// A table (standard or inline) being checked.
pub(crate) struct Section<'d> {
    /// How messages name it, e.g. `[mail]` or `[[source]] "police"`.
    pub(crate) label: String,
    /// The header's line (or the line of the key that holds an inline table).
    pub(crate) line: usize,
    entries: Vec<Entry<'d>>,
}

impl<'d> Section<'d> {
    /// Wraps a table; `line` is used for keys without a span.
    pub(crate) fn new(
        label: impl Into<String>,
        table: &'d dyn TableLike,
        line: usize,
        sink: &Sink,
    ) -> Section<'d> {
        let label = label.into();
        let entries = table
            .iter()
            .filter_map(|(key, _)| table.get_key_value(key))
            .map(|(key, item)| {
                let key_line = match sink.line(key.span()) {
                    0 => sink.env_line(&label, key.get()).unwrap_or(line),
                    n => n,
                };
                Entry {
                    key: key.get().to_string(),
                    line: key_line,
                    item,
                }
            })
            .collect();
        Section {
            label,
            line,
            entries,
        }
    }

    /// The entries, in file order.
    pub(crate) fn entries(&self) -> &[Entry<'d>] {
        &self.entries
    }

    /// One entry.
    pub(crate) fn get(&self, key: &str) -> Option<&Entry<'d>> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Whether the key is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The line of a key, or the table's own line when it is absent.
    pub(crate) fn line_of(&self, key: &str) -> usize {
        self.get(key).map_or(self.line, |e| e.line)
    }

    /// Reports every key not in `known`, with the closest known key as the fix. A
    /// key that would hold a secret in plain text gets a fix pointing at its
    /// `_env` / `_file` form instead.
    pub(crate) fn check_keys(&self, sink: &mut Sink, known: &[&str]) {
        for entry in &self.entries {
            if known.contains(&entry.key.as_str()) {
                continue;
            }
            let env_form = format!("{}_env", entry.key);
            if known.contains(&env_form.as_str()) || looks_secret(&entry.key) {
                let stem = if known.contains(&env_form.as_str()) {
                    entry.key.clone()
                } else {
                    closest(
                        &env_form,
                        known.iter().copied().filter(|k| k.ends_with("_env")),
                    )
                    .and_then(|k| k.strip_suffix("_env"))
                    .unwrap_or(&entry.key)
                    .to_string()
                };
                sink.push(
                    entry.line,
                    format!(
                        "`{}` in {} would keep a secret in the config file",
                        entry.key, self.label
                    ),
                    format!(
                        "remove it; name an environment variable with `{stem}_env = \"...\"` \
                         or a file with `{stem}_file = \"...\"` (relative files are read from \
                         $CREDENTIALS_DIRECTORY, as systemd LoadCredential sets it)"
                    ),
                );
                continue;
            }
            let list = known.join(", ");
            let fix = match closest(&entry.key, known.iter().copied()) {
                Some(best) => format!(
                    "did you mean `{best}`? the keys of {} are: {list}",
                    self.label
                ),
                None => format!("remove it; the keys of {} are: {list}", self.label),
            };
            sink.push(
                entry.line,
                format!("unknown key `{}` in {}", entry.key, self.label),
                fix,
            );
        }
    }

    /// Reports a key that is present but not allowed in this situation.
    pub(crate) fn forbid(&self, sink: &mut Sink, key: &str, why: &str, fix: &str) {
        if let Some(entry) = self.get(key) {
            sink.push(
                entry.line,
                format!("`{key}` in {} {why}", self.label),
                fix.to_string(),
            );
        }
    }

    /// Reports a missing required key.
    pub(crate) fn require(&self, sink: &mut Sink, key: &str, what: &str) -> bool {
        if self.has(key) {
            return true;
        }
        sink.push(
            self.line,
            format!("{} has no `{key}`", self.label),
            format!("add `{key} = ...` ({what})"),
        );
        false
    }

    fn wrong_type(&self, sink: &mut Sink, entry: &Entry<'_>, expected: &str, example: &str) {
        sink.push(
            entry.line,
            format!(
                "`{}` in {} must be {expected}, not {}",
                entry.key,
                self.label,
                describe(entry.item)
            ),
            format!("write it as `{} = {example}`", entry.key),
        );
    }

    /// A nested table (standard `[a.b]` or inline `{ ... }`), labelled `label`.
    pub(crate) fn table(
        &self,
        sink: &mut Sink,
        key: &str,
        label: impl Into<String>,
        example: &str,
    ) -> Option<Section<'d>> {
        let entry = self.get(key)?;
        match entry.item.as_table_like() {
            Some(table) => Some(Section::new(label, table, entry.line, sink)),
            None => {
                self.wrong_type(sink, entry, "a table", example);
                None
            }
        }
    }

    /// The tables of an array of tables (`[[key]]`), each with its header line.
    pub(crate) fn array_of_tables(
        &self,
        sink: &mut Sink,
        key: &str,
    ) -> Vec<(&'d toml_edit::Table, usize)> {
        let Some(entry) = self.get(key) else {
            return Vec::new();
        };
        match entry.item {
            Item::ArrayOfTables(array) => array
                .iter()
                .map(|table| {
                    let line = match sink.line(table.span()) {
                        0 => entry.line,
                        n => n,
                    };
                    (table, line)
                })
                .collect(),
            other => {
                sink.push(
                    entry.line,
                    format!(
                        "`{key}` must be a list of [[{key}]] tables, not {}",
                        describe(other)
                    ),
                    format!("write each one as its own [[{key}]] table"),
                );
                Vec::new()
            }
        }
    }

    /// A string value (`None` when absent or of another type, which is reported).
    pub(crate) fn string(&self, sink: &mut Sink, key: &str) -> Option<(String, usize)> {
        let entry = self.get(key)?;
        match entry.item.as_str() {
            Some(s) => Some((s.to_string(), entry.line)),
            None => {
                self.wrong_type(sink, entry, "a string", "\"...\"");
                None
            }
        }
    }

    /// An integer value.
    pub(crate) fn integer(&self, sink: &mut Sink, key: &str) -> Option<(i64, usize)> {
        let entry = self.get(key)?;
        match entry.item.as_integer() {
            Some(n) => Some((n, entry.line)),
            None => {
                self.wrong_type(sink, entry, "an integer", "10");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer_in(
        &self,
        sink: &mut Sink,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<(i64, usize)> {
        let (n, line) = self.integer(sink, key)?;
        if n < min || n > max {
            sink.push(
                line,
                format!("`{key}` in {} is {n}, out of range", self.label),
                format!("use a whole number from {min} to {max}"),
            );
            return None;
        }
        Some((n, line))
    }

    /// A number (an integer is accepted where a float is expected).
    pub(crate) fn number(&self, sink: &mut Sink, key: &str) -> Option<(f64, usize)> {
        let entry = self.get(key)?;
        match entry.item.as_value() {
            Some(Value::Float(f)) if f.value().is_finite() => Some((*f.value(), entry.line)),
            // Integers here are small config numbers (0 or 1), exact as f64.
            Some(Value::Integer(i)) => Some((*i.value() as f64, entry.line)),
            _ => {
                self.wrong_type(sink, entry, "a number", "0.5");
                None
            }
        }
    }

    /// A fraction from 0.0 to 1.0.
    pub(crate) fn fraction(&self, sink: &mut Sink, key: &str) -> Option<(f64, usize)> {
        let (f, line) = self.number(sink, key)?;
        if !(0.0..=1.0).contains(&f) {
            sink.push(
                line,
                format!("`{key}` in {} is {f}, not a fraction", self.label),
                "use a number from 0.0 to 1.0 (0.10 means 10%)".to_string(),
            );
            return None;
        }
        Some((f, line))
    }

    /// A boolean value.
    pub(crate) fn boolean(&self, sink: &mut Sink, key: &str) -> Option<(bool, usize)> {
        let entry = self.get(key)?;
        match entry.item.as_bool() {
            Some(b) => Some((b, entry.line)),
            None => {
                self.wrong_type(sink, entry, "true or false", "true");
                None
            }
        }
    }

    /// An array of strings, each with its own line (an element of another type is
    /// reported and skipped).
    pub(crate) fn strings(&self, sink: &mut Sink, key: &str) -> Option<Vec<(String, usize)>> {
        let entry = self.get(key)?;
        let Some(array) = entry.item.as_array() else {
            self.wrong_type(sink, entry, "an array of strings", "[\"...\", \"...\"]");
            return None;
        };
        let mut out = Vec::with_capacity(array.len());
        for value in array.iter() {
            let line = match sink.line(value.span()) {
                0 => entry.line,
                n => n,
            };
            match value.as_str() {
                Some(s) => out.push((s.to_string(), line)),
                None => sink.push(
                    line,
                    format!(
                        "`{key}` in {} must hold strings only, not {}",
                        self.label,
                        value.type_name()
                    ),
                    "quote the value".to_string(),
                ),
            }
        }
        Some(out)
    }
}

/// How a TOML item is named in messages.
pub(crate) fn describe(item: &Item) -> String {
    match item {
        Item::None => "nothing".to_string(),
        Item::Value(Value::Integer(i)) => format!("the integer {}", i.value()),
        Item::Value(Value::Float(f)) => format!("the number {}", f.value()),
        Item::Value(Value::Boolean(b)) => format!("the boolean {}", b.value()),
        Item::Value(Value::String(_)) => "a string".to_string(),
        Item::Value(v) => format!("a{} {}", article_n(v.type_name()), v.type_name()),
        other => format!("a{} {}", article_n(other.type_name()), other.type_name()),
    }
}

fn article_n(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "n"
    } else {
        ""
    }
}

/// Key names that suggest a secret written in plain text.
pub(crate) fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_env")
        && !k.ends_with("_file")
        && [
            "password", "passwd", "secret", "token", "bearer", "api_key", "apikey",
        ]
        .iter()
        .any(|s| k.contains(s))
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a
/// plausible typo (at most a third of the word, and at least 2 edits allowed).
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars (case-insensitive: `Smtp_Host` is one typo away
/// from nothing, not five).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("smtp_hots", "smtp_host"), 2);
        assert_eq!(edit_distance("kind", "kind"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("Format", "format"), 0);
    }

    #[test]
    fn closest_suggests_only_plausible_typos() {
        let keys = ["smtp_host", "smtp_port", "from"];
        assert_eq!(
            closest("smtp_hots", keys.iter().copied()),
            Some("smtp_host")
        );
        assert_eq!(closest("frm", keys.iter().copied()), Some("from"));
        assert_eq!(closest("completely_else", keys.iter().copied()), None);
    }

    #[test]
    fn lines_are_one_based() {
        let sink = Sink::new(Path::new("x.toml"), "a = 1\nb = 2\n\nc = 3");
        assert_eq!(sink.line(Some(0..1)), 1);
        assert_eq!(sink.line(Some(6..7)), 2);
        assert_eq!(sink.line(Some(13..14)), 4);
        assert_eq!(sink.line(None), 0);
    }
}
