//! Data-driven snapshot tests: every file under `tests/cases/` is an input,
//! its snapshot under `tests/snapshots/` the reviewed output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lockstep_domain::{IdentityId, Timestamp};
use lockstep_proto::scim::PatchRequest;
use lockstep_scim::{apply_patch, filter, user_from_document, user_to_document};
use serde_json::{Value, json};

#[test]
fn filters() {
    insta::glob!("cases/filter/*.txt", |path| {
        let input = std::fs::read_to_string(path).unwrap();
        let out = match filter::parse(&input) {
            Ok(f) => format!("{input}\n=>\n{f:#?}"),
            Err(e) => format!("{input}\n=> invalidFilter: {e}"),
        };
        insta::assert_snapshot!(out);
    });
}

/// How each filter is planned: the store filter the indexes answer and
/// whether the SCIM filter must still be checked on candidates.
#[test]
fn plans() {
    use lockstep_scim::{ListParams, group_list_query, list_query};
    insta::glob!("cases/plan/*.txt", |path| {
        let groups = path.file_name().unwrap().to_string_lossy().starts_with("groups");
        let input = std::fs::read_to_string(path).unwrap();
        let mut out = String::new();
        for line in input.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            let params = ListParams { filter: Some(line.to_owned()), ..Default::default() };
            let planned = if groups {
                group_list_query(&params).map(|p| (format!("{:?}", p.index), p.residual.is_some()))
            } else {
                list_query(&params).map(|p| (format!("{:?}", p.index), p.residual.is_some()))
            };
            let shown = match planned {
                Ok((index, false)) => format!("index (exact): {index}"),
                Ok((index, true)) => format!("index: {index}\n  then checked on each candidate"),
                Err(e) => format!("{}: {}", e.scim_type.map_or("error", |t| t.as_str()), e.detail),
            };
            out.push_str(&format!("{line}\n  {shown}\n"));
        }
        insta::assert_snapshot!(out);
    });
}

fn fixed_id() -> IdentityId {
    "0193b7a0-0000-7000-8000-000000000001".parse().unwrap()
}

#[test]
fn patches() {
    insta::glob!("cases/patch/*.json", |path| {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut current = user_from_document(&case["before"], fixed_id(), None, &Default::default()).unwrap();
        current.version = 3;
        current.created = Timestamp(1_764_000_000_000_000);
        current.modified = current.created;
        let request: Result<PatchRequest, _> = serde_json::from_value(case["request"].clone());
        let out = request.map_err(|e| json!({"error": format!("invalidSyntax: {e}")})).and_then(|request| {
            let Value::Object(mut doc) = user_to_document(&current, &[], "https://lockstep.test/scim/v2")
            else {
                panic!()
            };
            apply_patch(&lockstep_scim::USER, &mut doc, &request)
                .map_err(|e| json!({"error": e.to_string()}))?;
            let next =
                user_from_document(&Value::Object(doc), current.id, Some(&current), &Default::default())
                    .map_err(|e| json!({"error": e.to_string()}))?;
            Ok(user_to_document(&next, &[], "https://lockstep.test/scim/v2"))
        });
        insta::assert_json_snapshot!(match out {
            Ok(doc) => doc,
            Err(e) => e,
        });
    });
}

#[test]
fn documents_round_trip_and_never_return_the_password() {
    let doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "UserName": "ann", "password": "hunter2", "ACTIVE": true,
        "Name": {"GivenName": "Ann"}, "id": "ignored", "meta": {"version": "ignored"}
    });
    let identity = user_from_document(&doc, fixed_id(), None, &Default::default()).unwrap();
    assert_eq!(identity.user_name, "ann");
    let rendered = user_to_document(&identity, &[], "http://x/scim/v2");
    assert_eq!(rendered["name"]["givenName"], "Ann");
    assert_eq!(rendered["id"], fixed_id().to_string());
    assert!(!rendered.to_string().contains("hunter2"));
    assert_eq!(rendered["meta"]["location"], format!("http://x/scim/v2/Users/{}", fixed_id()));
}

