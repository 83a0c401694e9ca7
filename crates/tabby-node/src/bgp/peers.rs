//! Which BGP sessions this node wants, derived from Node, BGPConfiguration and BGPPeer resources
//! the way Calico's confd renders BIRD's configuration (pure: no sockets, no clock).
//!
//! - The speaker: AS from the Node's `spec.bgp.asNumber`, else BGPConfiguration `default`'s
//!   `asNumber` (64512); router ID from the node's IPv4 address; a route reflector when the
//!   Node has `routeReflectorClusterID`; port from `node.<name>`'s `listenPort`, else
//!   `default`'s, else 179.
//! - The mesh (`nodeToNodeMeshEnabled`, default true): every other node with BGP addresses,
//!   except route reflectors, which are never in the mesh. It is made one-directional as
//!   Calico does: a node is passive towards peers whose address string sorts after its own.
//! - BGPPeers: one applies to this node when its `node` names it, its `nodeSelector` matches
//!   its labels, or it has neither (a global peer). `peerIP` gives one neighbour;
//!   `peerSelector` gives the matching nodes, and the reverse peering is implied: a node that
//!   the `peerSelector` matches peers with the nodes the resource applies to. On a reflector,
//!   an iBGP neighbour that is not a reflector of the same cluster is a client.
//! - Prefix limits, tabby's own (Calico has none): a BGPPeer's `tabby.dev/max-prefixes`
//!   annotation limits each session it makes, BGPConfiguration `default`'s
//!   `tabby.dev/node-mesh-max-prefixes` each mesh session.
//! - One session per neighbour address; an explicit BGPPeer replaces a mesh session to the
//!   same address. As Calico (BIRD for IPv4, BIRD6 for IPv6), each session carries the family
//!   of its addresses: nodes that both have `ipv4Address` and `ipv6Address` peer twice, an
//!   IPv4 session for IPv4 routes and an IPv6 session for IPv6 routes.
//! - Passwords (TCP MD5): a BGPPeer's `password.secretKeyRef` and BGPConfiguration `default`'s
//!   `nodeMeshPassword.secretKeyRef` name a key of a Secret in the namespace the agent runs
//!   in, as in Calico (calico-node reads Secrets of its own namespace; default
//!   [`DEFAULT_SECRET_NAMESPACE`]). A missing Secret or key, or an unusable value, keeps the
//!   session from starting, with the reason as its error; a change of the value restarts it.

#[cfg(test)]
mod password_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tabby_bgp::wire::Family;
use tabby_bgp::{Md5Key, PeerConfig};
use tabby_model::bgp::{
    ANNOTATION_MAX_PREFIXES, ANNOTATION_NODE_MESH_MAX_PREFIXES, BgpConfigurationSpec, BgpPassword,
    BgpPeerSpec, max_prefixes, parse_peer_ip,
};
use tabby_model::node::NodeBgpSpec;
use tabby_model::secret::Secret;
use tabby_model::selector::Selector;
use tabby_model::values::{Labels, parse_duration_secs, parse_net};
use tabby_model::{Kind, Resource};

/// Calico's default AS.
pub const DEFAULT_ASN: u32 = 64512;
/// The BGP port.
pub const DEFAULT_PORT: u16 = 179;
/// Graceful restart time when `nodeMeshMaxRestartTime` is not set (BIRD's default).
const DEFAULT_RESTART_SECS: u16 = 120;

/// How a neighbour came to be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// The node-to-node mesh.
    Mesh,
    /// A BGPPeer with neither `node` nor `nodeSelector`.
    Global,
    /// A BGPPeer naming this node or selecting it.
    NodeSpecific,
    /// A route reflector this node is a client of (a BGPPeer `peerSelector` match).
    Reflector,
    /// A client of this node, which reflects for it.
    ReflectorClient,
}

impl PeerKind {
    /// The word `tabby node status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::Global => "global",
            Self::NodeSpecific => "node-specific",
            Self::Reflector => "reflector",
            Self::ReflectorClient => "reflector-client",
        }
    }
}

/// The speaker's own settings; a change restarts the speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerSettings {
    /// Our AS.
    pub asn: u32,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Set when this node is a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// Where to accept connections.
    pub listen: SocketAddr,
    /// Graceful restart time we advertise, in seconds.
    pub restart_time: u16,
}

