//! `[rules.*]` typed at load time. [`RULES`] is the one table of the shipped rules
//! and their keys: what each key holds (flag, days, fraction, count and its range)
//! and the field of [`RulesConfig`] it sets. The same table checks the file (type,
//! range, unknown keys, with their lines) and fills the typed settings, starting
//! from docs/domain.md §9's defaults in [`RulesConfig::default`]; the rules stage reads
//! those fields and parses nothing again.
//!
//! `[retention]` is checked here too: data a rule still reads back must not be
//! purged (a notification kept less than the repeat window could not make the
//! next one a repeat).

use std::collections::BTreeMap;

use super::Cx;
use crate::config::RetentionSettings;
use crate::domain::rules::{RuleId, RulesConfig};
use crate::jobs::walk::{closest, Section};

/// The field of [`RulesConfig`] a key sets, for the rule it is written under (the
/// common keys are the same for every rule, each in its own rule's settings).
type Field<T> = fn(&mut RulesConfig, RuleId) -> &mut T;

/// What a rule key holds, and where it goes.
#[derive(Clone, Copy)]
enum RuleValue {
    Flag(Field<bool>),
    /// A positive whole number of days, at most [`MAX_DAYS`].
    Days(Field<u32>),
    /// 0.0 to 1.0.
    Fraction(Field<f64>),
    /// A whole number in this range.
    Count(i64, i64, Field<u32>),
}

use RuleValue::{Count, Days, Flag, Fraction};

/// Keys every rule has.
const RULE_COMMON: &[(&str, RuleValue)] = &[
    ("enabled", Flag(|c, r| &mut c.common_mut(r).enabled)),
    (
        "lookback_days",
        Days(|c, r| &mut c.common_mut(r).lookback_days),
    ),
    (
        "resolve_after_days",
        Days(|c, r| &mut c.common_mut(r).resolve_after_days),
    ),
];

/// The shipped rules and their own keys (docs/config.md; defaults in docs/domain.md §9), in
/// the order `check-config` lists them.
const RULES: &[(RuleId, &[(&str, RuleValue)])] = &[
    (
        RuleId::DaNotification,
        &[(
            "repeat_within_days",
            Days(|c, _| &mut c.da_notification.repeat_within_days),
        )],
    ),
    (
        RuleId::AttendanceDrop,
        &[
            // The store packs a window's session counts in 12 bits (≤ 4095).
            (
                "window_school_days",
                Count(1, 2000, |c, _| &mut c.attendance_drop.window_school_days),
            ),
            (
                "baseline_school_days",
                Count(1, 2000, |c, _| &mut c.attendance_drop.baseline_school_days),
            ),
            ("below", Fraction(|c, _| &mut c.attendance_drop.below)),
            ("drop", Fraction(|c, _| &mut c.attendance_drop.drop)),
            (
                "severe_below",
                Fraction(|c, _| &mut c.attendance_drop.severe_below),
            ),
            (
                "min_possible_sessions",
                Count(1, 10_000, |c, _| {
                    &mut c.attendance_drop.min_possible_sessions
                }),
            ),
            (
                "unauthorised_sessions",
                Count(1, 10_000, |c, _| {
                    &mut c.attendance_drop.unauthorised_sessions
                }),
            ),
        ],
    ),
    (
        RuleId::EvictionRisk,
        &[(
            "bailiff_within_days",
            Days(|c, _| &mut c.eviction_risk.bailiff_within_days),
        )],
    ),
    (
        RuleId::ClosedTooEarly,
        &[
            (
                "within_days",
                Days(|c, _| &mut c.closed_too_early.within_days),
            ),
            (
                "urgent_within_days",
                Days(|c, _| &mut c.closed_too_early.urgent_within_days),
            ),
        ],
    ),
    (
        RuleId::EmergingRisk,
        &[
            ("window_days", Days(|c, _| &mut c.emerging_risk.window_days)),
            // four signal kinds: attendance, police_da, housing, referral
            (
                "min_signal_kinds",
                Count(1, 4, |c, _| &mut c.emerging_risk.min_signal_kinds),
            ),
        ],
    ),
];

