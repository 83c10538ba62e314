//! Refused deliveries routed again: a digest refused for good (a 5xx for its
//! recipient, or given up) leaves its alerts `failed` for that address. Once the
//! config no longer names that address for the delivery's role — in the alert's
//! locality (`dv_champions`, `champions`, `managers`), its school (`ewos`), or
//! `[mail] admin` — each alert goes to the addresses the config names there now,
//! once, in the next digest (`kinlink send`), audited `rerouted` and `routed`.
//!
//! "The recipient" is the role at the alert's locality or school, as the config
//! says at send time; the stored address is only who was tried. So:
//! - the address still configured: nothing moves (the fault is at the far end:
//!   `kinlink outbox retry ID` once it is fixed);
//! - replaced (`a` → `a2`): `a2` gets the alerts;
//! - removed while others hold the role (`[a, b]` → `[b]`): `b` already had them
//!   (the same alert revision never reaches an address twice), nothing new is sent
//!   and the refused delivery is closed as re-routed;
//! - nobody holds the role there now: nothing moves and the alert stays
//!   undelivered in `alerts list` and `status`.
//!
//! An acknowledged or resolved alert is not routed again: someone took it up, or
//! it is over. `outbox retry` of a message whose recipient was re-routed refuses:
//! the old address never gets those alerts after the new one did.

use serde::Serialize;
use tracing::info;

use super::MailError;
use crate::config::Settings;
use crate::domain::RunMode;
use crate::store::{RefusedDelivery, Reroute, Store};

/// What a re-route pass did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RerouteRun {
    /// Refused deliveries routed again.
    pub rerouted: usize,
    /// New deliveries written (to addresses that did not have the alert yet).
    pub new_deliveries: usize,
    /// The alerts they belong to, by id.
    pub alerts: Vec<i64>,
    /// Refused deliveries left as they are: the config still names their address,
    /// or nobody for their role.
    pub still_refused: usize,
}

/// The addresses the config names for `role` where the alert belongs, and how to
/// say where (`dv_champions of North`); `None` when the config has no such place.
pub fn role_holders(settings: &Settings, d: &RefusedDelivery) -> Option<(Vec<String>, String)> {
    let locality = || {
        let name = d.locality.as_deref()?;
        settings
            .localities
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name.trim()))
    };
    match d.role.as_str() {
        "admin" => Some((settings.mail.admin.clone(), "[mail] admin".to_string())),
        "ewo" => {
            let urn = d.school_urn?;
            let school = settings
                .schools
                .iter()
                .find(|s| i64::from(s.urn.get()) == urn)?;
            Some((school.ewos.clone(), format!("ewos of school {urn:06}")))
        }
        "dv_champion" => {
            let l = locality()?;
            Some((
                l.dv_champions.clone(),
                format!("dv_champions of {}", l.name),
            ))
        }
        "champion" => {
            let l = locality()?;
            Some((l.champions.clone(), format!("champions of {}", l.name)))
        }
        "manager" => {
            let l = locality()?;
            Some((l.managers.clone(), format!("managers of {}", l.name)))
        }
        _ => None,
    }
}

/// Routes again every refused delivery whose address the config no longer names
/// (only `outbox`'s, when given). In a dry run nothing is written.
pub async fn reroute_refused(
    store: &Store,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
    outbox: Option<i64>,
    mode: RunMode,
) -> Result<RerouteRun, MailError> {
    let mut run = RerouteRun::default();
    for d in store.refused_deliveries(outbox).await? {
        let Some((holders, by)) = role_holders(settings, &d) else {
            run.still_refused += 1;
            continue;
        };
        let still_named = holders
            .iter()
            .any(|h| h.eq_ignore_ascii_case(d.recipient.trim()));
        if still_named || holders.is_empty() {
            run.still_refused += 1;
            continue;
        }
        if mode.is_dry_run() {
            run.rerouted += 1;
            if !run.alerts.contains(&d.alert_id) {
                run.alerts.push(d.alert_id);
            }
            continue;
        }
        let reroute = Reroute {
            delivery: d.id,
            to: holders,
            by,
        };
        if let Some(done) = store.reroute_delivery(&reroute, now).await? {
            run.rerouted += 1;
            run.new_deliveries += done.new_deliveries.len();
            if !run.alerts.contains(&done.alert_id) {
                run.alerts.push(done.alert_id);
            }
        }
    }
    if run.rerouted > 0 && !mode.is_dry_run() {
        info!(
            deliveries = run.rerouted,
            new_deliveries = run.new_deliveries,
            alerts = run.alerts.len(),
            "Refused deliveries routed again to the addresses the config names now"
        );
    }
    Ok(run)
}
