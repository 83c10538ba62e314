//! `[[locality]]` and `[[school]]`: where alerts go. A locality owns postcode
//! districts (`M7`) or sectors (`M6 5`), each prefix in one locality only (the
//! most specific match wins, so a district in one and a sector of it in another
//! is fine); a school has a unique URN, names a configured locality and at least
//! one education welfare officer.

use std::collections::BTreeMap;

use toml_edit::Value;

use super::values::{emails, non_empty_string};
use super::Cx;
use crate::config::{Locality, School};
use crate::domain::{PostcodePrefix, Urn};
use crate::jobs::walk::{closest, Section};

const LOCALITY_KEYS: &[&str] = &["name", "postcodes", "dv_champions", "champions", "managers"];

const SCHOOL_KEYS: &[&str] = &["urn", "name", "locality", "ewos"];

pub(super) fn localities(cx: &mut Cx<'_>, root: &Section<'_>) -> Vec<Locality> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    // prefix → (locality name, line)
    let mut prefixes: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (i, (table, line)) in root
        .array_of_tables(&mut cx.sink, "locality")
        .into_iter()
        .enumerate()
    {
        let mut sec = Section::new(format!("[[locality]] #{}", i + 1), table, line, &cx.sink);
        sec.check_keys(&mut cx.sink, LOCALITY_KEYS);
        let name = if sec.require(&mut cx.sink, "name", "the locality's name, e.g. \"North\"") {
            non_empty_string(cx, &sec, "name")
        } else {
            None
        };
        let name = name.and_then(|(name, name_line)| match names.get(&name) {
            Some(first) => {
                cx.sink.push(
                    name_line,
                    format!("locality name {name:?} is already used on line {first}"),
                    "give every [[locality]] its own name",
                );
                None
            }
            None => {
                names.insert(name.clone(), name_line);
                Some(name)
            }
        });
        if let Some(name) = &name {
            sec.label = format!("[[locality]] {name:?}");
        }
        let shown_name = name.clone().unwrap_or_else(|| sec.label.clone());
        let mut postcodes = Vec::new();
        for (text, pc_line) in sec.strings(&mut cx.sink, "postcodes").unwrap_or_default() {
            let Some(prefix) = PostcodePrefix::parse(&text).map(PostcodePrefix::into_string) else {
                cx.sink.push(
                    pc_line,
                    format!(
                        "{text:?} in `postcodes` of {} is not a postcode district or sector",
                        sec.label
                    ),
                    "write a district such as \"M7\" or a sector such as \"M6 5\"",
                );
                continue;
            };
            if let Some((other, other_line)) = prefixes.get(&prefix) {
                let message = if *other == shown_name {
                    format!(
                        "postcode prefix {prefix:?} is listed twice in {} (also line {other_line})",
                        sec.label
                    )
                } else {
                    format!(
                        "postcode prefix {prefix:?} is in both locality {other:?} (line {other_line}) and locality {shown_name:?}: routing would be ambiguous"
                    )
                };
                cx.sink.push(
                    pc_line,
                    message,
                    "keep each prefix in one locality; to split a district, list its sectors (\"M6 5\") in the other locality: the most specific match wins",
                );
                continue;
            }
            prefixes.insert(prefix.clone(), (shown_name.clone(), pc_line));
            postcodes.push(prefix);
        }
        let dv_champions = emails(cx, &sec, "dv_champions");
        let champions = emails(cx, &sec, "champions");
        let managers = emails(cx, &sec, "managers");
        if let Some(name) = name {
            out.push(Locality {
                name,
                postcodes,
                dv_champions,
                champions,
                managers,
            });
        }
    }
    out
}

