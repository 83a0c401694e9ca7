//! A typed resource of any kind, its conversion from and to plain JSON values, its defaults and
//! its validation.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bgp::{BgpConfigurationSpec, BgpPeerSpec};
use crate::check::{Checker, FieldIssue};
use crate::k8s::{K8sNetworkPolicySpec, PodSpec, PodStatus};
use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::network::{IpPoolSpec, IpReservationSpec, NetworkSetSpec};
use crate::node::{FelixConfigurationSpec, HostEndpointSpec, NodeSpec, WorkloadEndpointSpec};
use crate::policy::{PolicyFlavor, PolicySpec, ProfileSpec, TierSpec};
use crate::secret::Secret;
use crate::values::{check_labels, check_name, dns_label};

/// A resource with metadata, a spec and an optional status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Object<S> {
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    #[serde(default)]
    pub spec: S,
    /// Observed state, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// A Kubernetes ServiceAccount: metadata plus fields kept as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Other fields (secrets, imagePullSecrets, ...), kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

macro_rules! resources {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A resource of any kind tabby knows.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource {
            $(
                #[doc = concat!("A ", stringify!($variant), ".")]
                $variant($ty),
            )*
        }

        impl Resource {
            /// The kind.
            pub fn kind(&self) -> Kind {
                match self { $(Self::$variant(_) => Kind::$variant,)* }
            }

            /// The metadata.
            pub fn meta(&self) -> &ObjectMeta {
                match self { $(Self::$variant(o) => &o.metadata,)* }
            }

            /// The metadata, to change.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Self::$variant(o) => &mut o.metadata,)* }
            }

            /// Builds a typed resource of `kind` from the rest of a document (everything but
            /// `apiVersion` and `kind`). The error names the field path and the reason.
            pub fn from_body(kind: Kind, body: Value) -> Result<Self, FieldIssue> {
                match kind { $(Kind::$variant => from_value(body).map(Self::$variant),)* }
            }

            fn body(&self) -> Result<Value, serde_json::Error> {
                match self { $(Self::$variant(o) => serde_json::to_value(o),)* }
            }
        }
    };
}

resources! {
    IpPool(Object<IpPoolSpec>),
    IpReservation(Object<IpReservationSpec>),
    BgpConfiguration(Object<BgpConfigurationSpec>),
    BgpPeer(Object<BgpPeerSpec>),
    FelixConfiguration(Object<FelixConfigurationSpec>),
    Tier(Object<TierSpec>),
    GlobalNetworkPolicy(Object<PolicySpec>),
    NetworkPolicy(Object<PolicySpec>),
    StagedNetworkPolicy(Object<PolicySpec>),
    StagedGlobalNetworkPolicy(Object<PolicySpec>),
    GlobalNetworkSet(Object<NetworkSetSpec>),
    NetworkSet(Object<NetworkSetSpec>),
    HostEndpoint(Object<HostEndpointSpec>),
    WorkloadEndpoint(Object<WorkloadEndpointSpec>),
    Node(Object<NodeSpec>),
    Profile(Object<ProfileSpec>),
    K8sNetworkPolicy(Object<K8sNetworkPolicySpec>),
    Namespace(Object<Map<String, Value>>),
    Pod(Object<PodSpec>),
    ServiceAccount(ServiceAccount),
    Secret(Secret),
}

fn from_value<T: DeserializeOwned>(body: Value) -> Result<T, FieldIssue> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        FieldIssue {
            path: if path == "." { String::new() } else { path },
            reason: e.into_inner().to_string(),
        }
    })
}

impl Resource {
    /// The name.
    pub fn name(&self) -> &str {
        &self.meta().name
    }

