//! Object metadata, shaped like Kubernetes' `ObjectMeta` so that `kubectl get -o yaml` and
//! `calicoctl get -o yaml` output loads as it is.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::values::Labels;

/// Metadata of every resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The resource's name, unique per kind (and namespace, for namespaced kinds).
    #[serde(default)]
    pub name: String,
    /// Namespace of a namespaced resource; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels that selectors match on.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
    /// The datastore revision of this version of the object (set by tabby on read; a value
    /// supplied on write is a compare-and-swap condition for `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Unique ID (kept as given; tabby does not assign one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Creation time, RFC 3339 (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Value>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Value>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<Vec<String>>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<Value>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Value>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Kubernetes bookkeeping accepted from `kubectl get -o yaml` output and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
}
