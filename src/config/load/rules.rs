//! `[rules.*]`: each shipped rule's table, its keys checked by type and range
//! (and pairs that only make sense one way round), kept as parsed TOML. And
//! `[retention]`, checked against what the rules read back: data a rule still
//! reads must not be purged (a notification kept less than the repeat window
//! could not make the next one a repeat).

use std::collections::BTreeMap;

use toml_edit::{Item, Value};

use super::Cx;
use crate::config::RetentionSettings;
use crate::jobs::walk::{closest, Section};

const RETENTION_KEYS: &[&str] = &[
    "raw_files_days",
    "attendance_days",
    "police_da_days",
    "housing_days",
    "cases_days",
];

/// What a rule key holds.
#[derive(Clone, Copy)]
pub(super) enum RuleValue {
    Flag,
    /// A positive whole number of days.
    Days,
    /// 0.0 to 1.0.
    Fraction,
    /// A whole number in this range.
    Count(i64, i64),
}

/// Keys every rule has.
const RULE_COMMON: &[(&str, RuleValue)] = &[
    ("enabled", RuleValue::Flag),
    ("lookback_days", RuleValue::Days),
    ("resolve_after_days", RuleValue::Days),
];

/// The shipped rules and their own keys (config.md; defaults in domain.md §9).
pub(super) const RULES: &[(&str, &[(&str, RuleValue)])] = &[
    (
        "da_notification",
        &[("repeat_within_days", RuleValue::Days)],
    ),
    (
        "attendance_drop",
        &[
            // The store packs a window's session counts in 12 bits (≤ 4095).
            ("window_school_days", RuleValue::Count(1, 2000)),
            ("baseline_school_days", RuleValue::Count(1, 2000)),
            ("below", RuleValue::Fraction),
            ("drop", RuleValue::Fraction),
            ("severe_below", RuleValue::Fraction),
            ("min_possible_sessions", RuleValue::Count(1, 10_000)),
            ("unauthorised_sessions", RuleValue::Count(1, 10_000)),
        ],
    ),
    ("eviction_risk", &[("bailiff_within_days", RuleValue::Days)]),
    (
        "closed_too_early",
        &[
            ("within_days", RuleValue::Days),
            ("urgent_within_days", RuleValue::Days),
        ],
    ),
    (
        "emerging_risk",
        &[
            ("window_days", RuleValue::Days),
            // four signal kinds: attendance, police_da, housing, referral
            ("min_signal_kinds", RuleValue::Count(1, 4)),
        ],
    ),
];

/// The longest span of days a rule key may hold: beyond ten years it is a typo.
const MAX_DAYS: i64 = 3660;

pub(super) fn rules(cx: &mut Cx<'_>, root: &Section<'_>) -> BTreeMap<String, toml_edit::Table> {
    let mut out = BTreeMap::new();
    let Some(sec) = root.table(
        &mut cx.sink,
        "rules",
        "[rules]",
        "a [rules.NAME] table per rule",
    ) else {
        return out;
    };
    let rule_names: Vec<&str> = RULES.iter().map(|(n, _)| *n).collect();
    for entry in sec.entries() {
        let Some(&(name, own_keys)) = RULES.iter().find(|(n, _)| *n == entry.key) else {
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
        let label = format!("[rules.{name}]");
        let Some(rule) = sec.table(&mut cx.sink, name, label, "a [rules.NAME] table") else {
            continue;
        };
        let keys: Vec<(&str, RuleValue)> =
            RULE_COMMON.iter().chain(own_keys.iter()).copied().collect();
        let key_names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        rule.check_keys(&mut cx.sink, &key_names);
        let mut numbers: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for (key, value) in keys {
            match value {
                RuleValue::Flag => {
                    rule.boolean(&mut cx.sink, key);
                }
                RuleValue::Days => {
                    if let Some((n, line)) = rule.integer_in(&mut cx.sink, key, 1, MAX_DAYS) {
                        // whole days, exact as f64
                        numbers.insert(key, (n as f64, line));
                    }
                }
                RuleValue::Fraction => {
                    if let Some(v) = rule.fraction(&mut cx.sink, key) {
                        numbers.insert(key, v);
                    }
                }
                RuleValue::Count(min, max) => {
                    rule.integer_in(&mut cx.sink, key, min, max);
                }
            }
        }
        // Pairs that only make sense one way round (checked when both are given).
        let ordered = [
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
        for (small, large, why) in ordered {
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
        let table = match entry.item {
            Item::Table(t) => t.clone(),
            Item::Value(Value::InlineTable(t)) => t.clone().into_table(),
            _ => continue,
        };
        out.insert(name.to_string(), table);
    }
    out
}

/// `[retention]`, checked against what the rules need: data a rule still reads
/// must not be purged (a notification kept less than the repeat window could not
/// make the next one a repeat).
pub(super) fn retention(
    cx: &mut Cx<'_>,
    root: &Section<'_>,
    rules: &BTreeMap<String, toml_edit::Table>,
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
    let rc = crate::config::rules_config_from(rules);
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
    use toml_edit::Item;

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
        let rule = &s.rules["eviction_risk"];
        assert_eq!(rule.get("enabled").and_then(Item::as_bool), Some(false));
        assert_eq!(
            rule.get("lookback_days").and_then(Item::as_integer),
            Some(30)
        );
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
        let c = s.rules_config();
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