/// The shipped rules, in the order of [`RULES`] (the order `check-config` lists them).
pub(super) fn in_order() -> impl Iterator<Item = RuleId> {
    RULES.iter().map(|&(rule, _)| rule)
}

/// The longest span of days a rule key may hold: beyond ten years it is a typo.
const MAX_DAYS: i64 = 3660;

/// Pairs of keys of one rule that only make sense one way round: (smaller,
/// larger, why), checked when both are given and valid.
const ORDERED: &[(&str, &str, &str)] = &[
    (
        "severe_below",
        "below",
        "severe absence must be a lower rate than the drop threshold",
    ),
    (
        "urgent_within_days",
        "within_days",
        "the urgent window must fit inside the re-referral window",
    ),
];

/// Checks `[rules.*]` against [`RULES`] and returns the typed settings: the
/// defaults, with every key the file gives.
pub(super) fn rules(cx: &mut Cx<'_>, root: &Section<'_>) -> RulesConfig {
    let mut config = RulesConfig::default();
    let Some(sec) = root.table(
        &mut cx.sink,
        "rules",
        "[rules]",
        "a [rules.NAME] table per rule",
    ) else {
        return config;
    };
    let rule_names: Vec<&str> = RULES.iter().map(|(rule, _)| rule.as_str()).collect();
    for entry in sec.entries() {
        let Some(&(rule, own_keys)) = RULES.iter().find(|(r, _)| r.as_str() == entry.key) else {
            let list = rule_names.join(", ");
            let fix = match closest(&entry.key, rule_names.iter().copied()) {
                Some(best) => format!("did you mean [rules.{best}]? the rules are: {list}"),
                None => format!("the rules are: {list}"),
            };
            cx.sink.push(
                entry.line,
                format!("unknown rule `{}` in [rules]", entry.key),
                fix,
            );
            continue;
        };
        let name = rule.as_str();
        let label = format!("[rules.{name}]");
        let Some(table) = sec.table(&mut cx.sink, name, label, "a [rules.NAME] table") else {
            continue;
        };
        let keys: Vec<(&str, RuleValue)> =
            RULE_COMMON.iter().chain(own_keys.iter()).copied().collect();
        let key_names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        table.check_keys(&mut cx.sink, &key_names);
        let mut numbers: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for (key, value) in keys {
            rule_key(cx, &table, key, value, &mut numbers);
            set(&mut config, rule, &table, key, value);
        }
        for &(small, large, why) in ORDERED {
            if let (Some(&(s, line)), Some(&(l, _))) = (numbers.get(small), numbers.get(large)) {
                if s > l {
                    cx.sink.push(
                        line,
                        format!("`{small}` ({s}) is above `{large}` ({l}) in [rules.{name}]"),
                        format!("{why}: make `{small}` at most `{large}`"),
                    );
                }
            }
        }
    }
    config
}

/// Checks one key of a rule's table, if present; a valid day count or fraction
/// goes into `numbers` for the [`ORDERED`] checks.
fn rule_key<'k>(
    cx: &mut Cx<'_>,
    table: &Section<'_>,
    key: &'k str,
    value: RuleValue,
    numbers: &mut BTreeMap<&'k str, (f64, usize)>,
) {
    match value {
        Flag(_) => {
            table.boolean(&mut cx.sink, key);
        }
        Days(_) => {
            if let Some((n, line)) = table.integer_in(&mut cx.sink, key, 1, MAX_DAYS) {
                // whole days, exact as f64
                numbers.insert(key, (n as f64, line));
            }
        }
        Fraction(_) => {
            if let Some(v) = table.fraction(&mut cx.sink, key) {
                numbers.insert(key, v);
            }
        }
        Count(min, max, _) => {
            table.integer_in(&mut cx.sink, key, min, max);
        }
    }
}

