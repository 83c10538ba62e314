//! The silent-feed notice: a source with `stale_after_hours` that has delivered
//! nothing for longer than that is itself an admin alert (a silent feed is the
//! most dangerous failure: every rule goes quiet with it). One email per source
//! per day, queued under `stale-feed:<source>:<date>`.

use chrono::Duration;

use super::{MailError, Mailer, OutgoingMessage};
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::Store;

/// Queues a notice to the admin list for each stale source; returns their names.
pub async fn enqueue_stale_feed_notices(
    mailer: &Mailer,
    store: &Store,
    settings: &Settings,
    clock: Clock,
) -> Result<Vec<String>, MailError> {
    if settings.mail.admin.is_empty() {
        return Ok(Vec::new());
    }
    let stats = store
        .source_stats()
        .await
        .map_err(|e| MailError::Compose(format!("reading the sources' ledger: {e}")))?;
    let now = clock.now();
    let today = clock.today(settings.timezone);
    let mut stale = Vec::new();
    for s in &settings.sources {
        let Some(hours) = s.stale_after_hours else {
            continue;
        };
        let last = stats
            .iter()
            .find(|x| x.name == s.name)
            .and_then(|x| x.last_success_at);
        if last.is_some_and(|at| now - at <= Duration::hours(i64::from(hours))) {
            continue;
        }
        let since = match last {
            Some(at) => format!(
                "The last file from it was ingested at {} ({}).",
                at.with_timezone(&settings.timezone)
                    .format("%Y-%m-%d %H:%M %Z"),
                at.to_rfc3339()
            ),
            None => "No file from it has ever been ingested.".to_string(),
        };
        let message = OutgoingMessage {
            idempotency_key: format!("stale-feed:{}:{today}", s.name),
            to: settings.mail.admin.clone(),
            subject: format!("kinlink: no data from {} for over {hours} hours", s.name),
            text: format!(
                "The source `{}` ({} feed) has delivered nothing for more than {hours} hours \
                 (its stale_after_hours).\n\n{since}\n\nWhile it is silent, the rules cannot see \
                 its records: alerts that depend on it will not be raised. Check the partner's \
                 export and the transport (`kinlink status`, `kinlink ingest --source {}`).\n",
                s.name,
                s.kind.as_str(),
                s.name
            ),
            html: None,
            inline_images: Vec::new(),
        };
        mailer.enqueue(store, clock, &message).await?;
        stale.push(s.name.clone());
    }
    Ok(stale)
}