pub(super) fn schools(cx: &mut Cx<'_>, root: &Section<'_>, localities: &[Locality]) -> Vec<School> {
    let mut out = Vec::new();
    let mut urns: BTreeMap<Urn, usize> = BTreeMap::new();
    let locality_names: Vec<&str> = localities.iter().map(|l| l.name.as_str()).collect();
    for (i, (table, line)) in root
        .array_of_tables(&mut cx.sink, "school")
        .into_iter()
        .enumerate()
    {
        let mut sec = Section::new(format!("[[school]] #{}", i + 1), table, line, &cx.sink);
        sec.check_keys(&mut cx.sink, SCHOOL_KEYS);
        let urn = if sec.require(
            &mut cx.sink,
            "urn",
            "the school's six-digit URN, e.g. \"100001\"",
        ) {
            school_urn(cx, &sec)
        } else {
            None
        };
        let urn = urn.and_then(|(urn, urn_line)| match urns.get(&urn) {
            Some(first) => {
                cx.sink.push(
                    urn_line,
                    format!("school URN {urn} is already configured on line {first}"),
                    "list each school once",
                );
                None
            }
            None => {
                urns.insert(urn, urn_line);
                Some(urn)
            }
        });
        if let Some(urn) = urn {
            sec.label = format!("[[school]] {urn}");
        }
        let name = if sec.require(&mut cx.sink, "name", "the school's name") {
            non_empty_string(cx, &sec, "name").map(|(n, _)| n)
        } else {
            None
        };
        let locality = if sec.require(
            &mut cx.sink,
            "locality",
            "the name of the [[locality]] the school is in",
        ) {
            non_empty_string(cx, &sec, "locality").and_then(|(loc, loc_line)| {
                if locality_names.contains(&loc.as_str()) {
                    return Some(loc);
                }
                let list = if locality_names.is_empty() {
                    "none are configured: add a [[locality]]".to_string()
                } else {
                    locality_names.join(", ")
                };
                let fix = match closest(&loc, locality_names.iter().copied()) {
                    Some(best) => format!("did you mean {best:?}? the localities are: {list}"),
                    None => format!("use the name of a [[locality]]: {list}"),
                };
                cx.sink.push(
                    loc_line,
                    format!(
                        "{} names locality {loc:?}, which is not configured",
                        sec.label
                    ),
                    fix,
                );
                None
            })
        } else {
            None
        };
        let ewos = if sec.require(
            &mut cx.sink,
            "ewos",
            "the education welfare officers' addresses",
        ) {
            let given = sec.strings(&mut cx.sink, "ewos");
            let ewos = emails(cx, &sec, "ewos");
            if given.as_ref().is_some_and(Vec::is_empty) {
                cx.sink.push(
                    sec.line_of("ewos"),
                    format!("`ewos` of {} is empty: attendance alerts for its pupils would reach nobody", sec.label),
                    "list at least one education welfare officer, e.g. ewos = [\"ewo.north@example.gov.uk\"]",
                );
            }
            ewos
        } else {
            Vec::new()
        };
        if let (Some(urn), Some(name), Some(locality)) = (urn, name, locality) {
            out.push(School {
                urn,
                name,
                locality,
                ewos,
            });
        }
    }
    out
}

/// `urn` as a string (`"100001"`) or, forgivingly, an integer.
fn school_urn(cx: &mut Cx<'_>, sec: &Section<'_>) -> Option<(Urn, usize)> {
    let entry = sec.get("urn")?;
    let text = match entry.item.as_value() {
        Some(Value::String(s)) => s.value().clone(),
        Some(Value::Integer(i)) => i.value().to_string(),
        _ => {
            cx.sink.push(
                entry.line,
                format!("`urn` in {} must be a string", sec.label),
                "write it as urn = \"100001\"",
            );
            return None;
        }
    };
    match Urn::parse(&text) {
        Ok(urn) => Some((urn, entry.line)),
        Err(e) => {
            cx.sink.push(
                entry.line,
                format!("`urn` in {}: {e}", sec.label),
                "use the school's six-digit URN from Get Information About Schools",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::fixture::{find, Fixture, MINIMAL};

    #[test]
    fn locality_prefixes_must_not_overlap() {
        let fx = Fixture::new();
        let text = format!(
            r#"{MINIMAL}
[[locality]]
name = "North"
postcodes = ["M7", "m6  5"]

[[locality]]
name = "South"
postcodes = [
  "M6",
  "M7",
  "M6 5",
  "M999",
  "M6 55",
]
managers = ["mgr@example"]
"#
        );
        let problems = fx.problems(&text);
        let p = find(&problems, "\"M7\" is in both");
        assert_eq!(p.line, 16);
        assert!(p.message.contains("\"North\"") && p.message.contains("\"South\""));
        // "m6  5" was normalised to "M6 5" and collides with the South sector.
        assert_eq!(find(&problems, "\"M6 5\" is in both").line, 17);
        assert_eq!(find(&problems, "\"M999\"").line, 18);
        assert_eq!(find(&problems, "\"M6 55\"").line, 19);
        assert_eq!(find(&problems, "\"mgr@example\"").line, 21);
        // A district in one locality with a sector of it in another is fine.
        assert_eq!(problems.len(), 5, "{problems:#?}");

        let s = fx
            .load(&format!(
                "{MINIMAL}[[locality]]\nname = \"N\"\npostcodes = [\"m6 5\", \"sw1a\"]\n[[locality]]\nname = \"S\"\npostcodes = [\"M6\"]\n"
            ))
            .unwrap();
        assert_eq!(s.localities[0].postcodes, ["M6 5", "SW1A"]);
    }

    #[test]
    fn schools_need_ewos_and_a_known_locality() {
        let fx = Fixture::new();
        let text = format!(
            r#"{MINIMAL}
[[locality]]
name = "North"

[[school]]
urn = "100001"
name = "A"
locality = "North"
ewos = []

[[school]]
urn = "100002"
name = "B"
locality = "Nroth"
ewos = ["ewo@example.gov.uk"]

[[school]]
urn = "100001"
name = "C"
locality = "North"
ewos = ["ewo@example.gov.uk"]

[[school]]
urn = "12AB"
name = "D"
locality = "North"
"#
        );
        let problems = fx.problems(&text);
        assert_eq!(
            find(&problems, "`ewos` of [[school]] 100001 is empty").line,
            15
        );
        let p = find(&problems, "names locality \"Nroth\"");
        assert_eq!(p.line, 20);
        assert!(p.fix.contains("\"North\""), "{p}");
        assert_eq!(
            find(&problems, "URN 100001 is already configured on line 12").line,
            24
        );
        assert_eq!(find(&problems, "6-digit school URN").line, 30);
        assert_eq!(find(&problems, "has no `ewos`").line, 29);
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }
}
