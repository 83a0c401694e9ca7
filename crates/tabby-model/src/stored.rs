//! The form resources take in the datastore: JSON text of the full document, keyed by the
//! kind's store name, namespace and name. The datastore's revision, not a stored field, is the
//! `resourceVersion`, so it is stripped on the way in and set on the way out.

use serde_json::Value;

use crate::check::FieldIssue;
use crate::kind::Kind;
use crate::resource::Resource;

/// A resource in stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredForm {
    /// The kind's store name.
    pub kind: &'static str,
    /// Namespace, "" for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// JSON text.
    pub json: String,
}

/// Why stored text could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The key's kind is not one tabby knows (written by a newer version?).
    #[error("unknown stored kind {0:?}")]
    UnknownKind(String),
    /// The text is not JSON.
    #[error("stored value is not JSON: {0}")]
    NotJson(String),
    /// The JSON does not fit the kind.
    #[error("stored value does not fit its kind: {0}")]
    Shape(FieldIssue),
}

/// Encodes a resource for the datastore.
pub fn encode(resource: &Resource) -> StoredForm {
    let mut value = resource.to_value();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    StoredForm {
        kind: resource.kind().info().store_name,
        namespace: resource.namespace().to_owned(),
        name: resource.name().to_owned(),
        json: value.to_string(),
    }
}

/// Decodes a stored resource, setting `resourceVersion` to the revision it was read at.
pub fn decode(store_kind: &str, json: &str, revision: i64) -> Result<Resource, DecodeError> {
    let kind = Kind::from_store_name(store_kind)
        .ok_or_else(|| DecodeError::UnknownKind(store_kind.to_owned()))?;
    let mut value: Value =
        serde_json::from_str(json).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    let mut resource = Resource::from_body(kind, value).map_err(DecodeError::Shape)?;
    resource.meta_mut().resource_version = Some(revision.to_string());
    Ok(resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadOptions, load};

    #[test]
    fn stored_form_round_trips_and_carries_the_revision() {
        let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: a, namespace: prod, resourceVersion: '9'}\nspec: {selector: all()}\n";
        let r = load(text, "t", &LoadOptions::default())
            .unwrap()
            .remove(0)
            .resource;
        let stored = encode(&r);
        assert_eq!(
            (stored.kind, stored.namespace.as_str(), stored.name.as_str()),
            ("NetworkPolicy", "prod", "a")
        );
        assert!(!stored.json.contains("resourceVersion"));
        let back = decode(stored.kind, &stored.json, 42).unwrap();
        assert_eq!(back.meta().resource_version.as_deref(), Some("42"));
        assert_eq!(back.kind(), Kind::NetworkPolicy);
        assert!(matches!(
            decode("Nope", "{}", 1),
            Err(DecodeError::UnknownKind(_))
        ));
        assert!(matches!(
            decode("Tier", "not json", 1),
            Err(DecodeError::NotJson(_))
        ));
    }
}
