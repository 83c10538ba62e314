//! The `send` step: settle what earlier runs sent, compose this run's digests (and
//! the admin's file notices, and on the weekly job the managers' digests), drain the
//! outbox, tell the admin list of what could not be delivered (and drain again, so
//! that notice goes out in this run), then follow every delivery to its message's
//! outcome.
//!
//! The order makes a crash at any point harmless: a digest is stored with the flip
//! of its deliveries (composing again finds nothing pending), the drain sends only
//! what is stored, and settling reads the outbox's own record of what the server
//! said, so a run that stopped before settling is settled by the next one.

use serde::Serialize;

use super::admin::{self, NoticeRun};
use super::digest::{self, DigestOptions, DigestRun};
use super::managers::{self, ManagerRun};
use super::reroute::{self, RerouteRun};
use super::undelivered::{self, FailureNoticeRun};
use super::{DrainOptions, DrainReport, MailError, Mailer};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::RunMode;
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
    /// Refused deliveries routed again to the addresses the config names now
    /// (before composing, so they go in this run's digests).
    pub rerouted: RerouteRun,
    /// The admin's notice of undelivered emails.
    pub failure_notice: FailureNoticeRun,
    /// `None` in a dry run. With a notice of undelivered emails, the drains before
    /// and after it together.
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
    compose(mailer, store, clock, settings, options, &mut report).await?;
    if options.dry_run {
        report.failure_notice =
            undelivered::enqueue_failure_notice(mailer, store, clock, settings, RunMode::DryRun)
                .await?;
        return Ok(report);
    }
    deliver(mailer, store, clock, settings, &options.drain, &mut report).await?;
    Ok(report)
}

/// The daemon's pass between scheduled sends: what is due in the outbox (retries
/// falling due, messages taken back from a run that died) goes out, the admin
/// list is told of what failed for good, and deliveries follow their messages.
/// Nothing new is composed: digests stay the scheduled `send` step's.
pub async fn outbox_pass(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
) -> Result<SendReport, MailError> {
    let mut report = SendReport::default();
    add(
        &mut report.settled,
        store.settle_deliveries(clock.now()).await?,
    );
    deliver(
        mailer,
        store,
        clock,
        settings,
        &DrainOptions::default(),
        &mut report,
    )
    .await?;
    Ok(report)
}

/// Composes this run's digests and notices into the outbox (or, in a dry run,
/// says what it would compose).
async fn compose(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    options: &SendOptions,
    report: &mut SendReport,
) -> Result<(), MailError> {
    let mode = RunMode::from_dry_run(options.dry_run);
    report.rerouted = reroute::reroute_refused(store, settings, clock.now(), None, mode).await?;
    let digest_options = DigestOptions::from_settings(settings, clock.today(settings.timezone));
    report.digests = digest::enqueue_digests(mailer, store, clock, &digest_options, mode).await?;
    report.admin_notices =
        admin::enqueue_file_notices(mailer, store, clock, settings, mode).await?;
    if options.manager_digest {
        report.manager_digests =
            managers::enqueue_manager_digests(mailer, store, clock, settings, mode).await?;
    }
    Ok(())
}

/// Drains, tells the admin list of what failed for good (and drains that notice),
/// then follows every delivery to its message's outcome.
async fn deliver(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    drain_options: &DrainOptions,
    report: &mut SendReport,
) -> Result<(), MailError> {
    let mut drain = mailer.drain(store, clock, drain_options).await?;
    report.failure_notice =
        undelivered::enqueue_failure_notice(mailer, store, clock, settings, RunMode::Apply).await?;
    // The notice goes out now, unless the relay is down. A notice never reports
    // itself, so the second pass only logs it if it failed (or stores a notice for
    // the next run, for a message that became due and failed meanwhile).
    if !report.failure_notice.notices.is_empty() && drain.connection_error.is_none() {
        drain.absorb(mailer.drain(store, clock, drain_options).await?);
        let after =
            undelivered::enqueue_failure_notice(mailer, store, clock, settings, RunMode::Apply)
                .await?;
        report.failure_notice.absorb(after);
    }
    report.drain = Some(drain);
    add(
        &mut report.settled,
        store.settle_deliveries(clock.now()).await?,
    );
    Ok(())
}

fn add(total: &mut SettleReport, more: SettleReport) {
    total.sent += more.sent;
    total.failed += more.failed;
    total.alerts_sent += more.alerts_sent;
}
