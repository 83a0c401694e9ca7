//! tabby's resource model: the kinds users write (Calico `projectcalico.org/v3` resources and
//! Kubernetes NetworkPolicy, Namespace, Pod, ServiceAccount and Secret), with Calico's field names and
//! defaults, validation that names the field path and the reason, and loading of YAML and JSON
//! files (single and multi-document, `kind: List`).
//!
//! It does no I/O: callers hand it text and get typed [`Resource`]s back (or every error in the
//! text). The selector language lives in `tabby-selector` and is re-exported here as
//! [`selector`].
//!
//! Key types: [`Kind`] (names, scope, API group), [`Resource`] (a typed object of any kind),
//! [`load`] (a file's documents, all or nothing), [`FieldIssue`] (a problem at a field path).

pub mod bgp;
mod check;
mod document;
pub mod k8s;
pub mod k8s_convert;
mod kind;
mod meta;
pub mod network;
pub mod node;
pub mod policy;
mod resource;
pub mod secret;
pub mod stored;
pub mod values;
pub mod yaml;

pub use tabby_selector as selector;

pub use crate::check::{Checker, FieldIssue};
pub use crate::document::{DocumentIssue, LoadError, LoadOptions, Loaded, load};
pub use crate::kind::{CALICO_API_VERSION, Kind, KindInfo};
pub use crate::meta::ObjectMeta;
pub use crate::resource::{Object, Resource, ServiceAccount, describe};