/// One wanted neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPeer {
    /// Calico's protocol name (`Mesh_10_0_0_2`, `Node_...`, `Global_...`).
    pub name: String,
    /// How it came to be configured.
    pub kind: PeerKind,
    /// The session settings.
    pub config: PeerConfig,
    /// Why the session is not run though configured: one of its settings cannot be honoured
    /// (its password's Secret or key is missing, its prefix limit is unusable). `tabby node
    /// status` shows it as the peer's error rather than running the session without it.
    pub refused: Option<String>,
}

impl WantedPeer {
    /// Not run when its prefix limit annotation is unusable: running it without the limit
    /// the operator asked for would be worse than showing why it is down.
    fn refused_for(mut self, limit: &Result<Option<u32>, String>) -> Self {
        if let Err(why) = limit {
            self.refused.get_or_insert_with(|| why.clone());
        }
        self
    }
}

/// Where BGP password Secrets are read when the agent is not told otherwise: the namespace
/// the Tigera operator runs calico-node in (manifest installs use `kube-system`).
pub const DEFAULT_SECRET_NAMESPACE: &str = "calico-system";

/// Everything this node's speaker should be doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The speaker.
    pub speaker: SpeakerSettings,
    /// Neighbours by address.
    pub peers: BTreeMap<IpAddr, WantedPeer>,
}

/// Why this node cannot run BGP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No Node resource for this host.
    #[error("Node {0:?} does not exist in the datastore")]
    NoNode(String),
    /// The Node has no `spec.bgp`.
    #[error("Node {0:?} has no spec.bgp")]
    NoBgpSpec(String),
    /// Neither `spec.bgp.ipv4Address` nor `ipv6Address` is usable.
    #[error("Node {0:?}: spec.bgp has neither a valid ipv4Address nor ipv6Address")]
    NoAddress(String),
}

#[derive(Debug, Clone, PartialEq)]
struct NodeInfo {
    labels: Labels,
    bgp: Option<NodeBgpSpec>,
}

/// The BGP-relevant resources, kept current by the syncer.
#[derive(Debug, Clone, Default)]
pub struct BgpInputs {
    nodes: BTreeMap<String, NodeInfo>,
    configs: BTreeMap<String, BgpConfigurationSpec>,
    peers: BTreeMap<String, BgpPeerSpec>,
    /// Secrets by (namespace, name), for passwords; which namespace counts is the caller's.
    secrets: BTreeMap<(String, String), Secret>,
    /// Confirmed block affinities (tabby-ipam's `BlockAffinity` records) by (node, record
    /// name): the blocks each node originates.
    affinities: BTreeMap<(String, String), IpNet>,
    /// Prefix limit annotations by (kind, name): the limit, or why a stored value is unusable.
    limits: BTreeMap<(Kind, String), Result<u32, String>>,
    generation: u64,
}

/// A node's BGP addresses and identity, parsed.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

fn parse_addr(v: Option<&String>) -> Option<IpAddr> {
    let v = v?;
    parse_net(v)
        .map(|n| n.addr())
        .ok()
        .or_else(|| v.parse().ok())
}

impl Addrs {
    fn of(bgp: &NodeBgpSpec) -> Self {
        Self {
            v4: match parse_addr(bgp.ipv4_address.as_ref()) {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            },
            v6: match parse_addr(bgp.ipv6_address.as_ref()) {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            },
        }
    }

    /// The sessions' (local, remote) addresses between `self` and `other`: one per family
    /// both have.
    fn pairs(&self, other: &Self) -> Vec<(IpAddr, IpAddr)> {
        let v4 = self
            .v4
            .zip(other.v4)
            .map(|(a, b)| (IpAddr::V4(a), IpAddr::V4(b)));
        let v6 = self
            .v6
            .zip(other.v6)
            .map(|(a, b)| (IpAddr::V6(a), IpAddr::V6(b)));
        v4.into_iter().chain(v6).collect()
    }

