//! A tiny HTTP/1.1 responder for `/livez`, `/readyz`, `/metrics` and `/status` (routing and
//! BGP status as JSON, for `tabby node status`): one request per connection, GET only. The agent needs nothing more, so no HTTP framework is pulled in.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use serde::{Deserialize, Serialize};

use crate::bgp::{NodeStatus, StatusBoard};
use crate::metrics::{DatastoreStatus, Metrics};

/// The body of `GET /status`: routing and BGP, and the datastore as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Routing and BGP.
    #[serde(flatten)]
    pub node: NodeStatus,
    /// Sync state and the last datastore error (absent from agents before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<DatastoreStatus>,
}

/// The most a request head may take; anything longer is refused.
const MAX_HEAD: usize = 8192;
/// A client that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers requests on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, board: Arc<StatusBoard>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                let board = board.clone();
                tokio::spawn(async move {
                    if let Err(err) = handle(stream, &metrics, &board).await {
                        tracing::debug!(error = %err, "health connection failed");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "health listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    board: &StatusBoard,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )
            .await;
        }
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method == "GET" && path == "/status" {
        // The speaker answers on its own thread; this waits for it without blocking others.
        let report = AgentStatus {
            node: board.report().await,
            datastore: Some(metrics.datastore_status()),
        };
        let body = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        return respond(&mut stream, "200 OK", "application/json", &body).await;
    }
    let (status, ctype, body) = route(method, path, metrics);
    respond(&mut stream, status, ctype, &body).await
}

/// Status, content type and body for a request.
fn route(method: &str, path: &str, metrics: &Metrics) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, "GET only\n".to_owned());
    }
    match path {
        "/livez" => ("200 OK", TEXT, "ok\n".to_owned()),
        "/readyz" => match metrics.not_ready_reason() {
            None => ("200 OK", TEXT, "ready\n".to_owned()),
            Some(why) => (
                "503 Service Unavailable",
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "try /livez, /readyz, /metrics or /status\n".to_owned(),
        ),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_first_apply_and_metrics_are_prometheus_text() {
        let m = Metrics::default();
        assert_eq!(route("GET", "/livez", &m).0, "200 OK");
        assert!(route("GET", "/readyz", &m).0.starts_with("503"));
        m.set_in_sync(true);
        m.applied(Duration::from_millis(3));
        assert_eq!(route("GET", "/readyz", &m).0, "200 OK");
        let (_, _, body) = route("GET", "/metrics", &m);
        assert!(
            body.contains("tabby_apply_seconds_bucket{le=\"0.005\"} 1"),
            "{body}"
        );
        assert!(body.contains("tabby_apply_seconds_count 1"), "{body}");
        assert!(route("GET", "/nope", &m).0.starts_with("404"));
        assert!(route("POST", "/livez", &m).0.starts_with("405"));
    }
}
