//! Checks shared by every table: a string that must not be blank, one of a set of
//! choices (with the closest as the fix), email addresses, environment variable
//! names, loopback hosts and the `user:password@` part of a URL.

use std::net::IpAddr;

use super::Cx;
use crate::domain::EmailAddress;
use crate::jobs::walk::{closest, Section};

/// A string that must not be blank.
pub(super) fn non_empty_string(
    cx: &mut Cx<'_>,
    sec: &Section<'_>,
    key: &str,
) -> Option<(String, usize)> {
    let (s, line) = sec.string(&mut cx.sink, key)?;
    if s.trim().is_empty() {
        cx.sink.push(
            line,
            format!("`{key}` in {} is empty", sec.label),
            format!("give `{key}` a value, or remove the line to use the default"),
        );
        return None;
    }
    Some((s.trim().to_string(), line))
}

/// A string that must be one of `choices` (case-insensitive); returns the index.
pub(super) fn choice(
    cx: &mut Cx<'_>,
    sec: &Section<'_>,
    key: &str,
    choices: &[&str],
) -> Option<usize> {
    let (s, line) = sec.string(&mut cx.sink, key)?;
    let t = s.trim();
    if let Some(i) = choices.iter().position(|c| c.eq_ignore_ascii_case(t)) {
        return Some(i);
    }
    let list = choices
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let fix = match closest(t, choices.iter().copied()) {
        Some(best) => format!("did you mean \"{best}\"? `{key}` is one of: {list}"),
        None => format!("`{key}` is one of: {list}"),
    };
    cx.sink
        .push(line, format!("`{key}` in {} is {s:?}", sec.label), fix);
    None
}

/// A list of email addresses; bad ones are reported and left out.
pub(super) fn emails(cx: &mut Cx<'_>, sec: &Section<'_>, key: &str) -> Vec<String> {
    let Some(list) = sec.strings(&mut cx.sink, key) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for (address, line) in list {
        if let Some(email) = EmailAddress::parse(address.trim()) {
            out.push(email.into_string());
        } else {
            cx.sink.push(
                line,
                format!(
                    "{address:?} in `{key}` of {} is not an email address",
                    sec.label
                ),
                "write one plain address per string, e.g. \"eh.north@example.gov.uk\"",
            );
        }
    }
    out
}

/// A plausible environment variable name.
pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a host name is this machine (where plain-text SMTP is acceptable).
pub(super) fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `user:password@` part of a URL's authority, if any.
pub(super) fn url_userinfo(url: &str) -> Option<&str> {
    let after = &url[url.find("://")? + 3..];
    let authority = after.split(['/', '?', '#']).next().unwrap_or(after);
    authority.rfind('@').map(|at| &authority[..at])
}
