//! The kinds tabby knows: their API group, scope, and the names people type for them.

use std::fmt;

/// Calico's API version.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";

/// Every kind of resource tabby stores or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Calico IPPool.
    IpPool,
    /// Calico IPReservation.
    IpReservation,
    /// Calico BGPConfiguration.
    BgpConfiguration,
    /// Calico BGPPeer.
    BgpPeer,
    /// Calico FelixConfiguration.
    FelixConfiguration,
    /// Calico Tier.
    Tier,
    /// Calico GlobalNetworkPolicy.
    GlobalNetworkPolicy,
    /// Calico NetworkPolicy (namespaced).
    NetworkPolicy,
    /// Calico StagedNetworkPolicy.
    StagedNetworkPolicy,
    /// Calico StagedGlobalNetworkPolicy.
    StagedGlobalNetworkPolicy,
    /// Calico GlobalNetworkSet.
    GlobalNetworkSet,
    /// Calico NetworkSet (namespaced).
    NetworkSet,
    /// Calico HostEndpoint.
    HostEndpoint,
    /// Calico WorkloadEndpoint (namespaced).
    WorkloadEndpoint,
    /// Calico Node.
    Node,
    /// Calico Profile.
    Profile,
    /// Kubernetes `networking.k8s.io/v1` NetworkPolicy.
    K8sNetworkPolicy,
    /// Kubernetes `v1` Namespace.
    Namespace,
    /// Kubernetes `v1` Pod.
    Pod,
    /// Kubernetes `v1` ServiceAccount.
    ServiceAccount,
    /// Kubernetes `v1` Secret (BGP passwords).
    Secret,
}

/// Facts about a kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The `kind:` field value.
    pub kind: &'static str,
    /// The `apiVersion:` field value.
    pub api_version: &'static str,
    /// The kind's name in datastore keys (unique across API groups).
    pub store_name: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Plural, lowercase (as `get` takes it).
    pub plural: &'static str,
    /// Other names people type: singular, short names.
    pub aliases: &'static [&'static str],
}

macro_rules! kinds {
    ($($variant:ident => ($kind:literal, $api:expr, $store:literal, $ns:literal, $plural:literal, [$($alias:literal),*])),* $(,)?) => {
        impl Kind {
            /// Every kind, in the order `get all` lists them (dependencies first).
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// Facts about this kind.
            pub fn info(self) -> &'static KindInfo {
                match self {
                    $(Kind::$variant => &KindInfo {
                        kind: $kind,
                        api_version: $api,
                        store_name: $store,
                        namespaced: $ns,
                        plural: $plural,
                        aliases: &[$($alias),*],
                    },)*
                }
            }
        }
    };
}

kinds! {
    Tier => ("Tier", CALICO_API_VERSION, "Tier", false, "tiers", ["tier"]),
    IpPool => ("IPPool", CALICO_API_VERSION, "IPPool", false, "ippools", ["ippool", "ipp", "ipps", "pool", "pools"]),
    IpReservation => ("IPReservation", CALICO_API_VERSION, "IPReservation", false, "ipreservations", ["ipreservation", "ipr", "iprs"]),
    BgpConfiguration => ("BGPConfiguration", CALICO_API_VERSION, "BGPConfiguration", false, "bgpconfigurations", ["bgpconfiguration", "bgpconfig", "bgpconfigs"]),
    BgpPeer => ("BGPPeer", CALICO_API_VERSION, "BGPPeer", false, "bgppeers", ["bgppeer", "bgpp", "bgpps", "bp", "bps"]),
    FelixConfiguration => ("FelixConfiguration", CALICO_API_VERSION, "FelixConfiguration", false, "felixconfigurations", ["felixconfiguration", "felixconfig", "felixconfigs"]),
    Node => ("Node", CALICO_API_VERSION, "Node", false, "nodes", ["node", "no"]),
    Namespace => ("Namespace", "v1", "Namespace", false, "namespaces", ["namespace", "ns"]),
    ServiceAccount => ("ServiceAccount", "v1", "ServiceAccount", true, "serviceaccounts", ["serviceaccount", "sa"]),
    Secret => ("Secret", "v1", "Secret", true, "secrets", ["secret"]),
    Profile => ("Profile", CALICO_API_VERSION, "Profile", false, "profiles", ["profile", "pro", "pros"]),
    GlobalNetworkSet => ("GlobalNetworkSet", CALICO_API_VERSION, "GlobalNetworkSet", false, "globalnetworksets", ["globalnetworkset", "gns"]),
    NetworkSet => ("NetworkSet", CALICO_API_VERSION, "NetworkSet", true, "networksets", ["networkset", "netset", "netsets"]),
    GlobalNetworkPolicy => ("GlobalNetworkPolicy", CALICO_API_VERSION, "GlobalNetworkPolicy", false, "globalnetworkpolicies", ["globalnetworkpolicy", "gnp", "gnps"]),
    NetworkPolicy => ("NetworkPolicy", CALICO_API_VERSION, "NetworkPolicy", true, "networkpolicies", ["networkpolicy", "policy", "policies", "pol", "pols", "np", "nps", "caliconetworkpolicy", "caliconetworkpolicies", "cnp"]),
    StagedGlobalNetworkPolicy => ("StagedGlobalNetworkPolicy", CALICO_API_VERSION, "StagedGlobalNetworkPolicy", false, "stagedglobalnetworkpolicies", ["stagedglobalnetworkpolicy", "sgnp", "sgnps"]),
    StagedNetworkPolicy => ("StagedNetworkPolicy", CALICO_API_VERSION, "StagedNetworkPolicy", true, "stagednetworkpolicies", ["stagednetworkpolicy", "snp", "snps"]),
    K8sNetworkPolicy => ("NetworkPolicy", "networking.k8s.io/v1", "KubernetesNetworkPolicy", true, "networkpolicies.networking.k8s.io", ["networkpolicy.networking.k8s.io", "netpol", "netpols", "knp", "knps", "kubernetesnetworkpolicy", "kubernetesnetworkpolicies"]),
    HostEndpoint => ("HostEndpoint", CALICO_API_VERSION, "HostEndpoint", false, "hostendpoints", ["hostendpoint", "hep", "heps"]),
    Pod => ("Pod", "v1", "Pod", true, "pods", ["pod", "po"]),
    WorkloadEndpoint => ("WorkloadEndpoint", CALICO_API_VERSION, "WorkloadEndpoint", true, "workloadendpoints", ["workloadendpoint", "wep", "weps"]),
}

