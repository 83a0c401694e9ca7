//! What `tabby node status` shows: the agent publishes it on its local HTTP endpoint as JSON
//! (`GET /status`), and the CLI reads these same types back.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tabby_bgp::driver::Handle;
use tabby_bgp::{PeerError, SessionState};
use tabby_model::bgp::{ANNOTATION_MAX_PREFIXES, ANNOTATION_NODE_MESH_MAX_PREFIXES};

use crate::bgp::peers::{PeerKind, SpeakerSettings, WantedPeer};

/// How long a status request waits for the speaker.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's routing status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node name.
    pub node: String,
    /// `bgp` or `datastore`: who programs routes to other nodes' workloads.
    pub routing: String,
    /// Why BGP is not running, when it should or could be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The speaker, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpStatus>,
}

/// The speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: String,
    /// Set on a route reflector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Where it accepts connections.
    pub listen: String,
    /// Prefixes this node originates (its workloads' routes).
    pub originated: usize,
    /// Learned routes handed to the kernel.
    pub learned: usize,
    /// Every neighbour.
    pub peers: Vec<PeerReport>,
    /// TCP MD5 drops counted by the kernel in the agent's network namespace, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_md5: Option<Md5Drops>,
}

/// TCP segments the kernel dropped over TCP MD5 in this network namespace since it was made
/// (`/proc/net/netstat` TcpExt; counted for all peers together). A password mismatch is
/// otherwise silent: the peer just never answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Md5Drops {
    /// Signed with another key than ours (`TCPMD5Failure`): the passwords differ.
    pub wrong: u64,
    /// Unsigned from a peer we have a key for (`TCPMD5NotFound`): it has no password set.
    pub missing: u64,
    /// Signed from a peer we have no key for (`TCPMD5Unexpected`): only it has a password.
    pub unexpected: u64,
}

impl Md5Drops {
    /// The counters in `/proc/net/netstat` text; `None` when all are zero or absent.
    pub fn parse(netstat: &str) -> Option<Self> {
        let mut lines = netstat.lines();
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            let (Some(names), Some(values)) = (
                names.strip_prefix("TcpExt:"),
                values.strip_prefix("TcpExt:"),
            ) else {
                continue;
            };
            let counters: BTreeMap<&str, u64> = names
                .split_whitespace()
                .zip(values.split_whitespace())
                .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
                .collect();
            let get = |n: &str| counters.get(n).copied().unwrap_or(0);
            let drops = Self {
                wrong: get("TCPMD5Failure"),
                missing: get("TCPMD5NotFound"),
                unexpected: get("TCPMD5Unexpected"),
            };
            return (drops.wrong + drops.missing + drops.unexpected > 0).then_some(drops);
        }
        None
    }

    /// The counters of the caller's network namespace.
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Calico's protocol name (`Mesh_10_0_0_2`).
    pub name: String,
    /// Its address.
    pub address: IpAddr,
    /// Its AS.
    pub asn: u32,
    /// How it came to be configured.
    pub kind: PeerKind,
    /// Session state (RFC 4271 names: Idle, Connect, Active, OpenSent, OpenConfirm,
    /// Established).
    pub state: String,
    /// Seconds in that state.
    pub since_secs: u64,
    /// Its BGP identifier, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Prefixes held from it.
    pub prefixes_received: usize,
    /// The most prefixes accepted from it (the prefix limit annotation), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<u32>,
    /// Prefixes advertised to it.
    pub prefixes_advertised: usize,
    /// Why the last session ended or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set while the session is held down (for instance a prefix limit was exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// Seconds until a session held down or damped (a flapping peer) is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
    /// Sessions lost after being Established.
    pub flaps: u32,
}

/// A peer error in an operator's words: a prefix limit names the annotation that set it.
fn describe_error(e: &PeerError, kind: PeerKind) -> String {
    match e {
        PeerError::MaxPrefixExceeded { limit, received } => {
            let annotation = if kind == PeerKind::Mesh {
                ANNOTATION_NODE_MESH_MAX_PREFIXES
            } else {
                ANNOTATION_MAX_PREFIXES
            };
            format!("sent {received} prefixes, limit {limit} ({annotation}): session closed")
        }
        other => other.to_string(),
    }
}

fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Idle => "Idle",
        SessionState::Connect => "Connect",
        SessionState::Active => "Active",
        SessionState::OpenSent => "OpenSent",
        SessionState::OpenConfirm => "OpenConfirm",
        SessionState::Established => "Established",
    }
}