    fn of_family(&self, like: IpAddr) -> Option<IpAddr> {
        match like {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }
}

/// The subnets of the node's BGP addresses (Calico writes them with their prefix length):
/// the directly connected networks a peer can share with it.
fn subnets_of(bgp: &NodeBgpSpec) -> Vec<IpNet> {
    [&bgp.ipv4_address, &bgp.ipv6_address]
        .into_iter()
        .flatten()
        .filter_map(|a| a.parse::<IpNet>().ok())
        .filter(|n| n.prefix_len() < n.max_prefix_len())
        .map(|n| n.trunc())
        .collect()
}

/// Calico's protocol name suffix: the address with `.` and `:` as `_`.
fn name_for(prefix: &str, addr: IpAddr) -> String {
    format!("{prefix}_{}", addr.to_string().replace(['.', ':'], "_"))
}

/// A stable router ID for a node without IPv4 (FNV-1a of its name).
fn hashed_router_id(name: &str) -> Ipv4Addr {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    Ipv4Addr::from(h)
}

/// Puts a resolved password on a session; returns why it cannot run when it did not resolve.
fn with_key(cfg: &mut PeerConfig, key: &Result<Option<Md5Key>, String>) -> Option<String> {
    match key {
        Ok(k) => {
            cfg.md5_key = k.clone();
            None
        }
        Err(why) => Some(why.clone()),
    }
}

fn selects(selector: &str, labels: &Labels) -> bool {
    // The model validated the selector on write; a stored one that no longer parses selects
    // nothing rather than everything.
    Selector::parse(selector).is_ok_and(|s| s.matches(labels))
}

impl BgpInputs {
    /// Takes in a resource; returns whether it is one of the kinds BGP reads.
    pub fn upsert(&mut self, r: &Resource) -> bool {
        let changed = match r {
            Resource::Node(o) => {
                let info = NodeInfo {
                    labels: o.metadata.labels.clone(),
                    bgp: o.spec.bgp.clone(),
                };
                self.nodes.insert(o.metadata.name.clone(), info.clone()) != Some(info)
            }
            Resource::BgpConfiguration(o) => {
                self.configs.insert(o.metadata.name.clone(), o.spec.clone()) != Some(o.spec.clone())
            }
            Resource::BgpPeer(o) => {
                self.peers.insert(o.metadata.name.clone(), o.spec.clone()) != Some(o.spec.clone())
            }
            Resource::Secret(o) => {
                let id = (r.namespace().to_owned(), o.metadata.name.clone());
                self.secrets.insert(id, o.clone()).as_ref() != Some(o)
            }
            _ => return false,
        };
        let changed = self.set_limit(r) || changed;
        if changed {
            self.generation += 1;
        }
        true
    }

    /// Keeps a BGP resource's prefix limit annotation; returns whether it changed.
    fn set_limit(&mut self, r: &Resource) -> bool {
        let annotation = match r.kind() {
            Kind::BgpPeer => ANNOTATION_MAX_PREFIXES,
            Kind::BgpConfiguration => ANNOTATION_NODE_MESH_MAX_PREFIXES,
            _ => return false,
        };
        let key = (r.kind(), r.name().to_owned());
        let limit = match max_prefixes(&r.meta().annotations, annotation) {
            Ok(None) => None,
            Ok(Some(n)) => Some(Ok(n)),
            // Validation refuses these on apply; one written around it shows in node status.
            Err(why) => Some(Err(format!(
                "{} {:?}: {annotation} {why}",
                r.kind(),
                r.name()
            ))),
        };
        match limit {
            Some(l) => self.limits.insert(key, l.clone()) != Some(l),
            None => self.limits.remove(&key).is_some(),
        }
    }

    /// The prefix limit of a resource's sessions, or why its annotation is unusable.
    fn limit(&self, kind: Kind, name: &str) -> Result<Option<u32>, String> {
        self.limits
            .get(&(kind, name.to_owned()))
            .cloned()
            .transpose()
    }

    /// Forgets a resource.
    pub fn remove(&mut self, kind: Kind, name: &str) {
        let gone = match kind {
            Kind::Node => self.nodes.remove(name).is_some(),
            Kind::BgpConfiguration => self.configs.remove(name).is_some(),
            Kind::BgpPeer => self.peers.remove(name).is_some(),
            _ => false,
        };
        self.limits.remove(&(kind, name.to_owned()));
        if gone {
            self.generation += 1;
        }
    }

    /// Forgets a resource of any scope (Secrets are namespaced).
    pub fn remove_key(&mut self, kind: Kind, namespace: &str, name: &str) {
        if kind != Kind::Secret {
            return self.remove(kind, name);
        }
        if self
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some()
        {
            self.generation += 1;
        }
    }

