//! How a lab's nodes learn where the other nodes' workloads are: from the datastore (every
//! agent programs routes through the other nodes' fabric addresses), or over BGP as Calico
//! does it (a full iBGP mesh on AS 64512, or route reflectors, and optionally a top-of-rack
//! router outside the cluster, see [`crate::tor`]).
//!
//! This module writes the BGP resources (Node `spec.bgp`, BGPConfiguration, BGPPeer), waits
//! for sessions and for learned routes, and reads each agent's BGP status. It must not speak
//! BGP itself: that is the agents' job.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
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
pub(crate) fn node_yaml(state: &LabState, index: usize, prefix: u8) -> String {
    let node = &state.nodes[index];
    let reflector = state.routing == Routing::Bgp && index < state.route_reflectors;
    let labels = if reflector {
        format!("\n  labels: {{{REFLECTOR_LABEL}: 'true'}}")
    } else {
        String::new()
    };
    let mut text = format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}{labels}\nspec:\n  addresses: [{{address: {}/{prefix}, type: InternalIP}}]\n",
        node.name, node.address
    );
    if state.routing == Routing::Bgp {
        text.push_str(&format!("  bgp: {{ipv4Address: {}/{prefix}", node.address));
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
    }
    text
}

/// Whether agents must start one at a time, each once the one before is ready. An agent
/// whose first connection attempts are refused (its peer is not listening yet) waits 5, 10,
/// 20, then 30 s before trying again, so on a busy machine a mesh could take longer than a
/// minute. And reflectors and their clients both connect to each other (mesh peers do not:
/// the greater address waits); when both connections meet, the agents' collision handling
/// closes both and both retry in step, for ever. An agent that starts after its peers are
/// ready connects at once and wins.
pub(crate) fn start_one_by_one(state: &LabState) -> bool {
    state.routing == Routing::Bgp
}

/// How long `lab up` waits for the sessions once every agent is ready.
pub(crate) const SESSIONS_UP: Duration = Duration::from_secs(60);

/// The expected peers of each node, for waiting until the sessions are up: the mesh (every
/// other node), or the reflectors (a reflector also has every other node), plus the ToR.
fn expected_peers(state: &LabState, index: usize) -> Vec<Ipv4Addr> {
    let k = state.route_reflectors;
    let mut peers: Vec<Ipv4Addr> = state
        .nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != index && (k == 0 || index < k || *j < k))
        .map(|(_, n)| n.address)
        .collect();
    if let Some(tor) = &state.tor {
        peers.push(tor.address);
    }
    peers
}

/// The peers of a node's agent and their states, from its `/status`.
fn peer_states(node: &NodeState) -> Option<Vec<(IpAddr, String)>> {
    let (_, body) = agent_http::get(&Path::new(NETNS_DIR).join(&node.netns), "/status")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let peers = v.get("bgp")?.get("peers")?.as_array()?;
    Some(
        peers
            .iter()
            .filter_map(|p| {
                let addr = p.get("address")?.as_str()?.parse().ok()?;
                let state = p.get("state")?.as_str()?.to_owned();
                Some((addr, state))
            })
            .collect(),
    )
}

/// Waits until every node has an Established session with every peer it should have.
pub(crate) fn wait_sessions(state: &LabState, timeout: Duration) -> Result<(), LabError> {
    if state.routing != Routing::Bgp {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    for (i, node) in state.nodes.iter().enumerate() {
        let want = expected_peers(state, i);
        loop {
            let seen = peer_states(node).unwrap_or_default();
            let missing: Vec<String> = want
                .iter()
                .filter(|a| {
                    !seen
                        .iter()
                        .any(|(addr, st)| *addr == IpAddr::V4(**a) && st == "Established")
                })
                .map(ToString::to_string)
                .collect();
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::NotReady {
                    what: format!("the BGP sessions of {}", node.name),
                    reason: format!(
                        "not Established after {timeout:?} with {} (`tabby lab status` shows them); its log: {}",
                        missing.join(", "),
                        node.log.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
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
                for addr in w.addresses.iter().filter(|a| a.is_ipv4()) {
                    let want = Some(IpAddr::V4(host.address));
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
                                    host.address,
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
            // Any node will do as the router's next hop: every node advertises every workload
            // route it knows to its eBGP peers, with itself as next hop (see the README).
            let nodes: Vec<IpAddr> = self
                .state
                .nodes
                .iter()
                .map(|n| IpAddr::V4(n.address))
                .collect();
            for w in self.state.workloads.values() {
                let Some(host) = self.state.nodes.iter().find(|n| n.name == w.node) else {
                    continue;
                };
                for addr in w.addresses.iter().filter(|a| a.is_ipv4()) {
                    loop {
                        let via = crate::tor::next_hops(tor, *addr)?;
                        if !via.is_empty() && via.iter().all(|g| nodes.contains(g)) {
                            break;
                        }
                        if Instant::now() >= deadline {
                            return Err(LabError::NotReady {
                                what: format!("the route to {} on the top-of-rack router", w.key()),
                                reason: format!(
                                    "{addr} (on {}) is not routed via a node after {timeout:?} ({}); its log: {}",
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