impl Kind {
    /// Resolves a name as typed on the command line (case-insensitive): plural, singular,
    /// short name, the `kind:` value, or the store name.
    pub fn from_cli_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL.iter().copied().find(|k| {
            let i = k.info();
            i.plural == lower
                || i.aliases.contains(&lower.as_str())
                || i.store_name.eq_ignore_ascii_case(name)
        })
    }

    /// Resolves a datastore key's kind name.
    pub fn from_store_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.info().store_name == name)
    }

    /// Resolves a document's `apiVersion` and `kind`.
    pub fn from_type(api_version: &str, kind: &str) -> Result<Self, String> {
        let mut versions = Vec::new();
        for k in Self::ALL {
            let i = k.info();
            if i.kind == kind {
                if i.api_version == api_version {
                    return Ok(*k);
                }
                versions.push(i.api_version);
            }
        }
        if versions.is_empty() {
            Err(format!(
                "unknown kind {kind:?} (tabby knows {})",
                Self::known_kinds()
            ))
        } else {
            Err(format!(
                "kind {kind} is not served at apiVersion {api_version:?}; use {}",
                versions.join(" or ")
            ))
        }
    }

    /// The `kind:` names tabby accepts, for error messages.
    pub fn known_kinds() -> String {
        let mut names: Vec<&str> = Self::ALL.iter().map(|k| k.info().kind).collect();
        names.sort_unstable();
        names.dedup();
        names.join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.info();
        if *self == Self::K8sNetworkPolicy {
            f.write_str("NetworkPolicy.networking.k8s.io")
        } else {
            f.write_str(i.kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names_resolve_like_kubectl_and_calicoctl() {
        assert_eq!(Kind::from_cli_name("gnp"), Some(Kind::GlobalNetworkPolicy));
        assert_eq!(Kind::from_cli_name("netpol"), Some(Kind::K8sNetworkPolicy));
        assert_eq!(Kind::from_cli_name("ippools"), Some(Kind::IpPool));
        assert_eq!(Kind::from_cli_name("IPPool"), Some(Kind::IpPool));
        assert_eq!(
            Kind::from_cli_name("networkpolicy"),
            Some(Kind::NetworkPolicy)
        );
        assert_eq!(Kind::from_cli_name("ns"), Some(Kind::Namespace));
        assert_eq!(Kind::from_cli_name("bogus"), None);
    }

    #[test]
    fn names_are_unambiguous() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            let i = k.info();
            for n in std::iter::once(&i.plural).chain(i.aliases) {
                assert!(seen.insert(*n), "{n} names two kinds");
            }
            assert!(
                seen.insert(i.store_name),
                "{} store name clashes",
                i.store_name
            );
        }
    }

    #[test]
    fn network_policy_resolves_by_api_group() {
        assert_eq!(
            Kind::from_type("projectcalico.org/v3", "NetworkPolicy"),
            Ok(Kind::NetworkPolicy)
        );
        assert_eq!(
            Kind::from_type("networking.k8s.io/v1", "NetworkPolicy"),
            Ok(Kind::K8sNetworkPolicy)
        );
        assert!(
            Kind::from_type("v1", "NetworkPolicy")
                .unwrap_err()
                .contains("projectcalico.org/v3")
        );
        assert!(
            Kind::from_type("v1", "Deployment")
                .unwrap_err()
                .contains("unknown kind")
        );
    }
}