    /// The TCP MD5 key a password names, read from Secret `namespace`/name; the error says
    /// what is missing or wrong (never the value).
    fn md5_key(
        &self,
        password: Option<&BgpPassword>,
        namespace: &str,
    ) -> Result<Option<Md5Key>, String> {
        let Some(password) = password else {
            return Ok(None);
        };
        let Some(r) = &password.secret_key_ref else {
            return Err("password has no secretKeyRef".to_owned());
        };
        let what = format!("password Secret \"{namespace}/{}\"", r.name);
        let secret = self
            .secrets
            .get(&(namespace.to_owned(), r.name.clone()))
            .ok_or_else(|| format!("{what} not found"))?;
        if !secret.data.contains_key(&r.key) && !secret.string_data.contains_key(&r.key) {
            return Err(format!("{what} has no key {:?}", r.key));
        }
        let value = secret
            .value(&r.key)
            .ok_or_else(|| format!("{what} key {:?} is not valid base64", r.key))?;
        match value.len() {
            0 => Err(format!("{what} key {:?} is empty", r.key)),
            n if n > tabby_bgp::MD5_MAX_KEY_LEN => Err(format!(
                "{what} key {:?} is {n} bytes; TCP MD5 takes at most {}",
                r.key,
                tabby_bgp::MD5_MAX_KEY_LEN
            )),
            _ => Ok(Md5Key::new(value)),
        }
    }

    /// Takes in a stored IPAM record; returns whether it is one BGP reads (a block
    /// affinity). An affinity that is not confirmed, or cannot be read, counts as absent, as
    /// Calico treats pending ones.
    pub fn upsert_ipam(&mut self, entry: &tabby_store::Entry) -> bool {
        if entry.key.kind != tabby_ipam::records::AFFINITY_KIND {
            return false;
        }
        let id = (entry.key.namespace.clone(), entry.key.name.clone());
        let block = match serde_json::from_str::<tabby_ipam::records::Affinity>(&entry.value) {
            Ok(a) if a.state == "confirmed" && a.node == entry.key.namespace => Some(a.cidr),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(key = %entry.key, error = %err, "unreadable block affinity; not advertising it");
                None
            }
        };
        let changed = match block {
            Some(b) => self.affinities.insert(id, b) != Some(b),
            None => self.affinities.remove(&id).is_some(),
        };
        if changed {
            self.generation += 1;
        }
        true
    }

    /// Forgets a stored IPAM record; returns whether it is one BGP reads.
    pub fn remove_ipam(&mut self, key: &tabby_store::Key) -> bool {
        if key.kind != tabby_ipam::records::AFFINITY_KIND {
            return false;
        }
        if self
            .affinities
            .remove(&(key.namespace.clone(), key.name.clone()))
            .is_some()
        {
            self.generation += 1;
        }
        true
    }

    /// The blocks `host` holds a confirmed affinity for.
    pub fn blocks_of(&self, host: &str) -> BTreeSet<IpNet> {
        self.affinities
            .iter()
            .filter(|((node, _), _)| node == host)
            .map(|(_, b)| *b)
            .collect()
    }

    /// Starts this generation after `previous` (a fresh listing replacing older inputs).
    pub(crate) fn bump_past(&mut self, previous: u64) {
        self.generation += previous + 1;
    }

    /// Grows on every change that matters, so that callers re-derive only when needed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the host's Node has a `spec.bgp` (Calico runs BGP on such nodes).
    pub fn has_bgp_spec(&self, host: &str) -> bool {
        self.nodes.get(host).is_some_and(|n| n.bgp.is_some())
    }

    fn cluster_asn(&self) -> u32 {
        self.configs
            .get("default")
            .and_then(|c| c.as_number)
            .map_or(DEFAULT_ASN, |a| a.0)
    }

    fn node_asn(&self, bgp: &NodeBgpSpec) -> u32 {
        bgp.as_number.map_or_else(|| self.cluster_asn(), |a| a.0)
    }

    /// A node-level setting from `node.<name>`, else from `default`.
    fn setting<T>(
        &self,
        node: &str,
        get: impl Fn(&BgpConfigurationSpec) -> Option<T>,
    ) -> Option<T> {
        self.configs
            .get(&format!("node.{node}"))
            .and_then(&get)
            .or_else(|| self.configs.get("default").and_then(&get))
    }