/// Sets the field of one key from the file. The value is taken as written when it
/// has the key's type, even out of range (that was reported by [`rule_key`]):
/// `[retention]` is then checked against what the file says. A file with any
/// problem does not load, so only checked values reach the rules.
fn set(config: &mut RulesConfig, rule: RuleId, table: &Section<'_>, key: &str, value: RuleValue) {
    let Some(item) = table.get(key).map(|e| e.item) else {
        return;
    };
    let whole = || item.as_integer().and_then(|n| u32::try_from(n).ok());
    match value {
        Flag(field) => {
            if let Some(b) = item.as_bool() {
                *field(config, rule) = b;
            }
        }
        Days(field) | Count(_, _, field) => {
            if let Some(n) = whole() {
                *field(config, rule) = n;
            }
        }
        Fraction(field) => {
            if let Some(f) = item
                .as_float()
                .or_else(|| item.as_integer().map(|n| n as f64))
            {
                *field(config, rule) = f;
            }
        }
    }
}

const RETENTION_KEYS: &[&str] = &[
    "raw_files_days",
    "attendance_days",
    "police_da_days",
    "housing_days",
    "cases_days",
];

/// `[retention]`, checked against what the rules need: data a rule still reads
/// must not be purged (a notification kept less than the repeat window could not
/// make the next one a repeat).
pub(super) fn retention(
    cx: &mut Cx<'_>,
    root: &Section<'_>,
    rc: &RulesConfig,
) -> RetentionSettings {
    let mut settings = RetentionSettings::default();
    let Some(sec) = root.table(
        &mut cx.sink,
        "retention",
        "[retention]",
        "{ raw_files_days = 30, attendance_days = 730 }",
    ) else {
        return settings;
    };
    sec.check_keys(&mut cx.sink, RETENTION_KEYS);
    let attendance_need = {
        // The windows are school days: allow for holidays (7 days a week, plus the
        // summer break).
        let a = &rc.attendance_drop;
        (a.window_school_days + a.baseline_school_days) * 7 / 5 + 60
    };
    let needs: [(&str, u32, String); 5] = [
        ("raw_files_days", 1, "a day".into()),
        (
            "attendance_days",
            attendance_need,
            "the attendance windows with holidays".into(),
        ),
        (
            "police_da_days",
            rc.da_notification.repeat_within_days + rc.da_notification.common.lookback_days,
            "[rules.da_notification] repeat_within_days + lookback_days".into(),
        ),
        (
            "housing_days",
            rc.eviction_risk
                .common
                .lookback_days
                .max(rc.emerging_risk.window_days),
            "[rules.eviction_risk] lookback_days and [rules.emerging_risk] window_days".into(),
        ),
        (
            "cases_days",
            rc.closed_too_early.within_days + rc.closed_too_early.common.lookback_days,
            "[rules.closed_too_early] within_days + lookback_days".into(),
        ),
    ];
    for (key, min, why) in needs {
        let Some((n, line)) = sec.integer_in(&mut cx.sink, key, 1, 36_600) else {
            continue;
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if n < min {
            cx.sink.push(
                line,
                format!("`{key}` in [retention] is {n} days, shorter than the rules read back ({min} days: {why})"),
                format!("keep at least {min} days, or shorten the rule's window"),
            );
            continue;
        }
        match key {
            "raw_files_days" => settings.raw_files_days = n,
            "attendance_days" => settings.attendance_days = n,
            "police_da_days" => settings.police_da_days = n,
            "housing_days" => settings.housing_days = n,
            _ => settings.cases_days = n,
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};
    use crate::config::load::summary;

    #[test]
    fn rule_values_are_checked() {
        let fx = Fixture::new();
        let text = format!(
            r#"{MINIMAL}
[rules.attendance_drop]
enabled = "yes"
below = 90
severe_below = 0.6
window_school_days = 0
[rules.closed_too_early]
within_days = 60
urgent_within_days = 90
[rules.emerging_risk]
min_signal_kinds = 5
lookback_days = 2.5
"#
        );
        let problems = fx.problems(&text);
        assert_eq!(find(&problems, "`enabled`").line, 9);
        assert_eq!(find(&problems, "`below` in").line, 10);
        assert_eq!(find(&problems, "`window_school_days`").line, 12);
        assert_eq!(find(&problems, "`urgent_within_days` (90)").line, 15);
        assert_eq!(find(&problems, "`min_signal_kinds`").line, 17);
        assert_eq!(find(&problems, "`lookback_days`").line, 18);
        // below was rejected, so severe_below has nothing to be compared with.
        assert_eq!(problems.len(), 6, "{problems:#?}");

        let s = fx
            .load(&format!(
                "{MINIMAL}[rules.eviction_risk]\nenabled = false\nlookback_days = 30\n"
            ))
            .unwrap();
        let rule = &s.rules.eviction_risk;
        assert!(!rule.common.enabled);
        assert_eq!(rule.common.lookback_days, 30);
        assert!(summary(&s).contains("eviction_risk (off)"));
    }

    #[test]
    fn retention_is_read_and_checked_against_what_the_rules_read() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}[retention]\nraw_files_days = 7\ncases_days = 400\n"
            ))
            .unwrap();
        assert_eq!(s.retention.raw_files_days, 7);
        assert_eq!(s.retention.cases_days, 400);
        assert_eq!(s.retention.attendance_days, 730, "default");
        let p = fx
            .load(&format!(
                "{MINIMAL}[retention]\npolice_da_days = 100\nkeep_forever = true\n\n\
                 [rules.closed_too_early]\nwithin_days = 500\n"
            ))
            .unwrap_err();
        let text = p.to_string();
        assert!(
            text.contains("`police_da_days` in [retention] is 100 days"),
            "{text}"
        );
        assert!(text.contains("keep at least 379 days"), "{text}");
        assert!(text.contains("keep_forever"), "{text}");
        // The default cases_days (730) still covers within_days 500 + lookback 30.
        assert!(!text.contains("`cases_days` in [retention]"), "{text}");
        let p = fx
            .load(&format!("{MINIMAL}[retention]\ncases_days = 500\n\n[rules.closed_too_early]\nwithin_days = 500\n"))
            .unwrap_err();
        assert!(p.to_string().contains("keep at least 530 days"), "{p}");
    }

    #[test]
    fn rules_are_typed_with_defaults_for_what_is_left_out() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}[rules.eviction_risk]\nenabled = false\nlookback_days = 30\nbailiff_within_days = 7\n\
                 [rules.attendance_drop]\nbelow = 0.85\ndrop = 1\nresolve_after_days = 10\nunauthorised_sessions = 6\n"
            ))
            .unwrap();
        let c = s.rules;
        let d = crate::domain::rules::RulesConfig::default();
        assert!(!c.eviction_risk.common.enabled);
        assert_eq!(c.eviction_risk.common.lookback_days, 30);
        assert_eq!(c.eviction_risk.bailiff_within_days, 7);
        assert_eq!(c.attendance_drop.below, 0.85);
        assert_eq!(c.attendance_drop.drop, 1.0, "an integer is a number too");
        assert_eq!(c.attendance_drop.common.resolve_after_days, 10);
        assert_eq!(c.attendance_drop.unauthorised_sessions, 6);
        assert_eq!(
            c.attendance_drop.window_school_days,
            d.attendance_drop.window_school_days
        );
        assert_eq!(c.da_notification, d.da_notification);
        assert_eq!(c.closed_too_early, d.closed_too_early);
        assert_eq!(c.emerging_risk, d.emerging_risk);
    }
}
