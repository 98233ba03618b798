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

fn fixed_id() -> IdentityId {
    "0193b7a0-0000-7000-8000-000000000001".parse().unwrap()
}

#[test]
fn patches() {
    insta::glob!("cases/patch/*.json", |path| {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut current = user_from_document(&case["before"], fixed_id(), None).unwrap();
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
            let next = user_from_document(&Value::Object(doc), current.id, Some(&current))
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
    let identity = user_from_document(&doc, fixed_id(), None).unwrap();
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
        let err = user_from_document(&doc, fixed_id(), None).unwrap_err();
        assert_eq!(err.scim_type.unwrap().as_str(), expected, "{doc}");
        assert_eq!(err.status, 400);
    }
}

#[test]
fn list_parameters() {
    use lockstep_scim::{ListParams, list_query};
    use lockstep_store::IdentityFilter;
    let (q, start) = list_query(&ListParams {
        filter: Some("userName eq \"Bob\"".into()),
        start_index: Some(0),
        count: Some(-3),
    })
    .unwrap();
    assert_eq!((q.filter, q.offset, q.limit, start), (IdentityFilter::UserNameEq("Bob".into()), 0, 0, 1));
    let (q, _) = list_query(&ListParams { count: Some(1_000_000), ..Default::default() }).unwrap();
    assert_eq!(q.limit, 1000);
    let err =
        list_query(&ListParams { filter: Some("userName eq".into()), ..Default::default() }).unwrap_err();
    assert_eq!(err.scim_type.unwrap().as_str(), "invalidFilter");
}