    /// The namespace ("" for cluster-scoped kinds).
    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or("")
    }

    /// How people name this object in messages: `GlobalNetworkPolicy "deny-db"` or
    /// `NetworkPolicy "prod/allow-web"`.
    pub fn describe(&self) -> String {
        describe(self.kind(), self.namespace(), self.name())
    }

    /// The full document: `apiVersion`, `kind`, then the body.
    pub fn to_value(&self) -> Value {
        let info = self.kind().info();
        let mut out = Map::new();
        out.insert("apiVersion".into(), Value::from(info.api_version));
        out.insert("kind".into(), Value::from(info.kind));
        // Serialising plain data structures with string keys cannot fail.
        if let Ok(Value::Object(body)) = self.body() {
            out.extend(body);
        }
        Value::Object(out)
    }

    /// Fills in Calico's defaults, as its API server does on create.
    pub fn apply_defaults(&mut self) {
        match self {
            Self::IpPool(o) => o.spec.apply_defaults(),
            Self::Tier(o) => o.spec.apply_defaults(&o.metadata.name),
            Self::BgpConfiguration(o) => o.spec.apply_defaults(&o.metadata.name),
            Self::Secret(o) => o.apply_defaults(),
            Self::GlobalNetworkPolicy(o)
            | Self::NetworkPolicy(o)
            | Self::StagedNetworkPolicy(o)
            | Self::StagedGlobalNetworkPolicy(o) => o.spec.apply_defaults(),
            _ => {}
        }
    }

    /// Checks the resource on its own (no other resources consulted). Returns the errors and
    /// warnings with their field paths.
    pub fn check(&self) -> (Vec<FieldIssue>, Vec<FieldIssue>) {
        let mut c = Checker::new();
        let meta = self.meta();
        c.field("metadata", |c| {
            if meta.name.is_empty() {
                c.error_at("name", "is required");
            } else if self.kind() == Kind::Namespace {
                if let Err(r) = dns_label(&meta.name) {
                    c.error_at("name", format!("namespace name {:?} {r}", meta.name));
                }
            } else {
                c.field("name", |c| check_name(c, &meta.name));
            }
            if let Some(ns) = &meta.namespace
                && let Err(r) = dns_label(ns)
            {
                c.error_at("namespace", format!("namespace {ns:?} {r}"));
            }
            check_labels(c, "labels", &meta.labels);
        });
        let flavor = |global, staged| PolicyFlavor { global, staged };
        match self {
            Self::IpPool(o) => o.spec.check(&mut c),
            Self::IpReservation(o) => o.spec.check(&mut c),
            Self::BgpConfiguration(o) => {
                o.spec.check(&mut c, &o.metadata.name);
                o.spec.check_annotations(&mut c, &o.metadata);
            }
            Self::BgpPeer(o) => {
                o.spec.check(&mut c);
                crate::bgp::check_annotations(
                    &mut c,
                    &o.metadata.annotations,
                    crate::bgp::ANNOTATION_MAX_PREFIXES,
                );
            }
            Self::FelixConfiguration(o) => o.spec.check(&mut c),
            Self::Tier(o) => o.spec.check(&mut c, &o.metadata.name),
            Self::GlobalNetworkPolicy(o) => o.spec.check(&mut c, flavor(true, false)),
            Self::NetworkPolicy(o) => o.spec.check(&mut c, flavor(false, false)),
            Self::StagedNetworkPolicy(o) => o.spec.check(&mut c, flavor(false, true)),
            Self::StagedGlobalNetworkPolicy(o) => o.spec.check(&mut c, flavor(true, true)),
            Self::GlobalNetworkSet(o) | Self::NetworkSet(o) => o.spec.check(&mut c),
            Self::HostEndpoint(o) => o.spec.check(&mut c),
            Self::WorkloadEndpoint(o) => o.spec.check(&mut c),
            Self::Node(o) => o.spec.check(&mut c),
            Self::Profile(o) => o.spec.check(&mut c),
            Self::K8sNetworkPolicy(o) => o.spec.check(&mut c),
            Self::Pod(o) => {
                o.spec.check(&mut c);
                if let Some(status) = &o.status {
                    match from_value::<PodStatus>(status.clone()) {
                        Ok(s) => s.check(&mut c),
                        Err(e) => c.field("status", |c| c.error(e.to_string())),
                    }
                }
            }
            Self::Secret(o) => o.check(&mut c),
            Self::Namespace(_) | Self::ServiceAccount(_) => {}
        }
        c.finish()
    }

    /// A pod's typed status (addresses), when it has one that parses.
    pub fn pod_status(&self) -> Option<PodStatus> {
        match self {
            Self::Pod(o) => o
                .status
                .clone()
                .and_then(|s| serde_json::from_value(s).ok()),
            _ => None,
        }
    }
}

/// How people name an object in messages: `GlobalNetworkPolicy "deny-db"` or
/// `NetworkPolicy "prod/allow-web"`.
pub fn describe(kind: Kind, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind} {name:?}")
    } else {
        format!("{kind} \"{namespace}/{name}\"")
    }
}
