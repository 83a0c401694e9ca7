//! Asking a node's agent how it is, on its health address inside the node's namespace.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use tabby_dataplane::netns;

use crate::LabError;
use crate::state::NodeState;

/// Where every lab agent serves `/readyz` and `/metrics` (inside its own node namespace).
pub(crate) const AGENT_HTTP: &str = "127.0.0.1:9099";

/// GET `path` from the agent of the node whose namespace is `netns_path`: (status, body).
pub(crate) fn get(netns_path: &Path, path: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = AGENT_HTTP.parse().ok()?;
    netns::run_in(netns_path, || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    })
    .ok()
    .flatten()
}

/// A gauge's value from a Prometheus text body.
pub(crate) fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

fn node_path(node: &NodeState) -> std::path::PathBuf {
    Path::new(netns::NETNS_DIR).join(&node.netns)
}

/// Whether the node's agent answers `/readyz` with 200.
pub(crate) fn ready(node: &NodeState) -> bool {
    matches!(get(&node_path(node), "/readyz"), Some((200, _)))
}

/// The last revision the node's agent has fully programmed, if it answers.
pub(crate) fn programmed_revision(node: &NodeState) -> Option<i64> {
    let (_, body) = get(&node_path(node), "/metrics")?;
    // Revisions are integers well inside f64's exact range.
    gauge(&body, "tabby_programmed_revision").map(|v| v as i64)
}

/// Waits until every node's agent has programmed `revision` (or later).
pub(crate) fn wait_programmed(
    nodes: &[NodeState],
    revision: i64,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    for node in nodes {
        loop {
            let seen = programmed_revision(node);
            if seen.is_some_and(|r| r >= revision) {
                break;
            }
            if Instant::now() >= deadline {
                let seen = seen.map_or_else(|| "no answer".to_owned(), |r| format!("revision {r}"));
                return Err(LabError::NotReady {
                    what: format!("the agent of {}", node.name),
                    reason: format!(
                        "it has not programmed datastore revision {revision} after {timeout:?} ({seen}); its log: {}",
                        node.log.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Waits until every node's agent is ready.
pub(crate) fn wait_ready(nodes: &[NodeState], timeout: Duration) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    for node in nodes {
        while !ready(node) {
            if Instant::now() >= deadline {
                return Err(LabError::NotReady {
                    what: format!("the agent of {}", node.name),
                    reason: format!(
                        "/readyz did not answer 200 within {timeout:?}; its log: {}",
                        node.log.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
