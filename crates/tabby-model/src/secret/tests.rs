use serde_json::json;

use crate::{Kind, LoadOptions, Resource, load};

/// A Secret as written, neither defaulted nor checked.
fn raw(body: serde_json::Value) -> Resource {
    Resource::from_body(Kind::Secret, body).expect("a Secret body")
}

#[test]
fn string_data_folds_into_base64_data_and_the_type_defaults_to_opaque() {
    let mut r = raw(json!({
        "metadata": {"name": "bgp", "namespace": "calico-system"},
        "data": {"a": "aGVsbG8="},
        "stringData": {"b": "world", "a": "over"},
    }));
    assert_eq!(r.kind(), Kind::Secret);
    r.apply_defaults();
    let Resource::Secret(s) = &r else {
        panic!("a Secret")
    };
    assert!(s.string_data.is_empty());
    assert_eq!(s.data["b"], "d29ybGQ=");
    assert_eq!(s.value("a").as_deref(), Some(&b"over"[..]));
    assert_eq!(s.value("b").as_deref(), Some(&b"world"[..]));
    assert_eq!(s.value("c"), None);
    assert_eq!(s.secret_type.as_deref(), Some("Opaque"));
    let doc = r.to_value();
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["type"], "Opaque");
    assert!(doc.get("stringData").is_none());
}

#[test]
fn bad_keys_and_bad_base64_are_named_without_showing_the_value() {
    let r = raw(json!({
        "metadata": {"name": "bgp", "namespace": "calico-system"},
        "data": {"pw": "not base64 hunter2!"},
        "stringData": {"bad key": "x"},
    }));
    let (errors, _) = r.check();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|e| e.contains("data.pw") && e.contains("not valid base64")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.contains("stringData") && e.contains("\"bad key\"")),
        "{shown:?}"
    );
    assert!(!shown.iter().any(|e| e.contains("hunter2")), "{shown:?}");
}

#[test]
fn debug_output_lists_keys_but_never_values() {
    let r = raw(json!({
        "metadata": {"name": "bgp", "namespace": "calico-system"},
        "stringData": {"tor": "hunter2"},
    }));
    assert!(!format!("{r:?}").contains("hunter2"));
    let loaded = load(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n\
         stringData: {tor: hunter2}\n",
        "test",
        &LoadOptions::default(),
    )
    .expect("a valid Secret loads");
    let shown = format!("{:?}", loaded[0].resource);
    assert!(
        shown.contains("tor") && !shown.contains("aHVudGVyMg"),
        "{shown}"
    );
}
