//! How a lab's nodes learn where the other nodes' workloads are: from the datastore (every
//! agent programs routes through the other nodes' fabric addresses), or over BGP as Calico
//! does it (a full iBGP mesh on AS 64512, or route reflectors, and optionally a top-of-rack
//! router outside the cluster, see [`crate::tor`]).
//!
//! This module writes the BGP resources (Node `spec.bgp`, BGPConfiguration, BGPPeer), waits
//! for sessions and for learned routes, and reads each agent's BGP status. It must not speak
//! BGP itself: that is the agents' job.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tabby_dataplane::netns::NETNS_DIR;
use tabby_dataplane::{Netlink as _, RtNetlink};

use crate::fabric::runtime;
use crate::state::{LabState, NodeState};
use crate::tor::TorDaemon;
use crate::{Lab, LabError, UpOptions, agent_http};

/// The cluster's AS (Calico's default).
pub const CLUSTER_AS: u32 = 64512;
/// The route reflectors' cluster ID (the value Calico's documentation uses).
const CLUSTER_ID: &str = "244.0.0.1";
/// The label that marks a route reflector, as in Calico's documentation.
const REFLECTOR_LABEL: &str = "route-reflector";

/// Who programs routes to other nodes' workloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Agents peer over BGP and program learned routes.
    Bgp,
    /// Agents program routes from the datastore's Nodes (labs from before BGP are this).
    #[default]
    Datastore,
}

impl Routing {
    /// The agent's `--routing` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bgp => "bgp",
            Self::Datastore => "datastore",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Routing {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "bgp" => Ok(Self::Bgp),
            "datastore" => Ok(Self::Datastore),
            other => Err(LabError::Input(vec![format!(
                "--routing {other:?}: expected bgp or datastore"
            )])),
        }
    }
}

/// Checks the routing options before anything is built.
pub(crate) fn check(opts: &UpOptions) -> Result<(), LabError> {
    let mut problems = Vec::new();
    if opts.routing == Routing::Datastore {
        if opts.route_reflectors > 0 {
            problems.push(format!(
                "--route-reflectors {}: route reflectors need --routing bgp",
                opts.route_reflectors
            ));
        }
        if let Some(tor) = opts.tor {
            problems.push(format!(
                "--tor {tor}: a top-of-rack router needs --routing bgp"
            ));
        }
    }
    if opts.route_reflectors > opts.nodes {
        problems.push(format!(
            "--route-reflectors {}: the lab has only {} nodes (the first K nodes become reflectors)",
            opts.route_reflectors, opts.nodes
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Input(problems))
    }
}

/// The Node resource of `node` (0-based `index`): its fabric address, and under BGP its
/// `spec.bgp` and, for the first `route_reflectors` nodes, the reflector's cluster ID and label.
pub(crate) fn node_yaml(state: &LabState, index: usize, prefix: u8, prefix_v6: u8) -> String {
    let node = &state.nodes[index];
    let reflector = state.routing == Routing::Bgp && index < state.route_reflectors;
    let labels = if reflector {
        format!("\n  labels: {{{REFLECTOR_LABEL}: 'true'}}")
    } else {
        String::new()
    };
    let v6 = node
        .address_v6
        .map(|a| format!(", {{address: '{a}/{prefix_v6}', type: InternalIP}}"))
        .unwrap_or_default();
    let mut text = format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}{labels}\nspec:\n  addresses: [{{address: {}/{prefix}, type: InternalIP}}{v6}]\n",
        node.name, node.address
    );
    if state.routing == Routing::Bgp {
        text.push_str(&format!("  bgp: {{ipv4Address: {}/{prefix}", node.address));
        if let Some(a) = node.address_v6 {
            text.push_str(&format!(", ipv6Address: '{a}/{prefix_v6}'"));
        }
        if reflector {
            text.push_str(&format!(", routeReflectorClusterID: {CLUSTER_ID}"));
        }
        text.push_str("}\n");
    }
    text
}

/// The cluster-wide BGP resources: the BGPConfiguration (mesh on unless there are
/// reflectors), the reflectors' BGPPeer and the top-of-rack router's global BGPPeer.
pub(crate) fn cluster_yaml(state: &LabState) -> String {
    if state.routing != Routing::Bgp {
        return String::new();
    }
    let mesh = state.route_reflectors == 0;
    let mut text = format!(
        "---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{asNumber: {CLUSTER_AS}, nodeToNodeMeshEnabled: {mesh}, logSeverityScreen: Info}}\n"
    );
    if !mesh {
        // Calico's documented pattern: every node peers with every reflector (the
        // reflectors with each other too), and the mesh is off.
        text.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: peer-with-route-reflectors}}\nspec: {{nodeSelector: all(), peerSelector: {REFLECTOR_LABEL} == 'true'}}\n"
        ));
    }
    if let Some(tor) = &state.tor {
        text.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{peerIP: {}, asNumber: {}}}\n",
            tor.address, tor.asn
        ));
        // As with Calico, IPv6 routes go over a session between IPv6 addresses.
        if let Some(v6) = tor.address_v6 {
            text.push_str(&format!(
                "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: tor-v6}}\nspec: {{peerIP: '{v6}', asNumber: {}}}\n",
                tor.asn
            ));
        }
    }
    text
}

