//! Reading the router: its daemon's own CLI (`birdc`, `gobgp`, `vtysh`) for its sessions, and
//! its kernel's routing table.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use tabby_dataplane::netns::NETNS_DIR;

use crate::LabError;
use crate::tor::{GOBGP_PORT, TorDaemon, TorState, frr_space};

/// Runs the router's CLI with `command` (BIRD's and FRR's command line, GoBGP's words) in its
/// namespace: its standard output, with its standard error when it failed.
fn run(lab: &str, tor: &TorState, dir: &Path, command: &[&str]) -> Result<String, LabError> {
    let space = frr_space(lab);
    let ctl = dir.join("tor").join("bird.ctl");
    let line = command.join(" ");
    let (program, args): (&str, Vec<&OsStr>) = match tor.daemon {
        TorDaemon::Bird => (
            "birdc",
            vec![OsStr::new("-s"), ctl.as_os_str(), OsStr::new(&line)],
        ),
        TorDaemon::Gobgp => (
            "gobgp",
            ["-u", "127.0.0.1", "-p", GOBGP_PORT]
                .iter()
                .chain(command)
                .map(OsStr::new)
                .collect(),
        ),
        TorDaemon::Frr => (
            "vtysh",
            ["-N", &space, "-d", "bgpd", "-c", &line]
                .map(OsStr::new)
                .to_vec(),
        ),
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let path = Path::new(NETNS_DIR).join(&tor.netns);
    let out = tabby_dataplane::netns::run_in(&path, move || cmd.output())?.map_err(|error| {
        LabError::Spawn {
            what: format!("{program} (the router's CLI)"),
            error,
        }
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout)
        .trim_start_matches('\n')
        .to_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// The router's own view of its sessions, as its daemon's CLI prints it (`birdc show
/// protocols`, `gobgp neighbor`, `vtysh ... show bgp summary`).
pub(crate) fn sessions(lab: &str, tor: &TorState, dir: &Path) -> Result<String, LabError> {
    let command: &[&str] = match tor.daemon {
        TorDaemon::Bird => &["show", "protocols"],
        TorDaemon::Gobgp => &["neighbor"],
        TorDaemon::Frr => &["show", "bgp", "summary"],
    };
    run(lab, tor, dir, command)
}

/// The routes in the router's kernel: (destination, gateways; several for a multipath
/// route, as FRR makes when several nodes advertise a prefix).
fn kernel_routes(tor: &TorState, addr: IpAddr) -> Result<Vec<(IpNet, Vec<IpAddr>)>, LabError> {
    let family = if addr.is_ipv4() { "-4" } else { "-6" };
    let out = crate::process::output(
        "ip route (iproute2)",
        Command::new("ip").args(["-n", &tor.netns, family, "-j", "route", "show"]),
    )?;
    Ok(parse_kernel_routes(&out.stdout))
}

fn parse_kernel_routes(json: &[u8]) -> Vec<(IpNet, Vec<IpAddr>)> {
    let v: Vec<serde_json::Value> = serde_json::from_slice(json).unwrap_or_default();
    v.iter()
        .filter_map(|r| {
            let dst = r.get("dst")?.as_str()?;
            let dst: IpNet = dst
                .parse()
                .or_else(|_| dst.parse::<IpAddr>().map(IpNet::from))
                .ok()?;
            let hop = |v: &serde_json::Value| v.get("gateway")?.as_str()?.parse().ok();
            let mut gws: Vec<IpAddr> = hop(r).into_iter().collect();
            if let Some(hops) = r.get("nexthops").and_then(serde_json::Value::as_array) {
                gws.extend(hops.iter().filter_map(hop));
            }
            Some((dst, gws))
        })
        .collect()
}

/// The gateways of the router's most specific kernel route covering `addr` (empty: no route
/// or no gateway).
pub(crate) fn next_hops(tor: &TorState, addr: IpAddr) -> Result<Vec<IpAddr>, LabError> {
    Ok(kernel_routes(tor, addr)?
        .into_iter()
        .filter(|(dst, _)| dst.contains(&addr))
        .max_by_key(|(dst, _)| dst.prefix_len())
        .map(|(_, gws)| gws)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_routes_give_every_gateway_of_a_multipath_route() {
        let json = br#"[{"dst":"default","gateway":"172.30.0.1","dev":"eth0"},
            {"dst":"192.168.10.0/26","gateway":"172.30.0.11","dev":"eth0","protocol":"bird"},
            {"dst":"192.168.20.0/26","protocol":"bgp","nexthops":[
                {"gateway":"172.30.0.12","dev":"eth0"},{"gateway":"172.30.0.13","dev":"eth0"}]},
            {"dst":"fd00:10::/122","gateway":"fd00:30::11","dev":"eth0"},
            {"dst":"172.30.0.0/24","dev":"eth0","scope":"link"}]"#;
        let routes = parse_kernel_routes(json);
        let gw = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(routes.len(), 4, "{routes:?}");
        assert_eq!(routes[0].1, vec![gw("172.30.0.11")]);
        assert_eq!(routes[1].1, vec![gw("172.30.0.12"), gw("172.30.0.13")]);
        assert_eq!(routes[2].1, vec![gw("fd00:30::11")]);
        assert!(routes[3].1.is_empty());
        assert!(parse_kernel_routes(b"not json").is_empty());
    }
}