#[test]
fn invalid_documents_are_refused_with_the_right_scim_type() {
    let cases = [
        (json!([]), "invalidSyntax"),
        (json!({"userName": "a", "shoeSize": 9}), "invalidSyntax"),
        (json!({"userName": "a", "username": "b"}), "invalidSyntax"),
        (json!({"displayName": "no user name"}), "invalidValue"),
        (json!({"userName": "   "}), "invalidValue"),
        (json!({"userName": 5}), "invalidValue"),
        (json!({"userName": "a", "emails": "a@b"}), "invalidValue"),
        (json!({"userName": "a", "name": {"nick": "x"}}), "invalidSyntax"),
    ];
    for (doc, expected) in cases {
        let err = user_from_document(&doc, fixed_id(), None, &Default::default()).unwrap_err();
        assert_eq!(err.scim_type.unwrap().as_str(), expected, "{doc}");
        assert_eq!(err.status, 400);
    }
}

#[test]
fn list_parameters() {
    use lockstep_scim::{ListParams, list_query};
    use lockstep_store::{IdentityField, IdentityFilter};
    let plan = list_query(&ListParams {
        filter: Some("userName eq \"Bob\"".into()),
        start_index: Some(0),
        count: Some(-3),
    })
    .unwrap();
    let q = plan.identity_query();
    assert_eq!(
        (q.filter, q.offset, q.limit, plan.start),
        (IdentityFilter::eq(IdentityField::UserName, "Bob"), 0, 0, 1)
    );
    let plan = list_query(&ListParams { count: Some(1_000_000), ..Default::default() }).unwrap();
    assert_eq!(plan.limit, 1000);
    let err =
        list_query(&ListParams { filter: Some("userName eq".into()), ..Default::default() }).unwrap_err();
    assert_eq!(err.scim_type.unwrap().as_str(), "invalidFilter");
}

