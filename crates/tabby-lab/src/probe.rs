//! Real probes between lab workloads, all pairs in parallel.
//!
//! A probe is a connection from inside the source workload's namespace to the destination's
//! first address. It counts as allowed when the destination answered: its server's reply, or
//! (no server on that port) the destination's own refusal (a TCP reset, an ICMP port
//! unreachable), which only a packet that passed policy both ways can cause. Policy drops,
//! so a denied probe sees nothing until its timeout.

use std::fmt;
use std::io::{BufRead as _, BufReader, ErrorKind};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tabby_dataplane::netns::{self, NETNS_DIR};

use crate::state::WorkloadState;
use crate::{Lab, LabError};

/// A probe's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProbeProtocol {
    /// TCP: a connection.
    Tcp,
    /// UDP: a datagram and its answer.
    Udp,
}

impl fmt::Display for ProbeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

/// What to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Transport.
    pub protocol: ProbeProtocol,
    /// Destination port.
    pub port: u16,
    /// How long a probe waits for an answer.
    pub timeout: Duration,
}

/// Probed reachability: `allowed[i][j]` is whether `workloads[i]` reached `workloads[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealMatrix {
    /// Workloads as `namespace/name`, sorted.
    pub workloads: Vec<String>,
    /// Rows are sources, columns destinations.
    pub allowed: Vec<Vec<bool>>,
    /// Answers from a workload other than the one probed (a routing bug, never expected).
    pub anomalies: Vec<String>,
}

/// Whether this kernel speaks SCTP (the lab cannot probe SCTP without it).
pub fn sctp_supported() -> bool {
    std::fs::read_to_string("/proc/net/protocols").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some("SCTP"))
    })
}

/// How many probes from one source run at once.
const PER_SOURCE: usize = 32;

enum Outcome {
    Reached(Option<String>),
    Blocked,
}

impl Lab {
    /// Probes every ordered pair of workloads (a workload to itself too), in parallel.
    pub fn matrix(&self, spec: &ProbeSpec) -> Result<RealMatrix, LabError> {
        let workloads: Vec<&WorkloadState> = self.state.workloads.values().collect();
        let targets: Vec<(String, Option<IpAddr>)> = workloads
            .iter()
            .map(|w| (w.key(), first_address(w)))
            .collect();
        let rows: Vec<Result<Vec<Outcome>, LabError>> = std::thread::scope(|s| {
            let handles: Vec<_> = workloads
                .iter()
                .map(|src| {
                    let path = Path::new(NETNS_DIR).join(&src.netns);
                    let targets = &targets;
                    s.spawn(move || probe_row(&path, targets, spec))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(LabError::Unsupported("a probe thread panicked".to_owned()))
                    })
                })
                .collect()
        });
        let mut allowed = Vec::with_capacity(rows.len());
        let mut anomalies = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            let row = row?;
            allowed.push(
                row.into_iter()
                    .enumerate()
                    .map(|(j, o)| match o {
                        Outcome::Reached(Some(who)) if who != targets[j].0 => {
                            anomalies.push(format!(
                                "{} -> {}: answered by {who}",
                                targets[i].0, targets[j].0
                            ));
                            false
                        }
                        Outcome::Reached(_) => true,
                        Outcome::Blocked => false,
                    })
                    .collect(),
            );
        }
        Ok(RealMatrix {
            workloads: targets.into_iter().map(|t| t.0).collect(),
            allowed,
            anomalies,
        })
    }
}

fn first_address(w: &WorkloadState) -> Option<IpAddr> {
    w.addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| w.addresses.first())
        .copied()
}

/// One source's probes, from a thread inside its namespace (threads it starts are inside too).
fn probe_row(
    netns_path: &Path,
    targets: &[(String, Option<IpAddr>)],
    spec: &ProbeSpec,
) -> Result<Vec<Outcome>, LabError> {
    Ok(netns::run_in(netns_path, || {
        let mut out = Vec::with_capacity(targets.len());
        for chunk in targets.chunks(PER_SOURCE) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(_, addr)| {
                        s.spawn(move || match addr {
                            Some(a) => probe(SocketAddr::new(*a, spec.port), spec),
                            None => Outcome::Blocked,
                        })
                    })
                    .collect();
                out.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or(Outcome::Blocked)),
                );
            });
        }
        out
    })?)
}

fn probe(to: SocketAddr, spec: &ProbeSpec) -> Outcome {
    match spec.protocol {
        ProbeProtocol::Tcp => tcp(to, spec.timeout),
        ProbeProtocol::Udp => udp(to, spec.timeout),
    }
}

fn tcp(to: SocketAddr, timeout: Duration) -> Outcome {
    match TcpStream::connect_timeout(&to, timeout) {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(timeout));
            let mut reply = String::new();
            // An established connection is the verdict; the name is a check on top.
            let _ = BufReader::new(s).read_line(&mut reply);
            let name = reply.trim();
            Outcome::Reached((!name.is_empty()).then(|| name.to_owned()))
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Reached(None),
        Err(_) => Outcome::Blocked,
    }
}

fn udp(to: SocketAddr, timeout: Duration) -> Outcome {
    let local: SocketAddr = match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(sock) = UdpSocket::bind(local) else {
        return Outcome::Blocked;
    };
    if sock.connect(to).is_err() {
        return Outcome::Blocked;
    }
    // Two tries: a single datagram may be the one lost while a neighbour entry resolves.
    let half = timeout / 2;
    let _ = sock.set_read_timeout(Some(half.max(Duration::from_millis(1))));
    let mut buf = [0u8; 512];
    for _ in 0..2 {
        if sock.send(b"probe").is_err() {
            return Outcome::Blocked;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let name = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                return Outcome::Reached((!name.is_empty()).then_some(name));
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Outcome::Reached(None),
            Err(_) => {}
        }
    }
    Outcome::Blocked
}
