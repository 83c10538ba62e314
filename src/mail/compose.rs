//! Turning an [`OutgoingMessage`] into RFC 5322 bytes with lettre: text only,
//! multipart/alternative (text, HTML), and multipart/related around the HTML when
//! it shows inline PNGs. The bytes are made once, at enqueue, and stored: every
//! attempt sends exactly what was stored.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};

use super::{MailError, OutgoingMessage};

/// A message ready for the outbox.
#[derive(Debug, Clone)]
pub(super) struct Composed {
    pub message_id: String,
    /// Envelope recipients (bare addresses), in the order given.
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
}

impl Composed {
    /// The outbox row of `message`, composed as here, from `sender`, due `at`.
    pub fn outbox<'a>(
        &'a self,
        message: &'a OutgoingMessage,
        sender: &'a str,
        at: DateTime<Utc>,
    ) -> crate::store::NewOutboxMessage<'a> {
        crate::store::NewOutboxMessage {
            idempotency_key: &message.idempotency_key,
            message_id: &self.message_id,
            sender,
            subject: &message.subject,
            recipients: &self.recipients,
            raw: &self.raw,
            at,
        }
    }
}

/// The Message-ID for an idempotency key: `<kinlink.` + 32 hex digits of the key's
/// SHA-256 + `@` + the sender's domain `>`. The same key always gives the same id,
/// so a re-sent message is recognisably the same one (and mail clients thread or
/// de-duplicate it).
pub fn message_id_for(idempotency_key: &str, sender_domain: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!("<kinlink.{hex}@{sender_domain}>")
}

pub(super) fn compose(
    from: &Mailbox,
    m: &OutgoingMessage,
    now: DateTime<Utc>,
) -> Result<Composed, MailError> {
    if m.to.is_empty() {
        return Err(MailError::Compose("the message has no recipient".into()));
    }
    if m.idempotency_key.trim().is_empty() {
        return Err(MailError::Compose("the idempotency key is empty".into()));
    }
    let message_id = message_id_for(&m.idempotency_key, from.email.domain());
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(m.subject.clone())
        .message_id(Some(message_id.clone()))
        .date(SystemTime::from(now))
        // RFC 3834: out-of-office robots must not answer an automatic message.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
    let mut recipients = Vec::with_capacity(m.to.len());
    for (i, address) in m.to.iter().enumerate() {
        let mailbox: Mailbox = address.trim().parse().map_err(|_| {
            // The address may be personal data: say which one by position only.
            MailError::Compose(format!("recipient #{} is not an email address", i + 1))
        })?;
        recipients.push(mailbox.email.to_string());
        builder = builder.to(mailbox);
    }
    let text = SinglePart::plain(m.text.clone());
    let message = match (&m.html, m.inline_images.is_empty()) {
        (None, true) => builder.singlepart(text),
        (None, false) => {
            return Err(MailError::Compose(
                "inline images need an HTML body that shows them".into(),
            ))
        }
        (Some(html), true) => builder.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(SinglePart::html(html.clone())),
        ),
        (Some(html), false) => {
            let png = ContentType::parse("image/png")
                .map_err(|e| MailError::Compose(format!("image type: {e}")))?;
            let mut related = MultiPart::related().singlepart(SinglePart::html(html.clone()));
            for image in &m.inline_images {
                if image.content_id.is_empty()
                    || image
                        .content_id
                        .chars()
                        .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
                {
                    return Err(MailError::Compose(format!(
                        "inline image Content-ID {:?} is not usable (no spaces, quotes or angle brackets)",
                        image.content_id
                    )));
                }
                related = related.singlepart(
                    Attachment::new_inline(image.content_id.clone())
                        .body(image.png.clone(), png.clone()),
                );
            }
            builder.multipart(MultiPart::alternative().singlepart(text).multipart(related))
        }
    }
    .map_err(|e| MailError::Compose(e.to_string()))?;
    Ok(Composed {
        message_id,
        recipients,
        raw: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::mail::InlineImage;

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            idempotency_key: "digest:nightly:7:eh.north@example.gov.uk".into(),
            to: vec!["eh.north@example.gov.uk".into()],
            subject: "3 DA notifications for North — 1 urgent".into(),
            text: "Plain words.\n".into(),
            html: None,
            inline_images: vec![],
        }
    }

    fn from() -> Mailbox {
        "Early Help <eh@example.gov.uk>".parse().unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 6, 30, 0).unwrap()
    }

    fn text(c: &Composed) -> String {
        String::from_utf8(c.raw.clone()).unwrap()
    }

    #[test]
    fn message_id_follows_the_key() {
        let a = message_id_for("digest:nightly:7:a@example.gov.uk", "example.gov.uk");
        assert_eq!(
            a,
            message_id_for("digest:nightly:7:a@example.gov.uk", "example.gov.uk")
        );
        assert_ne!(
            a,
            message_id_for("digest:nightly:8:a@example.gov.uk", "example.gov.uk")
        );
        assert!(a.starts_with("<kinlink.") && a.ends_with("@example.gov.uk>"));
        assert_eq!(a.len(), "<kinlink.@example.gov.uk>".len() + 32);
    }

    #[test]
    fn text_only_message_has_the_headers() {
        let c = compose(&from(), &message(), at()).unwrap();
        let t = text(&c);
        assert!(
            t.contains(&format!("Message-ID: {}\r\n", c.message_id)),
            "{t}"
        );
        assert!(
            t.contains("Date: Tue, 04 Mar 2025 06:30:00 +0000\r\n"),
            "{t}"
        );
        assert!(t.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(t.contains("To: eh.north@example.gov.uk\r\n"));
        assert!(t.contains("Content-Type: text/plain; charset=utf-8"));
        // A non-ASCII subject is encoded: the bytes on the wire are ASCII.
        assert!(c.raw.is_ascii());
        assert_eq!(c.recipients, vec!["eh.north@example.gov.uk".to_string()]);
    }

    #[test]
    fn html_with_images_nests_related_inside_alternative() {
        let mut m = message();
        m.html = Some("<p>Chart</p><img src=\"cid:chart1\" alt=\"re-referrals\">".into());
        m.inline_images = vec![InlineImage {
            content_id: "chart1".into(),
            png: vec![0x89, b'P', b'N', b'G'],
        }];
        let t = text(&compose(&from(), &m, at()).unwrap());
        let alt = t.find("multipart/alternative").expect("alternative");
        let plain = t.find("text/plain").expect("plain");
        let related = t.find("multipart/related").expect("related");
        let html = t.find("text/html").expect("html");
        let png = t.find("image/png").expect("png");
        assert!(
            alt < plain && plain < related && related < html && html < png,
            "{t}"
        );
        assert!(t.contains("Content-ID: <chart1>"), "{t}");
        assert!(t.contains("Content-Disposition: inline"), "{t}");
    }

    #[test]
    fn bad_input_is_refused() {
        let mut m = message();
        m.to = vec!["not an address".into()];
        let e = compose(&from(), &m, at()).unwrap_err().to_string();
        assert!(
            e.contains("recipient #1") && !e.contains("not an address"),
            "{e}"
        );
        let mut m = message();
        m.inline_images = vec![InlineImage {
            content_id: "x".into(),
            png: vec![1],
        }];
        assert!(compose(&from(), &m, at()).is_err());
        let mut m = message();
        m.to.clear();
        assert!(compose(&from(), &m, at()).is_err());
    }
}