    /// Every node with BGP addresses, once per session a node with `mine` would have with
    /// it (one per family both have): (name, node, its `spec.bgp`, (local, remote)).
    fn sessions_with(
        &self,
        mine: Addrs,
    ) -> impl Iterator<Item = (&String, &NodeInfo, &NodeBgpSpec, (IpAddr, IpAddr))> {
        self.nodes.iter().flat_map(move |(name, node)| {
            node.bgp.iter().flat_map(move |bgp| {
                mine.pairs(&Addrs::of(bgp))
                    .into_iter()
                    .map(move |pair| (name, node, bgp, pair))
            })
        })
    }

    fn port_of(&self, node: &str) -> u16 {
        self.setting(node, |c| c.listen_port)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_PORT)
    }

    /// The sessions `host` wants, with passwords from Secrets in [`DEFAULT_SECRET_NAMESPACE`].
    pub fn desired(&self, host: &str) -> Result<Desired, Unavailable> {
        self.desired_with_secrets(host, DEFAULT_SECRET_NAMESPACE)
    }

    /// The sessions `host` wants, with passwords from Secrets in `secret_namespace`.
    pub fn desired_with_secrets(
        &self,
        host: &str,
        secret_namespace: &str,
    ) -> Result<Desired, Unavailable> {
        let me = self
            .nodes
            .get(host)
            .ok_or_else(|| Unavailable::NoNode(host.to_owned()))?;
        let my_bgp = me
            .bgp
            .as_ref()
            .ok_or_else(|| Unavailable::NoBgpSpec(host.to_owned()))?;
        let my_addrs = Addrs::of(my_bgp);
        let my_subnets = subnets_of(my_bgp);
        if my_addrs.v4.is_none() && my_addrs.v6.is_none() {
            return Err(Unavailable::NoAddress(host.to_owned()));
        }
        let my_asn = self.node_asn(my_bgp);
        let cluster_id = my_bgp
            .route_reflector_cluster_id
            .as_deref()
            .and_then(|c| c.parse::<Ipv4Addr>().ok());
        let port = self.port_of(host);
        let bind_node_ip = self.setting(host, |c| c.bind_mode.clone()).as_deref() == Some("NodeIP");
        let listen_ip = match (bind_node_ip, my_addrs.v4, my_addrs.v6) {
            (true, Some(v4), _) => IpAddr::V4(v4),
            (true, None, Some(v6)) => IpAddr::V6(v6),
            // `[::]` takes IPv4 too on Linux.
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let restart_time = self
            .configs
            .get("default")
            .and_then(|c| c.node_mesh_max_restart_time.as_deref())
            .and_then(parse_duration_secs)
            .map_or(DEFAULT_RESTART_SECS, |s| s.clamp(0.0, 4095.0) as u16);
        let speaker = SpeakerSettings {
            asn: my_asn,
            router_id: my_addrs.v4.unwrap_or_else(|| hashed_router_id(host)),
            cluster_id,
            listen: SocketAddr::new(listen_ip, port),
            restart_time,
        };

        let base = |local: IpAddr, remote: IpAddr, asn: u32, port: u16| {
            let mut cfg = PeerConfig::new(remote, asn);
            cfg.port = port;
            cfg.local_addr = Some(local);
            cfg.next_hop_v4 = my_addrs.v4;
            cfg.next_hop_v6 = my_addrs.v6;
            cfg.families = Some(vec![match remote {
                IpAddr::V4(_) => Family::IPV4_UNICAST,
                IpAddr::V6(_) => Family::IPV6_UNICAST,
            }]);
            cfg.shared_subnets = my_subnets
                .iter()
                .filter(|n| n.contains(&remote))
                .copied()
                .collect();
            cfg
        };

        let mut peers = BTreeMap::new();
        let mesh = self
            .configs
            .get("default")
            .and_then(|c| c.node_to_node_mesh_enabled)
            .unwrap_or(true);
        let mesh_key = self.md5_key(
            self.configs
                .get("default")
                .and_then(|c| c.node_mesh_password.as_ref()),
            secret_namespace,
        );
        let mesh_limit = self.limit(Kind::BgpConfiguration, "default");
        if mesh && cluster_id.is_none() {
            for (name, _, bgp, (local, remote)) in self.sessions_with(my_addrs) {
                if name == host || bgp.route_reflector_cluster_id.is_some() {
                    continue;
                }
                let mut cfg = base(local, remote, self.node_asn(bgp), self.port_of(name));
                // Calico compares the address strings: the "greater" side connects.
                cfg.passive = remote.to_string() > local.to_string();
                cfg.max_prefixes = mesh_limit.clone().ok().flatten();
                let refused = with_key(&mut cfg, &mesh_key);
                peers.insert(
                    remote,
                    WantedPeer {
                        name: name_for("Mesh", remote),
                        kind: PeerKind::Mesh,
                        config: cfg,
                        refused,
                    }
                    .refused_for(&mesh_limit),
                );
            }
        }

        for (resource, spec) in &self.peers {
            let limit = self.limit(Kind::BgpPeer, resource);
            let applies = |node: &str, labels: &Labels| match (&spec.node, &spec.node_selector) {
                (Some(n), _) => n == node,
                (None, Some(sel)) => selects(sel, labels),
                (None, None) => true,
            };
            let specific = spec.node.is_some() || spec.node_selector.is_some();
            let prefix = if specific { "Node" } else { "Global" };
            let here = applies(host, &me.labels);
            let next_hop_self = spec.next_hop_mode.as_deref() == Some("Self");
            let next_hop_keep = spec.keep_original_next_hop == Some(true)
                || spec.next_hop_mode.as_deref() == Some("Keep");
            let use_node_ip = spec.source_address.as_deref() != Some("None");
            let key = self.md5_key(spec.password.as_ref(), secret_namespace);
            if let Some(peer_ip) = &spec.peer_ip {
                let Some((remote, remote_port)) = parse_peer_ip(peer_ip) else {
                    continue;
                };
                let Some(local) = my_addrs.of_family(remote) else {
                    continue;
                };
                if !here || remote == local {
                    continue;
                }
                let asn = spec.as_number.map_or(my_asn, |a| a.0);
                let mut cfg = base(local, remote, asn, remote_port.unwrap_or(DEFAULT_PORT));
                cfg.local_addr = use_node_ip.then_some(local);
                cfg.next_hop_self = next_hop_self;
                cfg.next_hop_keep = next_hop_keep;
                cfg.rr_client = cluster_id.is_some() && asn == my_asn;
                cfg.max_prefixes = limit.clone().ok().flatten();
                let kind = if cfg.rr_client {
                    PeerKind::ReflectorClient
                } else if specific {
                    PeerKind::NodeSpecific
                } else {
                    PeerKind::Global
                };
                let refused = with_key(&mut cfg, &key);
                peers.insert(
                    remote,
                    WantedPeer {
                        name: name_for(prefix, remote),
                        kind,
                        config: cfg,
                        refused,
                    }
                    .refused_for(&limit),
                );
            } else if let Some(peer_sel) = &spec.peer_selector {
                let matched_by_peer_side = selects(peer_sel, &me.labels);
                for (name, node, bgp, (local, remote)) in self.sessions_with(my_addrs) {
                    if name == host {
                        continue;
                    }
                    let forward = here && selects(peer_sel, &node.labels);
                    let reverse = matched_by_peer_side && applies(name, &node.labels);
                    if !forward && !reverse {
                        continue;
                    }
                    let asn = self.node_asn(bgp);
                    let their_cluster = bgp
                        .route_reflector_cluster_id
                        .as_deref()
                        .and_then(|c| c.parse::<Ipv4Addr>().ok());
                    let mut cfg = base(local, remote, asn, self.port_of(name));
                    cfg.local_addr = use_node_ip.then_some(local);
                    cfg.next_hop_self = next_hop_self;
                    cfg.next_hop_keep = next_hop_keep;
                    cfg.rr_client =
                        cluster_id.is_some() && asn == my_asn && their_cluster != cluster_id;
                    cfg.max_prefixes = limit.clone().ok().flatten();
                    let kind = if cfg.rr_client {
                        PeerKind::ReflectorClient
                    } else if their_cluster.is_some() {
                        PeerKind::Reflector
                    } else if specific {
                        PeerKind::NodeSpecific
                    } else {
                        PeerKind::Global
                    };
                    let refused = with_key(&mut cfg, &key);
                    peers.insert(
                        remote,
                        WantedPeer {
                            name: name_for(prefix, remote),
                            kind,
                            config: cfg,
                            refused,
                        }
                        .refused_for(&limit),
                    );
                }
            }
        }
        Ok(Desired { speaker, peers })
    }
}
