//! GoBGP installs no routes in the kernel itself (it would need FRR's zebra, whose API in
//! Debian's FRR 8.4 GoBGP 3.10 cannot speak), so the lab runs this small installer beside it:
//! it follows GoBGP's best paths (`gobgp monitor global rib --current -j`) and writes each
//! into the router's kernel with `ip route` (proto bgp), as zebra would.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::LabError;

/// One best-path change: the prefix, and its next hop unless it was withdrawn.
fn changes(line: &str) -> Vec<(String, Option<String>)> {
    let Ok(paths) = serde_json::from_str::<Vec<serde_json::Value>>(line) else {
        return Vec::new();
    };
    paths
        .iter()
        .filter_map(|p| {
            let prefix = p.get("nlri")?.get("prefix")?.as_str()?.to_owned();
            if p.get("withdrawal").and_then(serde_json::Value::as_bool) == Some(true) {
                return Some((prefix, None));
            }
            let hop = p.get("attrs")?.as_array()?.iter().find_map(|a| {
                // NEXT_HOP (type 3), or MP_REACH_NLRI (type 14) for other families.
                a.get("nexthop").and_then(|n| n.as_str()).map(str::to_owned)
            })?;
            // A route GoBGP originates itself (the outside network) is already local.
            if hop == "0.0.0.0" || hop == "::" {
                return None;
            }
            Some((prefix, Some(hop)))
        })
        .collect()
}

fn apply(prefix: &str, hop: Option<&str>) {
    let mut cmd = Command::new("ip");
    match hop {
        Some(h) => cmd.args(["route", "replace", prefix, "via", h, "proto", "bgp"]),
        None => cmd.args(["route", "del", prefix, "proto", "bgp"]),
    };
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => {
            tracing::info!(prefix, next_hop = hop, "installed");
        }
        Ok(out) => tracing::warn!(
            prefix,
            next_hop = hop,
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "ip route failed"
        ),
        Err(err) => tracing::warn!(prefix, error = %err, "cannot run ip route"),
    }
}

/// Follows GoBGP's best paths (its API at `api`, `host:port`) of both families and installs
/// them in this namespace's kernel, until killed. A lost API connection (gobgpd still
/// starting, or restarted) is retried.
pub fn gobgp_fib(api: &str) -> Result<(), LabError> {
    let (host, port) = api
        .rsplit_once(':')
        .ok_or_else(|| LabError::Input(vec![format!("--api {api}: expected HOST:PORT")]))?;
    let (host, port) = (host.to_owned(), port.to_owned());
    let v6 = {
        let (host, port) = (host.clone(), port.clone());
        std::thread::spawn(move || follow(&host, &port, "ipv6"))
    };
    let v4 = follow(&host, &port, "ipv4");
    // `follow` returns only when the client cannot be run at all.
    let _ = v6.join();
    v4
}

/// One family's best paths, for ever (see [`gobgp_fib`]).
fn follow(host: &str, port: &str, family: &str) -> Result<(), LabError> {
    loop {
        let child = Command::new("gobgp")
            .args([
                "-u",
                host,
                "-p",
                port,
                "monitor",
                "global",
                "rib",
                "--current",
                "-a",
                family,
                "-j",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(mut child) => {
                if let Some(stdout) = child.stdout.take() {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        for (prefix, hop) in changes(&line) {
                            apply(&prefix, hop.as_deref());
                        }
                    }
                }
                let _ = child.wait();
            }
            Err(error) => {
                return Err(LabError::Spawn {
                    what: "gobgp (the GoBGP client)".to_owned(),
                    error,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_paths_and_withdrawals_are_read_from_gobgps_monitor() {
        // As gobgp 3.10 prints them.
        let add = r#"[{"nlri":{"prefix":"10.55.0.0/24"},"age":1,"best":false,"attrs":[{"type":1,"value":2},{"type":3,"nexthop":"10.97.0.2"}],"stale":false}]"#;
        let del = r#"[{"nlri":{"prefix":"10.55.0.0/24"},"age":1,"best":false,"attrs":[{"type":1,"value":2},{"type":3,"nexthop":"10.97.0.2"}],"stale":false,"withdrawal":true}]"#;
        assert_eq!(
            changes(add),
            vec![("10.55.0.0/24".to_owned(), Some("10.97.0.2".to_owned()))]
        );
        assert_eq!(changes(del), vec![("10.55.0.0/24".to_owned(), None)]);
        assert!(changes("[]").is_empty());
        assert!(changes("not json").is_empty());
        // IPv6 (MP_REACH_NLRI), and GoBGP's own route (the outside network), not installed.
        let v6 = r#"[{"nlri":{"prefix":"fd00:192:168::8:1e1e:dd80/122"},"best":true,"attrs":[{"type":1,"value":0},{"type":14,"nexthop":"fd00:172:30::12","afi":2,"safi":1,"value":[{"prefix":"fd00:192:168::8:1e1e:dd80/122"}]}]}]"#;
        assert_eq!(
            changes(v6),
            vec![(
                "fd00:192:168::8:1e1e:dd80/122".to_owned(),
                Some("fd00:172:30::12".to_owned())
            )]
        );
        let own = r#"[{"nlri":{"prefix":"203.0.113.0/24"},"best":true,"attrs":[{"type":1,"value":0},{"type":3,"nexthop":"0.0.0.0"}]}]"#;
        assert!(changes(own).is_empty());
    }
}