mod planned_equals_evaluated {
    //! A planned listing (index, then the residual check) selects exactly
    //! what evaluating the filter on every User document selects.
    use lockstep_domain::{DirectoryChange, IdentityId, Origin, SourceId, Tiers, Timestamp};
    use lockstep_scim::{ListParams, filter, list_query, user_from_document, user_matches};
    use lockstep_store::{DirectoryRead, DirectoryStore, IdentityWrite, MemoryDirectory};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// A small pool, so that values and operands collide often.
    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "ab", "AB", "abé", "aBÉ@x.org", "b@x.org", "é", "x.org", "ab@x.org"])
            .prop_map(String::from)
    }

    fn user() -> impl Strategy<Value = Value> {
        (
            word(),
            prop::option::of(word()),
            prop::option::of(word()),
            any::<bool>(),
            prop::option::of(word()),
            prop::collection::vec((word(), prop::sample::select(vec!["work", "home"])), 0..4),
            prop::sample::select(vec!["human", "service_account", "workload"]),
        )
            .prop_map(|(name, display, external, active, title, emails, kind)| {
                let mut doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name, "active": active});
                if let Some(d) = display {
                    doc["displayName"] = json!(d);
                }
                if let Some(e) = external {
                    doc["externalId"] = json!(e);
                }
                if let Some(t) = title {
                    doc["title"] = json!(t);
                }
                doc["emails"] = emails.into_iter().map(|(v, t)| json!({"value": v, "type": t})).collect();
                if kind != "human" {
                    let owner = "00000000-0000-0000-0000-000000000001";
                    doc["urn:ietf:params:scim:schemas:extension:lockstep:2.0:User"] =
                        json!({"identityKind": kind, "owner": {"value": owner}});
                }
                doc
            })
    }

    fn filter_text() -> impl Strategy<Value = String> {
        let attr = prop::sample::select(vec![
            "userName",
            "displayName",
            "externalId",
            "emails.value",
            "title",
            "id",
            "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User:identityKind",
        ]);
        let op = prop::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]);
        let inner_op = prop::sample::select(vec!["eq", "co", "sw", "ew", "gt"]);
        let leaf = prop_oneof![
            3 => (attr.clone(), op.clone(), word()).prop_map(|(a, o, v)| format!("{a} {o} \"{v}\"")),
            2 => (op, word()).prop_map(|(o, v)| format!("emails.value {o} \"{v}\"")),
            1 => attr.prop_map(|a| format!("{a} pr")),
            1 => (prop::sample::select(vec!["eq", "ne", "gt"]), any::<bool>())
                .prop_map(|(o, b)| format!("active {o} {b}")),
            2 => (
                inner_op.clone(),
                word(),
                prop::option::of((prop::sample::select(vec!["type", "value"]), inner_op, word(), any::<bool>()))
            )
                .prop_map(|(o, v, more)| match more {
                    None => format!("emails[value {o} \"{v}\"]"),
                    Some((a2, o2, v2, and)) => {
                        let joiner = if and { "and" } else { "or" };
                        format!("emails[value {o} \"{v}\" {joiner} {a2} {o2} \"{v2}\"]")
                    }
                }),
            1 => Just("emails[type eq \"work\" and value pr]".to_owned()),
        ];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
                inner.prop_map(|a| format!("not ({a})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn plans_select_what_evaluation_selects(
            users in prop::collection::vec(user(), 1..8),
            filters in prop::collection::vec(filter_text(), 4..12),
        ) {
            let dir = MemoryDirectory::new();
            for (n, doc) in users.iter().enumerate() {
                let mut doc = doc.clone();
                doc["userName"] = json!(format!("{}{n}", doc["userName"].as_str().unwrap()));
                let id = IdentityId::from_uuid(uuid::Uuid::from_u128(n as u128 + 100));
                let identity = user_from_document(&doc, id, None, &Default::default()).unwrap();
                dir.commit_identity(IdentityWrite {
                    identity,
                    tiers: Tiers::STANDARD,
                    fanout: Vec::new(),
                    expected_version: None,
                    changes: vec![DirectoryChange::IdentityCreated],
                    origin: Origin { source: SourceId::new("scim"), client: None, source_ref: None },
                    at: Timestamp(1),
                }).unwrap();
            }
            let everyone = dir
                .list_identities_with_groups(&lockstep_store::IdentityQuery {
                    filter: lockstep_store::Filter::All, offset: 0, limit: 100,
                })
                .unwrap()
                .1;
            for text in &filters {
                let parsed = filter::parse(text).unwrap();
                let expected: Vec<IdentityId> = everyone
                    .iter()
                    .filter(|(i, g)| user_matches(&parsed, i, g))
                    .map(|(i, _)| i.id)
                    .collect();
                let plan = list_query(&ListParams { filter: Some(text.clone()), ..Default::default() }).unwrap();
                let (total, candidates) = dir.list_identities_with_groups(&plan.identity_query()).unwrap();
                let (total, page) = plan.finish(total, candidates, |(i, g), f| user_matches(f, i, g)).unwrap();
                let got: Vec<IdentityId> = page.iter().map(|(i, _)| i.id).collect();
                prop_assert_eq!(total, expected.len(), "{}", text);
                prop_assert_eq!(got, expected, "{} planned as {:?}", text, plan.index);
            }
        }
    }
}

#[test]
fn partly_indexed_filters_examine_a_bounded_number_of_candidates() {
    use lockstep_scim::{ListParams, MAX_EXAMINED, list_query};
    let plan =
        list_query(&ListParams { filter: Some("title eq \"x\"".into()), ..Default::default() }).unwrap();
    assert_eq!(plan.identity_query().limit, MAX_EXAMINED + 1);
    let err = plan.finish(MAX_EXAMINED + 1, Vec::<()>::new(), |_, _| true).unwrap_err();
    assert_eq!((err.status, err.scim_type.unwrap().as_str()), (400, "tooMany"));
    assert_eq!(plan.finish(3, vec![1, 2, 3], |n, _| *n != 2).unwrap(), (2, vec![1, 3]));
}