/// The longest `lab up` (and a restarted agent) waits for the BGP sessions once every agent
/// is ready. Agents start together; a connection refused because its peer did not listen yet
/// is retried on the agents' connect retry timer (5 s, jittered), so sessions are normally
/// Established within a few seconds; the margin is for a loaded machine.
pub(crate) const SESSIONS_UP: Duration = Duration::from_secs(60);

/// The expected peers of each node, for waiting until the sessions are up: the mesh (every
/// other node), or the reflectors (a reflector also has every other node), plus the ToR.
fn expected_peers(state: &LabState, index: usize) -> Vec<IpAddr> {
    let k = state.route_reflectors;
    let mut peers: Vec<IpAddr> = state
        .nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != index && (k == 0 || index < k || *j < k))
        .flat_map(|(_, n)| node_addresses(n))
        .collect();
    if let Some(tor) = &state.tor {
        peers.push(IpAddr::V4(tor.address));
        peers.extend(tor.address_v6.map(IpAddr::V6));
    }
    peers
}

/// A node's fabric addresses, IPv4 first: one BGP session each with every peer (Calico's
/// BIRD and BIRD6).
fn node_addresses(n: &NodeState) -> impl Iterator<Item = IpAddr> {
    std::iter::once(IpAddr::V4(n.address)).chain(n.address_v6.map(IpAddr::V6))
}

/// A node's fabric address of `addr`'s family.
fn address_like(n: &NodeState, addr: IpAddr) -> Option<IpAddr> {
    node_addresses(n).find(|a| a.is_ipv4() == addr.is_ipv4())
}

/// One neighbour as a node's agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenPeer {
    address: IpAddr,
    state: String,
    last_error: Option<String>,
}

/// The peers of a node's agent and their states, from its `/status` (`None`: it does not
/// answer, or runs no BGP speaker).
fn peer_states(node: &NodeState) -> Option<Vec<SeenPeer>> {
    let (_, body) = agent_http::get(&Path::new(NETNS_DIR).join(&node.netns), "/status")?;
    parse_peers(&body)
}