#[derive(Debug, Default)]
struct Board {
    routing_bgp: bool,
    note: Option<String>,
    speaker: Option<(Handle, SpeakerSettings, BTreeMap<IpAddr, WantedPeer>)>,
    originated: usize,
    learned: usize,
}

/// Shared between the agent loop, which updates it, and the HTTP thread, which reports it.
#[derive(Debug)]
pub struct StatusBoard {
    node: String,
    board: Mutex<Board>,
}

impl StatusBoard {
    /// An empty board for `node` (datastore routing, no speaker).
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            board: Mutex::new(Board::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_mode(&self, bgp: bool, note: Option<String>) {
        let mut b = self.lock();
        b.routing_bgp = bgp;
        b.note = note;
    }

    pub(crate) fn set_speaker(
        &self,
        speaker: Option<(Handle, SpeakerSettings, BTreeMap<IpAddr, WantedPeer>)>,
    ) {
        self.lock().speaker = speaker;
    }

    pub(crate) fn set_counts(&self, originated: usize, learned: usize) {
        let mut b = self.lock();
        b.originated = originated;
        b.learned = learned;
    }

    /// The status now (asks the speaker, on the caller's runtime).
    pub async fn report(&self) -> NodeStatus {
        let (bgp_mode, note, speaker, originated, learned) = {
            let b = self.lock();
            (
                b.routing_bgp,
                b.note.clone(),
                b.speaker.clone(),
                b.originated,
                b.learned,
            )
        };
        let mut note = note;
        let bgp = match speaker {
            None => None,
            Some((handle, settings, wanted)) => {
                let statuses = match tokio::time::timeout(ASK_TIMEOUT, handle.status()).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(err)) => {
                        note = Some(err.to_string());
                        Vec::new()
                    }
                    Err(_) => {
                        note = Some("the BGP speaker did not answer in time".to_owned());
                        Vec::new()
                    }
                };
                let now = std::time::Instant::now();
                let mut peers: Vec<PeerReport> = statuses
                    .into_iter()
                    .map(|s| {
                        let w = wanted.get(&s.addr);
                        let kind = w.map_or(PeerKind::Global, |w| w.kind);
                        PeerReport {
                            name: w.map_or_else(|| s.addr.to_string(), |w| w.name.clone()),
                            address: s.addr,
                            asn: s.asn,
                            kind,
                            state: state_name(s.state).to_owned(),
                            since_secs: now.saturating_duration_since(s.since).as_secs(),
                            router_id: s.router_id.map(|r| r.to_string()),
                            prefixes_received: s.prefixes_received,
                            max_prefixes: s.max_prefixes,
                            prefixes_advertised: s.prefixes_advertised,
                            last_error: s.last_error.map(|e| describe_error(&e, kind)),
                            disabled: s.disabled.map(|e| describe_error(&e, kind)),
                            retry_in_secs: s.retry_at.map(|t| {
                                // Rounded up: "0 s" would read as "now" while it is not yet.
                                let left = t.saturating_duration_since(now);
                                left.as_secs() + u64::from(left.subsec_nanos() > 0)
                            }),
                            flaps: s.flaps,
                        }
                    })
                    .collect();
                // Configured but not run: listed with the reason.
                for (addr, w) in &wanted {
                    if w.refused.is_some() && !peers.iter().any(|p| p.address == *addr) {
                        peers.push(PeerReport {
                            name: w.name.clone(),
                            address: *addr,
                            asn: w.config.asn,
                            kind: w.kind,
                            state: "Idle".to_owned(),
                            since_secs: 0,
                            router_id: None,
                            prefixes_received: 0,
                            max_prefixes: w.config.max_prefixes,
                            prefixes_advertised: 0,
                            last_error: w.refused.clone(),
                            disabled: None,
                            retry_in_secs: None,
                            flaps: 0,
                        });
                    }
                }
                peers.sort_by_key(|p| p.address);
                Some(BgpStatus {
                    asn: settings.asn,
                    router_id: settings.router_id.to_string(),
                    cluster_id: settings.cluster_id.map(|c| c.to_string()),
                    listen: settings.listen.to_string(),
                    originated,
                    learned,
                    peers,
                    tcp_md5: Md5Drops::read(),
                })
            }
        };
        NodeStatus {
            node: self.node.clone(),
            routing: if bgp_mode { "bgp" } else { "datastore" }.to_owned(),
            note,
            bgp,
        }
    }
}

#[cfg(test)]
mod tests;
