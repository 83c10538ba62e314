//! E-mail addresses as kinlink accepts them: in the config (recipients, `from`)
//! and on the command line (`--by`).

use std::fmt;

/// A plain e-mail address that passed the simple check: one `@`, a non-empty local
/// part, no whitespace, `<`, `>` or `,`, and a dot inside the domain (not at its
/// start or end, never two in a row). Deliberately no more: the relay decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// The address exactly as written (no trimming: callers trim what they read).
    pub fn parse(s: &str) -> Option<EmailAddress> {
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        let ok = !local.is_empty()
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        ok.then(|| EmailAddress(s.to_owned()))
    }

    /// The address of a mailbox written `Display Name <address>` or as a plain
    /// address (surrounding spaces ignored); `None` when it holds no valid address.
    pub fn parse_mailbox(mailbox: &str) -> Option<EmailAddress> {
        let address = match (mailbox.find('<'), mailbox.ends_with('>')) {
            (Some(open), true) => &mailbox[open + 1..mailbox.len() - 1],
            (None, _) => mailbox,
            _ => return None,
        };
        EmailAddress::parse(address.trim())
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_email(s: &str) -> bool {
        EmailAddress::parse(s).is_some()
    }

    #[test]
    fn emails_are_checked_simply() {
        assert!(is_email("eh.north@example.gov.uk"));
        for bad in [
            "", "a@b", "a b@c.uk", "a@@c.uk", "@c.uk", "a@.uk", "a@c.", "a@c..uk",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn mailboxes_give_their_address() {
        let a = |s: &str| EmailAddress::parse_mailbox(s).map(EmailAddress::into_string);
        assert_eq!(
            a("Early Help Alerts <eh-alerts@example.gov.uk>").as_deref(),
            Some("eh-alerts@example.gov.uk")
        );
        assert_eq!(
            a(" eh@example.gov.uk ").as_deref(),
            Some("eh@example.gov.uk")
        );
        for bad in [
            "Alerts <eh@example.gov.uk",
            "Alerts eh@example.gov.uk>",
            "Alerts <>",
            "",
        ] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }
}
