//! `[mail]`: the transport (`file` or `smtp`, each with only its own keys), the
//! sender, the detail level, the admin list and the outbox retry period.
//! Plain-text SMTP is accepted only to this machine, and `smtp_ca_file` is read now
//! so that a wrong path fails at startup rather than at the first night's send.

use std::path::{Path, PathBuf};

use super::secrets::secret;
use super::values::{choice, emails, is_loopback, non_empty_string};
use super::Cx;
use crate::config::{
    DetailLevel, MailSettings, MailTransport, SmtpSettings, SmtpTls, DEFAULT_RETRY_EVERY_MINS,
};
use crate::domain::EmailAddress;
use crate::jobs::walk::Section;

const MAIL_KEYS: &[&str] = &[
    "transport",
    "from",
    "file_dir",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_user_env",
    "smtp_user_file",
    "smtp_password_env",
    "smtp_password_file",
    "smtp_ca_file",
    "detail",
    "admin",
    "retry_every_mins",
];

/// Used when `[mail] from` is absent: the file transport needs a sender too.
const DEFAULT_FROM: &str = "kinlink <kinlink@localhost.localdomain>";

pub(super) fn mail(cx: &mut Cx<'_>, root: &Section<'_>, state_dir: &Path) -> MailSettings {
    let default_outbox = state_dir.join("outbox");
    let mut settings = MailSettings {
        transport: MailTransport::File {
            dir: default_outbox.clone(),
        },
        from: DEFAULT_FROM.to_string(),
        detail: DetailLevel::Minimal,
        admin: Vec::new(),
        retry_every_mins: DEFAULT_RETRY_EVERY_MINS,
    };
    let Some(sec) = root.table(
        &mut cx.sink,
        "mail",
        "[mail]",
        "{ transport = \"file\" } (or a [mail] table)",
    ) else {
        return settings;
    };
    sec.check_keys(&mut cx.sink, MAIL_KEYS);

    if let Some((from, line)) = non_empty_string(cx, &sec, "from") {
        if EmailAddress::parse_mailbox(&from).is_some() {
            settings.from = from;
        } else {
            cx.sink.push(
                line,
                format!("`from` in [mail] is {from:?}, not an address"),
                "write it as \"Early Help Alerts <eh-alerts@example.gov.uk>\" or a plain address",
            );
        }
    }
    if let Some(i) = choice(cx, &sec, "detail", &["minimal", "standard", "full"]) {
        settings.detail = [
            DetailLevel::Minimal,
            DetailLevel::Standard,
            DetailLevel::Full,
        ][i];
    }
    settings.admin = emails(cx, &sec, "admin");
    // Within minutes, not the next night; at most hourly, so a retry never waits
    // long for the daemon.
    if let Some((n, _)) = sec.integer_in(&mut cx.sink, "retry_every_mins", 1, 60) {
        settings.retry_every_mins = u32::try_from(n).unwrap_or(DEFAULT_RETRY_EVERY_MINS);
    }

    let transport = if sec.has("transport") {
        choice(cx, &sec, "transport", &["file", "smtp"])
    } else {
        Some(0)
    };
    let smtp_keys: Vec<&str> = MAIL_KEYS
        .iter()
        .copied()
        .filter(|k| k.starts_with("smtp_"))
        .collect();
    match transport {
        Some(0) => {
            for key in &smtp_keys {
                sec.forbid(
                    &mut cx.sink,
                    key,
                    "is only used with transport = \"smtp\"",
                    "remove it, or set transport = \"smtp\"",
                );
            }
            // The outbox is state: it lives inside state_dir when relative.
            let dir = match non_empty_string(cx, &sec, "file_dir") {
                Some((d, _)) if Path::new(&d).is_absolute() => PathBuf::from(d),
                Some((d, _)) => state_dir.join(d),
                None => default_outbox,
            };
            settings.transport = MailTransport::File { dir };
        }
        Some(_) => {
            sec.forbid(
                &mut cx.sink,
                "file_dir",
                "is only used with transport = \"file\"",
                "remove it, or set transport = \"file\"",
            );
            if let Some(smtp) = smtp(cx, &sec) {
                settings.transport = MailTransport::Smtp(smtp);
            }
        }
        None => {}
    }
    settings
}

