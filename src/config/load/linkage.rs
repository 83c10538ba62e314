//! `[linkage]`: the match thresholds (review strictly below auto_link), the caps on
//! cluster and block size, the blocking rules and any fixed m probabilities.

use super::Cx;
use crate::config::LinkageSettings;
use crate::jobs::walk::Section;

const LINKAGE_KEYS: &[&str] = &[
    "auto_link",
    "review",
    "max_cluster_size",
    "max_block_size",
    "blocking",
    "m",
];

pub(super) fn linkage(cx: &mut Cx<'_>, root: &Section<'_>) -> LinkageSettings {
    let mut settings = LinkageSettings::default();
    let Some(sec) = root.table(
        &mut cx.sink,
        "linkage",
        "[linkage]",
        "{ auto_link = 0.95, review = 0.60 }",
    ) else {
        return settings;
    };
    sec.check_keys(&mut cx.sink, LINKAGE_KEYS);
    if let Some((v, _)) = sec.fraction(&mut cx.sink, "auto_link") {
        settings.auto_link = v;
    }
    if let Some((v, _)) = sec.fraction(&mut cx.sink, "review") {
        settings.review = v;
    }
    // Below 2 no person could ever hold two mentions; above a million a block is
    // the whole borough, which the cap exists to prevent.
    if let Some((v, _)) = sec.integer_in(&mut cx.sink, "max_cluster_size", 2, 1_000_000) {
        settings.max_cluster_size = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some((v, _)) = sec.integer_in(&mut cx.sink, "max_block_size", 2, 1_000_000) {
        settings.max_block_size = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some(rules) = sec.strings(&mut cx.sink, "blocking") {
        let parts = crate::domain::linkage::KEY_PARTS.join(", ");
        let mut blocking = Vec::new();
        for (rule, line) in rules {
            if crate::domain::linkage::blocking_rule_is_valid(&rule) {
                if !blocking.contains(&rule) {
                    blocking.push(rule);
                }
            } else {
                cx.sink.push(
                    line,
                    format!("[linkage] blocking rule `{rule}` is not key parts joined by `+`"),
                    format!("use each of {parts} at most once, e.g. \"dob+surname_code\""),
                );
            }
        }
        if blocking.is_empty() {
            cx.sink.push(
                sec.line_of("blocking"),
                "[linkage] blocking has no usable rule: nothing would ever be compared",
                "list at least one rule, e.g. blocking = [\"dob+surname_code\"], or remove the key for the defaults",
            );
        } else {
            settings.blocking = blocking;
        }
    }
    if let Some(m) = sec.table(
        &mut cx.sink,
        "m",
        "[linkage.m]",
        "{ forename = { exact = 0.9 } }",
    ) {
        let fields = crate::domain::linkage::FIELDS;
        for entry in m.entries() {
            let field = entry.key.as_str();
            let Some((_, levels)) = fields.iter().find(|(name, _)| *name == field) else {
                cx.sink.push(
                    entry.line,
                    format!("[linkage.m] has no field `{field}`"),
                    format!(
                        "use one of {}",
                        fields
                            .iter()
                            .map(|(f, _)| *f)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let Some(table) = m.table(
                &mut cx.sink,
                field,
                format!("[linkage.m.{field}]"),
                "{ exact = 0.9 }",
            ) else {
                continue;
            };
            let known = &levels[..levels.len() - 1];
            for level in table.entries() {
                if !known.contains(&level.key.as_str()) {
                    cx.sink.push(
                        level.line,
                        format!("[linkage.m.{field}] has no level `{}`", level.key),
                        format!("use one of {}", known.join(", ")),
                    );
                    continue;
                }
                if let Some((v, _)) = table.fraction(&mut cx.sink, &level.key) {
                    settings.m.push((field.to_owned(), level.key.clone(), v));
                }
            }
        }
    }
    if settings.review >= settings.auto_link {
        let line = if sec.has("review") {
            sec.line_of("review")
        } else {
            sec.line_of("auto_link")
        };
        cx.sink.push(
            line,
            format!(
                "[linkage] review ({}) is not below auto_link ({}): the review band would be empty",
                settings.review, settings.auto_link
            ),
            "make review lower than auto_link, e.g. auto_link = 0.95 and review = 0.60",
        );
    }
    settings
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};

    #[test]
    fn linkage_caps_are_read_and_checked() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}\n[linkage]\nmax_cluster_size = 50\nmax_block_size = 2000\n"
            ))
            .unwrap();
        assert_eq!(s.linkage.max_cluster_size, 50);
        assert_eq!(s.linkage.max_block_size, 2000);
        assert_eq!(s.linkage.auto_link, 0.95);
        let problems = fx.problems(&format!(
            "{MINIMAL}\n[linkage]\nmax_cluster_size = 1\nmax_block_size = \"big\"\n"
        ));
        assert!(find(&problems, "`max_cluster_size`").line > 0);
        assert!(find(&problems, "`max_block_size`").line > 0);
        assert_eq!(problems.len(), 2, "{problems:#?}");
    }

    #[test]
    fn blocking_rules_and_m_overrides_are_read_and_checked() {
        let fx = Fixture::new();
        let s = fx
            .load(&format!(
                "{MINIMAL}\n[linkage]\nblocking = [\"dob+surname_code\", \"postcode+forename\"]\n\
                 [linkage.m.forename]\nexact = 0.9\n[linkage.m.dob]\nday_month_swapped = 0.02\n"
            ))
            .unwrap();
        assert_eq!(
            s.linkage.blocking,
            vec!["dob+surname_code", "postcode+forename"]
        );
        assert!(s
            .linkage
            .m
            .contains(&("forename".to_owned(), "exact".to_owned(), 0.9)));
        assert!(s
            .linkage
            .m
            .contains(&("dob".to_owned(), "day_month_swapped".to_owned(), 0.02)));
        // Defaults when absent.
        let s = fx.load(MINIMAL).unwrap();
        assert_eq!(
            s.linkage.blocking.len(),
            crate::domain::linkage::DEFAULT_BLOCKING.len()
        );
        assert!(s.linkage.m.is_empty());

        let problems = fx.problems(&format!(
            "{MINIMAL}\n[linkage]\nblocking = [\"dob+shoe_size\", \"dob+dob\"]\n\
             [linkage.m.forename]\nexactly = 0.9\n[linkage.m.height]\ntall = 0.5\n"
        ));
        let bad = find(&problems, "`dob+shoe_size`");
        assert!(bad.line > 0 && bad.fix.contains("surname_code"), "{bad:?}");
        assert!(find(&problems, "`dob+dob`").line > 0);
        assert!(find(&problems, "no usable rule").line > 0);
        assert!(find(&problems, "no level `exactly`")
            .fix
            .contains("nickname"));
        assert!(find(&problems, "no field `height`").line > 0);
    }
}
