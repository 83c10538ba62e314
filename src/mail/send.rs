//! The `send` step: settle what earlier runs sent, compose this run's digests (and
//! the admin's file notices, and on the weekly job the managers' digests), drain the
//! outbox, then follow every delivery to its message's outcome.
//!
//! The order makes a crash at any point harmless: a digest is stored with the flip
//! of its deliveries (composing again finds nothing pending), the drain sends only
//! what is stored, and settling reads the outbox's own record of what the server
//! said, so a run that stopped before settling is settled by the next one.

use serde::Serialize;

use super::admin::{self, NoticeRun};
use super::digest::{self, DigestOptions, DigestRun};
use super::managers::{self, ManagerRun};
use super::{DrainOptions, DrainReport, MailError, Mailer};
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::{SettleReport, Store};

/// What this `send` does besides draining.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Compose and list, store and send nothing (no connection, no status change).
    pub dry_run: bool,
    /// Also compose the managers' weekly digest (the `weekly-managers` job).
    pub manager_digest: bool,
    pub drain: DrainOptions,
}

/// What a `send` step did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SendReport {
    pub dry_run: bool,
    pub digests: DigestRun,
    pub admin_notices: NoticeRun,
    pub manager_digests: ManagerRun,
    /// `None` in a dry run.
    pub drain: Option<DrainReport>,
    /// Deliveries and alerts settled, before composing and after draining.
    pub settled: SettleReport,
}

/// Runs the send step (see the module doc).
pub async fn send_step(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    options: &SendOptions,
) -> Result<SendReport, MailError> {
    let mut report = SendReport {
        dry_run: options.dry_run,
        ..SendReport::default()
    };
    if !options.dry_run {
        add(
            &mut report.settled,
            store.settle_deliveries(clock.now()).await?,
        );
    }
    let digest_options = DigestOptions::from_settings(settings, clock.today(settings.timezone));
    report.digests =
        digest::enqueue_digests(mailer, store, clock, &digest_options, options.dry_run).await?;
    report.admin_notices =
        admin::enqueue_file_notices(mailer, store, clock, settings, options.dry_run).await?;
    if options.manager_digest {
        report.manager_digests =
            managers::enqueue_manager_digests(mailer, store, clock, settings, options.dry_run)
                .await?;
    }
    if options.dry_run {
        return Ok(report);
    }
    report.drain = Some(mailer.drain(store, clock, &options.drain).await?);
    add(
        &mut report.settled,
        store.settle_deliveries(clock.now()).await?,
    );
    Ok(report)
}

fn add(total: &mut SettleReport, more: SettleReport) {
    total.sent += more.sent;
    total.failed += more.failed;
    total.alerts_sent += more.alerts_sent;
}