fn parse_peers(body: &str) -> Option<Vec<SeenPeer>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let peers = v.get("bgp")?.get("peers")?.as_array()?;
    Some(
        peers
            .iter()
            .filter_map(|p| {
                Some(SeenPeer {
                    address: p.get("address")?.as_str()?.parse().ok()?,
                    state: p.get("state")?.as_str()?.to_owned(),
                    last_error: p
                        .get("last_error")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect(),
    )
}

/// What is missing for `want` to be Established, as seen (`None`: nothing).
fn not_up(want: &[IpAddr], seen: Option<&[SeenPeer]>) -> Option<String> {
    let Some(seen) = seen else {
        return Some("its agent reports no BGP speaker".to_owned());
    };
    let missing: Vec<String> = want
        .iter()
        .filter_map(|a| match seen.iter().find(|p| p.address == *a) {
            Some(p) if p.state == "Established" => None,
            Some(p) => Some(match &p.last_error {
                Some(e) => format!("{a} ({}, last error: {e})", p.state),
                None => format!("{a} ({})", p.state),
            }),
            None => Some(format!("{a} (not configured)")),
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Waits until every node has an Established session with every peer it should have; on
/// timeout the error names, per node, each peer that is not up, its state and last error.
pub(crate) fn wait_sessions(state: &LabState, timeout: Duration) -> Result<(), LabError> {
    if state.routing != Routing::Bgp {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..state.nodes.len()).collect();
    loop {
        let mut problems = Vec::new();
        pending.retain(|&i| {
            let node = &state.nodes[i];
            match not_up(&expected_peers(state, i), peer_states(node).as_deref()) {
                Some(what) => {
                    problems.push(format!(
                        "{}: {what} (its log: {})",
                        node.name,
                        node.log.display()
                    ));
                    true
                }
                None => false,
            }
        });
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                what: "the BGP sessions".to_owned(),
                reason: format!(
                    "not Established after {timeout:?}: {} (`tabby lab status` shows every peer)",
                    problems.join("; ")
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway of the most specific tabby route (proto 116) covering `addr` in a node's
/// kernel, if any (`Some(None)`: a route without a gateway, a local workload's).
fn tabby_route_to(node: &NodeState, addr: IpAddr) -> Result<Option<Option<IpAddr>>, LabError> {
    let rt = runtime()?;
    let routes = rt.block_on(async {
        let nl = RtNetlink::in_netns(&Path::new(NETNS_DIR).join(&node.netns))
            .map_err(LabError::netlink(format!("{} netlink", node.name)))?;
        nl.tabby_routes()
            .await
            .map_err(LabError::netlink(format!("{} routes", node.name)))
    })?;
    Ok(routes
        .into_iter()
        .filter(|r| r.dst.contains(&addr))
        .max_by_key(|r| r.dst.prefix_len())
        .map(|r| r.gateway))
}

impl Lab {
    /// Under BGP: waits until every node's kernel routes every other node's workload
    /// addresses through that node (learned routes, proto 116). Datastore labs: at once.
    pub fn wait_routes(&self, timeout: Duration) -> Result<(), LabError> {
        if self.state.routing != Routing::Bgp {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        for node in &self.state.nodes {
            for w in self
                .state
                .workloads
                .values()
                .filter(|w| w.node != node.name)
            {
                let Some(host) = self.state.nodes.iter().find(|n| n.name == w.node) else {
                    continue;
                };
                for addr in &w.addresses {
                    let Some(gateway) = address_like(host, *addr) else {
                        continue;
                    };
                    let want = Some(gateway);
                    loop {
                        let via = tabby_route_to(node, *addr)?;
                        if via == Some(want) {
                            break;
                        }
                        if Instant::now() >= deadline {
                            return Err(LabError::NotReady {
                                what: format!("the route to {} on {}", w.key(), node.name),
                                reason: format!(
                                    "{addr} is not routed via {} ({}) after {timeout:?} ({}); its log: {}",
                                    gateway,
                                    host.name,
                                    match via {
                                        None => "no tabby route".to_owned(),
                                        Some(None) => "a route without a gateway".to_owned(),
                                        Some(Some(g)) => format!("routed via {g}"),
                                    },
                                    node.log.display()
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
        if let Some(tor) = &self.state.tor {
            // Every node routes the router's outside networks through it (learned over eBGP).
            for node in &self.state.nodes {
                for (outside, via) in crate::tor::outside_routes(tor) {
                    loop {
                        let got = tabby_route_to(node, outside)?;
                        if got == Some(Some(via)) {
                            break;
                        }
                        if Instant::now() >= deadline {
                            return Err(LabError::NotReady {
                                what: format!("the route to the outside on {}", node.name),
                                reason: format!(
                                    "{outside} is not routed via the router ({via}) after {timeout:?} ({got:?}); its log: {}",
                                    node.log.display()
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            // The router must send a workload's traffic straight to its host: nodes pass on
            // the routes they learned from each other with the originating node as a
            // third-party next hop (all share the fabric), as Calico's BIRD does.
            for w in self.state.workloads.values() {
                let Some(host) = self.state.nodes.iter().find(|n| n.name == w.node) else {
                    continue;
                };
                for addr in &w.addresses {
                    let Some(want) = address_like(host, *addr) else {
                        continue;
                    };
                    loop {
                        let via = crate::tor::next_hops(tor, *addr)?;
                        if !via.is_empty() && via.iter().all(|g| *g == want) {
                            break;
                        }
                        if Instant::now() >= deadline {
                            return Err(LabError::NotReady {
                                what: format!("the route to {} on the top-of-rack router", w.key()),
                                reason: format!(
                                    "{addr} is not routed via its host {} ({want}) after {timeout:?} ({}); its log: {}",
                                    host.name,
                                    if via.is_empty() {
                                        "no route".to_owned()
                                    } else {
                                        format!("via {via:?}")
                                    },
                                    tor.log.display()
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        Ok(())
    }

    /// The top-of-rack router's own view of its BGP sessions (its daemon's CLI output), if
    /// the lab has one.
    pub fn tor_sessions(&self) -> Result<Option<String>, LabError> {
        match &self.state.tor {
            Some(t) => crate::tor::sessions(&self.state.name, t, &self.dir()).map(Some),
            None => Ok(None),
        }
    }

    /// The next hops of the top-of-rack router's kernel route to `addr` (none without a
    /// router, or without a route).
    pub fn tor_next_hops(&self, addr: IpAddr) -> Result<Vec<IpAddr>, LabError> {
        match &self.state.tor {
            Some(t) => crate::tor::next_hops(t, addr),
            None => Ok(Vec::new()),
        }
    }

    /// The next hop a node's kernel uses for `addr` by tabby's routes (proto 116): `None`
    /// when no tabby route covers it (or it is a local workload's, without a gateway).
    pub fn tabby_next_hop(&self, node: &str, addr: IpAddr) -> Result<Option<IpAddr>, LabError> {
        Ok(tabby_route_to(self.node(node)?, addr)?.flatten())
    }

    /// Each node's agent status (`GET /status`, the JSON `tabby node status` reads), in node
    /// order; `None` for an agent that does not answer.
    pub fn agent_status(&self) -> Vec<(String, Option<String>)> {
        self.state
            .nodes
            .iter()
            .map(|n| {
                let body = agent_http::get(&Path::new(NETNS_DIR).join(&n.netns), "/status")
                    .and_then(|(code, body)| (code == 200).then_some(body));
                (n.name.clone(), body)
            })
            .collect()
    }
}

/// The `--tor` value as the lab states it.
impl fmt::Display for TorDaemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
