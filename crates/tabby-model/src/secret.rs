//! Kubernetes `v1` Secret, kept only so that BGP passwords (`password.secretKeyRef`,
//! `nodeMeshPassword.secretKeyRef`) can be resolved as Calico resolves them. Values are never
//! shown by this crate: `Debug` lists only the keys, and validation errors name the key, not
//! the value.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::meta::ObjectMeta;

/// The type a Secret without `type` gets, as the Kubernetes API server sets it.
pub const DEFAULT_SECRET_TYPE: &str = "Opaque";

/// A Kubernetes Secret: `data` holds base64 values; `stringData` is write-only plain text that
/// [`Secret::apply_defaults`] folds into `data`, as the API server does.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Key to base64-encoded value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Key to plain value; merged into `data` on write (it wins over `data`'s key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// `Opaque` unless given.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field(
                "string_data_keys",
                &self.string_data.keys().collect::<Vec<_>>(),
            )
            .field("type", &self.secret_type)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// Folds `stringData` into `data` and sets the default type.
    pub fn apply_defaults(&mut self) {
        for (k, v) in std::mem::take(&mut self.string_data) {
            self.data.insert(k, STANDARD.encode(v));
        }
        if self.secret_type.is_none() {
            self.secret_type = Some(DEFAULT_SECRET_TYPE.to_owned());
        }
    }

    /// The decoded value of `key` (`stringData` first, for a Secret not yet defaulted);
    /// `None` when absent or not valid base64.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(v) = self.string_data.get(key) {
            return Some(v.as_bytes().to_vec());
        }
        STANDARD.decode(self.data.get(key)?).ok()
    }

    /// Keys are what Kubernetes allows (`[-._a-zA-Z0-9]+`, at most 253 characters); `data`
    /// values are base64. Messages never include a value.
    pub(crate) fn check(&self, c: &mut Checker) {
        for (field, map) in [("data", &self.data), ("stringData", &self.string_data)] {
            c.field(field, |c| {
                for (k, v) in map {
                    if let Err(why) = check_key(k) {
                        c.error(format!("key {k:?} {why}"));
                    } else if field == "data" && STANDARD.decode(v).is_err() {
                        c.error_at(k, "is not valid base64 (the value is not shown)");
                    }
                }
            });
        }
    }
}

fn check_key(k: &str) -> Result<(), &'static str> {
    if k.is_empty() {
        Err("is empty")
    } else if k.len() > 253 {
        Err("is longer than 253 characters")
    } else if !k
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Err("may only hold letters, digits, '-', '_' and '.'")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
