//! The rules' settings (`[rules.*]` of docs/config.md) as plain data, with the defaults
//! of docs/domain.md §9. `config` fills them from the file; `rules` and `alerts` read
//! them. Every number here is a default a council may change, not a rule of law.

use serde::Serialize;

/// How urgent an alert is. Ordered: `Info < Priority < Urgent` (docs/feeds.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Priority,
    Urgent,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Priority => "priority",
            Severity::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Priority, Severity::Urgent]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// One level up (urgent stays urgent).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Info => Severity::Priority,
            _ => Severity::Urgent,
        }
    }
}

/// The five shipped rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    DaNotification,
    AttendanceDrop,
    EvictionRisk,
    EmergingRisk,
    ClosedTooEarly,
}

impl RuleId {
    pub const ALL: [RuleId; 5] = [
        RuleId::DaNotification,
        RuleId::AttendanceDrop,
        RuleId::EvictionRisk,
        RuleId::EmergingRisk,
        RuleId::ClosedTooEarly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::DaNotification => "da_notification",
            RuleId::AttendanceDrop => "attendance_drop",
            RuleId::EvictionRisk => "eviction_risk",
            RuleId::EmergingRisk => "emerging_risk",
            RuleId::ClosedTooEarly => "closed_too_early",
        }
    }

    pub fn parse(s: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role the rule's alerts go to (docs/design.md's table).
    pub fn role(self) -> Role {
        match self {
            RuleId::DaNotification => Role::DvChampion,
            RuleId::AttendanceDrop => Role::Ewo,
            RuleId::EvictionRisk => Role::Champion,
            RuleId::EmergingRisk | RuleId::ClosedTooEarly => Role::Manager,
        }
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recipient's role: the locality lists of docs/config.md, a school's EWOs, and the
/// admin list (unrouted alerts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    DvChampion,
    Champion,
    Manager,
    Ewo,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::DvChampion => "dv_champion",
            Role::Champion => "champion",
            Role::Manager => "manager",
            Role::Ewo => "ewo",
            Role::Admin => "admin",
        }
    }

    /// The role named by [`Role::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::DvChampion,
            Role::Champion,
            Role::Manager,
            Role::Ewo,
            Role::Admin,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// The config key listing the role's recipients.
    pub fn config_key(self) -> &'static str {
        match self {
            Role::DvChampion => "dv_champions",
            Role::Champion => "champions",
            Role::Manager => "managers",
            Role::Ewo => "ewos",
            Role::Admin => "admin",
        }
    }
}

/// Keys every rule has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Common {
    pub enabled: bool,
    /// Facts older than this (in days before the run's date) never alert.
    pub lookback_days: u32,
    /// An open alert whose condition has not held for this many days is resolved.
    pub resolve_after_days: u32,
}

impl Common {
    const fn new(lookback_days: u32) -> Common {
        Common {
            enabled: true,
            lookback_days,
            resolve_after_days: 28,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DaNotification {
    pub common: Common,
    /// Another notification at the household within this many days before is a
    /// repeat (MARAC: 12 months), which raises the severity one level.
    pub repeat_within_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AttendanceDrop {
    pub common: Common,
    pub window_school_days: u32,
    pub baseline_school_days: u32,
    pub below: f64,
    pub drop: f64,
    pub severe_below: f64,
    pub min_possible_sessions: u32,
    /// Unauthorised sessions in the window at which the penalty-notice threshold
    /// is near (docs/domain.md 1.4: 10 in 10 school weeks): raises to priority.
    pub unauthorised_sessions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvictionRisk {
    pub common: Common,
    /// A possession (bailiff) date this many days ahead or fewer is urgent.
    pub bailiff_within_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EmergingRisk {
    pub common: Common,
    pub window_days: u32,
    pub min_signal_kinds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClosedTooEarly {
    pub common: Common,
    pub within_days: u32,
    pub urgent_within_days: u32,
}

/// Every rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RulesConfig {
    pub da_notification: DaNotification,
    pub attendance_drop: AttendanceDrop,
    pub eviction_risk: EvictionRisk,
    pub emerging_risk: EmergingRisk,
    pub closed_too_early: ClosedTooEarly,
}

impl Default for RulesConfig {
    /// The defaults of docs/config.md and docs/domain.md §9.
    fn default() -> Self {
        RulesConfig {
            da_notification: DaNotification {
                common: Common::new(14),
                repeat_within_days: 365,
            },
            attendance_drop: AttendanceDrop {
                common: Common::new(14),
                window_school_days: 20,
                baseline_school_days: 30,
                below: 0.90,
                drop: 0.10,
                severe_below: 0.50,
                min_possible_sessions: 10,
                unauthorised_sessions: 10,
            },
            eviction_risk: EvictionRisk {
                common: Common::new(56),
                bailiff_within_days: 14,
            },
            emerging_risk: EmergingRisk {
                common: Common::new(90),
                window_days: 90,
                min_signal_kinds: 2,
            },
            closed_too_early: ClosedTooEarly {
                common: Common::new(30),
                within_days: 365,
                urgent_within_days: 90,
            },
        }
    }
}

impl RulesConfig {
    /// The common keys of one rule.
    pub fn common(&self, rule: RuleId) -> Common {
        match rule {
            RuleId::DaNotification => self.da_notification.common,
            RuleId::AttendanceDrop => self.attendance_drop.common,
            RuleId::EvictionRisk => self.eviction_risk.common,
            RuleId::EmergingRisk => self.emerging_risk.common,
            RuleId::ClosedTooEarly => self.closed_too_early.common,
        }
    }

    /// The common keys of one rule, to set (the loader fills them by rule).
    pub fn common_mut(&mut self, rule: RuleId) -> &mut Common {
        match rule {
            RuleId::DaNotification => &mut self.da_notification.common,
            RuleId::AttendanceDrop => &mut self.attendance_drop.common,
            RuleId::EvictionRisk => &mut self.eviction_risk.common,
            RuleId::EmergingRisk => &mut self.emerging_risk.common,
            RuleId::ClosedTooEarly => &mut self.closed_too_early.common,
        }
    }
}

/// Whether a delivery tells a recipient of an alert for the first time or of an
/// escalation of one they were told of before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    New,
    Update,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::New => "new",
            DeliveryKind::Update => "update",
        }
    }

    /// The kind named by [`DeliveryKind::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeliveryKind> {
        match s {
            "new" => Some(DeliveryKind::New),
            "update" => Some(DeliveryKind::Update),
            _ => None,
        }
    }
}