fn smtp(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<SmtpSettings> {
    let host = if sec.require(
        &mut cx.sink,
        "smtp_host",
        "the mail relay, e.g. \"smtp.example.gov.uk\"",
    ) {
        non_empty_string(cx, sec, "smtp_host").map(|(h, _)| h)
    } else {
        None
    };
    let tls = if sec.has("smtp_tls") {
        choice(cx, sec, "smtp_tls", &["starttls", "tls", "none"])
            .map(|i| [SmtpTls::Starttls, SmtpTls::Tls, SmtpTls::None][i])
    } else {
        Some(SmtpTls::Starttls)
    };
    let port = match sec.integer_in(&mut cx.sink, "smtp_port", 1, 65535) {
        Some((p, _)) => u16::try_from(p).ok(),
        None if sec.has("smtp_port") => None,
        // The usual port of each security mode.
        None => Some(match tls {
            Some(SmtpTls::Tls) => 465,
            Some(SmtpTls::None) => 25,
            _ => 587,
        }),
    };
    if let (Some(host), Some(SmtpTls::None)) = (&host, tls) {
        if !is_loopback(host) {
            cx.sink.push(
                sec.line_of("smtp_tls"),
                format!("smtp_tls = \"none\" would send personal data unencrypted to {host}"),
                "use smtp_tls = \"starttls\" or \"tls\"; \"none\" is only for a relay on this machine (localhost, 127.0.0.1, ::1)",
            );
        }
    }
    let user = secret(cx, sec, "smtp_user");
    let password = secret(cx, sec, "smtp_password");
    let user_given = sec.has("smtp_user_env") || sec.has("smtp_user_file");
    let password_given = sec.has("smtp_password_env") || sec.has("smtp_password_file");
    if user_given != password_given {
        cx.sink.push(
            sec.line,
            "[mail] has an SMTP user without a password, or a password without a user",
            "give both smtp_user_env/smtp_user_file and smtp_password_env/smtp_password_file, or neither",
        );
    }
    let ca_file = smtp_ca_file(cx, sec, tls);
    Some(SmtpSettings {
        host: host?,
        port: port?,
        tls: tls?,
        user,
        password,
        ca_file,
    })
}

/// `smtp_ca_file`: a PEM file of certificates to trust besides the public roots
/// (a council's own CA, or a test server's self-signed certificate). Checked now so
/// that a wrong path fails at startup rather than at the first night's send.
fn smtp_ca_file(cx: &mut Cx<'_>, sec: &Section<'_>, tls: Option<SmtpTls>) -> Option<PathBuf> {
    let (text, line) = non_empty_string(cx, sec, "smtp_ca_file")?;
    if tls == Some(SmtpTls::None) {
        cx.sink.push(
            line,
            "`smtp_ca_file` in [mail] is set but smtp_tls = \"none\" uses no certificates",
            "remove smtp_ca_file, or set smtp_tls = \"starttls\" or \"tls\"",
        );
        return None;
    }
    let path = cx.path(&text);
    match std::fs::read(&path) {
        Ok(bytes)
            if bytes
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----") =>
        {
            Some(path)
        }
        Ok(_) => {
            cx.sink.push(
                line,
                format!(
                    "`smtp_ca_file` in [mail] names {}, which holds no PEM certificate",
                    path.display()
                ),
                "point it at a PEM file with one or more -----BEGIN CERTIFICATE----- blocks",
            );
            None
        }
        Err(e) => {
            cx.sink.push(
                line,
                format!(
                    "`smtp_ca_file` in [mail] names {}, which cannot be read: {e}",
                    path.display()
                ),
                "give the path of a readable PEM file (relative paths are beside the config file), or remove the key to trust only the public roots",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};
    use crate::config::{MailTransport, SecretRef, SmtpTls};

    #[test]
    fn plain_smtp_only_to_loopback() {
        let fx = Fixture::new();
        let mail = |host: &str| {
            format!("[mail]\ntransport = \"smtp\"\nsmtp_host = \"{host}\"\nsmtp_tls = \"none\"\n{MINIMAL}")
        };
        let problems = fx.problems(&mail("smtp.example.gov.uk"));
        let p = find(&problems, "unencrypted");
        assert_eq!(p.line, 4);
        assert_eq!(problems.len(), 1);
        for host in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            let s = fx.load(&mail(host)).unwrap();
            let MailTransport::Smtp(smtp) = s.mail.transport else {
                panic!("not smtp")
            };
            assert_eq!((smtp.port, smtp.tls), (25, SmtpTls::None));
        }
    }

    #[test]
    fn transport_specific_mail_keys() {
        let fx = Fixture::new();
        let problems = fx.problems(&format!(
            "[mail]\ntransport = \"file\"\nsmtp_host = \"x.example\"\n{MINIMAL}"
        ));
        assert_eq!(find(&problems, "`smtp_host`").line, 3);
        let problems = fx.problems(&format!(
            "[mail]\ntransport = \"smtp\"\nsmtp_host = \"x.example\"\nfile_dir = \"o\"\n{MINIMAL}"
        ));
        assert_eq!(find(&problems, "`file_dir`").line, 4);
        let s = fx
            .load(&format!(
                "[mail]\ntransport = \"smtp\"\nsmtp_host = \"relay.example\"\nsmtp_tls = \"tls\"\nsmtp_user_env = \"U\"\nsmtp_password_env = \"P\"\n{MINIMAL}"
            ))
            .unwrap();
        let MailTransport::Smtp(smtp) = s.mail.transport else {
            panic!("not smtp")
        };
        assert_eq!(smtp.port, 465);
        assert_eq!(smtp.user, Some(SecretRef::Env("U".into())));
        assert_eq!(smtp.password, Some(SecretRef::Env("P".into())));
    }

    #[test]
    fn smtp_ca_file_is_checked() {
        let fx = Fixture::new();
        let mail = |tls: &str, ca: &str| {
            format!("[mail]\ntransport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\nsmtp_tls = \"{tls}\"\nsmtp_ca_file = \"{ca}\"\n{MINIMAL}")
        };
        let p = fx.problems(&mail("starttls", "missing.pem"));
        let p = find(&p, "cannot be read");
        assert_eq!(p.line, 5);
        assert!(p.fix.contains("PEM"));
        std::fs::write(fx.dir.path().join("not.pem"), "hello").unwrap();
        assert_eq!(
            find(&fx.problems(&mail("tls", "not.pem")), "no PEM certificate").line,
            5
        );
        std::fs::write(
            fx.dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(
            find(
                &fx.problems(&mail("none", "ca.pem")),
                "uses no certificates"
            )
            .line,
            5
        );
        let s = fx.load(&mail("starttls", "ca.pem")).unwrap();
        let MailTransport::Smtp(smtp) = s.mail.transport else {
            panic!("not smtp")
        };
        assert_eq!(smtp.ca_file, Some(fx.dir.path().join("ca.pem")));
        let problems = fx.problems(&format!(
            "[mail]\ntransport = \"file\"\nsmtp_ca_file = \"ca.pem\"\n{MINIMAL}"
        ));
        assert_eq!(find(&problems, "`smtp_ca_file`").line, 3);
    }

    #[test]
    fn retry_every_mins_defaults_to_five_and_is_checked_with_its_line() {
        let fx = Fixture::new();
        assert_eq!(fx.load(MINIMAL).unwrap().mail.retry_every_mins, 5);
        let s = fx
            .load(&format!("{MINIMAL}\n[mail]\nretry_every_mins = 2\n"))
            .unwrap();
        assert_eq!(s.mail.retry_every_mins, 2);
        for bad in ["0", "61", "\"5\""] {
            let problems = fx.problems(&format!("{MINIMAL}\n[mail]\nretry_every_mins = {bad}\n"));
            let p = find(&problems, "`retry_every_mins`");
            assert_eq!(p.line, 9, "{bad}: {p:?}");
            assert!(!p.fix.is_empty(), "{bad}: {p:?}");
        }
    }
}
