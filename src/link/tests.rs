//! Behaviour of a whole linking run on small hand-made populations: the cases that
//! must hold exactly (twins, the same name a generation apart, maiden names, swapped
//! dates), the constraints, and stability of an incremental run.

use std::collections::HashSet;

use chrono::NaiveDate;

use super::*;
use crate::domain::FeedKind;

fn d(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn mention(id: i64, kind: FeedKind, source: &str, fore: &str, sur: &str, dob: &str) -> LinkMention {
    LinkMention {
        id,
        source: source.to_owned(),
        kind,
        mention_key: format!("k{id}"),
        role: "child".to_owned(),
        forename: (!fore.is_empty()).then(|| fore.to_owned()),
        surname: (!sur.is_empty()).then(|| sur.to_owned()),
        dob: d(dob),
        gender: None,
        address_line1: None,
        postcode: None,
        uprn: None,
        upn: None,
        nhs_number: None,
        school_urn: None,
        group: None,
        seen_on: None,
        identity_conflict: false,
    }
}

fn at(mut m: LinkMention, line: &str, postcode: &str) -> LinkMention {
    m.address_line1 = Some(line.to_owned());
    m.postcode = Some(postcode.to_owned());
    m
}

fn upn(mut m: LinkMention, upn: &str) -> LinkMention {
    m.upn = Some(upn.to_owned());
    m
}

/// A borough in miniature: enough unrelated people that u and term frequencies mean
/// something, each recorded twice (school and case system) with small differences.
fn background(start_id: i64, people: usize) -> Vec<LinkMention> {
    const FORE: &[&str] = &[
        "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo",
        "Grace", "Arthur", "Freya", "Muhammad", "Lily", "Oscar", "Florence", "Charlie", "Willow",
    ];
    const SUR: &[&str] = &[
        "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
        "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
        "Khan", "Clarke", "Okafor", "Nowak", "Haddad", "Kowalski",
    ];
    let mut out = Vec::new();
    let mut id = start_id;
    for k in 0..people {
        let fore = FORE[k % FORE.len()];
        let sur = SUR[(k / 3) % SUR.len()];
        let dob = NaiveDate::from_ymd_opt(
            2010 + (k % 12) as i32,
            1 + (k % 12) as u32,
            1 + (k % 28) as u32,
        )
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
        let line = format!(
            "{} {} Road",
            1 + k % 90,
            ["Oak", "Elm", "Ash", "Mill"][k % 4]
        );
        let pc = format!("M{} {}A{}", 5 + k % 4, k % 10, ["B", "D", "E", "F"][k % 4]);
        out.push(at(
            mention(id, FeedKind::Attendance, "school", fore, sur, &dob),
            &line,
            &pc,
        ));
        out.push(at(
            mention(id + 1, FeedKind::Assessment, "cases", fore, sur, &dob),
            &line.replace("Road", "Rd"),
            &pc,
        ));
        id += 2;
    }
    out
}

fn person_of(result: &LinkResult, id: i64) -> usize {
    result
        .persons
        .iter()
        .position(|p| p.contains(&id))
        .expect("every mention is in a person")
}

fn run(mentions: &[LinkMention]) -> LinkResult {
    link(mentions, &Previous::default(), &LinkOptions::default())
}

#[test]
fn every_mention_is_in_exactly_one_person() {
    let mentions = background(1, 200);
    let r = run(&mentions);
    let mut seen = HashSet::new();
    for p in &r.persons {
        for id in p {
            assert!(seen.insert(*id), "mention {id} in two persons");
        }
    }
    assert_eq!(seen.len(), mentions.len());
}

#[test]
fn the_same_child_in_school_and_case_records_links() {
    let mentions = background(1, 200);
    let r = run(&mentions);
    for pair in mentions.chunks(2) {
        assert_eq!(
            person_of(&r, pair[0].id),
            person_of(&r, pair[1].id),
            "mentions {} and {} are one child",
            pair[0].id,
            pair[1].id
        );
    }
    assert_eq!(r.persons.len(), 200);
}

#[test]
fn twins_stay_apart() {
    let mut mentions = background(1000, 200);
    // Twins: one surname, one DOB, one address, different forenames; each recorded by
    // the school (with UPNs) and by the police (no UPN).
    let a = upn(
        at(
            mention(
                1,
                FeedKind::Attendance,
                "school",
                "Amelia",
                "Okonkwo",
                "2016-05-09",
            ),
            "7 Birch Road",
            "M6 5AB",
        ),
        "A355200100101",
    );
    let b = upn(
        at(
            mention(
                2,
                FeedKind::Attendance,
                "school",
                "Olivia",
                "Okonkwo",
                "2016-05-09",
            ),
            "7 Birch Road",
            "M6 5AB",
        ),
        "B355200100102",
    );
    let mut pa = at(
        mention(
            3,
            FeedKind::PoliceDa,
            "police",
            "Amelia",
            "Okonkwo",
            "2016-05-09",
        ),
        "7 Birch Rd",
        "M6 5AB",
    );
    let mut pb = at(
        mention(
            4,
            FeedKind::PoliceDa,
            "police",
            "Olivia",
            "Okonkwo",
            "2016-05-09",
        ),
        "7 Birch Rd",
        "M6 5AB",
    );
    pa.group = Some("N1".to_owned());
    pb.group = Some("N1".to_owned());
    mentions.extend([a, b, pa, pb]);
    let r = run(&mentions);
    assert_ne!(person_of(&r, 1), person_of(&r, 2), "twins merged");
    assert_ne!(person_of(&r, 3), person_of(&r, 4), "twins merged");
    assert_eq!(person_of(&r, 1), person_of(&r, 3), "Amelia's records apart");
    assert_eq!(person_of(&r, 2), person_of(&r, 4), "Olivia's records apart");
}

#[test]
fn namesakes_at_different_schools_stay_apart() {
    let mut mentions = background(1000, 200);
    mentions.push(at(
        mention(
            1,
            FeedKind::Attendance,
            "school-a",
            "Jack",
            "Smith",
            "2014-02-03",
        ),
        "3 Elm Road",
        "M7 1AB",
    ));
    mentions.push(at(
        mention(
            2,
            FeedKind::Attendance,
            "school-b",
            "Jack",
            "Smith",
            "2014-02-03",
        ),
        "48 Station Road",
        "M30 9XY",
    ));
    mentions[200 * 2].school_urn = Some(100001);
    mentions[200 * 2 + 1].school_urn = Some(100002);
    let r = run(&mentions);
    assert_ne!(person_of(&r, 1), person_of(&r, 2));
}

#[test]
fn police_adult_with_nickname_and_swapped_dob_links_to_the_case_person() {
    let mut mentions = background(1000, 200);
    let mut case = at(
        mention(
            1,
            FeedKind::Assessment,
            "cases",
            "Elizabeth",
            "Nowakowska",
            "1988-04-11",
        ),
        "12 Cedar Grove",
        "M6 7QP",
    );
    case.role = "parent".to_owned();
    let mut police = at(
        mention(
            2,
            FeedKind::PoliceDa,
            "police",
            "Beth",
            "Nowakowska",
            "1988-11-04",
        ),
        "12 Cedar Gr",
        "m6 7qp",
    );
    police.role = "victim".to_owned();
    police.group = Some("N9".to_owned());
    // Her daughter at the same address must not be pulled in.
    let child = at(
        mention(
            3,
            FeedKind::Assessment,
            "cases",
            "Zofia",
            "Nowakowska",
            "2015-06-01",
        ),
        "12 Cedar Grove",
        "M6 7QP",
    );
    mentions.extend([case, police, child]);
    let r = run(&mentions);
    assert_eq!(
        person_of(&r, 1),
        person_of(&r, 2),
        "the adult's records apart"
    );
    assert_ne!(
        person_of(&r, 1),
        person_of(&r, 3),
        "mother and daughter merged"
    );
    let pair = r
        .pairs
        .iter()
        .find(|p| p.a == 1 && p.b == 2)
        .expect("the pair is kept");
    assert!(
        pair.evidence.contains("forename=nickname"),
        "{}",
        pair.evidence
    );
    assert!(
        pair.evidence.contains("dob=day_month_swapped"),
        "{}",
        pair.evidence
    );
}

#[test]
fn a_mistyped_postcode_on_a_record_without_a_dob_links_by_the_address_line() {
    let mut mentions = background(1000, 200);
    let police = |id: i64, fore: &str, sur: &str, dob: &str, line: &str, pc: &str, n: &str| {
        let mut m = at(
            mention(id, FeedKind::PoliceDa, "police", fore, sur, dob),
            line,
            pc,
        );
        m.role = "victim".to_owned();
        m.group = Some(n.to_owned());
        m
    };
    // Two notifications of one victim: the second without her DOB and with one
    // letter of the postcode wrong, so no postcode or DOB block holds both.
    mentions.push(police(
        1,
        "Rebecca",
        "Dunwood",
        "1986-03-14",
        "36 Chapel Street",
        "M2 5JN",
        "N1",
    ));
    mentions.push(police(
        2,
        "REBECCA",
        "DUNWOOD",
        "",
        "36 Chapel St",
        "M2 5JZ",
        "N2",
    ));
    // Another house of the street, also without a DOB: nothing says she is Rebecca.
    mentions.push(police(
        3,
        "Rebecca",
        "Dunwood",
        "",
        "38 Chapel Street",
        "M2 5JX",
        "N3",
    ));
    let r = run(&mentions);
    assert_eq!(
        person_of(&r, 1),
        person_of(&r, 2),
        "one victim's records apart"
    );
    assert_ne!(person_of(&r, 1), person_of(&r, 3), "another house merged");
    // It is the address-line block that brings the two together.
    let mut without = LinkOptions::default();
    without
        .blocking
        .retain(|b| b.name != "address+forename_code");
    let r = link(&mentions, &Previous::default(), &without);
    assert_ne!(person_of(&r, 1), person_of(&r, 2));
}

#[test]
fn a_victim_under_two_surnames_links_when_her_notifications_name_someone_in_common() {
    let mut mentions = background(1000, 200);
    let police = |id: i64, role: &str, fore: &str, sur: &str, dob: &str, n: &str| {
        let mut m = at(
            mention(id, FeedKind::PoliceDa, "police", fore, sur, dob),
            "37 Oldfield Street",
            "M4 8PR",
        );
        m.role = role.to_owned();
        m.group = Some(n.to_owned());
        m
    };
    // Two incidents at her home: her maiden name and no DOB in the first, her
    // married name in the second; the same partner and the same child in both.
    mentions.extend([
        police(1, "victim", "Carly", "Stafstock", "", "N1"),
        police(
            2,
            "perpetrator",
            "Dean",
            "Kellangthorpe",
            "1990-02-11",
            "N1",
        ),
        police(3, "child", "Mia", "Kellangthorpe", "2017-06-30", "N1"),
        police(4, "victim", "Carly", "Kellangthorpe", "1992-08-29", "N2"),
        police(
            5,
            "perpetrator",
            "Dean",
            "Kellangthorpe",
            "1990-02-11",
            "N2",
        ),
        police(6, "child", "Mia", "Kellangthorpe", "2017-06-30", "N2"),
        // A third at the same address with no one in common: nothing but a forename
        // and a house says this Carly is her.
        police(7, "victim", "Carly", "Brown", "", "N3"),
        police(8, "perpetrator", "Gary", "Brown", "1985-01-04", "N3"),
    ]);
    let r = run(&mentions);
    assert_eq!(
        person_of(&r, 2),
        person_of(&r, 5),
        "the partner's records apart"
    );
    assert_eq!(person_of(&r, 1), person_of(&r, 4), "her two surnames apart");
    assert_ne!(
        person_of(&r, 1),
        person_of(&r, 7),
        "no one in common, yet merged"
    );
    let pair = r
        .pairs
        .iter()
        .find(|p| p.a == 1 && p.b == 4)
        .expect("the pair is kept");
    assert!(
        pair.evidence
            .ends_with(";household=notifications_share_a_person"),
        "{}",
        pair.evidence
    );
}

#[test]
fn different_valid_upns_never_link_whatever_else_matches() {
    let mut mentions = background(1000, 100);
    mentions.push(upn(
        at(
            mention(
                1,
                FeedKind::Attendance,
                "school",
                "Leo",
                "Haddad",
                "2013-03-03",
            ),
            "5 Ash Road",
            "M5 4AB",
        ),
        "A355200100101",
    ));
    mentions.push(upn(
        at(
            mention(
                2,
                FeedKind::Attendance,
                "mis",
                "Leo",
                "Haddad",
                "2013-03-03",
            ),
            "5 Ash Road",
            "M5 4AB",
        ),
        "C355200100103",
    ));
    let r = run(&mentions);
    assert_ne!(person_of(&r, 1), person_of(&r, 2));
}

#[test]
fn a_rejected_pair_is_never_linked_again() {
    let mentions = background(1, 50);
    let (a, b) = (mentions[0].id, mentions[1].id);
    let previous = Previous {
        decisions: vec![Decision {
            a,
            b,
            verdict: Verdict::Reject,
        }],
        ..Previous::default()
    };
    let r = link(&mentions, &previous, &LinkOptions::default());
    assert_ne!(person_of(&r, a), person_of(&r, b));
    assert!(
        !r.review.iter().any(|p| p.a == a && p.b == b),
        "a decided pair is not asked again"
    );
}

#[test]
fn father_and_son_of_one_name_at_one_address_stay_apart() {
    let mut mentions = background(1000, 100);
    let mut dad = at(
        mention(
            1,
            FeedKind::Housing,
            "housing",
            "Kwame",
            "Mensah",
            "1975-01-20",
        ),
        "9 Oak Road",
        "M7 2CD",
    );
    dad.role = "tenant".to_owned();
    let son = at(
        mention(
            2,
            FeedKind::Assessment,
            "cases",
            "Kwame",
            "Mensah",
            "2012-08-30",
        ),
        "9 Oak Road",
        "M7 2CD",
    );
    mentions.extend([dad, son]);
    let r = run(&mentions);
    assert_ne!(person_of(&r, 1), person_of(&r, 2));
}

#[test]
fn no_names_no_dob_and_one_letter_forenames_do_not_panic_or_link() {
    let mut mentions = background(1000, 50);
    mentions.push(mention(1, FeedKind::PoliceDa, "police", "", "", ""));
    mentions.push(mention(2, FeedKind::PoliceDa, "police", "", "", ""));
    mentions.push(mention(3, FeedKind::PoliceDa, "police", "J", "Smith", ""));
    mentions.push(mention(4, FeedKind::PoliceDa, "police", "J", "Smith", ""));
    let r = run(&mentions);
    assert_ne!(person_of(&r, 1), person_of(&r, 2));
    assert_ne!(person_of(&r, 3), person_of(&r, 4));
}

#[test]
fn a_pathological_block_stays_bounded_and_is_flagged() {
    // 3,000 people sharing one postcode and one forename.
    let mut mentions = Vec::new();
    for k in 0..3000i64 {
        mentions.push(at(
            mention(
                k + 1,
                FeedKind::Housing,
                "housing",
                "Mohammed",
                &format!("Name{k}"),
                "",
            ),
            &format!("{} Tower Block", k + 1),
            "M6 1AA",
        ));
    }
    let opts = LinkOptions::default();
    let r = link(&mentions, &Previous::default(), &opts);
    assert!(
        r.stats.candidate_pairs <= mentions.len() * (block::WINDOW + 1) * 2,
        "{}",
        r.stats.candidate_pairs
    );
    assert!(r
        .flags
        .iter()
        .any(|f| matches!(f, ClusterFlag::LargeBlock { .. })));
}

#[test]
fn an_incremental_run_gives_the_same_persons_as_a_full_run() {
    let mut mentions = background(1, 300);
    let first = run(&mentions);
    // New mentions: a police record for an existing child, and a new child.
    let mut police = mention(
        5000,
        FeedKind::PoliceDa,
        "police",
        "Ollie",
        &mentions[0].surname.clone().unwrap(),
        "",
    );
    police.dob = mentions[0].dob;
    police.address_line1 = mentions[0].address_line1.clone();
    police.postcode = mentions[0].postcode.clone();
    mentions.push(police);
    mentions.push(at(
        mention(
            5001,
            FeedKind::Attendance,
            "school",
            "Zara",
            "Quinn",
            "2015-01-01",
        ),
        "1 New Street",
        "M27 1AA",
    ));
    let previous = Previous {
        pairs: first.pairs.clone(),
        decisions: Vec::new(),
        model: Some(first.model.clone()),
        changed: Some([5000, 5001].into_iter().collect()),
    };
    let incremental = link(&mentions, &previous, &LinkOptions::default());
    let full = run(&mentions);
    let norm = |r: &LinkResult| {
        let mut p = r.persons.clone();
        p.sort();
        p
    };
    assert_eq!(norm(&incremental), norm(&full));
    assert_eq!(
        person_of(&incremental, 5000),
        person_of(&incremental, mentions[0].id)
    );
}

#[test]
fn no_mentions_and_one_mention_are_fine() {
    assert!(run(&[]).persons.is_empty());
    let one = vec![mention(7, FeedKind::Housing, "housing", "A", "B", "")];
    assert_eq!(run(&one).persons, vec![vec![7]]);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn arb_mention() -> impl Strategy<Value = LinkMention> {
        (
            prop::sample::select(vec![
                "", "J", "Jo", "John", "Jon", "Joan", "Ann", "Anne", "Zoë",
            ]),
            prop::sample::select(vec!["", "Li", "Lee", "Smith", "Smyth", "O'Neil", "Oneil"]),
            prop::option::of(0u32..40),
            prop::option::of(prop::sample::select(vec![
                "1 Oak Rd",
                "1 Oak Road",
                "2 Oak Rd",
                "Flat 1",
            ])),
            prop::option::of(prop::sample::select(vec![
                "M6 5AB", "m65ab", "M6 5AD", "M7 1AA", "??",
            ])),
            prop::option::of(prop::sample::select(vec!["A1", "A2", "A3"])),
            prop::option::of(prop::sample::select(vec!["N1", "N2"])),
        )
            .prop_map(|(f, s, dob, line, pc, upn, group)| LinkMention {
                id: 0,
                source: "s".to_owned(),
                kind: FeedKind::PoliceDa,
                mention_key: String::new(),
                role: "other".to_owned(),
                forename: (!f.is_empty()).then(|| f.to_owned()),
                surname: (!s.is_empty()).then(|| s.to_owned()),
                dob: dob.and_then(|k| {
                    NaiveDate::from_ymd_opt(2010 + (k % 3) as i32, 1 + k % 12, 1 + k % 28)
                }),
                gender: None,
                address_line1: line.map(str::to_owned),
                postcode: pc.map(str::to_owned),
                uprn: None,
                upn: upn.map(str::to_owned),
                nhs_number: None,
                school_urn: None,
                group: group.map(str::to_owned),
                seen_on: None,
                identity_conflict: false,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the mentions, every one lands in exactly one person and no person
        /// holds two different UPNs or two people of one notification.
        #[test]
        fn constraints_hold_on_any_input(mut ms in prop::collection::vec(arb_mention(), 0..60)) {
            for (k, m) in ms.iter_mut().enumerate() {
                m.id = k as i64 + 1;
            }
            let r = run(&ms);
            let mut seen = HashSet::new();
            for p in &r.persons {
                let mut upns = HashSet::new();
                let mut groups = HashSet::new();
                for id in p {
                    prop_assert!(seen.insert(*id));
                    let m = &ms[(*id - 1) as usize];
                    if let Some(u) = &m.upn { upns.insert(u.clone()); }
                    if let Some(g) = &m.group { prop_assert!(groups.insert(g.clone()), "two people of notification {} merged", g); }
                }
                prop_assert!(upns.len() <= 1, "person with UPNs {:?}", upns);
            }
            prop_assert_eq!(seen.len(), ms.len());
            for pair in &r.pairs {
                prop_assert!(pair.a < pair.b);
                prop_assert!((0.0..=1.0).contains(&pair.probability));
            }
        }
    }
}

#[test]
fn preparing_in_parallel_gives_the_same_persons_as_one_thread() {
    let mentions = background(1, 25_500);
    let one = link(
        &mentions,
        &Previous::default(),
        &LinkOptions {
            threads: 1,
            ..LinkOptions::default()
        },
    );
    let two = link(
        &mentions,
        &Previous::default(),
        &LinkOptions {
            threads: 2,
            ..LinkOptions::default()
        },
    );
    assert_eq!(one.persons, two.persons);
    assert_eq!(one.pairs.len(), two.pairs.len());
}

#[test]
fn configured_m_overrides_the_estimate_and_rules_can_be_chosen() {
    let mentions = background(1, 300);
    let opts = LinkOptions {
        m_overrides: vec![MOverride {
            field: "forename".to_owned(),
            level: "nickname".to_owned(),
            m: 0.2,
        }],
        ..LinkOptions::default()
    };
    let r = link(&mentions, &Previous::default(), &opts);
    let forename = &r.model.fields[0];
    assert_eq!(forename.field, "forename");
    assert!((forename.m[1] - 0.2).abs() < 1e-9, "{:?}", forename.m);
    let total: f64 = forename.m[..forename.m.len() - 1].iter().sum();
    assert!((total - 1.0).abs() < 1e-6, "m still sums to one: {total}");

    // With a single rule that no pair satisfies, nothing is compared.
    let none = LinkOptions {
        blocking: vec![
            BlockingRule::parse("postcode+dob+forename_code+surname_code+birth_year").unwrap(),
        ],
        ..LinkOptions::default()
    };
    let mut strangers = background(1, 50);
    for m in &mut strangers {
        m.postcode = None;
    }
    let r = link(&strangers, &Previous::default(), &none);
    assert_eq!(r.stats.candidate_pairs, 0);
    assert!(BlockingRule::parse("dob+shoe_size").is_none());
}

#[test]
fn a_key_that_named_two_people_is_flagged_and_merges_no_one() {
    let mut mentions = background(1000, 100);
    // Case person 7 was first a child, then (reused) an adult; its mention holds the
    // last details and has the same UPN as a pupil.
    let mut reused = upn(
        at(
            mention(
                1,
                FeedKind::Assessment,
                "cases",
                "Ruby",
                "Hart",
                "2014-02-02",
            ),
            "4 Mill Lane",
            "M6 1AB",
        ),
        "A355200100101",
    );
    reused.identity_conflict = true;
    let pupil = upn(
        at(
            mention(
                2,
                FeedKind::Attendance,
                "school",
                "Ruby",
                "Hart",
                "2014-02-02",
            ),
            "4 Mill Lane",
            "M6 1AB",
        ),
        "A355200100101",
    );
    mentions.extend([reused, pupil]);
    let r = run(&mentions);
    assert_ne!(
        person_of(&r, 1),
        person_of(&r, 2),
        "a reused key links no one"
    );
    assert!(r
        .flags
        .contains(&ClusterFlag::ReusedCasePersonId { mention: 1 }));
}

#[test]
fn twins_are_not_chained_together_through_a_third_record() {
    let mut mentions = background(1000, 200);
    // Twins Harrison and Harry; the school sent Harrison without a UPN. The police
    // record of Harrison matches his school record exactly and Harry's by nickname:
    // a chain through it must not join the two school records.
    let harrison = at(
        mention(
            1,
            FeedKind::Attendance,
            "school",
            "Harrison",
            "Dalhall",
            "2011-03-22",
        ),
        "",
        "OL3 2AP",
    );
    let harry = upn(
        at(
            mention(
                2,
                FeedKind::Attendance,
                "school",
                "Harry",
                "Dalhall",
                "2011-03-22",
            ),
            "",
            "OL3 2AP",
        ),
        "C355248116790",
    );
    let police = at(
        mention(
            3,
            FeedKind::PoliceDa,
            "police",
            "Harrison",
            "Dalhall",
            "2011-03-22",
        ),
        "143 Holly Rd",
        "OL3 2AP",
    );
    mentions.extend([harrison, harry, police]);
    let r = run(&mentions);
    assert_ne!(
        person_of(&r, 1),
        person_of(&r, 2),
        "the twins were chained together"
    );
    assert_eq!(person_of(&r, 1), person_of(&r, 3));
}

/// An adult's record in a case system (role `parent`).
fn adult(id: i64, source: &str, fore: &str, sur: &str, dob: &str) -> LinkMention {
    let mut m = mention(id, FeedKind::Assessment, source, fore, sur, dob);
    m.role = "parent".to_owned();
    m
}

#[test]
fn an_adult_keyed_with_names_swapped_or_split_links() {
    let mut mentions = background(1000, 100);
    mentions.extend([
        at(
            adult(1, "police", "Bradley", "Matthews", "1984-05-02"),
            "4 Elm Road",
            "M6 5AB",
        ),
        at(
            adult(2, "cases", "Matthews", "Bradley", "1984-05-02"),
            "4 Elm Road",
            "M6 5AB",
        ),
        at(
            adult(3, "police", "Ly dia", "Okonjo", "1990-11-13"),
            "17 Ash Road",
            "M7 1CD",
        ),
        at(
            adult(4, "cases", "Lydia", "Okonjo", "1990-11-13"),
            "17 Ash Road",
            "M7 1CD",
        ),
    ]);
    let r = run(&mentions);
    assert_eq!(person_of(&r, 1), person_of(&r, 2), "swapped names");
    assert_eq!(
        person_of(&r, 3),
        person_of(&r, 4),
        "a forename split by a space"
    );
    let swapped = r.pairs.iter().find(|p| (p.a, p.b) == (1, 2)).unwrap();
    assert!(
        swapped.evidence.contains("names=swapped"),
        "{}",
        swapped.evidence
    );
}

#[test]
fn an_adult_under_another_forename_links_a_child_under_another_forename_does_not() {
    let mut mentions = background(1000, 100);
    // An adult known by a middle name: surname, DOB and home agree.
    mentions.extend([
        at(
            adult(1, "police", "Jasmine", "Silvestro", "1979-03-08"),
            "12 Mill Road",
            "M8 4EF",
        ),
        at(
            adult(2, "cases", "Angela", "Silvestro", "1979-03-08"),
            "12 Mill Road",
            "M8 4EF",
        ),
    ]);
    // Twins: the same, but children.
    mentions.extend([
        at(
            mention(
                3,
                FeedKind::PoliceDa,
                "police",
                "Amir",
                "Haddad",
                "2016-06-01",
            ),
            "3 Oak Road",
            "M5 2AB",
        ),
        at(
            mention(
                4,
                FeedKind::Assessment,
                "cases",
                "Omar",
                "Haddad",
                "2016-06-01",
            ),
            "3 Oak Road",
            "M5 2AB",
        ),
    ]);
    let r = run(&mentions);
    assert_eq!(person_of(&r, 1), person_of(&r, 2), "known-as name");
    assert_ne!(person_of(&r, 3), person_of(&r, 4), "twins");
}

#[test]
fn an_adult_dob_keyed_wrongly_links_but_a_generation_apart_does_not() {
    let mut mentions = background(1000, 100);
    mentions.extend([
        // Born 1988 in one record and 1983 in the other: one man, a DOB mis-keyed.
        at(
            adult(1, "police", "Tomasz", "Nowicki", "1988-02-14"),
            "21 Elm Road",
            "M6 3CD",
        ),
        at(
            adult(2, "cases", "Tomasz", "Nowicki", "1983-07-30"),
            "21 Elm Road",
            "M6 3CD",
        ),
        // Born 1961 and 1988: a father and his son of one name, both adults.
        at(
            adult(3, "police", "Dariusz", "Kowal", "1961-09-09"),
            "8 Ash Road",
            "M7 6EF",
        ),
        at(
            adult(4, "cases", "Dariusz", "Kowal", "1988-01-21"),
            "8 Ash Road",
            "M7 6EF",
        ),
    ]);
    let r = run(&mentions);
    assert_eq!(person_of(&r, 1), person_of(&r, 2), "a mis-keyed DOB");
    assert_ne!(person_of(&r, 3), person_of(&r, 4), "a generation apart");
}

#[test]
fn one_record_under_another_forename_does_not_split_an_adult_the_others_join() {
    let mut mentions = background(1000, 100);
    mentions.extend([
        at(
            adult(1, "police", "Adam", "Eveston", "1972-12-01"),
            "5 Oak Road",
            "M5 1AB",
        ),
        at(
            adult(2, "cases", "Adam", "Thorpe", "1972-12-01"),
            "5 Oak Road",
            "M5 1AB",
        ),
        at(
            adult(3, "housing", "Kyle", "Eveston", "1972-12-01"),
            "5 Oak Road",
            "M5 1AB",
        ),
    ]);
    let r = run(&mentions);
    assert_eq!(person_of(&r, 1), person_of(&r, 2));
    assert_eq!(person_of(&r, 1), person_of(&r, 3));
}

#[test]
fn a_whole_file_with_its_name_columns_swapped_still_links() {
    let mut mentions = background(1000, 100);
    let people = [
        ("Amara", "Okafor", "1985-04-12", "3 Oak Road", "M5 1AB"),
        ("Dylan", "Price", "1979-09-30", "8 Elm Road", "M6 2CD"),
        ("Zofia", "Nowak", "1990-01-17", "21 Ash Road", "M7 3EF"),
        ("Rhys", "Morgan", "1982-06-05", "40 Mill Road", "M8 4GH"),
    ];
    for (k, (fore, sur, dob, line, pc)) in people.iter().enumerate() {
        let k = k as i64;
        mentions.push(at(adult(10 + k, "cases", fore, sur, dob), line, pc));
        // The police file had its forename and surname columns mapped the wrong way.
        mentions.push(at(adult(20 + k, "police", sur, fore, dob), line, pc));
    }
    let r = run(&mentions);
    for k in 0..people.len() as i64 {
        assert_eq!(person_of(&r, 10 + k), person_of(&r, 20 + k), "person {k}");
    }
}

#[test]
fn children_without_forenames_are_not_merged_on_surname_dob_and_home() {
    let mut mentions = background(1000, 100);
    // Two babies of one household, no forename yet: twins as far as the records go.
    for id in [1, 2] {
        mentions.push(at(
            mention(
                id,
                FeedKind::PoliceDa,
                &format!("police{id}"),
                "",
                "Haddad",
                "2025-02-01",
            ),
            "3 Oak Road",
            "M5 2AB",
        ));
    }
    let r = run(&mentions);
    assert_ne!(person_of(&r, 1), person_of(&r, 2));
}
